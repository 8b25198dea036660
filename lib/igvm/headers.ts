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
  IGVM_NATIVE_PLATFORM_VERSION,
  IGVM_PLATFORM_TYPE_NATIVE,
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

/** The compatibility mask bit of the SEV-SNP platform in igvmgen's files. */
export const SNP_MASK = 0x1;
/** The compatibility mask bit of the NATIVE platform (`-native`). */
export const NATIVE_MASK = 0x2;

/**
 * One parameter area of one page: where it is inserted, and the byte offset of each
 * parameter the host writes into it (absent: not in this area).
 */
export interface ParameterArea {
  gpa: number;
  vpCount?: number;
  memoryMap?: number;
}

/** The original's single parameter page: VP count at 0, the memory map after one entry. */
export function originalParameterArea(gpa: number): ParameterArea {
  return { gpa, vpCount: 0, memoryMap: IGVM_VHS_MEMORY_MAP_ENTRY.size };
}

/** Bytes one variable header takes in the file: type+length, body, '0' padding. */
export function variableHeaderSpan(body: Layout): number {
  return alignUp(IGVM_VHS_VARIABLE_HEADER.size + body.size, IGVM_HEADER_ALIGNMENT);
}

/** Per-page header spans, for planning the section size. */
export const PAGE_HEADER_SPAN = variableHeaderSpan(IGVM_VHS_PAGE_DATA);
export const VP_CONTEXT_SPAN = variableHeaderSpan(IGVM_VHS_VP_CONTEXT);
const PARAMETER_SPAN = variableHeaderSpan(IGVM_VHS_PARAMETER);

/** The header bytes of parameter areas: each area, its parameters and its insert. */
function parameterAreasSpan(areas: readonly ParameterArea[]): number {
  let span = 0;
  for (const a of areas) {
    const parameters = [a.vpCount, a.memoryMap].filter((x) => x !== undefined);
    span += variableHeaderSpan(IGVM_VHS_PARAMETER_AREA) + parameters.length * PARAMETER_SPAN +
      variableHeaderSpan(IGVM_VHS_PARAMETER_INSERT);
  }
  return span;
}

/** What the header section holds besides the fixed header, the policy and the ID block. */
export interface HeaderSectionPlan {
  /** PAGE_DATA headers. */
  pages: number;
  vpContexts: number;
  parameterAreas: readonly ParameterArea[];
  /** SUPPORTED_PLATFORM headers (2 with `-native`). */
  platforms: number;
}

