/**
 * The trust commands on files a user really meets: a loader that refuses a file is a line,
 * never an abort; `sign` writes only what `verify` accepts; `-svn` says when the JSON and the
 * ID block disagree; smaller refusals; `--quiet`; QEMU's CPU model names.
 */
import { assert, assertEquals } from "./assert.ts";
import { FIXTURES, generateImage, HAVE_SHARED, runCli, tempDir } from "./helpers.ts";
import { bodyOf, editBody, fixHeaders, headersOf, removeHeader } from "./igvm_edit.ts";
import { parseCpuSignature } from "../lib/x86/kvm_vmsa.ts";

const KEY = `${FIXTURES}test-key.pem`;
const PLATFORM = 0x001;
const POLICY = 0x101;
const PAGE = 0x302;
const ID_BLOCK = 0x30b;
const withShared = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, ignore: !HAVE_SHARED, fn });

let base: Uint8Array | undefined;
/** A generated, deterministically signed image (hyperv layout). */
async function image(): Promise<Uint8Array> {
  base ??= await generateImage(["-sign_key", KEY, "-sign_deterministic", "1"]);
  return base;
}

/** The `n`-th PAGE_DATA with `dataType` given another data type. */
function retyped(bytes: Uint8Array, from: number, to: number): Uint8Array {
  const v = new DataView(bytes.buffer, bytes.byteOffset);
  const out = bytes.slice();
  const ov = new DataView(out.buffer);
  const page = headersOf(bytes).find((h) =>
    h.type === PAGE && v.getUint16(h.at + 8 + 0x14, true) === from
  )!;
  ov.setUint16(page.at + 8 + 0x14, to, true);
  return fixHeaders(out);
}

/** A copy with the last byte of the first page with data flipped (outside any ACPI table). */
function tampered(bytes: Uint8Array): Uint8Array {
  const v = new DataView(bytes.buffer, bytes.byteOffset);
  const out = bytes.slice();
  const page = headersOf(bytes).find((h) => h.type === PAGE && v.getUint32(h.at + 8 + 0xc, true))!;
  out[v.getUint32(page.at + 8 + 0xc, true) + 4095] ^= 1;
  return out;
}

withShared(
  "igvmgen verify --json FILE: a loader refusing the file in the probe is a warning line, the JSON is printed",
  async () => {
    const dir = tempDir();
    // A CPUID_XF page (Cloud Hypervisor on MSHV refuses it) and a mismatching digest, so that
    // verify looks for another loader's digest.
    Deno.writeFileSync(`${dir}/x.igvm`, tampered(retyped(await image(), 2, 3)));
    const r = await runCli(["verify", "--json", `${dir}/x.igvm`]);
    assertEquals(r.code, 1, r.stderr);
    const report = JSON.parse(r.stdout);
    assertEquals(report.ok, false);
    assert(report.warnings.some((w: string) => w.startsWith("ch-mshv cannot take this file")));
    assert(report.problems.some((p: string) => p.includes("is not the file's")));
    const text = await runCli(["verify", `${dir}/x.igvm`]);
    assertEquals(text.code, 1);
    assert(text.stdout.includes("warning: ch-mshv cannot take this file"), text.stdout);
    assertEquals(text.stderr, "");
  },
);

withShared(
  "igvmgen measure --all-loaders FILE: every loader's line; exit 0 only when the default loader measures it",
  async () => {
    const dir = tempDir();
    Deno.writeFileSync(`${dir}/x.igvm`, retyped(await image(), 2, 3));
    const ok = await runCli(["measure", "--all-loaders", `${dir}/x.igvm`]);
    assertEquals(ok.code, 0, ok.stderr);
    const lines = ok.stdout.trim().split("\n");
    assertEquals(lines.length, 7);
    assert(/^ch-mshv +error: .*CPUID_XF/.test(lines[1]), lines[1]);
    assert(/^hyperv +[0-9a-f]{96}$/.test(lines[0]), lines[0]);
    // A page data type no loader knows: hyperv, the default, refuses it too.
    Deno.writeFileSync(`${dir}/u.igvm`, retyped(await image(), 2, 9));
    for (const json of [false, true]) {
      const bad = await runCli([
        "measure",
        "--all-loaders",
        ...(json ? ["--json"] : []),
        `${dir}/u.igvm`,
      ]);
      assertEquals(bad.code, 1, bad.stdout + bad.stderr);
      if (json) {
        const doc = JSON.parse(bad.stdout);
        assertEquals(doc.loaders.length, 7);
        assertEquals(doc.defaultLoader, "hyperv");
        assert(doc.loaders[0].launchDigest.startsWith("error: "));
      } else assertEquals(bad.stdout.trim().split("\n").length, 7);
    }
  },
);

