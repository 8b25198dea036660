/**
 * `-target qemu-kvm|ch-kvm`: images that QEMU or Cloud Hypervisor on Linux KVM start, with
 * the launch digest those hosts make KVM compute (../shared/LOADERS.md §4, §6, §9, §13).
 *
 * The layout differs from the original's (`-target hyperv`) in these ways:
 * - the VP context is at 0xFFFFFFFFF000 and is the last directive: KVM measures every VMSA
 *   there, after every page;
 * - the parameter area's directives come first: QEMU issues a PARAMETER_INSERT as soon as
 *   it reads it, ahead of the pages it still buffers, so anywhere else it would be measured
 *   out of file order;
 * - no page below 1 MiB: the RSDP moves from 0xE0000 to the page after the ACPI tables, and
 *   boot_params.acpi_rsdp_addr points at it;
 * - the VMSA holds what KVM rebuilds for the boot CPU (kvmTargetVmsa): SEV features SNP
 *   only, CR0.ET, CR4.MCE, EFER.SVME, RFLAGS bit 1, reset DR6/DR7/PAT/XCR0/FPU, and LDTR's
 *   base equal to TR's (QEMU loads TR with LDTR's base);
 * - highest VTL 0.
 * With these, the file-order digest equals QEMU's for one vCPU; the ID block and the
 * measurement file hold the loader's digest for `-vcpus` and `-cpu`.
 */
import type { AcpiImage } from "../../acpi/acpi_image.ts";
import { ACPI_RSDP_ADDR } from "../../acpi/tables.ts";
import { InputError, UsageError } from "../errors.ts";
import { PAGE_SIZE, toHex } from "../bytes/le.ts";
import type { GuestImage } from "../layout/guest_image.ts";
import type { IgvmFile } from "../igvm/reader.ts";
import { readIgvmHeaders } from "../igvm/header_stream.ts";
import { rewriteIdBlockInPlace } from "../measure/id_block_file.ts";
import type { FileAccess } from "../io/file_reader.ts";
import { checkLaunch, kvmPolicyProblems } from "../measure/launch_checks.ts";
import { KVM_LOADERS, type KvmLoaderName } from "../measure/kvm_loaders.ts";
import { launchDigestOf } from "../measure/launch_update.ts";
import type { HostConfig } from "../measure/launch_update.ts";
import { extendWithApVmsas, fileOrderIsQemuOrder } from "../measure/kvm_extend.ts";
import { CPU_SIGNATURES, KVM_VMSA_GPA, kvmTargetVmsa, parseCpuSignature } from "../x86/kvm_vmsa.ts";
import type { GenerateRequest, ResolvedRequest } from "./generate_request.ts";
import { nativeVpContextOf } from "../x86/native_context.ts";

/** A KVM target: its loader and the host configuration its digest is for. */
export interface KvmTarget {
  loader: Extract<KvmLoaderName, "qemu-kvm" | "ch-kvm">;
  host: HostConfig;
  /** `-native`: the image also carries a NATIVE platform. */
  native: boolean;
  /** How to name the host configuration in messages. */
  description: string;
}

/**
 * The QEMU command line that boots a `-native` image without SEV-SNP (QEMU 10.2 or later,
 * TCG or KVM): no confidential-guest object, so QEMU takes the NATIVE platform. `-cpu max`
 * gives TCG the 1 GiB pages of x64 boot mode.
 */
export function nativeQemuCommand(file: string, memoryBytes: number, vcpus: number): string {
  return `qemu-system-x86_64 -machine q35,igvm-cfg=igvm0 -object igvm-cfg,id=igvm0,file=${file} ` +
    `-cpu max -m ${Math.ceil(memoryBytes / (1 << 20))}M -smp ${vcpus} -nographic`;
}

/** Fails when KVM would refuse the ID block's policy at SNP_LAUNCH_START. */
export function checkKvmPolicy(target: KvmTarget, policy: bigint): void {
  const problems = kvmPolicyProblems(policy);
  if (problems.length) {
    throw new InputError(`-target ${target.loader}: ${problems.join("; ")} (see -config_file)`);
  }
}

/**
 * Moves the RSDP from the BIOS area (0xE0000) to the page after the ACPI tables, so that
 * every page is at or above 1 MiB; returns the tables and the RSDP's new address.
 */
export function relocateRsdp(acpi: AcpiImage): { acpi: AcpiImage; rsdpAddr: number } {
  const low = acpi.writes.filter((w) => w.gpa < 0x100000);
  const rsdp = low.filter((w) => w.gpa >= ACPI_RSDP_ADDR && w.gpa < ACPI_RSDP_ADDR + PAGE_SIZE);
  const other = low.find((w) => !rsdp.includes(w) && w.bytes.some((b) => b !== 0));
  if (other) {
    throw new InputError(
      `ACPI data at 0x${
        other.gpa.toString(16)
      }, below 1 MiB: KVM targets keep every page at or above 1 MiB`,
    );
  }
  if (!rsdp.length) return { acpi, rsdpAddr: ACPI_RSDP_ADDR };
  const rsdpAddr = acpi.endAddr;
  const moved = rsdp.map((w) => ({ gpa: rsdpAddr + (w.gpa - ACPI_RSDP_ADDR), bytes: w.bytes }));
  return {
    acpi: {
      writes: [...acpi.writes.filter((w) => w.gpa >= 0x100000), ...moved],
      endAddr: acpi.endAddr + PAGE_SIZE,
    },
    rsdpAddr,
  };
}

/** The VMSA placement the layout planner needs for a KVM target. */
export const KVM_LAYOUT = { vmsaGpa: KVM_VMSA_GPA } as const;

/**
 * Turns a planned guest image into a KVM target's: VMSA contents, launch order. A NATIVE
 * side gets its VP context, converted from the final VMSA.
 */
