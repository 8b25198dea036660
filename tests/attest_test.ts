/**
 * `attest` end to end with a test-only AMD-style chain made here with openssl (RSA-PSS
 * SHA-384 ARK and ASK, a P-384 VCEK with AMD's TCB and hwID extensions) and reports signed
 * with that VCEK, one per host configuration, each of which must be traced to the right image,
 * loader, vCPU count and CPU model. Then every kind of bad report is refused with its reason.
 */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { generateImage, ROOT, runCli, tempDir } from "./helpers.ts";
import { attest, InputError, measure } from "../mod.ts";
import { bytesAccess } from "./kvm_helpers.ts";
import { editBody } from "./igvm_edit.ts";
import { headerSectionChecksum } from "../lib/igvm/reader.ts";
import {
  IGVM_FIXED_HEADER,
  IGVM_VHS_SUPPORTED_PLATFORM,
  IGVM_VHT_SUPPORTED_PLATFORM,
} from "../lib/igvm/defs.ts";
import { signIdBlock, toLittleEndian72 } from "../lib/measure/id_block.ts";
import { parseP384PrivateKeyPem } from "../lib/measure/signing_key.ts";
import { CPU_SIGNATURES } from "../lib/x86/kvm_vmsa.ts";
import { searchedCpus } from "../lib/measure/report_match.ts";
import { kvmHostDigests } from "../lib/measure/host_search.ts";
import { toHex } from "../lib/bytes/le.ts";
import { openFileAccess } from "../lib/io/file_reader.ts";
import { readHeaders } from "../lib/igvm/structure.ts";

const DATA = `${ROOT}tests/data/attest/`;
const ID_KEY = `${DATA}virtee_test_id_key.pem`;
/** virtee/sev's known SHA-384 of that key's ABI structure (tests/data/attest/SOURCES.md). */
const ID_KEY_DIGEST = Array.from(
  atob("WfssaG36T+9J84M5qndckAUcKNVzg93DuvO160sUlt87DbvcuuX+J2d6ZEggdz/i"),
  (c) => c.charCodeAt(0).toString(16).padStart(2, "0"),
).join("");
const CHIP_ID = "5a".repeat(64);
/** REPORTED_TCB, Milan layout: bl 3, tee 0, snp 8, ucode 115. */
const TCB = 0x7308_0000_0000_0003n;