withShared(
  "igvmgen sign FILE without SNP_POLICY -config_file C: adds the policy header; verify accepts the output",
  async () => {
    const dir = tempDir();
    const bytes = removeHeader(removeHeader(await image(), ID_BLOCK), POLICY);
    Deno.writeFileSync(`${dir}/n.igvm`, bytes);
    const r = await runCli([
      "sign",
      `${dir}/n.igvm`,
      "-o",
      `${dir}/s.igvm`,
      "-sign_key",
      KEY,
      "-config_file",
      `${FIXTURES}tei-config.json`,
    ]);
    assertEquals(r.code, 0, r.stderr);
    assert(r.stderr.includes("had no SNP_POLICY header: added one"), r.stderr);
    const v = await runCli(["verify", "--json", `${dir}/s.igvm`]);
    assertEquals(v.code, 0, v.stdout);
    // tei-config.json: SMT allowed, ABI 0.31, bit 17 set -> 0x3001f.
    assertEquals(JSON.parse(v.stdout).policy, "0x3001f");
    const signed = Deno.readFileSync(`${dir}/s.igvm`);
    const policy = bodyOf(signed, POLICY);
    assertEquals(new DataView(policy.buffer).getUint32(8, true), 1, "the SNP platform's mask");
    // The policy header is an initialization header: after the platform, before every directive.
    assertEquals(headersOf(signed).map((h) => h.type).slice(0, 3), [PLATFORM, POLICY, PAGE]);
  },
);

withShared(
  "igvmgen sign: refuses, writing nothing, when verify would reject the signed file",
  async () => {
    const dir = tempDir();
    Deno.writeFileSync(`${dir}/h.igvm`, await image());
    // A KVM loader's digest for a file not laid out for KVM: verify looks for file loaders' only.
    const kvm = await runCli([
      "sign",
      `${dir}/h.igvm`,
      "-o",
      `${dir}/k.igvm`,
      "-sign_key",
      KEY,
      "--loader",
      "qemu-kvm",
    ]);
    assertEquals(kvm.code, 1, kvm.stderr);
    assert(kvm.stderr.includes("the signed file would not pass verify"), kvm.stderr);
    assert(kvm.stderr.includes("is not laid out for KVM"), kvm.stderr);
    // ACPI tables with a bad checksum: the signature cannot fix them.
    const acpi = (await image()).slice();
    const v = new DataView(acpi.buffer);
    const xsdt = headersOf(acpi).find((h) =>
      h.type === PAGE && v.getBigUint64(h.at + 8, true) === 0x100000n
    )!;
    acpi[v.getUint32(xsdt.at + 8 + 0xc, true) + 9] ^= 0xff; // the XSDT's checksum byte
    Deno.writeFileSync(`${dir}/a.igvm`, acpi);
    const bad = await runCli(["sign", `${dir}/a.igvm`, "-o", `${dir}/b.igvm`, "-sign_key", KEY]);
    assertEquals(bad.code, 1, bad.stderr);
    assert(bad.stderr.includes("would not pass verify: ACPI"), bad.stderr);
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["a.igvm", "h.igvm"]);
  },
);

withShared(
  "-svn N: the bytes are kept, and a note says the ID block's guest SVN differs",
  async () => {
    const dir = tempDir();
    Deno.writeFileSync(`${dir}/k`, Deno.readFileSync(`${FIXTURES}test_bzImage`));
    const args = ["-kernel", `${dir}/k`, "-sign_key", KEY, "-sign_deterministic", "1"];
    const five = await runCli([
      ...args,
      "-o",
      `${dir}/5.igvm`,
      "-svn",
      "5",
      "-measurement_file",
      `${dir}/5.json`,
    ]);
    assertEquals(five.code, 0, five.stderr);
    assert(
      five.stderr.includes("the measurement JSON's guest SVN is 5 (-svn), the ID block's is 2"),
      five.stderr,
    );
    assertEquals(JSON.parse(Deno.readTextFileSync(`${dir}/5.json`))["x-ms-sevsnpvm-guestsvn"], "5");
    const two = await runCli([
      ...args,
      "-o",
      `${dir}/2.igvm`,
      "-svn",
      "2",
      "-measurement_file",
      `${dir}/2.json`,
    ]);
    assertEquals(two.code, 0, two.stderr);
    assert(!two.stderr.includes("guest SVN"), two.stderr);
    // The image is the same whatever -svn says: the original's behaviour, kept.
    assertEquals(Deno.readFileSync(`${dir}/5.igvm`), Deno.readFileSync(`${dir}/2.igvm`));
    const sign = await runCli([
      "sign",
      `${dir}/2.igvm`,
      "-o",
      `${dir}/s.igvm`,
      "-sign_key",
      KEY,
      "-config_file",
      `${FIXTURES}tei-config.json`,
      "-measurement_file",
      `${dir}/s.json`,
    ]);
    assertEquals(sign.code, 0, sign.stderr);
    assert(sign.stderr.includes("guest SVN is 0 (-svn), the ID block's is 9"), sign.stderr);
    // --quiet drops the note (and the success line), as generation's --quiet does.
    const quiet = await runCli([
      "sign",
      `${dir}/2.igvm`,
      "-o",
      `${dir}/q.igvm`,
      "-sign_key",
      KEY,
      "-config_file",
      `${FIXTURES}tei-config.json`,
      "-measurement_file",
      `${dir}/q.json`,
      "--quiet",
    ]);
    assertEquals(quiet.code, 0, quiet.stderr);
    assertEquals(quiet.stderr, "");
  },
);

