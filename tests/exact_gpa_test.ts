/**
 * GPAs are u64 and read exactly: a GPA above 2^53 that is not page aligned is a structural
 * problem named with its exact value (a double would round 0x20000000001001 to the aligned
 * 0x20000000001000), so verify, measure and sign refuse it, no loader model measures it, and
 * two files that differ only there never get the same digest.
 */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { FIXTURES, generateImage, HAVE_SHARED, runCli, tempDir } from "./helpers.ts";
import { crc32 } from "../lib/bytes/crc32.ts";
import { readIgvmFile } from "../lib/igvm/reader.ts";
import { loaderDigest, loaderNames } from "../lib/measure/loaders.ts";
import type { FileAccess } from "../lib/io/file_reader.ts";

const KEY = `${FIXTURES}test-key.pem`;
/** 2^53 + 0x1001: the nearest double is 2^53 + 0x1000, a page-aligned GPA. */
const UNALIGNED = 0x20000000001001n;
const ALIGNED_NEIGHBOUR = 0x20000000001000n;

const PAGE_DATA = 0x302;
const PARAMETER_INSERT = 0x303;
const VP_CONTEXT = 0x304;

/** An in-memory file for the library calls. */
function memoryFile(bytes: Uint8Array): FileAccess {
  return {
    size: bytes.length,
    readAt: (o, n) => Promise.resolve(bytes.slice(o, Math.min(bytes.length, o + n))),
  };
}

/** Header offsets of each type in an IGVM file, walked here with a DataView. */
function headersOfType(bytes: Uint8Array, type: number): number[] {
  if (bytes.length < 24) return [];
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const start = v.getUint32(8, true);
  const end = start + v.getUint32(12, true);
  const found: number[] = [];
  for (let at = start; at < end;) {
    if (v.getUint32(at, true) === type) found.push(at);
    at += Math.ceil((8 + v.getUint32(at + 4, true)) / 8) * 8;
  }
  return found;
}

/** A copy of `bytes` with the GPAs of some headers (by offset) set, its checksum redone. */
function withGpas(bytes: Uint8Array, changes: [number, bigint][]): Uint8Array {
  const out = bytes.slice();
  const v = new DataView(out.buffer);
  for (const [at, gpa] of changes) v.setBigUint64(at + 8, gpa, true); // GPA: the body's first field
  const end = v.getUint32(8, true) + v.getUint32(12, true);
  v.setUint32(20, 0, true);
  v.setUint32(20, crc32(out.subarray(0, end)) >>> 0, true);
  return out;
}

/** A signed image (the signing key is in ../shared). */
const image = HAVE_SHARED
  ? await generateImage(["-sign_key", KEY, "-sign_deterministic", "true"])
  : new Uint8Array();
const ignore = !HAVE_SHARED;

/** The last header of each kind that places pages. */
const CASES = ([
  ["PAGE_DATA", PAGE_DATA],
  ["VP_CONTEXT", VP_CONTEXT],
  ["PARAMETER_INSERT", PARAMETER_INSERT],
] as const).map(([kind, type]) => [kind, headersOfType(image, type).at(-1) ?? 0] as const);

for (const [kind, at] of CASES) {
  Deno.test({
    name:
      `verify, measure and sign refuse a ${kind} at the unaligned GPA 0x20000000001001, named exactly`,
    ignore,
  }, async () => {
    const dir = tempDir();
    try {
      const file = `${dir}/unaligned.igvm`;
      Deno.writeFileSync(file, withGpas(image, [[at, UNALIGNED]]));
      const problem = `header at 0x${at.toString(16)}: GPA 0x20000000001001 is not page aligned`;

      const v = await runCli(["verify", file]);
      assertEquals(v.code, 1, v.stdout + v.stderr);
      assert(v.stdout.includes(`${file}: ${problem}\n`), v.stdout);
      assert(!v.stdout.includes("0x20000000001000"), v.stdout);

      const m = await runCli(["measure", file]);
      assertEquals([m.code, m.stdout], [1, ""], m.stderr);
      assert(m.stderr.includes(problem), m.stderr);

      const log = await runCli(["measure", "--log", "--json", file]);
      assertEquals([log.code, log.stdout], [1, ""], log.stderr);

      const signed = `${dir}/signed.igvm`;
      const s = await runCli(["sign", file, "-sign_key", KEY, "-o", signed]);
      assertEquals(s.code, 1, s.stdout + s.stderr);
      assert(s.stderr.includes(problem), s.stderr);
      assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["unaligned.igvm"]);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
}

Deno.test({
  name: "no loader model measures an unaligned GPA above 2^53, even on headers nobody checked",
  ignore,
}, async () => {
  for (const [, at] of CASES) {
    const bytes = withGpas(image, [[at, UNALIGNED]]);
    const headers = readIgvmFile(bytes);
    for (const loader of loaderNames()) {
      await assertRejects(
        () => loaderDigest(loader, memoryFile(bytes), headers),
        Error,
        "GPA 0x20000000001001 is not page aligned",
      );
    }
  }
});

Deno.test({
  name:
    "GPAs are told apart exactly: two that one double holds are not 'loaded twice', two equal ones are",
  ignore,
}, async () => {
  const [a, b] = headersOfType(image, PAGE_DATA).slice(-2);
  const dir = tempDir();
  try {
    const apart = `${dir}/apart.igvm`;
    Deno.writeFileSync(apart, withGpas(image, [[a, ALIGNED_NEIGHBOUR], [b, UNALIGNED]]));
    const r1 = await runCli(["verify", apart]);
    assertEquals(r1.code, 1);
    assert(r1.stdout.includes(`GPA 0x20000000001001 is not page aligned`), r1.stdout);
    assert(!r1.stdout.includes("loaded twice"), r1.stdout);

    const same = `${dir}/same.igvm`;
    Deno.writeFileSync(same, withGpas(image, [[a, UNALIGNED], [b, UNALIGNED]]));
    const r2 = await runCli(["verify", same]);
    assert(
      r2.stdout.includes(
        `header at 0x${b.toString(16)}: GPA 0x20000000001001 is loaded twice`,
      ),
      r2.stdout,
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
