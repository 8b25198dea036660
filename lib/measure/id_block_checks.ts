/**
 * What the PSP reads of an IGVM SNP ID block, checked without the signature: the loader
 * copies the IGVM_VHS_SNP_ID_BLOCK fields into SNP_LAUNCH_FINISH's ID_BLOCK and ID_AUTH_INFO
 * (SEV-SNP firmware ABI, "SNP_LAUNCH_FINISH"), whose big numbers are 72-byte little-endian
 * fields of which P-384 uses 48: non-zero high bytes make another number, so the launch fails
 * however valid the low 48 bytes are. The signature itself is checked by the caller.
 */
import { viewOf } from "../bytes/le.ts";
import {
  IGVM_VHS_SNP_ID_BLOCK,
  IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY,
  IGVM_VHS_SNP_ID_BLOCK_SIGNATURE,
  SNP_ECDSA_CURVE_P384,
  SNP_ID_BLOCK_ALGORITHM_ECDSA_P384_SHA384,
} from "../igvm/defs.ts";

/** The bytes of a P-384 number in its 72-byte field; the rest must be zero. */
const P384_BYTES = 48;
/** The ID block VERSION the firmware accepts. */
const SNP_ID_BLOCK_VERSION = 1;

/** The compatibility masks the file's platform headers declare. */
export interface PlatformMasks {
  /** The SEV-SNP platform's mask; undefined when the file has no SEV-SNP platform. */
  snp?: number;
  /** Every platform header's mask, OR-ed. */
  all: number;
}

const o = IGVM_VHS_SNP_ID_BLOCK.off;
const sig = IGVM_VHS_SNP_ID_BLOCK_SIGNATURE.off;
const key = IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY.off;

/** Problems of the 72-byte number `name` at `at`: high bytes not zero. */
function bigNumberProblems(body: Uint8Array, at: number, name: string): string[] {
  const high = body.subarray(at + P384_BYTES, at + 72);
  return high.some((b) => b !== 0)
    ? [`${name} has non-zero bytes above its 48 (the PSP reads all 72)`]
    : [];
}

/** Problems of a signature (R, S) and public key (curve, reserved, Qx, Qy) pair. */
function keyPairProblems(body: Uint8Array, sigAt: number, keyAt: number, who: string): string[] {
  const v = viewOf(body);
  const out = [
    ...bigNumberProblems(body, sigAt + sig.R, `the ${who} signature's R`),
    ...bigNumberProblems(body, sigAt + sig.S, `the ${who} signature's S`),
    ...bigNumberProblems(body, keyAt + key.Qx, `the ${who} public key's Qx`),
    ...bigNumberProblems(body, keyAt + key.Qy, `the ${who} public key's Qy`),
  ];
  const curve = v.getUint32(keyAt + key.Curve, true);
  if (curve !== SNP_ECDSA_CURVE_P384) {
    out.push(`the ${who} public key's curve ${curve}, expected 2 (P-384)`);
  }
  if (v.getUint32(keyAt + key.Reserved, true) !== 0) {
    out.push(`the ${who} public key's reserved field is not zero`);
  }
  return out;
}

/**
 * Problems of the author key part when AuthorKeyEnabled is 1: the PSP then checks the ID
 * key against the author key's signature, so an enabled flag with no author key fails the
 * launch. (Verifying the author signature belongs with author-key support.)
 */
export function authorKeyProblems(body: Uint8Array): string[] {
  const v = viewOf(body);
  const algorithm = v.getUint32(o.AuthorKeyAlgorithm, true);
  const keyBytes = body.subarray(
    o.AuthorPublicKey,
    o.AuthorPublicKey + IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY.size,
  );
  const sigBytes = body.subarray(
    o.AuthorKeySignature,
    o.AuthorKeySignature + IGVM_VHS_SNP_ID_BLOCK_SIGNATURE.size,
  );
  if (keyBytes.every((b) => b === 0) || sigBytes.every((b) => b === 0)) {
    return ["AuthorKeyEnabled is 1 but there is no author key and signature"];
  }
  const out: string[] = [];
  if (algorithm !== SNP_ID_BLOCK_ALGORITHM_ECDSA_P384_SHA384) {
    out.push(`author key algorithm ${algorithm}, expected 1 (ECDSA P-384 SHA-384)`);
  }
  out.push(...keyPairProblems(body, o.AuthorKeySignature, o.AuthorPublicKey, "author key"));
  return out;
}

/**
 * Every problem of an IGVM_VHS_SNP_ID_BLOCK body (0x2b8 bytes) short of its signature: the
 * compatibility mask (it must name the SEV-SNP platform, and no bit of no platform), the
 * reserved bytes, the version, the ID key's algorithm and curve, the high bytes of R, S, Qx
 * and Qy, and the author key when it is enabled. Each is one sentence, without a prefix.
 */
export function idBlockProblems(body: Uint8Array, platforms: PlatformMasks): string[] {
  const v = viewOf(body);
  const out: string[] = [];
  const mask = v.getUint32(o.CompatibilityMask, true);
  const hex = (n: number) => `0x${n.toString(16)}`;
  if (mask === 0) out.push("compatibility mask 0 names no platform: no loader uses the block");
  else if (platforms.snp !== undefined && (mask & platforms.snp) === 0) {
    out.push(
      `compatibility mask ${hex(mask)} does not name the SEV-SNP platform (${
        hex(platforms.snp)
      }): no loader uses the block`,
    );
  }
  const unknown = mask & ~platforms.all;
  if (mask !== 0 && unknown) {
    out.push(
      `compatibility mask ${hex(mask)} names ${hex(unknown)}, which no platform header declares`,
    );
  }
  if (body.subarray(o.Reserved, o.Reserved + 3).some((b) => b !== 0)) {
    out.push("reserved bytes are not zero");
  }
  const version = v.getUint32(o.Version, true);
  if (version !== SNP_ID_BLOCK_VERSION) {
    out.push(`version ${version}: the PSP accepts version ${SNP_ID_BLOCK_VERSION} only`);
  }
  const algorithm = v.getUint32(o.IdKeyAlgorithm, true);
  if (algorithm !== SNP_ID_BLOCK_ALGORITHM_ECDSA_P384_SHA384) {
    out.push(`key algorithm ${algorithm}, expected 1 (ECDSA P-384 SHA-384)`);
  }
  out.push(...keyPairProblems(body, o.IdKeySignature, o.IdPublicKey, "ID key"));
  const authorKeyEnabled = body[o.AuthorKeyEnabled];
  if (authorKeyEnabled > 1) out.push(`AuthorKeyEnabled is ${authorKeyEnabled}, expected 0 or 1`);
  else if (authorKeyEnabled === 1) out.push(...authorKeyProblems(body));
  return out;
}
