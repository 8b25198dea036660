/**
 * Encoders of IGVM variable headers into one header section, in order. The section's size
 * is known before any page is read (it depends only on the page count), so page data can
 * be streamed to its final file offset while the headers are built.
 */
import { alignUp, PAGE_SIZE, setU64, viewOf } from "../bytes/le.ts";
import type { Layout } from "../bytes/layout.ts";
import {
  IGVM_FIXED_HEADER,
  IGVM_FORMAT_VERSION_1,
  IGVM_HEADER_ALIGNMENT,
  IGVM_HEADER_PAD_BYTE,
  IGVM_MAGIC_VALUE,
  IGVM_PLATFORM_TYPE_SEV_SNP,
  IGVM_SNP_PLATFORM_VERSION,
  IGVM_VHS_PAGE_DATA,
  IGVM_VHS_PARAMETER,
  IGVM_VHS_PARAMETER_AREA,
  IGVM_VHS_PARAMETER_INSERT,
  IGVM_VHS_SNP_ID_BLOCK,
  IGVM_VHS_SNP_POLICY,
  IGVM_VHS_SUPPORTED_PLATFORM,
  IGVM_VHS_VARIABLE_HEADER,
  IGVM_VHS_VP_CONTEXT,
  IGVM_VHT_MEMORY_MAP,
  IGVM_VHT_PAGE_DATA,
  IGVM_VHT_PARAMETER_AREA,
  IGVM_VHT_PARAMETER_INSERT,
  IGVM_VHT_SNP_ID_BLOCK,
  IGVM_VHT_SNP_POLICY,
  IGVM_VHT_SUPPORTED_PLATFORM,
  IGVM_VHT_VP_CONTEXT,
  IGVM_VHT_VP_COUNT_PARAMETER,
} from "./defs.ts";
import { IGVM_VHS_MEMORY_MAP_ENTRY } from "./defs.ts";

/** Bytes one variable header takes in the file: type+length, body, '0' padding. */
export function variableHeaderSpan(body: Layout): number {
  return alignUp(IGVM_VHS_VARIABLE_HEADER.size + body.size, IGVM_HEADER_ALIGNMENT);
}

/** Per-page header spans, for planning the section size. */
export const PAGE_HEADER_SPAN = variableHeaderSpan(IGVM_VHS_PAGE_DATA);
export const VP_CONTEXT_SPAN = variableHeaderSpan(IGVM_VHS_VP_CONTEXT);
export const PARAMETER_PAGE_SPAN = variableHeaderSpan(IGVM_VHS_PARAMETER_AREA) +
  2 * variableHeaderSpan(IGVM_VHS_PARAMETER) + variableHeaderSpan(IGVM_VHS_PARAMETER_INSERT);

/**
 * The size of the whole header section (fixed header included) for an image with
 * `pageCount` emitted pages, one of which is the VMSA and one the parameter page.
 */
export function headerSectionSize(pageCount: number): number {
  return IGVM_FIXED_HEADER.size + variableHeaderSpan(IGVM_VHS_SUPPORTED_PLATFORM) +
    variableHeaderSpan(IGVM_VHS_SNP_POLICY) + (pageCount - 2) * PAGE_HEADER_SPAN + VP_CONTEXT_SPAN +
    PARAMETER_PAGE_SPAN + variableHeaderSpan(IGVM_VHS_SNP_ID_BLOCK);
}

