/**
 * The launch log: every launch update a loader issues for a file, with the running SNP
 * launch digest after it and the part of the guest the page belongs to. Streamed: one
 * entry at a time, so a 1M-page file needs no more memory than its headers.
 */
import { toHex } from "../bytes/le.ts";
import type { IgvmFile } from "../igvm/reader.ts";
import type { FileAccess } from "../io/file_reader.ts";
import type { HostConfig, UpdateBatch } from "./launch_update.ts";
import { DEFAULT_HOST } from "./file_loaders.ts";
import { loaderModel } from "./loaders.ts";
import { mapParts } from "./parts.ts";
import {
  SNP_PAGE_TYPE_CPUID,
  SNP_PAGE_TYPE_NORMAL,
  SNP_PAGE_TYPE_SECRETS,
  SNP_PAGE_TYPE_UNMEASURED,
  SNP_PAGE_TYPE_VMSA,
  SNP_PAGE_TYPE_ZERO,
  SnpLaunchDigest,
} from "./snp_digest.ts";

/** SNP page type names (SEV-SNP firmware ABI, PAGE_TYPE). */
export const SNP_PAGE_TYPE_NAMES: Record<number, string> = {
  [SNP_PAGE_TYPE_NORMAL]: "NORMAL",
  [SNP_PAGE_TYPE_VMSA]: "VMSA",
  [SNP_PAGE_TYPE_ZERO]: "ZERO",
  [SNP_PAGE_TYPE_UNMEASURED]: "UNMEASURED",
  [SNP_PAGE_TYPE_SECRETS]: "SECRETS",
  [SNP_PAGE_TYPE_CPUID]: "CPUID",
};

/** One line of the log. */
export interface LaunchLogEntry {
  index: number;
  gpa: number;
  pageType: number;
  /** The directive it comes from (-1: a page the host adds). */
  directive: number;
  part: string;
  /** The contents digest (48 bytes) and the running launch digest after this update. */
  contents: Uint8Array;
  digest: Uint8Array;
}

/**
 * Consecutive entries of the log: entry `first + k` is update k of `updates`, with its
 * contents digest at `contents[48 k, 48 k + 48)`, the running digest after it at the same
 * place in `digests`, and its part `parts[k]`. Valid until the next batch is asked for.
 */
export interface LaunchLogBatch {
  first: number;
  updates: UpdateBatch["updates"];
  contents: Uint8Array;
  digests: Uint8Array;
  parts: string[];
}

/**
 * The launch log of a file under `loader`, up to 256 entries at a time with no object per
 * entry: how the CLI prints the log of a 1M-page file in little memory.
 */
export async function* launchLogBatches(
  file: FileAccess,
  headers: IgvmFile,
  loader: string,
  host: HostConfig = DEFAULT_HOST,
): AsyncGenerator<LaunchLogBatch> {
  const parts = await mapParts(file, headers);
  const digest = new SnpLaunchDigest();
  let digests = new Uint8Array(0);
  const names: string[] = [];
  let first = 0;
  for await (
    const { updates, contents } of loaderModel(loader).updates(file, headers, host).batches()
  ) {
    if (digests.length < contents.length) digests = new Uint8Array(contents.length);
    names.length = updates.length;
    for (let k = 0; k < updates.length; k++) {
      const u = updates[k];
      digest.extendAt(u.gpa, u.pageType, contents, k * 48);
      digests.set(digest.value, k * 48);
      names[k] = u.pageType === SNP_PAGE_TYPE_VMSA ? "VMSA" : parts.partOf(u.gpa, u.directive);
    }
    yield { first, updates, contents, digests, parts: names };
    first += updates.length;
  }
}

/** The launch log of a file under `loader`, one entry at a time. */
export async function* launchLog(
  file: FileAccess,
  headers: IgvmFile,
  loader: string,
  host: HostConfig = DEFAULT_HOST,
): AsyncGenerator<LaunchLogEntry> {
  for await (const b of launchLogBatches(file, headers, loader, host)) {
    for (let k = 0; k < b.updates.length; k++) {
      const u = b.updates[k];
      yield {
        index: b.first + k,
        gpa: u.gpa,
        pageType: u.pageType,
        directive: u.directive,
        part: b.parts[k],
        contents: b.contents.slice(k * 48, k * 48 + 48),
        digest: b.digests.slice(k * 48, k * 48 + 48),
      };
    }
  }
}

/** The text line of an entry: index, GPA, type, part, contents hash, running digest. */
export function formatLogEntry(e: LaunchLogEntry): string {
  return `${String(e.index).padStart(7)}  0x${e.gpa.toString(16).padStart(12, "0")}  ${
    (SNP_PAGE_TYPE_NAMES[e.pageType] ?? String(e.pageType)).padEnd(10)
  }  ${toHex(e.contents)}  ${toHex(e.digest)}  ${e.part}`;
}

/** The header line of the text log. */
export const LOG_HEADER = `${"index".padStart(7)}  ${"gpa".padEnd(14)}  ${"type".padEnd(10)}  ${
  "contents (SHA-384)".padEnd(96)
}  ${"launch digest after this update".padEnd(96)}  part`;

/** An entry as JSON (schema igvmgen-measure-log/1): GPA as hex, digests as hex. */
export interface LaunchLogEntryJson {
  /** Its position in the launch, from 0. */
  index: number;
  /** The guest physical address, `0x...`. */
  gpa: string;
  /** The SNP page type: NORMAL, VMSA, ZERO, UNMEASURED, SECRETS or CPUID. */
  pageType: string;
  /** The directive it comes from (-1: a page the host adds). */
  directive: number;
  /** The part of the guest it belongs to. */
  part: string;
  /** The contents digest, 96 hex digits. */
  contents: string;
  /** The running launch digest after this update, 96 hex digits. */
  digest: string;
}

/** The JSON object of an entry. */
export function logEntryJson(e: LaunchLogEntry): LaunchLogEntryJson {
  return {
    index: e.index,
    gpa: "0x" + e.gpa.toString(16),
    pageType: SNP_PAGE_TYPE_NAMES[e.pageType] ?? String(e.pageType),
    directive: e.directive,
    part: e.part,
    contents: toHex(e.contents),
    digest: toHex(e.digest),
  };
}
