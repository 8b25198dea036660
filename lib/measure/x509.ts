/**
 * The little X.509 (RFC 5280) that checking AMD's certificate chain needs: the parts of a
 * certificate, its extensions, and RSASSA-PSS signatures (RFC 8017, as AMD signs ARK, ASK and
 * VCEK) checked with WebCrypto. Every structure read is checked; anything else is refused.
 */
import {
  decodeOid,
  DER_BIT_STRING,
  DER_CONTEXT_0,
  DER_INTEGER,
  DER_OCTET_STRING,
  DER_OID,
  DER_SEQUENCE,
  type DerElement,
  derReaders,
} from "./der.ts";
import { base64ToBytes, EC_CURVE_NAMES, OID_EC_PUBLIC_KEY } from "./signing_key.ts";

/** A certificate that cannot be read. */
export class CertificateError extends Error {
  /** The class name, for messages and logs. */
  override name = "CertificateError";
}

const OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1";
const OID_RSASSA_PSS = "1.2.840.113549.1.1.10";
const OID_MGF1 = "1.2.840.113549.1.1.8";
const OID_COMMON_NAME = "2.5.4.3";
const HASHES: Record<string, "SHA-256" | "SHA-384" | "SHA-512"> = {
  "2.16.840.1.101.3.4.2.1": "SHA-256",
  "2.16.840.1.101.3.4.2.2": "SHA-384",
  "2.16.840.1.101.3.4.2.3": "SHA-512",
};
const DER_BOOLEAN = 0x01;
const DER_UTC_TIME = 0x17;
const DER_GENERALIZED_TIME = 0x18;
const DER_CONTEXT_1 = 0xa1;
const DER_CONTEXT_2 = 0xa2;
const DER_CONTEXT_3 = 0xa3;

/** A certificate's public key: RSA (n, e big-endian) or an EC point (x, y big-endian). */
export type CertificateKey =
  | { kind: "rsa"; n: Uint8Array; e: Uint8Array }
  | { kind: "ec"; curve: string; x: Uint8Array; y: Uint8Array };

/** The parts of a certificate that the chain check reads. */
export interface Certificate {
  der: Uint8Array;
  /** The DER of tbsCertificate, which the signature covers. */
  tbs: Uint8Array;
  /** RSASSA-PSS parameters of the signature, or undefined for any other algorithm. */
  pss?: { hash: string; saltLength: number };
  signatureAlgorithm: string;
  signature: Uint8Array;
  /** The DER of the issuer and subject Names, compared byte for byte. */
  issuer: Uint8Array;
  subject: Uint8Array;
  /** The commonName of the subject and the issuer ("" when none). */
  subjectName: string;
  issuerName: string;
  notBefore: Date;
  notAfter: Date;
  publicKey: CertificateKey | { kind: "other"; algorithm: string };
  /** Extension values (the contents of extnValue), by OID. */
  extensions: Map<string, Uint8Array>;
}

const { element, children } = derReaders((m, o) => new CertificateError(m, o));

function expect<T extends DerElement>(e: T | undefined, tag: number, what: string): T {
  if (!e || e.tag !== tag) throw new CertificateError(`${what} is missing or malformed`);
  return e;
}

/** The children of a constructed element, each with its whole encoding (tag, length, contents). */
function childrenWithEncodings(parent: DerElement): (DerElement & { encoding: Uint8Array })[] {
  const out: (DerElement & { encoding: Uint8Array })[] = [];
  const c = parent.contents;
  for (let at = 0; at < c.length;) {
    const e = element(c, at);
    out.push({ ...e, encoding: c.subarray(at, e.end) });
    at = e.end;
  }
  return out;
}

function oidOf(e: DerElement | undefined, what: string): string {
  return decodeOid(expect(e, DER_OID, what).contents);
}

function unsigned(e: DerElement | undefined, what: string): Uint8Array {
  let v = expect(e, DER_INTEGER, what).contents;
  if (v.length === 0 || v[0] & 0x80) throw new CertificateError(`${what} is not positive`);
  while (v.length > 1 && v[0] === 0) v = v.subarray(1);
  return v;
}

function smallInteger(e: DerElement | undefined, what: string): number {
  const v = unsigned(e, what);
  if (v.length > 4) throw new CertificateError(`${what} is too large`);
  return v.reduce((n, b) => n * 256 + b, 0);
}

