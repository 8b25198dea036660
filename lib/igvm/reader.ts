/**
 * A validating IGVM reader: parses the fixed header and every variable header into
 * directives, checking the structure the specification requires. It shares only the layout
 * declarations with the writer, so it can check the writer's output.
 */
import { crc32 } from "../bytes/crc32.ts";
import { readScalar } from "../bytes/layout.ts";
import { PAGE_SIZE } from "../bytes/le.ts";
import {
  IGVM_FIXED_HEADER,
  IGVM_MAGIC_VALUE,
  IGVM_VHS_PAGE_DATA,
  IGVM_VHS_VARIABLE_HEADER,
  IGVM_VHT_PAGE_DATA,
  IGVM_VHT_PARAMETER_INSERT,
  IGVM_VHT_VP_CONTEXT,
  VARIABLE_HEADER_BODIES,
} from "./defs.ts";
import { directiveMask, findSnpCompatibilityMask } from "./directives.ts";

/** A file that is not a readable IGVM file. */
export class IgvmFormatError extends Error {
  /** The class name, for messages and logs. */
  override name = "IgvmFormatError";
}

/** CRC-32 of the header section `head[0, end)` with the fixed header's checksum field zero. */
export function headerSectionChecksum(head: Uint8Array, end: number): number {
  const section = head.slice(0, end);
  new DataView(section.buffer).setUint32(IGVM_FIXED_HEADER.off.Checksum, 0, true);
  return crc32(section);
}

/** One variable header: its type, offset, and its body's fields by name. */
export interface Directive {
  type: number;
  name: string;
  offset: number;
  length: number;
  fields: Record<string, bigint>;
  /** The raw body; empty for PAGE_DATA, whose fields say everything (saves memory). */
  body: Uint8Array;
}

const NO_BODY = new Uint8Array(0);

/** A parsed file. */
export interface IgvmFile {
  fixed: Record<string, number>;
  directives: Directive[];
  /** Problems found while parsing that do not stop it (checksum, padding...). */
  problems: string[];
}

/**
 * The bigints 0 to 255, shared: most fields of a page header (flags, data type, mask,
 * reserved, a zero page's file offset) are small, and a shared value costs no allocation.
 * Over a million headers this saves about a quarter of the memory they take.
 */
const SMALL_BIGINTS: readonly bigint[] = Array.from({ length: 256 }, (_, i) => BigInt(i));

/** A small value as a shared bigint (see {@link SMALL_BIGINTS}). */
function bigintOf(value: number): bigint {
  return value < 256 ? SMALL_BIGINTS[value] : BigInt(value);
}

/**
 * The fields of a PAGE_DATA body (IGVM_VHS_PAGE_DATA), built as one object literal: a fixed
 * shape holds its six fields in the object itself, where fields added one by one spill into
 * a second store. One header per guest page, so this is most of a big file's headers.
 */
function pageDataFields(v: DataView, at: number): Record<string, bigint> {
  const o = IGVM_VHS_PAGE_DATA.off;
  return {
    GPA: v.getBigUint64(at + o.GPA, true),
    CompatibilityMask: bigintOf(v.getUint32(at + o.CompatibilityMask, true)),
    FileOffset: bigintOf(v.getUint32(at + o.FileOffset, true)),
    Flags: bigintOf(v.getUint32(at + o.Flags, true)),
    DataType: bigintOf(v.getUint16(at + o.DataType, true)),
    Reserved: bigintOf(v.getUint16(at + o.Reserved, true)),
  };
}

/** Reads one scalar field of a body by name. */
function scalarFields(
  body: Uint8Array,
  layoutFields: readonly (readonly [string, number, unknown])[],
) {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const out: Record<string, bigint> = {};
  for (const [name, offset, type] of layoutFields) {
    if (typeof type !== "string") continue;
    const value = readScalar(view, offset, type as "u8");
    out[name] = value < 256n ? SMALL_BIGINTS[Number(value)] : value;
  }
  return out;
}

/** One variable header as found in a header section; `body` is a view into the bytes read. */
export interface RawHeader {
  type: number;
  /** File offset of the header's type field. */
  offset: number;
  length: number;
  body: Uint8Array;
}

