/** Fills a planned bzImage layout: boot_params, command line, cc_blob, tables, VMSA. */
import type { AcpiImage } from "../../acpi/acpi_image.ts";
import { encodeBootParams, encodeCcBlob } from "../bzimage/boot_params.ts";
import type { SetupHeader } from "../bzimage/setup_header.ts";
import { PAGE_SIZE } from "../bytes/le.ts";
import { ACPI_RSDP_ADDR } from "../../acpi/tables.ts";
import { type BzImageLayout, nativeE820 } from "../layout/bzimage_layout.ts";
import type { SparseMemory } from "../layout/sparse_memory.ts";
import { pageTablePages, writePageTablePages } from "../x86/page_tables.ts";
import type { GuestImage } from "../layout/guest_image.ts";
import type { StreamRegion } from "../io/byte_stream.ts";
import {
  type GuestCpuOptions,
  guestImageOf,
  pageTableRegion,
  startGuestMemory,
  writeGdt,
  writeInitialVmsa,
} from "./common.ts";

/** The inputs that fill a bzImage guest. */
export interface BzImageGuestInput extends GuestCpuOptions {
  layout: BzImageLayout;
  header: SetupHeader;
  acpi: AcpiImage;
  cmdline: Uint8Array;
  kernelPayload: StreamRegion;
  initrd?: StreamRegion;
  sharedPayload?: StreamRegion;
  /** Where the RSDP is, for boot_params.acpi_rsdp_addr (the original's 0xE0000 by default). */
  rsdpAddr?: number;
  /**
   * `-native` (KVM layouts): the image also boots without SEV, in a VM with RAM up to
   * `ramEnd`. Its VP context comes from the final VMSA (finishKvmImage, lib/ops/target.ts).
   */
  native?: { ramEnd: number };
}

/** Builds the guest image of a bzImage. */
export function buildBzImageGuest(i: BzImageGuestInput): GuestImage {
  const l = i.layout;
  const memory = startGuestMemory(i.acpi, l.cpuidPage);
  const gdt = writeGdt(memory, i.bootMode, l.tss, l.gdt);
  const bootParams = (e820: BzImageLayout["e820"], ccBlobAddress: number) =>
    encodeBootParams({
      header: i.header.raw,
      patch: {
        code32Start: l.entry,
        typeOfLoader: 0xff,
        cmdLinePtr: l.cmdline,
        cmdlineSize: i.cmdline.length,
        ramdiskImage: l.initrd,
        ramdiskSize: i.initrd?.length ?? 0,
      },
      acpiRsdpAddr: i.rsdpAddr ?? ACPI_RSDP_ADDR,
      ccBlobAddress,
      e820,
    });
  memory.write(l.bootParams, bootParams(l.e820, l.ccBlob));
  if (i.cmdline.length > 0) memory.write(l.cmdline, i.cmdline);
  memory.write(l.ccBlob, encodeCcBlob(l.secretsPage, l.cpuidPage, PAGE_SIZE));
  writeInitialVmsa(memory, i, l, gdt, l.bootParams);
  const regions = [
    { ...i.kernelPayload, gpa: l.kernelBase },
    ...pageTableRegion(l.pageTables, i.encryptedPage),
  ];
  if (i.initrd && i.initrd.length > 0) regions.push({ ...i.initrd, gpa: l.initrd });
  if (i.sharedPayload && l.sharedPayload && i.sharedPayload.length > 0) {
    regions.push({ ...i.sharedPayload, gpa: l.sharedPayload.start });
  }
  const image = guestImageOf(
    l,
    memory,
    regions,
    l.sharedPayload ? [l.sharedPayload] : [],
    i.highestVtl,
  );
  if (l.memoryMapPage !== undefined) {
    // QEMU writes the memory map from offset 0 of its area, whatever the directive says.
    image.parameterAreas = [{ gpa: l.paramPage, vpCount: 0 }, {
      gpa: l.memoryMapPage,
      memoryMap: 0,
    }];
  }
  if (!i.native) return image;
  // NATIVE: boot_params with the e820 of a plain VM and no cc_blob (there is no SEV),
  // and page tables without the C-bit.
  const pages = new Map<number, Uint8Array>();
  overlay(pages, memory, l.bootParams, bootParams(nativeE820(l, i.native.ramEnd), 0));
  if (l.pageTables && i.encryptedPage) {
    const spec = { level: l.pageTables.level, base: l.pageTables.base, encrypted: false };
    for (let n = 0; n < pageTablePages(spec.level); n++) {
      const page = new Uint8Array(PAGE_SIZE);
      writePageTablePages(spec, n, 1, page);
      pages.set(spec.base + n * PAGE_SIZE, page);
    }
  }
  const memoryBytes = i.native.ramEnd;
  return { ...image, native: { pages, vpContext: new Uint8Array(PAGE_SIZE), memoryBytes } };
}

/**
 * Puts `bytes` at `gpa` into copies of the generated pages it covers, kept in `pages`: the
 * NATIVE contents of those pages, the rest of each page as SEV-SNP has it.
 */
function overlay(
  pages: Map<number, Uint8Array>,
  memory: SparseMemory,
  gpa: number,
  bytes: Uint8Array,
): void {
  for (let at = gpa - (gpa % PAGE_SIZE); at < gpa + bytes.length; at += PAGE_SIZE) {
    const page = pages.get(at) ?? memory.page(at)?.slice() ?? new Uint8Array(PAGE_SIZE);
    const from = Math.max(gpa, at);
    const to = Math.min(gpa + bytes.length, at + PAGE_SIZE);
    page.set(bytes.subarray(from - gpa, to - gpa), from - at);
    pages.set(at, page);
  }
}
