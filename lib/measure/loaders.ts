/**
 * The loader registry: each name `--loader` takes, its model of the launch updates the host
 * issues (../shared/LOADERS.md), and a one-line description. The KVM models
 * (lib/measure/kvm_loaders.ts) depend on the host configuration (vCPUs, CPU model).
 */
import type { FileAccess } from "../io/file_reader.ts";
import type { IgvmFile } from "../igvm/reader.ts";
import { InputError, UsageError } from "../errors.ts";
import { toHex } from "../bytes/le.ts";
import { DEFAULT_LOADER } from "./loader_names.ts";
import { type HostConfig, launchDigestOf, type LaunchUpdateSource } from "./launch_update.ts";
import {
  chMshvUpdates,
  DEFAULT_HOST,
  hypervUpdates,
  igvmmeasureNativeZeroUpdates,
  igvmmeasureUpdates,
} from "./file_loaders.ts";
import { chKvmUpdates, LoaderRefusal, openvmmKvmUpdates, qemuKvmUpdates } from "./kvm_loaders.ts";

/** One loader model. */
export interface LoaderModel {
  name: string;
  description: string;
  updates: LaunchUpdateSource;
  /**
   * The policy the host puts in the ID block whatever the file says (Cloud Hypervisor on
   * MSHV: 0x3001F, LOADERS.md §5); an ID block signed over another policy fails to launch.
   */
  idBlockPolicy?: bigint;
  /**
   * The digest depends on the host configuration: KVM measures one VMSA per vCPU, after all
   * pages, and each AP's holds the CPU signature. Generation reaches these through `-target`.
   */
  hostDependent?: boolean;
}

export { DEFAULT_LOADER };

/** Every loader model, the default first. */
export const LOADERS: readonly LoaderModel[] = [
  {
    name: "hyperv",
    description: "Hyper-V and the original igvmgen: file order, shared pages not measured",
    updates: hypervUpdates,
  },
  {
    name: "ch-mshv",
    description:
      "Cloud Hypervisor on MSHV: sorted by GPA, shared pages measured, 1 page per parameter insert",
    updates: chMshvUpdates,
    idBlockPolicy: 0x3001fn,
  },
  {
    name: "igvmmeasure",
    description: "COCONUT igvmmeasure: file order, shared pages measured, 1 page per insert",
    updates: igvmmeasureUpdates,
  },
  {
    name: "igvmmeasure-native-zero",
    description: "igvmmeasure --native-zero: as igvmmeasure, empty pages measured as ZERO",
    updates: igvmmeasureNativeZeroUpdates,
  },
  {
    name: "qemu-kvm",
    description:
      "QEMU 10.1+ on Linux KVM: file order with QEMU's run buffering, then one VMSA per vCPU",
    updates: qemuKvmUpdates,
    hostDependent: true,
  },
  {
    name: "ch-kvm",
    description: "Cloud Hypervisor on KVM: file order, empty pages as ZERO, one VMSA per vCPU",
    updates: chKvmUpdates,
    hostDependent: true,
  },
  {
    name: "openvmm-kvm",
    description: "OpenVMM on KVM: file order, shared pages not measured, one VMSA per vCPU",
    updates: openvmmKvmUpdates,
    hostDependent: true,
  },
];

/** The loader names, for help and errors. */
export function loaderNames(): string[] {
  return LOADERS.map((l) => l.name);
}

/** The model of `name`; a usage error names the choices. */
export function loaderModel(name: string): LoaderModel {
  const model = LOADERS.find((l) => l.name === name);
  if (!model) {
    throw new UsageError(`--loader: expected one of ${loaderNames().join(", ")}, got "${name}"`);
  }
  return model;
}

/**
 * The launch digest `loader` makes the PSP compute for a file. Every failure, a loader's
 * refusal of the file included, is a rejected promise (never a synchronous throw).
 */
export async function loaderDigest(
  loader: string,
  file: FileAccess,
  headers: IgvmFile,
  host: HostConfig = DEFAULT_HOST,
): Promise<Uint8Array> {
  return await launchDigestOf(loaderModel(loader).updates(file, headers, host));
}

/** True for an error that means the loader cannot take the file (not a failure to read it). */
export function isLoaderRefusal(e: unknown): e is Error {
  return e instanceof LoaderRefusal || e instanceof InputError;
}

/**
 * A warning when the ID block's policy is not the one `loader` puts in the ID block at
 * launch (the signature would not verify there), else undefined.
 */
export function policyWarning(loader: string, policy: bigint): string | undefined {
  const forced = loaderModel(loader).idBlockPolicy;
  if (forced === undefined || forced === policy) return undefined;
  return `warning: ${loader} launches with the ID block policy 0x${
    forced.toString(16)
  }, but the ID block is signed with policy 0x${policy.toString(16)}: the launch will fail`;
}

/** What {@link loaderSignedFor} found. */
export interface SignedForResult {
  /** The loader whose digest the ID block carries, if any. */
  loader?: string;
  /** The loaders that refuse the file (a page type they cannot load...), with the reason. */
  refusals: { loader: string; reason: string }[];
}

/**
 * The loader among `candidates` (default: the file-based loaders other than the default)
 * whose launch digest is `ld` (hex): a file signed with `--loader` carries that loader's
 * digest in its ID block. A loader that refuses the file is listed, never thrown.
 */
export async function loaderSignedFor(
  file: FileAccess,
  headers: IgvmFile,
  ld: string,
  candidates: readonly string[] = LOADERS.filter((l) =>
    l.name !== DEFAULT_LOADER && !l.hostDependent
  ).map((l) => l.name),
): Promise<SignedForResult> {
  const refusals: SignedForResult["refusals"] = [];
  for (const loader of candidates) {
    try {
      if (toHex(await loaderDigest(loader, file, headers)) === ld) return { loader, refusals };
    } catch (e) {
      if (!isLoaderRefusal(e)) throw e;
      refusals.push({ loader, reason: e.message });
    }
  }
  return { refusals };
}
