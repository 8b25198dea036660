/**
 * Offline signing inputs: an ECDSA signature (DER, as `openssl dgst -sign`, cloud KMS and
 * PKCS#11 return it, or raw r||s) and a public key (PEM/DER SubjectPublicKeyInfo, or an
 * X.509 certificate, from which only the SubjectPublicKeyInfo is taken). A minimal DER
 * reader: only the few structures needed, each checked.
 */
import {
  decodeOid,
  DER_BIT_STRING,
  DER_CONTEXT_0,
  DER_INTEGER,
  DER_OID,
  DER_SEQUENCE,
  type DerElement,
  derReaders,
} from "./der.ts";
import { base64ToBytes, EC_CURVE_NAMES, OID_EC_PUBLIC_KEY } from "./signing_key.ts";

/** A signature or key that cannot be used. */
export class OfflineSignatureError extends Error {
  override name = "OfflineSignatureError";
}

/** readDer and readDerSequence whose malformed input is an OfflineSignatureError. */
const { element: readTlv, children } = derReaders((m, o) => new OfflineSignatureError(m, o));

/** A DER INTEGER, positive, as big-endian 48 bytes. */
function integer48(t: DerElement, what: string): Uint8Array {
  if (t.tag !== DER_INTEGER) throw new OfflineSignatureError(`${what} is not an INTEGER`);
  let v = t.contents;
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
  if (bytes.length > 0 && bytes[0] === DER_SEQUENCE) {
    try {
      const seq = readTlv(bytes);
      if (seq.end !== bytes.length) throw new OfflineSignatureError("trailing bytes");
      const parts = children(seq);
      if (parts.length !== 2) throw new OfflineSignatureError("not two INTEGERs");
      return {
        r: integer48(parts[0], "r"),
        s: integer48(parts[1], "s"),
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
    return base64ToBytes(m[1]);
  } catch (e) {
    throw new OfflineSignatureError(`the ${label} PEM block is not valid base64`, { cause: e });
  }
}

/** Reads the SubjectPublicKeyInfo at the start of `der`; checks it is an uncompressed P-384 key. */
function parseSpki(der: Uint8Array): P384PublicKey {
  const seq = readTlv(der);
  if (seq.tag !== DER_SEQUENCE) {
    throw new OfflineSignatureError("SubjectPublicKeyInfo: no SEQUENCE");
  }
  const [alg, bits] = children(seq);
  if (!alg || alg.tag !== DER_SEQUENCE || !bits || bits.tag !== DER_BIT_STRING) {
    throw new OfflineSignatureError("SubjectPublicKeyInfo: not an algorithm and a BIT STRING");
  }
  const [algOid, params] = children(alg);
  if (!algOid || algOid.tag !== DER_OID) throw new OfflineSignatureError("no algorithm OID");
  if (decodeOid(algOid.contents) !== OID_EC_PUBLIC_KEY) {
    throw new OfflineSignatureError("not an EC public key; the ID key must be ECDSA P-384");
  }
  const curve = params?.tag === DER_OID ? EC_CURVE_NAMES[decodeOid(params.contents)] : undefined;
  if (curve !== "P-384") {
    throw new OfflineSignatureError(
      `an EC key on ${curve ?? "an unknown curve"}; the ID key must be P-384`,
    );
  }
  const point = bits.contents.subarray(1); // skip the unused-bits byte
  if (bits.contents[0] !== 0 || point.length !== 97 || point[0] !== 4) {
    throw new OfflineSignatureError("the P-384 point is not an uncompressed 97-byte point");
  }
  return { spki: der.slice(0, seq.end), x: point.slice(1, 49), y: point.slice(49, 97) };
}

/** The SubjectPublicKeyInfo of an X.509 certificate (the 7th field of tbsCertificate). */
function spkiOfCertificate(der: Uint8Array): P384PublicKey {
  const cert = readTlv(der);
  const [tbs] = children(cert);
  if (cert.tag !== DER_SEQUENCE || !tbs || tbs.tag !== DER_SEQUENCE) {
    throw new OfflineSignatureError("certificate: no tbsCertificate SEQUENCE");
  }
  const fields = children(tbs);
  const first = fields[0]?.tag === DER_CONTEXT_0 ? 1 : 0; // [0] EXPLICIT version
  // serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
  const at = first + 5;
  const spki = fields[at];
  if (!spki || spki.tag !== DER_SEQUENCE || fields[first].tag !== DER_INTEGER) {
    throw new OfflineSignatureError("certificate: no subjectPublicKeyInfo");
  }
  return parseSpki(tbs.contents.subarray(fields[at - 1].end));
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
      if (spki) return parseSpki(spki);
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
    const outer = readTlv(bytes);
    const inner = readTlv(outer.contents);
    const innerFirst = readTlv(inner.contents);
    return innerFirst.tag === DER_OID ? parseSpki(bytes) : spkiOfCertificate(bytes);
  } catch (e) {
    if (e instanceof OfflineSignatureError) throw e;
    throw new OfflineSignatureError(`not a public key: ${(e as Error).message}`, { cause: e });
  }
}