async function openssl(dir: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", {
    args,
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (out.code !== 0) {
    throw new Error(`openssl ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

const PSS = ["-sha384", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:48"];
const SUBJECT = "/OU=Engineering/C=US/L=Santa Clara/ST=CA/O=Test Only";

/**
 * A test-only chain in `dir`: ARK (self-signed) -> ASK -> VCEK, RSA-PSS SHA-384, 2048-bit RSA
 * for speed. The VCEK carries AMD's extensions: product Milan-B0, TCB `TCB`, hwID `CHIP_ID`.
 */
async function makeChain(dir: string, arkName = "ark"): Promise<void> {
  await openssl(dir, "genrsa", "-out", `${arkName}.key`, "2048");
  await openssl(
    dir,
    "req",
    "-x509",
    "-new",
    "-key",
    `${arkName}.key`,
    "-subj",
    `${SUBJECT}/CN=ARK-Milan`,
    "-days",
    "3650",
    ...PSS,
    "-out",
    `${arkName}.pem`,
  );
  if (arkName !== "ark") return;
  await openssl(dir, "genrsa", "-out", "ask.key", "2048");
  await openssl(
    dir,
    "req",
    "-new",
    "-key",
    "ask.key",
    "-subj",
    `${SUBJECT}/CN=SEV-Milan`,
    "-out",
    "ask.csr",
  );
  Deno.writeTextFileSync(`${dir}/ca.ext`, "basicConstraints=critical,CA:true\n");
  await openssl(
    dir,
    "x509",
    "-req",
    "-in",
    "ask.csr",
    "-CA",
    "ark.pem",
    "-CAkey",
    "ark.key",
    "-set_serial",
    "1",
    "-days",
    "3650",
    "-extfile",
    "ca.ext",
    ...PSS,
    "-out",
    "ask.pem",
  );
  await openssl(dir, "ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", "vcek.key");
  await openssl(
    dir,
    "req",
    "-new",
    "-key",
    "vcek.key",
    "-subj",
    `${SUBJECT}/CN=SEV-VCEK`,
    "-out",
    "vcek.csr",
  );
  const colon = (hex: string) => hex.match(/../g)!.join(":");
  Deno.writeTextFileSync(
    `${dir}/vcek.ext`,
    [
      "1.3.6.1.4.1.3704.1.1 = DER:02:01:00",
      "1.3.6.1.4.1.3704.1.2 = ASN1:IA5STRING:Milan-B0",
      "1.3.6.1.4.1.3704.1.3.1 = DER:02:01:03",
      "1.3.6.1.4.1.3704.1.3.2 = DER:02:01:00",
      "1.3.6.1.4.1.3704.1.3.3 = DER:02:01:08",
      "1.3.6.1.4.1.3704.1.3.8 = DER:02:01:73",
      `1.3.6.1.4.1.3704.1.4 = DER:${colon(CHIP_ID)}`,
    ].join("\n") + "\n",
  );
  await openssl(
    dir,
    "x509",
    "-req",
    "-in",
    "vcek.csr",
    "-CA",
    "ask.pem",
    "-CAkey",
    "ask.key",
    "-set_serial",
    "2",
    "-days",
    "3650",
    "-extfile",
    "vcek.ext",
    ...PSS,
    "-outform",
    "DER",
    "-out",
    "vcek.der",
  );
}

/** The fields of a test report; the rest are zero. */
interface ReportFields {
  version?: number;
  measurement: string;
  policy?: bigint;
  idKeyDigest?: string;
  familyId?: string;
  imageId?: string;
  guestSvn?: number;
  reportData?: string;
  hostData?: string;
  cpuid?: [number, number, number];
  vmpl?: number;
}

const hexBytes = (hex: string) => Uint8Array.from(hex.match(/../g)!, (b) => parseInt(b, 16));

/** A report as the PSP would write it, signed with the test VCEK. */
async function makeReport(dir: string, f: ReportFields): Promise<Uint8Array> {
  const r = new Uint8Array(1184);
  const v = new DataView(r.buffer);
  v.setUint32(0x000, f.version ?? 3, true);
  v.setUint32(0x004, f.guestSvn ?? 2, true);
  v.setBigUint64(0x008, f.policy ?? 0x3001fn, true);
  r.set(hexBytes(f.familyId ?? "01" + "00".repeat(15)), 0x010);
  r.set(hexBytes(f.imageId ?? "02" + "00".repeat(15)), 0x020);
  v.setUint32(0x030, f.vmpl ?? 0, true);
  v.setUint32(0x034, 1, true); // ECDSA P-384 SHA-384
  for (const at of [0x038, 0x180, 0x1e0, 0x1f0]) v.setBigUint64(at, TCB, true);
  if (f.reportData) r.set(hexBytes(f.reportData), 0x050);
  r.set(hexBytes(f.measurement), 0x090);
  if (f.hostData) r.set(hexBytes(f.hostData), 0x0c0);
  r.set(hexBytes(f.idKeyDigest ?? ID_KEY_DIGEST), 0x0e0);
  if ((f.version ?? 3) >= 3) r.set(f.cpuid ?? [0x19, 0x01, 0x01], 0x188);
  r.set(hexBytes(CHIP_ID), 0x1a0);
  const key = await parseP384PrivateKeyPem(Deno.readTextFileSync(`${dir}/vcek.key`));
  const sig = await signIdBlock(r.subarray(0, 0x2a0), key, true);
  r.set(toLittleEndian72(sig.r), 0x2a0);
  r.set(toLittleEndian72(sig.s), 0x2e8);
  return r;
}

let setup: Promise<{ dir: string; imageA: string; imageB: string }> | undefined;

/** The chain and two images (A and B differ in their command line), made once. */
function prepare() {
  setup ??= (async () => {
    const dir = tempDir();
    await makeChain(dir);
    await makeChain(dir, "other-ark");
    const sign = ["-sign_key", ID_KEY, "-sign_deterministic", "true"];
    Deno.writeFileSync(`${dir}/a.igvm`, await generateImage([...sign, "-append", "console=ttyS0"]));
    Deno.writeFileSync(`${dir}/b.igvm`, await generateImage([...sign, "-append", "quiet"]));
    return { dir, imageA: `${dir}/a.igvm`, imageB: `${dir}/b.igvm` };
  })();
  return setup;
}

async function digestOf(file: string, loader: string, vcpus?: number, cpuSignature?: number) {
  const host = vcpus === undefined ? undefined : { vcpus, cpuSignature: cpuSignature ?? 0 };
  return (await measure({ file, loader, host })).launchDigest;
}

Deno.test("attest: reports signed by a test-only chain, one per host, each traced to its image, loader, vCPUs and CPU", async () => {
  const { dir, imageA, imageB } = await prepare();
  const certs = { vcek: `${dir}/vcek.der`, ask: `${dir}/ask.pem`, ark: `${dir}/ark.pem` };
  const hosts: [string, string, number | undefined, string | undefined, number | undefined][] = [
    [imageA, "hyperv", undefined, undefined, undefined],
    [imageB, "ch-mshv", undefined, undefined, undefined],
    [imageA, "igvmmeasure", undefined, undefined, undefined],
    [imageB, "qemu-kvm", 4, "genoa", CPU_SIGNATURES.genoa],
    [imageA, "qemu-kvm", 64, "turin", CPU_SIGNATURES.turin],
    [imageA, "openvmm-kvm", 3, "milan", CPU_SIGNATURES.milan],
    [imageB, "ch-kvm", 8, undefined, 0],
    // The report's own CPU (family 19h model 01h stepping 2), not one of QEMU's models.
    [imageA, "qemu-kvm", 5, "the report's CPU", 0x00a0_0f12],
  ];
  for (const [image, loader, vcpus, cpu, signature] of hosts) {
    const measurement = await digestOf(image, loader, vcpus, signature);
    const policy = 0x3001fn;
    const report = await makeReport(dir, { measurement, policy, cpuid: [0x19, 0x01, 0x02] });
    Deno.writeFileSync(`${dir}/report.bin`, report);
    const result = await attest({
      report: `${dir}/report.bin`,
      images: [imageA, imageB],
      ...certs,
    });
    const what = `${loader} ${vcpus} ${cpu}`;
    assert(result.ok, `${what}: ${result.problems.join("\n")}`);
    assert(result.signatureValid && result.chainValid, what);
    const m = result.matches.find((x) => x.loader === loader)!;
    assert(m, `${what}: ${JSON.stringify(result.matches)}`);
    assertEquals(m.image, image, what);
    assertEquals(m.vcpus, vcpus ?? null, what);
    assertEquals(m.cpu, cpu ?? null, what);
    if (signature && cpu) {
      assertEquals(m.cpuSignature, `0x${signature.toString(16).padStart(8, "0")}`);
    }
  }
});

Deno.test("attest refuses a tampered report, a wrong chain, a wrong policy, another image's report and a wrong nonce", async () => {
  const { dir, imageA, imageB } = await prepare();
  const certs = { vcek: `${dir}/vcek.der`, ask: `${dir}/ask.pem`, ark: `${dir}/ark.pem` };
  const measurement = await digestOf(imageA, "hyperv");
  const nonce = "ab".repeat(64);
  const write = (name: string, bytes: Uint8Array) => {
    Deno.writeFileSync(`${dir}/${name}`, bytes);
    return `${dir}/${name}`;
  };
  const good = write("good.bin", await makeReport(dir, { measurement, reportData: nonce }));
  const ok = await attest({ report: good, images: [imageA], reportData: nonce, ...certs });
  assert(ok.ok, ok.problems.join("\n"));
  const failing = (r: { problems: string[] }) => r.problems.map((p) => p.split(":")[0]);

  // Tampered: one byte of MEASUREMENT changed after signing.
  const tampered = Deno.readFileSync(good);
  tampered[0x90] ^= 0x01;
  const t = await attest({ report: write("t.bin", tampered), images: [imageA], ...certs });
  assert(!t.ok && !t.signatureValid && t.chainValid);
  assert(failing(t).includes("report signature"), t.problems.join("\n"));

  // Another root: the chain does not verify.
  const w = await attest({ report: good, ...certs, ark: `${dir}/other-ark.pem` });
  assert(!w.ok && !w.chainValid);
  assert(
    w.problems.some((p) => p.startsWith("ASK SEV-Milan signed by the ARK")),
    w.problems.join("\n"),
  );
  // AMD's built-in roots do not know the test ASK's issuer either.
  const b = await attest({ report: good, vcek: certs.vcek, ask: certs.ask });
  assert(!b.ok && !b.chainValid && b.signatureValid);

  // Wrong policy: the image's is 0x30000, the report's allows debugging.
  const dbg = write("d.bin", await makeReport(dir, { measurement, policy: 0xb001fn }));
  const d = await attest({ report: dbg, images: [imageA], ...certs });
  assert(!d.ok);
  assertEquals(failing(d), ["POLICY", "POLICY = the image's"]);

  // Another image's report.
  const other = await attest({ report: good, images: [imageB], ...certs });
  assert(!other.ok && other.match === null);
  const line = other.problems.find((p) => p.startsWith("MEASUREMENT"))!;
  assert(line.includes("matches none"), line);
  assert(line.includes("`igvmgen measure --log` and `igvmgen diff`"), line);
  assert(line.includes("nearest:") && line.includes("same ID key"), line);

  // Wrong nonce, wrong HOST_DATA, wrong VMPL, a TCB below the minimum.
  const n = await attest({
    report: good,
    images: [imageA],
    reportData: "cd".repeat(32),
    hostData: "01",
    vmpl: 2,
    minTcb: "bl=3,tee=0,snp=9,ucode=115",
    ...certs,
  });
  assertEquals(failing(n), [
    "VMPL = 2",
    "REPORT_DATA = the expected value",
    "HOST_DATA = the expected value",
    "TCB >= minimum",
  ]);

  // Another ID key, family ID and SVN than the image's.
  const idr = write(
    "id.bin",
    await makeReport(dir, {
      measurement,
      idKeyDigest: "11".repeat(48),
      guestSvn: 3,
      familyId: "ff".repeat(16),
    }),
  );
  const id = await attest({ report: idr, images: [imageA], ...certs });
  assertEquals(
    failing(id),
    ["ID_KEY_DIGEST = the image's ID key", "FAMILY_ID = the image's", "GUEST_SVN = the image's"],
  );
});

Deno.test("igvmgen attest --json: exit 0 with a match; the checklist and exit 1 without the VCEK; exit 2 for a bad command line", async () => {
  const { dir, imageA } = await prepare();
  const measurement = await digestOf(imageA, "qemu-kvm", 2, CPU_SIGNATURES.milan);
  const report = await makeReport(dir, { measurement, version: 5 });
  // Hex text, as snpguest and the tests of other tools keep reports.
  const hex = Array.from(report, (b) => b.toString(16).padStart(2, "0")).join("");
  Deno.writeTextFileSync(`${dir}/r.hex`, hex.replace(/(.{64})/g, "$1\n"));
  const args = ["attest", `${dir}/r.hex`, "--vcek", `${dir}/vcek.der`, "--ask", `${dir}/ask.pem`];
  const r = await runCli([...args, "--ark", `${dir}/ark.pem`, "--image", imageA, "--json"]);
  assertEquals(r.code, 0, r.stderr + r.stdout);
  const json = JSON.parse(r.stdout);
  assertEquals(json.signatureValid, true);
  assertEquals(json.chainValid, true);
  assertEquals(json.match, {
    image: imageA,
    loader: "qemu-kvm",
    vcpus: 2,
    cpu: "milan",
    cpuSignature: "0x00a00f11",
  });
  assertEquals(json.problems, []);
  assertEquals(json.report.version, 5);
  assertEquals(json.report.idKeyDigest, ID_KEY_DIGEST);

  const text = await runCli(["attest", `${dir}/r.hex`, "--image", imageA]);
  assertEquals(text.code, 1);
  assert(text.stdout.includes("✘ report signature: not checked: give --vcek"), text.stdout);
  assert(text.stdout.includes("✔ MEASUREMENT: "), text.stdout);
  assert(text.stdout.includes("revocation lists are not checked"), text.stdout);

  for (
    const bad of [
      ["attest"],
      ["attest", `${dir}/r.hex`, "--vmpl", "4"],
      ["attest", `${dir}/r.hex`, "--report-data", "xyz"],
      ["attest", `${dir}/r.hex`, "--min-tcb", "bl=300"],
      ["attest", `${dir}/r.hex`, "--ark", `${dir}/ark.pem`],
      ["attest", `${dir}/r.hex`, "--frobnicate"],
    ]
  ) {
    const u = await runCli(bad);
    assertEquals(u.code, 2, `${bad.join(" ")}: ${u.stderr}`);
    assertEquals(u.stderr.trim().split("\n").length, 1, u.stderr);
  }
  const notReport = await runCli(["attest", imageA]);
  assertEquals(notReport.code, 1);
  assert(notReport.stderr.includes("not an SEV-SNP attestation report"), notReport.stderr);
});

Deno.test("kvmHostDigests(): one pass extended by AP VMSAs equals each KVM loader's full model", async () => {
  const { dir, imageA } = await prepare();
  Deno.writeFileSync(`${dir}/k.igvm`, await generateImage(["-target", "qemu-kvm"]));
  const cpus = searchedCpus([{ name: "x", signature: 0x00a0_0f12 }]);
  for (const image of [imageA, `${dir}/k.igvm`]) {
    const file = await openFileAccess(image);
    const headers = await readHeaders(file);
    for (const loader of ["qemu-kvm", "openvmm-kvm", "ch-kvm"] as const) {
      const rows = await Array.fromAsync(kvmHostDigests(loader, file, headers, { cpus }));
      assertEquals(rows.length, 64 * cpus.length);
      for (const [vcpus, cpu] of [[1, "milan"], [2, "genoa"], [7, "x"], [64, "turin"]] as const) {
        const c = cpus.find((m) => m.name === cpu)!;
        const want = await digestOf(image, loader, vcpus, c.signature);
        const got = toHex(rows.find((r) => r.vcpus === vcpus && r.cpu.name === cpu)!.digest);
        assertEquals(got, want, `${image} ${loader} ${vcpus} ${cpu}`);
      }
    }
    file.close();
  }
});

Deno.test("igvmgen attest on real AMD-signed reports: virtee's passes (exit 0); go-sev-guest's allows debugging (exit 1, that reason only)", async () => {
  const ok = await runCli([
    "attest",
    `${DATA}virtee_milan_report.hex`,
    "--vcek",
    `${DATA}virtee_milan_vcek.der`,
  ]);
  assertEquals(ok.code, 0, ok.stdout + ok.stderr);
  assert(ok.stdout.includes("✔ ARK ARK-Milan (AMD's Milan root, built in)"), ok.stdout);
  assert(ok.stdout.includes("✔ VCEK TCB = REPORTED_TCB: bl=3 tee=0 snp=8 ucode=115"), ok.stdout);
  assert(ok.stdout.endsWith("attest: OK\n"), ok.stdout);
  const debug = await runCli([
    "attest",
    `${DATA}gosevguest_milan_report.bin`,
    "--vcek",
    `${DATA}gosevguest_milan_vcek.der`,
    "--json",
  ]);
  assertEquals(debug.code, 1);
  const json = JSON.parse(debug.stdout);
  assertEquals([json.signatureValid, json.chainValid, json.ok], [true, true, false]);
  assertEquals(json.problems.length, 1);
  assert(json.problems[0].startsWith("POLICY: debugging not allowed: 0xb0000 (debug ALLOWED"));
});

Deno.test("attest refuses an image that is not for SEV-SNP, naming it", async () => {
  const { dir, imageA } = await prepare();
  const bytes = Deno.readFileSync(imageA);
  const headers = await readHeaders(bytesAccess(bytes));
  const p = headers.directives.find((d) => d.type === IGVM_VHT_SUPPORTED_PLATFORM)!;
  bytes[p.offset + 8 + IGVM_VHS_SUPPORTED_PLATFORM.off.PlatformType] = 1; // VBS
  const end = headers.fixed.VariableHeaderOffset + headers.fixed.VariableHeaderSize;
  new DataView(bytes.buffer).setUint32(
    IGVM_FIXED_HEADER.off.Checksum,
    headerSectionChecksum(bytes, end),
    true,
  );
  Deno.writeFileSync(`${dir}/vbs.igvm`, bytes);
  const report = `${DATA}virtee_milan_report.hex`;
  await assertRejects(
    () => attest({ report, images: [`${dir}/vbs.igvm`] }),
    InputError,
    `${dir}/vbs.igvm: not a SEV-SNP IGVM file`,
  );
});

Deno.test("attest refuses a report with VMPL above 3 or reserved signature bytes set, and an image whose ID block the PSP refuses (were: OK)", async () => {
  const { dir, imageA } = await prepare();
  const certs = { vcek: `${dir}/vcek.der`, ask: `${dir}/ask.pem`, ark: `${dir}/ark.pem` };
  const measurement = await digestOf(imageA, "hyperv");
  const write = (name: string, bytes: Uint8Array) => {
    Deno.writeFileSync(`${dir}/${name}`, bytes);
    return `${dir}/${name}`;
  };
  const failing = (r: { problems: string[] }) => r.problems.map((p) => p.split(":")[0]);
  const good = await makeReport(dir, { measurement });
  const ok = await attest({ report: write("g.bin", good), images: [imageA], ...certs });
  assert(ok.ok, ok.problems.join("\n"));

  // VMPL 4, in a report the VCEK signed: the PSP writes VMPL 0 to 3 only.
  const vmpl = await attest({
    report: write("v.bin", await makeReport(dir, { measurement, vmpl: 4 })),
    ...certs,
  });
  assert(!vmpl.ok && vmpl.signatureValid);
  assertEquals(failing(vmpl), ["report format"]);
  assert(vmpl.problems[0].includes("VMPL 4: the PSP reports VMPL 0 to 3 only"), vmpl.problems[0]);

  // The signature's reserved bytes after R and S (0x330-0x49F) are not signed: set, they
  // leave the signature valid, and are refused like every other reserved field.
  for (const at of [0x330, 0x49f]) {
    const bytes = good.slice();
    bytes[at] = 1;
    const r = await attest({ report: write("s.bin", bytes), ...certs });
    assert(!r.ok && r.signatureValid, `0x${at.toString(16)}`);
    assertEquals(failing(r), ["report format"]);
    assert(r.problems[0].includes("reserved bytes 0x330-0x49F"), r.problems[0]);
  }

  // The image's ID block signature is broken (R[0] flipped; the ID block is not measured, so
  // the MEASUREMENT still matches): the PSP would not launch the image with that block.
  const broken = editBody(Deno.readFileSync(imageA), 0x30b, (v, at) => {
    v.setUint8(at + 0x68, v.getUint8(at + 0x68) ^ 1);
  });
  const b = await attest({ report: `${dir}/g.bin`, images: [write("b.igvm", broken)], ...certs });
  assert(!b.ok);
  assertEquals(failing(b), ["the image's ID block"]);
  assert(
    b.problems[0].includes("the signature does not verify with the block's public key"),
    b.problems[0],
  );
  const text = await runCli([
    "attest",
    `${dir}/g.bin`,
    "--image",
    `${dir}/b.igvm`,
    "--vcek",
    certs.vcek,
    "--ask",
    certs.ask,
    "--ark",
    certs.ark,
  ]);
  assertEquals(text.code, 1, text.stdout);
  assert(text.stdout.includes("✘ the image's ID block: broken"), text.stdout);
});
