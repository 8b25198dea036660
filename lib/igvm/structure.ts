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
  IGVM_VHT_SUPPORTED_PLATFORM,
  IGVM_VHT_VP_CONTEXT,
} from "./defs.ts";
import {
  type Directive,
  type DirectiveAccess,
  directiveAccess,
  directiveFileOffset,
  type IgvmFile,
  IgvmFormatError,
  readGuest,
} from "./reader.ts";
import { readIgvmHeaders } from "./header_stream.ts";
import { ProblemList } from "./problem_list.ts";
import { checkDirectiveRules } from "./directive_rules.ts";
import {
  directiveFlags,
  directiveGpa,
  directiveGpaExact,
  directiveGpaPageOffset,
  directiveMask,
  findSnpCompatibilityMask,
  GPA_LIMIT,
  gpaRangeProblem,
  hasNonZeroReserved,
  headerAt,
  parameterAreaSizeProblem,
} from "./directives.ts";
import type { FileAccess } from "../io/file_reader.ts";

/** Reads and parses the header section of a file (in bounded chunks). */
export const readHeaders: (file: FileAccess) => Promise<IgvmFile> = readIgvmHeaders;

const ZERO_PAGE = new Uint8Array(PAGE_SIZE);
const PAGE_SIZE_2MB = 0x20_0000;
/** {@link GPA_LIMIT} as a number (2^52 is exact): the per-page test stays cheap. */
const GPA_LIMIT_NUMBER = Number(GPA_LIMIT);

/** True for the directives that place a page at their GPA (or, an insert, an area). */
function placesPages(type: number): boolean {
  return type === IGVM_VHT_PAGE_DATA || type === IGVM_VHT_VP_CONTEXT ||
    type === IGVM_VHT_PARAMETER_INSERT;
}

/**
 * True for a directive that puts a page of guest memory at its GPA, which no other may load
 * for the same platform: a PAGE_DATA, a PARAMETER_INSERT, and a VP_CONTEXT of a platform in
 * `vmsaMask` (SEV-SNP's VMSA is a guest page; a NATIVE context is registers, its GPA no page).
 */
function placesGuestPage(d: Directive, vmsaMask: number): boolean {
  return d.type === IGVM_VHT_PAGE_DATA || d.type === IGVM_VHT_PARAMETER_INSERT ||
    (d.type === IGVM_VHT_VP_CONTEXT && (directiveMask(d) & vmsaMask) !== 0);
}

/**
 * Numbers added one by one, kept as runs: a number PAGE_SIZE above the one before extends the
 * last run. A kernel's or an initrd's pages make one run of GPAs and one of file offsets, so
 * a check that no two pages share a GPA, or overlap in the file, costs a few runs.
 */
class PageRuns {
  #start = new Float64Array(16);
  #count = new Uint32Array(16);
  #runs = 0;

  add(value: number): void {
    const r = this.#runs - 1;
    if (r >= 0 && value === this.#start[r] + this.#count[r] * PAGE_SIZE) {
      this.#count[r]++;
      return;
    }
    if (this.#runs === this.#start.length) {
      this.#start = grown(this.#start);
      this.#count = grown(this.#count);
    }
    this.#start[this.#runs] = value;
    this.#count[this.#runs++] = 1;
  }

