/**
 * A validating ELF64 little-endian x86-64 reader (System V gABI, ch. 4): header, section
 * and program headers, symbols, and the flat image `objcopy -O binary` would make.
 */
import { defineLayout } from "../bytes/layout.ts";
import { viewOf } from "../bytes/le.ts";

/** Elf64_Ehdr, 0x40 bytes. */
export const ELF64_EHDR = defineLayout("Elf64_Ehdr", 0x40, [
  ["e_ident", 0x00, { bytes: 16 }],
  ["e_type", 0x10, "u16"],
  ["e_machine", 0x12, "u16"],
  ["e_version", 0x14, "u32"],
  ["e_entry", 0x18, "u64"],
  ["e_phoff", 0x20, "u64"],
  ["e_shoff", 0x28, "u64"],
  ["e_flags", 0x30, "u32"],
  ["e_ehsize", 0x34, "u16"],
  ["e_phentsize", 0x36, "u16"],
  ["e_phnum", 0x38, "u16"],
  ["e_shentsize", 0x3a, "u16"],
  ["e_shnum", 0x3c, "u16"],
  ["e_shstrndx", 0x3e, "u16"],
]);

/** Elf64_Phdr, 0x38 bytes. */
export const ELF64_PHDR = defineLayout("Elf64_Phdr", 0x38, [
  ["p_type", 0x00, "u32"],
  ["p_flags", 0x04, "u32"],
  ["p_offset", 0x08, "u64"],
  ["p_vaddr", 0x10, "u64"],
  ["p_paddr", 0x18, "u64"],
  ["p_filesz", 0x20, "u64"],
  ["p_memsz", 0x28, "u64"],
  ["p_align", 0x30, "u64"],
]);

/** Elf64_Shdr, 0x40 bytes. */
export const ELF64_SHDR = defineLayout("Elf64_Shdr", 0x40, [
  ["sh_name", 0x00, "u32"],
  ["sh_type", 0x04, "u32"],
  ["sh_flags", 0x08, "u64"],
  ["sh_addr", 0x10, "u64"],
  ["sh_offset", 0x18, "u64"],
  ["sh_size", 0x20, "u64"],
  ["sh_link", 0x28, "u32"],
  ["sh_info", 0x2c, "u32"],
  ["sh_addralign", 0x30, "u64"],
  ["sh_entsize", 0x38, "u64"],
]);

/** Elf64_Sym, 0x18 bytes. */
export const ELF64_SYM = defineLayout("Elf64_Sym", 0x18, [
  ["st_name", 0x00, "u32"],
  ["st_info", 0x04, "u8"],
  ["st_other", 0x05, "u8"],
  ["st_shndx", 0x06, "u16"],
  ["st_value", 0x08, "u64"],
  ["st_size", 0x10, "u64"],
]);

export const ELFCLASS64 = 2;
export const ELFDATA2LSB = 1;
export const EM_X86_64 = 62;
export const PT_LOAD = 1;
export const SHT_SYMTAB = 2;
export const SHT_NOBITS = 8;
export const SHF_ALLOC = 0x2;
/** The largest flat image accepted (the monitor must fit below 0x3d00000). */
export const MAX_FLAT_IMAGE = 64 << 20;

/** An input that is not a usable ELF file. */
export class ElfError extends Error {
  override name = "ElfError";
}

export interface ElfSection {
  name: string;
  type: number;
  flags: number;
  addr: number;
  offset: number;
  size: number;
  link: number;
  entsize: number;
}

export interface ElfSegment {
  type: number;
  offset: number;
  vaddr: number;
  paddr: number;
  filesz: number;
  memsz: number;
}

export interface ElfSymbol {
  name: string;
  value: number;
  size: number;
}

/** A parsed ELF64 file. */
export interface Elf64 {
  bytes: Uint8Array;
  entry: number;
  sections: ElfSection[];
  segments: ElfSegment[];
}

function u64(view: DataView, at: number, what: string): number {
  const v = view.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ElfError(`${what} 0x${v.toString(16)} is out of range`);
  }
  return Number(v);
}

