/**
 * Names the part of the guest each page belongs to, for `measure --log` and `diff`. The
 * SNP pages are named from their directives in any file. For images laid out by igvmgen
 * (and the original), recognised by the CPUID, secrets, parameter and VMSA pages at
 * 0x800000..0x803000, the rest is recovered from the image itself: the VMSA's RSI gives
 * boot_params (or the monitor's parameters), whose setup header gives the kernel, command
 * line and initrd; CR3 gives the page tables, GDTR the GDT, TR the TSS, RSP the boot stack;
 * the ACPI tables are walked from the RSDP. Other pages are "page data".
 */
import { PAGE_SIZE } from "../bytes/le.ts";
import {
  IGVM_VHF_PAGE_DATA_GUEST_INVALID,
  IGVM_VHS_PAGE_DATA_TYPE_CPUID_DATA,
  IGVM_VHS_PAGE_DATA_TYPE_CPUID_XF,
  IGVM_VHS_PAGE_DATA_TYPE_SECRETS,
  IGVM_VHT_PAGE_DATA,
  IGVM_VHT_PARAMETER_INSERT,
  IGVM_VHT_VP_CONTEXT,
} from "../igvm/defs.ts";
import {
  type Directive,
  directiveAccess,
  directiveFileOffset,
  type IgvmFile,
} from "../igvm/reader.ts";
import { guestReaderOf } from "../igvm/structure.ts";
import { directiveDataType, directiveFlags, directiveGpa } from "../igvm/directives.ts";
import type { FileAccess } from "../io/file_reader.ts";
import { walkAcpiTables } from "../../acpi/walk.ts";
import { VMCB_SAVE_AREA, VMCB_SEG } from "../x86/vmsa.ts";

/** How the pages of a file are named. */
export interface PartMap {
  /** "bzImage" or "elf" for an igvmgen layout, undefined for other files. */
  layout?: "bzImage" | "elf";
  /** The part(s) of the page at `gpa`, from directive `directive` (-1: added by the host). */
  partOf(gpa: number, directive: number): string;
}

interface NamedRange {
  name: string;
  start: number;
  end: number;
}

const SNP_PAGES = { cpuid: 0x800000, secrets: 0x801000, param: 0x802000, vmsa: 0x803000 };
const HDRS_MAGIC = 0x5372_6448; // "HdrS" at 0x202 of boot_params
const MAX_TABLE_PAGES = 1 << 16;

/** The name of a page from its directive alone, when the directive says what it is. */
function directivePart(d: Directive | undefined): string | undefined {
  if (!d) return undefined;
  if (d.type === IGVM_VHT_VP_CONTEXT) return "VMSA";
  if (d.type === IGVM_VHT_PARAMETER_INSERT) return "parameter area";
  if (d.type !== IGVM_VHT_PAGE_DATA) return undefined;
  const dataType = directiveDataType(d);
  if (dataType === IGVM_VHS_PAGE_DATA_TYPE_SECRETS) return "secrets";
  if (
    dataType === IGVM_VHS_PAGE_DATA_TYPE_CPUID_DATA || dataType === IGVM_VHS_PAGE_DATA_TYPE_CPUID_XF
  ) return "CPUID";
  return undefined;
}

/** True when the file has igvmgen's SNP pages at their fixed addresses. */
function hasIgvmgenSnpPages(h: IgvmFile): boolean {
  const at = (type: number, gpa: number) =>
    h.directives.some((d) => d.type === type && directiveGpa(d) === gpa);
  return at(IGVM_VHT_PAGE_DATA, SNP_PAGES.cpuid) && at(IGVM_VHT_PAGE_DATA, SNP_PAGES.secrets) &&
    at(IGVM_VHT_PARAMETER_INSERT, SNP_PAGES.param) && at(IGVM_VHT_VP_CONTEXT, SNP_PAGES.vmsa);
}

const PHYS_MASK = 0x000f_ffff_ffff_f000n & ~(1n << 51n); // the C-bit is not an address bit

/** The page-table pages reachable from CR3 (4-level long mode), present in the file. */
async function pageTablePages(
  cr3: bigint,
  present: (gpa: number) => boolean,
  readPage: (gpa: number) => Promise<Uint8Array>,
): Promise<Set<number>> {
  const pages = new Set<number>();
  const visit = async (gpa: number, level: number) => {
    if (pages.has(gpa) || !present(gpa) || pages.size >= MAX_TABLE_PAGES) return;
    pages.add(gpa);
    if (level === 1) return;
    const page = await readPage(gpa);
    const v = new DataView(page.buffer, page.byteOffset, page.byteLength);
    for (let i = 0; i < 512; i++) {
      const e = v.getBigUint64(i * 8, true);
      if (!(e & 1n)) continue;
      if (level < 4 && (e & 0x80n)) continue; // a large page, not a table
      await visit(Number(e & PHYS_MASK), level - 1);
    }
  };
  await visit(Number(cr3 & PHYS_MASK), 4);
  return pages;
}

