/** Generated pages every image has: ACPI, CPUID, GDT, page tables, VMSA. */
import type { AcpiImage } from "../acpi/acpi_image.ts";
import { SparseMemory } from "../layout/sparse_memory.ts";
import { encodeCpuidPage } from "../x86/cpuid_page.ts";
import { buildGdt, type Gdt } from "../x86/gdt.ts";
import { buildPageTables } from "../x86/page_tables.ts";
import type { BootMode } from "../x86/boot_cpu.ts";

/** Starts a guest memory with the ACPI tables and the CPUID page written. */
export function startGuestMemory(acpi: AcpiImage, cpuidPage: number): SparseMemory {
  const memory = new SparseMemory();
  for (const w of acpi.writes) memory.write(w.gpa, w.bytes);
  memory.write(cpuidPage, encodeCpuidPage());
  return memory;
}

/** Writes the page tables (x64) and the GDT; returns the GDT for the VMSA. */
export function writeBootTables(
  memory: SparseMemory,
  bootMode: BootMode,
  encryptedPage: boolean,
  pageTables: { base: number; level: 2 | 4 } | undefined,
  tss: number,
  gdtAddr: number,
): Gdt {
  if (pageTables) {
    memory.write(
      pageTables.base,
      buildPageTables(pageTables.level, pageTables.base, encryptedPage),
    );
  }
  const gdt = buildGdt(bootMode === "x64", tss);
  memory.write(gdtAddr, gdt.bytes);
  return gdt;
}
