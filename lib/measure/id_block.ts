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
import { P384_N, type P384Key } from "./signing_key.ts";

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
 * nonces, so random mode uses @noble/curves (RFC 6979 hedged with fresh randomness), loaded
 * on first use only.
 */
export async function signIdBlock(
  block: Uint8Array,
  key: P384Key,
  deterministic: boolean,
): Promise<{ r: Uint8Array; s: Uint8Array }> {
  let sig: Uint8Array;
  if (deterministic) {
    const cryptoKey = await crypto.subtle.importKey(
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
    const { p384 } = await import("npm:@noble/curves@2.4.0/nist.js");
    sig = p384.sign(block, key.d, { lowS: false, extraEntropy: true });
  }
  return { r: sig.slice(0, 48), s: sig.slice(48, 96) };
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

/** Encodes the IGVM_VHS_SNP_ID_BLOCK body (0x2b8 bytes) for a signed block. */
export async function encodeIgvmIdBlock(
  launchDigest: Uint8Array,
  config: IdBlockConfig,
  key: P384Key,
  deterministic: boolean,
): Promise<Uint8Array> {
  const block = encodeSnpIdBlock(launchDigest, config);
  const { r, s } = await signIdBlock(block, key, deterministic);
  return assembleIgvmIdBlock(block, r, s, key.x, key.y);
}

/** The IGVM_VHS_SNP_ID_BLOCK body for a signed 96-byte ID block (r, s, x, y big-endian). */
export function assembleIgvmIdBlock(
  block: Uint8Array,
  r: Uint8Array,
  s: Uint8Array,
  x: Uint8Array,
  y: Uint8Array,
  compatibilityMask = 1,
): Uint8Array {
  const out = new Uint8Array(IGVM_VHS_SNP_ID_BLOCK.size);
  const view = viewOf(out);
  const o = IGVM_VHS_SNP_ID_BLOCK.off;
  view.setUint32(o.CompatibilityMask, compatibilityMask, true);
  out.set(block.subarray(0, 88), o.Ld); // Ld, FamilyId, ImageId, Version, GuestSvn
  view.setUint32(o.IdKeyAlgorithm, SNP_ID_BLOCK_ALGORITHM_ECDSA_P384_SHA384, true);
  out.set(toLittleEndian72(r), o.IdKeySignature + IGVM_VHS_SNP_ID_BLOCK_SIGNATURE.off.R);
  out.set(toLittleEndian72(s), o.IdKeySignature + IGVM_VHS_SNP_ID_BLOCK_SIGNATURE.off.S);
  const pk = IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY.off;
  view.setUint32(o.IdPublicKey + pk.Curve, SNP_ECDSA_CURVE_P384, true);
  out.set(toLittleEndian72(x), o.IdPublicKey + pk.Qx);
  out.set(toLittleEndian72(y), o.IdPublicKey + pk.Qy);
  return out;
}