withShared(
  "igvmgen measure --loader qemu-kvm|ch-kvm|openvmm-kvm FILE without an SEV-SNP platform: refused",
  async () => {
    const dir = tempDir();
    const noSnp = editBody(await image(), PLATFORM, (v, at) => v.setUint8(at + 5, 1)); // VBS
    Deno.writeFileSync(`${dir}/n.igvm`, noSnp);
    for (const loader of ["qemu-kvm", "ch-kvm", "openvmm-kvm", "hyperv"]) {
      const r = await runCli(["measure", "--loader", loader, `${dir}/n.igvm`]);
      assertEquals(r.code, 1, `${loader}: ${r.stdout}`);
      assert(r.stderr.includes("no SEV-SNP platform"), r.stderr);
      assertEquals(r.stdout, "");
    }
  },
);

withShared(
  "igvmgen measure|sign --matrix: a vCPU count or a CPU listed twice is refused, not a duplicate row",
  async () => {
    const dir = tempDir();
    Deno.writeFileSync(`${dir}/k.igvm`, await generateImage(["-target", "qemu-kvm"]));
    for (
      const [vcpus, cpu, words] of [
        ["1,1", "milan", `--vcpus: "1" is listed twice`],
        ["1,2", "milan,EPYC-Milan-v2", `--cpu: "EPYC-Milan-v2" is listed twice (as "milan"`],
        ["2", "genoa,0x00a10f10", `"0x00a10f10" is listed twice`],
      ]
    ) {
      for (const command of ["measure", "sign"]) {
        const extra = command === "sign" ? ["--payload-out", `${dir}/p-{vcpus}-{cpu}.bin`] : [];
        const r = await runCli([
          command,
          `${dir}/k.igvm`,
          "--matrix",
          "--vcpus",
          vcpus,
          "--cpu",
          cpu,
          ...extra,
        ]);
        assertEquals(r.code, 2, `${command} ${vcpus} ${cpu}: ${r.stdout}${r.stderr}`);
        assert(r.stderr.includes(words), r.stderr);
      }
    }
  },
);

withShared(
  "--quiet: verify, measure and sign print no success line, and still print problems",
  async () => {
    const dir = tempDir();
    Deno.writeFileSync(`${dir}/a.igvm`, await image());
    const verify = await runCli(["verify", "--quiet", `${dir}/a.igvm`]);
    assertEquals([verify.code, verify.stdout, verify.stderr], [0, "", ""]);
    Deno.writeFileSync(`${dir}/t.igvm`, tampered(await image()));
    const bad = await runCli(["verify", "--quiet", `${dir}/t.igvm`]);
    assertEquals(bad.code, 1);
    assert(bad.stdout.includes("is not the file's"), bad.stdout);
    const sign = await runCli([
      "sign",
      "--quiet",
      `${dir}/a.igvm`,
      "-o",
      `${dir}/s.igvm`,
      "-sign_key",
      KEY,
    ]);
    assertEquals([sign.code, sign.stdout, sign.stderr], [0, "", ""]);
    const measure = await runCli(["measure", "--quiet", `${dir}/a.igvm`]);
    assertEquals(measure.code, 0);
    assert(/^[0-9a-f]{96}\n$/.test(measure.stdout), measure.stdout);
  },
);

withShared("-cpu EPYC-Milan, QEMU's model names: the same image as the short name", async () => {
  const common = [
    "-target",
    "qemu-kvm",
    "-vcpus",
    "2",
    "-sign_key",
    KEY,
    "-sign_deterministic",
    "1",
  ];
  const short = await generateImage([...common, "-cpu", "milan"]);
  for (const name of ["EPYC-Milan", "epyc-milan-v3"]) {
    assertEquals(await generateImage([...common, "-cpu", name]), short, name);
  }
});

