/**
 * The zero page (struct boot_params) and the SEV cc_blob igvmgen hands the kernel, with the
 * e820 table. Layouts from arch/x86/include/uapi/asm/bootparam.h and asm/sev.h.
 */
import { defineLayout } from "../bytes/layout.ts";
import { setU64, viewOf } from "../bytes/le.ts";
import { SETUP_HEADER, SETUP_HEADER_OFFSET } from "./setup_header.ts";

/** The fields of struct boot_params (0x1000 bytes) that igvmgen writes. */
export const BOOT_PARAMS = {
  acpi_rsdp_addr: 0x070, // u64
  cc_blob_address: 0x13c, // u32
  e820_entries: 0x1e8, // u8
  hdr: SETUP_HEADER_OFFSET, // struct setup_header
  e820_table: 0x2d0, // struct boot_e820_entry[128]
  SIZE: 0x1000,
} as const;

/** struct boot_e820_entry, 0x14 bytes, packed. */
export const BOOT_E820_ENTRY = defineLayout("boot_e820_entry", 0x14, [
  ["addr", 0x00, "u64"],
  ["size", 0x08, "u64"],
  ["type", 0x10, "u32"],
]);
export const E820_MAX_ENTRIES_ZEROPAGE = 128;

export const E820_TYPE_RAM = 1;
export const E820_TYPE_RESERVED = 2;
export const E820_TYPE_ACPI = 3;

/** One e820 entry. */
export interface E820Entry {
  addr: number;
  size: number;
  type: number;
}

/** struct cc_blob_sev_info, 0x28 bytes. */
export const CC_BLOB_SEV_INFO = defineLayout("cc_blob_sev_info", 0x28, [
  ["magic", 0x00, "u32"],
  ["version", 0x04, "u16"],
  ["reserved", 0x06, "u16"],
  ["secrets_phys", 0x08, "u64"],
  ["secrets_len", 0x10, "u32"],
  ["rsvd1", 0x14, "u32"],
  ["cpuid_phys", 0x18, "u64"],
  ["cpuid_len", 0x20, "u32"],
  ["rsvd2", 0x24, "u32"],
]);
export const CC_BLOB_SEV_HDR_MAGIC = 0x4544_4d41; // "AMDE"

/** What igvmgen patches into the kernel's setup header inside boot_params. */
export interface SetupHeaderPatch {
  code32Start?: number;
  typeOfLoader?: number;
  cmdLinePtr: number;
  cmdlineSize: number;
  ramdiskImage?: number;
  ramdiskSize?: number;
}

/** Fields of a boot_params page. */
export interface BootParamsFields {
  /** The kernel's setup header bytes (0x7b), or none for an all-zero header. */
  header?: Uint8Array;
  patch: SetupHeaderPatch;
  acpiRsdpAddr: number;
  ccBlobAddress?: number;
  e820: readonly E820Entry[];
}

/** Encodes a boot_params page (4 KiB). */
export function encodeBootParams(f: BootParamsFields): Uint8Array {
  if (f.e820.length > E820_MAX_ENTRIES_ZEROPAGE) throw new Error("too many e820 entries");
  const bytes = new Uint8Array(BOOT_PARAMS.SIZE);
  const view = viewOf(bytes);
  if (f.header) bytes.set(f.header, BOOT_PARAMS.hdr);
  const h = (name: string) => BOOT_PARAMS.hdr + SETUP_HEADER.off[name];
  if (f.patch.code32Start !== undefined) {
    view.setUint32(h("code32_start"), f.patch.code32Start, true);
  }
  if (f.patch.typeOfLoader !== undefined) view.setUint8(h("type_of_loader"), f.patch.typeOfLoader);
  view.setUint32(h("cmd_line_ptr"), f.patch.cmdLinePtr, true);
  view.setUint32(h("cmdline_size"), f.patch.cmdlineSize, true);
  if (f.patch.ramdiskImage !== undefined) {
    view.setUint32(h("ramdisk_image"), f.patch.ramdiskImage, true);
  }
  if (f.patch.ramdiskSize !== undefined) {
    view.setUint32(h("ramdisk_size"), f.patch.ramdiskSize, true);
  }
  setU64(view, BOOT_PARAMS.acpi_rsdp_addr, f.acpiRsdpAddr);
  if (f.ccBlobAddress !== undefined) {
    view.setUint32(BOOT_PARAMS.cc_blob_address, f.ccBlobAddress, true);
  }
  view.setUint8(BOOT_PARAMS.e820_entries, f.e820.length);
  f.e820.forEach((e, i) => {
    const at = BOOT_PARAMS.e820_table + i * BOOT_E820_ENTRY.size;
    setU64(view, at + BOOT_E820_ENTRY.off.addr, e.addr);
    setU64(view, at + BOOT_E820_ENTRY.off.size, e.size);
    view.setUint32(at + BOOT_E820_ENTRY.off.type, e.type, true);
  });
  return bytes;
}

/** Encodes the SEV cc_blob (0x28 bytes) pointing at the secrets and CPUID pages. */
export function encodeCcBlob(secretsPage: number, cpuidPage: number, pageSize: number): Uint8Array {
  const bytes = new Uint8Array(CC_BLOB_SEV_INFO.size);
  const view = viewOf(bytes);
  const o = CC_BLOB_SEV_INFO.off;
  view.setUint32(o.magic, CC_BLOB_SEV_HDR_MAGIC, true);
  setU64(view, o.secrets_phys, secretsPage);
  view.setUint32(o.secrets_len, pageSize, true);
  setU64(view, o.cpuid_phys, cpuidPage);
  view.setUint32(o.cpuid_len, pageSize, true);
  return bytes;
}
