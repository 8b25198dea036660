/**
 * The loader models on big and hostile files, run as a user runs igvmgen (`deno task
 * igvmgen`'s permissions): a 200k-page `-target qemu-kvm` image measures under every model
 * (no stack overflow from spreading a long plan); a PARAMETER_AREA with a huge declared size
 * is a structural problem every command refuses at once; a long run still answers SIGTERM;
 * verify's digest is measure's, by the LOADERS.md hyperv recipe; diff and measure --log
 * refuse structurally broken files. The files are made here (sparse where big).
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { assert, assertEquals } from "./assert.ts";
import { generateImage, ROOT } from "./helpers.ts";
import { taskCommand } from "./task_cli.ts";
import { makeBzImage } from "../scripts/fixtures.ts";
import { diff } from "../mod.ts";

/** Runs `fn` with a fresh temporary folder, removed afterwards whatever happens. */
async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Spawns igvmgen with the task's permissions; `started` runs once it is spawned. */
function spawnIgvmgen(args: string[]): Deno.ChildProcess {
  return taskCommand(args, {}).spawn();
}

/**
 * Runs igvmgen; a run that takes more than `limit` seconds is killed (SIGKILL: a run stuck
 * in a loop that never yields ignores SIGTERM) and fails the test.
 */
async function run(args: string[], limit = 30): Promise<Run> {
  const started = performance.now();
  const child = spawnIgvmgen(args);
  let killed = false;
  const timer = setTimeout(() => {
    killed = true;
    child.kill("SIGKILL");
  }, limit * 1000);
  const out = await child.output();
  clearTimeout(timer);
  const seconds = (performance.now() - started) / 1000;
  assert(!killed, `igvmgen ${args.join(" ")}: still running after ${limit} s`);
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
    seconds,
  };
}

/**
 * Sets NumberOfBytes of every PARAMETER_AREA header to `bytes`, and the GPA of every
 * PARAMETER_INSERT to `insertGpa` (a bigger area at the old place would cover the pages after
 * it, which verify refuses), and fixes the CRC-32.
 */
function withAreaSize(image: Uint8Array, bytes: bigint, insertGpa?: bigint): Uint8Array {
  const b = image.slice();
  const v = new DataView(b.buffer);
  const start = v.getUint32(8, true);
  const end = start + v.getUint32(12, true);
  let found = 0;
  for (let at = start; at < end;) {
    if (v.getUint32(at, true) === 0x301) { // IGVM_VHT_PARAMETER_AREA
      v.setBigUint64(at + 8, bytes, true);
      found++;
    }
    if (v.getUint32(at, true) === 0x303 && insertGpa !== undefined) { // PARAMETER_INSERT
      v.setBigUint64(at + 8, insertGpa, true);
    }
    at = Math.ceil((at + 8 + v.getUint32(at + 4, true)) / 8) * 8;
  }
  assertEquals(found, 1, "one parameter area in igvmgen's image");
  v.setUint32(20, 0, true);
  v.setUint32(20, crc32(b.subarray(0, end)) >>> 0, true);
  return b;
}

/** A fresh P-384 private key as PKCS#8 PEM. */
async function p384KeyPem(): Promise<string> {
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, [
    "sign",
    "verify",
  ]);
  const der = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
  const b64 = btoa(String.fromCharCode(...der)).replace(/(.{64})/g, "$1\n");
  return `-----BEGIN PRIVATE KEY-----\n${b64}\n-----END PRIVATE KEY-----\n`;
}

