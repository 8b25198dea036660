/**
 * The PAGE_DATA headers of a parsed file, kept compact in typed arrays, 18 bytes a page: the
 * GPA, the file offset and where the header lies, and a 16-bit kind that names the header's
 * compatibility mask, flags, data type and reserved field in a table of the kinds seen (a
 * file has a handful: pages of one part of the guest share them). A 1 GiB initrd is 263k page
 * headers, so one object per header (about 200 bytes of heap, 800 of RSS) would be most of
 * what reading such a file costs. A hostile file with more kinds than 16 bits name keeps
 * the rest per row, in wide columns made for the blocks that need them.
 *
 * Rows live in fixed-size blocks: the table grows without copying what it holds.
 */
import { IGVM_VHS_PAGE_DATA } from "./defs.ts";

const F = IGVM_VHS_PAGE_DATA.off;
/** Rows per block (a power of two). */
const BLOCK_SHIFT = 12;
const BLOCK_ROWS = 1 << BLOCK_SHIFT;
const ROW_MASK = BLOCK_ROWS - 1;
const TWO_32 = 0x1_0000_0000;
/** 2^53: above it, a double holds only even integers. */
const EXACT_LIMIT = 2 ** 53;
/** The kinds named by 16 bits; the last value marks a row whose kind is in wide columns. */
const MAX_KINDS = 0xffff;
const WIDE = 0xffff;

/**
 * The bigints 0 to 255, shared: most fields of a page header (flags, data type, mask,
 * reserved, a zero page's file offset) are small, and a shared value costs no allocation.
 */
const SMALL_BIGINTS: readonly bigint[] = Array.from({ length: 256 }, (_, i) => BigInt(i));

/** A value as a bigint, shared when it is below 256 (most header fields are). */
export function sharedBigint(value: number | bigint): bigint {
  return value < 256 ? SMALL_BIGINTS[Number(value)] : BigInt(value);
}

/** One block of rows: columns of 4096 rows. */
interface Block {
  gpaLo: Uint32Array;
  gpaHi: Uint32Array;
  fileOffset: Uint32Array;
  /** Header file offsets divided by 8: headers are 8-byte aligned and end below 2^33. */
  header: Uint32Array;
  kind: Uint16Array;
  /** Mask, flags and data type | reserved << 16 of the rows marked WIDE; made when needed. */
  wide?: Uint32Array;
}

/** The PAGE_DATA headers of a file, one row each, in the order they were added. */
export class PageDataTable {
  readonly #blocks: Block[] = [];
  /** Kind k's mask, flags, and data type | reserved << 16, at 3 k. */
  #kinds = new Uint32Array(3 * 16);
  #kindCount = 0;
  readonly #kindOf = new Map<string, number>();
  /** The kind of the last row added: consecutive rows mostly share one. */
  #lastKind = -1;
  #count = 0;

  /** How many rows the table holds. */
  get count(): number {
    return this.#count;
  }

  /**
   * Adds the PAGE_DATA body at byte `at` of `chunk` (a view of the bytes read), from the
   * header at file offset `headerOffset`; returns its row. The chunk is not kept.
   */
  add(chunk: DataView, at: number, headerOffset: number): number {
    const row = this.#count;
    const i = row & ROW_MASK;
    if (i === 0) this.#blocks.push(newBlock());
    const b = this.#blocks[row >>> BLOCK_SHIFT];
    b.gpaLo[i] = chunk.getUint32(at + F.GPA, true);
    b.gpaHi[i] = chunk.getUint32(at + F.GPA + 4, true);
    b.fileOffset[i] = chunk.getUint32(at + F.FileOffset, true);
    b.header[i] = headerOffset / 8;
    const mask = chunk.getUint32(at + F.CompatibilityMask, true);
    const flags = chunk.getUint32(at + F.Flags, true);
    const typeReserved = chunk.getUint32(at + F.DataType, true); // DataType, then Reserved
    const kind = this.#kind(mask, flags, typeReserved);
    b.kind[i] = kind;
    if (kind === WIDE) {
      const wide = b.wide ??= new Uint32Array(3 * BLOCK_ROWS);
      wide[3 * i] = mask;
      wide[3 * i + 1] = flags;
      wide[3 * i + 2] = typeReserved;
    }
    this.#count = row + 1;
    return row;
  }

