/**
 * Offline signing with openssl as the external signer: `sign --payload-out`, then
 * `openssl dgst -sha384 -sign`, then `sign --id-signature --id-public-key`; and every
 * refusal, each of which writes nothing.
 */
import { assert, assertEquals } from "./assert.ts";
import { FIXTURES, HAVE_SHARED, runCli, SHARED, tempDir } from "./helpers.ts";
import { assertRefused, HAVE_OPENSSL, openssl } from "./sign_helpers.ts";
import { parseEcdsaSignature, parseP384PublicKey } from "../lib/measure/public_key.ts";

const IMAGE = `${SHARED}golden/tb2_payload.igvm`;
const OTHER = `${SHARED}golden/elf_x86.igvm`;

/** The ID block body's signature field (R and S): the only bytes a signer's nonce changes. */
const SIG_START = 0x68;
const SIG_END = 0xf8;

function idBlockAt(bytes: Uint8Array): number {
  const v = new DataView(bytes.buffer, bytes.byteOffset);
  const end = v.getUint32(8, true) + v.getUint32(12, true);
  for (let at = v.getUint32(8, true); at < end;) {
    if (v.getUint32(at, true) === 0x30b) return at + 8;
    at += Math.ceil((8 + v.getUint32(at + 4, true)) / 8) * 8;
  }
  throw new Error("no ID block");
}

/** A key pair with openssl: SEC1 private key, PEM public key, a self-signed certificate. */
function makeKeys(dir: string, name: string, curve = "secp384r1") {
  const key = `${dir}/${name}.pem`;
  openssl("ecparam", "-name", curve, "-genkey", "-noout", "-out", key);
  const pub = `${dir}/${name}.pub.pem`;
  openssl("ec", "-in", key, "-pubout", "-out", pub);
  const cert = `${dir}/${name}.crt`;
  openssl(
    "req",
    "-new",
    "-x509",
    "-key",
    key,
    "-subj",
    "/CN=igvmgen test ID key",
    "-days",
    "1",
    "-out",
    cert,
  );
  return { key, pub, cert };
}

const sign = (dir: string, key: string, payload: string, out = `${dir}/sig.der`) => {
  openssl("dgst", "-sha384", "-sign", key, "-out", out, payload);
  return out;
};

/** `sign IMAGE -o OUT --id-signature SIG --id-public-key KEY EXTRA...`. */
const attachArgs = (out: string, key: string, sig: string, extra: string[] = []) => [
  "sign",
  IMAGE,
  "-o",
  out,
  "--id-signature",
  sig,
  "--id-public-key",
  key,
  ...extra,
];

