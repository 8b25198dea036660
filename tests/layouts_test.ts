/** Every binary layout has the size its specification gives. */
import { assertEquals } from "./assert.ts";
import * as igvm from "../lib/igvm/defs.ts";
import { VMCB_SAVE_AREA, VMCB_SEG } from "../lib/x86/vmsa.ts";
import { SETUP_HEADER } from "../lib/bzimage/setup_header.ts";
import { BOOT_E820_ENTRY, CC_BLOB_SEV_INFO } from "../lib/bzimage/boot_params.ts";
import { HV_PSP_CPUID_LEAF } from "../lib/x86/cpuid_page.ts";
import { SNP_PAGE_INFO } from "../lib/measure/snp_digest.ts";
import { ELF64_EHDR, ELF64_PHDR, ELF64_SHDR, ELF64_SYM } from "../lib/elf/elf64.ts";
import { MONITOR_PARAMS } from "../lib/elf/monitor_params.ts";
import { ACPI_TABLE_HEADER, ACPI_TABLE_RSDP } from "../acpi/tables.ts";

const SIZES: [string, number, number][] = [
  ["IGVM_FIXED_HEADER", igvm.IGVM_FIXED_HEADER.size, 24],
  ["IGVM_VHS_VARIABLE_HEADER", igvm.IGVM_VHS_VARIABLE_HEADER.size, 8],
  ["IGVM_VHS_SUPPORTED_PLATFORM", igvm.IGVM_VHS_SUPPORTED_PLATFORM.size, 16],
  ["IGVM_VHS_SNP_POLICY", igvm.IGVM_VHS_SNP_POLICY.size, 16],
  ["IGVM_VHS_PARAMETER_AREA", igvm.IGVM_VHS_PARAMETER_AREA.size, 16],
  ["IGVM_VHS_PAGE_DATA", igvm.IGVM_VHS_PAGE_DATA.size, 24],
  ["IGVM_VHS_PARAMETER_INSERT", igvm.IGVM_VHS_PARAMETER_INSERT.size, 16],
  ["IGVM_VHS_PARAMETER", igvm.IGVM_VHS_PARAMETER.size, 8],
  ["IGVM_VHS_VP_CONTEXT", igvm.IGVM_VHS_VP_CONTEXT.size, 20],
  ["IGVM_VHS_MEMORY_MAP_ENTRY", igvm.IGVM_VHS_MEMORY_MAP_ENTRY.size, 24],
  ["IGVM_VHS_SNP_ID_BLOCK_SIGNATURE", igvm.IGVM_VHS_SNP_ID_BLOCK_SIGNATURE.size, 144],
  ["IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY", igvm.IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY.size, 152],
  ["IGVM_VHS_SNP_ID_BLOCK", igvm.IGVM_VHS_SNP_ID_BLOCK.size, 696],
  ["vmcb_seg", VMCB_SEG.size, 16],
  ["vmcb_save_area", VMCB_SAVE_AREA.size, 0x408],
  ["setup_header", SETUP_HEADER.size, 0x26c - 0x1f1],
  ["boot_e820_entry", BOOT_E820_ENTRY.size, 20],
  ["cc_blob_sev_info", CC_BLOB_SEV_INFO.size, 40],
  ["HV_PSP_CPUID_LEAF", HV_PSP_CPUID_LEAF.size, 48],
  ["SNP_PAGE_INFO", SNP_PAGE_INFO.size, 0x70],
  ["Elf64_Ehdr", ELF64_EHDR.size, 64],
  ["Elf64_Phdr", ELF64_PHDR.size, 56],
  ["Elf64_Shdr", ELF64_SHDR.size, 64],
  ["Elf64_Sym", ELF64_SYM.size, 24],
  ["monitor_params", MONITOR_PARAMS.size, 48],
  ["acpi_table_header", ACPI_TABLE_HEADER.size, 36],
  ["acpi_table_rsdp", ACPI_TABLE_RSDP.size, 36],
];

for (const [name, actual, expected] of SIZES) {
  Deno.test(`${name} is ${expected} bytes`, () => assertEquals(actual, expected));
}

Deno.test("VMCB save area fields sit at the AMD APM offsets", () => {
  const o = VMCB_SAVE_AREA.off;
  assertEquals(
    [o.efer, o.cr4, o.cr3, o.cr0, o.rflags, o.rip, o.rsp, o.g_pat, o.rsi, o._0, o.xcr0],
    [
      0xd0,
      0x148,
      0x150,
      0x158,
      0x170,
      0x178,
      0x1d8,
      0x268,
      0x330,
      0x3b0,
      0x3e8,
    ],
  );
});
