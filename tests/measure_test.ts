import { crc32 } from "../lib/bytes/crc32.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { toHex } from "../lib/bytes/le.ts";
import { sha384 } from "../lib/hash/wasm_sha384.ts";
import {
  encodePageInfo,
  SNP_PAGE_INFO,
  SNP_PAGE_TYPE_CPUID,
  SNP_PAGE_TYPE_NORMAL,
  SnpLaunchDigest,
} from "../lib/measure/snp_digest.ts";
import {
  encodeSnpIdBlock,
  fromLittleEndian72,
  signIdBlock,
  toLittleEndian72,
  verifyIdBlock,
} from "../lib/measure/id_block.ts";
import {
  generateP384Key,
  KeyError,
  keyFromScalar,
  P384_N,
  parseP384PrivateKeyPem,
} from "../lib/measure/signing_key.ts";
import {
  ConfigError,
  DEFAULT_SNP_POLICY,
  defaultIdBlockConfig,
  parseTeiConfig,
} from "../lib/measure/tei_config.ts";
import { FIXTURES, HAVE_SHARED } from "./helpers.ts";
import { createPrivateKey, generateKeyPairSync } from "node:crypto";

// Known answers computed with Python's hashlib and zlib.
const SHA384_ZERO_PAGE =
  "c0e59a3e3ffbd3b5c75428fb36432facabc745944296ff515f737c4fef4efc64586809f7a16f56354a1eaecf2aa8d774";

Deno.test("sha384() of a zero page matches the known answer", () => {
  assertEquals(toHex(sha384(new Uint8Array(4096))), SHA384_ZERO_PAGE);
});

Deno.test("CRC-32 (zlib) of '123456789' is 0xcbf43926", () => {
  assertEquals(crc32(new TextEncoder().encode("123456789")) >>> 0, 0xcbf43926);
});

Deno.test("encodePageInfo() lays out a PAGE_INFO record of 0x70 bytes", () => {
  assertEquals(SNP_PAGE_INFO.size, 0x70);
  const cur = new Uint8Array(48).fill(0xaa);
  const contents = new Uint8Array(48).fill(0xbb);
  const info = encodePageInfo(cur, contents, SNP_PAGE_TYPE_CPUID, 0x1234_5000_0000);
  assertEquals(info.length, 0x70);
  assertEquals([...info.subarray(0, 48)], [...cur]);
  assertEquals([...info.subarray(48, 96)], [...contents]);
  assertEquals([...info.subarray(96, 112)], [
    0x70,
    0,
    6,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0x50,
    0x34,
    0x12,
    0,
    0,
  ]);
});

Deno.test("SnpLaunchDigest.extend() of one normal page matches a digest computed by hand", () => {
  // SHA-384(zeros[48] || SHA-384(0x01 * 4096) || 70 00 01 00 00000000 GPA 0x1000), by Python.
  const d = new SnpLaunchDigest();
  d.extend(0x1000, SNP_PAGE_TYPE_NORMAL, new Uint8Array(4096).fill(1));
  assertEquals(
    toHex(d.value),
    "432b9a795510fbf3c79647ee3af4147e697431e01873b0a7b4a4a68cd9f0d7e649c54bb70b84c23cc3a7c105bf9c8387",
  );
});

Deno.test("SnpLaunchDigest.extend() measures a CPUID page by zeros, not its contents", () => {
  const a = new SnpLaunchDigest();
  const b = new SnpLaunchDigest();
  a.extend(0x800000, SNP_PAGE_TYPE_CPUID, new Uint8Array(4096).fill(7));
  b.extend(0x800000, SNP_PAGE_TYPE_CPUID);
  assertEquals(toHex(a.value), toHex(b.value));
  assertThrows(
    () => new SnpLaunchDigest().extend(0, SNP_PAGE_TYPE_NORMAL),
    Error,
    "needs its contents",
  );
});

