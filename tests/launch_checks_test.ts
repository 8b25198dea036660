/**
 * Launch checks of the KVM loaders: the original's golden images and today's hyperv images
 * are refused, each for the reasons ../shared/LOADERS.md gives; `verify --loader` through
 * the CLI; the KVM policy rules.
 */
import { assert, assertEquals } from "./assert.ts";
import { checkLaunch, kvmPolicyProblems } from "../lib/measure/launch_checks.ts";
import { readIgvmFile } from "../lib/igvm/reader.ts";
import { generateImage, HAVE_SHARED, runCli, SHARED, tempDir } from "./helpers.ts";
import { bytesAccess } from "./kvm_helpers.ts";

const GOLDEN_IMAGES = HAVE_SHARED
  ? [...Deno.readDirSync(`${SHARED}golden`)].map((e) => e.name).filter((n) => n.endsWith(".igvm"))
    .sort()
  : [];

Deno.test("kvmPolicyProblems() follows Linux SNP_POLICY_MASK_VALID and bit 17", () => {
  assertEquals(kvmPolicyProblems(0x3001fn), []);
  assertEquals(kvmPolicyProblems(0x30000n), []);
  assertEquals(kvmPolicyProblems(0x1b0000n), []); // debug and single socket are allowed
  assert(kvmPolicyProblems(0x1001fn)[0].includes("bit 17"));
  assert(kvmPolicyProblems(0x7001fn)[0].includes("MIGRATE_MA"));
  assert(kvmPolicyProblems(0x23001fn)[0].includes("0x200000"));
});

for (const name of GOLDEN_IMAGES) {
  Deno.test(`checkLaunch() refuses the original's ${name} on every KVM loader, saying why`, async () => {
    const bytes = Deno.readFileSync(`${SHARED}golden/${name}`);
    const headers = readIgvmFile(bytes);
    const file = bytesAccess(bytes);
    const qemu = await checkLaunch("qemu-kvm", file, headers);
    assert(qemu.refusals.some((r) => r.includes("VMSA GPA 0x803000")), qemu.refusals.join("\n"));
    assert(qemu.refusals.some((r) => r.includes("RestrictInjection")));
    const ch = await checkLaunch("ch-kvm", file, headers);
    assertEquals(ch.refusals.length, 1); // Cloud Hypervisor ignores the GPA: only INIT2 fails
    assert(ch.refusals[0].includes("KVM_SEV_INIT2"));
    const openvmm = await checkLaunch("openvmm-kvm", file, headers);
    assert(openvmm.refusals.some((r) => r.includes("highest VTL 2")));
    assert(openvmm.refusals.some((r) => r.includes("not the last directive")));
  });
}

Deno.test("checkLaunch() on a hyperv x64 image: OpenVMM does not object to the boot mode", async () => {
  const bytes = await generateImage(["-boot_mode", "x64"]);
  const r = await checkLaunch("openvmm-kvm", bytesAccess(bytes), readIgvmFile(bytes));
  assert(!r.refusals.some((x) => x.includes("64-bit")), r.refusals.join("\n"));
  const x86 = await generateImage([]);
  const r86 = await checkLaunch("openvmm-kvm", bytesAccess(x86), readIgvmFile(x86));
  assert(r86.refusals.some((x) => x.includes("64-bit")));
});