Deno.test("-target qemu-kvm with an 800 MiB initrd (200k pages): measure, --all-loaders, verify and diff under qemu-kvm give generation's digest, no stack overflow", async () => {
  await withTempDir(async (dir) => {
    Deno.writeFileSync(`${dir}/bzImage`, makeBzImage());
    Deno.writeFileSync(`${dir}/initrd`, new Uint8Array(0));
    Deno.truncateSync(`${dir}/initrd`, 800 << 20); // sparse: 204,800 zero pages
    const img = `${dir}/q.igvm`;
    const gen = await run([
      "-o",
      img,
      "-kernel",
      `${dir}/bzImage`,
      "-rdinit",
      `${dir}/initrd`,
      "-target",
      "qemu-kvm",
      "-measurement_file",
      `${dir}/m.json`,
    ]);
    assertEquals(gen.code, 0, gen.stderr);
    assert(/\(\d+ bytes, 20\d{4} pages\)/.test(gen.stderr), gen.stderr);
    // Generation signs QEMU's digest as file order plus the AP VMSAs (lib/measure/kvm_extend.ts),
    // without the qemu-kvm model: an independent path to the same digest.
    const digest = JSON.parse(Deno.readTextFileSync(`${dir}/m.json`))[
      "x-ms-sevsnpvm-launchmeasurement"
    ];
    assert(/^[0-9a-f]{96}$/.test(digest), digest);

    const m = await run(["measure", img, "--loader", "qemu-kvm"]);
    assertEquals([m.code, m.stderr, m.stdout], [0, "", `${digest}\n`]);
    for (const loader of ["ch-kvm", "openvmm-kvm"]) {
      const r = await run(["measure", img, "--loader", loader]);
      assertEquals([r.code, r.stderr], [0, ""], loader);
      assert(/^[0-9a-f]{96}\n$/.test(r.stdout), `${loader}: ${r.stdout}`);
    }
    const all = await run(["measure", img, "--all-loaders", "--json"]);
    assertEquals(all.code, 0, all.stderr);
    const loaders = JSON.parse(all.stdout).loaders as { loader: string; launchDigest: string }[];
    assertEquals(loaders.find((l) => l.loader === "qemu-kvm")?.launchDigest, digest);
    for (const l of loaders) assert(/^[0-9a-f]{96}$/.test(l.launchDigest), JSON.stringify(l));

    // verify --loader compares the ID block with the qemu-kvm model's digest: accepted.
    const v = await run(["verify", img, "--loader", "qemu-kvm", "--json"]);
    const check = JSON.parse(v.stdout);
    assertEquals([v.code, check.accepted, check.refusals], [0, true, []], v.stdout + v.stderr);

    const d = await run(["diff", img, img, "--loader", "qemu-kvm", "--json"]);
    assertEquals(d.code, 0, d.stderr);
    const doc = JSON.parse(d.stdout);
    assertEquals([doc.equal, doc.digestA, doc.updatesA > 204_800], [true, digest, true]);
  });
});

Deno.test("a PARAMETER_AREA of 2^40 bytes (or 0, or not whole pages) is a structural problem: verify lists it, every other command refuses it at once", async () => {
  await withTempDir(async (dir) => {
    const good = await generateImage([]);
    Deno.writeFileSync(`${dir}/good.igvm`, good);
    Deno.writeTextFileSync(`${dir}/key.pem`, await p384KeyPem());
    const cases: [string, bigint, string][] = [
      ["huge.igvm", 1n << 40n, "size 0x10000000000 is more than 4 GiB"],
      ["over4g.igvm", (1n << 32n) + 4096n, "size 0x100001000 is more than 4 GiB"],
      ["empty.igvm", 0n, "size 0: an area has at least one page"],
      ["partial.igvm", 0x1800n, "size 0x1800 is not a multiple of 4 KiB"],
    ];
    for (const [name, bytes, problem] of cases) {
      const path = `${dir}/${name}`;
      Deno.writeFileSync(path, withAreaSize(good, bytes));
      const v = await run(["verify", path]);
      assertEquals(v.code, 1, v.stderr);
      const listed = v.stdout.split("\n").filter((l) => l.includes("PARAMETER_AREA"));
      assertEquals(listed.length, 1, v.stdout);
      assert(
        new RegExp(`^${path}: header at 0x[0-9a-f]+: PARAMETER_AREA ${problem}$`).test(listed[0]),
        listed[0],
      );
      const commands = [
        ["measure", path],
        ["measure", path, "--log"],
        ["measure", path, "--all-loaders"],
        ["measure", path, "--loader", "ch-mshv"],
        ["measure", path, "--loader", "qemu-kvm"],
        ["measure", path, "--loader", "ch-kvm"],
        ["measure", path, "--loader", "openvmm-kvm"],
        ["measure", path, "--matrix", "--vcpus", "1,2", "--cpu", "milan"],
        ["diff", path, `${dir}/good.igvm`],
        ["diff", `${dir}/good.igvm`, path, "--loader", "qemu-kvm"],
        ["sign", path, "-o", `${dir}/signed.igvm`, "-sign_key", `${dir}/key.pem`],
        [
          "sign",
          path,
          "-o",
          `${dir}/signed.igvm`,
          "-sign_key",
          `${dir}/key.pem`,
          "--loader",
          "ch-kvm",
        ],
      ];
      for (const args of commands) {
        const r = await run(args, 20);
        const what = `${name}: igvmgen ${args.slice(0, 1).concat(args.slice(2)).join(" ")}`;
        assertEquals([r.code, r.stdout.includes("launch digest")], [1, false], what + r.stderr);
        const lines = r.stderr.trimEnd().split("\n");
        assertEquals(lines.length, 1, `${what}: ${r.stderr}`);
        assert(
          lines[0].startsWith("error: ") && lines[0].includes(problem),
          `${what}: ${lines[0]}`,
        );
        assert(r.seconds < 10, `${what}: ${r.seconds.toFixed(1)} s`);
      }
      assert(!Deno.readDirSync(dir).some((e) => e.name === "signed.igvm"), "sign wrote nothing");
    }
  });
});

