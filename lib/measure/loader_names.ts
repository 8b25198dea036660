/**
 * The names `--loader` takes, apart from the models themselves (lib/measure/loaders.ts), so
 * that the command line's option table can list them without loading any model.
 */

/** The default loader: the original igvmgen's, whose digest generation computes as it writes. */
export const DEFAULT_LOADER = "hyperv";

/** Loaders that take every page and the VMSA from the file: their digest is the file's. */
export const FILE_LOADER_NAMES = ["hyperv", "ch-mshv", "igvmmeasure", "igvmmeasure-native-zero"];

/** Loaders on Linux KVM: their digest depends on the host's vCPU count and CPU model. */
export const KVM_LOADER_NAMES = ["qemu-kvm", "ch-kvm", "openvmm-kvm"];
