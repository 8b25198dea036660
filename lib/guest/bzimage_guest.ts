/** Fills a planned bzImage layout: boot_params, command line, cc_blob, tables, VMSA. */
import type { AcpiImage } from "../../acpi/acpi_image.ts";
import { encodeBootParams, encodeCcBlob } from "../bzimage/boot_params.ts";
import type { SetupHeader } from "../bzimage/setup_header.ts";
import { PAGE_SIZE } from "../bytes/le.ts";
import { ACPI_RSDP_ADDR } from "../../acpi/tables.ts";
import type { BzImageLayout } from "../layout/bzimage_layout.ts";
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
}

/** Builds the guest image of a bzImage. */
export function buildBzImageGuest(i: BzImageGuestInput): GuestImage {
  const l = i.layout;
  const memory = startGuestMemory(i.acpi, l.cpuidPage);
  const gdt = writeGdt(memory, i.bootMode, l.tss, l.gdt);
  memory.write(
    l.bootParams,
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
      ccBlobAddress: l.ccBlob,
      e820: l.e820,
    }),
  );
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
  return guestImageOf(l, memory, regions, l.sharedPayload ? [l.sharedPayload] : [], i.highestVtl);
}
