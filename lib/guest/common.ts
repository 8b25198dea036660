/** Generated pages every image has: ACPI, CPUID, GDT, page tables. */
import type { AcpiImage } from "../../acpi/acpi_image.ts";
import type { GuestImage } from "../layout/guest_image.ts";
import type { StreamRegion } from "../io/byte_stream.ts";
import type { Range } from "../layout/guest_allocator.ts";
import { SparseMemory } from "../layout/sparse_memory.ts";
import { bytesReader } from "../io/file_reader.ts";
import { encodeCpuidPage } from "../x86/cpuid_page.ts";
import { buildGdt, type Gdt } from "../x86/gdt.ts";
import { buildPageTables } from "../x86/page_tables.ts";
import { type BootMode, type CpuVendor, initialVmsaState } from "../x86/boot_cpu.ts";
import { encodeVmsaPage } from "../x86/vmsa.ts";

/** The vCPU options every guest flow takes from the command line. */
export interface GuestCpuOptions {
  bootMode: BootMode;
  arch: CpuVendor;
  svme: boolean;
  encryptedPage: boolean;
  highestVtl: number;
}

/** Starts a guest memory with the ACPI tables and the CPUID page written. */
export function startGuestMemory(acpi: AcpiImage, cpuidPage: number): SparseMemory {
  const memory = new SparseMemory();
  for (const w of acpi.writes) memory.write(w.gpa, w.bytes);
  memory.write(cpuidPage, encodeCpuidPage());
  return memory;
}

/** Writes the GDT (its TSS stays zero); returns it for the VMSA. */
export function writeGdt(
  memory: SparseMemory,
  bootMode: BootMode,
  tss: number,
  gdtAddr: number,
): Gdt {
  const gdt = buildGdt(bootMode === "x64", tss);
  memory.write(gdtAddr, gdt.bytes);
  return gdt;
}

/**
 * The page tables (x64) as a region of whole pages streamed from memory: up to 8 MiB for
 * 4-level tables, so they are not copied page by page into the sparse memory.
 */
export function pageTableRegion(
  pageTables: { base: number; level: 2 | 4 } | undefined,
  encryptedPage: boolean,
): StreamRegion[] {
  if (!pageTables) return [];
  const bytes = buildPageTables(pageTables.level, pageTables.base, encryptedPage);
  return [{
    name: "page tables",
    gpa: pageTables.base,
    length: bytes.length,
    open: () => Promise.resolve(bytesReader(bytes)),
  }];
}

/** Where a layout put the pieces the VMSA refers to. */
export interface VmsaPlacement {
  vmsaPage: number;
  gdt: number;
  pageTables?: { base: number; level: 2 | 4 };
  entry: number;
  bootStackTop: number;
}

/** Writes the VMSA page: the initial vCPU state pointing at `rsi` (boot or monitor params). */
export function writeInitialVmsa(
  memory: SparseMemory,
  cpu: GuestCpuOptions,
  l: VmsaPlacement,
  gdt: Gdt,
  rsi: number,
): void {
  const vmsa = initialVmsaState({
    bootMode: cpu.bootMode,
    arch: cpu.arch,
    svme: cpu.svme,
    encryptedPage: cpu.encryptedPage,
    gdt,
    gdtBase: l.gdt,
    pageTables: l.pageTables,
    rip: l.entry,
    rsi,
    rsp: l.bootStackTop,
  });
  memory.write(l.vmsaPage, encodeVmsaPage(vmsa));
}

/** The layout fields every guest image takes as they are. */
export type PlannedPages = Pick<
  GuestImage,
  "top" | "holes" | "vmsaPage" | "cpuidPage" | "secretsPage" | "paramPage"
>;

/** Assembles a guest image from a layout, its generated memory and its streamed regions. */
export function guestImageOf(
  l: PlannedPages,
  memory: SparseMemory,
  regions: StreamRegion[],
  guestInvalid: Range[],
  highestVtl: number,
): GuestImage {
  const { top, holes, vmsaPage, cpuidPage, secretsPage, paramPage } = l;
  return {
    top,
    holes,
    vmsaPage,
    cpuidPage,
    secretsPage,
    paramPage,
    guestInvalid,
    regions,
    memory,
    highestVtl,
  };
}
