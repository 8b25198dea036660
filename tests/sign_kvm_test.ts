/**
 * `sign` for KVM hosts: `--loader qemu-kvm --vcpus N --cpu C` signs the digest `measure`
 * gives for that host (also offline), and `sign --matrix` writes one ID block per host, as
 * JSON in QEMU's id-block/id-auth layouts (checked at the firmware ABI's offsets) and as
 * signed files. openssl is the independent key source and offline signer.
 */
import { assert, assertEquals } from "./assert.ts";
import { generateImage, runCli, tempDir } from "./helpers.ts";
import { assertRefused, HAVE_OPENSSL, openssl } from "./sign_helpers.ts";
import { readIgvmFile } from "../lib/igvm/reader.ts";
import { IGVM_VHS_SNP_ID_BLOCK, IGVM_VHT_SNP_ID_BLOCK } from "../lib/igvm/defs.ts";
import { toHex } from "../lib/bytes/le.ts";

/** A P-384 key from openssl; its public point from openssl's DER SubjectPublicKeyInfo. */
function opensslKey(dir: string) {
  const key = `${dir}/id.pem`;
  openssl("ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", key);
  const pub = `${dir}/id.pub.pem`;
  openssl("ec", "-in", key, "-pubout", "-out", pub);
  const spki = openssl("ec", "-in", key, "-pubout", "-outform", "DER");
  // The SPKI ends with the uncompressed point 04 || x || y.
  const point = spki.subarray(spki.length - 97);
  assertEquals(point[0], 4);
  return { key, pub, spki, x: point.slice(1, 49), y: point.slice(49, 97) };
}

function idBlockLd(bytes: Uint8Array): string {
  const d = readIgvmFile(bytes).directives.find((x) => x.type === IGVM_VHT_SNP_ID_BLOCK)!;
  return toHex(d.body.subarray(IGVM_VHS_SNP_ID_BLOCK.off.Ld, IGVM_VHS_SNP_ID_BLOCK.off.Ld + 48));
}

async function measure(path: string, vcpus: number, cpu: string, loader = "qemu-kvm") {
  const r = await runCli([
    "measure",
    "--loader",
    loader,
    "--vcpus",
    String(vcpus),
    "--cpu",
    cpu,
    path,
  ]);
  assertEquals(r.code, 0, r.stderr);
  return r.stdout.trim();
}

/**
 * Runs `fn` with a fresh folder holding `in.igvm`, a `-target qemu-kvm` image of a synthetic
 * kernel (generated once for all tests); the folder is removed afterwards.
 */