  /** True when the runs' spans [start, start + count pages) overlap nowhere. */
  disjoint(): boolean {
    return disjointOrder(this.#start, this.#count, this.#runs) !== undefined;
  }
}

/**
 * The GPAs (as numbers) that more than one PAGE_DATA or PARAMETER_INSERT loads: none when
 * their runs do not overlap, else found by sorting them in a typed array. Two unaligned GPAs
 * above 2^53 may round to one number: the caller tells them apart exactly.
 */
function gpasLoadedTwice(ds: readonly Directive[], vmsaMask: number): Set<number> {
  const access = directiveAccess(ds);
  const loads = (d: Directive) => placesGuestPage(d, vmsaMask);
  const runs = new PageRuns();
  let n = 0;
  for (let i = 0; i < access.length; i++) {
    const d = access.at(i);
    if (!loads(d)) continue;
    runs.add(directiveGpa(d));
    n++;
  }
  const twice = new Set<number>();
  if (runs.disjoint()) return twice;
  const gpas = new Float64Array(n);
  n = 0;
  for (let i = 0; i < access.length; i++) {
    const d = access.at(i);
    if (loads(d)) gpas[n++] = directiveGpa(d);
  }
  gpas.sort();
  for (let i = 1; i < n; i++) if (gpas[i] === gpas[i - 1]) twice.add(gpas[i]);
  return twice;
}

/**
 * Positions 0..n-1 ordered by `key`, ties in position order (a stable sort), in a typed
 * array; keys already in order (the usual case) cost one pass.
 */
export function stableOrder(key: Float64Array, n: number): Uint32Array {
  const order = new Uint32Array(n);
  let sorted = true;
  for (let i = 0; i < n; i++) {
    order[i] = i;
    if (i > 0 && key[i] < key[i - 1]) sorted = false;
  }
  return sorted ? order : order.sort((a, b) => key[a] - key[b] || a - b);
}

/**
 * Runs of pages, run r from `start[r]` for `count[r]` pages, ordered by start (ties in
 * position order), or undefined when two of them overlap.
 */
export function disjointOrder(
  start: Float64Array,
  count: Uint32Array,
  n: number,
): Uint32Array | undefined {
  const order = stableOrder(start, n);
  for (let i = 1; i < n; i++) {
    const a = order[i - 1];
    if (start[a] + count[a] * PAGE_SIZE > start[order[i]]) return undefined;
  }
  return order;
}

/** A typed array twice as long as `a`, that starts with its elements. */
export function grown<T extends Float64Array | Int32Array | Uint32Array | Uint8Array>(a: T): T {
  const b = new (a.constructor as new (n: number) => T)(a.length * 2);
  b.set(a);
  return b;
}

/**
 * Checks the structure of the directives: lengths, reserved fields, GPAs, data ranges, and
 * parameter area sizes (whole pages, at least one, at most 4 GiB: every loader measures an
 * area page by page, so a hostile u64 size would have every command loop for hours). GPAs
 * are checked exactly (they are u64): aligned, loaded once per platform, and below 2^52 for
 * the pages a guest holds (a NATIVE register context's GPA names no page). Memory: typed
 * arrays, about 20 bytes a directive.
 */
function checkDirectives(file: FileAccess, h: IgvmFile, problems: ProblemList): void {
  const sectionEnd = h.fixed.VariableHeaderOffset + h.fixed.VariableHeaderSize;
  const ds = h.directives;
  const vmsaMask = findSnpCompatibilityMask(h) ?? 0;
  const twice = gpasLoadedTwice(ds, vmsaMask);
  // The compatibility masks a GPA loaded more than once is loaded under so far: one page per
  // GPA and platform (a multi-platform file may load a GPA once for each).
  const seenTwice = new Map<bigint, number>();
  // A page of mask 0 is loaded by no loader, and the mask rules say so when the file declares
  // a platform (directive_rules.ts); without one, it counts as a load, as any other page.
  const maskZeroLoads = !ds.some((d) => d.type === IGVM_VHT_SUPPORTED_PLATFORM);
  // Pages with file data: runs of their data's offsets.
  const dataRuns = new PageRuns();
  let withData = 0;
  const access = directiveAccess(ds);
  for (let i = 0; i < access.length; i++) {
    const d = access.at(i);
    const type = d.type;
    if (hasNonZeroReserved(d)) problems.push(`${headerAt(d)}: reserved field is not zero`);
    if (type === IGVM_VHT_PARAMETER_AREA) {
      const problem = parameterAreaSizeProblem(d.fields.NumberOfBytes ?? 0n);
      if (problem) problems.push(`${headerAt(d)}: PARAMETER_AREA ${problem}`);
    }
    if (!placesPages(type)) continue;
    if (directiveGpaPageOffset(d) !== 0) {
      problems.push(
        `${headerAt(d)}: GPA 0x${directiveGpaExact(d).toString(16)} is not page aligned`,
      );
    }
    const guestPage = placesGuestPage(d, vmsaMask);
    const gpa = directiveGpa(d);
    const twoMb = type === IGVM_VHT_PAGE_DATA && (directiveFlags(d) & IGVM_VHF_PAGE_DATA_2MB) !== 0;
    // An insert's range is checked with its area's size (directive_rules.ts).
    if (type !== IGVM_VHT_PARAMETER_INSERT && guestPage) {
      const bytes = twoMb ? PAGE_SIZE_2MB : PAGE_SIZE;
      if (gpa + bytes > GPA_LIMIT_NUMBER) {
        const problem = gpaRangeProblem(d, "page", directiveGpaExact(d), BigInt(bytes));
        if (problem) problems.push(problem);
      }
    }
    if (guestPage && twice.has(gpa) && (maskZeroLoads || directiveMask(d) !== 0)) {
      const exact = directiveGpaExact(d);
      const mask = directiveMask(d);
      const before = seenTwice.get(exact);
      if (before !== undefined && (before & mask || !before || !mask)) {
        problems.push(`${headerAt(d)}: GPA 0x${exact.toString(16)} is loaded twice`);
      }
      seenTwice.set(exact, (before ?? 0) | mask);
    }
    if (twoMb) problems.push(`${headerAt(d)}: 2 MiB pages are not supported by this verifier`);
    const offset = directiveFileOffset(d);
    if (offset !== undefined) {
      if (offset < sectionEnd) {
        problems.push(
          `${headerAt(d)}: file data at 0x${offset.toString(16)} is inside the headers`,
        );
      }
      if (offset + PAGE_SIZE > file.size) {
        problems.push(`${headerAt(d)}: file data at 0x${offset.toString(16)} runs past the end`);
      }
      dataRuns.add(offset);
      withData++;
    }
  }
  if (!ds.some((d) => d.type === IGVM_VHT_PAGE_DATA || d.type === IGVM_VHT_VP_CONTEXT)) {
    problems.push("no PAGE_DATA or VP_CONTEXT header: the file loads nothing");
  }
  if (!dataRuns.disjoint()) fileDataOverlaps(access, withData, problems);
}

/** Pushes a problem for each page whose file data overlaps the next page's in the file. */
function fileDataOverlaps(access: DirectiveAccess, withData: number, problems: ProblemList) {
  // Pages with file data: the data's offset and the directive's position.
  const dataStart = new Float64Array(withData);
  const dataDirective = new Uint32Array(withData);
  let n = 0;
  for (let i = 0; i < access.length; i++) {
    const d = access.at(i);
    if (!placesPages(d.type)) continue;
    const offset = directiveFileOffset(d);
    if (offset === undefined) continue;
    dataStart[n] = offset;
    dataDirective[n++] = i;
  }
  const order = stableOrder(dataStart, withData);
  const gpaOf = (k: number) => directiveGpaExact(access.at(dataDirective[k])).toString(16);
  for (let i = 1; i < withData; i++) {
    if (dataStart[order[i]] < dataStart[order[i - 1]] + PAGE_SIZE) {
      problems.push(
        `file data of GPA 0x${gpaOf(order[i])} overlaps that of 0x${gpaOf(order[i - 1])}`,
      );
    }
  }
}

/**
 * The structural problems of a parsed file: those of its header section (version, size,
 * checksum, unknown types), of its directives (reserved fields, GPAs, file-data ranges) and
 * between directives (lib/igvm/directive_rules.ts: platforms, policies, parameter areas).
 * A file with any of them has no trustworthy launch digest.
 */
export function structuralProblems(file: FileAccess, h: IgvmFile): ProblemList {
  const problems = new ProblemList();
  problems.push(...h.problems);
  checkDirectives(file, h, problems);
  checkDirectiveRules(h, problems);
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
 * The pages a file places in guest memory (PAGE_DATA and VP_CONTEXT at an aligned GPA), as
 * runs of consecutive pages whose data is consecutive in the file (or absent), sorted by
 * GPA in typed arrays: a kernel's or an initrd's pages are one run, so a 1 GiB initrd costs
 * a few runs, not 263k entries. Where two pages place the same GPA, the later one counts:
 * runs that overlap are cut into single pages, which keep that rule.
 */
class GuestPageIndex {
  /** Run r places `count[r]` pages from GPA `start[r]` on, data from `offset[r]` (0: none). */
  #start = new Float64Array(16);
  #offset = new Float64Array(16);
  #count = new Uint32Array(16);
  #runs = 0;

  constructor(ds: readonly Directive[], platformMask: number | undefined) {
    const access = directiveAccess(ds);
    let pages = 0;
    for (let i = 0; i < access.length; i++) {
      const d = access.at(i);
      if (d.type !== IGVM_VHT_PAGE_DATA && d.type !== IGVM_VHT_VP_CONTEXT) continue;
      if (directiveGpaPageOffset(d) !== 0) continue; // never a page's address
      if (platformMask !== undefined && !(directiveMask(d) & platformMask)) continue;
      this.#add(directiveGpa(d), directiveFileOffset(d) ?? 0);
      pages++;
    }
    if (!this.#sortRuns()) this.#splitOverlaps(pages);
  }

  /** Appends a page in file order: to the last run when it follows it, else as a new run. */
  #add(gpa: number, offset: number): void {
    const r = this.#runs - 1;
    if (r >= 0) {
      const next = this.#count[r] * PAGE_SIZE;
      const start = this.#offset[r];
      if (
        gpa === this.#start[r] + next &&
        (start === 0 ? offset === 0 : offset === start + next)
      ) {
        this.#count[r]++;
        return;
      }
    }
    this.#push(gpa, offset, 1);
  }

  #push(gpa: number, offset: number, count: number): void {
    const r = this.#runs;
    if (r === this.#start.length) {
      this.#start = grown(this.#start);
      this.#offset = grown(this.#offset);
      this.#count = grown(this.#count);
    }
    this.#start[r] = gpa;
    this.#offset[r] = offset;
    this.#count[r] = count;
    this.#runs = r + 1;
  }

  /** Sorts the runs by GPA; false when two overlap (the order is then file order still). */
  #sortRuns(): boolean {
    const n = this.#runs;
    const order = disjointOrder(this.#start, this.#count, n);
    if (!order) return false;
    const start = new Float64Array(n);
    const offset = new Float64Array(n);
    const count = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      start[i] = this.#start[order[i]];
      offset[i] = this.#offset[order[i]];
      count[i] = this.#count[order[i]];
    }
    this.#start = start;
    this.#offset = offset;
    this.#count = count;
    return true;
  }

