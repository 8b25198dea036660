/**
 * The KVM loader models: the reset (AP) VMSA checked field by field against the AMD APM
 * offsets and QEMU's reset values, and against SHA-384 known answers from virtee's
 * sev-snp-measure; the boot CPU's VMSA transform; QEMU's launch order on an image in the
 * original's layout.
 */
import { assert, assertEquals } from "./assert.ts";
import { sha384 } from "../lib/hash/wasm_sha384.ts";
import { SnpLaunchDigest } from "../lib/measure/snp_digest.ts";
import { toHex } from "../lib/bytes/le.ts";
import {
  CPU_SIGNATURES,
  KVM_VMSA_GPA,
  kvmBspVmsa,
  kvmTargetVmsa,
  parseCpuSignature,
  resetVmsa,
} from "../lib/x86/kvm_vmsa.ts";
import { chKvmUpdates, openvmmKvmUpdates, qemuKvmUpdates } from "../lib/measure/kvm_loaders.ts";
import { launchDigestOf } from "../lib/measure/launch_update.ts";
import { bytesAccess, updatesOf } from "./kvm_helpers.ts";
import { readIgvmFile } from "../lib/igvm/reader.ts";
import { IGVM_VHT_VP_CONTEXT } from "../lib/igvm/defs.ts";
import { generateImage } from "./helpers.ts";

// The reset VMSA, written from AMD APM vol. 2 table B-4 (offsets) and QEMU's
// x86_cpu_reset_hold through KVM (values, ../shared/LOADERS.md §4.4): [offset, bytes, value].
function expectedResetVmsa(sevFeatures: bigint, rdx: number): Uint8Array {
  const fields: [number, number, bigint][] = [];
  const seg = (at: number, selector: number, attrib: number, limit: number, base: bigint) =>
    fields.push([at, 2, BigInt(selector)], [at + 2, 2, BigInt(attrib)], [
      at + 4,
      4,
      BigInt(limit),
    ], [at + 8, 8, base]);
  seg(0x00, 0, 0x93, 0xffff, 0n); // ES
  seg(0x10, 0xf000, 0x9b, 0xffff, 0xffff0000n); // CS
  seg(0x20, 0, 0x93, 0xffff, 0n); // SS
  seg(0x30, 0, 0x93, 0xffff, 0n); // DS
  seg(0x40, 0, 0x93, 0xffff, 0n); // FS
  seg(0x50, 0, 0x93, 0xffff, 0n); // GS
  seg(0x60, 0, 0, 0xffff, 0n); // GDTR
  seg(0x70, 0, 0x82, 0xffff, 0n); // LDTR
  seg(0x80, 0, 0, 0xffff, 0n); // IDTR
  seg(0x90, 0, 0x8b, 0xffff, 0n); // TR
  fields.push(
    [0x0d0, 8, 0x1000n], // EFER.SVME
    [0x148, 8, 0x40n], // CR4.MCE
    [0x158, 8, 0x10n], // CR0.ET
    [0x160, 8, 0x400n], // DR7
    [0x168, 8, 0xffff0ff0n], // DR6
    [0x170, 8, 2n], // RFLAGS
    [0x178, 8, 0xfff0n], // RIP
    [0x268, 8, 0x0007040600070406n], // G_PAT
    [0x310, 8, BigInt(rdx)], // RDX
    [0x3b0, 8, sevFeatures], // SEV_FEATURES
    [0x3e8, 8, 1n], // XCR0
    [0x408, 4, 0x1f80n], // MXCSR
    [0x410, 2, 0x37fn], // X87_FCW
  );
  const page = new Uint8Array(4096);
  for (const [at, n, value] of fields) {
    for (let i = 0; i < n; i++) page[at + i] = Number((value >> BigInt(8 * i)) & 0xffn);
  }
  return page;
}

