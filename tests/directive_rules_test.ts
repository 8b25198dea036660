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
  zeroPageBody,
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

const VP_CONTEXT = 0x304;
const REQUIRED_MEMORY = 0x305;
const TWO_52 = 1n << 52n;

/** An IGVM_VHS_REQUIRED_MEMORY body for the SNP platform (mask 1). */
function requiredMemoryBody(gpa: bigint, bytes: number): Uint8Array {
  const b = new Uint8Array(0x18);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, gpa, true);
  v.setUint32(8, 1, true);
  v.setUint32(0x0c, bytes, true);
  return b;
}

/** `bytes` with a zero page of `mask` at `gpa` added before the first PAGE_DATA. */
function withPage(bytes: Uint8Array, gpa: bigint, mask: number, flags = 0): Uint8Array {
  return insertHeader(bytes, PAGE, zeroPageBody(gpa, mask, flags), headerIndex(bytes, PAGE));
}

Deno.test("structuralProblems() refuses pages whose mask names no declared platform, one problem per mask", async () => {
  const bytes = await image(); // one platform, SEV-SNP, mask 1
  for (const mask of [0, 0x2, 0x8000_0000]) {
    const problems = problemsOf(withPage(bytes, 0x7f0_0000n, mask));
    assertEquals(problems.length, 1, problems.join("\n"));
    assert(
      problems[0].endsWith(
        `PAGE_DATA mask 0x${mask.toString(16)} names no platform of the file, so no loader ` +
          `loads its page at GPA 0x7f00000`,
      ),
      problems[0],
    );
  }
  // Three pages of mask 0: one problem, with the count.
  let three = bytes;
  for (const gpa of [0x7f0_0000n, 0x7f0_1000n, 0x7f0_2000n]) three = withPage(three, gpa, 0);
  const problems = problemsOf(three);
  assertEquals(problems.length, 1, problems.join("\n"));
  assert(problems[0].includes("(and 2 more pages of this mask)"), problems[0]);
  // A page of mask 0 where another page is: the mask is the problem, not a second load.
  const firstGpa = BigInt(readIgvmFile(bytes).directives.find((d) => d.type === PAGE)!.fields.GPA!);
  const overlaid = problemsOf(withPage(bytes, firstGpa, 0));
  assertEquals(overlaid.length, 1, overlaid.join("\n"));
  assert(overlaid[0].includes("names no platform of the file"), overlaid[0]);
  // A page of the SNP platform's bit and an undeclared one.
  const extra = editBody(bytes, PAGE, (v, at) => v.setUint32(at + 8, 0x5, true), 3);
  assertEquals(problemsOf(extra).length, 1);
  assert(problemsOf(extra)[0].includes("PAGE_DATA mask 0x5 of the page at GPA"));
  assert(problemsOf(extra)[0].endsWith("names bits 0x4 of no declared platform"));
});

Deno.test("structuralProblems() refuses guest memory ending beyond 2^52: pages, SEV-SNP VMSAs, inserts, required memory; a NATIVE context's GPA is no page", async () => {
  const bytes = await image();
  const beyond = (p: string, what: string, gpa: bigint) =>
    p.endsWith(
      `${what} at GPA 0x${gpa.toString(16)} ends beyond 2^52, where no x86 guest has memory ` +
        `(physical addresses have at most 52 bits): KVM refuses it (predicted)`,
    );
  // The last page below 2^52 is a page; 2^52, 2^62, the page that ends at 2^64 are not.
  assertEquals(problemsOf(withPage(bytes, TWO_52 - 0x1000n, 1)), []);
  for (const gpa of [TWO_52, 1n << 62n, 0xffff_ffff_ffff_f000n]) {
    const problems = problemsOf(withPage(bytes, gpa, 1));
    assertEquals(problems.length, 1, problems.join("\n"));
    assert(beyond(problems[0], "page", gpa), problems[0]);
  }
  // A 2 MiB page that starts below 2^52 and ends past it.
  const big = problemsOf(withPage(bytes, TWO_52 - 0x10_0000n, 1, 0x1));
  assert(big.some((p) => beyond(p, "page", TWO_52 - 0x10_0000n)), big.join("\n"));
  // The SEV-SNP VMSA.
  const vmsa = editBody(bytes, VP_CONTEXT, (v, at) => v.setBigUint64(at, 1n << 62n, true));
  assert(problemsOf(vmsa).some((p) => beyond(p, "page", 1n << 62n)), problemsOf(vmsa).join("\n"));
  // The insert of a one-page area: at the last page below 2^52 it fits, one page up it does not;
  // a two-page area there ends past 2^52.
  const insertAt = (gpa: bigint, b = bytes) =>
    editBody(b, INSERT, (v, at) => v.setBigUint64(at, gpa, true));
  assertEquals(problemsOf(insertAt(TWO_52 - 0x1000n)), []);
  for (const gpa of [TWO_52, 0xffff_ffff_ffff_f000n]) {
    const problems = problemsOf(insertAt(gpa));
    assertEquals(problems.length, 1, problems.join("\n"));
    assert(beyond(problems[0], "PARAMETER_INSERT of 0x1000 bytes", gpa), problems[0]);
  }
  const twoPages = editBody(bytes, AREA, (v, o) => v.setBigUint64(o, 0x2000n, true));
  const spans = problemsOf(insertAt(TWO_52 - 0x1000n, twoPages));
  assert(spans.some((p) => beyond(p, "PARAMETER_INSERT of 0x2000 bytes", TWO_52 - 0x1000n)));
  // Required memory (the header before the first page).
  const required = (gpa: bigint, n: number) =>
    problemsOf(
      insertHeader(bytes, REQUIRED_MEMORY, requiredMemoryBody(gpa, n), headerIndex(bytes, PAGE)),
    );
  assertEquals(required(TWO_52 - 0x2000n, 0x2000), []);
  const past = required(TWO_52 - 0x2000n, 0x3000);
  assertEquals(past.length, 1, past.join("\n"));
  assert(beyond(past[0], "REQUIRED_MEMORY of 0x3000 bytes", TWO_52 - 0x2000n), past[0]);
  // -native's NATIVE VP context (mask 2) holds registers: its GPA places nothing.
  const native = await generateImage([
    "-target",
    "qemu-kvm",
    "-native",
    "-sign_deterministic",
    "1",
  ]);
  const moved = editBody(native, VP_CONTEXT, (v, at) => v.setBigUint64(at, 1n << 62n, true), 1);
  assertEquals(problemsOf(moved), []);
});

Deno.test("structuralProblems() refuses a VP context whose mask names more than one platform", async () => {
  const native = await generateImage([
    "-target",
    "qemu-kvm",
    "-native",
    "-sign_deterministic",
    "1",
  ]);
  assertEquals(problemsOf(native), []);
  for (const n of [0, 1]) { // the SEV-SNP VMSA (mask 1), the NATIVE context (mask 2)
    const both = editBody(native, VP_CONTEXT, (v, at) => v.setUint32(at + 8, 3, true), n);
    const problems = problemsOf(both);
    assertEquals(problems.length, 1, problems.join("\n"));
    assert(
      problems[0].endsWith(
        `VP_CONTEXT mask 0x3 names more than one platform: a VP context belongs to one, and ` +
          `the igvm library refuses the file (QEMU 10.2.2: "Unable to parse IGVM file")`,
      ),
      problems[0],
    );
  }
});