  /** The kind of these fields: one seen before, a new one, or WIDE when 16 bits are used up. */
  #kind(mask: number, flags: number, typeReserved: number): number {
    const k = this.#lastKind;
    const kinds = this.#kinds;
    if (
      k >= 0 && kinds[3 * k] === mask && kinds[3 * k + 1] === flags &&
      kinds[3 * k + 2] === typeReserved
    ) return k;
    const key = `${mask},${flags},${typeReserved}`;
    let kind = this.#kindOf.get(key);
    if (kind === undefined) {
      if (this.#kindCount === MAX_KINDS) return WIDE;
      kind = this.#kindCount++;
      if (3 * kind === kinds.length) {
        this.#kinds = new Uint32Array(kinds.length * 2);
        this.#kinds.set(kinds);
      }
      this.#kinds[3 * kind] = mask;
      this.#kinds[3 * kind + 1] = flags;
      this.#kinds[3 * kind + 2] = typeReserved;
      this.#kindOf.set(key, kind);
    }
    this.#lastKind = kind;
    return kind;
  }

  /** Field `f` (0 mask, 1 flags, 2 data type | reserved << 16) of the row's kind. */
  #kindField(row: number, f: number): number {
    const b = this.#blocks[row >>> BLOCK_SHIFT];
    const i = row & ROW_MASK;
    const kind = b.kind[i];
    return kind === WIDE ? b.wide![3 * i + f] : this.#kinds[3 * kind + f];
  }

  #block(row: number): Block {
    return this.#blocks[row >>> BLOCK_SHIFT];
  }

  /** File offset of the row's header (its type field). */
  headerOffset(row: number): number {
    return this.#block(row).header[row & ROW_MASK] * 8;
  }

  /**
   * The GPA as a number: exact below 2^53 and for every 4 KiB-aligned GPA (a multiple of
   * 4096 below 2^64 is a double); an unaligned GPA above 2^53 is rounded, so anything that
   * checks alignment or tells GPAs apart uses {@link gpaExact} or {@link gpaPageOffset}.
   */
  gpa(row: number): number {
    const b = this.#block(row);
    const i = row & ROW_MASK;
    return b.gpaHi[i] * TWO_32 + b.gpaLo[i];
  }

  /** The GPA, exact. */
  gpaExact(row: number): bigint {
    const b = this.#block(row);
    const i = row & ROW_MASK;
    return (BigInt(b.gpaHi[i]) << 32n) | BigInt(b.gpaLo[i]);
  }

  /** The GPA's offset in its 4 KiB page (its low 12 bits): 0 for an aligned GPA. */
  gpaPageOffset(row: number): number {
    return this.#block(row).gpaLo[row & ROW_MASK] & 0xfff;
  }

  /** True when {@link gpa} is the exact GPA. */
  gpaIsExact(row: number): boolean {
    return this.gpaPageOffset(row) === 0 || this.gpa(row) < EXACT_LIMIT;
  }

  /** CompatibilityMask. */
  mask(row: number): number {
    return this.#kindField(row, 0);
  }

  /** FileOffset: 0 for a page with no data. */
  fileOffset(row: number): number {
    return this.#block(row).fileOffset[row & ROW_MASK];
  }

  /** Flags (IGVM_VHF_PAGE_DATA_*). */
  flags(row: number): number {
    return this.#kindField(row, 1);
  }

  /** DataType (IGVM_VHS_PAGE_DATA_TYPE_*). */
  dataType(row: number): number {
    return this.#kindField(row, 2) & 0xffff;
  }

  /** Reserved (must be zero). */
  reserved(row: number): number {
    return this.#kindField(row, 2) >>> 16;
  }

  /** The row's 24-byte body, as the file holds it. */
  body(row: number): Uint8Array {
    const body = new Uint8Array(IGVM_VHS_PAGE_DATA.size);
    const v = new DataView(body.buffer);
    const b = this.#block(row);
    const i = row & ROW_MASK;
    v.setUint32(F.GPA, b.gpaLo[i], true);
    v.setUint32(F.GPA + 4, b.gpaHi[i], true);
    v.setUint32(F.CompatibilityMask, this.mask(row), true);
    v.setUint32(F.FileOffset, b.fileOffset[i], true);
    v.setUint32(F.Flags, this.flags(row), true);
    v.setUint32(F.DataType, this.#kindField(row, 2), true);
    return body;
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

function newBlock(): Block {
  return {
    gpaLo: new Uint32Array(BLOCK_ROWS),
    gpaHi: new Uint32Array(BLOCK_ROWS),
    fileOffset: new Uint32Array(BLOCK_ROWS),
    header: new Uint32Array(BLOCK_ROWS),
    kind: new Uint16Array(BLOCK_ROWS),
  };
}
