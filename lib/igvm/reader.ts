/**
 * A validating IGVM reader: parses the fixed header and every variable header into
 * directives, checking the structure the specification requires. It shares only the layout
 * declarations with the writer, so it can check the writer's output.
 */
import { readScalar } from "../bytes/layout.ts";
import { PAGE_SIZE } from "../bytes/le.ts";
import {
  IGVM_FIXED_HEADER,
  IGVM_MAGIC_VALUE,
  IGVM_VHS_PAGE_DATA,
  IGVM_VHS_VARIABLE_HEADER,
  IGVM_VHT_PAGE_DATA,
  IGVM_VHT_VP_CONTEXT,
  VARIABLE_HEADER_BODIES,
} from "./defs.ts";
import { sharedBigint } from "./page_table.ts";
import { type Directive, DirectiveList, PageDataDirective } from "./directive_list.ts";
import { directiveMask, findSnpCompatibilityMask } from "./directives.ts";
import { headerSectionChecksum } from "./header_check.ts";

export { checkHeaderSection, headerSectionChecksum } from "./header_check.ts";

/** A file that is not a readable IGVM file. */
export class IgvmFormatError extends Error {
  /** The class name, for messages and logs. */
  override name = "IgvmFormatError";
}

export {
  type Directive,
  type DirectiveAccess,
  directiveAccess,
  PageDataDirective,
} from "./directive_list.ts";

/** A parsed file. */
export interface IgvmFile {
  fixed: Record<string, number>;
  /**
   * The variable headers in file order. From the reader, a read-only view over a compact
   * list (directive_list.ts): loops over every page read it with {@link directiveAccess}.
   */
  directives: Directive[];
  /** Problems found while parsing that do not stop it (checksum, padding...). */
  problems: string[];
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
    out[name] = sharedBigint(value);
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
 * Receives one variable header: its type, the file offset of its type field, its body's
 * length, and the chunk read (a view, valid during the call only) with the body at `bodyAt`.
 */
export type HeaderVisitor = (
  type: number,
  offset: number,
  length: number,
  chunk: DataView,
  bodyAt: number,
) => void;

/**
 * Walks the variable headers that lie wholly inside `chunk` (the file's bytes from `base`),
 * starting with the header at file offset `at`, in a header section that ends at `end`.
 * Hands each to `visit` and returns the offset after the last one (with its padding). Throws
 * at the first header that cannot be valid, or that runs past the section; when the chunk
 * stops before the section does, a header cut by the chunk's end is left for the next chunk.
 */
export function walkHeaders(
  chunk: Uint8Array,
  base: number,
  at: number,
  end: number,
  visit: HeaderVisitor,
): number {
  const v = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  const chunkEnd = base + chunk.length;
  while (at < end) {
    if (at + IGVM_VHS_VARIABLE_HEADER.size > end) {
      throw new IgvmFormatError(
        `variable header at 0x${at.toString(16)} runs past the header section`,
      );
    }
    if (at + IGVM_VHS_VARIABLE_HEADER.size > chunkEnd) break;
    const type = v.getUint32(at - base, true);
    const length = v.getUint32(at - base + 4, true);
    const invalid = headerInvalidity(type, length);
    if (invalid) {
      throw new IgvmFormatError(
        `header at 0x${at.toString(16)}: ${invalid}; the header section cannot be read past it`,
      );
    }
    const bodyAt = at + IGVM_VHS_VARIABLE_HEADER.size;
    if (bodyAt + length > end) {
      throw new IgvmFormatError(
        `header 0x${type.toString(16)} at 0x${at.toString(16)} runs past the header section`,
      );
    }
    if (bodyAt + length > chunkEnd) break;
    visit(type, at, length, v, bodyAt - base);
    at = Math.ceil((bodyAt + length) / 8) * 8;
  }
  return at;
}

/**
 * Collects what the reader finds in a header section, chunk by chunk. PAGE_DATA headers go
 * straight from the chunk into a {@link PageDataTable}; the others become directive objects.
 */
export class DirectiveCollector {
  readonly #list = new DirectiveList();
  private unknown = 0;
  private firstUnknown = "";

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
    return { fixed, directives: this.#list.asArray(), problems };
  }

  /** Adds one header (a {@link HeaderVisitor}); bodies are copied, the chunk is not kept. */
  readonly visit: HeaderVisitor = (type, offset, length, chunk, bodyAt) => {
    if (type === IGVM_VHT_PAGE_DATA && length === IGVM_VHS_PAGE_DATA.size) {
      this.#list.addPage(chunk, bodyAt, offset);
      return;
    }
    const known = VARIABLE_HEADER_BODIES.get(type);
    if (!known && this.unknown++ === 0) {
      this.firstUnknown = `unknown header type 0x${type.toString(16)} at 0x${offset.toString(16)}`;
    }
    const body = new Uint8Array(chunk.buffer.slice(
      chunk.byteOffset + bodyAt,
      chunk.byteOffset + bodyAt + length,
    ));
    this.#list.addOther({
      type,
      name: known?.name ?? `0x${type.toString(16)}`,
      offset,
      length,
      fields: known ? scalarFields(body, known.body.fields) : {},
      body,
    });
  };

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
  const collector = new DirectiveCollector();
  const after = walkHeaders(head.subarray(0, end), 0, start, end, collector.visit);
  return collector.finish(fixed, fileSize, headerSectionChecksum(head, end), after);
}

/** The file data of a PAGE_DATA or VP_CONTEXT directive, or undefined for a zero page. */
export function directiveFileOffset(d: Directive): number | undefined {
  if (d instanceof PageDataDirective) return d.table.fileOffset(d.row) || undefined;
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
