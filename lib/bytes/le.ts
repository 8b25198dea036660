/** Little-endian helpers and alignment arithmetic shared by every stage. */

/** The guest page size (4 KiB), the unit of every IGVM page directive. */
export const PAGE_SIZE = 0x1000;

/** Rounds `value` up to a multiple of `alignment` (a power of two). */
export function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

/** Rounds `value` down to a multiple of `alignment`. */
export function alignDown(value: number, alignment: number): number {
  return Math.floor(value / alignment) * alignment;
}

/** True when every byte of `bytes` is zero. */
export function isAllZero(bytes: Uint8Array): boolean {
  // Compare four bytes at a time where the buffer allows it.
  if (bytes.byteOffset % 4 === 0 && bytes.byteLength % 4 === 0) {
    const words = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
    return true;
  }
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** A DataView over exactly the bytes of `bytes`. */
export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Writes an unsigned 64-bit value given as a number (exact below 2^53) or a bigint. */
export function setU64(view: DataView, offset: number, value: number | bigint): void {
  view.setBigUint64(offset, BigInt(value), true);
}

/** Lower-case hex of a byte string. */
export function toHex(bytes: Uint8Array): string {
  return bytes.toHex(); // native: one string, where a loop makes three per byte
}

/** `0x`-prefixed lower-case hex of a number or bigint, as Python's `hex()` prints it. */
export function hex(value: number | bigint): string {
  return "0x" + value.toString(16);
}

/** Concatenates byte strings. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