async function withKvmImage(fn: (dir: string, input: string) => Promise<void>): Promise<void> {
  const dir = tempDir();
  try {
    kvmImage ??= generateImage(["-target", "qemu-kvm"]);
    Deno.writeFileSync(`${dir}/in.igvm`, await kvmImage);
    await fn(dir, `${dir}/in.igvm`);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}
let kvmImage: Promise<Uint8Array> | undefined;

const fromBase64 = (b: string) => Uint8Array.from(atob(b), (c) => c.charCodeAt(0));
/** Little-endian, zero-extended 72 bytes -> big-endian 48. */
const be48 = (le: Uint8Array) => le.slice(0, 48).reverse();

Deno.test({
  name:
    "sign --loader qemu-kvm --vcpus 2 --cpu genoa: the ID block and -measurement_file hold measure's digest for that host",
  ignore: !HAVE_OPENSSL,
  async fn() {
    await withKvmImage(async (dir, input) => {
      const { key } = opensslKey(dir);
      for (
        const [loader, vcpus, cpu] of [["qemu-kvm", 2, "genoa"], ["ch-kvm", 3, "milan"]] as const
      ) {
        const out = `${dir}/${loader}.igvm`;
        const r = await runCli([
          "sign",
          input,
          "-o",
          out,
          "-sign_key",
          key,
          "--loader",
          loader,
          "--vcpus",
          String(vcpus),
          "--cpu",
          cpu,
          "-measurement_file",
          `${dir}/m.json`,
        ]);
        assertEquals(r.code, 0, r.stderr);
        const expected = await measure(input, vcpus, cpu, loader);
        assertEquals(idBlockLd(Deno.readFileSync(out)), expected);
        const json = JSON.parse(Deno.readTextFileSync(`${dir}/m.json`));
        assertEquals(json["x-ms-sevsnpvm-launchmeasurement"], expected);
        assert(r.stderr.includes(`${vcpus} vCPUs, ${cpu}`), r.stderr);
        // The loader's launch check (which compares the ID block) passes for that host only.
        const ok = await runCli([
          "verify",
          "--loader",
          loader,
          "--vcpus",
          String(vcpus),
          "--cpu",
          cpu,
          out,
        ]);
        assertEquals(ok.code, 0, ok.stdout);
      }
      const other = await runCli([
        "verify",
        "--loader",
        "qemu-kvm",
        "--vcpus",
        "2",
        "--cpu",
        "milan",
        `${dir}/qemu-kvm.igvm`,
      ]);
      assertEquals(other.code, 1, other.stdout);
      assert(other.stdout.includes("ID block"), other.stdout);
    });
  },
});

Deno.test({
  name:
    "sign --loader qemu-kvm --vcpus 4 --cpu milan offline: the payload has that host's digest; a payload or signature for another host is refused",
  ignore: !HAVE_OPENSSL,
  async fn() {
    await withKvmImage(async (dir, input) => {
      const { key, pub } = opensslKey(dir);
      const host = ["--loader", "qemu-kvm", "--vcpus", "4", "--cpu", "milan"];
      let r = await runCli(["sign", input, "--payload-out", `${dir}/p.bin`, ...host]);
      assertEquals(r.code, 0, r.stderr);
      const payload = Deno.readFileSync(`${dir}/p.bin`);
      assertEquals(toHex(payload.subarray(0, 48)), await measure(input, 4, "milan"));
      openssl("dgst", "-sha384", "-sign", key, "-out", `${dir}/sig.der`, `${dir}/p.bin`);
      const attach = ["sign", input, "--id-signature", `${dir}/sig.der`, "--id-public-key", pub];
      r = await runCli([...attach, "-o", `${dir}/out.igvm`, "--payload", `${dir}/p.bin`, ...host]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(idBlockLd(Deno.readFileSync(`${dir}/out.igvm`)), toHex(payload.subarray(0, 48)));
      // Attaching for another host: the payload's digest is not that host's ...
      const genoa = ["--loader", "qemu-kvm", "--vcpus", "4", "--cpu", "genoa"];
      await assertRefused(
        [...attach, "-o", `${dir}/no.igvm`, "--payload", `${dir}/p.bin`, ...genoa],
        `${dir}/no.igvm`,
        "4 vCPUs, genoa",
      );
      // ... and without --payload, the signature does not verify over that host's payload.
      await assertRefused(
        [...attach, "-o", `${dir}/no.igvm`, "--loader", "qemu-kvm"],
        `${dir}/no.igvm`,
        "does not verify",
      );
    });
  },
});

Deno.test("sign --vcpus/--cpu/--matrix: the command-line errors exit 2 with one line and write nothing", async () => {
  await withKvmImage(async (dir, input) => {
    const out = `${dir}/out.igvm`;
    const cases: [string[], string][] = [
      [["-o", out, "-sign_key", input, "--vcpus", "2"], "go with a KVM loader"],
      [["-o", out, "-sign_key", input, "--loader", "ch-mshv", "--cpu", "milan"], "KVM loader"],
      [["-o", out, "-sign_key", input, "--loader", "qemu-kvm", "--vcpus", "2"], "needs --cpu"],
      [["-o", out, "-sign_key", input, "--loader", "qemu-kvm", "--vcpus", "0"], "--vcpus"],
      [["-o", out, "-sign_key", input, "--loader", "qemu-kvm", "--cpu", "zen9"], "--cpu"],
      [["-o", out, "-sign_key", input, "--id-blocks-out", out], "goes with --matrix"],
      [["--matrix", "--vcpus", "1,2", "-sign_key", input, "--id-blocks-out", out], "--cpu lists"],
      [[
        "--matrix",
        "--vcpus",
        "1,2",
        "--cpu",
        "milan",
        "-sign_key",
        input,
        "-o",
        `${dir}/out-{cpu}.igvm`,
      ], "put {vcpus} and {cpu}"],
      [["--matrix", "--vcpus", "1,1", "--cpu", "milan", "--payload-out", out], "listed twice"],
      [["--matrix", "--loader", "hyperv", "--vcpus", "1", "--cpu", "milan"], "not a KVM loader"],
      [["--matrix", "--vcpus", "1", "--cpu", "milan", "-sign_key", input], "no output"],
      [[
        "--matrix",
        "--vcpus",
        "1",
        "--cpu",
        "milan",
        "--payload-out",
        `${dir}/p-{vcpus}-{cpu}`,
        "--id-blocks-out",
        out,
      ], "writes only the payloads"],
    ];
    for (const [args, text] of cases) {
      await assertRefused(["sign", input, ...args], out, text, 2);
    }
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["in.igvm"]);
  });
});

Deno.test({
  name:
    "sign --matrix --id-blocks-out: per host, measure's digest, a signature WebCrypto verifies, ID_AUTH_INFO at the ABI's offsets; -o writes one signed file per host",
  ignore: !HAVE_OPENSSL,
  async fn() {
    await withKvmImage(async (dir, input) => {
      const k = opensslKey(dir);
      const r = await runCli([
        "sign",
        input,
        "--matrix",
        "--vcpus",
        "1,2,4",
        "--cpu",
        "milan,genoa",
        "-sign_key",
        k.key,
        "--id-blocks-out",
        `${dir}/blocks.json`,
        "-o",
        `${dir}/out-{vcpus}-{cpu}.igvm`,
      ]);
      assertEquals(r.code, 0, r.stderr);
      const doc = JSON.parse(Deno.readTextFileSync(`${dir}/blocks.json`));
      assertEquals([doc.schema, doc.loader, doc.file, doc.idBlocks.length], [
        "igvmgen-id-blocks/1",
        "qemu-kvm",
        input,
        6,
      ]);
      const pubKey = await crypto.subtle.importKey(
        "spki",
        k.spki as Uint8Array<ArrayBuffer>,
        { name: "ECDSA", namedCurve: "P-384" },
        false,
        ["verify"],
      );
      const combos = doc.idBlocks.map((b: { vcpus: number; cpu: string }) => `${b.vcpus}/${b.cpu}`);
      assertEquals(combos.sort(), [
        "1/genoa",
        "1/milan",
        "2/genoa",
        "2/milan",
        "4/genoa",
        "4/milan",
      ]);
      for (const b of doc.idBlocks) {
        const expected = await measure(input, b.vcpus, b.cpu);
        assertEquals(b.launchDigest, expected);
        assertEquals(b.signature, b.cpu === "milan" ? "0x00a00f11" : "0x00a10f10");
        // The ID block: SNP_ID_BLOCK, 96 bytes: LD, family and image id, version, SVN, policy.
        const block = fromBase64(b.idBlock);
        assertEquals(block.length, 96);
        assertEquals(toHex(block.subarray(0, 48)), expected);
        const bv = new DataView(block.buffer);
        assertEquals(bv.getUint32(80, true), 1); // version
        assertEquals("0x" + bv.getBigUint64(88, true).toString(16), doc.policy);
        // ID_AUTH_INFO (firmware ABI): ID_KEY_ALGO 0x00 = 1 (ECDSA P-384 SHA-384),
        // AUTH_KEY_ALGO 0x04 = 0, ID_BLOCK_SIG at 0x40 (R 0x40, S 0x88, 72 bytes LE each),
        // ID_KEY at 0x240 (CURVE 0x240 = 2 for P-384, QX 0x244, QY 0x28C), the rest zero.
        const auth = fromBase64(b.idAuth);
        assertEquals(auth.length, 4096);
        const av = new DataView(auth.buffer);
        assertEquals([av.getUint32(0x00, true), av.getUint32(0x04, true)], [1, 0]);
        assertEquals(av.getUint32(0x240, true), 2);
        assertEquals(be48(auth.subarray(0x244, 0x244 + 72)), k.x);
        assertEquals(be48(auth.subarray(0x28c, 0x28c + 72)), k.y);
        const used = [[0x00, 0x08], [0x40, 0x40 + 144], [0x240, 0x240 + 4 + 144]];
        const stray = [...auth.keys()].filter((i) =>
          auth[i] !== 0 && !used.some(([a, z]) => i >= a && i < z)
        );
        assertEquals(stray, []);
        for (const at of [0x40 + 48, 0x88 + 48, 0x244 + 48, 0x28c + 48]) {
          assert(
            auth.subarray(at, at + 24).every((x) => x === 0),
            `padding at 0x${at.toString(16)}`,
          );
        }
        const sig = new Uint8Array(96);
        sig.set(be48(auth.subarray(0x40, 0x40 + 72)), 0);
        sig.set(be48(auth.subarray(0x88, 0x88 + 72)), 48);
        const ok = await crypto.subtle.verify(
          { name: "ECDSA", hash: "SHA-384" },
          pubKey,
          sig,
          block,
        );
        // WebCrypto takes only a low s; (r, n - s) verifies exactly when (r, s) does.
        const okHigh = ok || await verifyHighS(pubKey, sig, block);
        assert(okHigh, `the signature for ${b.vcpus}/${b.cpu} does not verify`);
        // The signed file of that host carries the same digest.
        const file = Deno.readFileSync(`${dir}/out-${b.vcpus}-${b.cpu}.igvm`);
        assertEquals(idBlockLd(file), expected);
      }
      const v = await runCli([
        "verify",
        "--loader",
        "qemu-kvm",
        "--vcpus",
        "4",
        "--cpu",
        "genoa",
        `${dir}/out-4-genoa.igvm`,
      ]);
      assertEquals(v.code, 0, v.stdout);
    });
  },
});

const P384_N =
  0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n;

async function verifyHighS(key: CryptoKey, sig: Uint8Array, data: Uint8Array) {
  let s = 0n;
  for (const b of sig.subarray(48)) s = (s << 8n) | BigInt(b);
  let low = P384_N - s;
  const out = sig.slice();
  for (let i = 95; i >= 48; i--, low >>= 8n) out[i] = Number(low & 0xffn);
  return await crypto.subtle.verify(
    { name: "ECDSA", hash: "SHA-384" },
    key,
    out,
    data as Uint8Array<ArrayBuffer>,
  );
}

Deno.test({
  name:
    "sign --matrix offline: --payload-out per host, openssl signs each, --id-signature attaches them; a swapped signature is refused and nothing is written",
  ignore: !HAVE_OPENSSL,
  async fn() {
    await withKvmImage(async (dir, input) => {
      const { key, pub } = opensslKey(dir);
      const matrix = ["--matrix", "--vcpus", "1,2", "--cpu", "milan,genoa"];
      let r = await runCli([
        "sign",
        input,
        ...matrix,
        "--payload-out",
        `${dir}/p-{vcpus}-{cpu}.bin`,
      ]);
      assertEquals(r.code, 0, r.stderr);
      for (const [n, cpu] of [[1, "milan"], [2, "milan"], [1, "genoa"], [2, "genoa"]] as const) {
        const p = `${dir}/p-${n}-${cpu}.bin`;
        assertEquals(toHex(Deno.readFileSync(p).subarray(0, 48)), await measure(input, n, cpu));
        openssl("dgst", "-sha384", "-sign", key, "-out", `${dir}/s-${n}-${cpu}.der`, p);
      }
      const attach = [
        "sign",
        input,
        ...matrix,
        "--id-signature",
        `${dir}/s-{vcpus}-{cpu}.der`,
        "--id-public-key",
        pub,
        "--id-blocks-out",
        `${dir}/blocks.json`,
      ];
      r = await runCli(attach);
      assertEquals(r.code, 0, r.stderr);
      const doc = JSON.parse(Deno.readTextFileSync(`${dir}/blocks.json`));
      for (const b of doc.idBlocks) {
        assertEquals(
          toHex(fromBase64(b.idBlock)),
          toHex(Deno.readFileSync(`${dir}/p-${b.vcpus}-${b.cpu}.bin`)),
        );
      }
      Deno.removeSync(`${dir}/blocks.json`);
      // The 2-vCPU signatures swapped between the CPU models: refused, nothing written.
      Deno.renameSync(`${dir}/s-2-milan.der`, `${dir}/tmp.der`);
      Deno.renameSync(`${dir}/s-2-genoa.der`, `${dir}/s-2-milan.der`);
      Deno.renameSync(`${dir}/tmp.der`, `${dir}/s-2-genoa.der`);
      await assertRefused(attach, `${dir}/blocks.json`, "2 vCPUs, milan");
    });
  },
});

Deno.test({
  name:
    "sign --matrix where QEMU's order is not file order (a hyperv image) and for ch-kvm: the full models' digests",
  ignore: !HAVE_OPENSSL,
  async fn() {
    const dir = tempDir();
    try {
      const { key } = opensslKey(dir);
      Deno.writeFileSync(`${dir}/h.igvm`, await generateImage([]));
      Deno.writeFileSync(`${dir}/c.igvm`, await generateImage(["-target", "ch-kvm"]));
      for (const [input, loader] of [["h.igvm", "qemu-kvm"], ["c.igvm", "ch-kvm"]]) {
        const r = await runCli([
          "sign",
          `${dir}/${input}`,
          "--matrix",
          "--loader",
          loader,
          "--vcpus",
          "1,3",
          "--cpu",
          "milan,genoa",
          "-sign_key",
          key,
          "--id-blocks-out",
          `${dir}/${loader}.json`,
        ]);
        assertEquals(r.code, 0, r.stderr);
        const doc = JSON.parse(Deno.readTextFileSync(`${dir}/${loader}.json`));
        assertEquals(doc.idBlocks.length, 4);
        for (const b of doc.idBlocks) {
          assertEquals(b.launchDigest, await measure(`${dir}/${input}`, b.vcpus, b.cpu, loader));
        }
      }
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
