/**
 * Every problem of an IGVM SNP ID block, in one place (`idBlockVerdict`): what the PSP reads,
 * the signature and the author key's signature. The loader copies the IGVM_VHS_SNP_ID_BLOCK
 * fields into SNP_LAUNCH_FINISH's ID_BLOCK and ID_AUTH_INFO (SEV-SNP firmware ABI,
 * "SNP_LAUNCH_FINISH"), whose big numbers are 72-byte little-endian fields of which P-384 uses
 * 48: non-zero high bytes make another number, so the launch fails however valid the low 48
 * bytes are, and a signature that verifies over the low 48 bytes is not one the PSP accepts.
 * `verify`, `verify --loader`, `inspect` and `attest --image` all answer from it.
 */
import { hex, viewOf } from "../bytes/le.ts";
import { decodeIgvmIdBlock, verifyAuthorSignature, verifyIdBlock } from "./id_block.ts";
import type { IgvmFile } from "../igvm/reader.ts";
import { directiveMask, findSnpCompatibilityMask } from "../igvm/directives.ts";
import {
  IGVM_VHS_SNP_ID_BLOCK,
  IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY,
  IGVM_VHS_SNP_ID_BLOCK_SIGNATURE,
  IGVM_VHT_SUPPORTED_PLATFORM,
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

/** The compatibility masks of a file's platform headers. */
export function platformMasksOf(h: IgvmFile): PlatformMasks {
  let all = 0;
  for (const d of h.directives) if (d.type === IGVM_VHT_SUPPORTED_PLATFORM) all |= directiveMask(d);
  return { snp: findSnpCompatibilityMask(h), all };
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
 * Problems of the author key part when AuthorKeyEnabled is 0: the IGVM format (the igvm
 * crate's IGVM_VHS_SNP_ID_BLOCK) requires the author fields to be zero then, and the loaders
 * disagree about such a block: QEMU enables the author key whenever the author key's curve is
 * set (it ignores AuthorKeyEnabled), Cloud Hypervisor passes AuthorKeyEnabled. So the guest's
 * report would show an author key under one and none under the other.
 */
function disabledAuthorProblems(body: Uint8Array): string[] {
  const fields = body.subarray(o.AuthorKeyAlgorithm, o.AuthorKeyAlgorithm + 4);
  const rest = body.subarray(
    o.AuthorKeySignature,
    o.AuthorPublicKey + IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY.size,
  );
  if (fields.every((b) => b === 0) && rest.every((b) => b === 0)) return [];
  return [
    "AuthorKeyEnabled is 0 but the author key fields are not zero (the IGVM format requires " +
    "them zero; QEMU would pass them to the PSP as an author key, Cloud Hypervisor would not)",
  ];
}

/** Problems of the ID key part the PSP checks the signature with: algorithm, R, S, key. */
function idKeyProblems(body: Uint8Array): string[] {
  const algorithm = viewOf(body).getUint32(o.IdKeyAlgorithm, true);
  return [
    ...(algorithm === SNP_ID_BLOCK_ALGORITHM_ECDSA_P384_SHA384
      ? []
      : [`key algorithm ${algorithm}, expected 1 (ECDSA P-384 SHA-384)`]),
    ...keyPairProblems(body, o.IdKeySignature, o.IdPublicKey, "ID key"),
  ];
}

/** Problems of the compatibility mask: which platforms' loaders use the block at all. */
function maskProblems(body: Uint8Array, platforms: PlatformMasks): string[] {
  const out: string[] = [];
  const mask = viewOf(body).getUint32(o.CompatibilityMask, true);
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
  return out;
}

/** Problems of the reserved bytes, the version and the ID key (not its signature). */
function commonProblems(body: Uint8Array): string[] {
  const v = viewOf(body);
  const out: string[] = [];
  if (body.subarray(o.Reserved, o.Reserved + 3).some((b) => b !== 0)) {
    out.push("reserved bytes are not zero");
  }
  const version = v.getUint32(o.Version, true);
  if (version !== SNP_ID_BLOCK_VERSION) {
    out.push(`version ${version}: the PSP accepts version ${SNP_ID_BLOCK_VERSION} only`);
  }
  out.push(...idKeyProblems(body));
  return out;
}

/**
 * Problems of the author part when the author key is `enabled` (AuthorKeyEnabled, or the
 * AUTH_KEY_EN a loader passes). `formatRules`: also the IGVM format's rule that a disabled
 * author key's fields are zero (the PSP ignores them).
 */
function authorProblems(body: Uint8Array, enabled: number, formatRules: boolean): string[] {
  if (enabled > 1) return [`AuthorKeyEnabled is ${enabled}, expected 0 or 1`];
  if (enabled === 1) return authorKeyProblems(body);
  return formatRules ? disabledAuthorProblems(body) : [];
}

/** Whether the block holds an author key and signature (not all zero). */
function hasAuthorKey(body: Uint8Array): boolean {
  const nonZero = (at: number, n: number) => body.subarray(at, at + n).some((b) => b !== 0);
  return nonZero(o.AuthorPublicKey, IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY.size) &&
    nonZero(o.AuthorKeySignature, IGVM_VHS_SNP_ID_BLOCK_SIGNATURE.size);
}

/** Problems of the fields the PSP reads, short of the signatures (all but the mask). */
function pspFieldProblems(body: Uint8Array): string[] {
  return [...commonProblems(body), ...authorProblems(body, body[o.AuthorKeyEnabled], true)];
}

/**
 * Every problem of an IGVM_VHS_SNP_ID_BLOCK body (0x2b8 bytes) short of its signature: the
 * compatibility mask (it must name the SEV-SNP platform, and no bit of no platform), the
 * reserved bytes, the version, the ID key's algorithm and curve, the high bytes of R, S, Qx
 * and Qy, the author key when it is enabled and its fields being zero when it is not. Each is
 * one sentence, without a prefix. (`idBlockVerdict` adds the signatures.)
 */
export function idBlockProblems(body: Uint8Array, platforms: PlatformMasks): string[] {
  return [...maskProblems(body, platforms), ...pspFieldProblems(body)];
}

/** An ID block's verdict: every problem, and whether each signature is one the PSP accepts. */
export interface IdBlockVerdict {
  /** Every problem, one sentence each without a prefix; empty when the block is sound. */
  problems: string[];
  /**
   * The problems the PSP meets when a loader passes the block (all but the compatibility
   * mask's, which decide whether a loader passes it): any of them fails SNP_LAUNCH_FINISH.
   */
  launchProblems: string[];
  /**
   * Whether the PSP accepts the ID key's signature: it verifies over the 96-byte ID block, and
   * the algorithm, R, S and the key (curve, reserved field, Qx, Qy) are what the PSP reads.
   */
  signatureValid: boolean;
  /** With AuthorKeyEnabled: the same for the author key's signature over the ID key. */
  authorSignatureValid?: boolean;
}

/** The sentence for an ID key signature that does not verify. */
export const ID_SIGNATURE_PROBLEM = "the signature does not verify with the block's public key";
/** The sentence for an author signature that does not verify. */
export const AUTHOR_SIGNATURE_PROBLEM =
  "the author key's signature over the ID key does not verify";

/**
 * Checks an IGVM_VHS_SNP_ID_BLOCK body (0x2b8 bytes) completely: every field the PSP reads
 * (`idBlockProblems`), the ID key's signature over the 96-byte ID block with `policy` (the
 * file's guest policy; without one the signature is not valid), and with AuthorKeyEnabled the
 * author key's signature over the ID key. The one answer to "would the PSP take this block".
 *
 * `authorKeyEnabled` is the AUTH_KEY_EN a loader passes to the PSP when it is not the block's
 * AuthorKeyEnabled (QEMU goes by the author key's curve): `launchProblems` are then those of
 * the launch with it, while `problems` stay those of the file.
 */
export async function idBlockVerdict(
  body: Uint8Array,
  policy: bigint | undefined,
  platforms: PlatformMasks,
  options: { authorKeyEnabled?: number } = {},
): Promise<IdBlockVerdict> {
  const common = commonProblems(body);
  const decoded = decodeIgvmIdBlock(body);
  const block = new Uint8Array(96);
  block.set(body.subarray(o.Ld, o.Ld + 88));
  viewOf(block).setBigUint64(88, policy ?? 0n, true);
  const { r, s } = decoded.signature;
  const verifies = policy !== undefined &&
    await verifyIdBlock(block, r, s, decoded.idKey.x, decoded.idKey.y);
  const signature = verifies ? [] : [ID_SIGNATURE_PROBLEM];
  const inFile = body[o.AuthorKeyEnabled];
  const passed = options.authorKeyEnabled ?? inFile;
  // The author signature, read whatever the flag says; no verdict on a missing key (its own
  // problem says so).
  const enabledCopy = body.slice();
  enabledCopy[o.AuthorKeyEnabled] = 1;
  const author = decodeIgvmIdBlock(enabledCopy).author!;
  const authorVerifies = (inFile || passed) !== 0 && hasAuthorKey(body)
    ? await verifyAuthorSignature(decoded.idKey, author)
    : undefined;
  const authorSignature = (enabled: number) =>
    enabled !== 0 && authorVerifies === false ? [AUTHOR_SIGNATURE_PROBLEM] : [];
  const launchProblems = [
    ...common,
    ...authorProblems(body, passed, false),
    ...signature,
    ...authorSignature(passed),
  ];
  return {
    problems: [
      ...maskProblems(body, platforms),
      ...common,
      ...authorProblems(body, inFile, true),
      ...signature,
      ...authorSignature(inFile),
    ],
    launchProblems,
    signatureValid: verifies && idKeyProblems(body).length === 0,
    ...(inFile === 0 ? {} : {
      authorSignatureValid: authorVerifies === true && authorKeyProblems(body).length === 0,
    }),
  };
}
