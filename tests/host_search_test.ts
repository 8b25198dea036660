/**
 * The host an ID block is for: lib/measure/host_search.ts against the loader models run in
 * full for each host (an independent path: no extension of a digest), and `verify`/`measure`
 * without --loader on files laid out for KVM.
 */
import { assert, assertEquals } from "./assert.ts";
import { generateImage, runCli, tempDir } from "./helpers.ts";
import { bytesAccess } from "./kvm_helpers.ts";
import { fixHeaders, pageDataOffset } from "./igvm_edit.ts";
import { readIgvmFile } from "../lib/igvm/reader.ts";
import { toHex } from "../lib/bytes/le.ts";
import {
  describeHostMatch,
  findKvmHost,
  hostOptions,
  kvmHostDigests,
} from "../lib/measure/host_search.ts";
import { KVM_LOADERS } from "../lib/measure/kvm_loaders.ts";
import { launchDigestOf } from "../lib/measure/launch_update.ts";
import { CPU_SIGNATURES, KNOWN_CPU_MODELS } from "../lib/x86/kvm_vmsa.ts";
import { IGVM_VHS_SNP_ID_BLOCK, IGVM_VHT_SNP_ID_BLOCK } from "../lib/igvm/defs.ts";

/** The ID block's launch digest, hex. */
function idBlockLd(bytes: Uint8Array): string {
  const d = readIgvmFile(bytes).directives.find((x) => x.type === IGVM_VHT_SNP_ID_BLOCK)!;
  const at = IGVM_VHS_SNP_ID_BLOCK.off.Ld;
  return toHex(d.body.subarray(at, at + 48));
}

/** A copy with one byte of a measured page flipped (its last: no ACPI checksum covers it). */
function tampered(bytes: Uint8Array): Uint8Array {
  const out = bytes.slice();
  out[pageDataOffset(out, 0x100000) + 4095] ^= 1;
  return fixHeaders(out);
}

const images = new Map<string, Uint8Array>();
/** A -target image, made once per argument list. */
async function image(...args: string[]): Promise<Uint8Array> {
  const key = args.join(" ");
  if (!images.has(key)) images.set(key, await generateImage(args));
  return images.get(key)!;
}

Deno.test("findKvmHost() finds each host whose digest the loader model gives, run in full", async () => {
  const bytes = await image("-target", "qemu-kvm");
  const file = readIgvmFile(bytes);
  const access = bytesAccess(bytes);
  const cases = [
    { loader: "qemu-kvm", vcpus: 1, cpu: "milan" },
    { loader: "qemu-kvm", vcpus: 7, cpu: "genoa" },
    { loader: "qemu-kvm", vcpus: 64, cpu: "EPYC" },
    { loader: "ch-kvm", vcpus: 5, cpu: "turin" },
    { loader: "openvmm-kvm", vcpus: 3, cpu: "rome" },
  ] as const;
  for (const c of cases) {
    const signature = KNOWN_CPU_MODELS.find((m) => m.name === c.cpu)!.signature;
    const host = { vcpus: c.vcpus, cpuSignature: signature };
    const digest = await launchDigestOf(KVM_LOADERS[c.loader](access, file, host));
    const found = await findKvmHost(access, file, toHex(digest));
    assertEquals(found.refusals, []);
    const match = found.match!;
    assertEquals(match.vcpus, c.vcpus, describeHostMatch(match));
    // With one vCPU, or Cloud Hypervisor's APs, any CPU model gives the digest: none is named.
    const named = c.vcpus > 1 && match.loader !== "ch-kvm";
    assertEquals(match.cpu?.name, named ? c.cpu : undefined);
    // The loader found is the one asked for, or one that measures this file alike (OpenVMM
    // and QEMU do for an image without zero or shared pages): its own model says so.
    const again = { vcpus: match.vcpus, cpuSignature: match.cpu?.signature ?? 0 };
    const its = await launchDigestOf(KVM_LOADERS[match.loader](access, file, again));
    assertEquals(toHex(its), toHex(digest));
    if (c.loader !== "openvmm-kvm") assertEquals(match.loader, c.loader);
  }
  // A digest of no host: 65 vCPUs is past the search.
  const host = { vcpus: 65, cpuSignature: CPU_SIGNATURES.milan };
  const far = await launchDigestOf(KVM_LOADERS["qemu-kvm"](access, file, host));
  assertEquals((await findKvmHost(access, file, far)).match, undefined);
});