/** CPU seconds a process has used (Linux /proc), or undefined where that cannot be read. */
function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in ticks
  } catch {
    return undefined;
  }
}

Deno.test("a long measure (4 GiB parameter areas: 1M unmeasured pages per model) still answers SIGTERM at once", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/area4g.igvm`;
    Deno.writeFileSync(path, withAreaSize(await generateImage([]), 1n << 32n, 1n << 32n));
    // Every model folds the area page by page: about 4M launch updates in all.
    const child = spawnIgvmgen(["measure", path, "--all-loaders"]);
    const output = child.output();
    // Wait until igvmgen is well into the fold: 1 s of CPU time (start-up takes far less).
    const waitStart = performance.now();
    while (performance.now() - waitStart < 20_000) {
      const cpu = cpuSeconds(child.pid);
      if (cpu === undefined ? performance.now() - waitStart > 1500 : cpu >= 1) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const signalled = performance.now();
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    const out = await output;
    clearTimeout(timer);
    const seconds = (performance.now() - signalled) / 1000;
    const dec = new TextDecoder();
    // Before, the fold ran on microtasks alone: SIGTERM waited for the end of a model's run
    // (seconds), or for the whole command.
    assertEquals(dec.decode(out.stdout), "", "no digest: the run was interrupted");
    assertEquals(
      dec.decode(out.stderr),
      "error: interrupted by SIGTERM; temporary files removed\n",
    );
    assertEquals(out.code, 143);
    assert(seconds < 1, `exit ${seconds.toFixed(2)} s after SIGTERM`);
  });
});

/** SNP PAGE_INFO (SEV-SNP firmware ABI, SNP_LAUNCH_UPDATE): 0x70 bytes, hashed into the digest. */
function pageInfo(current: Uint8Array, contents: Uint8Array, type: number, gpa: number) {
  const info = new Uint8Array(0x70);
  const v = new DataView(info.buffer);
  info.set(current, 0x00); // DIGEST_CUR
  info.set(contents, 0x30); // CONTENTS
  v.setUint16(0x60, 0x70, true); // LENGTH
  v.setUint8(0x62, type); // PAGE_TYPE; IMI_PAGE and VMPL permissions 0
  v.setBigUint64(0x68, BigInt(gpa), true); // GPA
  return info;
}

/** Folds launch updates into the launch digest, independently of igvmgen's code. */
function fold(updates: { gpa: number; type: number; contents: Uint8Array }[]): string {
  let digest: Uint8Array = new Uint8Array(48);
  for (const u of updates) {
    digest = createHash("sha384").update(pageInfo(digest, u.contents, u.type, u.gpa)).digest();
  }
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

const TYPES: Record<string, number> = {
  NORMAL: 1,
  VMSA: 2,
  ZERO: 3,
  UNMEASURED: 4,
  SECRETS: 5,
  CPUID: 6,
};

Deno.test("verify's launch digest is measure's for a 2-page parameter area: UNMEASURED for every page of the area (LOADERS.md, hyperv)", async () => {
  await withTempDir(async (dir) => {
    const good = await generateImage([]);
    Deno.writeFileSync(`${dir}/one.igvm`, good);
    const log = await run(["measure", `${dir}/one.igvm`, "--log", "--json"]);
    assertEquals(log.code, 0, log.stderr);
    const doc = JSON.parse(log.stdout);
    const updates = (doc.updates as { gpa: string; pageType: string; contents: string }[]).map(
      (u) => ({
        gpa: parseInt(u.gpa, 16),
        type: TYPES[u.pageType],
        contents: Uint8Array.from(u.contents.match(/../g)!, (h) => parseInt(h, 16)),
      }),
    );
    assertEquals(fold(updates), doc.launchDigest, "the independent fold matches igvmgen's");
    const at = (doc.updates as { part: string }[]).findIndex((u) => u.part === "parameter area");
    assert(at >= 0 && updates[at].type === TYPES.UNMEASURED, "one unmeasured parameter page");
    // The recipe for a 2-page area, inserted at 4 GiB (at the old place its second page would
    // be the page after it, which verify refuses): both pages UNMEASURED, in order.
    const gpa = 0x1_0000_0000;
    const unmeasured = { type: TYPES.UNMEASURED, contents: new Uint8Array(48) };
    const two = [
      ...updates.slice(0, at),
      { gpa, ...unmeasured },
      { gpa: gpa + 4096, ...unmeasured },
      ...updates.slice(at + 1),
    ];
    const expected = fold(two);
    assert(expected !== doc.launchDigest);

    const path = `${dir}/two.igvm`;
    Deno.writeFileSync(path, withAreaSize(good, 0x2000n, BigInt(gpa)));
    const m = await run(["measure", path]);
    assertEquals([m.code, m.stdout], [0, `${expected}\n`], m.stderr);
    const v = await run(["verify", path, "--json"]);
    const report = JSON.parse(v.stdout);
    assertEquals(report.launchDigest, expected);
    // The ID block still carries the 1-page digest at the old place: no loader's.
    assertEquals([v.code, report.ok], [1, false], v.stdout);
    assertEquals(report.idBlock.ld, doc.launchDigest);
    // At the old place, the second page would cover the page after the area: refused.
    Deno.writeFileSync(path, withAreaSize(good, 0x2000n));
    const overlap = await run(["verify", path]);
    assertEquals(overlap.code, 1);
    assert(overlap.stdout.includes("is inside the parameter area inserted at 0x"), overlap.stdout);
  });
});

Deno.test("diff and measure --log refuse a structurally broken file as measure does: one line, exit 1", async () => {
  await withTempDir(async (dir) => {
    const good = await generateImage([]);
    const goodPath = `${dir}/good.igvm`;
    Deno.writeFileSync(goodPath, good);
    const tail = `${dir}/tail.igvm`;
    Deno.writeFileSync(tail, good);
    Deno.truncateSync(tail, 3 * 2 ** 30); // zeros appended: TotalFileSize no longer matches
    const problem = `TotalFileSize ${good.length}, the file has ${3 * 2 ** 30} bytes`;
    for (
      const args of [
        ["diff", tail, goodPath],
        ["diff", goodPath, tail],
        ["diff", tail, tail, "--loader", "ch-mshv"],
        ["diff", goodPath, tail, "--json"],
        ["measure", tail],
        ["measure", tail, "--log"],
        ["measure", tail, "--log", "--json"],
      ]
    ) {
      const r = await run(args);
      assertEquals(
        [r.code, r.stdout, r.stderr],
        [1, "", `error: ${tail}: ${problem}\n`],
        args.join(" "),
      );
    }
    // The library's diff refuses it too, naming the problem.
    let error: Error | undefined;
    await diff({ a: tail, b: goodPath }).catch((e) => error = e);
    assert(error?.message.includes(problem), String(error));
  });
});

Deno.test("the reader holds a page header in under 240 bytes of heap (a fixed-shape fields object, shared small bigints)", async () => {
  await withTempDir(async (dir) => {
    // Measured in a child with --expose-gc, so only what the directives keep is counted.
    const script = `${dir}/heap.ts`;
    Deno.writeTextFileSync(
      script,
      `import { parseIgvmHeaders } from ${JSON.stringify(`${ROOT}lib/igvm/reader.ts`)};
const count = 200_000;
const size = 24 + count * 32;
const bytes = new Uint8Array(size);
const v = new DataView(bytes.buffer);
v.setUint32(0, 0x4d564749, true);
v.setUint32(4, 1, true);
v.setUint32(8, 24, true);
v.setUint32(12, count * 32, true);
v.setUint32(16, size, true);
for (let i = 0; i < count; i++) {
  v.setUint32(24 + i * 32, 0x302, true); // PAGE_DATA: a data page, mask 1
  v.setUint32(28 + i * 32, 24, true);
  v.setBigUint64(32 + i * 32, BigInt(i * 4096), true);
  v.setUint32(40 + i * 32, 1, true);
  v.setUint32(44 + i * 32, size + i * 4096, true);
}
const gc = (globalThis as unknown as { gc: () => void }).gc;
gc();
const before = Deno.memoryUsage().heapUsed;
const parsed = parseIgvmHeaders(bytes, size);
gc();
const perHeader = (Deno.memoryUsage().heapUsed - before) / parsed.directives.length;
console.log(JSON.stringify({ count: parsed.directives.length, perHeader,
  gpa: String(parsed.directives[count - 1].fields.GPA),
  mask: String(parsed.directives[7].fields.CompatibilityMask),
  offset: String(parsed.directives[7].fields.FileOffset) }));
`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "-A", "--v8-flags=--expose-gc", script],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    assertEquals(out.code, 0, dec.decode(out.stderr));
    const r = JSON.parse(dec.decode(out.stdout));
    const size = 24 + 200_000 * 32;
    assertEquals([r.count, r.gpa, r.mask, r.offset], [
      200_000,
      String(199_999 * 4096),
      "1",
      String(size + 7 * 4096),
    ]);
    // Fields added one by one, each value its own bigint: about 300 bytes a header; now 205.
    assert(r.perHeader < 240, `${r.perHeader.toFixed(0)} bytes of heap per page header`);
  });
});
