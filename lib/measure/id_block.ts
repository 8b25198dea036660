/**
 * The SNP ID block and its IGVM header (IGVM_VHS_SNP_ID_BLOCK): the 96-byte block the PSP
 * checks at launch, signed with ECDSA P-384 over SHA-384.
 */
import { p384 } from "@noble/curves/nist";
import { viewOf } from "../bytes/le.ts";
import {
  IGVM_VHS_SNP_ID_BLOCK,
  IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY,
  IGVM_VHS_SNP_ID_BLOCK_SIGNATURE,
  SNP_ECDSA_CURVE_P384,
  SNP_ID_BLOCK_ALGORITHM_ECDSA_P384_SHA384,
} from "../igvm/defs.ts";
import type { IdBlockConfig } from "./tei_config.ts";
import type { P384Key } from "./signing_key.ts";

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

/** Signs the block: r and s, big-endian 48 bytes each. RFC 6979 nonces when deterministic. */
export function signIdBlock(block: Uint8Array, key: P384Key, deterministic: boolean) {
  // The original does not normalise s (lowS off); noble hashes with SHA-384 itself.
  const sig = p384.sign(block, key.d, { lowS: false, extraEntropy: !deterministic });
  return { r: sig.slice(0, 48), s: sig.slice(48, 96) };
}

/** Checks a signature over the block against a public key. */
export function verifyIdBlock(
  block: Uint8Array,
  r: Uint8Array,
  s: Uint8Array,
  x: Uint8Array,
  y: Uint8Array,
) {
  const pub = new Uint8Array(97);
  pub[0] = 4;
  pub.set(x, 1);
  pub.set(y, 49);
  const sig = new Uint8Array(96);
  sig.set(r, 0);
  sig.set(s, 48);
  try {
    return p384.verify(sig, block, pub, { lowS: false });
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
export function encodeIgvmIdBlock(
  launchDigest: Uint8Array,
  config: IdBlockConfig,
  key: P384Key,
  deterministic: boolean,
): Uint8Array {
  const block = encodeSnpIdBlock(launchDigest, config);
  const { r, s } = signIdBlock(block, key, deterministic);
  const out = new Uint8Array(IGVM_VHS_SNP_ID_BLOCK.size);
  const view = viewOf(out);
  const o = IGVM_VHS_SNP_ID_BLOCK.off;
  view.setUint32(o.CompatibilityMask, 1, true);
  out.set(block.subarray(0, 88), o.Ld); // Ld, FamilyId, ImageId, Version, GuestSvn
  view.setUint32(o.IdKeyAlgorithm, SNP_ID_BLOCK_ALGORITHM_ECDSA_P384_SHA384, true);
  out.set(toLittleEndian72(r), o.IdKeySignature + IGVM_VHS_SNP_ID_BLOCK_SIGNATURE.off.R);
  out.set(toLittleEndian72(s), o.IdKeySignature + IGVM_VHS_SNP_ID_BLOCK_SIGNATURE.off.S);
  const pk = IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY.off;
  view.setUint32(o.IdPublicKey + pk.Curve, SNP_ECDSA_CURVE_P384, true);
  out.set(toLittleEndian72(key.x), o.IdPublicKey + pk.Qx);
  out.set(toLittleEndian72(key.y), o.IdPublicKey + pk.Qy);
  return out;
}
