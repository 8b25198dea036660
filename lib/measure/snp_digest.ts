/**
 * The SEV-SNP launch digest (SNP firmware ABI, 8.17.2 "PAGE_INFO"): each measured page
 * extends the digest with SHA-384 of a 0x70-byte PAGE_INFO record.
 */
import { sha384 as sha384Js } from "npm:@noble/hashes@2.4.0/sha2.js";
import { defineLayout } from "../bytes/layout.ts";
import { viewOf } from "../bytes/le.ts";

/** PAGE_INFO, 0x70 bytes. */
export const SNP_PAGE_INFO = defineLayout("SNP_PAGE_INFO", 0x70, [
  ["DigestCurrent", 0x00, { bytes: 48 }],
  ["Contents", 0x30, { bytes: 48 }],
  ["Length", 0x60, "u16"],
  ["PageType", 0x62, "u8"],
  ["ImiPageBit", 0x63, "u8"],
  ["LowerVmplPermissions", 0x64, "u32"],
  ["Gpa", 0x68, "u64"],
]);

export const SNP_PAGE_TYPE_NORMAL = 1;
export const SNP_PAGE_TYPE_VMSA = 2;
export const SNP_PAGE_TYPE_ZERO = 3;
export const SNP_PAGE_TYPE_UNMEASURED = 4;
export const SNP_PAGE_TYPE_SECRETS = 5;
export const SNP_PAGE_TYPE_CPUID = 6;

/** SHA-384 of `bytes` (synchronous, in JavaScript: for single pages and records). */
export function sha384(bytes: Uint8Array): Uint8Array {
  return sha384Js(bytes);
}

/** Encodes a PAGE_INFO record. */
export function encodePageInfo(
  current: Uint8Array,
  contents: Uint8Array,
  pageType: number,
  gpa: number,
): Uint8Array {
  const info = new Uint8Array(SNP_PAGE_INFO.size);
  const view = viewOf(info);
  info.set(current, SNP_PAGE_INFO.off.DigestCurrent);
  info.set(contents, SNP_PAGE_INFO.off.Contents);
  view.setUint16(SNP_PAGE_INFO.off.Length, SNP_PAGE_INFO.size, true);
  view.setUint8(SNP_PAGE_INFO.off.PageType, pageType);
  view.setBigUint64(SNP_PAGE_INFO.off.Gpa, BigInt(gpa), true);
  return info;
}

/** SHA-384 of a 112-byte PAGE_INFO record into `out` (48 bytes). */
export type RecordHasher = (record: Uint8Array, out: Uint8Array) => void;

/**
 * A record hasher on hash-wasm's WebAssembly SHA-384, about 2.5 times as fast as the
 * JavaScript one; it costs ~20 ms to load, so it pays off from about 20,000 pages.
 */
export async function loadWasmRecordHasher(): Promise<RecordHasher> {
  const { createWasmSha384 } = await import("../hash/wasm_sha384.ts");
  const h = await createWasmSha384();
  return (record, out) => {
    h.init();
    h.update(record);
    out.set(h.digest("binary"));
  };
}

/** The running launch digest. */
export class SnpLaunchDigest {
  /** The PAGE_INFO record being built; its first 48 bytes hold the current digest. */
  readonly #info = new Uint8Array(SNP_PAGE_INFO.size);
  readonly #view = new DataView(this.#info.buffer);
  /** A fresh SHA-384 state, cloned into `#hasher` for each record: no allocation per page. */
  readonly #fresh = sha384Js.create();
  #hasher = sha384Js.create();
  readonly #out = new Uint8Array(48);
  readonly #hashRecord: RecordHasher | undefined;

  /** `hashRecord` replaces the JavaScript SHA-384 of the records (same result). */
  constructor(hashRecord?: RecordHasher) {
    this.#view.setUint16(SNP_PAGE_INFO.off.Length, SNP_PAGE_INFO.size, true);
    this.#hashRecord = hashRecord;
  }

  /** The digest so far (48 bytes). */
  get value(): Uint8Array {
    return this.#info.slice(0, 48);
  }

  /**
   * Extends the digest with one page. Normal and VMSA pages are measured by the SHA-384 of
   * their contents (`contentsDigest` when the caller hashed it already); unmeasured,
   * secrets and CPUID pages by 48 zero bytes.
   */
  extend(gpa: number, pageType: number, page?: Uint8Array, contentsDigest?: Uint8Array): void {
    const info = this.#info;
    if (pageType === SNP_PAGE_TYPE_NORMAL || pageType === SNP_PAGE_TYPE_VMSA) {
      if (contentsDigest) info.set(contentsDigest, SNP_PAGE_INFO.off.Contents);
      else if (page) info.set(sha384(page), SNP_PAGE_INFO.off.Contents);
      else throw new Error("a measured page needs its contents");
    } else {
      info.fill(0, SNP_PAGE_INFO.off.Contents, SNP_PAGE_INFO.off.Contents + 48);
    }
    this.#view.setUint8(SNP_PAGE_INFO.off.PageType, pageType);
    this.#view.setUint32(SNP_PAGE_INFO.off.Gpa, gpa % 0x1_0000_0000, true);
    this.#view.setUint32(SNP_PAGE_INFO.off.Gpa + 4, Math.floor(gpa / 0x1_0000_0000), true);
    if (this.#hashRecord) this.#hashRecord(info, this.#out);
    else {
      // The 112-byte records are hashed in JS with a reused state, which allocates nothing.
      this.#hasher = this.#fresh._cloneInto(this.#hasher);
      this.#hasher.update(info);
      this.#hasher.digestInto(this.#out);
    }
    info.set(this.#out, SNP_PAGE_INFO.off.DigestCurrent);
  }
}
