/**
 * Test helpers that edit IGVM files the way a hostile or careless tool would: change a
 * header's body, insert or remove a header (moving the data section and every file offset),
 * flip a data byte. The header CRC is recomputed with node:zlib, not igvmgen's own crc32,
 * so the files are well-formed apart from the edit under test.
 */
import { crc32 } from "node:zlib";

/** One variable header: its type, where its 8-byte type/length starts, its body length. */
export interface HeaderAt {
  type: number;
  at: number;
  length: number;
}

const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

/** The variable headers of a file, in order. */
export function headersOf(bytes: Uint8Array): HeaderAt[] {
  const v = view(bytes);
  const start = v.getUint32(8, true);
  const end = start + v.getUint32(12, true);
  const out: HeaderAt[] = [];
  for (let at = start; at < end;) {
    const length = v.getUint32(at + 4, true);
    out.push({ type: v.getUint32(at, true), at, length });
    at += 8 + ((length + 7) & ~7);
  }
  return out;
}

/** Recomputes TotalFileSize and the header section's CRC-32; returns the bytes. */
export function fixHeaders(bytes: Uint8Array): Uint8Array {
  const v = view(bytes);
  v.setUint32(16, bytes.length, true);
  const end = v.getUint32(8, true) + v.getUint32(12, true);
  const section = bytes.slice(0, end);
  view(section).setUint32(20, 0, true);
  v.setUint32(20, crc32(section) >>> 0, true);
  return bytes;
}

/** The offset of the body of the `n`-th header of `type`. */
export function bodyAt(bytes: Uint8Array, type: number, n = 0): number {
  const h = headersOf(bytes).filter((x) => x.type === type)[n];
  if (!h) throw new Error(`no header 0x${type.toString(16)} #${n}`);
  return h.at + 8;
}

/** A copy of `bytes` with `edit(view, bodyOffset)` applied to a header's body, CRC fixed. */
export function editBody(
  bytes: Uint8Array,
  type: number,
  edit: (v: DataView, body: number) => void,
  n = 0,
): Uint8Array {
  const out = bytes.slice();
  edit(view(out), bodyAt(out, type, n));
  return fixHeaders(out);
}

const FILE_OFFSET_TYPES = new Set([0x301, 0x302, 0x304]);

/** Moves every non-zero FileOffset by `delta`. */
function shiftFileOffsets(bytes: Uint8Array, delta: number): void {
  const v = view(bytes);
  for (const h of headersOf(bytes)) {
    if (!FILE_OFFSET_TYPES.has(h.type)) continue;
    const at = h.at + 8 + 0x0c;
    const offset = v.getUint32(at, true);
    if (offset !== 0) v.setUint32(at, offset + delta, true);
  }
}

/**
 * A copy of `bytes` with a header of `type` and `body` inserted before the header at
 * position `before` (default: after the last one).
 */
export function insertHeader(
  bytes: Uint8Array,
  type: number,
  body: Uint8Array,
  before?: number,
): Uint8Array {
  const padded = (body.length + 7) & ~7;
  const blob = new Uint8Array(8 + padded);
  view(blob).setUint32(0, type, true);
  view(blob).setUint32(4, body.length, true);
  blob.set(body, 8);
  const v = view(bytes);
  const hs = headersOf(bytes);
  const at = before === undefined ? v.getUint32(8, true) + v.getUint32(12, true) : hs[before].at;
  const out = new Uint8Array(bytes.length + blob.length);
  out.set(bytes.subarray(0, at));
  out.set(blob, at);
  out.set(bytes.subarray(at), at + blob.length);
  view(out).setUint32(12, v.getUint32(12, true) + blob.length, true);
  shiftFileOffsets(out, blob.length);
  return fixHeaders(out);
}

/** A copy of `bytes` without the `n`-th header of `type`. */
export function removeHeader(bytes: Uint8Array, type: number, n = 0): Uint8Array {
  const h = headersOf(bytes).filter((x) => x.type === type)[n];
  const size = 8 + ((h.length + 7) & ~7);
  const out = new Uint8Array(bytes.length - size);
  out.set(bytes.subarray(0, h.at));
  out.set(bytes.subarray(h.at + size), h.at);
  const v = view(out);
  v.setUint32(12, v.getUint32(12, true) - size, true);
  shiftFileOffsets(out, -size);
  return fixHeaders(out);
}

/** The body of the `n`-th header of `type`, copied. */
export function bodyOf(bytes: Uint8Array, type: number, n = 0): Uint8Array {
  const h = headersOf(bytes).filter((x) => x.type === type)[n];
  return bytes.slice(h.at + 8, h.at + 8 + h.length);
}

/** The index in `headersOf` of the `n`-th header of `type`. */
export function headerIndex(bytes: Uint8Array, type: number, n = 0): number {
  const hs = headersOf(bytes);
  const found = hs.filter((x) => x.type === type)[n];
  return hs.indexOf(found);
}

/**
 * The file offset of the data of the first PAGE_DATA at or above `minGpa` that has data
 * (not the VMSA), for flipping a measured byte.
 */
export function pageDataOffset(bytes: Uint8Array, minGpa = 0): number {
  const v = view(bytes);
  for (const h of headersOf(bytes)) {
    if (h.type !== 0x302) continue;
    const gpa = Number(v.getBigUint64(h.at + 8, true));
    const offset = v.getUint32(h.at + 8 + 0x0c, true);
    if (offset && gpa >= minGpa) return offset;
  }
  throw new Error("no PAGE_DATA with data");
}

/** An IGVM_VHS_PAGE_DATA body: a zero page (no file data) at `gpa` for `mask`. */
export function zeroPageBody(gpa: bigint, mask: number, flags = 0): Uint8Array {
  const b = new Uint8Array(0x18);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, gpa, true);
  v.setUint32(8, mask, true);
  v.setUint32(0x10, flags, true);
  return b;
}
