/**
 * Identity-mapping page tables for 64-bit boot: a 2-level layout (PML4 + one PDPT of 1 GiB
 * pages: the first 512 GiB) and a 4-level layout (PML4, PDPT, 16 PMDs and 8192 PTE pages:
 * 16 GiB of 4 KiB pages, 32 MiB of entries). The tables are produced page by page, straight
 * into the caller's buffer: the 4-level tables are never held whole unless asked for.
 */
import { PAGE_SIZE } from "../bytes/le.ts";
import { PAGE_ENCRYPTED_BIT } from "./vmsa.ts";

/** Present, writable, user: the low bits of every entry. */
const PRESENT_RW_USER = 0x7;
/** PS: a 1 GiB page in a PDPT entry. */
const PAGE_SIZE_BIT = 0x80;
/** GiB mapped by the 4-level tables: one PMD page per GiB. */
const MAPPED_GIB = 16;
/** Entries per table page, and u32 words. */
const ENTRIES = PAGE_SIZE / 8;
const WORDS = PAGE_SIZE / 4;

/** Pages needed by a table of `level` 2 or 4. */
export function pageTablePages(level: 2 | 4): number {
  return level === 2 ? 2 : 2 + MAPPED_GIB + MAPPED_GIB * ENTRIES;
}

/** Page tables placed at `base` (page aligned; the tables end below 4 GiB), C-bit or not. */
export interface PageTableSpec {
  level: 2 | 4;
  base: number;
  /** Sets the C-bit (bit 51) in every entry. */
  encrypted: boolean;
}

/**
 * Writes pages `first` to `first + count - 1` of the tables into `dst` (`count` pages, at a
 * 4-byte aligned offset), every byte of them. Entries are written as two u32 halves: low =
 * address | flags, high = address >> 32 | C-bit >> 32 (no BigInt per entry).
 */
export function writePageTablePages(
  spec: PageTableSpec,
  first: number,
  count: number,
  dst: Uint8Array,
): void {
  const { level, base } = spec;
  const pages = pageTablePages(level);
  if (!Number.isInteger(first) || !Number.isInteger(count) || first < 0 || count < 0) {
    throw new RangeError(`page table pages ${first} + ${count}`);
  }
  if (first + count > pages || dst.length < count * PAGE_SIZE) {
    throw new RangeError(`page table pages ${first} + ${count} of ${pages} into ${dst.length} B`);
  }
  if (base % PAGE_SIZE !== 0 || base < 0 || base + pages * PAGE_SIZE > 0x1_0000_0000) {
    throw new RangeError(`page tables at 0x${base.toString(16)}: not page aligned below 4 GiB`);
  }
  const words = new Int32Array(dst.buffer, dst.byteOffset, count * PAGE_SIZE / 4);
  const high = spec.encrypted ? Number(PAGE_ENCRYPTED_BIT >> 32n) : 0;
  const pmdBase = base + 2 * PAGE_SIZE;
  const pteBase = pmdBase + MAPPED_GIB * PAGE_SIZE;
  const firstPte = 2 + MAPPED_GIB;
  let p = 0; // pages written
  for (; p < count && (level === 2 || first + p < firstPte); p++) {
    const page = words.subarray(p * WORDS, (p + 1) * WORDS);
    const index = first + p;
    if (index === 0) { // PML4: one entry, the PDPT
      page.fill(0);
      page[0] = (base + PAGE_SIZE) | PRESENT_RW_USER;
      page[1] = high;
    } else if (level === 2) { // PDPT of 1 GiB pages: entry i maps i << 30
      for (let i = 0; i < ENTRIES; i++) {
        page[2 * i] = (i << 30) | PAGE_SIZE_BIT | PRESENT_RW_USER;
        page[2 * i + 1] = (i >>> 2) | high;
      }
    } else if (index === 1) { // PDPT: one entry per PMD page
      page.fill(0);
      for (let k = 0; k < MAPPED_GIB; k++) {
        page[2 * k] = (pmdBase + k * PAGE_SIZE) | PRESENT_RW_USER;
        page[2 * k + 1] = high;
      }
    } else { // PMD page k: one entry per PTE page
      let low = (pteBase + (index - 2) * ENTRIES * PAGE_SIZE) | PRESENT_RW_USER;
      for (let j = 0; j < WORDS; j += 2, low += PAGE_SIZE) {
        page[j] = low;
        page[j + 1] = high;
      }
    }
  }
  // PTE entry n (page t = n / 512 of them) maps guest page n to itself: low = n << 12 | 7
  // (the shift drops bits 20 and up), high = n >> 20. One flat loop over every entry of the
  // run: V8 optimizes it early, and no inner loop is left.
  let n = (first + p - firstPte) * ENTRIES;
  for (let k = p * WORDS; k < count * WORDS; k += 2, n++) {
    words[k] = (n << 12) | PRESENT_RW_USER;
    words[k + 1] = (n >>> 20) | high;
  }
}

/** The whole tables as one byte array of `pageTablePages(level)` pages. */
export function buildPageTables(level: 2 | 4, base: number, encrypted: boolean): Uint8Array {
  const spec = { level, base, encrypted };
  const pages = pageTablePages(level);
  const out = new Uint8Array(pages * PAGE_SIZE);
  writePageTablePages(spec, 0, pages, out);
  return out;
}
