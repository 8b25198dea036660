/**
 * Which loader and host configuration make the PSP compute a given launch measurement for an
 * IGVM file: every loader model of loaders.ts; the KVM ones for 1 to 64 vCPUs and each CPU
 * model (QEMU's EPYC models and any other the caller names, such as the one an attestation
 * report's CPUID fields give), by the host search's digests (host_search.ts
 * {@link kvmHostDigests}: one pass per loader, then one AP VMSA at a time).
 */
import { toHex } from "../bytes/le.ts";
import type { IgvmFile } from "../igvm/reader.ts";
import type { FileAccess } from "../io/file_reader.ts";
import { CPU_SIGNATURES } from "../x86/kvm_vmsa.ts";
import { kvmDigestDependsOnCpu, type KvmLoaderName } from "./kvm_loaders.ts";
import { type CpuModel, kvmHostDigests } from "./host_search.ts";
import { DEFAULT_LOADER, loaderDigest, LOADERS } from "./loaders.ts";

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
  // The file-order digest, which spares qemu-kvm a pass over a file it loads in file order.
  let fileOrderDigest: Uint8Array | undefined;
  for (const loader of LOADERS) {
    try {
      if (!loader.hostDependent) {
        const digest = await loaderDigest(loader.name, file, headers);
        if (loader.name === DEFAULT_LOADER) fileOrderDigest = digest;
        if (toHex(digest) === measurement) matches.push({ loader: loader.name });
        continue;
      }
      const name = loader.name as KvmLoaderName;
      const models = kvmDigestDependsOnCpu(name) ? cpus : cpus.slice(0, 1);
      const digests = kvmHostDigests(name, file, headers, { cpus: models, fileOrderDigest });
      const rows = (await Array.fromAsync(digests)).map((r) => ({ ...r, hex: toHex(r.digest) }));
      for (const row of rows) {
        if (row.hex !== measurement) continue;
        // The CPU model matters only when another model gives this vCPU count another digest.
        const cpuMatters = rows.some((r) => r.vcpus === row.vcpus && r.hex !== row.hex);
        const cpu = cpuMatters ? row.cpu : undefined;
        const seen = matches.some((m) =>
          m.loader === name && m.vcpus === row.vcpus && m.cpu?.name === cpu?.name
        );
        if (!seen) matches.push({ loader: name, vcpus: row.vcpus, cpu });
      }
    } catch (e) {
      refusals.push({ loader: loader.name, reason: (e as Error).message });
    }
  }
  return { matches, refusals };
}
