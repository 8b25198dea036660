/** Generated pages every image has: ACPI, CPUID, GDT, page tables. */
import type { AcpiImage } from "../../acpi/acpi_image.ts";
import type { GuestImage } from "../layout/guest_image.ts";
import type { ByteReader, StreamRegion } from "../io/byte_stream.ts";
import type { Range } from "../layout/guest_allocator.ts";
import { SparseMemory } from "../layout/sparse_memory.ts";
import { encodeCpuidPage } from "../x86/cpuid_page.ts";
import { buildGdt, type Gdt } from "../x86/gdt.ts";
import { pageTablePages, type PageTableSpec, writePageTablePages } from "../x86/page_tables.ts";
import { PAGE_SIZE } from "../bytes/le.ts";
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
 * The page tables (x64) as a region of whole pages, generated as they are read: the 4-level
 * tables (32 MiB) go straight into the reader's buffer, never held whole nor copied.
 */
export function pageTableRegion(
  pageTables: { base: number; level: 2 | 4 } | undefined,
  encryptedPage: boolean,
): StreamRegion[] {
  if (!pageTables) return [];
  const spec = { ...pageTables, encrypted: encryptedPage };
  return [{
    name: "page tables",
    gpa: pageTables.base,
    length: pageTablePages(pageTables.level) * PAGE_SIZE,
    open: () => Promise.resolve(pageTableReader(spec)),
  }];
}

/**
 * Reads the tables of `spec` in order. The whole pages of a read are written in place when
 * aligned; a partial or unaligned page goes through a scratch page.
 */
export function pageTableReader(spec: PageTableSpec): ByteReader {
  const length = pageTablePages(spec.level) * PAGE_SIZE;
  let at = 0;
  let scratch: Uint8Array | undefined;
  const readSync = (dst: Uint8Array): number => {
    const n = Math.min(dst.length, length - at);
    let done = 0;
    while (done < n) {
      const index = Math.floor(at / PAGE_SIZE);
      const inPage = at % PAGE_SIZE;
      const whole = Math.floor((n - done) / PAGE_SIZE);
      if (inPage === 0 && whole > 0 && (dst.byteOffset + done) % 4 === 0) {
        writePageTablePages(spec, index, whole, dst.subarray(done, done + whole * PAGE_SIZE));
        done += whole * PAGE_SIZE;
        at += whole * PAGE_SIZE;
        continue;
      }
      const step = Math.min(PAGE_SIZE - inPage, n - done);
      scratch ??= new Uint8Array(PAGE_SIZE);
      writePageTablePages(spec, index, 1, scratch);
      dst.set(scratch.subarray(inPage, inPage + step), done);
      done += step;
      at += step;
    }
    return n;
  };
  return { read: (dst) => Promise.resolve(readSync(dst)), readSync, close() {} };
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
