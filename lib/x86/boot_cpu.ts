/** The initial vCPU state of an image, composed as the original does it. */
import {
  CR0_PE,
  CR0_PG,
  CR4_PAE,
  CR4_PSE,
  EFER_LMA,
  EFER_LME,
  EFER_NXE,
  EFER_SCE,
  EFER_SVME,
  PAGE_ENCRYPTED_BIT,
  PAT_RESET_VALUE,
  RFLAGS_RESERVED_ONE,
  SEV_FEATURE_RESTRICTED_INJECTION,
  SEV_FEATURE_SNP,
  type VmsaState,
} from "./vmsa.ts";
import type { Gdt } from "./gdt.ts";

export type BootMode = "x86" | "x64";
export type CpuVendor = "Intel" | "AMD";

/** Inputs of the initial vCPU state. */
export interface BootCpuInput {
  bootMode: BootMode;
  arch: CpuVendor;
  svme: boolean;
  encryptedPage: boolean;
  gdt: Gdt;
  gdtBase: number;
  /** Page tables (x64 only): base and level. */
  pageTables?: { base: number; level: 2 | 4 };
  rip: number;
  rsi: number;
  rsp: number;
}

/**
 * CR0.PE (+PG, CR4.PAE, CR4.PSE for 1 GiB pages, CR3 with the C-bit when encrypted, and
 * EFER.LME/LMA/NXE/SCE for x64), EFER.SVME per `svme`, flat segments, RFLAGS 2 on Intel
 * (0 with `-arch AMD`, as the original), PAT at reset value, SEV features SNP and
 * restricted injection, XCR0 = x87.
 */
export function initialVmsaState(i: BootCpuInput): VmsaState {
  let efer = i.svme ? EFER_SVME : 0;
  let cr0 = CR0_PE;
  let cr4 = 0;
  let cr3 = 0n;
  if (i.bootMode === "x64") {
    efer |= EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;
    if (!i.pageTables) throw new Error("x64 boot needs page tables");
    if (i.pageTables.level === 2) cr4 |= CR4_PSE;
    cr4 |= CR4_PAE;
    cr3 = BigInt(i.pageTables.base) | (i.encryptedPage ? PAGE_ENCRYPTED_BIT : 0n);
    cr0 = (cr0 | CR0_PG) >>> 0;
  }
  return {
    cs: i.gdt.cs,
    ds: i.gdt.ds,
    es: i.gdt.ds,
    ss: i.gdt.ds,
    tr: i.gdt.tr,
    gdtr: { base: i.gdtBase, limit: i.gdt.limit },
    efer,
    cr0,
    cr3,
    cr4,
    rflags: i.arch === "Intel" ? RFLAGS_RESERVED_ONE : 0,
    rip: i.rip,
    rsp: i.rsp,
    rsi: i.rsi,
    sevFeatures: SEV_FEATURE_SNP | SEV_FEATURE_RESTRICTED_INJECTION,
    xcr0: 1,
    gPat: PAT_RESET_VALUE,
  };
}