/** The longest header body the reader accepts (no IGVM header type comes near it). */
export const MAX_HEADER_LENGTH = 64 << 10;

/** IGVM_VHT ranges of the specification: platform, initialization, directive headers. */
const HEADER_TYPE_RANGES = [[0x001, 0x100], [0x101, 0x200], [0x301, 0x400]] as const;

/**
 * Why a variable header with this type and length cannot be valid, or undefined when it can.
 * A known type must have its body's exact length; an unknown type must lie in the
 * specification's ranges and have a non-empty body of bounded size. A reader cannot find the
 * next header after one that fails, so reading stops there.
 */
function headerInvalidity(type: number, length: number): string | undefined {
  const known = VARIABLE_HEADER_BODIES.get(type);
  if (known) {
    return length === known.body.size
      ? undefined
      : `${known.name} with length ${length}, expected ${known.body.size}`;
  }
  const hex = type.toString(16);
  if (!HEADER_TYPE_RANGES.some(([lo, hi]) => type >= lo && type <= hi)) {
    return `type 0x${hex} is not an IGVM header type`;
  }
  if (length === 0 || length > MAX_HEADER_LENGTH) {
    return `unknown type 0x${hex} with length ${length}`;
  }
  return undefined;
}

/**
 * Walks the variable headers that lie wholly inside `chunk` (the file's bytes from `base`),
 * starting with the header at file offset `at`, in a header section that ends at `end`.
 * Appends each to `out` and returns the offset after the last one (with its padding). Throws
 * at the first header that cannot be valid, or that runs past the section; when the chunk
 * stops before the section does, a header cut by the chunk's end is left for the next chunk.
 */
export function walkHeaders(
  chunk: Uint8Array,
  base: number,
  at: number,
  end: number,
  out: RawHeader[],
): number {
  const v = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  const chunkEnd = base + chunk.length;
  while (at < end) {
    const where = `header at 0x${at.toString(16)}`;
    if (at + IGVM_VHS_VARIABLE_HEADER.size > end) {
      throw new IgvmFormatError(`variable ${where} runs past the header section`);
    }
    if (at + IGVM_VHS_VARIABLE_HEADER.size > chunkEnd) break;
    const type = v.getUint32(at - base, true);
    const length = v.getUint32(at - base + 4, true);
    const invalid = headerInvalidity(type, length);
    if (invalid) {
      throw new IgvmFormatError(
        `${where}: ${invalid}; the header section cannot be read past it`,
      );
    }
    const bodyAt = at + IGVM_VHS_VARIABLE_HEADER.size;
    if (bodyAt + length > end) {
      throw new IgvmFormatError(
        `header 0x${type.toString(16)} at 0x${at.toString(16)} runs past the header section`,
      );
    }
    if (bodyAt + length > chunkEnd) break;
    out.push({
      type,
      offset: at,
      length,
      body: chunk.subarray(bodyAt - base, bodyAt - base + length),
    });
    at = Math.ceil((bodyAt + length) / 8) * 8;
  }
  return at;
}

/** Collects what the reader finds in a header section, chunk by chunk. */
export class DirectiveCollector {
  readonly directives: Directive[] = [];

  /**
   * The parsed file: the directives, with the fixed header's problems, the collector's, and
   * padding that runs past the section (`after`, where the walk ended, is not its end).
   */
  finish(
    fixed: Record<string, number>,
    fileSize: number,
    checksum: number,
    after: number,
  ): IgvmFile {
    const problems = [...fixedHeaderProblems(fixed, fileSize, checksum), ...this.problems()];
    if (after !== fixed.VariableHeaderOffset + fixed.VariableHeaderSize) {
      problems.push(`the last header's padding runs past the section end`);
    }
    return { fixed, directives: this.directives, problems };
  }
  private unknown = 0;
  private firstUnknown = "";

