/**
 * Rules between directives (lib/igvm/directive_rules.ts), found before any digest: files
 * edited from a generated image the way a hostile tool would, each refused by verify with the
 * header named, and by every reader within seconds.
 */
import { assert, assertEquals } from "./assert.ts";
import { generateImage, runCli, tempDir } from "./helpers.ts";
import { bytesAccess } from "./kvm_helpers.ts";
import {
  bodyOf,
  editBody,
  headerIndex,
  headersOf,
  insertHeader,
  removeHeader,
} from "./igvm_edit.ts";
import { readIgvmFile } from "../lib/igvm/reader.ts";
import { structuralProblems } from "../lib/igvm/structure.ts";

const PLATFORM = 0x001;
const POLICY = 0x101;
const AREA = 0x301;
const PAGE = 0x302;
const INSERT = 0x303;
const VP_COUNT = 0x307;
const MEMORY_MAP = 0x30c;

let base: Uint8Array | undefined;
/** A generated image (hyperv layout): one parameter area, VP_COUNT and MEMORY_MAP, one insert. */
async function image(): Promise<Uint8Array> {
  base ??= await generateImage(["-sign_deterministic", "1"]);
  return base;
}

/** The position after the parameter uses (VP_COUNT, MEMORY_MAP), where inserts go. */
function afterUses(bytes: Uint8Array): number {
  return headerIndex(bytes, MEMORY_MAP) + 1;
}

function problemsOf(bytes: Uint8Array): string[] {
  return structuralProblems(bytesAccess(bytes), readIgvmFile(bytes)).toArray();
}

/** An IGVM_VHS_PARAMETER_AREA body. */
function areaBody(bytes: bigint, index: number): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, bytes, true);
  v.setUint32(8, index, true);
  return b;
}

/** An IGVM_VHS_PARAMETER_INSERT body for the SNP platform (mask 1). */
function insertBody(gpa: bigint, index: number): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, gpa, true);
  v.setUint32(8, 1, true);
  v.setUint32(12, index, true);
  return b;
}

Deno.test("structuralProblems() of a generated image: none (the rules hold for igvmgen's own files)", async () => {
  assertEquals(problemsOf(await image()), []);
});

Deno.test("structuralProblems() refuses reserved PAGE_DATA flag bits, each bit", async () => {
  for (const flag of [0x8, 0x100, 0x8000_0000]) {
    const edited = editBody(await image(), PAGE, (v, at) => v.setUint32(at + 0x10, flag, true), 3);
    const problems = problemsOf(edited);
    assertEquals(problems.length, 1, problems.join("\n"));
    assert(problems[0].includes(`reserved bits 0x${flag.toString(16)}`), problems[0]);
  }
});

Deno.test("structuralProblems() refuses a parameter use naming a missing area, or past its end", async () => {
  for (const type of [VP_COUNT, MEMORY_MAP]) {
    const missing = editBody(await image(), type, (v, at) => v.setUint32(at, 7, true));
    assert(problemsOf(missing).some((p) => p.includes("names parameter area 7, not declared")));
    const past = editBody(await image(), type, (v, at) => v.setUint32(at + 4, 0x1000, true));
    assert(problemsOf(past).some((p) => p.includes("at byte 4096 of parameter area 0")));
  }
});

Deno.test("structuralProblems() refuses duplicate platform, policy and area headers", async () => {
  const bytes = await image();
  const platform = insertHeader(bytes, PLATFORM, bodyOf(bytes, PLATFORM), 1);
  assert(problemsOf(platform).some((p) => p.includes("a second SUPPORTED_PLATFORM of type 2")));
  const policy = insertHeader(bytes, POLICY, bodyOf(bytes, POLICY), headerIndex(bytes, POLICY));
  assert(problemsOf(policy).some((p) => p.includes("a second SNP_POLICY")));
  const area = insertHeader(bytes, AREA, bodyOf(bytes, AREA), headerIndex(bytes, AREA));
  assert(problemsOf(area).some((p) => p.includes("parameter area 0 is declared twice")));
});

