/**
 * Generators of small synthetic inputs: a bzImage with a valid setup header and a payload,
 * and an x86-64 ELF with .text, a symbol table and the decompressor's symbols. Used by the
 * tests and the demo; run as a script to write them to files:
 *   deno run --allow-write scripts/fixtures.ts OUT_DIR
 */
import { crc32 } from "../lib/bytes/crc32.ts";

/** Options of a synthetic bzImage. */
export interface BzImageSpec {
  payloadLength?: number;
  setupSects?: number;
  prefAddress?: number;
  initSize?: number;
  version?: number;
  xloadflags?: number;
}

/** Deterministic pseudo-random bytes (xorshift32), for payloads that are not all zero. */
export function pseudoRandomBytes(length: number, seed = 0x1234_5678): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/**
 * A bzImage: setup code of `setupSects + 1` sectors holding a boot-protocol 2.15 setup
 * header ("HdrS", 64-bit entry, pref_address, init_size), then the payload.
 */
export function makeBzImage(spec: BzImageSpec = {}): Uint8Array {
  const setupSects = spec.setupSects ?? 4;
  const payloadLength = spec.payloadLength ?? 64 * 1024;
  const setupLength = (setupSects + 1) * 512;
  const out = new Uint8Array(setupLength + payloadLength);
  const v = new DataView(out.buffer);
  out[0x1f1] = setupSects;
  v.setUint32(0x1f4, Math.ceil(payloadLength / 16), true); // syssize
  v.setUint16(0x1fe, 0xaa55, true); // boot_flag
  v.setUint32(0x202, 0x5372_6448, true); // "HdrS"
  v.setUint16(0x206, spec.version ?? 0x20f, true);
  out[0x211] = 0x1; // loadflags: LOADED_HIGH
  v.setUint32(0x214, 0x100000, true); // code32_start
  v.setUint32(0x22c, 0x7fff_ffff, true); // initrd_addr_max
  v.setUint32(0x230, 0x200000, true); // kernel_alignment
  out[0x234] = 1; // relocatable_kernel
  v.setUint16(0x236, spec.xloadflags ?? 0x7f, true);
  v.setUint32(0x238, 2047, true); // cmdline_size
  v.setBigUint64(0x258, BigInt(spec.prefAddress ?? 0x1000000), true);
  const initSize = spec.initSize ?? Math.ceil((payloadLength * 2 + 0x200000) / 0x1000) * 0x1000;
  v.setUint32(0x260, initSize, true);
  const payload = pseudoRandomBytes(payloadLength);
  // A 64-bit entry stub at +0x200 that halts forever: cli; hlt; jmp .-1
  payload.set([0xfa, 0xf4, 0xeb, 0xfd], Math.min(0x200, Math.max(0, payloadLength - 4)));
  out.set(payload, setupLength);
  return out;
}

interface ElfSectionSpec {
  name: string;
  type: number;
  flags: number;
  addr: number;
  data: Uint8Array;
  link?: number;
  entsize?: number;
  info?: number;
}

/** Options of a synthetic ELF. */
export interface ElfSpec {
  textLength?: number;
  dataLength?: number;
  symbols?: Record<string, { value: number; size: number }>;
  machine?: number;
  entry?: number;
}

/**
 * An ELF64 x86-64 executable: .text at 0x1000 and .data at 0x3000 in one PT_LOAD, plus
 * .symtab/.strtab/.shstrtab, with the given symbols.
 */