  /** Adds the headers of one chunk; bodies are copied (the chunk's buffer is not kept). */
  add(headers: readonly RawHeader[]): void {
    let view: DataView | undefined; // one view of the chunk for all its page headers
    for (const h of headers) {
      const known = VARIABLE_HEADER_BODIES.get(h.type);
      if (!known && this.unknown++ === 0) {
        this.firstUnknown = `unknown header type 0x${h.type.toString(16)} at 0x${
          h.offset.toString(16)
        }`;
      }
      this.directives.push({
        type: h.type,
        name: known?.name ?? `0x${h.type.toString(16)}`,
        offset: h.offset,
        length: h.length,
        fields: h.type === IGVM_VHT_PAGE_DATA && h.length === IGVM_VHS_PAGE_DATA.size
          ? pageDataFields(
            view?.buffer === h.body.buffer ? view : (view = new DataView(h.body.buffer)),
            h.body.byteOffset,
          )
          : known
          ? scalarFields(h.body, known.body.fields)
          : {},
        body: h.type === IGVM_VHT_PAGE_DATA ? NO_BODY : h.body.slice(),
      });
    }
  }

  /** The problems found: one line for all unknown header types. */
  problems(): string[] {
    if (this.unknown === 0) return [];
    const more = this.unknown - 1;
    return [this.firstUnknown + (more ? ` (and ${more} more headers of unknown types)` : "")];
  }
}

/** Checks the fixed header's own fields; returns them by name. */
export function parseFixedHeader(head: Uint8Array, fileSize: number): Record<string, number> {
  if (head.length >= 4) {
    const magic = new DataView(head.buffer, head.byteOffset, 4).getUint32(0, true);
    if (magic !== IGVM_MAGIC_VALUE) throw new IgvmFormatError("no IGVM magic: not an IGVM file");
  }
  if (head.length < IGVM_FIXED_HEADER.size) {
    throw new IgvmFormatError(`truncated: ${fileSize} bytes, no fixed header`);
  }
  const v = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const fixed: Record<string, number> = {};
  for (const [name, offset] of IGVM_FIXED_HEADER.fields) fixed[name] = v.getUint32(offset, true);
  const start = fixed.VariableHeaderOffset;
  const end = start + fixed.VariableHeaderSize;
  if (start < IGVM_FIXED_HEADER.size || start % 8 !== 0) {
    throw new IgvmFormatError(
      `variable headers at 0x${start.toString(16)}: not 8-byte aligned after the fixed header`,
    );
  }
  if (end > fileSize) {
    throw new IgvmFormatError(
      `truncated: the header section ends at 0x${end.toString(16)}, past the end of the file`,
    );
  }
  return fixed;
}

/** The problems the fixed header shows once the section is read: version, size, checksum. */
function fixedHeaderProblems(
  fixed: Record<string, number>,
  fileSize: number,
  checksum: number,
): string[] {
  const problems: string[] = [];
  if (fixed.FormatVersion !== 1) problems.push(`format version ${fixed.FormatVersion}, expected 1`);
  if (fixed.TotalFileSize !== fileSize) {
    problems.push(`TotalFileSize ${fixed.TotalFileSize}, the file has ${fileSize} bytes`);
  }
  if (checksum !== fixed.Checksum) {
    problems.push(
      `checksum 0x${fixed.Checksum.toString(16)}, computed 0x${checksum.toString(16)}`,
    );
  }
  return problems;
}

/**
 * Parses the header section of an IGVM file (`head` holds at least the fixed header and
 * the variable headers; `fileSize` is the whole file's size). Throws at the first header
 * that cannot be valid.
 */
export function parseIgvmHeaders(head: Uint8Array, fileSize: number): IgvmFile {
  const fixed = parseFixedHeader(head, fileSize);
  const start = fixed.VariableHeaderOffset;
  const end = start + fixed.VariableHeaderSize;
  if (end > head.length) {
    throw new IgvmFormatError(
      `truncated: the header section ends at 0x${end.toString(16)}, past the end of the file`,
    );
  }
  const raw: RawHeader[] = [];
  const after = walkHeaders(head.subarray(0, end), 0, start, end, raw);
  const collector = new DirectiveCollector();
  collector.add(raw);
  return collector.finish(fixed, fileSize, headerSectionChecksum(head, end), after);
}

/** The file data of a PAGE_DATA or VP_CONTEXT directive, or undefined for a zero page. */
export function directiveFileOffset(d: Directive): number | undefined {
  if (d.type !== IGVM_VHT_PAGE_DATA && d.type !== IGVM_VHT_VP_CONTEXT) return undefined;
  const offset = Number(d.fields.FileOffset ?? 0n);
  return offset === 0 ? undefined : offset;
}

