/**
 * Guest memory layout for a bzImage (`-inform bzImage|bzImage2`), planned from the setup
 * header and the input sizes alone, exactly as the original lays it out:
 *   ACPI | hole | CPUID, secrets, parameters, VMSA at 8 MiB | hole | kernel at pref_address
 *   (init_size) | page tables, TSS, GDT, boot_params, command line, initrd, stack, cc_blob
 *   | (bzImage2) guest-invalid shared payload at 256 MiB.
 */
import { alignUp, PAGE_SIZE } from "../bytes/le.ts";
import { InputError } from "../errors.ts";
import type { SetupHeader } from "../bzimage/setup_header.ts";
import {
  E820_TYPE_ACPI,
  E820_TYPE_RAM,
  E820_TYPE_RESERVED,
  type E820Entry,
} from "../bzimage/boot_params.ts";
import { gdtSize, TSS_SIZE } from "../x86/gdt.ts";
import { pageTablePages } from "../x86/page_tables.ts";
import type { BootMode } from "../x86/boot_cpu.ts";
import { GuestAllocator, type Range } from "./guest_allocator.ts";

/** CPUID, secrets, parameter and VMSA pages start here. */
export const SNP_CPUID_PAGE_ADDR = 0x800000;
/** Where `bzImage2` loads its guest-invalid shared payload. */
export const SHARED_PAYLOAD_ADDR = 0x1000_0000;
/** Memory the decompressor uses before it can pvalidate (head_64.S). */
export const BOOT_HEAP_SIZE = 0x10000;
export const BOOT_STACK_SIZE = 0x4000;
export const INIT_PGTABLE_SIZE = 0x1000 + 0x6000;

/** An area relative to pref_address that startup_32 touches before pvalidate. */
export interface EarlyArea {
  offset: number;
  size: number;
}

/** What the planner needs to know. */
export interface BzImageLayoutInput {
  header: SetupHeader;
  /** Size of the protected-mode payload (file size minus the setup code). */
  payloadLength: number;
  cmdlineLength: number;
  initrdLength: number;
  /** End of the ACPI area (first page after the tables). */
  acpiEnd: number;
  bootMode: BootMode;
  pvalidateOpt: boolean;
  /** bzImage2: size of the guest-invalid payload. */
  sharedPayloadLength?: number;
  /** The early boot stack and page-table areas, from `-symbol_elf`; defaults otherwise. */
  earlyAreas?: EarlyArea[];
  /**
   * For KVM loaders (`-target qemu-kvm|ch-kvm`): no page below 1 MiB, and the VMSA at
   * `vmsaGpa` outside guest memory instead of after the parameter page.
   */
  kvm?: { vmsaGpa: number };
}

/** The least RAM a NATIVE boot is given: room for a distribution kernel and an initramfs. */
export const NATIVE_MIN_RAM = 512 << 20;
/**
 * The most: q35 keeps RAM below 4 GiB up to 0xB0000000 (2.75 GiB); with more, only 2 GiB are
 * below 4 GiB and the rest moves above it, where the native e820 does not look.
 */
export const NATIVE_MAX_RAM = 0xb000_0000;

/**
 * The end of the RAM the native e820 lists, and so the `-m` the VM needs: the image's end
 * rounded up to 2 MiB, at least NATIVE_MIN_RAM. Throws past NATIVE_MAX_RAM.
 */
export function nativeRamEnd(top: number): number {
  const end = Math.max(NATIVE_MIN_RAM, alignUp(top, 2 << 20));
  if (end > NATIVE_MAX_RAM) {
    throw new InputError(
      `-native: the image ends at 0x${top.toString(16)}, past 0x${
        NATIVE_MAX_RAM.toString(16)
      }, the most RAM q35 keeps below 4 GiB`,
    );
  }
  return end;
}

/** Every address of the layout. */
export interface BzImageLayout {
  top: number;
  holes: Range[];
  acpiStart: number;
  cpuidPage: number;
  secretsPage: number;
  paramPage: number;
  /** KVM layouts: the memory map's own parameter page (QEMU writes the map at offset 0). */
  memoryMapPage?: number;
  vmsaPage: number;
  kernelBase: number;
  entry: number;
  pageTables?: { base: number; level: 2 };
  tss: number;
  gdt: number;
  bootParams: number;
  cmdline: number;
  initrd: number;
  bootStackTop: number;
  ccBlob: number;
  e820: E820Entry[];
  sharedPayload?: Range;
}

/**
 * The e820 entries every layout of the original starts with: low RAM (possibly empty), the
 * legacy video/BIOS hole as reserved, and the ACPI area from 1 MiB.
 */
export function firstE820Entries(lowRamSize: number, acpiEnd: number): E820Entry[] {
  return [
    { addr: 0, size: lowRamSize, type: E820_TYPE_RAM },
    { addr: 0xa0000, size: 0x100000 - 0xa0000, type: E820_TYPE_RESERVED },
    { addr: 0x100000, size: acpiEnd - 0x100000, type: E820_TYPE_ACPI },
  ];
}

/** The original's default early areas: boot stack after the heap, page tables at the end. */
export function defaultEarlyAreas(payloadLength: number, initSize: number): EarlyArea[] {
  return [
    { offset: alignUp(payloadLength, PAGE_SIZE) + BOOT_HEAP_SIZE, size: BOOT_STACK_SIZE },
    { offset: initSize - INIT_PGTABLE_SIZE, size: INIT_PGTABLE_SIZE },
  ];
}

