/**
 * Turns an IGVM image into an ELF that `qemu-system-x86_64 -kernel` starts by PVH, for the
 * boot smoke test: one PT_LOAD per run of pages at their GPAs, a Xen PHYS32_ENTRY note
 * pointing at a trampoline page placed in a hole, and the host-side adaptations a real host
 * makes through the IGVM memory map (e820 RAM, the RSDP moved out of the BIOS area, the
 * C-bit cleared from page tables since there is no SEV).
 */
import { PAGE_SIZE } from "../bytes/le.ts";
import { BOOT_E820_ENTRY, BOOT_PARAMS, E820_TYPE_RAM } from "../bzimage/boot_params.ts";
import { readIgvmFile } from "../igvm/reader.ts";
import { IGVM_VHT_VP_CONTEXT } from "../igvm/defs.ts";
import { EFER_SVME, VMCB_SAVE_AREA, VMCB_SEG } from "../x86/vmsa.ts";
import { buildTrampoline } from "./trampoline.ts";

/** Options of the conversion. */
export interface PvhOptions {
  /** Guest RAM size QEMU gets (-m), to add as e820 RAM above the image. */
  memoryBytes: number;
}

const BIOS_START = 0xa0000;
const BIOS_END = 0x100000;
const C_BIT = 1n << 51n;
const PAGE_PRESENT = 1n;
const PAGE_PS = 0x80n;
const ADDRESS_MASK = 0x000f_ffff_ffff_f000n;

/** What the converter did, for the test's report. */
export interface PvhResult {
  elf: Uint8Array;
  trampoline: number;
  entry: number;
  longMode: boolean;
  notes: string[];
}

/** Clears the C-bit in every entry reachable from CR3 (4 levels; large pages stop a walk). */
function clearCbits(pages: Map<number, Uint8Array>, cr3: bigint): number {
  let cleared = 0;
  const walk = (table: bigint, level: number) => {
    const page = pages.get(Number(table & ~C_BIT & ADDRESS_MASK));
    if (!page) return;
    const e = new BigUint64Array(page.buffer, page.byteOffset, 512);
    for (let i = 0; i < 512; i++) {
      if (!(e[i] & PAGE_PRESENT)) continue;
      if (e[i] & C_BIT) {
        e[i] &= ~C_BIT;
        cleared++;
      }
      if (level > 1 && !(e[i] & PAGE_PS)) walk(e[i], level - 1);
    }
  };
  walk(cr3, 4);
  return cleared;
}

