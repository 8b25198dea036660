/**
 * Declarations of packed little-endian C structures: each field with its offset written out,
 * checked at load time, so one table serves the encoders, the decoders and the `-d` dump.
 */

/** The type of one field of a packed structure. */
export type FieldType =
  | "u8"
  | "u16"
  | "u32"
  | "u64"
  | { bytes: number } // u8[n]
  | { struct: Layout } // a nested structure, union or bit-field unit
  | { bits: number }; // a bit field of `bits` bits (only in a "bitfield" layout)

/** One field: name, byte offset, type. */
export type Field = readonly [name: string, offset: number, type: FieldType];

/** A packed structure: its name, size and fields in declaration order. */
export interface Layout {
  readonly name: string;
  /** "union": every member at offset 0; "bitfield": offsets are bit positions in one u64. */
  readonly kind: "struct" | "union" | "bitfield";
  readonly size: number;
  readonly fields: readonly Field[];
  /** Byte offset of each field by name. */
  readonly off: Readonly<Record<string, number>>;
}

/** The size in bytes of a field type (bit fields report the size of their unit). */
export function sizeOfType(type: FieldType): number {
  if (type === "u8") return 1;
  if (type === "u16") return 2;
  if (type === "u32") return 4;
  if (type === "u64") return 8;
  if ("bytes" in type) return type.bytes;
  if ("struct" in type) return type.struct.size;
  throw new Error("a bit field has no byte size");
}

/**
 * Declares a packed layout. Throws at load time when the offsets leave gaps or overlap, or
 * do not add up to `size`, so a typo in a table cannot go unnoticed. Bit fields are packed
 * into consecutive u64 units; a union's members all start at offset 0.
 */
export function defineLayout(
  name: string,
  size: number,
  fields: readonly Field[],
  kind: "struct" | "union" | "bitfield" = "struct",
): Layout {
  let expected = 0;
  let bitPos = 0;
  for (const [field, offset, type] of fields) {
    if (kind === "union") {
      if (offset !== 0) throw new Error(`${name}.${field}: union members start at 0`);
      if (sizeOfType(type) !== size) throw new Error(`${name}.${field}: size differs from union`);
      continue;
    }
    if (kind === "bitfield") {
      if (typeof type !== "object" || !("bits" in type)) {
        throw new Error(`${name}.${field}: a bit-field layout holds bit fields only`);
      }
      if (offset !== bitPos) throw new Error(`${name}.${field}: bit ${offset}, expected ${bitPos}`);
      bitPos += type.bits;
      continue;
    }
    if (offset !== expected) {
      throw new Error(
        `${name}.${field}: offset 0x${offset.toString(16)}, expected 0x${expected.toString(16)}`,
      );
    }
    expected += sizeOfType(type);
  }
  if (kind === "struct" && expected !== size) {
    throw new Error(
      `${name}: fields end at 0x${expected.toString(16)}, size is 0x${size.toString(16)}`,
    );
  }
  if (kind === "bitfield" && bitPos !== size * 8) {
    throw new Error(`${name}: ${bitPos} bits declared, size is ${size} bytes`);
  }
  const off: Record<string, number> = {};
  for (const [field, offset] of fields) off[field] = offset;
  return { name, kind, size, fields, off };
}

/** Reads an unsigned scalar field (u8..u64) at byte `base` as a bigint. */
export function readScalar(view: DataView, base: number, type: FieldType): bigint {
  switch (type) {
    case "u8":
      return BigInt(view.getUint8(base));
    case "u16":
      return BigInt(view.getUint16(base, true));
    case "u32":
      return BigInt(view.getUint32(base, true));
    case "u64":
      return view.getBigUint64(base, true);
    default:
      throw new Error("not a scalar field");
  }
}
