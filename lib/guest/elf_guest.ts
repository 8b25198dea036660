/** Fills a planned monitor layout: the flat image, tables, monitor_params, boot_params, VMSA. */
import type { AcpiImage } from "../../acpi/acpi_image.ts";
import { ACPI_RSDP_ADDR } from "../../acpi/tables.ts";
import { encodeBootParams } from "../bzimage/boot_params.ts";
import type { SetupHeader } from "../bzimage/setup_header.ts";
import { encodeMonitorParams } from "../elf/monitor_params.ts";
import type { ElfLayout } from "../layout/elf_layout.ts";
import type { GuestImage } from "../layout/guest_image.ts";
import type { StreamRegion } from "../io/byte_stream.ts";
import { bytesReader } from "../io/file_reader.ts";
import {
  type GuestCpuOptions,
  guestImageOf,
  pageTableRegion,
  startGuestMemory,
  writeGdt,
  writeInitialVmsa,
} from "./common.ts";

/** The inputs that fill a monitor guest. */
export interface ElfGuestInput extends GuestCpuOptions {
  layout: ElfLayout;
  acpi: AcpiImage;
  /** Command line with its NUL. */
  cmdline: Uint8Array;
  image: Uint8Array;
  vmpl2Kernel?: StreamRegion;
  vmpl2Header?: SetupHeader;
}

/** Builds the guest image of the ELF flow. */
export function buildElfGuest(i: ElfGuestInput): GuestImage {
  const l = i.layout;
  const memory = startGuestMemory(i.acpi, l.cpuidPage);
  memory.write(l.cmdline, i.cmdline);
  const gdt = writeGdt(memory, i.bootMode, l.tss, l.gdt);
  memory.write(
    l.monitorParams,
    encodeMonitorParams({
      cpuidPage: l.cpuidPage,
      secretPage: l.secretsPage,
      hvParamPage: l.paramPage,
      vmpl2BootParam: l.bootParams,
      vmpl2Start: l.vmpl2Kernel,
      vmpl2KernelSize: i.vmpl2Kernel?.length ?? 0,
    }),
  );
  memory.write(
    l.bootParams,
    encodeBootParams({
      header: i.vmpl2Header?.raw,
      patch: { cmdLinePtr: l.cmdline, cmdlineSize: i.cmdline.length },
      acpiRsdpAddr: ACPI_RSDP_ADDR,
      e820: l.e820,
    }),
  );
  writeInitialVmsa(memory, i, l, gdt, l.monitorParams);
  const image = i.image;
  const regions: StreamRegion[] = pageTableRegion(l.pageTables, i.encryptedPage);
  if (image.length > 0) {
    regions.push({
      name: "monitor image",
      gpa: l.image,
      length: image.length,
      open: () => Promise.resolve(bytesReader(image)),
    });
  }
  if (i.vmpl2Kernel && i.vmpl2Kernel.length > 0) {
    regions.push({ ...i.vmpl2Kernel, gpa: l.vmpl2Kernel });
  }
  return guestImageOf(l, memory, regions, [], i.highestVtl);
}
