/**
 * `deno task bench [--runs N] [--quick]`: times igvmgen next to `sha384sum` of the same input
 * (one SHA-384 pass, the floor) and reports the median of N runs (default 5) with min and
 * max, the ratio to sha384sum, throughput and peak memory (from GNU time when installed).
 * Cases: the Debian kernel (deb_x86, deb_clh_x64), elf_x64_l4, and 256 MiB and 1 GiB
 * initrds generated into the temporary folder. Needs ../shared.
 */
import { fileURLToPath } from "node:url";
import { pseudoRandomBytes } from "./fixtures.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const SHARED = fileURLToPath(new URL("../../shared/", import.meta.url));
const runsArg = Deno.args.indexOf("--runs");
const RUNS = runsArg >= 0 ? Number(Deno.args[runsArg + 1]) : 5;
const QUICK = Deno.args.includes("--quick");
const GNU_TIME = (() => {
  try {
    return Deno.statSync("/usr/bin/time").isFile ? "/usr/bin/time" : undefined;
  } catch {
    return undefined;
  }
})();

interface Sample {
  seconds: number;
  peakKb?: number;
}

/** Runs a command once; wall time and (with GNU time) peak RSS. */
async function timeOnce(cmd: string[]): Promise<Sample> {
  const args = GNU_TIME ? ["-f", "%e %M", ...cmd] : cmd;
  const start = performance.now();
  const out = await new Deno.Command(GNU_TIME ?? cmd[0], {
    args: GNU_TIME ? args : cmd.slice(1),
    stdout: "null",
    stderr: "piped",
  }).output();
  const seconds = (performance.now() - start) / 1000;
  const err = new TextDecoder().decode(out.stderr).trim();
  if (!out.success) throw new Error(`${cmd.join(" ")} failed: ${err}`);
  if (!GNU_TIME) return { seconds };
  const [, kb] = err.split("\n").pop()!.split(" ").map(Number);
  return { seconds, peakKb: kb };
}

function stats(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)], min: s[0], max: s[s.length - 1] };
}

async function measure(cmd: string[]) {
  const samples: Sample[] = [];
  for (let i = 0; i < RUNS; i++) samples.push(await timeOnce(cmd));
  return {
    time: stats(samples.map((s) => s.seconds)),
    peakMb: samples[0].peakKb !== undefined
      ? stats(samples.map((s) => s.peakKb! / 1024)).max
      : undefined,
  };
}

/** A pseudo-random file of `size` bytes in the temporary folder, made once. */
async function initrdOf(size: number): Promise<string> {
  const path = `${Deno.env.get("TMPDIR") ?? "/tmp"}/igvmgen-bench-initrd-${size >> 20}m.bin`;
  try {
    if ((await Deno.stat(path)).size === size) return path;
  } catch { /* make it */ }
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  const chunk = 4 << 20;
  for (let at = 0; at < size; at += chunk) {
    await file.write(pseudoRandomBytes(Math.min(chunk, size - at), at / chunk + 1));
  }
  file.close();
  return path;
}

const FX = `${SHARED}fixtures`;
const ACPI = `${SHARED}reference/igvm-tooling/acpi`;
const igvmgen = (args: string[]) => [
  Deno.execPath(),
  "run",
  "--allow-read",
  "--allow-write",
  "--allow-run=iasl",
  `${ROOT}main.ts`,
  "--quiet",
  "-sign_key",
  `${FX}/test-key.pem`,
  "-sign_deterministic",
  "true",
  ...args,
];
const out = `${Deno.env.get("TMPDIR") ?? "/tmp"}/igvmgen-bench.igvm`;
const cases: { name: string; input: string; args: string[]; original?: string }[] = [
  {
    name: "deb_x86",
    input: `${FX}/vmlinuz-6.1.0-56-amd64`,
    args: [
      "-o",
      out,
      "-kernel",
      `${FX}/vmlinuz-6.1.0-56-amd64`,
      "-append",
      "console=ttyS0 panic=-1",
      "-acpi_dir",
      `${ACPI}/acpi.zip`,
    ],
    original: "1.02 s, ~190 MB",
  },
  {
    name: "deb_clh_x64",
    input: `${FX}/vmlinuz-6.1.0-56-amd64`,
    args: [
      "-o",
      out,
      "-kernel",
      `${FX}/vmlinuz-6.1.0-56-amd64`,
      "-boot_mode",
      "x64",
      "-vtl",
      "0",
      "-pvalidate_opt",
      "0",
      "-acpi_dir",
      `${ACPI}/acpi-clh`,
    ],
    original: "1.78 s",
  },
  {
    name: "elf_x64_l4",
    input: `${FX}/test_elf`,
    args: [
      "-o",
      out,
      "-kernel",
      `${FX}/test_elf`,
      "-inform",
      "elf",
      "-boot_mode",
      "x64",
      "-pgtable_level",
      "4",
      "-append",
      "x",
      "-acpi_dir",
      `${ACPI}/acpi.zip`,
    ],
    original: "4.93 s",
  },
];
for (const size of QUICK ? [] : [256 << 20, 1 << 30]) {
  const initrd = await initrdOf(size);
  cases.push({
    name: `initrd_${size >> 20}m`,
    input: initrd,
    args: ["-o", out, "-kernel", `${FX}/vmlinuz-6.1.0-56-amd64`, "-rdinit", initrd],
    original: size === 256 << 20 ? "1.19 GB peak" : undefined,
  });
}

console.log(`igvmgen bench: median of ${RUNS} runs (min-max); peak RSS is the highest of the runs`);
console.log(
  `machine: ${navigator.hardwareConcurrency} cores, deno ${Deno.version.deno}${
    GNU_TIME ? "" : " (no GNU time: no memory figures)"
  }`,
);
console.log("");
const rows = [["case", "igvmgen s", "sha384sum s", "ratio", "MB/s", "peak MB", "original"]];
for (const c of cases) {
  const size = (await Deno.stat(c.input)).size;
  const ours = await measure(igvmgen(c.args));
  const floor = await measure(["sha384sum", c.input]);
  const fmt = (t: { median: number; min: number; max: number }) =>
    `${t.median.toFixed(2)} (${t.min.toFixed(2)}-${t.max.toFixed(2)})`;
  rows.push([
    c.name,
    fmt(ours.time),
    fmt(floor.time),
    (ours.time.median / floor.time.median).toFixed(1) + "x",
    (size / 1e6 / ours.time.median).toFixed(0),
    ours.peakMb?.toFixed(0) ?? "-",
    c.original ?? "",
  ]);
}
const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
for (const r of rows) console.log(r.map((v, i) => v.padEnd(widths[i])).join("  "));
await Deno.remove(out).catch(() => {});
