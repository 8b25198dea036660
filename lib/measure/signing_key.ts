/**
 * The ID-block signing key: a P-384 private key from PEM, or a fresh one. Keys are read with
 * a little DER and imported into WebCrypto, so no Node-compatibility module loads.
 */
import {
  decodeOid,
  DER_CONTEXT_0,
  DER_INTEGER,
  DER_OCTET_STRING,
  DER_OID,
  DER_SEQUENCE,
  encodeDer,
  encodeOid,
  readDer,
  readDerSequence,
} from "./der.ts";

/** A P-384 private key: the scalar and the public point, big-endian 48 bytes each. */
export interface P384Key {
  d: Uint8Array;
  x: Uint8Array;
  y: Uint8Array;
  /** The same key as WebCrypto's ECDSA signing key, when it was imported already. */
  signer?: CryptoKey;
}

/** A key that cannot be used. */
export class KeyError extends Error {
  /** The class name, for messages and logs. */
  override name = "KeyError";
}

/** id-ecPublicKey, the algorithm of an EC key (RFC 5480). */
export const OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1";
const OID_SECP384R1 = "1.3.132.0.34";
/** Names of the key types and curves an error may meet, as OpenSSL names them. */
const KEY_TYPES: Record<string, string> = {
  "1.2.840.113549.1.1.1": "rsa",
  "1.2.840.113549.1.1.10": "rsa-pss",
  "1.2.840.10040.4.1": "dsa",
  "1.3.101.110": "x25519",
  "1.3.101.111": "x448",
  "1.3.101.112": "ed25519",
  "1.3.101.113": "ed448",
};
/** Names of the named curves an EC key may be on, by OID. */
export const EC_CURVE_NAMES: Record<string, string> = {
  "1.2.840.10045.3.1.7": "P-256",
  "1.3.132.0.34": "P-384",
  "1.3.132.0.35": "P-521",
  "1.3.132.0.10": "secp256k1",
};
const NOT_A_KEY = "not a PEM private key (SEC1 EC PRIVATE KEY or PKCS#8)";
const ECDSA_P384 = { name: "ECDSA", namedCurve: "P-384" } as const;

// Uint8Array.fromBase64 rather than atob: the first atob of a process costs about 2 ms.
function base64UrlToBytes(s: string): Uint8Array {
  return Uint8Array.fromBase64(s, { alphabet: "base64url" });
}

/** The bytes of base64 text, whitespace (as in a PEM body) ignored. */
export function base64ToBytes(s: string): Uint8Array {
  try {
    return Uint8Array.fromBase64(s.replace(/\s+/g, ""));
  } catch {
    throw new SyntaxError("not valid base64");
  }
}

function curveError(oid: string | undefined): KeyError {
  const curve = oid === undefined ? "an unknown curve" : EC_CURVE_NAMES[oid] ?? `curve ${oid}`;
  return new KeyError(`an EC key on ${curve}; the ID block needs P-384`);
}

/** PKCS#8 PrivateKeyInfo around a SEC1 ECPrivateKey on P-384. */
function wrapSec1InPkcs8(sec1: Uint8Array): Uint8Array {
  return encodeDer(
    DER_SEQUENCE,
    encodeDer(DER_INTEGER, new Uint8Array([0])),
    encodeDer(
      DER_SEQUENCE,
      encodeDer(DER_OID, encodeOid(OID_EC_PUBLIC_KEY)),
      encodeDer(DER_OID, encodeOid(OID_SECP384R1)),
    ),
    encodeDer(DER_OCTET_STRING, sec1),
  );
}

/** Checks a PKCS#8 key's algorithm is ECDSA on P-384 (else says what it is). */
function checkPkcs8(der: Uint8Array): void {
  const [, algorithm] = readDerSequence(readDer(der).contents);
  if (!algorithm || algorithm.tag !== DER_SEQUENCE) throw new RangeError("no algorithm");
  const [alg, params] = readDerSequence(algorithm.contents);
  const type = decodeOid(alg.contents);
  if (type !== OID_EC_PUBLIC_KEY) {
    throw new KeyError(`a ${KEY_TYPES[type] ?? "non-EC"} key; the ID block needs ECDSA P-384`);
  }
  const curve = params?.tag === DER_OID ? decodeOid(params.contents) : undefined;
  if (curve !== OID_SECP384R1) throw curveError(curve);
}