function commonName(name: DerElement): string {
  for (const set of children(name)) {
    for (const atv of children(set)) {
      const [oid, value] = children(atv);
      if (oid?.tag === DER_OID && decodeOid(oid.contents) === OID_COMMON_NAME && value) {
        return new TextDecoder().decode(value.contents);
      }
    }
  }
  return "";
}

function timeOf(e: DerElement | undefined, what: string): Date {
  if (!e || (e.tag !== DER_UTC_TIME && e.tag !== DER_GENERALIZED_TIME)) {
    throw new CertificateError(`${what} is missing or malformed`);
  }
  const text = new TextDecoder("latin1").decode(e.contents);
  const m = e.tag === DER_UTC_TIME
    ? /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(text)
    : /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(text);
  if (!m) throw new CertificateError(`${what} ${JSON.stringify(text)} is not a UTC time`);
  let year = Number(m[1]);
  if (e.tag === DER_UTC_TIME) year += year < 50 ? 2000 : 1900;
  return new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), +m[4], +m[5], +m[6]));
}

/** RSASSA-PSS-params (RFC 8017 A.2.3): hash, MGF1 with the same hash, salt length. */
function pssParams(params: DerElement | undefined): { hash: string; saltLength: number } {
  let hash = "SHA-1";
  let mgfHash = "SHA-1";
  let saltLength = 20;
  for (const p of params && params.tag === DER_SEQUENCE ? children(params) : []) {
    const [inner] = children(p);
    if (p.tag === DER_CONTEXT_0) {
      hash = HASHES[oidOf(children(expect(inner, DER_SEQUENCE, "PSS hash"))[0], "PSS hash")] ??
        "unknown";
    } else if (p.tag === DER_CONTEXT_1) {
      const [mgf, mgfParams] = children(expect(inner, DER_SEQUENCE, "PSS mask generation"));
      if (oidOf(mgf, "PSS mask generation") !== OID_MGF1) mgfHash = "unknown";
      else {
        mgfHash =
          HASHES[oidOf(children(expect(mgfParams, DER_SEQUENCE, "MGF1 hash"))[0], "MGF1 hash")] ??
            "unknown";
      }
    } else if (p.tag === DER_CONTEXT_2) {
      saltLength = smallInteger(inner, "PSS salt length");
    } else if (p.tag === DER_CONTEXT_3 && smallInteger(inner, "PSS trailer field") !== 1) {
      hash = "unknown"; // trailerFieldBC (1) is the only one defined
    }
  }
  if (mgfHash !== hash) hash = "unknown";
  return { hash, saltLength };
}

function publicKeyOf(spki: DerElement): Certificate["publicKey"] {
  const [alg, bits] = children(spki);
  const [algOid, params] = children(expect(alg, DER_SEQUENCE, "subjectPublicKeyInfo algorithm"));
  const algorithm = oidOf(algOid, "public key algorithm");
  const key = expect(bits, DER_BIT_STRING, "subjectPublicKey").contents;
  if (key[0] !== 0) throw new CertificateError("subjectPublicKey has unused bits");
  if (algorithm === OID_RSA_ENCRYPTION || algorithm === OID_RSASSA_PSS) {
    const [n, e] = children(element(key, 1));
    return { kind: "rsa", n: unsigned(n, "RSA modulus"), e: unsigned(e, "RSA exponent") };
  }
  if (algorithm === OID_EC_PUBLIC_KEY) {
    const curveOid = params?.tag === DER_OID ? decodeOid(params.contents) : "";
    const curve = EC_CURVE_NAMES[curveOid] ?? (curveOid || "unknown");
    const point = key.subarray(1);
    if (point[0] !== 4 || point.length % 2 !== 1) {
      throw new CertificateError("the EC public key is not an uncompressed point");
    }
    const half = (point.length - 1) / 2;
    return { kind: "ec", curve, x: point.slice(1, 1 + half), y: point.slice(1 + half) };
  }
  return { kind: "other", algorithm };
}

