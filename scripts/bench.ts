/**
 * `deno task bench [--pairs N] [--large]`: times igvmgen side by side with a reference for the
 * same work, in rounds (igvmgen, then each reference, N times; default 7), and prints the
 * medians and their ratio against the project's goals:
 *
 * - the Debian 8 MB kernel, default flow (built-in ACPI, fresh key): the work beyond the
 *   runtime's start, (igvmgen - `deno run` of a one-line script) / `sha384sum` of the kernel
 * - the floor of that row in this runtime, for scale: a script that only reads the kernel,
 *   hashes its pages with the same WebAssembly SHA-384 and writes them (no goal)
 * - a 256 MiB initrd (with that kernel) vs `sha384sum` of the initrd; peak RSS from GNU time
 * - `igvmgen -h` vs `deno run` of a one-line script
 * - the golden case elf_x64_l4 (an absolute goal)
 * - the peak RSS of `verify`, `measure --log --json` and `inspect --json` on an image with a
 *   1 GiB initrd (GNU time; the highest of 3 runs)
 *
 * `--large` adds generating that 1 GiB-initrd image as a timed row. Every file it writes lives
 * in one folder from Deno.makeTempDir, removed at the end, also on failure. Needs ../shared.
 */
import { pseudoRandomBytes } from "./fixtures.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const SHARED = new URL("../../shared/", import.meta.url).pathname;
const pairsArg = Deno.args.indexOf("--pairs");
const PAIRS = pairsArg >= 0 ? Number(Deno.args[pairsArg + 1]) : 7;
const LARGE = Deno.args.includes("--large");
const GNU_TIME = (() => {
  try {
    return Deno.statSync("/usr/bin/time").isFile ? "/usr/bin/time" : undefined;
  } catch {
    return undefined;
  }
})();

interface Sample {
  seconds: number;
  /** User plus system CPU seconds (GNU time), all threads. */
  cpu?: number;
  peakMb?: number;
}