// SHA-384 of virtee/sev-snp-measure @8f2b337 `VMSA.build_save_area(0xfffffff0, features,
// signature, VMMType.QEMU)`, computed by running it locally.
const SEV_SNP_MEASURE_AP_SHA384: Record<string, Record<string, string>> = {
  milan: {
    "1":
      "728af287318db5f3fc4d2357a969483c4225956dc555b514a78d64ee372112d13b3dca8afd02cdbd1c55697d8ce087f5",
    "21":
      "c09a66985cec1bc375ace3f0bc319ca50136de70ee7ba4a42b4b3f7df6e05a7b7e9856cdee5f8e27704ba0ac03603938",
  },
  genoa: {
    "1":
      "7d39672d1b8a3e38353a8eef23af9a14a850be7b9c80bd29898aff5cd2386719e5ce72ad660a022def56b15e5e0f899e",
    "21":
      "110f8e4226a9db34ebd226d34e085f834654ef8a7e07ebd904a7f93855fb0d75877e6f8fec663f77fd23fd6fd79fd73b",
  },
  rome: {
    "1":
      "34f43cbd622a2c18c3e042a6d30358628c35d97690fb5d3566644b45b26f7c907c7c20b959a53c74eb6e47414e68bb78",
    "21":
      "7198dba2f23398bd4c0b34dd0385314025b80d7daaeb771117878710955171cea6b61715dd7a8b7d2904612edb6d3982",
  },
  turin: {
    "1":
      "49ddacf0393b6d9401ac505250ec615e923bc580ff6ce0a0b4c5f2e261b0a972cd4facec381e17ad503ce64f4de8a83e",
    "21":
      "3e58103ac68fdac8f71f591f0846d462ecda9cb6a64b856a3769a9b6ab1a9975bf80b492d532d4fcd3a699aede59e72a",
  },
};

Deno.test("parseCpuSignature() knows the EPYC models and takes hex signatures", () => {
  assertEquals(parseCpuSignature("milan"), 0x00a00f11);
  assertEquals(parseCpuSignature("Genoa"), 0x00a10f10);
  assertEquals(parseCpuSignature("rome"), 0x00830f10);
  assertEquals(parseCpuSignature("turin"), 0x00b00f00);
  assertEquals(parseCpuSignature("0x00A00F11"), 0x00a00f11);
  assertEquals(parseCpuSignature("zen9"), undefined);
  assertEquals(parseCpuSignature("0x123456789"), undefined);
});

for (const [name, signature] of Object.entries(CPU_SIGNATURES)) {
  for (const features of [1n, 0x21n]) {
    Deno.test(`resetVmsa() for ${name}, SEV features 0x${features.toString(16)}: every field, and sev-snp-measure's page`, () => {
      const page = resetVmsa(features, signature);
      const expected = expectedResetVmsa(features, signature);
      for (let i = 0; i < 4096; i++) {
        if (page[i] !== expected[i]) {
          throw new Error(`byte 0x${i.toString(16)}: ${page[i]}, expected ${expected[i]}`);
        }
      }
      assertEquals(toHex(sha384(page)), SEV_SNP_MEASURE_AP_SHA384[name][features.toString(16)]);
    });
  }
}

Deno.test("two reset VMSAs at 0xFFFFFFFFF000 give sev-snp-measure's GCTX digest", () => {
  // GCTX().update_vmsa_page(page) twice, page = the Milan AP with SEV features 1.
  const digest = new SnpLaunchDigest();
  const page = resetVmsa(1n, CPU_SIGNATURES.milan);
  digest.extend(KVM_VMSA_GPA, 2, page);
  digest.extend(KVM_VMSA_GPA, 2, page);
  assertEquals(
    toHex(digest.value),
    "88631611afd48a2afd25111cebbfbb6af2fb6037a9d661ea4a10f851663b005b2fa38a2c2bbd0f40ffd125898c04a3d4",
  );
});

/** A u64 of a page. */
function u64(page: Uint8Array, at: number): bigint {
  return new DataView(page.buffer, page.byteOffset).getBigUint64(at, true);
}

Deno.test("kvmBspVmsa(qemu) applies CR0.ET, CR4.MCE, EFER.SVME, TR base from LDTR, KVM's FPU defaults", async () => {
  const bytes = await generateImage(["-boot_mode", "x64", "-svme", "0"]);
  const file = readIgvmFile(bytes);
  const vp = file.directives.find((d) => d.type === IGVM_VHT_VP_CONTEXT)!;
  const vmsa = file.pages.get(Number(vp.fields.GPA))!;
  const out = kvmBspVmsa("qemu", vmsa);
  assertEquals(u64(out, 0x158), u64(vmsa, 0x158) | 0x10n);
  assertEquals(u64(out, 0x148), u64(vmsa, 0x148) | 0x40n);
  assertEquals(u64(vmsa, 0xd0) & 0x1000n, 0n);
  assertEquals(u64(out, 0xd0), u64(vmsa, 0xd0) | 0x1000n);
  assert(u64(vmsa, 0x98) !== 0n, "the original's TR has a base");
  assertEquals(u64(out, 0x98), u64(vmsa, 0x78)); // TR.base = LDTR.base (0)
  assertEquals(new DataView(out.buffer).getUint16(0x410, true), 0x37f);
  assertEquals(new DataView(out.buffer).getUint32(0x408, true), 0x1f80);
  assertEquals(u64(out, 0x3b0), u64(vmsa, 0x3b0)); // SNP | RestrictInjection, as the file
  for (const at of [0x178, 0x1d8, 0x330, 0x150, 0x268, 0x3e8]) {
    assertEquals(u64(out, at), u64(vmsa, at), `offset 0x${at.toString(16)}`);
  }
  // Cloud Hypervisor copies TR as it is but leaves PAT, XCR0, DR6/DR7 at reset values.
  const ch = kvmBspVmsa("ch", vmsa);
  assertEquals(u64(ch, 0x98), u64(vmsa, 0x98));
  assertEquals(u64(ch, 0x168), 0xffff0ff0n);
  assertEquals(u64(ch, 0x160), 0x400n);
});

