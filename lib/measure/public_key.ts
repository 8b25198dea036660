/**
 * Offline signing inputs: an ECDSA signature (DER, as `openssl dgst -sign`, cloud KMS and
 * PKCS#11 return it, or raw r||s) and a public key (PEM/DER SubjectPublicKeyInfo, or an
 * X.509 certificate, from which only the SubjectPublicKeyInfo is taken). A minimal DER
 * reader: only the few structures needed, each checked.
 */
import { toHex } from "../bytes/le.ts";

/** A signature or key that cannot be used. */
export class OfflineSignatureError extends Error {
  override name = "OfflineSignatureError";
}

interface Tlv {
  tag: number;
  /** Start of the contents. */
  start: number;
  /** End of the contents (exclusive). */
  end: number;
}

/** Reads one DER TLV at `at` within `[0, limit)`. */
function readTlv(der: Uint8Array, at: number, limit = der.length): Tlv {
  if (at + 2 > limit) throw new OfflineSignatureError("DER: truncated");
  const tag = der[at];
  let len = der[at + 1];
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3 || start + n > limit) throw new OfflineSignatureError("DER: bad length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[start + i];
    start += n;
  }
  if (start + len > limit) throw new OfflineSignatureError("DER: a value runs past its parent");
  return { tag, start, end: start + len };
}

/** The children of a constructed TLV. */
function children(der: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.start; at < parent.end;) {
    const t = readTlv(der, at, parent.end);
    out.push(t);
    at = t.end;
  }
  return out;
}

const SEQUENCE = 0x30;
const INTEGER = 0x02;
const BIT_STRING = 0x03;
const OID = 0x06;

/** A DER INTEGER, positive, as big-endian 48 bytes. */
function integer48(der: Uint8Array, t: Tlv, what: string): Uint8Array {
  if (t.tag !== INTEGER) throw new OfflineSignatureError(`${what} is not an INTEGER`);
  let v = der.subarray(t.start, t.end);
  if (v.length === 0 || v[0] & 0x80) throw new OfflineSignatureError(`${what} is not positive`);
  while (v.length > 1 && v[0] === 0) v = v.subarray(1);
  if (v.length > 48) throw new OfflineSignatureError(`${what} is longer than 48 bytes`);
  const out = new Uint8Array(48);
  out.set(v, 48 - v.length);
  return out;
}

/** r and s, big-endian 48 bytes each. */
export interface EcdsaSignature {
  r: Uint8Array;
  s: Uint8Array;
  format: "der" | "raw";
}

/**
 * Parses an ECDSA P-384 signature: DER `SEQUENCE { INTEGER r, INTEGER s }`, or 96 raw bytes
 * r||s (IEEE P1363, what WebCrypto returns).
 */
export function parseEcdsaSignature(bytes: Uint8Array): EcdsaSignature {
  if (bytes.length > 0 && bytes[0] === SEQUENCE) {
    try {
      const seq = readTlv(bytes, 0);
      if (seq.end !== bytes.length) throw new OfflineSignatureError("trailing bytes");
      const parts = children(bytes, seq);
      if (parts.length !== 2) throw new OfflineSignatureError("not two INTEGERs");
      return {
        r: integer48(bytes, parts[0], "r"),
        s: integer48(bytes, parts[1], "s"),
        format: "der",
      };
    } catch (e) {
      if (bytes.length !== 96) {
        throw new OfflineSignatureError(
          `not a DER ECDSA signature (${(e as Error).message}) nor 96 raw bytes r||s`,
          { cause: e },
        );
      }
    }
  }
  if (bytes.length !== 96) {
    throw new OfflineSignatureError(
      `${bytes.length} bytes: neither a DER ECDSA signature nor 96 raw bytes r||s (P-384)`,
    );
  }
  return { r: bytes.slice(0, 48), s: bytes.slice(48, 96), format: "raw" };
}

const OID_EC_PUBLIC_KEY = "2a8648ce3d0201"; // 1.2.840.10045.2.1
const CURVES: Record<string, string> = {
  "2b81040022": "P-384", // 1.3.132.0.34
  "2a8648ce3d030107": "P-256", // 1.2.840.10045.3.1.7
  "2b81040023": "P-521", // 1.3.132.0.35
  "2b8104000a": "secp256k1",
};

/** A P-384 public key: its SubjectPublicKeyInfo and the point, big-endian 48 bytes each. */
export interface P384PublicKey {
  spki: Uint8Array;
  x: Uint8Array;
  y: Uint8Array;
}

