/**
 * Which host configuration does an ID block's launch digest belong to? Under KVM the digest
 * of a file depends on the loader, the vCPU count and (for QEMU and OpenVMM) the CPU model:
 * KVM measures one VMSA per vCPU after every page, each AP's holding the CPU signature
 * (../shared/LOADERS.md §4.4, §9). This module measures the file once per loader and then
 * extends that digest by one AP VMSA at a time, so trying 64 vCPU counts of every known CPU
 * model costs one pass over the file per loader plus a few thousand SHA-384s (a pass per CPU
 * model for a file without a VP 0 context). `verify`, `measure`, `attest` and `--matrix` all
 * take their KVM digests from here.
 */
import { toHex } from "../bytes/le.ts";
import type { FileAccess } from "../io/file_reader.ts";
import type { IgvmFile } from "../igvm/reader.ts";
import { IGVM_VHT_VP_CONTEXT } from "../igvm/defs.ts";
import { directiveMask, findSnpCompatibilityMask } from "../igvm/directives.ts";
import { KNOWN_CPU_MODELS, KVM_VMSA_GPA } from "../x86/kvm_vmsa.ts";
import {
  KVM_LOADERS,
  kvmDigestDependsOnCpu,
  type KvmLoaderName,
  kvmVmsaPages,
  LoaderRefusal,
} from "./kvm_loaders.ts";
import { cpuSignatureOf } from "./attestation_report.ts";
import { launchDigestOf } from "./launch_update.ts";
import { encodePageInfo, SNP_PAGE_TYPE_VMSA } from "./snp_digest.ts";
import { sha384 } from "../hash/wasm_sha384.ts";
import { extendWithApVmsas, fileOrderIsQemuOrder } from "./kvm_extend.ts";
import { DEFAULT_LOADER, loaderDigest, loaderSignedFor } from "./loaders.ts";

/** The vCPU counts a search tries by default: 1 to 64. */
export const HOST_SEARCH_MAX_VCPUS = 64;

/** The KVM loaders a search tries by default, the most common first. */
export const HOST_SEARCH_LOADERS: readonly KvmLoaderName[] = ["qemu-kvm", "ch-kvm", "openvmm-kvm"];

/** A CPU model: a name for messages and `--cpu`, and its CPUID(1).EAX. */
export interface CpuModel {
  name: string;
  signature: number;
}

/**
 * The CPU models a search tries by default: igvmgen's named EPYC models (QEMU's), then the
 * signatures of EPYC silicon a host passes through with `-cpu host`: steppings 0 to 2 of the
 * server models of families 17h (01h Naples, 31h Rome), 19h (01h Milan, 11h Genoa, A0h
 * Bergamo) and 1Ah (00h, 02h, 10h, 11h Turin), each named by its signature as `--cpu` takes
 * it. A wrong guess costs only time: a match is the ID block's digest itself.
 */
export const HOST_SEARCH_CPUS: readonly CpuModel[] = (() => {
  const out = [...KNOWN_CPU_MODELS];
  const silicon: [number, number[]][] = [
    [0x17, [0x01, 0x31]],
    [0x19, [0x01, 0x11, 0xa0]],
    [0x1a, [0x00, 0x02, 0x10, 0x11]],
  ];
  for (const [family, models] of silicon) {
    for (const model of models) {
      for (let stepping = 0; stepping <= 2; stepping++) {
        const signature = cpuSignatureOf({ family, model, stepping });
        if (out.some((c) => c.signature === signature)) continue;
        out.push({ name: `0x${signature.toString(16).padStart(8, "0")}`, signature });
      }
    }
  }
  return out;
})();

/** The host configuration whose digest was found. */
export interface HostMatch {
  loader: KvmLoaderName;
  vcpus: number;
  /**
   * The CPU model, when the digest depends on it (more than one vCPU under qemu-kvm or
   * openvmm-kvm, or any count for a file without a VP 0 context); undefined when any model
   * gives this digest.
   */
  cpu?: CpuModel;
}

/** What a search found: the match, if any, and the loaders that could not measure the file. */
export interface HostSearchResult {
  match?: HostMatch;
  /** Loaders whose model refuses the file (a page type it cannot load, ...), with the reason. */
  refusals: { loader: KvmLoaderName; reason: string }[];
}

