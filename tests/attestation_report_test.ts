/**
 * The attestation report, AMD's chain and the key digests, on public data: two real
 * AMD-signed Milan reports with their VCEKs (virtee/sev, go-sev-guest), a real Turin VCEK, and
 * virtee/sev's ID and author test keys with their known digests (tests/data/attest/SOURCES.md).
 */
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { ROOT } from "./helpers.ts";
import {
  ATTESTATION_REPORT,
  cpuSignatureOf,
  decodeTcb,
  ECDSA_P384_SHA384_SIGNATURE,
  parseAttestationReport,
  productOfCpuid,
  verifyReportSignature,
} from "../lib/measure/attestation_report.ts";
import { checkChain, checkKeyAgainstReport, vcekUrl } from "../lib/measure/amd_certs.ts";
import { AMD_ROOT_CERTIFICATES } from "../lib/measure/amd_roots.ts";
import {
  encodeSevEcdsaPublicKey,
  fromLittleEndian72,
  sevKeyDigest,
  verifyAuthorSignature,
} from "../lib/measure/id_block.ts";
import { ID_AUTH_INFO } from "../lib/measure/id_auth.ts";
import { parseP384PrivateKeyPem } from "../lib/measure/signing_key.ts";
import { toHex } from "../lib/bytes/le.ts";

const DATA = `${ROOT}tests/data/attest/`;
const read = (name: string) => Deno.readFileSync(DATA + name);
const NOW = new Date("2026-01-01T00:00:00Z");
const b64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));

Deno.test("ATTESTATION_REPORT is 0x4a0 bytes with the signature at 0x2a0", () => {
  assertEquals(ATTESTATION_REPORT.size, 1184);
  assertEquals(ATTESTATION_REPORT.off.Signature, 0x2a0);
  assertEquals(ATTESTATION_REPORT.off.ChipId, 0x1a0);
  assertEquals(ATTESTATION_REPORT.off.LaunchMitVector, 0x1f8);
  assertEquals(ECDSA_P384_SHA384_SIGNATURE.size, 0x200);
  assertEquals(ECDSA_P384_SHA384_SIGNATURE.off.S, 0x48);
});

Deno.test("parseAttestationReport() reads virtee/sev's real Milan report from hex text", () => {
  const r = parseAttestationReport(read("virtee_milan_report.hex"));
  assertEquals(r.version, 2);
  assertEquals(r.policy, 0x30000n);
  assertEquals(r.vmpl, 0);
  assertEquals(r.signatureAlgo, 1);
  assertEquals(r.signingKey, 0);
  assertEquals(
    r.measurement,
    "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f",
  );
  assertEquals(decodeTcb(r.reportedTcb, "Milan"), {
    bootloader: 3,
    tee: 0,
    snp: 8,
    microcode: 115,
  });
  assertEquals(r.cpuid, undefined);
  assertEquals(r.problems, []);
});

Deno.test("parseAttestationReport() refuses anything but 1184 bytes or their hex, and unknown versions", () => {
  assertThrows(
    () => parseAttestationReport(new Uint8Array(1183)),
    Error,
    "not an SEV-SNP attestation report",
  );
  assertThrows(
    () => parseAttestationReport(new TextEncoder().encode("zz".repeat(1184))),
    Error,
    "not hex text",
  );
  assertThrows(
    () => parseAttestationReport(new TextEncoder().encode("00".repeat(1000))),
    Error,
    "2000 hex digits",
  );
  const v6 = read("gosevguest_milan_report.bin").slice();
  v6[0] = 6;
  assertThrows(() => parseAttestationReport(v6), Error, "version 6");
});

for (
  const [report, vcek, tcb] of [
    ["virtee_milan_report.hex", "virtee_milan_vcek.der", "bl=3 tee=0 snp=8 ucode=115"],
    ["gosevguest_milan_report.bin", "gosevguest_milan_vcek.der", "bl=2 tee=0 snp=5 ucode=68"],
  ]
) {
  Deno.test(`a real AMD-signed report (${report}) verifies with its VCEK under the built-in Milan chain`, async () => {
    const r = parseAttestationReport(read(report));
    const chain = await checkChain({ vek: { name: vcek, bytes: read(vcek) }, now: NOW });
    assert(chain.valid, JSON.stringify(chain.checks));
    assertEquals(chain.product, "Milan");
    assertEquals(chain.keyKind, "VCEK");
    assert(chain.checks[0].name.includes("AMD's Milan root, built in"));
    const key = chain.vek!.publicKey as { x: Uint8Array; y: Uint8Array };
    assert(await verifyReportSignature(r, key));
    const checks = checkKeyAgainstReport(chain.vek!, "VCEK", chain.product, r);
    assert(checks.every((c) => c.ok), JSON.stringify(checks));
    assertEquals(checks.find((c) => c.name.includes("TCB"))!.detail, tcb);
    // One flipped bit anywhere in the signed part, or in R, breaks the signature.
    for (const at of [0x00, 0x90, 0x29f, 0x2a0]) {
      const bad = r.bytes.slice();
      bad[at] ^= 1;
      assert(!await verifyReportSignature(parseAttestationReport(bad), key), `byte ${at}`);
    }
  });
}

