/**
 * The SNP ID authentication information structure (ID_AUTH_INFO, 4096 bytes; SEV-SNP firmware
 * ABI, SNP_LAUNCH_FINISH): the ID block's signature and the ID public key, as QEMU takes them
 * in `-object sev-snp-guest,id-block=...,id-auth=...` (base64). There is no author key:
 * AUTHOR_KEY_ALGO, ID_KEY_SIG and AUTHOR_KEY stay zero (`author-key-enabled` off).
 *
 * Signatures and keys use the ABI's ECDSA encodings: r and s, then Qx and Qy, little-endian
 * and zero-extended to 72 bytes, the public key preceded by its curve (P-384 = 2).
 */
import { viewOf } from "../bytes/le.ts";
import { SNP_ECDSA_CURVE_P384, SNP_ID_BLOCK_ALGORITHM_ECDSA_P384_SHA384 } from "../igvm/defs.ts";
import { toLittleEndian72 } from "./id_block.ts";

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

/** Offsets inside the ABI's ECDSA signature (0x200 bytes) and public key (0x404 bytes). */
const ECDSA_SIGNATURE_OFF = { R: 0x00, S: 0x48 } as const;
const ECDSA_PUBLIC_KEY_OFF = { Curve: 0x00, Qx: 0x04, Qy: 0x4c } as const;

/** The 4096-byte ID_AUTH_INFO for a signature (r, s) made with the key (x, y), big-endian. */
export function encodeIdAuthInfo(
  r: Uint8Array,
  s: Uint8Array,
  x: Uint8Array,
  y: Uint8Array,
): Uint8Array {
  const out = new Uint8Array(ID_AUTH_INFO.size);
  const view = viewOf(out);
  const o = ID_AUTH_INFO.off;
  view.setUint32(o.IdKeyAlgo, SNP_ID_BLOCK_ALGORITHM_ECDSA_P384_SHA384, true);
  out.set(toLittleEndian72(r), o.IdBlockSig + ECDSA_SIGNATURE_OFF.R);
  out.set(toLittleEndian72(s), o.IdBlockSig + ECDSA_SIGNATURE_OFF.S);
  view.setUint32(o.IdKey + ECDSA_PUBLIC_KEY_OFF.Curve, SNP_ECDSA_CURVE_P384, true);
  out.set(toLittleEndian72(x), o.IdKey + ECDSA_PUBLIC_KEY_OFF.Qx);
  out.set(toLittleEndian72(y), o.IdKey + ECDSA_PUBLIC_KEY_OFF.Qy);
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
