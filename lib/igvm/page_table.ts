/**
 * The PAGE_DATA headers of a parsed file, kept compact: each header's 24-byte body as the
 * file holds it (IGVM_VHS_PAGE_DATA, little-endian) plus where the header lies, 28 bytes a
 * page in typed arrays. A 1 GiB initrd is 263k page headers, so one object per header (about
 * 200 bytes of heap, 800 of RSS) would be most of what reading such a file costs.
 *
 * Rows live in fixed-size blocks: the table grows without copying what it holds.
 */
import { IGVM_VHS_PAGE_DATA } from "./defs.ts";

const BODY = IGVM_VHS_PAGE_DATA.size;
const F = IGVM_VHS_PAGE_DATA.off;
/** Rows per block (a power of two): 96 KiB of bodies and 16 KiB of offsets. */
const BLOCK_SHIFT = 12;
const BLOCK_ROWS = 1 << BLOCK_SHIFT;
const ROW_MASK = BLOCK_ROWS - 1;
const TWO_32 = 0x1_0000_0000;
/** 2^53: above it, a double holds only even integers. */
const EXACT_LIMIT = 2 ** 53;

/**
 * The bigints 0 to 255, shared: most fields of a page header (flags, data type, mask,
 * reserved, a zero page's file offset) are small, and a shared value costs no allocation.
 */
const SMALL_BIGINTS: readonly bigint[] = Array.from({ length: 256 }, (_, i) => BigInt(i));

/** A value as a bigint, shared when it is below 256 (most header fields are). */
export function sharedBigint(value: number | bigint): bigint {
  return value < 256 ? SMALL_BIGINTS[Number(value)] : BigInt(value);
}

/** The PAGE_DATA headers of a file, one row each, in the order they were added. */
export class PageDataTable {
  readonly #bodies: DataView[] = [];
  /** Header file offsets divided by 8: headers are 8-byte aligned and end below 2^33. */
  readonly #offsets: Uint32Array[] = [];
  #count = 0;

  /** How many rows the table holds. */
  get count(): number {
    return this.#count;
  }

  /**
   * Adds the PAGE_DATA body at byte `at` of `chunk` (a view of the bytes read), from the
   * header at file offset `headerOffset`; returns its row. The body is copied word by word,
   * with no allocation: the chunk is not kept.
   */
  add(chunk: DataView, at: number, headerOffset: number): number {
    const row = this.#count;
    const block = row >>> BLOCK_SHIFT;
    if (block === this.#bodies.length) {
      this.#bodies.push(new DataView(new ArrayBuffer(BLOCK_ROWS * BODY)));
      this.#offsets.push(new Uint32Array(BLOCK_ROWS));
    }
    const to = this.#bodies[block];
    const base = (row & ROW_MASK) * BODY;
    for (let w = 0; w < BODY; w += 4) to.setUint32(base + w, chunk.getUint32(at + w, true), true);
    this.#offsets[block][row & ROW_MASK] = headerOffset / 8;
    this.#count = row + 1;
    return row;
  }

  #view(row: number): DataView {
    return this.#bodies[row >>> BLOCK_SHIFT];
  }

  #u32(row: number, field: number): number {
    return this.#view(row).getUint32((row & ROW_MASK) * BODY + field, true);
  }

  /** File offset of the row's header (its type field). */
  headerOffset(row: number): number {
    return this.#offsets[row >>> BLOCK_SHIFT][row & ROW_MASK] * 8;
  }

  /**
   * The GPA as a number: exact below 2^53 and for every 4 KiB-aligned GPA (a multiple of
   * 4096 below 2^64 is a double); an unaligned GPA above 2^53 is rounded, so anything that
   * checks alignment or tells GPAs apart uses {@link gpaExact} or {@link gpaPageOffset}.
   */
  gpa(row: number): number {
    return this.#u32(row, F.GPA + 4) * TWO_32 + this.#u32(row, F.GPA);
  }

  /** The GPA, exact. */
  gpaExact(row: number): bigint {
    return this.#view(row).getBigUint64((row & ROW_MASK) * BODY + F.GPA, true);
  }

  /** The GPA's offset in its 4 KiB page (its low 12 bits): 0 for an aligned GPA. */
  gpaPageOffset(row: number): number {
    return this.#u32(row, F.GPA) & 0xfff;
  }

  /** True when {@link gpa} is the exact GPA. */
  gpaIsExact(row: number): boolean {
    return this.gpaPageOffset(row) === 0 || this.gpa(row) < EXACT_LIMIT;
  }

  /** CompatibilityMask. */
  mask(row: number): number {
    return this.#u32(row, F.CompatibilityMask);
  }

  /** FileOffset: 0 for a page with no data. */
  fileOffset(row: number): number {
    return this.#u32(row, F.FileOffset);
  }

  /** Flags (IGVM_VHF_PAGE_DATA_*). */
  flags(row: number): number {
    return this.#u32(row, F.Flags);
  }

  /** DataType (IGVM_VHS_PAGE_DATA_TYPE_*). */
  dataType(row: number): number {
    return this.#view(row).getUint16((row & ROW_MASK) * BODY + F.DataType, true);
  }

  /** Reserved (must be zero). */
  reserved(row: number): number {
    return this.#view(row).getUint16((row & ROW_MASK) * BODY + F.Reserved, true);
  }

  /** The row's 24-byte body, copied. */
  body(row: number): Uint8Array {
    const at = (row & ROW_MASK) * BODY;
    return new Uint8Array(this.#view(row).buffer.slice(at, at + BODY));
  }

  /** The row's fields by name, as a directive's `fields` (a new object on each call). */
  fields(row: number): Record<string, bigint> {
    return {
      GPA: this.gpaExact(row),
      CompatibilityMask: sharedBigint(this.mask(row)),
      FileOffset: sharedBigint(this.fileOffset(row)),
      Flags: sharedBigint(this.flags(row)),
      DataType: sharedBigint(this.dataType(row)),
      Reserved: sharedBigint(this.reserved(row)),
    };
  }
}
