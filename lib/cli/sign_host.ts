/**
 * The host configuration of `sign`: `--vcpus N --cpu C` for a host-dependent (KVM) loader, or
 * the lists of `--matrix`. The rules are measure's: only with a KVM loader, and qemu-kvm and
 * openvmm-kvm with more than one vCPU need the CPU model (each AP's VMSA holds its signature).
 */
import { UsageError } from "../errors.ts";
import type { NamedHost } from "../measure/kvm_hosts.ts";
import { loaderModel } from "../measure/loaders.ts";
import { parseCpus, parseHost, parseVcpus } from "./kvm_commands.ts";

/** `--vcpus` and `--cpu` of a single host; undefined when neither is given. */
export function signHostOf(
  loader: string,
  vcpusText: string | undefined,
  cpuText: string | undefined,
): NamedHost | undefined {
  if (vcpusText === undefined && cpuText === undefined) return undefined;
  if (!loaderModel(loader).hostDependent) {
    throw new UsageError(
      `sign: --vcpus and --cpu go with a KVM loader (--loader qemu-kvm, ch-kvm or openvmm-kvm)`,
    );
  }
  return parseHost(loader, vcpusText, cpuText);
}

/** The lists of `sign --matrix`: every vCPU count with every CPU. */
export function signMatrixOf(
  loader: string,
  vcpusText: string | undefined,
  cpuText: string | undefined,
): { vcpus: number[]; cpus: { name: string; signature: number }[] } {
  if (!loaderModel(loader).hostDependent) {
    throw new UsageError(`sign --matrix: ${loader} is not a KVM loader`);
  }
  if (vcpusText === undefined || cpuText === undefined) {
    throw new UsageError("sign --matrix needs --vcpus and --cpu lists");
  }
  // Each list names a count or a CPU once (parseVcpus, parseCpus).
  return { vcpus: parseVcpus(vcpusText, true), cpus: parseCpus(cpuText, true) };
}
