/**
 * The little DER (X.690) the signing key needs: reading the TLVs of a SEC1 or PKCS#8 key, and
 * writing the PKCS#8 wrapper (RFC 5208, RFC 5915 section 3) WebCrypto imports.
 */

/** One DER element: its tag, its contents, and where it ends in the input. */
export interface DerElement {
  tag: number;
  contents: Uint8Array;
  end: number;
}

/** Reads the element at `at`; throws a RangeError for anything malformed. */
export function readDer(bytes: Uint8Array, at = 0): DerElement {
  if (at + 2 > bytes.length) throw new RangeError("DER element cut short");
  const tag = bytes[at];
  let length = bytes[at + 1];
  let start = at + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0 || n > 3 || start + n > bytes.length) throw new RangeError("bad DER length");
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + bytes[start + i];
    start += n;
  }
  const end = start + length;
  if (end > bytes.length) throw new RangeError("DER element longer than its input");
  return { tag, contents: bytes.subarray(start, end), end };
}

/** The elements inside a constructed element's contents. */
export function readDerSequence(contents: Uint8Array): DerElement[] {
  const out: DerElement[] = [];
  for (let at = 0; at < contents.length;) {
    const e = readDer(contents, at);
    out.push(e);
    at = e.end;
  }
  return out;
}

/**
 * readDer and readDerSequence whose failures are errors of the caller's kind: `fail` makes
 * one from the message, with the RangeError as its cause.
 */
export function derReaders(fail: (message: string, options: ErrorOptions) => Error): {
  element(bytes: Uint8Array, at?: number): DerElement;
  children(parent: DerElement): DerElement[];
} {
  return {
    element(bytes, at = 0) {
      try {
        return readDer(bytes, at);
      } catch (e) {
        throw fail((e as Error).message, { cause: e });
      }
    },
    children(parent) {
      try {
        return readDerSequence(parent.contents);
      } catch (e) {
        throw fail((e as Error).message, { cause: e });
      }
    },
  };
}

/** Encodes one element. */
export function encodeDer(tag: number, ...parts: Uint8Array[]): Uint8Array {
  const length = parts.reduce((n, p) => n + p.length, 0);
  const head = length < 0x80
    ? [tag, length]
    : length < 0x100
    ? [tag, 0x81, length]
    : [tag, 0x82, length >> 8, length & 0xff];
  if (length > 0xffff) throw new RangeError("DER element too long");
  const out = new Uint8Array(head.length + length);
  out.set(head);
  let at = head.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The dotted form of an OBJECT IDENTIFIER's contents. */
export function decodeOid(contents: Uint8Array): string {
  const arcs: number[] = [];
  let v = 0;
  for (const b of contents) {
    v = v * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      if (arcs.length === 0) arcs.push(v < 80 ? Math.floor(v / 40) : 2, v < 80 ? v % 40 : v - 80);
      else arcs.push(v);
      v = 0;
    }
  }
  return arcs.join(".");
}

/** The contents of an OBJECT IDENTIFIER for a dotted form. */
export function encodeOid(dotted: string): Uint8Array {
  const [a, b, ...rest] = dotted.split(".").map(Number);
  const out = [a * 40 + b];
  for (const arc of rest) {
    const bytes = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) {
      bytes.unshift((v & 0x7f) | 0x80);
    }
    out.push(...bytes);
  }
  return Uint8Array.from(out);
}

export const DER_INTEGER = 0x02;
export const DER_BIT_STRING = 0x03;
export const DER_OCTET_STRING = 0x04;
export const DER_OID = 0x06;
export const DER_SEQUENCE = 0x30;
/** [0] EXPLICIT, constructed: SEC1's ECParameters. */
export const DER_CONTEXT_0 = 0xa0;