Deno.test("findKvmHost() lists a loader that refuses the file and goes on with the others", async () => {
  // A CPUID_XF page: QEMU takes it, Cloud Hypervisor and OpenVMM refuse it.
  const bytes = await image("-target", "qemu-kvm");
  const out = bytes.slice();
  const v = new DataView(out.buffer);
  const file = readIgvmFile(out);
  const cpuid = file.directives.find((d) => d.type === 0x302 && d.fields.DataType === 2n)!;
  v.setUint16(cpuid.offset + 8 + 0x14, 3, true);
  fixHeaders(out);
  const edited = readIgvmFile(out);
  const found = await findKvmHost(bytesAccess(out), edited, "00".repeat(48));
  assertEquals(found.match, undefined);
  assertEquals(found.refusals.map((r) => r.loader), ["ch-kvm", "openvmm-kvm"]);
  assert(found.refusals.every((r) => r.reason.includes("CPUID_XF")));
});

Deno.test("findKvmHost() and kvmHostDigests() without a VP 0 context: the boot CPU's reset VMSA holds the CPU signature", async () => {
  // The only VP context is VP 1's: KVM starts VP 0 from its reset state, RDX = the signature.
  const bytes = (await image("-target", "qemu-kvm")).slice();
  const context = readIgvmFile(bytes).directives.find((d) => d.type === 0x304)!;
  new DataView(bytes.buffer).setUint16(context.offset + 8 + 0x10, 1, true);
  fixHeaders(bytes);
  const file = readIgvmFile(bytes);
  const access = bytesAccess(bytes);
  for (const [vcpus, cpu] of [[1, "milan"], [3, "genoa"]] as const) {
    const host = { vcpus, cpuSignature: CPU_SIGNATURES[cpu] };
    const digest = toHex(await launchDigestOf(KVM_LOADERS["qemu-kvm"](access, file, host)));
    const found = await findKvmHost(access, file, digest, { loaders: ["qemu-kvm"] });
    assertEquals([found.match?.vcpus, found.match?.cpu?.name], [vcpus, cpu]);
    const rows = kvmHostDigests("qemu-kvm", access, file, { maxVcpus: 3 });
    let got: string | undefined;
    for await (const r of rows) if (r.vcpus === vcpus && r.cpu.name === cpu) got = toHex(r.digest);
    assertEquals(got, digest);
  }
});

Deno.test("hostOptions() gives the options that reproduce a match", () => {
  assertEquals(
    hostOptions({ loader: "qemu-kvm", vcpus: 4, cpu: { name: "genoa", signature: 0xa10f10 } }),
    "--loader qemu-kvm --vcpus 4 --cpu genoa",
  );
  assertEquals(hostOptions({ loader: "ch-kvm", vcpus: 1 }), "--loader ch-kvm");
});

Deno.test("igvmgen verify FILE: a -target qemu-kvm image for 4 vCPUs of EPYC-Genoa names its host", async () => {
  const dir = tempDir();
  const bytes = await image("-target", "qemu-kvm", "-vcpus", "4", "-cpu", "EPYC-Genoa");
  Deno.writeFileSync(`${dir}/a.igvm`, bytes);
  const r = await runCli(["verify", `${dir}/a.igvm`]);
  assertEquals(r.code, 0, r.stdout + r.stderr);
  assert(
    r.stdout.includes(`OK (launch digest ${idBlockLd(bytes)} of qemu-kvm with 4 vCPUs of genoa`),
    r.stdout,
  );
  const json = JSON.parse((await runCli(["verify", "--json", `${dir}/a.igvm`])).stdout);
  assertEquals(json.signedFor, {
    loader: "qemu-kvm",
    vcpus: 4,
    cpu: "genoa",
    cpuSignature: "0x00a10f10",
  });
  assertEquals(json.layout, "kvm");
});