Deno.test("parseCpuSignature() knows QEMU's EPYC names and versions, and no object property", () => {
  assertEquals(parseCpuSignature("EPYC-Genoa-v2"), 0x00a10f10);
  assertEquals(parseCpuSignature("EPYC-Rome-v5"), 0x00830f10);
  assertEquals(parseCpuSignature("EPYC"), 0x00800f12);
  assertEquals(parseCpuSignature("EPYC-IBPB"), 0x00800f12);
  assertEquals(parseCpuSignature("EPYC-Turin"), 0x00b00f00);
  assertEquals(parseCpuSignature("EPYC-Turin-v9"), undefined);
  assertEquals(parseCpuSignature("constructor"), undefined);
  assertEquals(parseCpuSignature("__proto__"), undefined);
});

withShared(
  "igvmgen verify prints control bytes from a hostile ACPI table escaped, never raw",
  async () => {
    const bytes = (await image()).slice();
    const sig = new TextEncoder().encode("APIC");
    let at = -1;
    for (let i = 0; i + 4 <= bytes.length && at < 0; i++) {
      if (sig.every((b, k) => bytes[i + k] === b)) at = i;
    }
    assert(at > 0, "no APIC table in the image");
    bytes.set([0x1b, 0x5b, 0x32, 0x4a], at); // ESC [ 2 J: clear the screen
    const dir = tempDir();
    try {
      Deno.writeFileSync(`${dir}/esc.igvm`, bytes);
      const r = await runCli(["verify", `${dir}/esc.igvm`]);
      assertEquals(r.code, 1, r.stdout);
      assert(!(r.stdout + r.stderr).includes("\u001b"), JSON.stringify(r.stdout));
      assert(r.stdout.includes("\\x1b[2J"), r.stdout);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
);

let kvmBase: Uint8Array | undefined;
/** A -target qemu-kvm image, 1 vCPU, deterministically signed. */
async function kvmImage(): Promise<Uint8Array> {
  kvmBase ??= await generateImage([
    "-target",
    "qemu-kvm",
    "-sign_key",
    KEY,
    "-sign_deterministic",
    "1",
  ]);
  return kvmBase;
}

withShared(
  "igvmgen verify FILE on a KVM layout whose ID block carries only a file-order loader's digest: exit 1",
  async () => {
    // VP context 0 made VP 1: no KVM host starts vCPU 0 from it, and only hyperv's digest is
    // unchanged (it measures the VMSA page wherever it is).
    const bytes = editBody(await kvmImage(), 0x304, (v, at) => v.setUint16(at + 0x10, 1, true));
    const dir = tempDir();
    try {
      Deno.writeFileSync(`${dir}/vp1.igvm`, bytes);
      const r = await runCli(["verify", `${dir}/vp1.igvm`]);
      assertEquals(r.code, 1, r.stdout);
      assert(/laid out for KVM.*no KVM loader gives it/.test(r.stdout), r.stdout);
      assert(!r.stdout.includes("OK"), r.stdout);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
);

withShared(
  "igvmgen verify FILE: an SNP_POLICY whose mask names no platform, and parameters that overlap, are problems",
  async () => {
    const base = await kvmImage();
    const mapArea = new DataView(bodyOf(base, 0x30c).buffer).getUint32(0, true);
    const cases: [string, Uint8Array, RegExp][] = [
      [
        "policy-mask0.igvm",
        editBody(base, POLICY, (v, at) => v.setUint32(at + 8, 0, true)),
        /SNP_POLICY mask 0x0 names no platform of the file/,
      ],
      [
        "vpcount-in-map.igvm",
        editBody(base, 0x307, (v, at) => {
          v.setUint32(at, mapArea, true);
          v.setUint32(at + 4, 0, true);
        }),
        /VP_COUNT_PARAMETER at byte 0 of parameter area \d+ overlaps MEMORY_MAP at byte 0|MEMORY_MAP at byte 0 of parameter area \d+ overlaps VP_COUNT_PARAMETER at byte 0/,
      ],
    ];
    const dir = tempDir();
    try {
      for (const [name, bytes, problem] of cases) {
        Deno.writeFileSync(`${dir}/${name}`, bytes);
        for (const args of [["verify"], ["verify", "--loader", "qemu-kvm"]]) {
          const r = await runCli([...args, `${dir}/${name}`]);
          assertEquals(r.code, 1, `${args.join(" ")} ${name}: ${r.stdout}`);
          assert(problem.test(r.stdout + r.stderr), `${args.join(" ")} ${name}: ${r.stdout}`);
        }
      }
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
);