/** The size of the whole header section (fixed header included). */
export function headerSectionSize(plan: HeaderSectionPlan): number {
  return IGVM_FIXED_HEADER.size +
    plan.platforms * variableHeaderSpan(IGVM_VHS_SUPPORTED_PLATFORM) +
    variableHeaderSpan(IGVM_VHS_SNP_POLICY) + plan.pages * PAGE_HEADER_SPAN +
    plan.vpContexts * VP_CONTEXT_SPAN + parameterAreasSpan(plan.parameterAreas) +
    variableHeaderSpan(IGVM_VHS_SNP_ID_BLOCK);
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

  /** The SEV-SNP platform, compatibility mask SNP_MASK. */
  supportedPlatform(highestVtl: number): void {
    const b = this.#append(IGVM_VHT_SUPPORTED_PLATFORM, IGVM_VHS_SUPPORTED_PLATFORM);
    const o = IGVM_VHS_SUPPORTED_PLATFORM.off;
    b.setUint32(o.CompatibilityMask, SNP_MASK, true);
    b.setUint8(o.HighestVtl, highestVtl);
    b.setUint8(o.PlatformType, IGVM_PLATFORM_TYPE_SEV_SNP);
    b.setUint16(o.PlatformVersion, IGVM_SNP_PLATFORM_VERSION, true);
  }

  /** The NATIVE platform (no isolation), compatibility mask NATIVE_MASK, VTL 0. */
  nativePlatform(): void {
    const b = this.#append(IGVM_VHT_SUPPORTED_PLATFORM, IGVM_VHS_SUPPORTED_PLATFORM);
    const o = IGVM_VHS_SUPPORTED_PLATFORM.off;
    b.setUint32(o.CompatibilityMask, NATIVE_MASK, true);
    b.setUint8(o.PlatformType, IGVM_PLATFORM_TYPE_NATIVE);
    b.setUint16(o.PlatformVersion, IGVM_NATIVE_PLATFORM_VERSION, true);
  }

  snpPolicy(policy: bigint): void {
    const b = this.#append(IGVM_VHT_SNP_POLICY, IGVM_VHS_SNP_POLICY);
    b.setBigUint64(IGVM_VHS_SNP_POLICY.off.Policy, policy, true);
    b.setUint32(IGVM_VHS_SNP_POLICY.off.CompatibilityMask, 1, true);
  }

  /** A PAGE_DATA header: the hot path, written without intermediate views. */
  pageData(
    gpa: number,
    fileOffset: number,
    flags: number,
    dataType: number,
    mask = SNP_MASK,
  ): void {
    const at = this.#at;
    if (at + PAGE_HEADER_SPAN > this.bytes.length) throw new Error("header section overflow");
    const v = this.#view;
    const b = at + IGVM_VHS_VARIABLE_HEADER.size;
    const o = IGVM_VHS_PAGE_DATA.off;
    v.setUint32(at + IGVM_VHS_VARIABLE_HEADER.off.Type, IGVM_VHT_PAGE_DATA, true);
    v.setUint32(at + IGVM_VHS_VARIABLE_HEADER.off.Length, IGVM_VHS_PAGE_DATA.size, true);
    v.setUint32(b + o.GPA, gpa % 0x1_0000_0000, true);
    v.setUint32(b + o.GPA + 4, Math.floor(gpa / 0x1_0000_0000), true);
    v.setUint32(b + o.CompatibilityMask, mask, true);
    v.setUint32(b + o.FileOffset, fileOffset, true);
    v.setUint32(b + o.Flags, flags, true);
    v.setUint16(b + o.DataType, dataType, true);
    v.setUint16(b + o.Reserved, 0, true);
    this.#at = at + PAGE_HEADER_SPAN;
  }

  /** A VP context of vp 0: a VMSA (SNP) at `gpa`, or a native context (GPA 0). */
  vpContext(gpa: number, fileOffset: number, mask = SNP_MASK): void {
    const b = this.#append(IGVM_VHT_VP_CONTEXT, IGVM_VHS_VP_CONTEXT);
    setU64(b, IGVM_VHS_VP_CONTEXT.off.GPA, gpa);
    b.setUint32(IGVM_VHS_VP_CONTEXT.off.CompatibilityMask, mask, true);
    b.setUint32(IGVM_VHS_VP_CONTEXT.off.FileOffset, fileOffset, true);
  }

  /**
   * Parameter areas of one page each, indexed in order: every area, then the parameters,
   * then the inserts (a parameter must name an area not yet inserted).
   */
  parameterAreas(areas: readonly ParameterArea[], mask = SNP_MASK): void {
    areas.forEach((_, index) => {
      const area = this.#append(IGVM_VHT_PARAMETER_AREA, IGVM_VHS_PARAMETER_AREA);
      setU64(area, IGVM_VHS_PARAMETER_AREA.off.NumberOfBytes, PAGE_SIZE);
      area.setUint32(IGVM_VHS_PARAMETER_AREA.off.ParameterAreaIndex, index, true);
    });
    areas.forEach((a, index) => {
      const parameters: [number, number | undefined][] = [
        [IGVM_VHT_VP_COUNT_PARAMETER, a.vpCount],
        [IGVM_VHT_MEMORY_MAP, a.memoryMap],
      ];
      for (const [type, offset] of parameters) {
        if (offset === undefined) continue;
        const p = this.#append(type, IGVM_VHS_PARAMETER);
        p.setUint32(IGVM_VHS_PARAMETER.off.ParameterAreaIndex, index, true);
        p.setUint32(IGVM_VHS_PARAMETER.off.ByteOffset, offset, true);
      }
    });
    areas.forEach((a, index) => {
      const insert = this.#append(IGVM_VHT_PARAMETER_INSERT, IGVM_VHS_PARAMETER_INSERT);
      setU64(insert, IGVM_VHS_PARAMETER_INSERT.off.GPA, a.gpa);
      insert.setUint32(IGVM_VHS_PARAMETER_INSERT.off.CompatibilityMask, mask, true);
      insert.setUint32(IGVM_VHS_PARAMETER_INSERT.off.ParameterAreaIndex, index, true);
    });
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
