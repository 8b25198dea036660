/**
 * The launch updates a host's loader issues for an IGVM file: one SNP_LAUNCH_UPDATE per
 * 4 KiB page, in the order the PSP sees them. Each loader (../shared/LOADERS.md) turns the
 * same file into its own list; the SNP launch digest is the fold of that list.
 */
import type { FileAccess } from "../io/file_reader.ts";
import type { IgvmFile } from "../igvm/reader.ts";
import { SnpLaunchDigest } from "./snp_digest.ts";

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
 * parsed header section (lib/igvm/reader.ts), `file` gives the page data. The models'
 * updates also come in batches (planned_updates.ts HashedUpdates), which
 * {@link updateBatches} reads.
 */
export type LaunchUpdateSource = (
  file: FileAccess,
  headers: IgvmFile,
  host: HostConfig,
) => AsyncIterable<LaunchUpdate>;

const BATCH = 256;

/**
 * The updates in batches: straight from a source that hands them so (`batches()`), else
 * gathered 256 at a time.
 */
export async function* updateBatches(
  updates: AsyncIterable<LaunchUpdate> & { batches?: () => AsyncIterable<UpdateBatch> },
): AsyncGenerator<UpdateBatch> {
  if (updates.batches) {
    yield* updates.batches();
    return;
  }
  let batch: LaunchUpdate[] = [];
  const contents = new Uint8Array(BATCH * 48);
  for await (const u of updates) {
    contents.set(u.contents, batch.length * 48);
    if (batch.push(u) === BATCH) {
      yield { updates: batch, contents };
      batch = [];
    }
  }
  if (batch.length) yield { updates: batch, contents };
}

/** Folds launch updates, in order, into the SNP launch digest. */
export async function launchDigestOf(updates: AsyncIterable<LaunchUpdate>): Promise<Uint8Array> {
  const digest = new SnpLaunchDigest();
  const one = new Uint8Array(48); // each update's contents digest, copied: no view per page
  for await (const b of updateBatches(updates)) {
    const { updates, contents } = b;
    for (let k = 0; k < updates.length; k++) {
      const u = updates[k];
      for (let i = 0; i < 48; i++) one[i] = contents[k * 48 + i];
      digest.extend(u.gpa, u.pageType, undefined, one);
    }
  }
  return digest.value;
}