/** What to search; every field has a default. */
export interface HostSearchOptions {
  /** The loaders, in the order tried. Default {@link HOST_SEARCH_LOADERS}. */
  loaders?: readonly KvmLoaderName[];
  /** The largest vCPU count tried (from 1). Default {@link HOST_SEARCH_MAX_VCPUS}. */
  maxVcpus?: number;
  /** The CPU models tried. Default {@link HOST_SEARCH_CPUS}. */
  cpus?: readonly CpuModel[];
  /**
   * The file-order (hyperv) digest when the caller has it: for a file QEMU loads in file
   * order (lib/measure/kvm_extend.ts) the qemu-kvm search then reads no page again.
   */
  fileOrderDigest?: Uint8Array;
}

/**
 * The loaders a file is laid out for: `kvm` when a VP context is at 0xFFFFFFFFF000, where
 * KVM measures every VMSA (`-target qemu-kvm|ch-kvm`), else `hyperv` (the original's layout).
 */
export function fileLayout(headers: IgvmFile): "kvm" | "hyperv" {
  const kvm = headers.directives.some((d) =>
    d.type === IGVM_VHT_VP_CONTEXT && d.fields.GPA === BigInt(KVM_VMSA_GPA)
  );
  return kvm ? "kvm" : "hyperv";
}

/** The loader `measure` takes for a file when none is given: its layout's first. */
export function layoutLoader(headers: IgvmFile): "qemu-kvm" | "hyperv" {
  return fileLayout(headers) === "kvm" ? "qemu-kvm" : "hyperv";
}

/** Extends a launch digest by one VMSA page at 0xFFFFFFFFF000. */
function extendByVmsa(digest: Uint8Array, vmsa: Uint8Array): Uint8Array {
  return sha384(encodePageInfo(digest, sha384(vmsa), SNP_PAGE_TYPE_VMSA, KVM_VMSA_GPA));
}

/**
 * True when the file has a VP context for VP 0 of the SEV-SNP platform. Without one, KVM
 * starts the boot CPU from its reset state too, and its RDX holds the CPU signature under
 * the loaders whose APs' do ({@link kvmDigestDependsOnCpu}).
 */
function hasSnpVp0Context(headers: IgvmFile): boolean {
  const snp = findSnpCompatibilityMask(headers) ?? 0;
  return headers.directives.some((d) =>
    d.type === IGVM_VHT_VP_CONTEXT && (directiveMask(d) & snp) !== 0 &&
    (d.fields.VpIndex ?? 0n) === 0n
  );
}

/** The one-vCPU digest of `loader` on a CPU of signature `cpuSignature`. */
async function oneVcpuDigest(
  loader: KvmLoaderName,
  file: FileAccess,
  headers: IgvmFile,
  fileOrderDigest: Uint8Array | undefined,
  cpuSignature: number,
): Promise<Uint8Array> {
  const host = { vcpus: 1, cpuSignature };
  if (loader === "qemu-kvm" && fileOrderDigest) {
    const boot = await fileOrderIsQemuOrder(file, headers);
    if (boot) return extendWithApVmsas(fileOrderDigest, boot, host);
  }
  return await launchDigestOf(KVM_LOADERS[loader](file, headers, host));
}

/** One KVM host configuration and its launch digest. */
export interface KvmHostDigest {
  vcpus: number;
  cpu: CpuModel;
  digest: Uint8Array;
}

/**
 * The launch digests of `loader` for 1 to `maxVcpus` vCPUs of each CPU model, model by model:
 * one pass over the file for one vCPU (one per model when the file has no VP 0 context and
 * the boot CPU's reset VMSA holds the CPU signature), then one AP VMSA at a time
 * ({@link kvmVmsaPages}).
 * The file's VP contexts are read only when the caller asks past the first digest. A loader
 * whose model refuses the file throws its {@link LoaderRefusal}.
 */
export async function* kvmHostDigests(
  loader: KvmLoaderName,
  file: FileAccess,
  headers: IgvmFile,
  options: HostSearchOptions = {},
): AsyncGenerator<KvmHostDigest> {
  const maxVcpus = options.maxVcpus ?? HOST_SEARCH_MAX_VCPUS;
  const cpus = options.cpus ?? HOST_SEARCH_CPUS;
  // With a VP 0 context the one-vCPU digest is the same on every CPU model: one pass.
  const bootDependsOnCpu = kvmDigestDependsOnCpu(loader) && !hasSnpVp0Context(headers);
  let one: Uint8Array | undefined;
  let vmsaFor: ((vp: number, cpuSignature: number) => Uint8Array) | undefined;
  for (const cpu of cpus) {
    if (one === undefined || bootDependsOnCpu) {
      one = await oneVcpuDigest(loader, file, headers, options.fileOrderDigest, cpu.signature);
    }
    let current = one;
    yield { vcpus: 1, cpu, digest: current };
    vmsaFor ??= await kvmVmsaPages(loader, file, headers);
    for (let vcpus = 2; vcpus <= maxVcpus; vcpus++) {
      current = extendByVmsa(current, vmsaFor(vcpus - 1, cpu.signature));
      yield { vcpus, cpu, digest: current };
    }
  }
}

