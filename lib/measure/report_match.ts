/**
 * Which loader and host configuration make the PSP compute a given launch measurement for an
 * IGVM file: every loader model of loaders.ts; the KVM ones for 1 to 64 vCPUs and each CPU
 * model (QEMU's EPYC models and any other the caller names, such as the one an attestation
 * report's CPUID fields give). Under KVM the vCPUs' VMSAs come last, the APs' in their reset
 * state: one pass of a KVM loader for one vCPU gives the digest up to the boot CPU's VMSA,
 * which is then extended one AP VMSA at a time for each CPU model (as kvm_extend.ts does for
 * QEMU). A file with VP contexts for other VPs than 0 takes one pass per CPU model instead.
 */
import { PAGE_SIZE, toHex } from "../bytes/le.ts";
import { IGVM_VHT_VP_CONTEXT } from "../igvm/defs.ts";
import { directiveMask, findSnpCompatibilityMask } from "../igvm/directives.ts";
import { directiveFileOffset, type IgvmFile } from "../igvm/reader.ts";
import type { FileAccess } from "../io/file_reader.ts";
import {
  CPU_SIGNATURES,
  KVM_RESET_RDX,
  KVM_VMSA_GPA,
  kvmSevFeatures,
  resetVmsa,
} from "../x86/kvm_vmsa.ts";
import { KVM_LOADERS, type KvmLoaderName } from "./kvm_loaders.ts";
import { kvmMatrixDigests } from "./kvm_hosts.ts";
import { launchDigestOf } from "./launch_update.ts";
import { loaderDigest, LOADERS } from "./loaders.ts";
import { encodePageInfo, SNP_PAGE_TYPE_VMSA } from "./snp_digest.ts";
import { sha384 } from "../hash/wasm_sha384.ts";

/** The vCPU counts searched for the KVM loaders. */
export const MAX_SEARCHED_VCPUS = 64;

/** A CPU model: its name and CPUID(1).EAX. */
export interface CpuModel {
  name: string;
  signature: number;
}

/** One way the file reproduces the measurement. */
export interface MeasurementMatch {
  loader: string;
  /** The host of a KVM loader; undefined for the others. */
  vcpus?: number;
  /** The CPU model; undefined when the loader's digest does not depend on it. */
  cpu?: CpuModel;
}

/** What the search found: the matches, and the loaders that refuse the file. */
export interface MeasurementSearch {
  matches: MeasurementMatch[];
  refusals: { loader: string; reason: string }[];
}

/** QEMU's EPYC models, then `extra` ones whose signature is not among them. */
export function searchedCpus(extra: readonly CpuModel[] = []): CpuModel[] {
  const cpus = Object.entries(CPU_SIGNATURES).map(([name, signature]) => ({ name, signature }));
  for (const c of extra) if (!cpus.some((k) => k.signature === c.signature)) cpus.push(c);
  return cpus;
}

/**
 * Every loader and host configuration under which `file` has the launch digest `measurement`
 * (lowercase hex), searching the KVM loaders over 1..64 vCPUs and `cpus`.
 */
export async function findMeasurement(
  file: FileAccess,
  headers: IgvmFile,
  measurement: string,
  cpus: readonly CpuModel[],
): Promise<MeasurementSearch> {
  const matches: MeasurementMatch[] = [];
  const refusals: MeasurementSearch["refusals"] = [];
  for (const loader of LOADERS) {
    try {
      if (!loader.hostDependent) {
        if (toHex(await loaderDigest(loader.name, file, headers)) === measurement) {
          matches.push({ loader: loader.name });
        }
        continue;
      }
      // Cloud Hypervisor's APs hold KVM's reset RDX whatever the CPU model: one model suffices.
      const models = loader.name === "ch-kvm" ? cpus.slice(0, 1) : cpus;
      const rows = await kvmHostDigests(loader.name as KvmLoaderName, file, headers, models);
      for (const row of rows) {
        if (row.launchDigest !== measurement) continue;
        // The CPU model matters only when another model gives this vCPU count another digest.
        const same = rows.filter((r) => r.vcpus === row.vcpus);
        const cpuMatters = same.some((r) => r.launchDigest !== row.launchDigest);
        const cpu = cpuMatters ? models.find((c) => c.name === row.cpu) : undefined;
        const seen = matches.some((m) =>
          m.loader === loader.name && m.vcpus === row.vcpus && m.cpu?.name === cpu?.name
        );
        if (!seen) matches.push({ loader: loader.name, vcpus: row.vcpus, cpu });
      }
    } catch (e) {
      refusals.push({ loader: loader.name, reason: (e as Error).message });
    }
  }
  return { matches, refusals };
}

/** One KVM host configuration's digest. */
export interface KvmHostDigest {
  vcpus: number;
  cpu: string;
  launchDigest: string;
}

/**
 * The digests of a KVM loader for 1..64 vCPUs and each CPU model: one pass for one vCPU,
 * extended by the APs' reset VMSAs (RDX = the CPU signature, or KVM's 0x600 under Cloud
 * Hypervisor), when VP 0 is the file's only VP context; else one pass per model.
 */
export async function kvmHostDigests(
  loader: KvmLoaderName,
  file: FileAccess,
  headers: IgvmFile,
  cpus: readonly CpuModel[],
): Promise<KvmHostDigest[]> {
  const vcpus = Array.from({ length: MAX_SEARCHED_VCPUS }, (_, i) => i + 1);
  const snp = findSnpCompatibilityMask(headers) ?? 0;
  // Cloud Hypervisor takes every VP context; QEMU and OpenVMM those of the SNP platform.
  const contexts = headers.directives.filter((d) =>
    d.type === IGVM_VHT_VP_CONTEXT && (loader === "ch-kvm" || (directiveMask(d) & snp) !== 0)
  );
  const vp0 = contexts.length === 1 && (contexts[0].fields.VpIndex ?? 0n) === 0n
    ? contexts[0]
    : undefined;
  const offset = vp0 && directiveFileOffset(vp0);
  if (offset === undefined) {
    return (await kvmMatrixDigests(loader, file, headers, vcpus, cpus)).map((r) => ({
      vcpus: r.vcpus,
      cpu: r.cpu,
      launchDigest: r.launchDigest,
    }));
  }
  const page = new Uint8Array(PAGE_SIZE);
  page.set(await file.readAt(offset, PAGE_SIZE));
  const one = await launchDigestOf(
    KVM_LOADERS[loader](file, headers, { vcpus: 1, cpuSignature: cpus[0].signature }),
  );
  const features = kvmSevFeatures(page);
  const rows: KvmHostDigest[] = [];
  for (const cpu of cpus) {
    const rdx = loader === "ch-kvm" ? KVM_RESET_RDX : cpu.signature;
    const ap = sha384(resetVmsa(features, rdx));
    let digest = one;
    for (const n of vcpus) {
      if (n > 1) digest = sha384(encodePageInfo(digest, ap, SNP_PAGE_TYPE_VMSA, KVM_VMSA_GPA));
      rows.push({ vcpus: n, cpu: cpu.name, launchDigest: toHex(digest) });
    }
  }
  return rows;
}