/** Builds the header section in place. */
export class HeaderSectionBuilder {
  readonly bytes: Uint8Array;
  readonly #view: DataView;
  #at: number;

  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.#view = viewOf(this.bytes);
    this.#at = IGVM_FIXED_HEADER.size;
  }

  /** Bytes written so far. */
  get length(): number {
    return this.#at;
  }

  /** Appends one variable header and returns a view of its body. */
  #append(type: number, body: Layout): DataView {
    const span = variableHeaderSpan(body);
    if (this.#at + span > this.bytes.length) throw new Error("header section overflow");
    const v = this.#view;
    v.setUint32(this.#at + IGVM_VHS_VARIABLE_HEADER.off.Type, type, true);
    v.setUint32(this.#at + IGVM_VHS_VARIABLE_HEADER.off.Length, body.size, true);
    const bodyAt = this.#at + IGVM_VHS_VARIABLE_HEADER.size;
    this.bytes.fill(IGVM_HEADER_PAD_BYTE, bodyAt + body.size, this.#at + span);
    this.#at += span;
    return new DataView(this.bytes.buffer, bodyAt, body.size);
  }

  supportedPlatform(highestVtl: number): void {
    const b = this.#append(IGVM_VHT_SUPPORTED_PLATFORM, IGVM_VHS_SUPPORTED_PLATFORM);
    const o = IGVM_VHS_SUPPORTED_PLATFORM.off;
    b.setUint32(o.CompatibilityMask, 1, true);
    b.setUint8(o.HighestVtl, highestVtl);
    b.setUint8(o.PlatformType, IGVM_PLATFORM_TYPE_SEV_SNP);
    b.setUint16(o.PlatformVersion, IGVM_SNP_PLATFORM_VERSION, true);
  }

  snpPolicy(policy: bigint): void {
    const b = this.#append(IGVM_VHT_SNP_POLICY, IGVM_VHS_SNP_POLICY);
    b.setBigUint64(IGVM_VHS_SNP_POLICY.off.Policy, policy, true);
    b.setUint32(IGVM_VHS_SNP_POLICY.off.CompatibilityMask, 1, true);
  }

  /** A PAGE_DATA header: the hot path, written without intermediate views. */
  pageData(gpa: number, fileOffset: number, flags: number, dataType: number): void {
    const at = this.#at;
    if (at + PAGE_HEADER_SPAN > this.bytes.length) throw new Error("header section overflow");
    const v = this.#view;
    const b = at + IGVM_VHS_VARIABLE_HEADER.size;
    const o = IGVM_VHS_PAGE_DATA.off;
    v.setUint32(at + IGVM_VHS_VARIABLE_HEADER.off.Type, IGVM_VHT_PAGE_DATA, true);
    v.setUint32(at + IGVM_VHS_VARIABLE_HEADER.off.Length, IGVM_VHS_PAGE_DATA.size, true);
    v.setUint32(b + o.GPA, gpa % 0x1_0000_0000, true);
    v.setUint32(b + o.GPA + 4, Math.floor(gpa / 0x1_0000_0000), true);
    v.setUint32(b + o.CompatibilityMask, 1, true);
    v.setUint32(b + o.FileOffset, fileOffset, true);
    v.setUint32(b + o.Flags, flags, true);
    v.setUint16(b + o.DataType, dataType, true);
    v.setUint16(b + o.Reserved, 0, true);
    this.#at = at + PAGE_HEADER_SPAN;
  }

  vpContext(gpa: number, fileOffset: number): void {
    const b = this.#append(IGVM_VHT_VP_CONTEXT, IGVM_VHS_VP_CONTEXT);
    setU64(b, IGVM_VHS_VP_CONTEXT.off.GPA, gpa);
    b.setUint32(IGVM_VHS_VP_CONTEXT.off.CompatibilityMask, 1, true);
    b.setUint32(IGVM_VHS_VP_CONTEXT.off.FileOffset, fileOffset, true);
  }

  /** The parameter page: area 0 of one page, VP count at 0, memory map after one entry. */
  parameterPage(gpa: number): void {
    const area = this.#append(IGVM_VHT_PARAMETER_AREA, IGVM_VHS_PARAMETER_AREA);
    setU64(area, IGVM_VHS_PARAMETER_AREA.off.NumberOfBytes, PAGE_SIZE);
    this.#append(IGVM_VHT_VP_COUNT_PARAMETER, IGVM_VHS_PARAMETER);
    const map = this.#append(IGVM_VHT_MEMORY_MAP, IGVM_VHS_PARAMETER);
    map.setUint32(IGVM_VHS_PARAMETER.off.ByteOffset, IGVM_VHS_MEMORY_MAP_ENTRY.size, true);
    const insert = this.#append(IGVM_VHT_PARAMETER_INSERT, IGVM_VHS_PARAMETER_INSERT);
    setU64(insert, IGVM_VHS_PARAMETER_INSERT.off.GPA, gpa);
    insert.setUint32(IGVM_VHS_PARAMETER_INSERT.off.CompatibilityMask, 1, true);
  }

  snpIdBlock(body: Uint8Array): void {
    const b = this.#append(IGVM_VHT_SNP_ID_BLOCK, IGVM_VHS_SNP_ID_BLOCK);
    new Uint8Array(b.buffer, b.byteOffset, b.byteLength).set(body);
  }

  /** Writes the fixed header and the CRC-32 over the whole section; returns the bytes. */
  finish(totalFileSize: number, crc32: (bytes: Uint8Array) => number): Uint8Array {
    if (this.#at !== this.bytes.length) {
      throw new Error(`header section is ${this.#at} bytes, planned ${this.bytes.length}`);
    }
    const v = this.#view;
    const o = IGVM_FIXED_HEADER.off;
    v.setUint32(o.Magic, IGVM_MAGIC_VALUE, true);
    v.setUint32(o.FormatVersion, IGVM_FORMAT_VERSION_1, true);
    v.setUint32(o.VariableHeaderOffset, IGVM_FIXED_HEADER.size, true);
    v.setUint32(o.VariableHeaderSize, this.bytes.length - IGVM_FIXED_HEADER.size, true);
    v.setUint32(o.TotalFileSize, totalFileSize, true);
    v.setUint32(o.Checksum, 0, true);
    v.setUint32(o.Checksum, crc32(this.bytes), true);
    return this.bytes;
  }
}