/** Checks a SEC1 key's curve is P-384 (the parameters it names) and wraps it in PKCS#8. */
function pkcs8FromSec1(der: Uint8Array): Uint8Array {
  const fields = readDerSequence(readDer(der).contents);
  const params = fields.find((f) => f.tag === DER_CONTEXT_0);
  const oid = params ? readDer(params.contents) : undefined;
  const curve = oid?.tag === DER_OID ? decodeOid(oid.contents) : undefined;
  if (curve !== OID_SECP384R1) throw curveError(curve);
  return wrapSec1InPkcs8(der.subarray(0, readDer(der).end));
}

/**
 * Imports a PKCS#8 P-384 key and reads its scalar and public point (from its JWK); the
 * imported key is kept for signing, which then need not import it again.
 */
async function keyFromPkcs8(pkcs8: Uint8Array): Promise<P384Key> {
  const key = await crypto.subtle.importKey(
    "pkcs8",
    pkcs8 as Uint8Array<ArrayBuffer>,
    ECDSA_P384,
    true,
    ["sign"],
  );
  return { ...keyFromJwk(await crypto.subtle.exportKey("jwk", key)), signer: key };
}

function keyFromJwk(jwk: JsonWebKey): P384Key {
  if (jwk.crv !== "P-384" || !jwk.d || !jwk.x || !jwk.y) throw curveError(undefined);
  return { d: base64UrlToBytes(jwk.d), x: base64UrlToBytes(jwk.x), y: base64UrlToBytes(jwk.y) };
}

/** Reads a PEM private key (SEC1 "EC PRIVATE KEY" or PKCS#8) and checks it is P-384. */
export async function parseP384PrivateKeyPem(pem: string): Promise<P384Key> {
  const blocks = [...pem.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----([^-]*)-----END \1-----/g)];
  const block = blocks.find((b) => /PRIVATE KEY$/.test(b[1]));
  if (!block) throw new KeyError(NOT_A_KEY);
  const label = block[1];
  if (label === "ENCRYPTED PRIVATE KEY") {
    throw new KeyError(`${NOT_A_KEY}: the key is encrypted; decrypt it first`);
  }
  if (label !== "EC PRIVATE KEY" && label !== "PRIVATE KEY") {
    const type = label.replace(/ PRIVATE KEY$/, "").toLowerCase();
    throw new KeyError(`a ${type} key; the ID block needs ECDSA P-384`);
  }
  let pkcs8: Uint8Array;
  try {
    const der = base64ToBytes(block[2]);
    if (label === "EC PRIVATE KEY") pkcs8 = pkcs8FromSec1(der);
    else {
      checkPkcs8(der);
      pkcs8 = der;
    }
  } catch (e) {
    if (e instanceof KeyError) throw e;
    throw new KeyError(NOT_A_KEY, { cause: e });
  }
  try {
    return await keyFromPkcs8(pkcs8);
  } catch (e) {
    throw new KeyError(`${NOT_A_KEY}: not a valid P-384 private key`, { cause: e });
  }
}

/** The order n of P-384's base point (SEC 2, secp384r1). */
export const P384_N =
  0xffffffff_ffffffff_ffffffff_ffffffff_ffffffff_ffffffff_c7634d81_f4372ddf_581a0db2_48b0a77a_ecec196a_ccc52973n;

/**
 * A fresh random P-384 key: a scalar from the system's secure generator, drawn again in the
 * (2^-190 likely) case it is not in [1, n). WebCrypto's generateKey would do the same but
 * costs about 50 ms on its first call in Deno; importing the scalar costs 2 ms.
 */
export function generateP384Key(): Promise<P384Key> {
  for (;;) {
    const d = crypto.getRandomValues(new Uint8Array(48));
    const v = BigInt("0x" + Array.from(d, (b) => b.toString(16).padStart(2, "0")).join(""));
    if (v > 0n && v < P384_N) return keyFromScalar(d);
  }
}

/** The key for scalar `d` (big-endian, 48 bytes): WebCrypto derives the public point. */
export function keyFromScalar(d: Uint8Array): Promise<P384Key> {
  const sec1 = encodeDer(
    DER_SEQUENCE,
    encodeDer(DER_INTEGER, new Uint8Array([1])),
    encodeDer(DER_OCTET_STRING, d),
  );
  return keyFromPkcs8(wrapSec1InPkcs8(sec1));
}