/** Builds the part map of a file. */
export async function mapParts(file: FileAccess, h: IgvmFile): Promise<PartMap> {
  const ds = h.directives;
  const access = directiveAccess(ds);
  const generic = (gpa: number, directive: number): string | undefined => {
    const d = directive >= 0 && directive < access.length ? access.at(directive) : undefined;
    const named = directivePart(d);
    if (named) return named;
    if (d?.type === IGVM_VHT_PAGE_DATA && directiveFlags(d) & IGVM_VHF_PAGE_DATA_GUEST_INVALID) {
      return "shared payload";
    }
    return gpa === 0xFFFF_FFFF_F000 && directive < 0 ? "VMSA" : undefined;
  };
  if (!hasIgvmgenSnpPages(h)) {
    return { partOf: (gpa, i) => generic(gpa, i) ?? "page data" };
  }
  const guest = guestReaderOf(file, h);
  const read = async (gpa: number, length: number) => {
    await guest.load(gpa, length);
    return guest.read(gpa, length);
  };
  const vmsaDirective = ds.find((d) =>
    d.type === IGVM_VHT_VP_CONTEXT && Number(d.fields.GPA) === SNP_PAGES.vmsa
  )!;
  const vmsaOffset = directiveFileOffset(vmsaDirective);
  const vmsa = new Uint8Array(PAGE_SIZE); // zero-padded: the file data may be cut short
  if (vmsaOffset !== undefined) vmsa.set(await file.readAt(vmsaOffset, PAGE_SIZE));
  const vv = new DataView(vmsa.buffer, vmsa.byteOffset, vmsa.byteLength);
  const reg = (name: string) => vv.getBigUint64(VMCB_SAVE_AREA.off[name], true);
  const segBase = (name: string) =>
    Number(vv.getBigUint64(VMCB_SAVE_AREA.off[name] + VMCB_SEG.off.base, true));
  const segLimit = (name: string) =>
    vv.getUint32(VMCB_SAVE_AREA.off[name] + VMCB_SEG.off.limit, true);
  const ranges: NamedRange[] = [];
  const add = (name: string, start: number, length: number) => {
    if (length > 0) ranges.push({ name, start, end: start + length });
  };

  const rsi = Number(reg("rsi"));
  const params = await read(rsi, PAGE_SIZE);
  const pv = new DataView(params.buffer, params.byteOffset, params.byteLength);
  let layout: "bzImage" | "elf" = "elf";
  let bootParams = rsi;
  if (pv.getUint32(0x202, true) === HDRS_MAGIC) layout = "bzImage";
  else {
    add("monitor parameters", rsi, 0x30);
    bootParams = Number(pv.getBigUint64(0x18, true)); // vmpl2_boot_param
  }
  const bp = await read(bootParams, PAGE_SIZE);
  const bv = new DataView(bp.buffer, bp.byteOffset, bp.byteLength);
  add("boot_params", bootParams, PAGE_SIZE);
  const cmdPtr = bv.getUint32(0x228, true) + bv.getUint32(0x0c8, true) * 0x1_0000_0000;
  if (cmdPtr) {
    const text = await read(cmdPtr, PAGE_SIZE);
    const nul = text.indexOf(0);
    add("command line", cmdPtr, nul < 0 ? PAGE_SIZE : nul + 1);
  }
  const gdtBase = segBase("gdtr");
  add("GDT", gdtBase, segLimit("gdtr") + 1);
  const trBase = segBase("tr");
  if (trBase) add("TSS", trBase, segLimit("tr") + 1);
  const rsp = Number(reg("rsp"));
  if (rsp) add("boot stack", rsp - PAGE_SIZE, PAGE_SIZE); // one page below the top
  if (layout === "bzImage") {
    const initrd = bv.getUint32(0x218, true) + bv.getUint32(0x0c0, true) * 0x1_0000_0000;
    const initrdSize = bv.getUint32(0x21c, true) + bv.getUint32(0x0c4, true) * 0x1_0000_0000;
    if (initrd) add("initrd", initrd, initrdSize);
    const ccBlob = bv.getUint32(0x13c, true);
    if (ccBlob) add("cc_blob", ccBlob, PAGE_SIZE); // igvmgen allocates it a page
    const prefAddress = Number(bv.getBigUint64(0x258, true));
    const initSize = bv.getUint32(0x260, true);
    add("kernel", prefAddress, initSize);
  }
  // Page tables from CR3, in long mode with paging.
  const cr0 = reg("cr0");
  const efer = reg("efer");
  const tables = (cr0 & 0x8000_0000n) && (efer & 0x400n)
    ? await pageTablePages(reg("cr3"), guest.has, (g) => read(g, PAGE_SIZE))
    : new Set<number>();
  // ACPI tables from the RSDP at 0xE0000.
  await guest.load(0xe0000, SNP_PAGES.cpuid - 0xe0000);
  const acpi = walkAcpiTables((gpa, n) => guest.read(gpa, n));
  for (const t of acpi.tables) {
    const length = t.signature === "RSDP"
      ? 36
      : new DataView(t.bytes.buffer, t.bytes.byteOffset).getUint32(4, true);
    add(`ACPI ${t.signature}`, t.gpa, length);
  }
  if (layout === "elf") {
    // The monitor image: from the page after the boot stack, command line and page tables,
    // up to the TSS.
    let start = Math.max(rsp, cmdPtr ? cmdPtr + 1 : 0, ...[...tables].map((p) => p + PAGE_SIZE));
    start = Math.ceil(start / PAGE_SIZE) * PAGE_SIZE;
    if (trBase > start) {
      add("monitor image", start, Math.floor(trBase / PAGE_SIZE) * PAGE_SIZE - start);
    }
    add("VMPL2 kernel", 0x3d00000, 0x4000_0000);
  }
  ranges.sort((a, b) => a.start - b.start);
  return {
    layout,
    partOf(gpa, directive) {
      const named = generic(gpa, directive);
      if (named) return named;
      const names: string[] = [];
      if (tables.has(gpa)) names.push("page tables");
      for (const r of ranges) {
        if (r.start >= gpa + PAGE_SIZE) break;
        if (r.end > gpa && !names.includes(r.name)) names.push(r.name);
      }
      if (names.length) return names.join(" + ");
      // igvmgen fills the low memory below the SNP pages with the ACPI area.
      return gpa < SNP_PAGES.cpuid ? "ACPI area" : "other";
    },
  };
}