Deno.test("igvmgen verify --loader qemu-kvm FILE: a hyperv image is refused with every reason, exit 1", async () => {
  const dir = tempDir();
  try {
    Deno.writeFileSync(`${dir}/a.igvm`, await generateImage([]));
    const r = await runCli(["verify", "--loader", "qemu-kvm", `${dir}/a.igvm`]);
    assertEquals(r.code, 1);
    const lines = r.stdout.trim().split("\n");
    assert(lines.some((l) => l.includes("qemu-kvm refuses: VP context 0: VMSA GPA 0x803000")));
    assert(lines.some((l) => l.includes("qemu-kvm refuses: SEV features 0x9")));
    // QEMU's own message, seen when QEMU 10.2.2 loads a page at 0xA0000 (tests/qemu_igvm_test.ts).
    assert(
      lines.some((l) =>
        l.includes("qemu-kvm refuses: ") &&
        /"Could not prepare memory at address 0xA0000 due to existing non-RAM region"/.test(l)
      ),
      r.stdout,
    );
    assert(lines[lines.length - 1].endsWith("qemu-kvm would not start this file (3 reasons)"));
    // What the user reads names no file outside the project.
    assert(!/LOADERS|UNCONFIRMED|§|#\d/.test(r.stdout), r.stdout);
    const json = await runCli(["verify", "--loader=ch-kvm", "--json", `${dir}/a.igvm`]);
    assertEquals(json.code, 1);
    const doc = JSON.parse(json.stdout);
    assertEquals([doc.loader, doc.accepted, doc.refusals.length], ["ch-kvm", false, 1]);
    const bad = await runCli(["verify", "--loader", "kvm", `${dir}/a.igvm`]);
    assertEquals(bad.code, 2);
    assert(bad.stderr.startsWith("error: --loader: expected qemu-kvm, ch-kvm, openvmm-kvm"));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("igvmgen verify --loader qemu-kvm FILE: an accepted -target qemu-kvm image says its digest is predicted, not confirmed on hardware", async () => {
  const dir = tempDir();
  try {
    Deno.writeFileSync(
      `${dir}/q.igvm`,
      await generateImage(["-target", "qemu-kvm", "-boot_mode", "x64"]),
    );
    const r = await runCli(["verify", "--loader", "qemu-kvm", `${dir}/q.igvm`]);
    assertEquals(r.code, 0, r.stdout + r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert(lines[lines.length - 1].endsWith("qemu-kvm would start this file"), r.stdout);
    assert(
      lines.some((l) =>
        l.includes("note: the ID block carries the launch digest igvmgen predicts for QEMU") &&
        l.includes("not yet confirmed on SEV-SNP hardware")
      ),
      r.stdout,
    );
    assert(!/LOADERS|UNCONFIRMED|§|#\d/.test(r.stdout), r.stdout);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("checkLaunch() and the qemu-kvm model refuse pages, inserts and required memory on QEMU's I/O APIC, HPET and local APIC; other loaders take them", async () => {
  const { editBody, headerIndex, insertHeader, zeroPageBody } = await import("./igvm_edit.ts");
  const { loaderDigest } = await import("../lib/measure/loaders.ts");
  const image = await generateImage(["-target", "qemu-kvm", "-sign_deterministic", "1"]);
  const PAGE = 0x302;
  const INSERT = 0x303;
  const REQUIRED_MEMORY = 0x305;
  const zeroPage = (gpa: number) => zeroPageBody(BigInt(gpa), 1);
  const required = (gpa: number, bytes: number) => {
    const b = new Uint8Array(0x18);
    const v = new DataView(b.buffer);
    v.setBigUint64(0, BigInt(gpa), true);
    v.setUint32(8, 1, true);
    v.setUint32(0x0c, bytes, true);
    return b;
  };
  const device = (what: string, gpa: number, name: string, range: string) =>
    `${what} at 0x${gpa.toString(16)} overlaps the ${name} at ${range}, which QEMU maps as a ` +
    `device, not RAM: QEMU stops ("Could not prepare memory at address ... due to existing ` +
    `non-RAM region", seen with QEMU 10.2.2)`;
  const cases: [Uint8Array, string][] = [
    [
      insertHeader(image, PAGE, zeroPage(0xfec0_0000), headerIndex(image, PAGE)),
      device("page", 0xfec0_0000, "I/O APIC", "0xfec00000-0xfec00fff"),
    ],
    [
      insertHeader(image, PAGE, zeroPage(0xfed0_0000), headerIndex(image, PAGE)),
      device("page", 0xfed0_0000, "HPET", "0xfed00000-0xfed003ff"),
    ],
    [
      insertHeader(image, PAGE, zeroPage(0xfeef_f000), headerIndex(image, PAGE)),
      device("page", 0xfeef_f000, "local APIC", "0xfee00000-0xfeefffff"),
    ],
    [
      editBody(image, INSERT, (v, at) => v.setBigUint64(at, 0xfec0_0000n, true)),
      device("PARAMETER_INSERT", 0xfec0_0000, "I/O APIC", "0xfec00000-0xfec00fff"),
    ],
    // No launch update comes from required memory, but QEMU stops on it all the same.
    [
      insertHeader(
        image,
        REQUIRED_MEMORY,
        required(0xfeb0_0000, 0x20_0000),
        headerIndex(image, PAGE),
      ),
      device("REQUIRED_MEMORY", 0xfeb0_0000, "I/O APIC", "0xfec00000-0xfec00fff"),
    ],
  ];
  for (const [bytes, reason] of cases) {
    const headers = readIgvmFile(bytes);
    const file = bytesAccess(bytes);
    const qemu = await checkLaunch("qemu-kvm", file, headers, { vcpus: 1, cpuSignature: 0 }, {
      compareIdBlock: false,
    });
    assertEquals(qemu.refusals, [reason]);
    const e = await loaderDigest("qemu-kvm", file, headers).then(() => undefined, (e) => e);
    assertEquals((e as Error | undefined)?.message, reason);
    const ch = await checkLaunch("ch-kvm", file, headers, { vcpus: 1, cpuSignature: 0 }, {
      compareIdBlock: false,
    });
    assertEquals(ch.refusals, []);
  }
  // The page just below the I/O APIC and just above the HPET are RAM to QEMU.
  for (const gpa of [0xfebf_f000, 0xfed0_1000]) {
    const bytes = insertHeader(image, PAGE, zeroPage(gpa), headerIndex(image, PAGE));
    const qemu = await checkLaunch("qemu-kvm", bytesAccess(bytes), readIgvmFile(bytes), {
      vcpus: 1,
      cpuSignature: 0,
    }, { compareIdBlock: false });
    assertEquals(qemu.refusals, [], `0x${gpa.toString(16)}`);
  }
});
