/**
 * Guest memory layout of the ELF ("security monitor") flow, as the original lays it out:
 *   ACPI from 0xa0000 | CPUID, secrets, parameters, VMSA at 8 MiB | boot stack, command
 *   line, page tables | the monitor's flat image (next page) | hole to the end of its
 *   sections | TSS, GDT, monitor_params, boot_params | VMPL2 kernel at 0x3d00000.
 */
import { alignUp, PAGE_SIZE } from "../bytes/le.ts";
import { E820_TYPE_RESERVED, type E820Entry } from "../bzimage/boot_params.ts";
import { gdtSize, TSS_SIZE } from "../x86/gdt.ts";
import { pageTablePages } from "../x86/page_tables.ts";
import type { BootMode } from "../x86/boot_cpu.ts";
import { GuestAllocator, type Range } from "./guest_allocator.ts";
import { firstE820Entries, SNP_CPUID_PAGE_ADDR } from "./bzimage_layout.ts";
import { MONITOR_PARAMS } from "../elf/monitor_params.ts";

/** Where the VMPL2 kernel goes. */
export const VMPL2_KERNEL_ADDR = 0x3d00000;
export const MONITOR_BOOT_STACK_SIZE = 0x1000;

/** What the planner needs to know of the monitor. */
export interface ElfLayoutInput {
  acpiEnd: number;
  bootMode: BootMode;
  pgtableLevel: 2 | 4;
  /** Length of the command line including its NUL. */
  cmdlineLength: number;
  /** Length of the flat image. */
  imageLength: number;
  /** e_entry - .text address: the entry's offset in the image, as the original computes it. */
  entryOffset: number;
  /** .text address, and the highest section end (address + size) of the ELF. */
  textAddr: number;
  maxSectionEnd: number;
  vmpl2KernelLength: number;
}

/** Every address of the ELF layout. */
export interface ElfLayout {
  top: number;
  holes: Range[];
  cpuidPage: number;
  secretsPage: number;
  paramPage: number;
  vmsaPage: number;
  bootStackTop: number;
  cmdline: number;
  pageTables?: { base: number; level: 2 | 4 };
  image: number;
  entry: number;
  tss: number;
  gdt: number;
  monitorParams: number;
  bootParams: number;
  vmpl2Kernel: number;
  e820: E820Entry[];
}

/** Plans the monitor's guest memory. */
export function planElfLayout(input: ElfLayoutInput): ElfLayout {
  const mem = new GuestAllocator();
  mem.seek(0xa0000);
  mem.allocate(input.acpiEnd - 0xa0000);
  mem.seek(SNP_CPUID_PAGE_ADDR);
  const cpuidPage = mem.allocate(PAGE_SIZE);
  const secretsPage = mem.allocate(PAGE_SIZE);
  const paramPage = mem.allocate(PAGE_SIZE);
  const vmsaPage = mem.allocate(PAGE_SIZE);
  const validated: Range[] = [];

  const bootStack = mem.allocate(MONITOR_BOOT_STACK_SIZE, 16);
  const cmdline = mem.allocate(input.cmdlineLength);
  let pageTables: ElfLayout["pageTables"];
  if (input.bootMode === "x64") {
    pageTables = {
      base: mem.allocate(pageTablePages(input.pgtableLevel) * PAGE_SIZE, PAGE_SIZE),
      level: input.pgtableLevel,
    };
  }
  validated.push({ start: bootStack, end: mem.top });
  const image = alignUp(mem.top, PAGE_SIZE);
  mem.seek(image);
  mem.allocate(input.imageLength, PAGE_SIZE);
  validated.push({ start: image, end: image + input.imageLength });
  const entry = image + input.entryOffset;

  const monitorEnd = Math.max(
    alignUp(mem.top, PAGE_SIZE),
    alignUp(input.maxSectionEnd - input.textAddr + entry, PAGE_SIZE),
  );
  mem.seek(monitorEnd);
  const afterMonitor = mem.top;
  const tss = mem.allocate(TSS_SIZE);
  const gdt = mem.allocate(gdtSize(input.bootMode === "x64"));
  const monitorParams = mem.allocate(MONITOR_PARAMS.size);
  const bootParams = mem.allocate(PAGE_SIZE);
  validated.push({ start: afterMonitor, end: mem.top });
  if (mem.top > VMPL2_KERNEL_ADDR) {
    throw new Error(
      `the monitor reaches 0x${mem.top.toString(16)}, past the VMPL2 kernel at 0x3d00000`,
    );
  }
  mem.seek(VMPL2_KERNEL_ADDR);
  mem.allocate(input.vmpl2KernelLength, PAGE_SIZE);
  validated.push({ start: VMPL2_KERNEL_ADDR, end: VMPL2_KERNEL_ADDR + input.vmpl2KernelLength });

  const e820: E820Entry[] = [
    ...firstE820Entries(0, input.acpiEnd),
    { addr: SNP_CPUID_PAGE_ADDR, size: 4 * PAGE_SIZE, type: E820_TYPE_RESERVED },
    ...validated.map((r) => ({ addr: r.start, size: r.end - r.start, type: E820_TYPE_RESERVED })),
  ];
  const top = mem.allocate(0, PAGE_SIZE);
  return {
    top,
    holes: mem.holes,
    cpuidPage,
    secretsPage,
    paramPage,
    vmsaPage,
    bootStackTop: bootStack + MONITOR_BOOT_STACK_SIZE,
    cmdline,
    pageTables,
    image,
    entry,
    tss,
    gdt,
    monitorParams,
    bootParams,
    vmpl2Kernel: VMPL2_KERNEL_ADDR,
    e820,
  };
}