  /**
   * Replaces overlapping runs (in file order) by single pages sorted by GPA, the later of
   * two pages at one GPA kept.
   */
  #splitOverlaps(pages: number): void {
    const gpas = new Float64Array(pages);
    const offsets = new Float64Array(pages);
    let n = 0;
    for (let r = 0; r < this.#runs; r++) {
      for (let k = 0; k < this.#count[r]; k++) {
        gpas[n] = this.#start[r] + k * PAGE_SIZE;
        offsets[n++] = this.#offset[r] === 0 ? 0 : this.#offset[r] + k * PAGE_SIZE;
      }
    }
    const order = stableOrder(gpas, n);
    this.#runs = 0;
    for (let i = 0; i < n; i++) {
      const k = order[i];
      if (i + 1 < n && gpas[order[i + 1]] === gpas[k]) continue; // a later page has this GPA
      this.#push(gpas[k], offsets[k], 1);
    }
  }

  /** The run that places a page at `gpa`, or -1. */
  #find(gpa: number): number {
    let lo = 0;
    let hi = this.#runs; // the answer is below hi: the first run starting above `gpa`
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#start[mid] <= gpa) lo = mid + 1;
      else hi = mid;
    }
    const r = lo - 1;
    if (r < 0) return -1;
    const at = gpa - this.#start[r];
    return at < this.#count[r] * PAGE_SIZE && at % PAGE_SIZE === 0 ? r : -1;
  }

  /** True when the file places a page at `gpa`. */
  has(gpa: number): boolean {
    return this.#find(gpa) >= 0;
  }

  /** The file offset of the data of the page at `gpa`; undefined for a page with none. */
  fileOffset(gpa: number): number | undefined {
    const r = this.#find(gpa);
    if (r < 0 || this.#offset[r] === 0) return undefined;
    return this.#offset[r] + (gpa - this.#start[r]);
  }
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
  const pages = new GuestPageIndex(h.directives, platformMask);
  const cache = new Map<number, Uint8Array>();
  return {
    /** Loads the pages of [gpa, gpa + length) into the cache. */
    async load(gpa: number, length: number) {
      for (let p = gpa - (gpa % PAGE_SIZE); p < gpa + length; p += PAGE_SIZE) {
        if (cache.has(p) || !pages.has(p)) continue;
        const off = pages.fileOffset(p);
        cache.set(p, off === undefined ? ZERO_PAGE : await file.readAt(off, PAGE_SIZE));
      }
    },
    read: (gpa: number, length: number): Uint8Array => readGuest(cache, gpa, length),
    /** True when the file places a page at `gpa` (page aligned). */
    has: (gpa: number): boolean => pages.has(gpa),
  };
}