export function makeElf(spec: ElfSpec = {}): Uint8Array {
  const text = pseudoRandomBytes(spec.textLength ?? 0x180, 7);
  const data = pseudoRandomBytes(spec.dataLength ?? 0x40, 9);
  const symbols = spec.symbols ?? {
    _end: { value: 0x20000, size: 0 },
    boot_stack: { value: 0x14000, size: 0x4000 },
    pgtable: { value: 0x19000, size: 0x7000 },
  };
  const strtab: number[] = [0];
  const symtab: number[] = new Array(24).fill(0);
  for (const [name, s] of Object.entries(symbols)) {
    const nameOff = strtab.length;
    strtab.push(...new TextEncoder().encode(name), 0);
    const sym = new Uint8Array(24);
    const sv = new DataView(sym.buffer);
    sv.setUint32(0, nameOff, true);
    sym[4] = 0x11; // GLOBAL OBJECT
    sv.setUint16(6, 1, true);
    sv.setBigUint64(8, BigInt(s.value), true);
    sv.setBigUint64(16, BigInt(s.size), true);
    symtab.push(...sym);
  }
  const sections: ElfSectionSpec[] = [
    { name: ".text", type: 1, flags: 0x6, addr: 0x1000, data: text },
    { name: ".data", type: 1, flags: 0x3, addr: 0x3000, data: data },
    {
      name: ".symtab",
      type: 2,
      flags: 0,
      addr: 0,
      data: new Uint8Array(symtab),
      link: 4,
      entsize: 24,
      info: 1,
    },
    { name: ".strtab", type: 3, flags: 0, addr: 0, data: new Uint8Array(strtab) },
  ];
  const shstr: number[] = [0];
  const nameOffs = sections.map((s) => {
    const at = shstr.length;
    shstr.push(...new TextEncoder().encode(s.name), 0);
    return at;
  });
  const shstrName = shstr.length;
  shstr.push(...new TextEncoder().encode(".shstrtab"), 0);
  sections.push({ name: ".shstrtab", type: 3, flags: 0, addr: 0, data: new Uint8Array(shstr) });
  nameOffs.push(shstrName);

  // File: header + 1 phdr, .text at 0x1000, .data at 0x3000 (file offsets = addresses), rest after.
  const offsets: number[] = [];
  let at = 0x1000;
  for (const s of sections) {
    if (s.addr) at = s.addr;
    offsets.push(at);
    at += s.data.length;
    at = Math.ceil(at / 8) * 8;
  }
  const shoff = at;
  const size = shoff + 64 * (sections.length + 1);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  v.setUint16(0x10, 2, true); // ET_EXEC
  v.setUint16(0x12, spec.machine ?? 62, true);
  v.setUint32(0x14, 1, true);
  v.setBigUint64(0x18, BigInt(spec.entry ?? 0x1000), true);
  v.setBigUint64(0x20, 64n, true);
  v.setBigUint64(0x28, BigInt(shoff), true);
  v.setUint16(0x34, 64, true);
  v.setUint16(0x36, 56, true);
  v.setUint16(0x38, 1, true);
  v.setUint16(0x3a, 64, true);
  v.setUint16(0x3c, sections.length + 1, true);
  v.setUint16(0x3e, sections.length, true); // .shstrtab is last
  // PT_LOAD covering .text and .data.
  const loadEnd = 0x3000 + data.length;
  v.setUint32(64, 1, true);
  v.setUint32(68, 5, true);
  v.setBigUint64(72, 0x1000n, true);
  v.setBigUint64(80, 0x1000n, true);
  v.setBigUint64(88, 0x1000n, true);
  v.setBigUint64(96, BigInt(loadEnd - 0x1000), true);
  v.setBigUint64(104, BigInt(loadEnd - 0x1000), true);
  v.setBigUint64(112, 0x1000n, true);
  sections.forEach((s, i) => {
    out.set(s.data, offsets[i]);
    const h = shoff + 64 * (i + 1);
    v.setUint32(h, nameOffs[i], true);
    v.setUint32(h + 4, s.type, true);
    v.setBigUint64(h + 8, BigInt(s.flags), true);
    v.setBigUint64(h + 16, BigInt(s.addr), true);
    v.setBigUint64(h + 24, BigInt(offsets[i]), true);
    v.setBigUint64(h + 32, BigInt(s.data.length), true);
    v.setUint32(h + 40, s.link ?? 0, true);
    v.setUint32(h + 44, s.info ?? 0, true);
    v.setBigUint64(h + 48, 8n, true);
    v.setBigUint64(h + 56, BigInt(s.entsize ?? 0), true);
  });
  return out;
}

if (import.meta.main) {
  const dir = Deno.args[0] ?? ".";
  Deno.mkdirSync(dir, { recursive: true });
  Deno.writeFileSync(`${dir}/synthetic-bzImage`, makeBzImage());
  Deno.writeFileSync(`${dir}/synthetic.elf`, makeElf());
  console.log(`wrote ${dir}/synthetic-bzImage and ${dir}/synthetic.elf`);
}

/**
 * An IGVM file with `pages` zero pages (PAGE_DATA headers with no file data, from GPA
 * 0x100000 up) for SEV-SNP (mask 1), its platform and policy headers, and a VP context with
 * a page of data: a reader's load without hashing, as in a file with a large initrd (1 GiB
 * is 263k page headers). No ID block. Laid out with DataView, not with lib/igvm.
 */
export function makePageHeavyIgvm(pages: number): Uint8Array {
  const sectionSize = 24 + 24 + pages * 32 + 32;
  const dataAt = 24 + sectionSize;
  const bytes = new Uint8Array(dataAt + 4096);
  const v = new DataView(bytes.buffer);
  v.setUint32(0, 0x4d564749, true); // "IGVM"
  v.setUint32(4, 1, true); // FormatVersion
  v.setUint32(8, 24, true); // VariableHeaderOffset
  v.setUint32(12, sectionSize, true);
  v.setUint32(16, bytes.length, true); // TotalFileSize
  let at = 24;
  const header = (type: number, length: number) => {
    v.setUint32(at, type, true);
    v.setUint32(at + 4, length, true);
    const body = at + 8;
    at += Math.ceil((8 + length) / 8) * 8;
    return body;
  };
  let b = header(0x001, 16); // SUPPORTED_PLATFORM: mask 1, SEV-SNP, version 1
  v.setUint32(b, 1, true);
  v.setUint8(b + 5, 2);
  v.setUint16(b + 6, 1, true);
  b = header(0x101, 16); // SNP_POLICY 0x30000, mask 1
  v.setBigUint64(b, 0x30000n, true);
  v.setUint32(b + 8, 1, true);
  for (let i = 0; i < pages; i++) {
    b = header(0x302, 24); // PAGE_DATA: GPA, mask 1, no file data, NORMAL
    v.setBigUint64(b, BigInt(0x100000 + i * 4096), true);
    v.setUint32(b + 8, 1, true);
  }
  b = header(0x304, 20); // VP_CONTEXT at GPA 0x80000, mask 1, its page after the headers
  v.setBigUint64(b, 0x80000n, true);
  v.setUint32(b + 8, 1, true);
  v.setUint32(b + 12, dataAt, true);
  v.setUint32(20, crc32(bytes.subarray(0, dataAt)) >>> 0, true);
  return bytes;
}
