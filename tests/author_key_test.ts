/**
 * Author keys: `-author_key` on generation and `sign`, the offline `--author-signature`, the
 * author fields of `sign --matrix --id-blocks-out`'s ID_AUTH_INFO, `verify`'s check of the
 * author signature, and the key digests `inspect` shows, against virtee/sev's known digests of
 * its public test keys (tests/data/attest/SOURCES.md).
 */
import { assert, assertEquals } from "./assert.ts";
import { generateImage, ROOT, runCli, tempDir } from "./helpers.ts";
import { HAVE_OPENSSL, openssl } from "./sign_helpers.ts";
import { attest, verify } from "../mod.ts";
import {
  assembleIgvmIdBlock,
  decodeIgvmIdBlock,
  encodeSevEcdsaPublicKey,
  fromLittleEndian72,
  signIdKey,
  verifyAuthorSignature,
} from "../lib/measure/id_block.ts";
import { filePolicy, rewriteIdBlockInPlace } from "../lib/measure/id_block_file.ts";
import { readHeaders } from "../lib/igvm/structure.ts";
import { IGVM_VHT_SNP_ID_BLOCK } from "../lib/igvm/defs.ts";
import { parseP384PrivateKeyPem } from "../lib/measure/signing_key.ts";
import { bytesAccess } from "./kvm_helpers.ts";

const DATA = `${ROOT}tests/data/attest/`;
const ID_KEY = `${DATA}virtee_test_id_key.pem`;
const AUTHOR_KEY = `${DATA}virtee_test_auth_key.pem`;
const hexOf64 = (b64: string) =>
  Array.from(atob(b64), (c) => c.charCodeAt(0).toString(16).padStart(2, "0")).join("");
/** virtee/sev tests/id-block.rs: the known digests of its two test keys. */
const ID_DIGEST = hexOf64("WfssaG36T+9J84M5qndckAUcKNVzg93DuvO160sUlt87DbvcuuX+J2d6ZEggdz/i");
const AUTHOR_DIGEST = hexOf64("7tgRafsMteDsNHlPEo/U4MSkb2fGWhrfqB/LJLzAiMJyNpt//D6ytq9qQoShs2xf");
const ZERO = "0".repeat(96);
const key = async (path: string) => await parseP384PrivateKeyPem(Deno.readTextFileSync(path));

async function inspectJson(file: string) {
  const r = await runCli(["inspect", file, "--json"]);
  assertEquals(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).idBlock;
}

