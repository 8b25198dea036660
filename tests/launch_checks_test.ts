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