function cString(bytes: Uint8Array, at: number, what: string): string {
  if (at >= bytes.length) {
    throw new ElfError(`${what}: name offset ${at} is outside its string table`);
  }
  let end = at;
  while (end < bytes.length && bytes[end] !== 0) end++;
  if (end === bytes.length) {
    throw new ElfError(`${what}: name is not terminated in its string table`);
  }
  return new TextDecoder().decode(bytes.subarray(at, end));
}

/** Parses and validates an ELF64 x86-64 file held in memory. */
export function parseElf64(bytes: Uint8Array): Elf64 {
  const view = viewOf(bytes);
  if (
    bytes.length < 4 || bytes[0] !== 0x7f || bytes[1] !== 0x45 || bytes[2] !== 0x4c ||
    bytes[3] !== 0x46
  ) {
    throw new ElfError("no ELF magic: not an ELF file");
  }
  if (bytes.length < ELF64_EHDR.size) {
    throw new ElfError(`truncated: ${bytes.length} bytes, the ELF header needs 64`);
  }
  if (bytes[4] !== ELFCLASS64) {
    throw new ElfError(`ELF class ${bytes[4]}: only 64-bit ELF is supported`);
  }
  if (bytes[5] !== ELFDATA2LSB) throw new ElfError("big-endian ELF is not supported");
  const h = ELF64_EHDR.off;
  const machine = view.getUint16(h.e_machine, true);
  if (machine !== EM_X86_64) throw new ElfError(`machine ${machine} is not x86-64 (62)`);
  const phoff = u64(view, h.e_phoff, "e_phoff");
  const shoff = u64(view, h.e_shoff, "e_shoff");
  const phnum = view.getUint16(h.e_phnum, true);
  const shnum = view.getUint16(h.e_shnum, true);
  const shstrndx = view.getUint16(h.e_shstrndx, true);
  if (phnum > 0 && view.getUint16(h.e_phentsize, true) !== ELF64_PHDR.size) {
    throw new ElfError("e_phentsize is not 56");
  }
  if (shnum > 0 && view.getUint16(h.e_shentsize, true) !== ELF64_SHDR.size) {
    throw new ElfError("e_shentsize is not 64");
  }
  if (phoff + phnum * ELF64_PHDR.size > bytes.length) {
    throw new ElfError("truncated: program headers run past the end");
  }
  if (shnum === 0) throw new ElfError("no section headers");
  if (shoff + shnum * ELF64_SHDR.size > bytes.length) {
    throw new ElfError("truncated: section headers run past the end");
  }
  if (shstrndx >= shnum) throw new ElfError(`e_shstrndx ${shstrndx} is not a section`);

  const segments: ElfSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * ELF64_PHDR.size;
    const p = ELF64_PHDR.off;
    const seg = {
      type: view.getUint32(at + p.p_type, true),
      offset: u64(view, at + p.p_offset, "p_offset"),
      vaddr: u64(view, at + p.p_vaddr, "p_vaddr"),
      paddr: u64(view, at + p.p_paddr, "p_paddr"),
      filesz: u64(view, at + p.p_filesz, "p_filesz"),
      memsz: u64(view, at + p.p_memsz, "p_memsz"),
    };
    if (seg.type === PT_LOAD) {
      if (seg.offset + seg.filesz > bytes.length) {
        throw new ElfError(`segment ${i} runs past the end of the file`);
      }
      if (seg.filesz > seg.memsz) throw new ElfError(`segment ${i} has p_filesz > p_memsz`);
    }
    segments.push(seg);
  }
  const loads = segments.filter((s) => s.type === PT_LOAD && s.memsz > 0).sort((a, b) =>
    a.paddr - b.paddr
  );
  for (let i = 1; i < loads.length; i++) {
    if (loads[i].paddr < loads[i - 1].paddr + loads[i - 1].memsz) {
      throw new ElfError(`loadable segments overlap at 0x${loads[i].paddr.toString(16)}`);
    }
  }

  const raw: (ElfSection & { nameOff: number })[] = [];
  for (let i = 0; i < shnum; i++) {
    const at = shoff + i * ELF64_SHDR.size;
    const s = ELF64_SHDR.off;
    const sec = {
      nameOff: view.getUint32(at + s.sh_name, true),
      name: "",
      type: view.getUint32(at + s.sh_type, true),
      flags: u64(view, at + s.sh_flags, "sh_flags"),
      addr: u64(view, at + s.sh_addr, "sh_addr"),
      offset: u64(view, at + s.sh_offset, "sh_offset"),
      size: u64(view, at + s.sh_size, "sh_size"),
      link: view.getUint32(at + s.sh_link, true),
      entsize: u64(view, at + s.sh_entsize, "sh_entsize"),
    };
    if (sec.type !== SHT_NOBITS && sec.type !== 0 && sec.offset + sec.size > bytes.length) {
      throw new ElfError(`section ${i} runs past the end of the file`);
    }
    raw.push(sec);
  }
  const strtab = raw[shstrndx];
  const names = bytes.subarray(strtab.offset, strtab.offset + strtab.size);
  const sections = raw.map(({ nameOff, ...s }, i) => ({
    ...s,
    name: i === 0 ? "" : cString(names, nameOff, `section ${i}`),
  }));
  return { bytes, entry: u64(view, ELF64_EHDR.off.e_entry, "e_entry"), sections, segments };
}