Deno.test("generation with -author_key: inspect shows virtee's known ID-key and author-key digests; without it, zeros", async () => {
  const dir = tempDir();
  const sign = ["-sign_key", ID_KEY, "-sign_deterministic", "true"];
  Deno.writeFileSync(`${dir}/a.igvm`, await generateImage([...sign, "-author_key", AUTHOR_KEY]));
  Deno.writeFileSync(`${dir}/p.igvm`, await generateImage(sign));
  const a = await inspectJson(`${dir}/a.igvm`);
  assertEquals(
    [a.idKeyDigest, a.authorKeyDigest, a.authorKeyEnabled, a.authorSignatureValid],
    [ID_DIGEST, AUTHOR_DIGEST, true, true],
  );
  const p = await inspectJson(`${dir}/p.igvm`);
  assertEquals([p.idKeyDigest, p.authorKeyDigest, p.authorKeyEnabled], [ID_DIGEST, ZERO, false]);
  assertEquals(p.authorSignatureValid, undefined);
  const text = await runCli(["inspect", `${dir}/a.igvm`]);
  assert(text.stdout.includes(`ID key digest     ${ID_DIGEST}`), text.stdout);
  assert(text.stdout.includes(`author key digest ${AUTHOR_DIGEST} (author signature valid)`));
  // The author's signature in the ID block verifies over the ID key's ABI structure.
  const bytes = Deno.readFileSync(`${dir}/a.igvm`);
  const headers = await readHeaders(bytesAccess(bytes));
  const d = headers.directives.find((x) => x.type === IGVM_VHT_SNP_ID_BLOCK)!;
  const block = decodeIgvmIdBlock(d.body);
  assert(await verifyAuthorSignature(block.idKey, block.author!));
  assert((await verify({ file: `${dir}/a.igvm` })).ok);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("verify refuses an ID block whose author signature is not over its ID key", async () => {
  const dir = tempDir();
  const bytes = await generateImage(["-sign_key", ID_KEY, "-sign_deterministic", "true"]);
  const headers = await readHeaders(bytesAccess(bytes));
  const d = headers.directives.find((x) => x.type === IGVM_VHT_SNP_ID_BLOCK)!;
  const block = decodeIgvmIdBlock(d.body);
  const payload = d.body.slice(8, 8 + 96);
  new DataView(payload.buffer).setBigUint64(
    88,
    filePolicy(headers)!,
    true,
  );
  // The author signs the author key instead of the ID key.
  const author = await key(AUTHOR_KEY);
  const wrong = await signIdKey(author, author, true);
  const body = assembleIgvmIdBlock(
    payload,
    block.signature.r,
    block.signature.s,
    block.idKey.x,
    block.idKey.y,
    1,
    wrong,
  );
  const out = bytes.slice();
  await rewriteIdBlockInPlace(bytesAccess(bytes), headers, body, {
    writeAt: (at, b) => Promise.resolve(out.set(b, at)),
  });
  Deno.writeFileSync(`${dir}/bad.igvm`, out);
  const r = await runCli(["verify", `${dir}/bad.igvm`]);
  assertEquals(r.code, 1);
  assert(
    r.stdout.includes("ID block: the author key's signature over the ID key does not verify"),
    r.stdout,
  );
  assert(!r.stdout.includes("the signature does not verify with the block's public key"));
  Deno.removeSync(dir, { recursive: true });
});

Deno.test({
  name:
    "sign -author_key, and offline --author-signature made with openssl over the 0x404-byte ID key; a wrong one is refused",
  ignore: !HAVE_OPENSSL,
  async fn() {
    const dir = tempDir();
    Deno.writeFileSync(`${dir}/in.igvm`, await generateImage([]));
    const r = await runCli([
      "sign",
      `${dir}/in.igvm`,
      "-o",
      `${dir}/a.igvm`,
      "-sign_key",
      ID_KEY,
      "-author_key",
      AUTHOR_KEY,
    ]);
    assertEquals(r.code, 0, r.stderr);
    const a = await inspectJson(`${dir}/a.igvm`);
    assertEquals([a.idKeyDigest, a.authorKeyDigest, a.signatureValid], [
      ID_DIGEST,
      AUTHOR_DIGEST,
      true,
    ]);
    // Offline: --author-payload-out writes the ID key's ABI structure, byte for byte the one
    // in virtee/sev's ID_AUTH_INFO made with the same key; the author signs it with openssl.
    const p = await runCli([
      "sign",
      `${dir}/in.igvm`,
      "--author-payload-out",
      `${dir}/idkey.bin`,
      "-sign_key",
      ID_KEY,
    ]);
    assertEquals(p.code, 0, p.stderr);
    assertEquals(
      Deno.readFileSync(`${dir}/idkey.bin`),
      Deno.readFileSync(`${DATA}virtee_test_auth_block.bin`).slice(0x240, 0x644),
    );
    openssl(
      "dgst",
      "-sha384",
      "-sign",
      AUTHOR_KEY,
      "-out",
      `${dir}/author.sig`,
      `${dir}/idkey.bin`,
    );
    openssl("pkey", "-in", AUTHOR_KEY, "-pubout", "-out", `${dir}/author.pub`);
    const offline = [
      "sign",
      `${dir}/in.igvm`,
      "-sign_key",
      ID_KEY,
      "--author-signature",
      `${dir}/author.sig`,
    ];
    const o = await runCli([
      ...offline,
      "-o",
      `${dir}/o.igvm`,
      "--author-public-key",
      `${dir}/author.pub`,
    ]);
    assertEquals(o.code, 0, o.stderr);
    assertEquals((await inspectJson(`${dir}/o.igvm`)).authorKeyDigest, AUTHOR_DIGEST);
    // The ID key as the "author public key": the signature does not verify; nothing written.
    openssl("pkey", "-in", ID_KEY, "-pubout", "-out", `${dir}/id.pub`);
    const bad = await runCli([
      ...offline,
      "-o",
      `${dir}/x.igvm`,
      "--author-public-key",
      `${dir}/id.pub`,
    ]);
    assertEquals(bad.code, 1);
    assert(bad.stderr.includes("does not verify over the ID public key"), bad.stderr);
    assert(!listHas(dir, "x.igvm"));
    const usage = await runCli([...offline, "-o", `${dir}/y.igvm`]);
    assertEquals(usage.code, 2);
    assert(usage.stderr.includes("--author-signature and --author-public-key go together"));
    Deno.removeSync(dir, { recursive: true });
  },
});

function listHas(dir: string, name: string): boolean {
  return [...Deno.readDirSync(dir)].some((e) => e.name === name);
}

Deno.test("sign --matrix -author_key: ID_AUTH_INFO carries AUTHOR_KEY_ALGO, ID_KEY_SIG and AUTHOR_KEY", async () => {
  const dir = tempDir();
  Deno.writeFileSync(`${dir}/in.igvm`, await generateImage(["-target", "qemu-kvm"]));
  const r = await runCli([
    "sign",
    `${dir}/in.igvm`,
    "--matrix",
    "--vcpus",
    "1,2",
    "--cpu",
    "milan",
    "-sign_key",
    ID_KEY,
    "-author_key",
    AUTHOR_KEY,
    "--id-blocks-out",
    `${dir}/blocks.json`,
  ]);
  assertEquals(r.code, 0, r.stderr);
  const doc = JSON.parse(Deno.readTextFileSync(`${dir}/blocks.json`));
  assertEquals(doc.authorKeyEnabled, true);
  const id = await key(ID_KEY);
  const author = await key(AUTHOR_KEY);
  for (const b of doc.idBlocks) {
    const auth = Uint8Array.from(atob(b.idAuth), (c) => c.charCodeAt(0));
    const v = new DataView(auth.buffer);
    assertEquals([v.getUint32(0x00, true), v.getUint32(0x04, true)], [1, 1]);
    assertEquals(auth.slice(0x240, 0x644), encodeSevEcdsaPublicKey(id));
    assertEquals(auth.slice(0x880, 0xc84), encodeSevEcdsaPublicKey(author));
    const be = (at: number) => fromLittleEndian72(auth.subarray(at, at + 72));
    const signature = { r: be(0x680), s: be(0x680 + 0x48) };
    assert(await verifyAuthorSignature(id, { signature, key: author }));
  }
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("attest compares AUTHOR_KEY_DIGEST with the image's author key", async () => {
  // The report is not signed: only the checks against the image are looked at here.
  const dir = tempDir();
  const image = `${dir}/a.igvm`;
  Deno.writeFileSync(
    image,
    await generateImage([
      "-sign_key",
      ID_KEY,
      "-sign_deterministic",
      "true",
      "-author_key",
      AUTHOR_KEY,
    ]),
  );
  const ld = (await inspectJson(image)).launchDigest;
  const report = new Uint8Array(1184);
  const v = new DataView(report.buffer);
  v.setUint32(0, 2, true);
  v.setUint32(4, 2, true);
  v.setBigUint64(8, 0x3001fn, true);
  report[0x10] = 1;
  report[0x20] = 2;
  v.setUint32(0x34, 1, true);
  v.setUint32(0x48, 1, true); // AUTHOR_KEY_EN
  const put = (hex: string, at: number) =>
    report.set(hex.match(/../g)!.map((x) => parseInt(x, 16)), at);
  put(ld, 0x90);
  put(ID_DIGEST, 0xe0);
  put(AUTHOR_DIGEST, 0x110);
  Deno.writeFileSync(`${dir}/r.bin`, report);
  const good = await attest({ report: `${dir}/r.bin`, images: [image] });
  const named = (r: typeof good, name: string) => r.checks.find((c) => c.name.startsWith(name))!;
  assert(named(good, "AUTHOR_KEY_DIGEST").ok, JSON.stringify(good.checks));
  assert(named(good, "ID_KEY_DIGEST").ok);
  report.fill(0, 0x110, 0x140);
  v.setUint32(0x48, 0, true);
  Deno.writeFileSync(`${dir}/r.bin`, report);
  const bad = await attest({ report: `${dir}/r.bin`, images: [image] });
  assert(!named(bad, "AUTHOR_KEY_DIGEST").ok);
  assert(named(bad, "AUTHOR_KEY_DIGEST").detail.includes(AUTHOR_DIGEST));
  Deno.removeSync(dir, { recursive: true });
});
