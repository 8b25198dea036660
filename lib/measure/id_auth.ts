/**
 * The SNP ID authentication information structure (ID_AUTH_INFO, 4096 bytes; SEV-SNP firmware
 * ABI, SNP_LAUNCH_FINISH): the ID block's signature and the ID public key, as QEMU takes them
 * in `-object sev-snp-guest,id-block=...,id-auth=...` (base64). With an author key, it also
 * holds the author's signature over the ID public key and the author public key (QEMU's
 * `author-key-enabled=on`); without, AUTHOR_KEY_ALGO, ID_KEY_SIG and AUTHOR_KEY stay zero.
 *
 * Signatures and keys use the ABI's ECDSA encodings: r and s, then Qx and Qy, little-endian
 * and zero-extended to 72 bytes, the public key preceded by its curve (P-384 = 2).
 */
import { viewOf } from "../bytes/le.ts";
import { SNP_ID_BLOCK_ALGORITHM_ECDSA_P384_SHA384 } from "../igvm/defs.ts";
import { type AuthorSignature, encodeSevEcdsaPublicKey, toLittleEndian72 } from "./id_block.ts";

/** ID_AUTH_INFO field offsets (firmware ABI table "ID_AUTH_INFO Structure"). */
export const ID_AUTH_INFO = {
  size: 0x1000,
  off: {
    IdKeyAlgo: 0x000, // u32
    AuthKeyAlgo: 0x004, // u32
    IdBlockSig: 0x040, // 0x200: ECDSA signature
    IdKey: 0x240, // 0x404: ECDSA public key
    IdKeySig: 0x680, // 0x200
    AuthorKey: 0x880, // 0x404
  },
} as const;

/** Offsets inside the ABI's ECDSA signature (0x200 bytes). */
const ECDSA_SIGNATURE_OFF = { R: 0x00, S: 0x48 } as const;

/**
 * The 4096-byte ID_AUTH_INFO for the ID block's signature (r, s) made with the ID key (x, y),
 * big-endian, and, when given, the author's signature over the ID key and the author key.
 */
export function encodeIdAuthInfo(
  r: Uint8Array,
  s: Uint8Array,
  x: Uint8Array,
  y: Uint8Array,
  author?: AuthorSignature,
): Uint8Array {
  const out = new Uint8Array(ID_AUTH_INFO.size);
  const view = viewOf(out);
  const o = ID_AUTH_INFO.off;
  view.setUint32(o.IdKeyAlgo, SNP_ID_BLOCK_ALGORITHM_ECDSA_P384_SHA384, true);
  out.set(toLittleEndian72(r), o.IdBlockSig + ECDSA_SIGNATURE_OFF.R);
  out.set(toLittleEndian72(s), o.IdBlockSig + ECDSA_SIGNATURE_OFF.S);
  out.set(encodeSevEcdsaPublicKey({ x, y }), o.IdKey);
  if (author) {
    view.setUint32(o.AuthKeyAlgo, SNP_ID_BLOCK_ALGORITHM_ECDSA_P384_SHA384, true);
    out.set(toLittleEndian72(author.signature.r), o.IdKeySig + ECDSA_SIGNATURE_OFF.R);
    out.set(toLittleEndian72(author.signature.s), o.IdKeySig + ECDSA_SIGNATURE_OFF.S);
    out.set(encodeSevEcdsaPublicKey(author.key), o.AuthorKey);
  }
  return out;
}

/** Standard base64 (with padding), as QEMU's id-block and id-auth properties take it. */
export function toBase64(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}
