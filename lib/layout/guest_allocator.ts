/**
 * The original's guest-memory model, without the bytes: memory grows from GPA 0 by a bump
 * allocator; `seek(addr)` skips to a page-aligned address and the skipped range becomes a
 * hole (no page directives). Every page below the top that is not in a hole is emitted.
 */
import { alignUp, PAGE_SIZE } from "../bytes/le.ts";

/** A half-open GPA range [start, end). */
export interface Range {
  start: number;
  end: number;
}

/** Bump allocator over guest physical memory, recording holes. */
export class GuestAllocator {
  #top = 0;
  readonly holes: Range[] = [];

  /** The current top of memory (the next free byte). */
  get top(): number {
    return this.#top;
  }

  /** Allocates `size` bytes at the next `alignment`-aligned address and returns it. */
  allocate(size: number, alignment = 1): number {
    const addr = alignUp(this.#top, alignment);
    this.#top = addr + size;
    return addr;
  }

  /** Moves the top to `addr` (page aligned, not below the top); the gap becomes a hole. */
  seek(addr: number): void {
    if (addr % PAGE_SIZE !== 0) throw new Error(`seek to unaligned 0x${addr.toString(16)}`);
    if (addr < this.#top) {
      throw new Error(
        `guest layout overlap: 0x${addr.toString(16)} is below the top 0x${this.#top.toString(16)}`,
      );
    }
    if (addr > this.#top) this.holes.push({ start: this.#top, end: addr });
    this.#top = addr;
  }
}

/**
 * The page-aligned GPAs emitted for memory [0, end) minus `holes`, as ascending runs.
 * A page is in a hole when its first byte is, as in the original.
 */
export function emittedRuns(end: number, holes: readonly Range[]): Range[] {
  const sorted = [...holes].sort((a, b) => a.start - b.start);
  const runs: Range[] = [];
  let gpa = 0;
  for (const h of sorted) {
    // First page at or after gpa whose start is in the hole.
    const holeFirst = alignUp(h.start, PAGE_SIZE);
    const holeLast = alignUp(h.end, PAGE_SIZE); // first page start >= h.end
    if (holeFirst >= holeLast) continue;
    if (holeFirst > gpa) runs.push({ start: gpa, end: Math.min(holeFirst, end) });
    gpa = Math.max(gpa, holeLast);
  }
  if (gpa < end) runs.push({ start: gpa, end });
  return runs.filter((r) => r.end > r.start);
}
