/**
 * The structure of an IGVM file, checked on the reader without any loader model: header
 * section (version, size, checksum, unknown types), directive lengths and reserved fields,
 * GPAs, file-data ranges and parameter-area sizes; and guest memory read from the directives.
 * A file with a structural problem has no trustworthy launch digest.
 */
import { PAGE_SIZE } from "../bytes/le.ts";
import {
  IGVM_VHF_PAGE_DATA_2MB,
  IGVM_VHT_PAGE_DATA,
  IGVM_VHT_PARAMETER_AREA,
  IGVM_VHT_PARAMETER_INSERT,
  IGVM_VHT_VP_CONTEXT,
} from "./defs.ts";
import { directiveFileOffset, type IgvmFile, IgvmFormatError, readGuest } from "./reader.ts";
import { readIgvmHeaders } from "./header_stream.ts";
import { ProblemList } from "./problem_list.ts";
import {
  directiveGpa,
  directiveMask,
  findSnpCompatibilityMask,
  parameterAreaSizeProblem,
} from "./directives.ts";
import type { FileAccess } from "../io/file_reader.ts";

/** Reads and parses the header section of a file (in bounded chunks). */
export const readHeaders: (file: FileAccess) => Promise<IgvmFile> = readIgvmHeaders;

const ZERO_PAGE = new Uint8Array(PAGE_SIZE);

/**
 * Checks the structure of the directives: lengths, reserved fields, GPAs, data ranges, and
 * parameter area sizes (whole pages, at least one, at most 4 GiB: every loader measures an
 * area page by page, so a hostile u64 size would have every command loop for hours).
 */
function checkDirectives(file: FileAccess, h: IgvmFile, problems: ProblemList): void {
  const sectionEnd = h.fixed.VariableHeaderOffset + h.fixed.VariableHeaderSize;
  const ranges: { start: number; gpa: number }[] = [];
  // The compatibility masks each GPA is loaded under: one page per GPA and platform.
  const seen = new Map<number, number>();
  for (const d of h.directives) {
    const at = `header at 0x${d.offset.toString(16)}`;
    if (d.fields.Reserved !== undefined && d.fields.Reserved !== 0n) {
      problems.push(`${at}: reserved field is not zero`);
    }
    if (d.type === IGVM_VHT_PARAMETER_AREA) {
      const problem = parameterAreaSizeProblem(d.fields.NumberOfBytes ?? 0n);
      if (problem) problems.push(`${at}: PARAMETER_AREA ${problem}`);
    }
    if (
      d.type === IGVM_VHT_PAGE_DATA || d.type === IGVM_VHT_VP_CONTEXT ||
      d.type === IGVM_VHT_PARAMETER_INSERT
    ) {
      const gpa = directiveGpa(d);
      if (gpa % PAGE_SIZE !== 0) {
        problems.push(`${at}: GPA 0x${gpa.toString(16)} is not page aligned`);
      }
      if (d.type !== IGVM_VHT_VP_CONTEXT) {
        const mask = directiveMask(d);
        const before = seen.get(gpa);
        if (before !== undefined && (before & mask || !before || !mask)) {
          problems.push(`${at}: GPA 0x${gpa.toString(16)} is loaded twice`);
        }
        seen.set(gpa, (before ?? 0) | mask);
      }
      if (d.type === IGVM_VHT_PAGE_DATA && Number(d.fields.Flags ?? 0n) & IGVM_VHF_PAGE_DATA_2MB) {
        problems.push(`${at}: 2 MiB pages are not supported by this verifier`);
      }
      const offset = directiveFileOffset(d);
      if (offset !== undefined) {
        if (offset < sectionEnd) {
          problems.push(`${at}: file data at 0x${offset.toString(16)} is inside the headers`);
        }
        if (offset + PAGE_SIZE > file.size) {
          problems.push(`${at}: file data at 0x${offset.toString(16)} runs past the end`);
        }
        ranges.push({ start: offset, gpa });
      }
    }
  }
  if (!h.directives.some((d) => d.type === IGVM_VHT_PAGE_DATA || d.type === IGVM_VHT_VP_CONTEXT)) {
    problems.push("no PAGE_DATA or VP_CONTEXT header: the file loads nothing");
  }
  ranges.sort((a, b) => a.start - b.start);
  for (let i = 1; i < ranges.length; i++) {
    if (ranges[i].start < ranges[i - 1].start + PAGE_SIZE) {
      problems.push(
        `file data of GPA 0x${ranges[i].gpa.toString(16)} overlaps that of 0x${
          ranges[i - 1].gpa.toString(16)
        }`,
      );
    }
  }
}

/**
 * The structural problems of a parsed file: those of its header section (version, size,
 * checksum, unknown types) and of its directives (reserved fields, GPAs, file-data ranges).
 * A file with any of them has no trustworthy launch digest.
 */
export function structuralProblems(file: FileAccess, h: IgvmFile): ProblemList {
  const problems = new ProblemList();
  problems.push(...h.problems);
  checkDirectives(file, h, problems);
  return problems;
}

/** Throws the first structural problem of a file, with the count of the others. */
export function assertStructurallySound(file: FileAccess, h: IgvmFile): ProblemList {
  const problems = structuralProblems(file, h);
  if (problems.count === 0) return problems;
  const more = problems.count - 1;
  throw new IgvmFormatError(
    problems.first! + (more ? ` (and ${more} more problems; igvmgen verify lists them)` : ""),
  );
}

/**
 * Reads guest memory from the file's directives, page by page on demand: the memory of the
 * platform whose compatibility mask is `platformMask`, by default the SEV-SNP platform's (in
 * a multi-platform file another platform may load other bytes at the same GPA).
 */
export function guestReaderOf(
  file: FileAccess,
  h: IgvmFile,
  platformMask = findSnpCompatibilityMask(h),
) {
  const byGpa = new Map<number, number | undefined>();
  for (const d of h.directives) {
    if (platformMask !== undefined && !(directiveMask(d) & platformMask)) continue;
    if (d.type === IGVM_VHT_PAGE_DATA || d.type === IGVM_VHT_VP_CONTEXT) {
      byGpa.set(directiveGpa(d), directiveFileOffset(d));
    }
  }
  const cache = new Map<number, Uint8Array>();
  return {
    /** Loads the pages of [gpa, gpa + length) into the cache. */
    async load(gpa: number, length: number) {
      for (let p = gpa - (gpa % PAGE_SIZE); p < gpa + length; p += PAGE_SIZE) {
        if (cache.has(p) || !byGpa.has(p)) continue;
        const off = byGpa.get(p);
        cache.set(p, off === undefined ? ZERO_PAGE : await file.readAt(off, PAGE_SIZE));
      }
    },
    read: (gpa: number, length: number): Uint8Array => readGuest(cache, gpa, length),
  };
}
