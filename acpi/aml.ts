/**
 * A small AML encoder (ACPI 6.5, chapter 20 "ACPI Machine Language Specification"): names,
 * integers, strings, buffers, packages, methods, devices and scopes. Every function returns
 * the encoded bytes of one term.
 */
import { concatBytes } from "../lib/bytes/le.ts";

const ZERO_OP = 0x00;
const ONE_OP = 0x01;
const ONES_OP = 0xff;
const NAME_OP = 0x08;
const BYTE_PREFIX = 0x0a;
const WORD_PREFIX = 0x0b;
const DWORD_PREFIX = 0x0c;
const STRING_PREFIX = 0x0d;
const QWORD_PREFIX = 0x0e;
const SCOPE_OP = 0x10;
const BUFFER_OP = 0x11;
const PACKAGE_OP = 0x12;
const METHOD_OP = 0x14;
const DUAL_NAME_PREFIX = 0x2e;
const MULTI_NAME_PREFIX = 0x2f;
const EXT_OP_PREFIX = 0x5b;
const DEVICE_OP = 0x82;
const RETURN_OP = 0xa4;
const ROOT_CHAR = 0x5c;

/** Concatenates terms. */
export const terms = concatBytes;

/** PkgLength (20.2.4) for `contentLength` bytes that follow it; the length counts itself. */
export function pkgLength(contentLength: number): Uint8Array {
  if (contentLength + 1 <= 0x3f) return new Uint8Array([contentLength + 1]);
  for (const extra of [1, 2, 3]) {
    const total = contentLength + 1 + extra;
    if (total < 2 ** (4 + 8 * extra)) {
      const out = new Uint8Array(1 + extra);
      out[0] = (extra << 6) | (total & 0x0f);
      for (let i = 1; i <= extra; i++) out[i] = (total >>> (4 + 8 * (i - 1))) & 0xff;
      return out;
    }
  }
  throw new RangeError(`AML package of ${contentLength} bytes is too large`);
}

/** A NameSeg: 1 to 4 characters [A-Z_][A-Z0-9_]*, padded with '_'. */
function nameSeg(seg: string): number[] {
  if (!/^[A-Z_][A-Z0-9_]{0,3}$/.test(seg)) throw new Error(`invalid AML name segment "${seg}"`);
  return [...seg.padEnd(4, "_")].map((c) => c.charCodeAt(0));
}

/** A NameString: `\_SB.PCI0`, `_SB.COM1`, `_HID`... (20.2.2). */
export function nameString(path: string): Uint8Array {
  const out: number[] = [];
  let rest = path;
  if (rest.startsWith("\\")) {
    out.push(ROOT_CHAR);
    rest = rest.slice(1);
  }
  while (rest.startsWith("^")) {
    out.push(0x5e);
    rest = rest.slice(1);
  }
  const segs = rest === "" ? [] : rest.split(".");
  if (segs.length === 0) out.push(0x00);
  else if (segs.length === 2) out.push(DUAL_NAME_PREFIX);
  else if (segs.length > 2) out.push(MULTI_NAME_PREFIX, segs.length);
  for (const s of segs) out.push(...nameSeg(s));
  return new Uint8Array(out);
}

/** An integer with the shortest encoding: Zero, One, Ones (64-bit), or a prefixed constant. */
export function integer(value: number | bigint): Uint8Array {
  const v = BigInt(value);
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new RangeError(`AML integer ${v} out of range`);
  if (v === 0n) return new Uint8Array([ZERO_OP]);
  if (v === 1n) return new Uint8Array([ONE_OP]);
  if (v === 0xffff_ffff_ffff_ffffn) return new Uint8Array([ONES_OP]);
  const le = (n: number) =>
    Array.from({ length: n }, (_, i) => Number((v >> BigInt(8 * i)) & 0xffn));
  if (v <= 0xffn) return new Uint8Array([BYTE_PREFIX, ...le(1)]);
  if (v <= 0xffffn) return new Uint8Array([WORD_PREFIX, ...le(2)]);
  if (v <= 0xffff_ffffn) return new Uint8Array([DWORD_PREFIX, ...le(4)]);
  return new Uint8Array([QWORD_PREFIX, ...le(8)]);
}

/** An ASCII string constant. */
export function string(s: string): Uint8Array {
  if ([...s].some((c) => c.charCodeAt(0) === 0 || c.charCodeAt(0) > 0x7f)) {
    throw new Error("AML strings are ASCII without NUL");
  }
  return terms(new Uint8Array([STRING_PREFIX]), new TextEncoder().encode(s), new Uint8Array([0]));
}

/** Buffer (size) { bytes }. */
export function buffer(bytes: Uint8Array): Uint8Array {
  const body = terms(integer(bytes.length), bytes);
  return terms(new Uint8Array([BUFFER_OP]), pkgLength(body.length), body);
}

/** Package () { elements } (at most 255 elements). */
export function pkg(...elements: Uint8Array[]): Uint8Array {
  if (elements.length > 255) throw new RangeError("a Package holds at most 255 elements");
  const body = terms(new Uint8Array([elements.length]), ...elements);
  return terms(new Uint8Array([PACKAGE_OP]), pkgLength(body.length), body);
}

/** Name (path, value). */
export function name(path: string, value: Uint8Array): Uint8Array {
  return terms(new Uint8Array([NAME_OP]), nameString(path), value);
}

/** Method (path, argCount, Serialized?) { body }. */
export function method(
  path: string,
  argCount: number,
  serialized: boolean,
  ...body: Uint8Array[]
): Uint8Array {
  if (argCount < 0 || argCount > 7) throw new RangeError("a Method takes 0 to 7 arguments");
  const content = terms(
    nameString(path),
    new Uint8Array([argCount | (serialized ? 0x08 : 0)]),
    ...body,
  );
  return terms(new Uint8Array([METHOD_OP]), pkgLength(content.length), content);
}

/** Return (value). */
export function ret(value: Uint8Array): Uint8Array {
  return terms(new Uint8Array([RETURN_OP]), value);
}

/** Device (path) { body }. */
export function device(path: string, ...body: Uint8Array[]): Uint8Array {
  const content = terms(nameString(path), ...body);
  return terms(new Uint8Array([EXT_OP_PREFIX, DEVICE_OP]), pkgLength(content.length), content);
}

/** Scope (path) { body }. */
export function scope(path: string, ...body: Uint8Array[]): Uint8Array {
  const content = terms(nameString(path), ...body);
  return terms(new Uint8Array([SCOPE_OP]), pkgLength(content.length), content);
}

/** EISAID ("PNP0A03"): the compressed 32-bit EISA id as a DWord constant. */
export function eisaId(id: string): Uint8Array {
  if (!/^[A-Z]{3}[0-9A-F]{4}$/.test(id)) throw new Error(`invalid EISA id "${id}"`);
  const c = (i: number) => id.charCodeAt(i) - 0x40;
  const value = ((c(0) << 26) | (c(1) << 21) | (c(2) << 16) | parseInt(id.slice(3), 16)) >>> 0;
  // Stored big-endian: swap into a little-endian DWord.
  const swapped =
    ((value >>> 24) | ((value >>> 8) & 0xff00) | ((value << 8) & 0xff0000) | (value << 24)) >>> 0;
  return new Uint8Array([
    DWORD_PREFIX,
    swapped & 0xff,
    (swapped >>> 8) & 0xff,
    (swapped >>> 16) & 0xff,
    swapped >>> 24,
  ]);
}