/** Reads one DER certificate. */
export function parseCertificate(der: Uint8Array): Certificate {
  const cert = element(der);
  if (cert.tag !== DER_SEQUENCE || cert.end !== der.length) {
    throw new CertificateError("not a DER certificate (no single outer SEQUENCE)");
  }
  const [tbs, sigAlg, sigValue] = childrenWithEncodings(cert);
  expect(tbs, DER_SEQUENCE, "tbsCertificate");
  const fields = childrenWithEncodings(tbs);
  let i = fields[0]?.tag === DER_CONTEXT_0 ? 1 : 0;
  expect(fields[i++], DER_INTEGER, "serialNumber");
  // RFC 5280 4.1.1.2: the outer signatureAlgorithm, which the signature does not cover, must
  // be the signed one.
  const signedAlgorithm = expect(fields[i++], DER_SEQUENCE, "signature");
  if (!sigAlg || !sameBytes(sigAlg.encoding, signedAlgorithm.encoding)) {
    throw new CertificateError("signatureAlgorithm differs from the tbsCertificate's signature");
  }
  const issuer = expect(fields[i++], DER_SEQUENCE, "issuer");
  const [notBefore, notAfter] = children(expect(fields[i++], DER_SEQUENCE, "validity"));
  const subject = expect(fields[i++], DER_SEQUENCE, "subject");
  const spki = expect(fields[i++], DER_SEQUENCE, "subjectPublicKeyInfo");
  const extensions = new Map<string, Uint8Array>();
  for (; i < fields.length; i++) {
    if (fields[i].tag !== DER_CONTEXT_3) continue;
    const [list] = children(fields[i]);
    for (const ext of children(expect(list, DER_SEQUENCE, "extensions"))) {
      const parts = children(ext);
      const oid = oidOf(parts[0], "extension id");
      const value = parts[1]?.tag === DER_BOOLEAN ? parts[2] : parts[1];
      if (extensions.has(oid)) throw new CertificateError(`extension ${oid} appears twice`);
      extensions.set(oid, expect(value, DER_OCTET_STRING, `extension ${oid}`).contents);
    }
  }
  const [algOid, algParams] = children(expect(sigAlg, DER_SEQUENCE, "signatureAlgorithm"));
  const signatureAlgorithm = oidOf(algOid, "signature algorithm");
  const signature = expect(sigValue, DER_BIT_STRING, "signatureValue").contents;
  if (signature[0] !== 0) throw new CertificateError("signatureValue has unused bits");
  return {
    der,
    tbs: tbs.encoding,
    pss: signatureAlgorithm === OID_RSASSA_PSS ? pssParams(algParams) : undefined,
    signatureAlgorithm,
    signature: signature.subarray(1),
    issuer: issuer.encoding,
    subject: subject.encoding,
    subjectName: commonName(subject),
    issuerName: commonName(issuer),
    notBefore: timeOf(notBefore, "notBefore"),
    notAfter: timeOf(notAfter, "notAfter"),
    publicKey: publicKeyOf(spki),
    extensions,
  };
}

/** Every certificate of a PEM file (in order), or the one certificate of a DER file. */
export function parseCertificates(bytes: Uint8Array): Certificate[] {
  const text = new TextDecoder("latin1").decode(bytes);
  if (!text.includes("-----BEGIN")) return [parseCertificate(bytes)];
  const blocks = [...text.matchAll(/-----BEGIN CERTIFICATE-----([^-]*)-----END CERTIFICATE-----/g)];
  if (blocks.length === 0) throw new CertificateError("no CERTIFICATE PEM block");
  return blocks.map((b) => {
    let der: Uint8Array;
    try {
      der = base64ToBytes(b[1]);
    } catch (e) {
      throw new CertificateError("a CERTIFICATE PEM block is not valid base64", { cause: e });
    }
    return parseCertificate(der);
  });
}

const base64Url = (b: Uint8Array) =>
  btoa(String.fromCharCode(...b)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

/**
 * Checks that `issuer`'s RSA key made `cert`'s RSASSA-PSS signature over its tbsCertificate
 * (WebCrypto; the hash, MGF1 hash and salt length are the certificate's own).
 */
export async function verifyCertificateSignature(
  cert: Certificate,
  issuer: Certificate,
): Promise<boolean> {
  const key = issuer.publicKey;
  if (
    !cert.pss || !["SHA-256", "SHA-384", "SHA-512"].includes(cert.pss.hash) || key.kind !== "rsa"
  ) {
    return false;
  }
  try {
    const imported = await crypto.subtle.importKey(
      "jwk",
      { kty: "RSA", n: base64Url(key.n), e: base64Url(key.e) },
      { name: "RSA-PSS", hash: cert.pss.hash },
      false,
      ["verify"],
    );
    return await crypto.subtle.verify(
      { name: "RSA-PSS", saltLength: cert.pss.saltLength },
      imported,
      cert.signature as Uint8Array<ArrayBuffer>,
      cert.tbs as Uint8Array<ArrayBuffer>,
    );
  } catch {
    return false;
  }
}

/** True when the two byte strings are equal. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
