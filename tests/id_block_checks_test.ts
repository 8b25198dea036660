/**
 * Everything the PSP reads of an ID block (lib/measure/id_block_checks.ts), each field
 * broken in a generated, validly signed image: `verify` names the problem and exits 1, where
 * it used to print "OK, signature valid".
 */
import { assert, assertEquals } from "./assert.ts";
import { FIXTURES, generateImage, HAVE_SHARED, runCli, tempDir } from "./helpers.ts";
import { editBody } from "./igvm_edit.ts";
import { idBlockProblems } from "../lib/measure/id_block_checks.ts";
import { readIgvmFile } from "../lib/igvm/reader.ts";
import { IGVM_VHT_SNP_ID_BLOCK } from "../lib/igvm/defs.ts";

const ID_BLOCK = 0x30b;
// IGVM_VHS_SNP_ID_BLOCK offsets, from the IGVM specification (independent of defs.ts).
const MASK = 0x000;
const AUTHOR_KEY_ENABLED = 0x004;
const VERSION = 0x058;
const AUTHOR_KEY_ALGORITHM = 0x064;
const SIGNATURE = 0x068; // R at +0, S at +0x48, 72 bytes each
const PUBLIC_KEY = 0x0f8; // curve +0, reserved +4, Qx +8, Qy +0x50
const AUTHOR_PUBLIC_KEY = 0x220;

let signed: Uint8Array | undefined;
async function image(): Promise<Uint8Array> {
  signed ??= await generateImage([
    "-sign_key",
    `${FIXTURES}test-key.pem`,
    "-sign_deterministic",
    "1",
  ]);
  return signed;
}

/** Each broken field, the edit that breaks it and the words of its problem. */
const CASES: [string, (v: DataView, at: number) => void, string][] = [
  ["R high byte", (v, at) => v.setUint8(at + SIGNATURE + 48, 1), "signature's R has non-zero"],
  ["S high byte", (v, at) => v.setUint8(at + SIGNATURE + 0x48 + 71, 1), "signature's S"],
  ["Qx high byte", (v, at) => v.setUint8(at + PUBLIC_KEY + 8 + 60, 0x80), "public key's Qx"],
  ["Qy high byte", (v, at) => v.setUint8(at + PUBLIC_KEY + 0x50 + 48, 1), "public key's Qy"],
  ["key reserved", (v, at) => v.setUint32(at + PUBLIC_KEY + 4, 5, true), "reserved field"],
  ["mask 0", (v, at) => v.setUint32(at + MASK, 0, true), "compatibility mask 0 names no platform"],
  ["mask of no platform", (v, at) => v.setUint32(at + MASK, 2, true), "does not name the SEV-SNP"],
  ["mask with an extra bit", (v, at) => v.setUint32(at + MASK, 3, true), "names 0x2, which no"],
  ["author flag without key", (v, at) => v.setUint8(at + AUTHOR_KEY_ENABLED, 1), "no author key"],
  ["author flag 2", (v, at) => v.setUint8(at + AUTHOR_KEY_ENABLED, 2), "AuthorKeyEnabled is 2"],
  ["version 2", (v, at) => v.setUint32(at + VERSION, 2, true), "version 2"],
];

Deno.test({
  name: "idBlockProblems() names each field the PSP reads, broken alone; none in a signed image",
  ignore: !HAVE_SHARED,
  async fn() {
    const body = (bytes: Uint8Array) =>
      readIgvmFile(bytes).directives.find((d) => d.type === IGVM_VHT_SNP_ID_BLOCK)!.body;
    const platforms = { snp: 1, all: 1 };
    assertEquals(idBlockProblems(body(await image()), platforms), []);
    for (const [name, edit, words] of CASES) {
      const problems = idBlockProblems(body(editBody(await image(), ID_BLOCK, edit)), platforms);
      assert(problems.some((p) => p.includes(words)), `${name}: ${problems.join("; ")}`);
    }
  },
});

Deno.test("idBlockProblems() checks an enabled author key: algorithm, curve, high bytes", () => {
  const body = new Uint8Array(0x2b8);
  const v = new DataView(body.buffer);
  v.setUint32(MASK, 1, true);
  v.setUint32(VERSION, 1, true);
  v.setUint32(0x060, 1, true); // ID key algorithm
  v.setUint32(PUBLIC_KEY, 2, true);
  body[AUTHOR_KEY_ENABLED] = 1;
  body.fill(1, 0x190, 0x190 + 48); // author signature R
  body.fill(1, AUTHOR_PUBLIC_KEY + 8, AUTHOR_PUBLIC_KEY + 8 + 60); // Qx, 12 bytes too many
  const problems = idBlockProblems(body, { snp: 1, all: 1 });
  assert(problems.some((p) => p.includes("author key algorithm 0")), problems.join("; "));
  assert(problems.some((p) => p.includes("author key public key's curve 0")));
  assert(problems.some((p) => p.includes("author key public key's Qx has non-zero")));
  v.setUint32(AUTHOR_KEY_ALGORITHM, 1, true);
  v.setUint32(AUTHOR_PUBLIC_KEY, 2, true);
  body.fill(0, AUTHOR_PUBLIC_KEY + 8 + 48, AUTHOR_PUBLIC_KEY + 8 + 72);
  assertEquals(idBlockProblems(body, { snp: 1, all: 1 }), []);
});

Deno.test({
  name: "igvmgen verify FILE: each broken ID block field is a problem, exit 1 (was OK)",
  ignore: !HAVE_SHARED,
  async fn() {
    const dir = tempDir();
    for (const [name, edit, words] of CASES) {
      Deno.writeFileSync(`${dir}/b.igvm`, editBody(await image(), ID_BLOCK, edit));
      const r = await runCli(["verify", `${dir}/b.igvm`]);
      assertEquals(r.code, 1, `${name}: ${r.stdout}`);
      assert(r.stdout.includes(`ID block: `) && r.stdout.includes(words), `${name}: ${r.stdout}`);
      assert(!r.stdout.includes(": OK"), r.stdout);
    }
  },
});
