import { assertEquals, assertThrows } from "./assert.ts";
import { buildGdt } from "../lib/x86/gdt.ts";
import { buildPageTables, pageTablePages, writePageTablePages } from "../lib/x86/page_tables.ts";
import { pageTableReader } from "../lib/guest/common.ts";
import { CPUID_LEAVES, encodeCpuidPage } from "../lib/x86/cpuid_page.ts";
import { initialVmsaState } from "../lib/x86/boot_cpu.ts";
import { encodeVmsaPage, VMCB_SAVE_AREA } from "../lib/x86/vmsa.ts";

Deno.test("buildGdt() 32-bit: flat code/data descriptors and a TSS at the given base", () => {
  const g = buildGdt(false, 0x346e000);
  assertEquals(g.bytes.length, 48);
  assertEquals(g.limit, 0x2f);
  // Kernel code: limit 0xfffff, G=1, D=1, present, type 0xb -> ff ff 00 00 00 9b cf 00.
  assertEquals([...g.bytes.subarray(8, 16)], [0xff, 0xff, 0, 0, 0, 0x9b, 0xcf, 0]);
  assertEquals(g.cs, { selector: 8, base: 0, limit: 0xffffffff, attrib: 0xc9b });
  assertEquals(g.ds.attrib, 0xc93);
  assertEquals(g.tr, { selector: 0x28, base: 0x346e000, limit: 0x67, attrib: 0x8b });
  assertEquals([...g.bytes.subarray(40, 48)], [0x67, 0, 0, 0xe0, 0x46, 0x8b, 0, 0x03]);
});

Deno.test("buildGdt() 64-bit: L=1 code and a 16-byte TSS descriptor", () => {
  const g = buildGdt(true, 0x1_2345_6000);
  assertEquals(g.bytes.length, 56);
  assertEquals(g.cs.attrib, 0xa9b);
  assertEquals(new DataView(g.bytes.buffer).getUint32(48, true), 1);
});

Deno.test("buildPageTables(2) maps 512 GiB with 1 GiB pages, C-bit when encrypted", () => {
  const base = 0x4000000;
  const t = new BigUint64Array(buildPageTables(2, base, true).buffer);
  assertEquals(t.length, 2 * 512);
  assertEquals(t[0], BigInt(base + 0x1000) | 7n | (1n << 51n));
  assertEquals(t[512], 0x87n | (1n << 51n));
  assertEquals(t[512 + 511], (511n << 30n) | 0x87n | (1n << 51n));
  assertEquals(t[1], 0n);
});

Deno.test("buildPageTables(4) identity-maps 16 GiB in 4 KiB pages", () => {
  const base = 0x806000;
  const bytes = buildPageTables(4, base, false);
  assertEquals(bytes.length, pageTablePages(4) * 4096);
  const t = new BigUint64Array(bytes.buffer);
  const pmd = base + 2 * 4096;
  const pte = pmd + 16 * 4096;
  assertEquals(t[512 + 15], BigInt(pmd + 15 * 4096) | 7n); // PDPT[15]
  assertEquals(t[1024 + 16 * 512 - 1], BigInt(pte + (16 * 512 - 1) * 4096) | 7n); // last PMD entry
  const pteStart = 1024 + 16 * 512;
  for (const n of [0, 1, 511, 512, 1 << 20, (1 << 20) + 3, 16 * 512 * 512 - 1]) {
    assertEquals(t[pteStart + n], (BigInt(n) << 12n) | 7n, `PTE ${n}`);
  }
  const enc = new BigUint64Array(buildPageTables(4, base, true).buffer);
  assertEquals(enc[pteStart + (1 << 21) + 5], (BigInt((1 << 21) + 5) << 12n) | 7n | (1n << 51n));
});

/** SHA-256 of bytes, in hex. */
async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...d].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Entry `i` of the 4-level tables at `base`, from the definition, one BigInt at a time. */
function level4Entry(base: number, encrypted: boolean, i: number): bigint {
  const c = encrypted ? 1n << 51n : 0n;
  const pmd = BigInt(base + 2 * 4096);
  const pte = pmd + 16n * 4096n;
  if (i < 512) return i === 0 ? BigInt(base + 4096) | 7n | c : 0n; // PML4
  if (i < 1024) return i - 512 < 16 ? (pmd + BigInt(i - 512) * 4096n) | 7n | c : 0n; // PDPT
  if (i < 1024 + 16 * 512) return (pte + BigInt(i - 1024) * 4096n) | 7n | c; // PMDs
  return (BigInt(i - 1024 - 16 * 512) << 12n) | 7n | c; // PTEs: identity
}

Deno.test("buildPageTables() gives the known tables (SHA-256 of an independent build)", async () => {
  // Known answers: the tables written out entry by entry in Python (struct.pack("<Q", ...)).
  assertEquals(
    await sha256Hex(buildPageTables(4, 0x806000, false) as Uint8Array<ArrayBuffer>),
    "afa806075f8d1719c338c287e8305385befd1359eea97f022f7af4c4e462b666",
  );
  assertEquals(
    await sha256Hex(buildPageTables(4, 0x806000, true) as Uint8Array<ArrayBuffer>),
    "7b2559f09547f0ddf5c2ee288f17caf2639dab1eac14f8535d294e7771af69b1",
  );
  assertEquals(
    await sha256Hex(buildPageTables(2, 0x4000000, true) as Uint8Array<ArrayBuffer>),
    "7f1037df2d3429352b11b77ed37ca5faab896a1bcabf206c988e7b7db75381fd",
  );
});

