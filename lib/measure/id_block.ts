/**
 * The SNP ID block and its IGVM header (IGVM_VHS_SNP_ID_BLOCK): the 96-byte block the PSP
 * checks at launch, signed with ECDSA P-384 over SHA-384.
 */
import { viewOf } from "../bytes/le.ts";
import {
  IGVM_VHS_SNP_ID_BLOCK,
  IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY,
  IGVM_VHS_SNP_ID_BLOCK_SIGNATURE,
  SNP_ECDSA_CURVE_P384,
  SNP_ID_BLOCK_ALGORITHM_ECDSA_P384_SHA384,
} from "../igvm/defs.ts";
import type { IdBlockConfig } from "./tei_config.ts";
import { generateP384Key, P384_N, type P384Key } from "./signing_key.ts";
import { sha384 } from "../hash/wasm_sha384.ts";

/** A P-384 point, big-endian 48-byte coordinates. */
export interface P384Point {
  x: Uint8Array;
  y: Uint8Array;
}

/** An author key's signature (r, s big-endian) over the ID public key, and the author key. */
export interface AuthorSignature {
  signature: { r: Uint8Array; s: Uint8Array };
  key: P384Point;
}

/** Offsets inside the firmware ABI's ECDSA public key structure (0x404 bytes). */
const SEV_ECDSA_PUBLIC_KEY = { Curve: 0x00, Qx: 0x04, Qy: 0x4c, SIZE: 0x404 } as const;

/**
 * The firmware ABI's 0x404-byte ECDSA public key structure of a P-384 key (curve 2, Qx, Qy
 * little-endian in 72 bytes each, the rest zero): what an author key signs (the ID key), and
 * what a report's ID_KEY_DIGEST and AUTHOR_KEY_DIGEST are the SHA-384 of.
 */
export function encodeSevEcdsaPublicKey(key: P384Point): Uint8Array {
  const out = new Uint8Array(SEV_ECDSA_PUBLIC_KEY.SIZE);
  viewOf(out).setUint32(SEV_ECDSA_PUBLIC_KEY.Curve, SNP_ECDSA_CURVE_P384, true);
  out.set(toLittleEndian72(key.x), SEV_ECDSA_PUBLIC_KEY.Qx);
  out.set(toLittleEndian72(key.y), SEV_ECDSA_PUBLIC_KEY.Qy);
  return out;
}

/** SHA-384 of the key's ABI structure: the ID_KEY_DIGEST or AUTHOR_KEY_DIGEST a report shows. */
export function sevKeyDigest(key: P384Point): Uint8Array {
  return sha384(encodeSevEcdsaPublicKey(key));
}

/** The author key's signature over the ID public key (SNP_LAUNCH_FINISH's ID_KEY_SIG). */
export async function signIdKey(
  idKey: P384Point,
  authorKey: P384Key,
  deterministic: boolean,
): Promise<AuthorSignature> {
  const signature = await signIdBlock(encodeSevEcdsaPublicKey(idKey), authorKey, deterministic);
  return { signature, key: { x: authorKey.x, y: authorKey.y } };
}

/** Checks an author signature over the ID public key. */
export function verifyAuthorSignature(idKey: P384Point, author: AuthorSignature): Promise<boolean> {
  const { r, s } = author.signature;
  return verifyIdBlock(encodeSevEcdsaPublicKey(idKey), r, s, author.key.x, author.key.y);
}

/** The 96-byte ID block: launch digest, family id, image id, version, guest SVN, policy. */
export function encodeSnpIdBlock(launchDigest: Uint8Array, config: IdBlockConfig): Uint8Array {
  const block = new Uint8Array(96);
  const view = viewOf(block);
  block.set(launchDigest, 0);
  block.set(config.familyId, 48);
  block.set(config.imageId, 64);
  view.setUint32(80, config.version, true);
  view.setUint32(84, config.guestSvn, true);
  view.setBigUint64(88, config.policy, true);
  return block;
}

const ECDSA_SHA384 = { name: "ECDSA", hash: "SHA-384" } as const;

function bigFromBytes(be: Uint8Array): bigint {
  let v = 0n;
  for (const b of be) v = (v << 8n) | BigInt(b);
  return v;
}

function bytesFromBig(v: bigint, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = length - 1; i >= 0; i--, v >>= 8n) out[i] = Number(v & 0xffn);
  return out;
}

