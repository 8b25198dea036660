/** The security monitor's boot parameters (the original's monitor.h). */
import { defineLayout } from "../bytes/layout.ts";
import { setU64, viewOf } from "../bytes/le.ts";

/** struct monitor_params, 0x30 bytes. */
export const MONITOR_PARAMS = defineLayout("monitor_params", 0x30, [
  ["cpuid_page", 0x00, "u64"],
  ["secret_page", 0x08, "u64"],
  ["hv_param_page", 0x10, "u64"],
  ["vmpl2_boot_param", 0x18, "u64"],
  ["vmpl2_start", 0x20, "u64"],
  ["vmpl2_kernel_size", 0x28, "u64"],
]);

/** Field values of monitor_params. */
export interface MonitorParams {
  cpuidPage: number;
  secretPage: number;
  hvParamPage: number;
  vmpl2BootParam: number;
  vmpl2Start: number;
  vmpl2KernelSize: number;
}

/** Encodes monitor_params. */
export function encodeMonitorParams(p: MonitorParams): Uint8Array {
  const bytes = new Uint8Array(MONITOR_PARAMS.size);
  const view = viewOf(bytes);
  const o = MONITOR_PARAMS.off;
  setU64(view, o.cpuid_page, p.cpuidPage);
  setU64(view, o.secret_page, p.secretPage);
  setU64(view, o.hv_param_page, p.hvParamPage);
  setU64(view, o.vmpl2_boot_param, p.vmpl2BootParam);
  setU64(view, o.vmpl2_start, p.vmpl2Start);
  setU64(view, o.vmpl2_kernel_size, p.vmpl2KernelSize);
  return bytes;
}