export function finishKvmImage(image: GuestImage): GuestImage {
  const vmsa = image.memory.page(image.vmsaPage);
  if (!vmsa) throw new Error("the image has no VMSA page");
  vmsa.set(kvmTargetVmsa(vmsa));
  const native = image.native && { ...image.native, vpContext: nativeVpContextOf(vmsa) };
  return { ...image, highestVtl: 0, launchOrder: "kvm", native };
}

/**
 * The target's launch digest of the written file. For qemu-kvm, when QEMU issues the pages in
 * file order (lib/measure/kvm_extend.ts checks it from the headers and the VMSA), it is the
 * writer's file-order digest extended by the AP VMSAs: no second pass over the pages. Else
 * (ch-kvm measures empty pages as ZERO pages) the loader model reads the file again.
 */
async function kvmDigestOfWritten(
  file: FileAccess,
  headers: IgvmFile,
  target: KvmTarget,
  writtenDigest: Uint8Array,
): Promise<Uint8Array> {
  if (target.loader === "qemu-kvm") {
    const bootVmsa = await fileOrderIsQemuOrder(file, headers);
    if (bootVmsa) return extendWithApVmsas(writtenDigest, bootVmsa, target.host);
  }
  return await launchDigestOf(KVM_LOADERS[target.loader](file, headers, target.host));
}

/** The random-access sink of a file being written: read back, write at an offset. */
export interface WrittenFile {
  size(): Promise<number>;
  readBack(offset: number, length: number): Promise<Uint8Array>;
  writeAt(offset: number, bytes: Uint8Array): Promise<void>;
}

/**
 * After the file is written: computes the target's launch digest over it with the loader
 * model, checks that the loader would start it, and when the digest differs from the one the
 * writer signed (more than one vCPU, or Cloud Hypervisor's ZERO pages) signs the ID block
 * again and rewrites it and the header checksum in place. Returns the target's digest.
 */
export async function retargetWrittenImage(
  out: WrittenFile,
  target: KvmTarget,
  writtenDigest: Uint8Array,
  signIdBlock: (digest: Uint8Array) => Promise<Uint8Array>,
): Promise<Uint8Array> {
  const size = await out.size();
  const file: FileAccess = { size, readAt: (offset, length) => out.readBack(offset, length) };
  const headers = await readIgvmHeaders(file);
  const check = await checkLaunch(target.loader, file, headers, target.host, {
    compareIdBlock: false,
  });
  // A warning means the guest would get other parameters than the file says: not ours to make.
  const failed = [...check.refusals, ...check.warnings];
  if (failed.length) {
    throw new Error(`the ${target.loader} image fails its own launch checks: ${failed.join("; ")}`);
  }
  const digest = await kvmDigestOfWritten(file, headers, target, writtenDigest);
  if (toHex(digest) === toHex(writtenDigest)) return digest;
  await rewriteIdBlockInPlace(file, headers, await signIdBlock(digest), out);
  return digest;
}

/**
 * Checks the options of a KVM target (`-target qemu-kvm|ch-kvm`) and returns it. Fails on
 * options that cannot give such an image.
 */
export function kvmTargetOf(request: GenerateRequest, o: ResolvedRequest): KvmTarget {
  const target = o.target;
  if (target === "hyperv") throw new Error("kvmTargetOf: -target hyperv is not a KVM target");
  if (target === "ch-kvm" && o.cpu !== undefined) {
    throw new UsageError(
      "-cpu has no effect with -target ch-kvm: Cloud Hypervisor starts the other vCPUs in KVM's reset state, whatever the model",
    );
  }
  if (o.kernelFormat !== "bzImage") {
    throw new UsageError(
      `-target ${target} takes -inform bzImage: ${
        o.kernelFormat === "bzImage2"
          ? "KVM loaders measure and encrypt guest-invalid pages"
          : "a security monitor ELF runs at VMPL0 under a paravisor, which KVM hosts do not start"
      }`,
    );
  }
  if (request.vtl !== undefined && o.vtl !== 0) {
    throw new UsageError(
      `-target ${target} declares highest VTL 0; -vtl ${o.vtl} does not go with it`,
    );
  }
  if (request.svme !== undefined && !o.svme) {
    throw new UsageError(
      `-target ${target}: KVM always sets EFER.SVME; -svme false does not go with it`,
    );
  }
  if (request.arch !== undefined && o.arch === "AMD") {
    throw new UsageError(
      `-target ${target}: KVM always sets RFLAGS bit 1; -arch AMD does not go with it`,
    );
  }
  let cpuSignature = 0;
  let cpuName = "";
  if (o.cpu !== undefined) {
    const sig = parseCpuSignature(o.cpu);
    if (sig === undefined) {
      throw new UsageError(
        `-cpu: expected ${
          Object.keys(CPU_SIGNATURES).join(", ")
        }, a QEMU model name (EPYC-Milan...) or a hex signature, got "${o.cpu}"`,
      );
    }
    cpuSignature = sig;
    cpuName = o.cpu;
  } else if (target === "qemu-kvm" && o.vcpus > 1) {
    throw new UsageError(
      `-target qemu-kvm with -vcpus ${o.vcpus} needs -cpu: each AP's VMSA holds the CPU signature`,
    );
  }
  const cpu = target === "qemu-kvm" && o.vcpus > 1
    ? ` of ${cpuName} (0x${cpuSignature.toString(16).padStart(8, "0")})`
    : "";
  return {
    loader: target,
    host: { vcpus: o.vcpus, cpuSignature },
    native: o.native,
    description: `${target} with ${o.vcpus} vCPU${o.vcpus === 1 ? "" : "s"}${cpu}`,
  };
}