Deno.test("structuralProblems() refuses an area inserted twice, inserts that overlap pages or each other, 4 GiB in all", async () => {
  const bytes = await image();
  const at = headerIndex(bytes, INSERT);
  const twice = insertHeader(bytes, INSERT, insertBody(0x1_0000_0000n, 0), at);
  assert(problemsOf(twice).some((p) => p.includes("parameter area 0 is inserted twice")));
  // A bigger area whose insert covers the pages after it.
  const big = editBody(bytes, AREA, (v, o) => v.setBigUint64(o, 0x10_0000n, true));
  assert(problemsOf(big).some((p) => /page 0x[0-9a-f]+ is inside the parameter area/.test(p)));
  // Two areas inserted over each other.
  let two = insertHeader(bytes, AREA, areaBody(0x2000n, 1), headerIndex(bytes, AREA));
  two = insertHeader(two, INSERT, insertBody(0x1_0000_0000n, 0), headerIndex(two, INSERT));
  two = removeHeader(two, INSERT, 1);
  two = insertHeader(two, INSERT, insertBody(0xffff_f000n, 1), headerIndex(two, INSERT));
  assert(problemsOf(two).some((p) => p.includes("0x100000000 overlaps the one at 0xfffff000")));
  // Two 4 GiB areas side by side: 8 GiB in all.
  let sum = editBody(bytes, AREA, (v, o) => v.setBigUint64(o, 0x1_0000_0000n, true));
  sum = removeHeader(sum, INSERT);
  sum = insertHeader(sum, AREA, areaBody(0x1_0000_0000n, 1), headerIndex(sum, AREA));
  sum = insertHeader(sum, INSERT, insertBody(0x10_0000_0000n, 0), afterUses(sum));
  sum = insertHeader(sum, INSERT, insertBody(0x20_0000_0000n, 1), afterUses(sum));
  const problems = problemsOf(sum);
  assertEquals(problems, [
    "the parameter inserts place 0x200000000 bytes, more than 4 GiB together",
  ]);
});

/** 20 PARAMETER_INSERTs of 4 GiB areas: of one area, or of 20 areas side by side. */
async function hostileFiles(): Promise<Record<string, Uint8Array>> {
  const bytes = await image();
  let one = editBody(bytes, AREA, (v, o) => v.setBigUint64(o, 0x1_0000_0000n, true));
  one = removeHeader(one, INSERT);
  let many = one;
  for (let i = 0; i < 20; i++) {
    const gpa = BigInt(0x10 + i) << 32n;
    one = insertHeader(one, INSERT, insertBody(gpa, 0), afterUses(one));
    if (i > 0) {
      many = insertHeader(many, AREA, areaBody(0x1_0000_0000n, i), headerIndex(many, AREA));
    }
    many = insertHeader(many, INSERT, insertBody(gpa, i), afterUses(many));
  }
  return { "one area": one, "20 areas": many };
}

Deno.test("every reader refuses 20 inserts of 4 GiB areas within seconds", async () => {
  const dir = tempDir();
  for (const [name, bytes] of Object.entries(await hostileFiles())) {
    assertEquals(headersOf(bytes).filter((h) => h.type === INSERT).length, 20);
    const path = `${dir}/h.igvm`;
    Deno.writeFileSync(path, bytes);
    const runs = [
      ["verify", path],
      ["verify", "--json", path],
      ["verify", "--loader", "qemu-kvm", path],
      ["measure", path],
      ["measure", "--all-loaders", path],
      ["measure", "--log", path],
      ["measure", "--loader", "ch-kvm", path],
      ["inspect", path],
      ["diff", path, path],
    ];
    for (const args of runs) {
      const started = performance.now();
      const r = await runCli(args);
      const seconds = (performance.now() - started) / 1000;
      assertEquals(r.code, 1, `${name}: ${args.join(" ")}: ${r.stdout}${r.stderr}`);
      assert(seconds < 10, `${name}: ${args.join(" ")} took ${seconds.toFixed(1)} s`);
      assert(/inserted twice|more than 4 GiB/.test(r.stdout + r.stderr), r.stdout + r.stderr);
    }
  }
});

Deno.test("diff() and measure() (the library) refuse 20 inserts of one 4 GiB area at once", async () => {
  const { diff, measure } = await import("../mod.ts");
  const dir = tempDir();
  const bytes = (await hostileFiles())["one area"];
  Deno.writeFileSync(`${dir}/h.igvm`, bytes);
  for (
    const run of [
      () => diff({ a: `${dir}/h.igvm`, b: `${dir}/h.igvm` }),
      () => measure({ file: `${dir}/h.igvm` }),
    ]
  ) {
    const started = performance.now();
    const error = await run().then(() => undefined, (e: Error) => e);
    assert(error?.message.includes("parameter area 0 is inserted twice"), String(error));
    assert(performance.now() - started < 5000);
  }
});
