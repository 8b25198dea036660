/** ACPI table headers (ACPI 6.x, 5.2): layouts, checksum. */
import { defineLayout } from "../lib/bytes/layout.ts";

/** struct acpi_table_header (the SDT header), 0x24 bytes. */
export const ACPI_TABLE_HEADER = defineLayout("acpi_table_header", 0x24, [
  ["signature", 0x00, { bytes: 4 }],
  ["length", 0x04, "u32"],
  ["revision", 0x08, "u8"],
  ["checksum", 0x09, "u8"],
  ["oem_id", 0x0a, { bytes: 6 }],
  ["oem_table_id", 0x10, { bytes: 8 }],
  ["oem_revision", 0x18, "u32"],
  ["asl_compiler_id", 0x1c, { bytes: 4 }],
  ["asl_compiler_revision", 0x20, "u32"],
]);

/** struct acpi_table_rsdp (revision 2), 0x24 bytes. */
export const ACPI_TABLE_RSDP = defineLayout("acpi_table_rsdp", 0x24, [
  ["signature", 0x00, { bytes: 8 }],
  ["checksum", 0x08, "u8"],
  ["oem_id", 0x09, { bytes: 6 }],
  ["revision", 0x0f, "u8"],
  ["rsdt_physical_address", 0x10, "u32"],
  ["length", 0x14, "u32"],
  ["xsdt_physical_address", 0x18, "u64"],
  ["extended_checksum", 0x20, "u8"],
  ["reserved", 0x21, { bytes: 3 }],
]);

/** FADT fields the loader patches (offsets in the table). */
export const FADT = {
  FIRMWARE_CTRL: 0x24, // u32: FACS address
  DSDT: 0x28, // u32
  X_FIRMWARE_CTRL: 0x84, // u64
  X_DSDT: 0x8c, // u64
} as const;

/** Where the original puts ACPI: the RSDP in the BIOS area, the XSDT at 1 MiB. */
export const ACPI_RSDP_ADDR = 0xe0000;
export const ACPI_DEFAULT_XSDT_ADDR = 0x100000;
/** End of the ACPI area of the original's default snapshot. */
export const ACPI_DEFAULT_END_ADDR = 0x200000;

/** The byte that makes `bytes[start, end)` sum to zero modulo 256 with it in place. */
export function acpiChecksum(bytes: Uint8Array, start = 0, end = bytes.length, skip = -1): number {
  end = Math.min(end, bytes.length);
  let sum = 0;
  for (let i = start; i < end; i++) if (i !== skip) sum += bytes[i];
  return (0x100 - (sum & 0xff)) & 0xff;
}

/** Sets an SDT's checksum byte (offset 9) over its `length` bytes. */
export function fixTableChecksum(table: Uint8Array): void {
  const length = new DataView(table.buffer, table.byteOffset).getUint32(4, true);
  table[ACPI_TABLE_HEADER.off.checksum] = acpiChecksum(
    table,
    0,
    length,
    ACPI_TABLE_HEADER.off.checksum,
  );
}

/** The 4-character signature of a table. */
export function tableSignature(table: Uint8Array): string {
  // Printable ASCII as it is; anything else (a hostile or zeroed table) as \xHH.
  return [...table.subarray(0, 4)].map((b) =>
    b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`
  ).join("");
}