function jwkOf(key: { x: Uint8Array; y: Uint8Array; d?: Uint8Array }): JsonWebKey {
  const b64url = (b: Uint8Array) =>
    btoa(String.fromCharCode(...b)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const jwk: JsonWebKey = { kty: "EC", crv: "P-384", x: b64url(key.x), y: b64url(key.y) };
  if (key.d) jwk.d = b64url(key.d);
  return jwk;
}

/**
 * Signs the block with ECDSA P-384 over SHA-384: r and s, big-endian 48 bytes each, s not
 * normalised (lowS off), as the original signs.
 *
 * Deterministic signing uses WebCrypto, whose ECDSA nonces are RFC 6979's: its signature is
 * byte for byte the original's `-sign_deterministic` one. WebCrypto cannot draw random
 * nonces, so random mode signs with a fresh nonce of its own (signWithRandomNonce).
 */
export async function signIdBlock(
  block: Uint8Array,
  key: P384Key,
  deterministic: boolean,
): Promise<{ r: Uint8Array; s: Uint8Array }> {
  let sig: Uint8Array;
  if (deterministic) {
    const cryptoKey = key.signer ?? await crypto.subtle.importKey(
      "jwk",
      jwkOf(key),
      {
        name: "ECDSA",
        namedCurve: "P-384",
      },
      false,
      ["sign"],
    );
    sig = new Uint8Array(
      await crypto.subtle.sign(ECDSA_SHA384, cryptoKey, block as Uint8Array<ArrayBuffer>),
    );
  } else {
    sig = await signWithRandomNonce(block, key);
  }
  return { r: sig.slice(0, 48), s: sig.slice(48, 96) };
}

/**
 * ECDSA P-384 over SHA-384 with a random nonce k (FIPS 186-5 6.4.1), as the original's
 * default signing: k is a fresh key from the system's secure generator, and WebCrypto gives
 * its public point R = kG; then r = R.x mod n and s = k^-1 (z + r d) mod n, where z is the
 * SHA-384 of the block (384 bits, the size of n: nothing to truncate). s is left as it comes,
 * high half of the time, as the original's. The signature is checked with WebCrypto's
 * verifier before it is returned. The BigInt arithmetic is not constant-time: signing runs on
 * the builder's own machine.
 */
async function signWithRandomNonce(block: Uint8Array, key: P384Key): Promise<Uint8Array> {
  const d = bigFromBytes(key.d);
  const z = bigFromBytes(sha384(block));
  for (;;) {
    const nonce = await generateP384Key();
    const r = bigFromBytes(nonce.x) % P384_N;
    const k = bigFromBytes(nonce.d);
    const s = modPow(k, P384_N - 2n, P384_N) * ((z + r * d) % P384_N) % P384_N;
    if (r === 0n || s === 0n) continue; // (2^-380 likely) draw again, as the standard says
    const rBytes = bytesFromBig(r, 48);
    const sBytes = bytesFromBig(s, 48);
    if (!await verifyIdBlock(block, rBytes, sBytes, key.x, key.y)) {
      throw new Error("the ID block's signature failed its own check (is the key valid?)");
    }
    const sig = new Uint8Array(96);
    sig.set(rBytes, 0);
    sig.set(sBytes, 48);
    return sig;
  }
}

/** base^exponent mod m, by squaring (m prime: base^(m-2) is base's inverse). */
function modPow(base: bigint, exponent: bigint, m: bigint): bigint {
  let result = 1n;
  base %= m;
  for (; exponent > 0n; exponent >>= 1n) {
    if (exponent & 1n) result = result * base % m;
    base = base * base % m;
  }
  return result;
}

/**
 * Checks a signature over the block against a public key. WebCrypto's verifier rejects a
 * high s, which the original's signatures have half of the time; (r, n - s) is valid exactly
 * when (r, s) is, so a high s is folded to the low half before checking.
 */
export async function verifyIdBlock(
  block: Uint8Array,
  r: Uint8Array,
  s: Uint8Array,
  x: Uint8Array,
  y: Uint8Array,
): Promise<boolean> {
  const sValue = bigFromBytes(s);
  if (sValue === 0n || sValue >= P384_N || r.length !== 48 || s.length !== 48) return false;
  const low = sValue > P384_N / 2n ? P384_N - sValue : sValue;
  const sig = new Uint8Array(96);
  sig.set(r, 0);
  sig.set(bytesFromBig(low, 48), 48);
  try {
    const pub = await crypto.subtle.importKey(
      "jwk",
      jwkOf({ x, y }),
      {
        name: "ECDSA",
        namedCurve: "P-384",
      },
      false,
      ["verify"],
    );
    return await crypto.subtle.verify(ECDSA_SHA384, pub, sig, block as Uint8Array<ArrayBuffer>);
  } catch {
    return false;
  }
}

/** Big-endian 48 bytes -> little-endian, zero-padded to 72 (the IGVM/SNP encoding). */
export function toLittleEndian72(be: Uint8Array): Uint8Array {
  const out = new Uint8Array(72);
  for (let i = 0; i < be.length; i++) out[i] = be[be.length - 1 - i];
  return out;
}

/** Little-endian 72 bytes -> big-endian 48 (inverse of toLittleEndian72). */
export function fromLittleEndian72(le: Uint8Array): Uint8Array {
  const out = new Uint8Array(48);
  for (let i = 0; i < 48; i++) out[i] = le[47 - i];
  return out;
}

/**
 * Encodes the IGVM_VHS_SNP_ID_BLOCK body (0x2b8 bytes) for a signed block; with `authorKey`,
 * the author key signs the ID key and the block carries both (AuthorKeyEnabled).
 */
export async function encodeIgvmIdBlock(
  launchDigest: Uint8Array,
  config: IdBlockConfig,
  key: P384Key,
  deterministic: boolean,
  authorKey?: P384Key,
): Promise<Uint8Array> {
  const block = encodeSnpIdBlock(launchDigest, config);
  const { r, s } = await signIdBlock(block, key, deterministic);
  const author = authorKey ? await signIdKey(key, authorKey, deterministic) : undefined;
  return assembleIgvmIdBlock(block, r, s, key.x, key.y, 1, author);
}

/**
 * The IGVM_VHS_SNP_ID_BLOCK body for a signed 96-byte ID block (r, s, x, y big-endian) and,
 * when given, the author key's signature over the ID key.
 */
export function assembleIgvmIdBlock(
  block: Uint8Array,
  r: Uint8Array,
  s: Uint8Array,
  x: Uint8Array,
  y: Uint8Array,
  compatibilityMask = 1,
  author?: AuthorSignature,
): Uint8Array {
  const out = new Uint8Array(IGVM_VHS_SNP_ID_BLOCK.size);
  const view = viewOf(out);
  const o = IGVM_VHS_SNP_ID_BLOCK.off;
  view.setUint32(o.CompatibilityMask, compatibilityMask, true);
  out.set(block.subarray(0, 88), o.Ld); // Ld, FamilyId, ImageId, Version, GuestSvn
  view.setUint32(o.IdKeyAlgorithm, SNP_ID_BLOCK_ALGORITHM_ECDSA_P384_SHA384, true);
  setSignature(out, o.IdKeySignature, { r, s });
  setPublicKey(out, o.IdPublicKey, { x, y });
  if (author) {
    view.setUint8(o.AuthorKeyEnabled, 1);
    view.setUint32(o.AuthorKeyAlgorithm, SNP_ID_BLOCK_ALGORITHM_ECDSA_P384_SHA384, true);
    setSignature(out, o.AuthorKeySignature, author.signature);
    setPublicKey(out, o.AuthorPublicKey, author.key);
  }
  return out;
}

function setSignature(out: Uint8Array, at: number, sig: { r: Uint8Array; s: Uint8Array }) {
  out.set(toLittleEndian72(sig.r), at + IGVM_VHS_SNP_ID_BLOCK_SIGNATURE.off.R);
  out.set(toLittleEndian72(sig.s), at + IGVM_VHS_SNP_ID_BLOCK_SIGNATURE.off.S);
}

function setPublicKey(out: Uint8Array, at: number, key: P384Point) {
  const pk = IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY.off;
  viewOf(out).setUint32(at + pk.Curve, SNP_ECDSA_CURVE_P384, true);
  out.set(toLittleEndian72(key.x), at + pk.Qx);
  out.set(toLittleEndian72(key.y), at + pk.Qy);
}

/** The fields of an IGVM_VHS_SNP_ID_BLOCK body; keys and signatures big-endian. */
export interface IgvmIdBlock {
  ld: Uint8Array;
  familyId: Uint8Array;
  imageId: Uint8Array;
  version: number;
  guestSvn: number;
  idKeyAlgorithm: number;
  idKeyCurve: number;
  signature: { r: Uint8Array; s: Uint8Array };
  idKey: P384Point;
  /** The author fields, when AuthorKeyEnabled is set. */
  author?: AuthorSignature & { algorithm: number; curve: number };
  /** AuthorKeyEnabled's raw value (0 or 1 in a valid block). */
  authorKeyEnabled: number;
}

/** Decodes an IGVM_VHS_SNP_ID_BLOCK body (0x2b8 bytes). */
export function decodeIgvmIdBlock(body: Uint8Array): IgvmIdBlock {
  const v = viewOf(body);
  const o = IGVM_VHS_SNP_ID_BLOCK.off;
  const sig = IGVM_VHS_SNP_ID_BLOCK_SIGNATURE.off;
  const pk = IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY.off;
  const big = (at: number) => fromLittleEndian72(body.subarray(at, at + 72));
  const signatureAt = (at: number) => ({ r: big(at + sig.R), s: big(at + sig.S) });
  const keyAt = (at: number) => ({ x: big(at + pk.Qx), y: big(at + pk.Qy) });
  const authorKeyEnabled = v.getUint8(o.AuthorKeyEnabled);
  return {
    ld: body.slice(o.Ld, o.Ld + 48),
    familyId: body.slice(o.FamilyId, o.FamilyId + 16),
    imageId: body.slice(o.ImageId, o.ImageId + 16),
    version: v.getUint32(o.Version, true),
    guestSvn: v.getUint32(o.GuestSvn, true),
    idKeyAlgorithm: v.getUint32(o.IdKeyAlgorithm, true),
    idKeyCurve: v.getUint32(o.IdPublicKey + pk.Curve, true),
    signature: signatureAt(o.IdKeySignature),
    idKey: keyAt(o.IdPublicKey),
    authorKeyEnabled,
    author: authorKeyEnabled
      ? {
        algorithm: v.getUint32(o.AuthorKeyAlgorithm, true),
        curve: v.getUint32(o.AuthorPublicKey + pk.Curve, true),
        signature: signatureAt(o.AuthorKeySignature),
        key: keyAt(o.AuthorPublicKey),
      }
      : undefined,
  };
}
