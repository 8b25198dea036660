/**
 * The SEV-SNP launch digest (SNP firmware ABI, 8.17.2 "PAGE_INFO"): each measured page
 * extends the digest with SHA-384 of a 0x70-byte PAGE_INFO record.
 */
import { defineLayout } from "../bytes/layout.ts";
import { viewOf } from "../bytes/le.ts";
import { sha384, Sha384RecordChain } from "../hash/wasm_sha384.ts";

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

/**
 * SHA-384 of a 4 KiB page of zeros: the contents digest of a measured zero page (a constant,
 * so that nothing is hashed when the module loads; tests/sha384_test.ts checks it).
 */
export const ZERO_PAGE_DIGEST: Uint8Array = Uint8Array.fromHex(
  "c0e59a3e3ffbd3b5c75428fb36432facabc745944296ff515f737c4fef4efc64" +
    "586809f7a16f56354a1eaecf2aa8d774",
);

export const SNP_PAGE_TYPE_NORMAL = 1;
export const SNP_PAGE_TYPE_VMSA = 2;
export const SNP_PAGE_TYPE_ZERO = 3;
export const SNP_PAGE_TYPE_UNMEASURED = 4;
export const SNP_PAGE_TYPE_SECRETS = 5;
export const SNP_PAGE_TYPE_CPUID = 6;

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

/** The running launch digest, on the WebAssembly SHA-384 (no allocation per page). */
export class SnpLaunchDigest {
  /** The PAGE_INFO record being built, in the hasher's memory; it starts with the digest. */
  readonly #chain = new Sha384RecordChain();
  readonly #info = this.#chain.record;
  readonly #view = viewOf(this.#info);

  constructor() {
    this.#view.setUint16(SNP_PAGE_INFO.off.Length, SNP_PAGE_INFO.size, true);
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
    this.#step(gpa, pageType);
  }

  /**
   * As {@link extend}, with a measured page's contents digest at `digests[at, at + 48)` (a
   * batch's digests side by side): no view or copy per page.
   */
  extendAt(gpa: number, pageType: number, digests: Uint8Array, at: number): void {
    const info = this.#info;
    const contents = SNP_PAGE_INFO.off.Contents;
    if (pageType === SNP_PAGE_TYPE_NORMAL || pageType === SNP_PAGE_TYPE_VMSA) {
      for (let i = 0; i < 48; i++) info[contents + i] = digests[at + i];
    } else {
      info.fill(0, contents, contents + 48);
    }
    this.#step(gpa, pageType);
  }

  /** Sets the record's page type and GPA and folds it into the digest. */
  #step(gpa: number, pageType: number): void {
    this.#view.setUint8(SNP_PAGE_INFO.off.PageType, pageType);
    this.#view.setUint32(SNP_PAGE_INFO.off.Gpa, gpa % 0x1_0000_0000, true);
    this.#view.setUint32(SNP_PAGE_INFO.off.Gpa + 4, Math.floor(gpa / 0x1_0000_0000), true);
    this.#chain.step();
  }
}