/**
 * Finds the KVM host configuration (loader, vCPU count, CPU model) whose launch digest is
 * `digest` (48 bytes or 96 hex digits): tries each loader, each CPU model, 1 to `maxVcpus`
 * vCPUs ({@link kvmHostDigests}). A loader whose model refuses the file is listed in
 * `refusals`, never thrown.
 */
export async function findKvmHost(
  file: FileAccess,
  headers: IgvmFile,
  digest: Uint8Array | string,
  options: HostSearchOptions = {},
): Promise<HostSearchResult> {
  const wanted = typeof digest === "string" ? digest.toLowerCase() : toHex(digest);
  const cpus = options.cpus ?? HOST_SEARCH_CPUS;
  const refusals: HostSearchResult["refusals"] = [];
  for (const loader of options.loaders ?? HOST_SEARCH_LOADERS) {
    const dependsOnCpu = kvmDigestDependsOnCpu(loader);
    const models = dependsOnCpu ? cpus : cpus.slice(0, 1);
    try {
      for await (const row of kvmHostDigests(loader, file, headers, { ...options, cpus: models })) {
        if (toHex(row.digest) !== wanted) continue;
        const match: HostMatch = { loader, vcpus: row.vcpus };
        if (dependsOnCpu && (row.vcpus > 1 || !hasSnpVp0Context(headers))) match.cpu = row.cpu;
        return { match, refusals };
      }
    } catch (e) {
      if (!(e instanceof LoaderRefusal)) throw e;
      refusals.push({ loader, reason: e.message });
    }
  }
  return { refusals };
}

/** A loader, and for a KVM loader the host, whose digest is the one searched for. */
export interface LoaderMatch {
  loader: string;
  /** KVM loaders: the vCPU count. */
  vcpus?: number;
  /** KVM loaders whose digest depends on it (more than one vCPU): the CPU model. */
  cpu?: CpuModel;
}

/**
 * Whose launch digest `digest` (96 hex digits) is, among the loaders of the file's layout
 * first: for a file laid out for KVM ({@link fileLayout}), the KVM loaders' hosts
 * ({@link findKvmHost}); then, for any file, hyperv (the file-order digest, computed unless
 * `options.fileOrderDigest` gives it) and the other file-based loaders. Loaders that refuse
 * the file are listed, never thrown.
 */
export async function findDigestLoader(
  file: FileAccess,
  headers: IgvmFile,
  digest: string,
  options: HostSearchOptions = {},
): Promise<{ match?: LoaderMatch; refusals: { loader: string; reason: string }[] }> {
  const refusals: { loader: string; reason: string }[] = [];
  if (fileLayout(headers) === "kvm") {
    const kvm = await findKvmHost(file, headers, digest, options);
    refusals.push(...kvm.refusals);
    if (kvm.match) return { match: kvm.match, refusals };
  }
  const fileOrder = options.fileOrderDigest ?? await loaderDigest(DEFAULT_LOADER, file, headers);
  if (toHex(fileOrder) === digest) return { match: { loader: DEFAULT_LOADER }, refusals };
  const other = await loaderSignedFor(file, headers, digest);
  refusals.push(...other.refusals);
  return { match: other.loader ? { loader: other.loader } : undefined, refusals };
}

/** The options that reproduce a match: `--loader qemu-kvm --vcpus 4 --cpu genoa`. */
export function hostOptions(match: LoaderMatch): string {
  const vcpus = (match.vcpus ?? 1) > 1 ? ` --vcpus ${match.vcpus}` : "";
  const cpu = match.cpu ? ` --cpu ${match.cpu.name}` : "";
  return `--loader ${match.loader}${vcpus}${cpu}`;
}

/** A match in words: "qemu-kvm with 4 vCPUs of genoa (0x00a10f10)", "ch-mshv". */
export function describeHostMatch(match: LoaderMatch): string {
  if (match.vcpus === undefined) return match.loader;
  const vcpus = `${match.vcpus} vCPU${match.vcpus === 1 ? "" : "s"}`;
  const signature = match.cpu && `0x${match.cpu.signature.toString(16).padStart(8, "0")}`;
  const cpu = !match.cpu
    ? ""
    : match.cpu.name === signature
    ? ` of CPU ${signature}`
    : ` of ${match.cpu.name} (${signature})`;
  return `${match.loader} with ${vcpus}${cpu}`;
}
