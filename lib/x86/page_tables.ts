/**
 * Identity-mapping page tables for 64-bit boot, built in typed arrays: a 2-level layout
 * (PML4 + one PDPT of 1 GiB pages: the first 512 GiB) and a 4-level layout (16 GiB of
 * 4 KiB pages, 8 MiB of entries).
 */
import { PAGE_SIZE } from "../bytes/le.ts";
import { PAGE_ENCRYPTED_BIT } from "./vmsa.ts";

const PRESENT_RW_USER = 0x7n;
const PAGE_SIZE_BIT = 0x80n; // PS: a 1 GiB page in a PDPT entry

/** Pages needed by a table of `level` 2 or 4. */
export function pageTablePages(level: 2 | 4): number {
  return level === 2 ? 2 : 2 + 16 + 16 * 512;
}

/**
 * The entries of a table placed at `base` (page aligned), as one byte array of
 * `pageTablePages(level)` pages. `encrypted` sets the C-bit (bit 51) in every entry.
 */
export function buildPageTables(level: 2 | 4, base: number, encrypted: boolean): Uint8Array {
  const pages = pageTablePages(level);
  const out = new Uint8Array(pages * PAGE_SIZE);
  const e = new BigUint64Array(out.buffer);
  const flags = PRESENT_RW_USER | (encrypted ? PAGE_ENCRYPTED_BIT : 0n);
  const pud = BigInt(base + PAGE_SIZE);
  e[0] = pud | flags;
  const pudIndex = PAGE_SIZE / 8;
  if (level === 2) {
    for (let i = 0; i < 512; i++) e[pudIndex + i] = (BigInt(i) << 30n) | flags | PAGE_SIZE_BIT;
    return out;
  }
  const gib = 16;
  const pmdBase = base + 2 * PAGE_SIZE;
  const pteBase = pmdBase + gib * PAGE_SIZE;
  const pmdIndex = 2 * 512;
  const pteIndex = pmdIndex + gib * 512;
  for (let k = 0; k < gib; k++) e[pudIndex + k] = BigInt(pmdBase + k * PAGE_SIZE) | flags;
  for (let t = 0; t < gib * 512; t++) {
    e[pmdIndex + t] = BigInt(pteBase + t * PAGE_SIZE) | flags;
  }
  // The PTEs map page n of the first 16 GiB to itself. Fill two u32 halves per entry to
  // avoid a BigInt per entry: low = (n << 12) | flags, high = n >> 20 | C-bit >> 32.
  const words = new Uint32Array(out.buffer, pteIndex * 8, gib * 512 * 512 * 2);
  const high = encrypted ? Number(PAGE_ENCRYPTED_BIT >> 32n) : 0;
  for (let n = 0; n < gib * 512 * 512; n++) {
    words[2 * n] = ((n << 12) | 0x7) >>> 0;
    words[2 * n + 1] = (n >>> 20) | high;
  }
  return out;
}