Deno.test({
  name: "sign --payload-out, openssl dgst -sha384 -sign, sign --id-signature: a valid ID block",
  ignore: !HAVE_SHARED || !HAVE_OPENSSL,
  async fn() {
    const dir = tempDir();
    try {
      const { key, pub, cert } = makeKeys(dir, "id");
      let r = await runCli(["sign", IMAGE, "--payload-out", `${dir}/p.bin`]);
      assertEquals(r.code, 0, r.stderr);
      const payload = Deno.readFileSync(`${dir}/p.bin`);
      assertEquals(payload.length, 96);
      const sig = sign(dir, key, `${dir}/p.bin`);
      // openssl itself accepts the signature over the payload.
      openssl("dgst", "-sha384", "-verify", pub, "-signature", sig, `${dir}/p.bin`);
      const attach = async (k: string, s: string, out: string, extra: string[] = []) => {
        const res = await runCli(attachArgs(out, k, s, extra));
        assertEquals(res.code, 0, res.stderr);
        return Deno.readFileSync(out);
      };
      const withPub = await attach(pub, sig, `${dir}/pub.igvm`);
      const withCert = await attach(cert, sig, `${dir}/cert.igvm`, ["--payload", `${dir}/p.bin`]);
      // Raw r||s (the P1363 form) from openssl's DER, converted here by hand.
      const der = Deno.readFileSync(sig);
      const parsed = parseEcdsaSignature(der);
      const raw = new Uint8Array(96);
      raw.set(parsed.r, 0);
      raw.set(parsed.s, 48);
      Deno.writeFileSync(`${dir}/sig.raw`, raw);
      const withRaw = await attach(pub, `${dir}/sig.raw`, `${dir}/raw.igvm`);
      assertEquals(withCert, withPub);
      assertEquals(withRaw, withPub);
      // The result verifies, and equals signing with the private key but for the signature.
      r = await runCli(["verify", `${dir}/pub.igvm`]);
      assertEquals(r.code, 0, r.stdout);
      r = await runCli(["sign", IMAGE, "-o", `${dir}/direct.igvm`, "-sign_key", key]);
      assertEquals(r.code, 0, r.stderr);
      const direct = Deno.readFileSync(`${dir}/direct.igvm`);
      const at = idBlockAt(direct);
      assertEquals(direct.length, withPub.length);
      const differs = [...direct.keys()].filter((i) => direct[i] !== withPub[i]);
      assert(differs.length > 0);
      for (const i of differs) {
        assert(
          (i >= at + SIG_START && i < at + SIG_END) || i === 0x14 || i === 0x15 || i === 0x16 ||
            i === 0x17,
          `byte 0x${i.toString(16)} differs outside the signature and the CRC`,
        );
      }
      // The public key in the ID block is openssl's.
      const k = parseP384PublicKey(Deno.readFileSync(pub));
      const qx = withPub.subarray(at + 0xf8 + 8, at + 0xf8 + 8 + 48).slice().reverse();
      assertEquals(qx, k.x);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "sign --id-signature refuses, writing nothing: bad signature, wrong key, P-256, other image, other fields",
  ignore: !HAVE_SHARED || !HAVE_OPENSSL,
  async fn() {
    const dir = tempDir();
    try {
      const { key, pub } = makeKeys(dir, "id");
      const other = makeKeys(dir, "other");
      const p256 = makeKeys(dir, "p256", "prime256v1");
      const out = `${dir}/out.igvm`;
      let r = await runCli(["sign", IMAGE, "--payload-out", `${dir}/p.bin`]);
      assertEquals(r.code, 0, r.stderr);
      const sig = sign(dir, key, `${dir}/p.bin`);
      const attach = (k: string, s: string, extra: string[] = []) => attachArgs(out, k, s, extra);
      // 1. The signature does not verify with that key (signed by another key).
      await assertRefused(attach(other.pub, sig), out, "does not verify");
      // 2. The key is not P-384.
      const sig256 = sign(dir, p256.key, `${dir}/p.bin`, `${dir}/sig256.der`);
      await assertRefused(attach(p256.pub, sig256), out, "P-256; the ID key must be P-384");
      // 3. A payload from another image: properly signed, but its digest is not this file's.
      r = await runCli(["sign", OTHER, "--payload-out", `${dir}/other.bin`]);
      assertEquals(r.code, 0, r.stderr);
      const sigOther = sign(dir, key, `${dir}/other.bin`, `${dir}/sig-other.der`);
      await assertRefused(
        attach(pub, sigOther, ["--payload", `${dir}/other.bin`]),
        out,
        "the payload is for another image",
      );
      // ... and without --payload the recomputed payload makes the signature fail.
      await assertRefused(
        attach(pub, sigOther),
        out,
        "does not verify over the payload recomputed",
      );
      // 4. The payload's fields do not match the options (made with a config, attached without).
      const config = ["-config_file", `${FIXTURES}tei-config.json`];
      r = await runCli(["sign", IMAGE, "--payload-out", `${dir}/cfg.bin`, ...config]);
      assertEquals(r.code, 0, r.stderr);
      const sigCfg = sign(dir, key, `${dir}/cfg.bin`, `${dir}/sig-cfg.der`);
      await assertRefused(
        attach(pub, sigCfg, ["--payload", `${dir}/cfg.bin`]),
        out,
        "the payload's family id 12161a1b12161a1b12161a1b12161a1b differs from the options'",
      );
      // With the same options it is accepted.
      r = await runCli([...attach(pub, sigCfg, ["--payload", `${dir}/cfg.bin`]), ...config]);
      assertEquals(r.code, 0, r.stderr);
      Deno.removeSync(out);
      // Malformed inputs.
      Deno.writeFileSync(`${dir}/junk.sig`, new Uint8Array(50).fill(7));
      await assertRefused(attach(pub, `${dir}/junk.sig`), out, "neither a DER ECDSA signature");
      await assertRefused(attach(key, sig), out, "a private key");
      Deno.writeFileSync(`${dir}/short.bin`, new Uint8Array(95));
      await assertRefused(
        attach(pub, sig, ["--payload", `${dir}/short.bin`]),
        out,
        "95 bytes",
      );
      await assertRefused(
        ["sign", IMAGE, "-o", out, "--id-signature", sig],
        out,
        "go together",
        2,
      );
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test("parseEcdsaSignature() reads DER with leading-zero INTEGERs and 96 raw bytes", () => {
  const r = new Uint8Array(48).fill(0x80);
  const s = new Uint8Array(48);
  s[47] = 5;
  // r needs a 00 pad (high bit set); s is short (one byte) in DER.
  const der = new Uint8Array([0x30, 2 + 49 + 3, 0x02, 49, 0, ...r, 0x02, 1, 5]);
  const parsed = parseEcdsaSignature(der);
  assertEquals(parsed.format, "der");
  assertEquals(parsed.r, r);
  assertEquals(parsed.s, s);
  const raw = new Uint8Array(96).fill(1);
  assertEquals(parseEcdsaSignature(raw).format, "raw");
});

Deno.test({
  name:
    "sign --payload-out - pipes the payload to a signer; sign -o - writes the signed file to standard output",
  ignore: !HAVE_SHARED || !HAVE_OPENSSL,
  async fn() {
    const dir = tempDir();
    try {
      const piped = await runCli(["sign", IMAGE, "--payload-out", "-"]);
      assertEquals(piped.code, 0, piped.stderr);
      let r = await runCli(["sign", IMAGE, "--payload-out", `${dir}/p.bin`]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout, "");
      assertEquals(piped.stdoutBytes, Deno.readFileSync(`${dir}/p.bin`));
      const key = `${SHARED}fixtures/test-key.pem`;
      const det = ["-sign_key", key, "-sign_deterministic", "true"];
      r = await runCli(["sign", IMAGE, "-o", "-", ...det]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdoutBytes, Deno.readFileSync(IMAGE));
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
