/**
 * The launch updates a host's loader issues for an IGVM file: one SNP_LAUNCH_UPDATE per
 * 4 KiB page, in the order the PSP sees them. Each loader (../shared/LOADERS.md) turns the
 * same file into its own list; the SNP launch digest is the fold of that list.
 */
import type { FileAccess } from "../io/file_reader.ts";
import type { IgvmFile } from "../igvm/reader.ts";
import { SnpLaunchDigest } from "./snp_digest.ts";
import type { HashedUpdates } from "./planned_updates.ts";

/** One 4 KiB SNP_LAUNCH_UPDATE as the PSP measures it (SNP firmware ABI, PAGE_INFO). */
export interface LaunchUpdate {
  /** SNP page type: SNP_PAGE_TYPE_NORMAL, _VMSA, _ZERO, _UNMEASURED, _SECRETS, _CPUID. */
  pageType: number;
  /** The RMP GPA that is measured (0xFFFFFFFFF000 for VMSAs under KVM). */
  gpa: number;
  /** The 48-byte contents digest: SHA-384 of the page for NORMAL and VMSA, else zeros. */
  contents: Uint8Array;
  /** Index of the directive in the file it comes from; -1 for a page the host adds. */
  directive: number;
}

/**
 * Consecutive launch updates: update k is `updates[k]` with the contents digest at
 * `contents[48 k, 48 k + 48)`. A batch is valid until the next one is asked for.
 */
export interface UpdateBatch {
  readonly updates: readonly Readonly<Omit<LaunchUpdate, "contents">>[];
  readonly contents: Uint8Array;
}

/** The host configuration a KVM loader's digest depends on (LOADERS.md §4.4). */
export interface HostConfig {
  /** vCPUs the VM is started with: every one gets a measured VMSA under KVM. */
  vcpus: number;
  /** CPUID(1).EAX of the vCPU model, which KVM puts in each AP's RDX. */
  cpuSignature: number;
}

/**
 * A loader's model: the launch updates it issues for a file, in PSP order. `headers` is the
 * parsed header section (lib/igvm/reader.ts), `file` gives the page data. Every model hands
 * its updates one at a time or in batches (planned_updates.ts HashedUpdates).
 */
export type LaunchUpdateSource = (
  file: FileAccess,
  headers: IgvmFile,
  host: HostConfig,
) => HashedUpdates;

/** Folds launch updates, in order, into the SNP launch digest. */
export async function launchDigestOf(updates: HashedUpdates): Promise<Uint8Array> {
  const digest = new SnpLaunchDigest();
  for await (const { updates: batch, contents } of updates.batches()) {
    for (let k = 0; k < batch.length; k++) {
      digest.extendAt(batch[k].gpa, batch[k].pageType, contents, k * 48);
    }
  }
  return digest.value;
}