for (const target of ["qemu-kvm", "ch-kvm"]) {
  Deno.test(`igvmgen verify FILE: a tampered -target ${target} image is a problem, exit 1`, async () => {
    const dir = tempDir();
    const cpu = target === "qemu-kvm" ? ["-cpu", "milan"] : [];
    const bytes = await image("-target", target, "-vcpus", "2", ...cpu);
    Deno.writeFileSync(`${dir}/t.igvm`, tampered(bytes));
    const r = await runCli(["verify", `${dir}/t.igvm`]);
    assertEquals(r.code, 1, r.stdout);
    assert(r.stdout.includes("is not this file's under qemu-kvm, ch-kvm, openvmm-kvm"), r.stdout);
    assert(!r.stdout.includes("OK"), r.stdout);
    const json = await runCli(["verify", "--json", `${dir}/t.igvm`]);
    assertEquals(json.code, 1);
    assertEquals(JSON.parse(json.stdout).ok, false);
  });
}

Deno.test("igvmgen verify FILE: a KVM image whose VMSA QEMU would not take is a problem", async () => {
  // A byte of the VMSA that QEMU does not hand to KVM: its digest is unchanged, but QEMU
  // refuses the file (verify --loader qemu-kvm says so too).
  const dir = tempDir();
  const bytes = (await image("-target", "qemu-kvm")).slice();
  const file = readIgvmFile(bytes);
  const vp = file.directives.find((d) => d.type === 0x304)!;
  bytes[Number(vp.fields.FileOffset) + 0xf9c] ^= 1;
  Deno.writeFileSync(`${dir}/v.igvm`, bytes);
  const r = await runCli(["verify", `${dir}/v.igvm`]);
  assertEquals(r.code, 1, r.stdout);
  assert(
    r.stdout.includes("qemu-kvm, whose launch digest the ID block carries, would not start"),
    r.stdout,
  );
});

Deno.test("igvmgen measure FILE: a KVM image is measured as qemu-kvm, and the ID block's host is named", async () => {
  const dir = tempDir();
  const bytes = await image("-target", "qemu-kvm", "-vcpus", "4", "-cpu", "genoa");
  Deno.writeFileSync(`${dir}/a.igvm`, bytes);
  const file = readIgvmFile(bytes);
  const one = toHex(
    await launchDigestOf(
      KVM_LOADERS["qemu-kvm"](bytesAccess(bytes), file, { vcpus: 1, cpuSignature: 0 }),
    ),
  );
  const r = await runCli(["measure", `${dir}/a.igvm`]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(r.stdout.trim(), one);
  assert(r.stderr.includes("--loader qemu-kvm --vcpus 4 --cpu genoa"), r.stderr);
  const again = await runCli([
    "measure",
    `${dir}/a.igvm`,
    "--loader",
    "qemu-kvm",
    "--vcpus",
    "4",
    "--cpu",
    "genoa",
  ]);
  assertEquals(again.stdout.trim(), idBlockLd(bytes));
  assertEquals(again.stderr, "");
});

Deno.test("measure() without a loader: a KVM image is measured as qemu-kvm, a hyperv one as hyperv", async () => {
  const { measure } = await import("../mod.ts");
  const dir = tempDir();
  const kvm = await image("-target", "qemu-kvm", "-vcpus", "4", "-cpu", "genoa");
  Deno.writeFileSync(`${dir}/k.igvm`, kvm);
  const r = await measure({ file: `${dir}/k.igvm` });
  assertEquals(r.loader, "qemu-kvm");
  const host = { vcpus: 4, cpuSignature: CPU_SIGNATURES.genoa };
  const four = await measure({ file: `${dir}/k.igvm`, host });
  assertEquals([four.loader, four.launchDigest], ["qemu-kvm", idBlockLd(kvm)]);
  Deno.writeFileSync(`${dir}/h.igvm`, await generateImage([]));
  assertEquals((await measure({ file: `${dir}/h.igvm` })).loader, "hyperv");
});

Deno.test("igvmgen verify FILE: a host CPU passed through (-cpu 0x00a10f11, Genoa B1) is found and named by its signature", async () => {
  const dir = tempDir();
  const bytes = await image("-target", "qemu-kvm", "-vcpus", "3", "-cpu", "0x00a10f11");
  Deno.writeFileSync(`${dir}/h.igvm`, bytes);
  const r = await runCli(["verify", `${dir}/h.igvm`]);
  assertEquals(r.code, 0, r.stdout);
  assert(r.stdout.includes("of qemu-kvm with 3 vCPUs of CPU 0x00a10f11,"), r.stdout);
  const m = await runCli(["measure", `${dir}/h.igvm`]);
  assert(m.stderr.includes("--loader qemu-kvm --vcpus 3 --cpu 0x00a10f11 reproduces it"), m.stderr);
});
