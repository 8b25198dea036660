/**
 * What `sign` tells the user when it signs for a KVM loader: the reasons that loader would
 * refuse the file (../shared/LOADERS.md §4, §6, §7.2, §9), which the signature cannot fix.
 */
import type { FileAccess } from "./io/file_reader.ts";
import type { IgvmFile } from "./igvm/reader.ts";
import { checkLaunch, kvmPolicyProblems, LAUNCH_CHECK_LOADERS } from "./igvm/launch_checks.ts";
import type { KvmLoaderName } from "./measure/kvm_loaders.ts";
import type { HostConfig } from "./measure/launch_update.ts";

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