/** The section named `name`; throws when it is missing. */
export function sectionByName(elf: Elf64, name: string): ElfSection {
  const s = elf.sections.find((x) => x.name === name);
  if (!s) throw new ElfError(`no ${name} section`);
  return s;
}

/** The symbol named `name` in .symtab; it must be unique. */
export function symbolByName(elf: Elf64, name: string): ElfSymbol {
  const symtab = elf.sections.find((s) => s.type === SHT_SYMTAB);
  if (!symtab) throw new ElfError("no symbol table (.symtab)");
  if (symtab.link >= elf.sections.length) {
    throw new ElfError("the symbol table's string table is not a section");
  }
  const strs = elf.sections[symtab.link];
  const names = elf.bytes.subarray(strs.offset, strs.offset + strs.size);
  const view = viewOf(elf.bytes);
  const found: ElfSymbol[] = [];
  for (
    let at = symtab.offset;
    at + ELF64_SYM.size <= symtab.offset + symtab.size;
    at += ELF64_SYM.size
  ) {
    const nameOff = view.getUint32(at + ELF64_SYM.off.st_name, true);
    if (nameOff === 0) continue;
    if (cString(names, nameOff, "symbol") !== name) continue;
    found.push({
      name,
      value: u64(view, at + ELF64_SYM.off.st_value, "st_value"),
      size: u64(view, at + ELF64_SYM.off.st_size, "st_size"),
    });
  }
  if (found.length !== 1) {
    throw new ElfError(
      found.length ? `symbol ${name} is defined ${found.length} times` : `no symbol ${name}`,
    );
  }
  return found[0];
}

/** The load address of a section: through the PT_LOAD segment holding it, else its address. */
function loadAddress(elf: Elf64, s: ElfSection): number {
  const seg = elf.segments.find((p) =>
    p.type === PT_LOAD && s.addr >= p.vaddr && s.addr + s.size <= p.vaddr + p.memsz
  );
  return seg ? seg.paddr + (s.addr - seg.vaddr) : s.addr;
}

/**
 * The flat image `objcopy -O binary` makes: the contents of every allocated section with
 * file data, placed at its load address relative to the lowest one, gaps zero-filled.
 */
export function flatBinary(elf: Elf64): Uint8Array {
  const parts = elf.sections
    .filter((s) => (s.flags & SHF_ALLOC) !== 0 && s.type !== SHT_NOBITS && s.size > 0)
    .map((s) => ({ s, lma: loadAddress(elf, s) }));
  if (parts.length === 0) return new Uint8Array(0);
  let base = Infinity; // loops, not Math.min(...): no spread of an unbounded list
  let end = -Infinity;
  for (const p of parts) {
    base = Math.min(base, p.lma);
    end = Math.max(end, p.lma + p.s.size);
  }
  // The monitor must fit below the VMPL2 kernel at 61 MiB; refuse anything larger early.
  if (end - base > MAX_FLAT_IMAGE) {
    throw new ElfError(`the loadable image spans more than ${MAX_FLAT_IMAGE >> 20} MiB`);
  }
  const out = new Uint8Array(end - base);
  for (const { s, lma } of parts) {
    out.set(elf.bytes.subarray(s.offset, s.offset + s.size), lma - base);
  }
  return out;
}
