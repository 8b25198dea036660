/**
 * The SNP CPUID page the original emits: the list of leaves the guest may ask for, with
 * zero outputs for the PSP to fill in (HV_PSP_CPUID_PAGE).
 */
import { defineLayout } from "../bytes/layout.ts";
import { PAGE_SIZE, viewOf } from "../bytes/le.ts";

/** HV_PSP_CPUID_LEAF, 0x30 bytes. */
export const HV_PSP_CPUID_LEAF = defineLayout("HV_PSP_CPUID_LEAF", 0x30, [
  ["EaxIn", 0x00, "u32"],
  ["EcxIn", 0x04, "u32"],
  ["XfemIn", 0x08, "u64"],
  ["XssIn", 0x10, "u64"],
  ["EaxOut", 0x18, "u32"],
  ["EbxOut", 0x1c, "u32"],
  ["EcxOut", 0x20, "u32"],
  ["EdxOut", 0x24, "u32"],
  ["ReservedZ", 0x28, "u64"],
]);

/** Header of HV_PSP_CPUID_PAGE; 64 leaves follow at 0x10. */
export const HV_PSP_CPUID_PAGE = defineLayout("HV_PSP_CPUID_PAGE_HEADER", 0x10, [
  ["Count", 0x00, "u32"],
  ["ReservedZ1", 0x04, "u32"],
  ["ReservedZ2", 0x08, "u64"],
]);

const EXTENDED_STATE_ENUMERATION = 0x0000_000d;

/** (function, subleaf) pairs, in the original's order. */
export const CPUID_LEAVES: readonly (readonly [number, number])[] = [
  [0x8000_001f, 0], // extended SEV features
  [0x0000_0000, 0],
  [0x0000_0001, 0],
  [0x8000_0000, 0],
  [0x0000_0002, 0],
  [0x0000_0005, 0],
  [0x0000_0006, 0],
  [0x0000_0009, 0],
  [0x0000_000a, 0],
  [0x0000_0007, 0],
  [0x0000_0004, 0],
  [0x0000_0004, 1],
  [0x0000_0004, 2],
  [0x0000_000b, 0],
  [0x0000_000b, 1],
  [0x8000_0001, 0],
  [0x8000_0005, 0],
  [0x8000_0006, 0],
  [0x8000_0007, 0],
  [0x8000_0008, 0],
  [0x8000_000a, 0],
  [0x8000_001e, 0],
  ...[0, 1, 2, 3, 4, 5, 6, 7, 8].map((i) => [EXTENDED_STATE_ENUMERATION, i] as const),
  [0x8000_0002, 0],
  [0x8000_0003, 0],
  [0x8000_0004, 0],
  [0x8000_001d, 0],
  [0x8000_001d, 1],
  [0x8000_001d, 2],
  [0x8000_001d, 3],
];

/** Encodes the CPUID page. XFEM_IN is 1 (x87 only) for leaf 0xD. */
export function encodeCpuidPage(): Uint8Array {
  const page = new Uint8Array(PAGE_SIZE);
  const view = viewOf(page);
  view.setUint32(HV_PSP_CPUID_PAGE.off.Count, CPUID_LEAVES.length, true);
  CPUID_LEAVES.forEach(([fn, sub], i) => {
    const at = HV_PSP_CPUID_PAGE.size + i * HV_PSP_CPUID_LEAF.size;
    view.setUint32(at + HV_PSP_CPUID_LEAF.off.EaxIn, fn, true);
    view.setUint32(at + HV_PSP_CPUID_LEAF.off.EcxIn, sub, true);
    if (fn === EXTENDED_STATE_ENUMERATION) {
      view.setBigUint64(at + HV_PSP_CPUID_LEAF.off.XfemIn, 1n, true);
    }
  });
  return page;
}