/**
 * Reads a whole IGVM file into headers and a page map (for tests and small files). The map is
 * the SEV-SNP platform's memory when the file has that platform (a multi-platform file may
 * load other bytes at a GPA for another platform).
 */
export function readIgvmFile(bytes: Uint8Array): IgvmFile & { pages: Map<number, Uint8Array> } {
  const parsed = parseIgvmHeaders(bytes, bytes.length);
  const pages = new Map<number, Uint8Array>();
  const snp = findSnpCompatibilityMask(parsed);
  for (const d of parsed.directives) {
    if (d.type !== IGVM_VHT_PAGE_DATA && d.type !== IGVM_VHT_VP_CONTEXT) continue;
    if (snp !== undefined && !(directiveMask(d) & snp)) continue;
    const gpa = Number(d.fields.GPA ?? 0n);
    const offset = directiveFileOffset(d);
    if (offset === undefined) {
      pages.set(gpa, new Uint8Array(PAGE_SIZE));
      continue;
    }
    if (offset + PAGE_SIZE > bytes.length) {
      throw new IgvmFormatError(
        `page 0x${gpa.toString(16)}: file data at 0x${offset.toString(16)} runs past the end`,
      );
    }
    pages.set(gpa, bytes.subarray(offset, offset + PAGE_SIZE));
  }
  return { ...parsed, pages };
}

/** Reads `length` bytes of guest memory at `gpa` from a page map (zero where absent). */
export function readGuest(pages: Map<number, Uint8Array>, gpa: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let done = 0; done < length;) {
    const at = gpa + done;
    const page = at - (at % PAGE_SIZE);
    const n = Math.min(PAGE_SIZE - (at - page), length - done);
    const src = pages.get(page);
    if (src) out.set(src.subarray(at - page, at - page + n), done);
    done += n;
  }
  return out;
}

/** The outcome of the light structural check. */
export interface HeaderSectionCheck {
  problems: string[];
  /** PAGE_DATA, VP_CONTEXT and PARAMETER_INSERT headers: one per guest page. */
  pageHeaders: number;
}

/**
 * Checks a header section without building directive objects (constant memory per header):
 * magic, sizes, CRC-32, known types with exact lengths, 8-byte steps. Used to check every
 * file igvmgen writes before it is committed.
 */
export function checkHeaderSection(head: Uint8Array, fileSize: number): HeaderSectionCheck {
  const problems: string[] = [];
  const v = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (head.length < IGVM_FIXED_HEADER.size || v.getUint32(0, true) !== IGVM_MAGIC_VALUE) {
    return { problems: ["no IGVM fixed header"], pageHeaders: 0 };
  }
  const start = v.getUint32(IGVM_FIXED_HEADER.off.VariableHeaderOffset, true);
  const end = start + v.getUint32(IGVM_FIXED_HEADER.off.VariableHeaderSize, true);
  if (end > head.length) return { problems: ["the header section is truncated"], pageHeaders: 0 };
  if (v.getUint32(IGVM_FIXED_HEADER.off.TotalFileSize, true) !== fileSize) {
    problems.push("TotalFileSize differs from the file size");
  }
  const stored = v.getUint32(IGVM_FIXED_HEADER.off.Checksum, true);
  if (headerSectionChecksum(head, end) !== stored) problems.push("header checksum mismatch");
  let pageHeaders = 0;
  let at = start;
  while (at < end) {
    if (at + 8 > end) {
      problems.push(`header at 0x${at.toString(16)} runs past the section`);
      break;
    }
    const type = v.getUint32(at, true);
    const length = v.getUint32(at + 4, true);
    const known = VARIABLE_HEADER_BODIES.get(type);
    if (!known || known.body.size !== length) {
      problems.push(
        `header at 0x${at.toString(16)}: type 0x${type.toString(16)} with length ${length}`,
      );
      break;
    }
    if (
      type === IGVM_VHT_PAGE_DATA || type === IGVM_VHT_VP_CONTEXT ||
      type === IGVM_VHT_PARAMETER_INSERT
    ) pageHeaders++;
    at = Math.ceil((at + 8 + length) / 8) * 8;
  }
  return { problems, pageHeaders };
}