/** Decodes the base64 body of the first PEM block labelled `label`, if any. */
function pemBlock(text: string, label: string): Uint8Array | undefined {
  const m = new RegExp(`-----BEGIN ${label}-----([^-]*)-----END ${label}-----`).exec(text);
  if (!m) return undefined;
  try {
    return Uint8Array.from(atob(m[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  } catch (e) {
    throw new OfflineSignatureError(`the ${label} PEM block is not valid base64`, { cause: e });
  }
}

/** Reads a SubjectPublicKeyInfo and checks it is an uncompressed P-384 key. */
function parseSpki(der: Uint8Array, at: number): P384PublicKey {
  const seq = readTlv(der, at);
  if (seq.tag !== SEQUENCE) throw new OfflineSignatureError("SubjectPublicKeyInfo: no SEQUENCE");
  const [alg, bits] = children(der, seq);
  if (!alg || alg.tag !== SEQUENCE || !bits || bits.tag !== BIT_STRING) {
    throw new OfflineSignatureError("SubjectPublicKeyInfo: not an algorithm and a BIT STRING");
  }
  const [algOid, params] = children(der, alg);
  if (!algOid || algOid.tag !== OID) throw new OfflineSignatureError("no algorithm OID");
  const algHex = toHex(der.subarray(algOid.start, algOid.end));
  if (algHex !== OID_EC_PUBLIC_KEY) {
    throw new OfflineSignatureError("not an EC public key; the ID key must be ECDSA P-384");
  }
  const curveHex = params?.tag === OID ? toHex(der.subarray(params.start, params.end)) : "";
  const curve = CURVES[curveHex];
  if (curve !== "P-384") {
    throw new OfflineSignatureError(
      `an EC key on ${curve ?? "an unknown curve"}; the ID key must be P-384`,
    );
  }
  const point = der.subarray(bits.start + 1, bits.end); // skip the unused-bits byte
  if (der[bits.start] !== 0 || point.length !== 97 || point[0] !== 4) {
    throw new OfflineSignatureError("the P-384 point is not an uncompressed 97-byte point");
  }
  return { spki: der.slice(at, seq.end), x: point.slice(1, 49), y: point.slice(49, 97) };
}

/** The SubjectPublicKeyInfo of an X.509 certificate (the 7th field of tbsCertificate). */
function spkiOfCertificate(der: Uint8Array): P384PublicKey {
  const cert = readTlv(der, 0);
  const [tbs] = children(der, cert);
  if (cert.tag !== SEQUENCE || !tbs || tbs.tag !== SEQUENCE) {
    throw new OfflineSignatureError("certificate: no tbsCertificate SEQUENCE");
  }
  const fields = children(der, tbs);
  const first = fields[0]?.tag === 0xa0 ? 1 : 0; // [0] EXPLICIT version
  // serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
  const spki = fields[first + 5];
  if (!spki || spki.tag !== SEQUENCE || fields[first].tag !== INTEGER) {
    throw new OfflineSignatureError("certificate: no subjectPublicKeyInfo");
  }
  return parseSpki(der, findTlvStart(der, tbs, first + 5));
}

/** The offset of the `index`th child TLV of `parent` (its tag byte). */
function findTlvStart(der: Uint8Array, parent: Tlv, index: number): number {
  let at = parent.start;
  for (let i = 0; i < index; i++) at = readTlv(der, at, parent.end).end;
  return at;
}

/**
 * Reads the ID public key: PEM "PUBLIC KEY" or "CERTIFICATE", or the same in DER. Refuses
 * anything but an uncompressed P-384 key.
 */
export function parseP384PublicKey(bytes: Uint8Array): P384PublicKey {
  const text = new TextDecoder("latin1").decode(bytes);
  try {
    if (text.includes("-----BEGIN")) {
      const spki = pemBlock(text, "PUBLIC KEY");
      if (spki) return parseSpki(spki, 0);
      const cert = pemBlock(text, "CERTIFICATE");
      if (cert) return spkiOfCertificate(cert);
      if (/-----BEGIN (EC |ENCRYPTED )?PRIVATE KEY-----/.test(text)) {
        throw new OfflineSignatureError(
          "a private key: give the public key (openssl pkey -pubout) or a certificate",
        );
      }
      throw new OfflineSignatureError("no PUBLIC KEY or CERTIFICATE PEM block");
    }
    // DER: a certificate starts SEQUENCE { SEQUENCE { [0] or INTEGER ... } }, an SPKI
    // SEQUENCE { SEQUENCE { OID ... } }.
    const outer = readTlv(bytes, 0);
    const inner = readTlv(bytes, outer.start, outer.end);
    const innerFirst = readTlv(bytes, inner.start, inner.end);
    return innerFirst.tag === OID ? parseSpki(bytes, 0) : spkiOfCertificate(bytes);
  } catch (e) {
    if (e instanceof OfflineSignatureError) throw e;
    throw new OfflineSignatureError(`not a public key: ${(e as Error).message}`, { cause: e });
  }
}