Deno.test("kvmTargetVmsa() pages are measured as they are by QEMU and Cloud Hypervisor", async () => {
  const bytes = await generateImage(["-boot_mode", "x64"]);
  const file = readIgvmFile(bytes);
  const vp = file.directives.find((d) => d.type === IGVM_VHT_VP_CONTEXT)!;
  const target = kvmTargetVmsa(file.pages.get(Number(vp.fields.GPA))!);
  assertEquals(u64(target, 0x3b0), 1n);
  assertEquals(u64(target, 0x78), u64(target, 0x98)); // LDTR.base = TR.base
  assertEquals(toHex(kvmBspVmsa("qemu", target)), toHex(target));
  assertEquals(toHex(kvmBspVmsa("ch", target)), toHex(target));
});

Deno.test("qemuKvmUpdates() on the original's layout: the parameter page overtakes the secrets page, N VMSAs last", async () => {
  const bytes = await generateImage([]);
  const headers = readIgvmFile(bytes);
  const host = { vcpus: 3, cpuSignature: CPU_SIGNATURES.genoa };
  const updates = await updatesOf(qemuKvmUpdates(bytesAccess(bytes), headers, host));
  const at = (gpa: number) => updates.findIndex((u) => u.gpa === gpa);
  // File order is CPUID 0x800000, SECRETS 0x801000, PARAM 0x802000, VMSA 0x803000.
  assert(at(0x800000) < at(0x802000) && at(0x802000) < at(0x801000), "QEMU's queue order");
  assertEquals(updates[at(0x802000)].pageType, 4);
  assertEquals(at(0x803000), -1); // the VP context is not a page under KVM
  const vmsas = updates.slice(-3);
  assertEquals(vmsas.map((u) => [u.pageType, u.gpa]), [[2, KVM_VMSA_GPA], [2, KVM_VMSA_GPA], [
    2,
    KVM_VMSA_GPA,
  ]]);
  assertEquals(toHex(vmsas[1].contents), toHex(sha384(resetVmsa(0x9n, CPU_SIGNATURES.genoa))));
  assertEquals(toHex(vmsas[2].contents), toHex(vmsas[1].contents));
  assertEquals(updates.filter((u) => u.pageType === 2).length, 3);
  // Cloud Hypervisor: file order, zero pages are SNP ZERO pages, APs with RDX 0x600.
  const ch = await updatesOf(chKvmUpdates(bytesAccess(bytes), headers, host));
  const chAt = (gpa: number) => ch.findIndex((u) => u.gpa === gpa);
  assert(chAt(0x801000) < chAt(0x802000), "file order");
  assert(ch.some((u) => u.pageType === 3), "zero pages");
  assertEquals(toHex(ch[ch.length - 1].contents), toHex(sha384(resetVmsa(0x9n, 0x600))));
  // OpenVMM: zero pages normal, file order.
  const ov = await updatesOf(openvmmKvmUpdates(bytesAccess(bytes), headers, host));
  assert(!ov.some((u) => u.pageType === 3));
  assertEquals(ov.length, updates.length);
});

Deno.test("launchDigestOf() of qemu-kvm depends on the vCPU count and CPU model", async () => {
  const bytes = await generateImage([]);
  const headers = readIgvmFile(bytes);
  const digest = async (vcpus: number, cpuSignature: number) =>
    toHex(
      await launchDigestOf(qemuKvmUpdates(bytesAccess(bytes), headers, { vcpus, cpuSignature })),
    );
  const one = await digest(1, CPU_SIGNATURES.milan);
  assertEquals(await digest(1, CPU_SIGNATURES.genoa), one); // no AP, no signature
  const two = await digest(2, CPU_SIGNATURES.milan);
  assert(two !== one);
  assert(await digest(2, CPU_SIGNATURES.genoa) !== two);
});