Deno.test("toLittleEndian72() and fromLittleEndian72() are inverse", () => {
  const be = Uint8Array.from({ length: 48 }, (_, i) => i + 1);
  const le = toLittleEndian72(be);
  assertEquals(le.length, 72);
  assertEquals(le[0], 48);
  assertEquals([...le.subarray(48)], new Array(24).fill(0));
  assertEquals([...fromLittleEndian72(le)], [...be]);
});

Deno.test("signIdBlock() is RFC 6979 deterministic and verifies; random mode differs", async () => {
  const key = await keyFromScalar(Uint8Array.from({ length: 48 }, (_, i) => i + 3));
  const block = encodeSnpIdBlock(new Uint8Array(48).fill(9), defaultIdBlockConfig());
  const a = await signIdBlock(block, key, true);
  const b = await signIdBlock(block, key, true);
  assertEquals(toHex(a.r) + toHex(a.s), toHex(b.r) + toHex(b.s));
  assert(await verifyIdBlock(block, a.r, a.s, key.x, key.y));
  const c = await signIdBlock(block, key, false);
  assert(toHex(c.r) !== toHex(a.r), "random nonces give another r");
  assert(await verifyIdBlock(block, c.r, c.s, key.x, key.y));
  const tampered = block.slice();
  tampered[80] ^= 1;
  assertEquals(await verifyIdBlock(tampered, a.r, a.s, key.x, key.y), false);
});

/** DER of an ECDSA signature (SEQUENCE of the INTEGERs r and s), as openssl reads it. */
function derSignature(r: Uint8Array, s: Uint8Array): Uint8Array {
  const integer = (be: Uint8Array) => {
    let i = 0;
    while (i < be.length - 1 && be[i] === 0) i++;
    const body = be[i] & 0x80 ? [0, ...be.subarray(i)] : [...be.subarray(i)];
    return [0x02, body.length, ...body];
  };
  const body = [...integer(r), ...integer(s)];
  return new Uint8Array([0x30, body.length, ...body]);
}