/** Converts IGVM bytes into a PVH-bootable ELF. */
export function igvmToPvhElf(igvm: Uint8Array, options: PvhOptions): PvhResult {
  const file = readIgvmFile(igvm);
  const notes: string[] = [];
  const pages = new Map<number, Uint8Array>();
  for (const [gpa, page] of file.pages) pages.set(gpa, page.slice());
  const vp = file.directives.find((d) => d.type === IGVM_VHT_VP_CONTEXT);
  if (!vp) throw new Error("the image has no VP_CONTEXT");
  const vmsa = pages.get(Number(vp.fields.GPA))!;
  pages.delete(Number(vp.fields.GPA)); // the VMSA is not guest memory
  const v = new DataView(vmsa.buffer, vmsa.byteOffset);
  const o = VMCB_SAVE_AREA.off;
  const u64 = (at: number) => v.getBigUint64(at, true);
  const cr3 = u64(o.cr3);
  const efer = Number(u64(o.efer)) & ~EFER_SVME;
  const longMode = (efer & 0x400) !== 0;
  const rsi = Number(u64(o.rsi));
  if (cr3 & C_BIT) notes.push(`cleared the C-bit in ${clearCbits(pages, cr3)} page-table entries`);

  // boot_params: e820 RAM the host would add, and the RSDP moved out of the BIOS area.
  let top = 0; // a loop, not Math.max(...): a spread of 150k pages overflows the stack
  for (const gpa of pages.keys()) top = Math.max(top, gpa + PAGE_SIZE);
  const readGuest = (gpa: number, n: number) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const page = pages.get(Math.floor((gpa + i) / PAGE_SIZE) * PAGE_SIZE);
      out[i] = page ? page[(gpa + i) % PAGE_SIZE] : 0;
    }
    return out;
  };
  const writeGuest = (gpa: number, bytes: Uint8Array) => {
    for (let i = 0; i < bytes.length; i++) {
      const p = Math.floor((gpa + i) / PAGE_SIZE) * PAGE_SIZE;
      if (!pages.has(p)) pages.set(p, new Uint8Array(PAGE_SIZE));
      pages.get(p)![(gpa + i) % PAGE_SIZE] = bytes[i];
    }
  };
  const isBzImage = new TextDecoder().decode(readGuest(rsi + 0x202, 4)) === "HdrS";
  // A free page for the trampoline and one for the RSDP copy: in the image's hole between
  // the ACPI area and 8 MiB. Low memory is the BIOS's until the jump, and a hole that no
  // e820 entry calls RAM keeps the kernel from reusing the RSDP before it reads ACPI.
  const free: number[] = [];
  for (let p = 0x200000; p < 0x800000 && free.length < 2; p += PAGE_SIZE) {
    if (!pages.has(p)) free.push(p);
  }
  for (
    let p = Math.ceil(top / 0x200000) * 0x200000 - 2 * PAGE_SIZE;
    free.length < 2;
    p += PAGE_SIZE
  ) {
    if (!pages.has(p)) free.push(p);
  }
  const [trampoline, rsdpCopy] = free;
  if (isBzImage) {
    const count = readGuest(rsi + BOOT_PARAMS.e820_entries, 1)[0];
    const entries: { addr: number; size: number; type: number }[] = [];
    for (let i = 0; i < count; i++) {
      const e = readGuest(
        rsi + BOOT_PARAMS.e820_table + i * BOOT_E820_ENTRY.size,
        BOOT_E820_ENTRY.size,
      );
      const ev = new DataView(e.buffer);
      entries.push({
        addr: Number(ev.getBigUint64(0, true)),
        size: Number(ev.getBigUint64(8, true)),
        type: ev.getUint32(16, true),
      });
    }
    const lowRam = entries.some((e) =>
      e.type === E820_TYPE_RAM && e.addr < BIOS_START && e.size > 0
    );
    const kept = entries.filter((e) => e.size > 0);
    if (!lowRam) {
      kept.unshift({ addr: 0, size: 0x9f000, type: E820_TYPE_RAM });
      notes.push("added low RAM 0-0x9f000 to the e820 table");
    }
    const highStart = Math.ceil(top / 0x200000) * 0x200000;
    kept.push({ addr: highStart, size: options.memoryBytes - highStart, type: E820_TYPE_RAM });
    notes.push(
      `added RAM 0x${highStart.toString(16)}-0x${
        options.memoryBytes.toString(16)
      } to the e820 table`,
    );
    const table = new Uint8Array(kept.length * BOOT_E820_ENTRY.size);
    const tv = new DataView(table.buffer);
    kept.forEach((e, i) => {
      tv.setBigUint64(i * 20, BigInt(e.addr), true);
      tv.setBigUint64(i * 20 + 8, BigInt(e.size), true);
      tv.setUint32(i * 20 + 16, e.type, true);
    });
    writeGuest(rsi + BOOT_PARAMS.e820_table, table);
    writeGuest(rsi + BOOT_PARAMS.e820_entries, new Uint8Array([kept.length]));
    const rsdp = readGuest(0xe0000, 36);
    if (new TextDecoder().decode(rsdp.subarray(0, 8)) === "RSD PTR ") {
      writeGuest(rsdpCopy, rsdp);
      const addr = new Uint8Array(8);
      new DataView(addr.buffer).setBigUint64(0, BigInt(rsdpCopy), true);
      writeGuest(rsi + BOOT_PARAMS.acpi_rsdp_addr, addr);
      notes.push(`moved the RSDP to 0x${rsdpCopy.toString(16)}`);
    }
  }
  for (const p of [...pages.keys()]) if (p >= BIOS_START && p < BIOS_END) pages.delete(p);

  const seg = (name: string) => v.getUint16(o[name] + VMCB_SEG.off.selector, true);
  pages.set(
    trampoline,
    buildTrampoline(trampoline, {
      longMode,
      gdtBase: Number(v.getBigUint64(o.gdtr + VMCB_SEG.off.base, true)),
      gdtLimit: v.getUint32(o.gdtr + VMCB_SEG.off.limit, true),
      codeSelector: seg("cs"),
      dataSelector: seg("ds"),
      cr0: Number(u64(o.cr0)),
      cr3: Number(cr3 & 0xffff_ffffn) & ~0xfff | 0,
      cr4: Number(u64(o.cr4)),
      efer: efer & ~0x400, // LMA is set by the CPU, not written
      rip: Number(u64(o.rip)),
      rsi,
      rsp: Number(u64(o.rsp)),
    }),
  );
  return {
    elf: encodeElf(pages, trampoline),
    trampoline,
    entry: Number(u64(o.rip)),
    longMode,
    notes,
  };
}