/** Plans the guest memory of a bzImage. Throws when the pieces do not fit. */
export function planBzImageLayout(input: BzImageLayoutInput): BzImageLayout {
  const mem = new GuestAllocator();
  const { header } = input;
  const pref = header.prefAddress;
  const vmlinuxSize = alignUp(input.payloadLength, PAGE_SIZE);
  const validated: Range[] = [];

  // 1. ACPI (with pvalidate_opt, the BIOS area below 0xa0000 is left out).
  let acpiStart = 0;
  if (input.kvm) {
    acpiStart = 0x100000;
    mem.seek(acpiStart);
  } else if (input.pvalidateOpt) {
    acpiStart = 0xa0000;
    mem.seek(acpiStart);
  }
  mem.allocate(input.acpiEnd - acpiStart);
  // 2. The SNP pages.
  mem.seek(SNP_CPUID_PAGE_ADDR);
  const cpuidPage = mem.allocate(PAGE_SIZE);
  const secretsPage = mem.allocate(PAGE_SIZE);
  const paramPage = mem.allocate(PAGE_SIZE);
  const memoryMapPage = input.kvm ? mem.allocate(PAGE_SIZE) : undefined;
  const vmsaPage = input.kvm ? input.kvm.vmsaGpa : mem.allocate(PAGE_SIZE);
  // 3. The kernel.
  if (pref < mem.top) {
    throw new Error(
      `pref_address 0x${pref.toString(16)} is below the SNP pages' end 0x${mem.top.toString(16)}`,
    );
  }
  mem.seek(pref);
  if (input.pvalidateOpt) {
    mem.allocate(vmlinuxSize);
    const areas = [...(input.earlyAreas ?? defaultEarlyAreas(input.payloadLength, header.initSize))]
      .sort((a, b) => a.offset - b.offset);
    for (const a of areas) {
      mem.seek(pref + a.offset);
      mem.allocate(a.size);
      validated.push({ start: pref + a.offset, end: pref + a.offset + a.size });
    }
  } else {
    if (input.payloadLength > header.initSize) {
      throw new Error(
        `the payload (${input.payloadLength} bytes) is larger than init_size 0x${
          header.initSize.toString(16)
        }`,
      );
    }
    mem.allocate(header.initSize);
  }
  mem.seek(pref + header.initSize);
  const entry = pref + (input.bootMode === "x64" ? 0x200 : 0);
  // 4. Boot data after the kernel.
  const afterKernel = mem.top;
  let pageTables: BzImageLayout["pageTables"];
  if (input.bootMode === "x64") {
    pageTables = { base: mem.allocate(pageTablePages(2) * PAGE_SIZE, PAGE_SIZE), level: 2 };
  }
  const tss = mem.allocate(TSS_SIZE);
  const gdt = mem.allocate(gdtSize(input.bootMode === "x64"));
  const bootParams = mem.allocate(PAGE_SIZE);
  const cmdline = mem.allocate(input.cmdlineLength + 1);
  const initrd = mem.allocate(input.initrdLength, PAGE_SIZE);
  const bootStack = mem.allocate(PAGE_SIZE);
  const ccBlob = mem.allocate(PAGE_SIZE);
  const end = mem.allocate(0, PAGE_SIZE);
  validated.push({ start: afterKernel, end });

  const e820 = firstE820Entries(input.pvalidateOpt || input.kvm ? 0 : 0xa0000, input.acpiEnd);
  if (input.pvalidateOpt) {
    e820.push({ addr: pref, size: vmlinuxSize, type: E820_TYPE_RAM });
    for (const r of validated) {
      e820.push({ addr: r.start, size: r.end - r.start, type: E820_TYPE_RAM });
    }
  } else {
    e820.push({ addr: pref, size: end - pref, type: E820_TYPE_RAM });
  }

  // 5. bzImage2's shared payload.
  let sharedPayload: Range | undefined;
  if (input.sharedPayloadLength !== undefined) {
    if (mem.top > SHARED_PAYLOAD_ADDR) {
      throw new Error(
        `the image reaches 0x${mem.top.toString(16)}, past the shared payload at 0x10000000`,
      );
    }
    mem.seek(SHARED_PAYLOAD_ADDR);
    mem.allocate(input.sharedPayloadLength);
    sharedPayload = {
      start: SHARED_PAYLOAD_ADDR,
      end: SHARED_PAYLOAD_ADDR + input.sharedPayloadLength,
    };
  }
  const top = mem.allocate(0, PAGE_SIZE);
  return {
    top,
    holes: mem.holes,
    acpiStart,
    cpuidPage,
    secretsPage,
    paramPage,
    memoryMapPage,
    vmsaPage,
    kernelBase: pref,
    entry,
    pageTables,
    tss,
    gdt,
    bootParams,
    cmdline,
    initrd,
    bootStackTop: bootStack + PAGE_SIZE,
    ccBlob,
    e820,
    sharedPayload,
  };
}

/**
 * The e820 table a NATIVE boot gets (`-native`): the low 640 KiB as RAM (Linux starts the
 * other vCPUs through a real-mode trampoline there), the legacy window reserved, the ACPI
 * area, and RAM from the kernel to `ramEnd`, the RAM the VM must have. The SEV-SNP table
 * lists only the image's own pages; a kernel given only those runs out of memory early.
 */
export function nativeE820(layout: BzImageLayout, ramEnd: number): E820Entry[] {
  const acpi = layout.e820.filter((e) => e.type === E820_TYPE_ACPI);
  return [
    ...firstE820Entries(0xa0000, 0).slice(0, 2),
    ...acpi,
    { addr: layout.kernelBase, size: ramEnd - layout.kernelBase, type: E820_TYPE_RAM },
  ];
}