Deno.test("writePageTablePages() writes any run of pages as the entries' definition gives", () => {
  const base = 0x80a000;
  // Runs across the PML4/PDPT/PMD/PTE boundaries and the PTE page where n >> 20 turns 1.
  const runs = [[0, 3], [16, 5], [17, 1], [18 + 2046, 4], [pageTablePages(4) - 3, 3]];
  for (const encrypted of [false, true]) {
    for (const [first, count] of runs) {
      const dst = new Uint8Array(count * 4096).fill(0xa5); // every byte must be written
      writePageTablePages({ level: 4, base, encrypted }, first, count, dst);
      const got = new BigUint64Array(dst.buffer);
      for (let k = 0; k < got.length; k++) {
        const i = first * 512 + k;
        assertEquals(got[k], level4Entry(base, encrypted, i), `entry ${i}, C-bit ${encrypted}`);
      }
    }
  }
});

Deno.test("writePageTablePages() refuses pages past the tables and tables above 4 GiB", () => {
  const spec = { level: 4 as const, base: 0x806000, encrypted: false };
  const page = new Uint8Array(4096);
  assertThrows(() => writePageTablePages(spec, pageTablePages(4), 1, page), RangeError);
  assertThrows(() => writePageTablePages(spec, 0, 2, page), RangeError);
  assertThrows(() => writePageTablePages({ ...spec, base: 0xffff_f000 }, 0, 1, page), RangeError);
  assertThrows(() => writePageTablePages({ ...spec, base: 0x806001 }, 0, 1, page), RangeError);
});

Deno.test("pageTableReader() reads the whole tables in odd-sized pieces, aligned or not", async () => {
  for (const [level, base] of [[4, 0x806000], [2, 0x4000000]] as const) {
    const spec = { level, base, encrypted: true };
    const whole = buildPageTables(level, base, true);
    const reader = pageTableReader(spec);
    const got = new Uint8Array(whole.length + 8);
    let at = 0;
    // Part pages, runs of whole pages, and a read past the end; each into a buffer at an
    // aligned and at an odd offset (7 sizes: the offsets alternate across rounds), read with
    // read() and readSync() in turn.
    const sizes = [1, 4095, 3 * 4096, 4097, 2 * 4096 - 1, 512 * 4096, 300 * 4096 + 5];
    for (let i = 0; at < got.length; i++) {
      const size = sizes[i % sizes.length];
      const offset = i % 2;
      const buffer = new Uint8Array(size + offset).subarray(offset);
      const n = i % 3 === 0 ? await reader.read(buffer) : reader.readSync!(buffer);
      got.set(buffer.subarray(0, n), at);
      at += n;
      if (n < size) break;
    }
    assertEquals(at, whole.length, `level ${level}: bytes read`);
    const first = whole.findIndex((b, i) => got[i] !== b); // not a 32 MiB diff on failure
    assertEquals(first, -1, `level ${level}: the first byte that differs`);
  }
});

Deno.test("encodeCpuidPage() lists 38 leaves with XFEM_IN 1 for leaf 0xD", () => {
  const page = encodeCpuidPage();
  const v = new DataView(page.buffer);
  assertEquals(v.getUint32(0, true), CPUID_LEAVES.length);
  assertEquals(CPUID_LEAVES.length, 38);
  assertEquals(v.getUint32(16, true), 0x8000001f);
  const leafD = CPUID_LEAVES.findIndex(([f]) => f === 0xd);
  assertEquals(v.getBigUint64(16 + leafD * 48 + 8, true), 1n);
  assertEquals(v.getBigUint64(16 * 1 + 0 * 48 + 8, true), 0n);
});

Deno.test("initialVmsaState() x64: paging on, C-bit in CR3, EFER long mode and SVME", () => {
  const s = initialVmsaState({
    bootMode: "x64",
    arch: "Intel",
    svme: true,
    encryptedPage: true,
    gdt: buildGdt(true, 0x2000),
    gdtBase: 0x2068,
    pageTables: { base: 0x1000, level: 2 },
    rip: 0x1000200,
    rsi: 0x3000,
    rsp: 0x5000,
  });
  assertEquals(s.cr0, 0x80000001);
  assertEquals(s.cr4, 0x30);
  assertEquals(s.cr3, 0x1000n | (1n << 51n));
  assertEquals(s.efer, 0x1d01);
  const page = encodeVmsaPage(s);
  const v = new DataView(page.buffer);
  assertEquals(v.getBigUint64(VMCB_SAVE_AREA.off.rip, true), 0x1000200n);
  assertEquals(v.getBigUint64(VMCB_SAVE_AREA.off._0, true), 9n);
  assertEquals(v.getBigUint64(VMCB_SAVE_AREA.off.rflags, true), 2n);
});

Deno.test("initialVmsaState() -arch AMD leaves RFLAGS 0; x86 without SVME has EFER 0", () => {
  const s = initialVmsaState({
    bootMode: "x86",
    arch: "AMD",
    svme: false,
    encryptedPage: false,
    gdt: buildGdt(false, 0),
    gdtBase: 0x68,
    rip: 1,
    rsi: 2,
    rsp: 3,
  });
  assertEquals([s.rflags, s.efer, s.cr0, s.cr4, s.cr3], [0, 0, 1, 0, 0n]);
});