/** Writes the pages as ELF64 PT_LOAD segments (one per run) with the PVH entry note. */
function encodeElf(pages: Map<number, Uint8Array>, entry: number): Uint8Array {
  const gpas = [...pages.keys()].sort((a, b) => a - b);
  const runs: { start: number; pages: Uint8Array[] }[] = [];
  for (const g of gpas) {
    const last = runs[runs.length - 1];
    if (last && last.start + last.pages.length * PAGE_SIZE === g) last.pages.push(pages.get(g)!);
    else runs.push({ start: g, pages: [pages.get(g)!] });
  }
  const note = new Uint8Array(24); // namesz 4, descsz 8, type 18, "Xen\0", entry u64
  const nv = new DataView(note.buffer);
  nv.setUint32(0, 4, true);
  nv.setUint32(4, 8, true);
  nv.setUint32(8, 18, true); // XEN_ELFNOTE_PHYS32_ENTRY
  note.set([0x58, 0x65, 0x6e, 0], 12);
  nv.setBigUint64(16, BigInt(entry), true);
  const phnum = runs.length + 1;
  const headerEnd = 64 + 56 * phnum;
  const noteOffset = Math.ceil(headerEnd / 8) * 8;
  let offset = Math.ceil((noteOffset + note.length) / PAGE_SIZE) * PAGE_SIZE;
  const placed = runs.map((r) => {
    // Trailing zero pages need no file bytes: p_memsz covers them.
    let filePages = r.pages.length;
    while (filePages > 0 && r.pages[filePages - 1].every((b) => b === 0)) filePages--;
    const at = offset;
    offset += filePages * PAGE_SIZE;
    return { ...r, filePages, at };
  });
  const out = new Uint8Array(offset);
  const dv = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  dv.setUint16(16, 2, true); // ET_EXEC
  dv.setUint16(18, 62, true); // EM_X86_64
  dv.setUint32(20, 1, true);
  dv.setBigUint64(24, BigInt(entry), true);
  dv.setBigUint64(32, 64n, true);
  dv.setUint16(52, 64, true);
  dv.setUint16(54, 56, true);
  dv.setUint16(56, phnum, true);
  const ph = (
    i: number,
    type: number,
    off: number,
    addr: number,
    filesz: number,
    memsz: number,
    align: number,
  ) => {
    const at = 64 + 56 * i;
    dv.setUint32(at, type, true);
    dv.setUint32(at + 4, 7, true); // RWX
    dv.setBigUint64(at + 8, BigInt(off), true);
    dv.setBigUint64(at + 16, BigInt(addr), true);
    dv.setBigUint64(at + 24, BigInt(addr), true);
    dv.setBigUint64(at + 32, BigInt(filesz), true);
    dv.setBigUint64(at + 40, BigInt(memsz), true);
    dv.setBigUint64(at + 48, BigInt(align), true);
  };
  ph(0, 4, noteOffset, 0, note.length, note.length, 4); // PT_NOTE
  out.set(note, noteOffset);
  placed.forEach((r, i) => {
    ph(i + 1, 1, r.at, r.start, r.filePages * PAGE_SIZE, r.pages.length * PAGE_SIZE, PAGE_SIZE);
    for (let p = 0; p < r.filePages; p++) out.set(r.pages[p], r.at + p * PAGE_SIZE);
  });
  return out;
}