Deno.test("signIdBlock() with random nonces: openssl verifies each signature; r differs and s is high about half of the time", async () => {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
  const key = await parseP384PrivateKeyPem(
    privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
  );
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-ecdsa-" });
  try {
    await Deno.writeTextFile(
      `${dir}/pub.pem`,
      publicKey.export({ format: "pem", type: "spki" }).toString(),
    );
    const rs = new Set<string>();
    let high = 0;
    const rounds = 16;
    for (let i = 0; i < rounds; i++) {
      const block = encodeSnpIdBlock(new Uint8Array(48).fill(i), defaultIdBlockConfig());
      const { r, s } = await signIdBlock(block, key, false);
      rs.add(toHex(r));
      if (BigInt("0x" + toHex(s)) > P384_N / 2n) high++;
      await Deno.writeFile(`${dir}/block`, block);
      await Deno.writeFile(`${dir}/sig.der`, derSignature(r, s));
      const out = await new Deno.Command("openssl", {
        args: ["dgst", "-sha384", "-verify", `${dir}/pub.pem`, "-signature", `${dir}/sig.der`],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
        cwd: dir,
      }).spawn();
      const writer = out.stdin.getWriter();
      await writer.write(block);
      await writer.close();
      const result = await out.output();
      assertEquals(new TextDecoder().decode(result.stdout).trim(), "Verified OK", `signature ${i}`);
    }
    assertEquals(rs.size, rounds, "a fresh nonce each time");
    assert(
      high > 0 && high < rounds,
      `s is left high or low as it comes (${high} of ${rounds} high)`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a parsed or generated key keeps its WebCrypto signer; signing with it gives the same bytes as from d, x, y", async () => {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
  const pems = (["sec1", "pkcs8"] as const).map((type) =>
    privateKey.export({ format: "pem", type }).toString()
  );
  const block = encodeSnpIdBlock(new Uint8Array(48).fill(7), defaultIdBlockConfig());
  const keys = [...await Promise.all(pems.map(parseP384PrivateKeyPem)), await generateP384Key()];
  for (const key of keys) {
    assert(key.signer instanceof CryptoKey && key.signer.type === "private");
    const { d, x, y } = key;
    const viaSigner = await signIdBlock(block, key, true);
    const viaJwk = await signIdBlock(block, { d, x, y }, true);
    assertEquals(toHex(viaSigner.r) + toHex(viaSigner.s), toHex(viaJwk.r) + toHex(viaJwk.s));
    assert(await verifyIdBlock(block, viaSigner.r, viaSigner.s, x, y));
  }
});

Deno.test(
  "signIdBlock() deterministic equals @noble/curves' RFC 6979 signature with lowS off",
  async () => {
    // noble is the independent reference: the original's -sign_deterministic signature is
    // RFC 6979 with s left as it comes (high half of the time).
    const { p384 } = await import("npm:@noble/curves@2.4.0/nist.js");
    let highS = 0;
    for (let i = 0; i < 24; i++) {
      const key = await keyFromScalar(Uint8Array.from({ length: 48 }, (_, j) => (i * 7 + j) | 1));
      const block = encodeSnpIdBlock(new Uint8Array(48).fill(i), defaultIdBlockConfig());
      const ours = await signIdBlock(block, key, true);
      const ref = p384.sign(block, key.d, { lowS: false });
      assertEquals(toHex(ours.r) + toHex(ours.s), toHex(ref), `key ${i}`);
      if (ours.s[0] >= 0x80) highS++;
      assert(await verifyIdBlock(block, ours.r, ours.s, key.x, key.y), `verifies, key ${i}`);
    }
    assert(highS > 0, "some signatures have a high s, and they verify");
  },
);

Deno.test("verifyIdBlock() rejects s = 0, s >= n and a wrong public key", async () => {
  const key = await keyFromScalar(Uint8Array.from({ length: 48 }, (_, i) => i + 3));
  const other = await keyFromScalar(Uint8Array.from({ length: 48 }, (_, i) => i + 4));
  const block = encodeSnpIdBlock(new Uint8Array(48).fill(9), defaultIdBlockConfig());
  const { r, s } = await signIdBlock(block, key, true);
  assertEquals(await verifyIdBlock(block, r, new Uint8Array(48), key.x, key.y), false);
  assertEquals(await verifyIdBlock(block, r, new Uint8Array(48).fill(0xff), key.x, key.y), false);
  assertEquals(await verifyIdBlock(block, r, s, other.x, other.y), false);
  assertEquals(await verifyIdBlock(block, r, s, key.x, new Uint8Array(48)), false);
});

Deno.test("encodeSnpIdBlock() packs digest, ids, version, SVN and policy into 96 bytes", () => {
  const block = encodeSnpIdBlock(new Uint8Array(48).fill(1), defaultIdBlockConfig());
  assertEquals(block.length, 96);
  assertEquals(block[48], 1); // family id 01 00 ..
  assertEquals(block[64], 2); // image id 02 00 ..
  const v = new DataView(block.buffer);
  assertEquals(v.getUint32(80, true), 1);
  assertEquals(v.getUint32(84, true), 2);
  assertEquals(v.getBigUint64(88, true), 0x3001fn);
});

Deno.test({
  name: "parseP384PrivateKeyPem() reads the SEC1 test key and its PKCS#8 form alike",
  ignore: !HAVE_SHARED,
  async fn() {
    const pem = Deno.readTextFileSync(`${FIXTURES}test-key.pem`);
    const key = await parseP384PrivateKeyPem(pem);
    assertEquals(key.d.length, 48);
    assertEquals(toHex((await keyFromScalar(key.d)).x), toHex(key.x));
    const pkcs8 = createPrivateKey(pem).export({ format: "pem", type: "pkcs8" }).toString();
    const again = await parseP384PrivateKeyPem(pkcs8);
    assertEquals(
      toHex(again.d) + toHex(again.x) + toHex(again.y),
      toHex(key.d) + toHex(key.x) + toHex(key.y),
    );
    // openssl's JWK of the same key is the independent reference for the public point.
    const jwk = createPrivateKey(pem).export({ format: "jwk" });
    assertEquals(
      btoa(String.fromCharCode(...key.y)).replace(/\+/g, "-").replace(/\//g, "_").replace(
        /=+$/,
        "",
      ),
      jwk.y,
    );
  },
});

Deno.test("parseP384PrivateKeyPem() accepts PKCS#8 and rejects garbage, P-256 and RSA keys", async () => {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
  const pkcs8 = privateKey.export({ format: "pem", type: "pkcs8" }).toString();
  assertEquals((await parseP384PrivateKeyPem(pkcs8)).d.length, 48);
  await assertRejects(() => parseP384PrivateKeyPem("not a key"), KeyError, "not a PEM private key");
  // Base64 that does not decode says so in our words, not the engine's.
  const broken = pkcs8.replace(/\n-----END/, "==\n-----END");
  const error = await parseP384PrivateKeyPem(broken).then(() => undefined, (e) => e);
  assert(error instanceof KeyError);
  assertEquals((error.cause as Error).message, "not valid base64");
  const p256 = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({
    format: "pem",
    type: "sec1",
  });
  await assertRejects(() => parseP384PrivateKeyPem(p256.toString()), KeyError, "P-256");
  const p256pkcs8 = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({
    format: "pem",
    type: "pkcs8",
  });
  await assertRejects(() => parseP384PrivateKeyPem(p256pkcs8.toString()), KeyError, "P-256");
  const encrypted = privateKey.export({
    format: "pem",
    type: "pkcs8",
    cipher: "aes-256-cbc",
    passphrase: "x",
  });
  await assertRejects(() => parseP384PrivateKeyPem(encrypted.toString()), KeyError, "encrypted");
  const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({
    format: "pem",
    type: "pkcs8",
  });
  await assertRejects(() => parseP384PrivateKeyPem(rsa.toString()), KeyError, "rsa");
  const rsa1 = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({
    format: "pem",
    type: "pkcs1",
  });
  await assertRejects(() => parseP384PrivateKeyPem(rsa1.toString()), KeyError, "rsa");
});

Deno.test("generateP384Key() gives a fresh key each time", async () => {
  const [a, b] = [await generateP384Key(), await generateP384Key()];
  assert(toHex(a.d) !== toHex(b.d));
  assertEquals(toHex((await keyFromScalar(a.d)).x), toHex(a.x));
});

Deno.test("parseTeiConfig() reads ids big-endian and builds the policy", () => {
  const c = parseTeiConfig(JSON.stringify({
    tei_config_data: {
      version: 1,
      guest_svn: 9,
      family_id: "12161A1B12161A1B12161A1B12161A1B",
      image_id: "1A1B12161A1B12161A1B12161A1B1216",
      policy: {
        debug_allowed: true,
        migrate_ma: false,
        smt_allowed: true,
        abi_major: 1,
        abi_minor: 31,
      },
    },
  }));
  assertEquals(toHex(c.familyId), "12161a1b12161a1b12161a1b12161a1b");
  assertEquals(toHex(c.imageId), "1a1b12161a1b12161a1b12161a1b1216");
  assertEquals(c.guestSvn, 9);
  assertEquals(c.policy, 0x20000n | (1n << 19n) | (1n << 16n) | 0x100n | 0x1fn);
  assertEquals(parseTeiConfig('{"tei_config_data":{}}').policy, DEFAULT_SNP_POLICY);
});

Deno.test("parseTeiConfig() keeps the defaults of policy fields a partial policy leaves out", () => {
  const policyOf = (policy: unknown) =>
    parseTeiConfig(JSON.stringify({ tei_config_data: { policy } })).policy;
  assertEquals(DEFAULT_SNP_POLICY, 0x3001fn);
  assertEquals(policyOf({}), 0x3001fn);
  assertEquals(policyOf({ debug_allowed: false }), 0x3001fn);
  assertEquals(policyOf({ debug_allowed: true }), 0xb001fn);
  assertEquals(policyOf({ smt_allowed: false }), 0x2001fn);
  assertEquals(policyOf({ abi_minor: 0 }), 0x30000n);
  assertEquals(policyOf({ abi_major: 1, migrate_ma: true }), 0x7011fn);
});

Deno.test("parseTeiConfig() gives the original's policy for a full policy object", () => {
  // The original's construct_policy (igvmfile.py): 0x20000 | debug << 19 | migrate_ma << 18 |
  // smt << 16 | abi_major << 8 | abi_minor, from every field of the object.
  const original = (p: { d: boolean; m: boolean; s: boolean; major: number; minor: number }) =>
    0x20000n | (BigInt(p.d) << 19n) | (BigInt(p.m) << 18n) | (BigInt(p.s) << 16n) |
    (BigInt(p.major) << 8n) | BigInt(p.minor);
  for (const d of [false, true]) {
    for (const m of [false, true]) {
      for (const s of [false, true]) {
        for (const [major, minor] of [[0, 31], [1, 0], [255, 255]]) {
          const policy = {
            debug_allowed: d,
            migrate_ma: m,
            smt_allowed: s,
            abi_major: major,
            abi_minor: minor,
          };
          assertEquals(
            parseTeiConfig(JSON.stringify({ tei_config_data: { policy } })).policy,
            original({ d, m, s, major, minor }),
            JSON.stringify(policy),
          );
        }
      }
    }
  }
});

Deno.test("parseTeiConfig() rejects an unknown key anywhere, naming it", () => {
  const cases: [unknown, string][] = [
    [
      { tei_config_nmae: "x", tei_config_data: {} },
      'unknown key "tei_config_nmae" in the config (expected tei_config_name, tei_config_version, tei_config_data)',
    ],
    [
      { tei_config_data: { guest_svm: 3 } },
      'unknown key "guest_svm" in tei_config_data (expected version, guest_svn, family_id, image_id, policy)',
    ],
    [
      { tei_config_data: { policy: { smt_alowed: true } } },
      'unknown key "smt_alowed" in tei_config_data.policy (expected debug_allowed, migrate_ma, smt_allowed, abi_major, abi_minor)',
    ],
  ];
  for (const [config, message] of cases) {
    const e = assertThrows(() => parseTeiConfig(JSON.stringify(config)), ConfigError);
    assertEquals(e.message, message);
  }
  // The original's sample keys are all accepted.
  parseTeiConfig(JSON.stringify({
    tei_config_name: "confidential_ml_cvm",
    tei_config_version: 1,
    tei_config_data: { version: 1, guest_svn: 2 },
  }));
});

Deno.test("parseTeiConfig() rejects malformed configs, naming the field", () => {
  const bad: [string, string][] = [
    ["{", "not JSON"],
    ["[]", "tei_config_data"],
    ['{"tei_config_data":{"version":2}}', "version must be 1"],
    ['{"tei_config_data":{"family_id":"12"}}', "family_id must be 32 hex digits"],
    ['{"tei_config_data":{"image_id":"zz161A1B12161A1B12161A1B12161A1B"}}', "image_id"],
    ['{"tei_config_data":{"guest_svn":-1}}', "guest_svn"],
    ['{"tei_config_data":{"policy":{"debug_allowed":"yes"}}}', "debug_allowed"],
    ['{"tei_config_data":{"policy":{"abi_minor":256}}}', "abi_minor"],
  ];
  for (const [text, why] of bad) assertThrows(() => parseTeiConfig(text), ConfigError, why);
});