/** Runs a command once: wall time and, with GNU time, peak RSS. */
async function timeOnce(cmd: string[]): Promise<Sample> {
  const [program, args] = GNU_TIME
    ? [GNU_TIME, ["-f", "%M %U %S", ...cmd]]
    : [cmd[0], cmd.slice(1)];
  const start = performance.now();
  const out = await new Deno.Command(program, { args, stdout: "null", stderr: "piped" }).output();
  const seconds = (performance.now() - start) / 1000;
  const err = new TextDecoder().decode(out.stderr).trim();
  if (!out.success) throw new Error(`${cmd.join(" ")} failed: ${err}`);
  const [kb, user, system] = GNU_TIME ? err.split("\n").pop()!.split(" ").map(Number) : [NaN];
  return {
    seconds,
    cpu: Number.isFinite(user + system) ? user + system : undefined,
    peakMb: Number.isFinite(kb) ? kb / 1024 : undefined,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** A pseudo-random file of `size` bytes, written in 4 MiB pieces. */
async function writeRandomFile(path: string, size: number): Promise<void> {
  const file = await Deno.open(path, { write: true, createNew: true });
  try {
    const chunk = 4 << 20;
    for (let at = 0; at < size; at += chunk) {
      await file.write(pseudoRandomBytes(Math.min(chunk, size - at), at / chunk + 1));
    }
  } finally {
    file.close();
  }
}

interface Row {
  work: string;
  ours: string[];
  reference?: string[];
  referenceName?: string;
  /**
   * A command whose time is taken off igvmgen's before the ratio (the runtime's own start):
   * the ratio is then (igvmgen - baseline) / reference.
   */
  baseline?: string[];
  /** The goal: a ratio to the reference, seconds when there is no reference, or MB. */
  goal: number;
  /** Show the peak RSS in the row's name. */
  memory?: boolean;
  /** The goal is on the peak RSS (MB), not on time. */
  goalIsMemory?: boolean;
  /** Rounds for this row (default PAIRS). */
  rounds?: number;
  /** Not igvmgen, and no goal: a reference point (the goal column shows `goal` for scale). */
  floor?: boolean;
}

interface Result {
  row: Row;
  ours: number;
  oursRange: [number, number];
  reference?: number;
  baseline?: number;
  /** Median CPU seconds of igvmgen, the baseline and the reference (with GNU time). */
  cpu?: { ours: number; baseline?: number; reference?: number };
  peakMb?: number;
}

/**
 * Runs a row's rounds, after one warm-up of each command: igvmgen, then its baseline and its
 * reference, so that all see the same load.
 */
async function runRow(row: Row): Promise<Result> {
  const rounds = row.rounds ?? PAIRS;
  const others = [row.baseline, row.reference].filter((c): c is string[] => c !== undefined);
  await timeOnce(row.ours);
  for (const c of others) await timeOnce(c);
  const ours: number[] = [];
  const bases: number[] = [];
  const refs: number[] = [];
  const peaks: number[] = [];
  const cpus: { ours: number[]; baseline: number[]; reference: number[] } = {
    ours: [],
    baseline: [],
    reference: [],
  };
  for (let i = 0; i < rounds; i++) {
    const s = await timeOnce(row.ours);
    ours.push(s.seconds);
    if (s.cpu !== undefined) cpus.ours.push(s.cpu);
    if (s.peakMb !== undefined) peaks.push(s.peakMb);
    if (row.baseline) {
      const b = await timeOnce(row.baseline);
      bases.push(b.seconds);
      if (b.cpu !== undefined) cpus.baseline.push(b.cpu);
    }
    if (row.reference) {
      const r = await timeOnce(row.reference);
      refs.push(r.seconds);
      if (r.cpu !== undefined) cpus.reference.push(r.cpu);
    }
  }
  const medianOf = (xs: number[]) => xs.length ? median(xs) : undefined;
  return {
    row,
    ours: median(ours),
    oursRange: [Math.min(...ours), Math.max(...ours)],
    reference: row.reference ? median(refs) : undefined,
    baseline: row.baseline ? median(bases) : undefined,
    cpu: cpus.ours.length
      ? {
        ours: median(cpus.ours),
        baseline: medianOf(cpus.baseline),
        reference: medianOf(cpus.reference),
      }
      : undefined,
    peakMb: peaks.length ? Math.max(...peaks) : undefined,
  };
}

const dir = await Deno.makeTempDir({ prefix: "igvmgen-bench-" });
try {
  const FX = `${SHARED}fixtures`;
  const kernel = `${FX}/vmlinuz-6.1.0-56-amd64`;
  const out = `${dir}/out.igvm`;
  // igvmgen with the permissions of `deno task igvmgen`.
  const igvmgen = (...args: string[]) => [
    Deno.execPath(),
    "run",
    "--allow-read",
    "--allow-write",
    "--allow-run=iasl",
    `${ROOT}main.ts`,
    ...args,
  ];
  const oneLine = `${dir}/one_line.ts`;
  await Deno.writeTextFile(oneLine, 'console.log("igvmgen");\n');
  // The runtime's floor for the kernel row: a script that only reads the kernel, hashes its
  // pages with igvmgen's WebAssembly SHA-384, writes them to a file, flushes and renames it,
  // with nothing of igvmgen's modules, planning, ACPI, keys, headers or checks.
  const floorScript = `${dir}/floor.ts`;
  await Deno.writeTextFile(
    floorScript,
    `import { PageHasher } from ${JSON.stringify(`${ROOT}lib/hash/wasm_sha384.ts`)};
const [input, output] = Deno.args;
const file = Deno.openSync(input);
const out = Deno.openSync(output + ".tmp", { write: true, create: true, truncate: true });
const batch = 128;
const hashers = [0, 1, 2, 3].map(() => new PageHasher(batch));
const measured = new Uint8Array(batch).fill(1);
const zero = new Uint8Array(batch);
const digests = new Uint8Array(batch * 48);
const writing: Promise<number>[] = [];
for (let i = 0; ; i++) {
  const h = hashers[i % 4];
  if (writing.length >= 3) await writing.shift();
  const n = file.readSync(h.hosted) ?? 0;
  if (n === 0) break;
  h.hashPages(h.hosted, Math.ceil(n / 4096), measured, zero, digests);
  writing.push((writing.at(-1) ?? Promise.resolve(0)).then(() => out.write(h.hosted.subarray(0, n))));
}
await Promise.all(writing);
out.syncDataSync();
out.close();
Deno.renameSync(output + ".tmp", output);
`,
  );
  const initrd256 = `${dir}/initrd-256m.bin`;
  await writeRandomFile(initrd256, 256 << 20);

  const rows: Row[] = [
    {
      work: "Debian 8 MB kernel, default flow: work beyond the runtime's start",
      ours: igvmgen("--quiet", "-o", out, "-kernel", kernel, "-append", "console=ttyS0"),
      baseline: [Deno.execPath(), "run", oneLine],
      reference: ["sha384sum", kernel],
      referenceName: "sha384sum of the kernel",
      goal: 2,
    },
    {
      work: "floor: a script that only reads, hashes and writes the kernel (not igvmgen)",
      ours: [
        Deno.execPath(),
        "run",
        "--allow-read",
        "--allow-write",
        floorScript,
        kernel,
        `${dir}/floor.out`,
      ],
      baseline: [Deno.execPath(), "run", oneLine],
      reference: ["sha384sum", kernel],
      referenceName: "sha384sum of the kernel",
      goal: 2,
      floor: true,
    },
    {
      work: "256 MiB initrd",
      ours: igvmgen("--quiet", "-o", out, "-kernel", kernel, "-rdinit", initrd256),
      reference: ["sha384sum", initrd256],
      referenceName: "sha384sum of the initrd",
      goal: 1,
      memory: true,
    },
    {
      work: "igvmgen -h",
      ours: igvmgen("-h"),
      reference: [Deno.execPath(), "run", oneLine],
      referenceName: "deno run of a one-line script",
      goal: 1.5,
    },
    {
      work: "golden case elf_x64_l4",
      ours: igvmgen(
        "--quiet",
        "-o",
        out,
        "-sign_key",
        `${FX}/test-key.pem`,
        "-sign_deterministic",
        "true",
        "-kernel",
        `${FX}/test_elf`,
        "-append",
        "x",
        "-boot_mode",
        "x64",
        "-vtl",
        "2",
        "-inform",
        "elf",
        "-pgtable_level",
        "4",
        "-acpi_dir",
        `${SHARED}reference/igvm-tooling/acpi/acpi.zip`,
      ),
      goal: 0.2,
    },
  ];
  // An image with a 1 GiB initrd (263k page headers), for the memory of reading it.
  const initrd1g = `${dir}/initrd-1g.bin`;
  const image1g = `${dir}/initrd-1g.igvm`;
  await writeRandomFile(initrd1g, 1 << 30);
  const generate1g = igvmgen("--quiet", "-o", image1g, "-kernel", kernel, "-rdinit", initrd1g);
  if (LARGE) {
    rows.push({
      work: "1 GiB initrd",
      ours: generate1g,
      reference: ["sha384sum", initrd1g],
      referenceName: "sha384sum of the initrd",
      goal: 1,
      memory: true,
    });
  } else {
    await timeOnce(generate1g);
  }
  // Reading that image: each command's highest peak RSS over its rounds.
  for (const command of [["verify"], ["measure", "--log", "--json"], ["inspect", "--json"]]) {
    rows.push({
      work: `${command.join(" ")} of the 1 GiB-initrd image: peak RSS`,
      ours: [Deno.execPath(), "run", "--allow-read", `${ROOT}main.ts`, ...command, image1g],
      goal: 120,
      memory: true,
      goalIsMemory: true,
      rounds: 3,
    });
  }

  // /proc files need --allow-all to read directly; grep reads it instead.
  const cpu = await new Deno.Command("grep", { args: ["-m1", "model name", "/proc/cpuinfo"] })
    .output()
    .then((o) => new TextDecoder().decode(o.stdout).replace(/^.*:\s*/, "").trim() || "CPU?")
    .catch(() => "CPU?");
  console.log(`igvmgen bench: medians of ${PAIRS} rounds (igvmgen, then its references)`);
  console.log(
    `machine: ${navigator.hardwareConcurrency} cores, ${cpu}, deno ${Deno.version.deno}, ` +
      `load average ${Deno.loadavg().map((x) => x.toFixed(1)).join(" ")}`,
  );
  console.log("");
  const table = [[
    "work",
    "igvmgen s (min-max)",
    "one-line s",
    "reference",
    "reference s",
    "ratio",
    "goal",
    "met",
    "cpu s: ours/one-line/ref",
    "cpu ratio",
  ]];
  for (const row of rows) {
    const r = await runRow(row);
    const work = r.ours - (r.baseline ?? 0);
    const ratio = r.reference !== undefined ? work / r.reference : undefined;
    const met = row.goalIsMemory
      ? r.peakMb !== undefined && r.peakMb <= row.goal
      : ratio !== undefined
      ? ratio <= row.goal
      : r.ours <= row.goal;
    table.push([
      row.work + (row.memory && r.peakMb ? ` (peak ${r.peakMb.toFixed(0)} MB)` : ""),
      `${r.ours.toFixed(3)} (${r.oursRange[0].toFixed(3)}-${r.oursRange[1].toFixed(3)})`,
      r.baseline !== undefined ? r.baseline.toFixed(3) : "-",
      row.referenceName ?? "-",
      r.reference !== undefined ? r.reference.toFixed(3) : "-",
      ratio !== undefined ? `${ratio.toFixed(2)}x` : "-",
      row.goalIsMemory
        ? `<= ${row.goal} MB`
        : ratio !== undefined
        ? `<= ${row.goal}x`
        : `<= ${row.goal} s`,
      row.floor ? "-" : met ? "yes" : "no",
      r.cpu
        ? [r.cpu.ours, r.cpu.baseline, r.cpu.reference]
          .map((x) => x === undefined ? "-" : x.toFixed(2)).join("/")
        : "-",
      r.cpu?.reference
        ? `${((r.cpu.ours - (r.cpu.baseline ?? 0)) / r.cpu.reference).toFixed(2)}x`
        : "-",
    ]);
  }
  const widths = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
  for (const r of table) console.log(r.map((v, i) => v.padEnd(widths[i])).join("  ").trimEnd());
  console.log(
    "\nRatios are of medians of wall time, which is what the goals are about, on an idle machine." +
      "\nCPU seconds (user + system, every thread) are GNU time's, at 10 ms granularity: on a" +
      "\nshared machine, compare the cpu ratio too.",
  );
  if (!GNU_TIME) console.log("(no /usr/bin/time: no peak memory or CPU figures)");
} finally {
  await Deno.remove(dir, { recursive: true });
}
