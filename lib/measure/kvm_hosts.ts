/**
 * `sign` for the KVM loaders (../shared/LOADERS.md §4, §6, §7.2, §9): the reasons such a
 * loader would refuse the file, which the signature cannot fix; how a host configuration is
 * named; and the digests of `sign --matrix`, one per vCPU count and CPU model.
 */
import { toHex } from "../bytes/le.ts";
import type { FileAccess } from "../io/file_reader.ts";
import type { IgvmFile } from "../igvm/reader.ts";
import { checkLaunch, kvmPolicyProblems, LAUNCH_CHECK_LOADERS } from "./launch_checks.ts";
import { type KvmLoaderName, LoaderRefusal } from "./kvm_loaders.ts";
import type { HostConfig } from "./launch_update.ts";
import { type CpuModel, kvmHostDigests } from "./host_search.ts";

/**
 * Warnings when `loader` is a KVM loader that would not start the signed file: KVM refuses
 * the ID block's policy, or the launch checks (header-only; the ID block is not compared)
 * find a reason. Empty for the other loaders.
 */
export async function kvmLaunchWarnings(
  loader: string,
  file: FileAccess,
  headers: IgvmFile,
  policy: bigint,
  host: HostConfig | undefined,
): Promise<string[]> {
  if (!(LAUNCH_CHECK_LOADERS as readonly string[]).includes(loader)) return [];
  const warnings = kvmPolicyProblems(policy).map((p) =>
    `warning: ${p}: KVM refuses SNP_LAUNCH_START (see -config_file)`
  );
  const check = await checkLaunch(loader as KvmLoaderName, file, headers, host, {
    compareIdBlock: false,
  });
  // The file's policy header is replaced by the signed one, checked above.
  const refusals = check.refusals.filter((r) => !r.endsWith("KVM refuses SNP_LAUNCH_START"));
  if (refusals.length) {
    warnings.push(
      `warning: ${loader} would not start this file: ${refusals[0]}${
        refusals.length > 1
          ? ` (and ${refusals.length - 1} more reason${refusals.length > 2 ? "s" : ""})`
          : ""
      }; see igvmgen verify --loader ${loader}`,
    );
  }
  return warnings;
}

/** A host configuration with the words the user gave, for messages and file names. */
export interface NamedHost extends HostConfig {
  /** The CPU as given (milan, 0x00a00f11, ...), or undefined when not given. */
  cpu?: string;
}

/** How to name a host configuration in messages: "2 vCPUs, genoa". */
export function describeHost(host: NamedHost): string {
  const vcpus = `${host.vcpus} vCPU${host.vcpus === 1 ? "" : "s"}`;
  return host.cpu === undefined ? vcpus : `${vcpus}, ${host.cpu}`;
}

/** One combination of `sign --matrix`: its host and launch digest (hex). */
export interface MatrixDigest {
  vcpus: number;
  cpu: string;
  /** CPUID(1).EAX, 0x and 8 hex digits. */
  signature: string;
  launchDigest: string;
}

/**
 * The digests of a KVM loader for every vCPU count and CPU, in the order of the CPU list and
 * then the vCPU list: the host search's digests ({@link kvmHostDigests}: a pass over the file
 * for one vCPU, then one AP VMSA at a time).
 */
export async function kvmMatrixDigests(
  loader: KvmLoaderName,
  file: FileAccess,
  headers: IgvmFile,
  vcpus: readonly number[],
  cpus: readonly CpuModel[],
): Promise<MatrixDigest[]> {
  for (const n of vcpus) {
    if (!Number.isSafeInteger(n) || n < 1) {
      throw new RangeError(`vCPU count ${n}: expected 1 or more`);
    }
  }
  const hex8 = (n: number) => "0x" + n.toString(16).padStart(8, "0");
  // Each CPU model's digests by vCPU count - 1 (models by identity: a name may repeat).
  const digests = new Map<CpuModel, string[]>();
  try {
    const search = { cpus, maxVcpus: Math.max(...vcpus) };
    for await (const r of kvmHostDigests(loader, file, headers, search)) {
      const list = digests.get(r.cpu) ?? [];
      digests.set(r.cpu, list);
      list[r.vcpus - 1] = toHex(r.digest);
    }
  } catch (e) {
    if (e instanceof LoaderRefusal) throw new Error(`${loader}: ${e.message}`, { cause: e });
    throw e;
  }
  return cpus.flatMap((cpu) =>
    vcpus.map((n) => ({
      vcpus: n,
      cpu: cpu.name,
      signature: hex8(cpu.signature),
      launchDigest: digests.get(cpu)![n - 1],
    }))
  );
}