Deno.test("vcekUrl() names the report's VCEK at AMD's key distribution service (go-sev-guest's URL)", () => {
  const r = parseAttestationReport(read("gosevguest_milan_report.bin"));
  assertEquals(
    vcekUrl(r, "Milan"),
    "https://kdsintf.amd.com/vcek/v1/Milan/3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e53786184ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d?blSPL=2&teeSPL=0&snpSPL=5&ucodeSPL=68",
  );
});

Deno.test("checkChain() refuses a VCEK under another generation's ARK, a broken signature, an expired VCEK", async () => {
  const vek = { name: "vcek.der", bytes: read("virtee_milan_vcek.der") };
  const der = (s: string) => Uint8Array.from(atob(s.replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  const genoa = AMD_ROOT_CERTIFICATES.find((r) => r.product === "Genoa")!;
  const milan = AMD_ROOT_CERTIFICATES.find((r) => r.product === "Milan")!;
  // The Milan ASK with Genoa's ARK: no ARK of that name.
  const wrongArk = await checkChain({
    vek,
    ask: { name: "ask", bytes: der(milan.ask) },
    ark: { name: "genoa-ark", bytes: der(genoa.ark) },
    now: NOW,
  });
  assert(!wrongArk.valid);
  assert(wrongArk.checks.at(-1)!.detail.includes("no self-signed certificate named ARK-Milan"));
  // A bit flipped in the VCEK's signature.
  const broken = vek.bytes.slice();
  broken[broken.length - 10] ^= 1;
  const bad = await checkChain({ vek: { name: "vcek", bytes: broken }, now: NOW });
  assert(!bad.valid);
  assertEquals(bad.checks.at(-1)!.detail, "the RSA-PSS signature does not verify");
  const expired = await checkChain({ vek, now: new Date("2031-01-01T00:00:00Z") });
  assert(!expired.valid);
  assert(expired.checks.at(-1)!.detail.startsWith("expired on 2030-04-03"));
  // AMD's cert_chain bundle (ASK then ARK) as --ask: the same valid chain.
  const bundle = await checkChain({
    vek,
    ask: { name: "cert_chain", bytes: read("virtee_milan_cert_chain.pem") },
    now: NOW,
  });
  assert(bundle.valid, JSON.stringify(bundle.checks));
  // The VCEK with AMD's chain after it in one PEM file, as --vcek alone.
  const pem = (der: Uint8Array) =>
    `-----BEGIN CERTIFICATE-----\n${
      btoa(String.fromCharCode(...der))
    }\n-----END CERTIFICATE-----\n`;
  const all = new TextEncoder().encode(
    new TextDecoder().decode(read("virtee_milan_cert_chain.pem")) + pem(vek.bytes),
  );
  const one = await checkChain({ vek: { name: "all.pem", bytes: all }, now: NOW });
  assert(one.valid, JSON.stringify(one.checks));
  assertEquals(one.keyKind, "VCEK");
});

Deno.test("a real Turin VCEK: built-in Turin chain, 8-byte hwID, FMC in the TCB", async () => {
  const chain = await checkChain({
    vek: { name: "turin", bytes: read("virtee_turin_vcek.der") },
    now: NOW,
  });
  assert(chain.valid, JSON.stringify(chain.checks));
  assertEquals(chain.product, "Turin");
  // A v3 report of that chip: CHIP_ID starts with the hwID, REPORTED_TCB in Turin's layout.
  const bytes = new Uint8Array(1184);
  const v = new DataView(bytes.buffer);
  v.setUint32(0, 3, true);
  v.setUint32(0x34, 1, true);
  bytes.set([0x1a, 0x02, 0x01], 0x188); // family 1Ah model 02h stepping 1
  bytes.set([0x1e, 0x55, 0x0a, 0x8e, 0xe5, 0xcf, 0x9f, 0x4d], 0x1a0);
  v.setBigUint64(0x180, 0x0900_0000_0000_0000n, true); // fmc 0 bl 0 tee 0 snp 0 ucode 9
  const r = parseAttestationReport(bytes);
  assertEquals(productOfCpuid(r.cpuid!), "Turin");
  assertEquals(cpuSignatureOf(r.cpuid!), 0x00b00f21);
  const checks = checkKeyAgainstReport(chain.vek!, "VCEK", "Turin", r);
  assert(checks.every((c) => c.ok), JSON.stringify(checks));
  v.setBigUint64(0x180, 0x0900_0000_0000_0001n, true); // fmc 1
  const other = checkKeyAgainstReport(chain.vek!, "VCEK", "Turin", parseAttestationReport(bytes));
  assert(other.find((c) => c.name.includes("TCB"))!.detail.includes("fmc=1"));
  assert(vcekUrl(r)!.includes("/Turin/1e550a8ee5cf9f4d?fmcSPL=0&blSPL=0"));
});

Deno.test("cpuSignatureOf() turns the report's family/model/stepping into CPUID(1).EAX", () => {
  assertEquals(cpuSignatureOf({ family: 0x19, model: 0x01, stepping: 1 }), 0x00a00f11);
  assertEquals(cpuSignatureOf({ family: 0x19, model: 0x11, stepping: 0 }), 0x00a10f10);
  assertEquals(productOfCpuid({ family: 0x19, model: 0xa0 }), "Genoa");
  assertEquals(productOfCpuid({ family: 0x17, model: 0x31 }), undefined);
});

Deno.test("sevKeyDigest() gives virtee/sev's known ID-key and author-key digests", async () => {
  const id = await parseP384PrivateKeyPem(new TextDecoder().decode(read("virtee_test_id_key.pem")));
  const author = await parseP384PrivateKeyPem(
    new TextDecoder().decode(read("virtee_test_auth_key.pem")),
  );
  assertEquals(
    b64(sevKeyDigest(id)),
    "WfssaG36T+9J84M5qndckAUcKNVzg93DuvO160sUlt87DbvcuuX+J2d6ZEggdz/i",
  );
  assertEquals(
    b64(sevKeyDigest(author)),
    "7tgRafsMteDsNHlPEo/U4MSkb2fGWhrfqB/LJLzAiMJyNpt//D6ytq9qQoShs2xf",
  );
});

Deno.test("virtee/sev's ID_AUTH_INFO: its ID key is our 0x404 encoding and its author signature verifies", async () => {
  const block = read("virtee_test_auth_block.bin");
  const o = ID_AUTH_INFO.off;
  const id = await parseP384PrivateKeyPem(new TextDecoder().decode(read("virtee_test_id_key.pem")));
  assertEquals(toHex(block.subarray(o.IdKey, o.IdKey + 0x404)), toHex(encodeSevEcdsaPublicKey(id)));
  const at = (off: number) => fromLittleEndian72(block.subarray(off, off + 72));
  const author = {
    signature: { r: at(o.IdKeySig), s: at(o.IdKeySig + 0x48) },
    key: { x: at(o.AuthorKey + 0x04), y: at(o.AuthorKey + 0x4c) },
  };
  assert(await verifyAuthorSignature(id, author));
  assert(!await verifyAuthorSignature({ x: id.x, y: author.key.y }, author));
});

Deno.test("checkChain() on 400 corrupted copies of a real VCEK: never valid, and only one-line refusals", async () => {
  const vcek = read("virtee_milan_vcek.der");
  let seed = 7;
  const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n;
  for (let i = 0; i < 400; i++) {
    const b = vcek.slice();
    let changed = false;
    for (let k = 0; k < 1 + rnd(3); k++) {
      const at = rnd(b.length);
      const v = rnd(256);
      changed ||= b[at] !== v;
      b[at] = v;
    }
    const bytes = i % 5 === 0 ? b.subarray(0, rnd(b.length)) : b;
    if (!changed && bytes.length === b.length) continue;
    try {
      const r = await checkChain({ vek: { name: "vcek", bytes }, now: NOW });
      assert(!r.valid, `corruption ${i} left the chain valid`);
    } catch (e) {
      assert(e instanceof Error && !(e instanceof TypeError), String(e));
      assert(!/undefined|\n/.test((e as Error).message), (e as Error).message);
    }
  }
});
