/**
 * Rules between directives, checked before any digest: what makes a file one no loader can
 * take, or one whose measurement would cost more than the file can place. They follow the
 * igvm crate's validation (`validate_directive_headers`: a parameter area is declared once,
 * used while declared, inserted once) and add the bounds igvmgen needs: an inserted area may
 * not overlap a page or another insert, and all inserts together place at most 4 GiB, so
 * every loader model's work is bounded by what the file really places.
 */
import { hex, PAGE_SIZE } from "../bytes/le.ts";
import {
  IGVM_PLATFORM_TYPE_SEV_SNP,
  IGVM_VHF_PAGE_DATA_2MB,
  IGVM_VHF_PAGE_DATA_GUEST_INVALID,
  IGVM_VHF_PAGE_DATA_UNMEASURED,
  IGVM_VHS_PARAMETER,
  IGVM_VHT_ENVIRONMENT_INFO_PARAMETER,
  IGVM_VHT_PAGE_DATA,
  IGVM_VHT_PARAMETER_AREA,
  IGVM_VHT_PARAMETER_INSERT,
  IGVM_VHT_REQUIRED_MEMORY,
  IGVM_VHT_SNP_ID_BLOCK,
  IGVM_VHT_SNP_POLICY,
  IGVM_VHT_SUPPORTED_PLATFORM,
  IGVM_VHT_VP_CONTEXT,
  IGVM_VHT_VP_COUNT_PARAMETER,
  VARIABLE_HEADER_BODIES,
} from "./defs.ts";
import type { Directive, IgvmFile } from "./reader.ts";
import type { ProblemList } from "./problem_list.ts";
import {
  directiveFlags,
  directiveGpa,
  directiveGpaExact,
  directiveMask,
  gpaRangeProblem,
  headerAt,
} from "./directives.ts";

/** The PAGE_DATA flags the format defines; the other bits are reserved. */
const PAGE_DATA_FLAGS = IGVM_VHF_PAGE_DATA_2MB | IGVM_VHF_PAGE_DATA_UNMEASURED |
  IGVM_VHF_PAGE_DATA_GUEST_INVALID;

/** The most bytes all PARAMETER_INSERTs of a file may place together: 4 GiB. */
const MAX_INSERTED_BYTES = 0x1_0000_0000;

/** Header types whose body is IGVM_VHS_PARAMETER: they name a parameter area to fill. */
const PARAMETER_USAGE_TYPES = new Set(
  [...VARIABLE_HEADER_BODIES].filter(([, b]) => b.body === IGVM_VHS_PARAMETER).map(([t]) => t),
);

/** The pages of one compatibility mask: the first (in file order) and how many there are. */
interface PageMask {
  first: Directive;
  count: number;
}

/**
 * Platform and policy headers: one SUPPORTED_PLATFORM per platform type and mask bit, one
 * SNP_POLICY per mask bit (two would leave the loader to pick one). Every other header with a
 * compatibility mask (policy, pages, VP context, ID block, parameter uses and inserts) names
 * at least one declared platform and no undeclared one: a loader applies a header only to the
 * platforms its mask names, so an SNP_POLICY of mask 0 would leave the launch to the host's
 * default policy while the ID block states another, and a page of mask 0 is loaded by no
 * loader (QEMU and the igvm crate skip it). A VP context belongs to exactly one platform:
 * the igvm crate (QEMU, Cloud Hypervisor and OpenVMM parse with it) refuses a file whose VP
 * context mask is not one declared platform's mask. Pages are tallied by mask (`pages`), so
 * a file of a million pages costs a few map entries, and a bad mask is one problem.
 */
function platformRules(problems: ProblemList) {
  const platformTypes = new Map<bigint, Directive>();
  const platformMasks = new Set<number>();
  const masked: Directive[] = [];
  let platformBits = 0;
  let snpBits = 0;
  let policyBits = 0;
  const visit = (d: Directive): void => {
    if (d.fields.CompatibilityMask === undefined) return;
    const mask = directiveMask(d);
    if (d.type === IGVM_VHT_SUPPORTED_PLATFORM) {
      const type = d.fields.PlatformType ?? 0n;
      const first = platformTypes.get(type);
      if (first) {
        problems.push(
          `${headerAt(d)}: a second SUPPORTED_PLATFORM of type ${type} (the first at 0x${
            first.offset.toString(16)
          })`,
        );
      } else platformTypes.set(type, d);
      if (mask & platformBits) {
        problems.push(`${headerAt(d)}: SUPPORTED_PLATFORM mask ${hex(mask)} is another platform's`);
      }
      platformBits |= mask;
      platformMasks.add(mask);
      if (type === BigInt(IGVM_PLATFORM_TYPE_SEV_SNP)) snpBits |= mask;
      return;
    }
    // The ID block's mask is checked with its other fields (lib/measure/id_block_checks.ts).
    if (d.type === IGVM_VHT_SNP_ID_BLOCK) return;
    if (d.type === IGVM_VHT_SNP_POLICY) {
      if (mask & policyBits) {
        problems.push(`${headerAt(d)}: a second SNP_POLICY for mask ${hex(mask & policyBits)}`);
      }
      policyBits |= mask;
    }
    masked.push(d);
  };
  const finish = (pages: Map<number, PageMask>): void => {
    if (platformBits === 0) return; // "no platform" is the reader's problem already
    for (const [mask, { first, count }] of pages) {
      const page = `page at GPA 0x${directiveGpaExact(first).toString(16)}`;
      const more = count > 1 ? ` (and ${count - 1} more pages of this mask)` : "";
      if ((mask & platformBits) === 0) {
        problems.push(
          `${headerAt(first)}: PAGE_DATA mask ${hex(mask)} names no platform of the file, so ` +
            `no loader loads its ${page}${more}`,
        );
      } else if ((mask & ~platformBits) >>> 0) {
        problems.push(
          `${headerAt(first)}: PAGE_DATA mask ${hex(mask)} of the ${page}${more} names bits ${
            hex((mask & ~platformBits) >>> 0)
          } of no declared platform`,
        );
      }
    }
    for (const d of masked) {
      const mask = directiveMask(d);
      const name = d.name.replace("IGVM_VHT_", "");
      if ((mask & platformBits) === 0) {
        problems.push(
          `${headerAt(d)}: ${name} mask ${hex(mask)} names no platform of the file, so no loader ` +
            `applies it`,
        );
      } else if (d.type === IGVM_VHT_SNP_POLICY && snpBits && !(mask & snpBits)) {
        problems.push(
          `${headerAt(d)}: SNP_POLICY mask ${hex(mask)} is not the SEV-SNP platform's ${
            hex(snpBits)
          }, ` +
            `so the launch would use the host's default policy`,
        );
      } else if ((mask & ~platformBits) >>> 0) {
        problems.push(
          `${headerAt(d)}: ${name} mask ${hex(mask)} names bits ${
            hex((mask & ~platformBits) >>> 0)
          } of no declared platform`,
        );
      } else if (d.type === IGVM_VHT_VP_CONTEXT && !platformMasks.has(mask)) {
        problems.push(
          `${headerAt(d)}: VP_CONTEXT mask ${hex(mask)} names more than one platform: a VP ` +
            `context belongs to one, and the igvm library refuses the file (QEMU 10.2.2: ` +
            `"Unable to parse IGVM file")`,
        );
      }
    }
  };
  return { visit, finish };
}

/**
 * Parameter areas and their uses: an index is declared once, used (VP_COUNT, MEMORY_MAP,
 * ... at a ByteOffset inside it) while declared, inserted once; all inserts place at most
 * 4 GiB. `visit` takes each directive; `finish` returns the inserts, for the overlap check.
 */
function parameterAreaRules(problems: ProblemList) {
  const areas = new Map<number, { bytes: bigint; inserted: boolean }>();
  const uses: Directive[] = [];
  const inserts: Insert[] = [];
  let insertedBytes = 0;
  const visit = (d: Directive): void => {
    if (d.type === IGVM_VHT_PARAMETER_AREA) {
      const index = Number(d.fields.ParameterAreaIndex ?? 0n);
      if (areas.has(index)) {
        problems.push(`${headerAt(d)}: parameter area ${index} is declared twice`);
      } else areas.set(index, { bytes: d.fields.NumberOfBytes ?? 0n, inserted: false });
    } else if (PARAMETER_USAGE_TYPES.has(d.type)) {
      const index = Number(d.fields.ParameterAreaIndex ?? 0n);
      const area = areas.get(index);
      if (!area) {
        problems.push(`${headerAt(d)}: ${d.name} names parameter area ${index}, not declared`);
      } else if (area.inserted) {
        problems.push(`${headerAt(d)}: ${d.name} names parameter area ${index} after its insert`);
      } else if ((d.fields.ByteOffset ?? 0n) >= area.bytes) {
        problems.push(
          `${headerAt(d)}: ${d.name} at byte ${d.fields.ByteOffset} of parameter area ${index}, ` +
            `which has ${area.bytes}`,
        );
      } else uses.push(d);
    } else if (d.type === IGVM_VHT_PARAMETER_INSERT) {
      const index = Number(d.fields.ParameterAreaIndex ?? 0n);
      const area = areas.get(index);
      if (!area) {
        problems.push(`${headerAt(d)}: PARAMETER_INSERT of parameter area ${index}, not declared`);
      } else if (area.inserted) {
        problems.push(`${headerAt(d)}: parameter area ${index} is inserted twice`);
      } else {
        area.inserted = true;
        const bytes = Number(area.bytes);
        insertedBytes += bytes;
        const placed = BigInt(Math.max(bytes, PAGE_SIZE));
        const beyond = gpaRangeProblem(
          d,
          `PARAMETER_INSERT of ${hex(placed)} bytes`,
          directiveGpaExact(d),
          placed,
        );
        if (beyond) problems.push(beyond);
        const start = directiveGpa(d);
        const end = start + Math.max(bytes, PAGE_SIZE);
        inserts.push({ start, end, mask: directiveMask(d), d });
      }
    }
  };
  const finish = (): Insert[] => {
    checkUseOverlaps(uses, areas, problems);
    if (insertedBytes > MAX_INSERTED_BYTES) {
      problems.push(
        `the parameter inserts place ${hex(insertedBytes)} bytes, more than 4 GiB together`,
      );
    }
    return inserts;
  };
  return { visit, finish };
}

/**
 * The bytes a parameter use fills from its ByteOffset: a u32 for VP_COUNT and
 * ENVIRONMENT_INFO, the rest of the area for the tables (memory map, MADT, SRAT, command
 * line, device tree, ...), whose length the loader decides.
 */
function useExtent(d: Directive, areaBytes: bigint): bigint {
  const offset = d.fields.ByteOffset ?? 0n;
  return d.type === IGVM_VHT_VP_COUNT_PARAMETER || d.type === IGVM_VHT_ENVIRONMENT_INFO_PARAMETER
    ? 4n
    : areaBytes - offset;
}

/**
 * Two parameter uses of one area may not overlap: the loader writes both, and the guest
 * reads one of them wrong (a VP count inside the memory map, two maps at one offset).
 */
function checkUseOverlaps(
  uses: Directive[],
  areas: Map<number, { bytes: bigint }>,
  problems: ProblemList,
): void {
  const byArea = new Map<bigint, Directive[]>();
  for (const d of uses) {
    const index = d.fields.ParameterAreaIndex ?? 0n;
    byArea.set(index, [...byArea.get(index) ?? [], d]);
  }
  for (const [index, list] of byArea) {
    const bytes = areas.get(Number(index))?.bytes ?? 0n;
    const offset = (d: Directive) => d.fields.ByteOffset ?? 0n;
    list.sort((a, b) => (offset(a) < offset(b) ? -1 : offset(a) > offset(b) ? 1 : 0));
    for (let i = 1; i < list.length; i++) {
      const [prev, d] = [list[i - 1], list[i]];
      if (offset(d) < offset(prev) + useExtent(prev, bytes)) {
        problems.push(
          `${headerAt(d)}: ${d.name.replace("IGVM_VHT_", "")} at byte ${offset(d)} of parameter ` +
            `area ${index} overlaps ${prev.name.replace("IGVM_VHT_", "")} at byte ${offset(prev)}`,
        );
      }
    }
  }
}

/** A parameter area's insert: the GPA range it places, for which platforms. */
interface Insert {
  start: number;
  end: number;
  mask: number;
  d: Directive;
}

/**
 * The inserts that load into the guest of each platform bit, by GPA: a mask of 0 loads into
 * every guest. The key -1 holds them all when no insert names a bit.
 */
function insertsByBit(inserts: Insert[]): Map<number, Insert[]> {
  let bits = 0;
  for (const r of inserts) bits |= r.mask;
  const out = new Map<number, Insert[]>();
  if (bits === 0) out.set(-1, [...inserts].sort((a, b) => a.start - b.start));
  for (let bit = 0; bit < 32; bit++) {
    const m = (1 << bit) >>> 0;
    if (!(bits & m)) continue;
    const list = inserts.filter((r) => r.mask === 0 || (r.mask & m) !== 0);
    out.set(bit, list.sort((a, b) => a.start - b.start));
  }
  return out;
}

/**
 * An insert's GPA range may not overlap another insert's or any page of the file loaded for
 * the same platform (in a multi-platform file each platform has its own guest memory). One
 * sweep per platform bit, and a binary search per page.
 */
function checkInsertOverlaps(h: IgvmFile, inserts: Insert[], problems: ProblemList): void {
  if (inserts.length === 0) return;
  const byBit = insertsByBit(inserts);
  const reported = new Set<Insert>();
  for (const list of byBit.values()) {
    let open: Insert | undefined; // the range reaching furthest so far
    for (const r of list) {
      if (open && r.start < open.end && !reported.has(r)) {
        reported.add(r);
        problems.push(
          `${headerAt(r.d)}: PARAMETER_INSERT at ${hex(r.start)} overlaps the one at ${
            hex(open.start)
          } (${headerAt(open.d)})`,
        );
      }
      if (!open || r.end > open.end) open = r;
    }
  }
  for (const d of h.directives) {
    if (d.type !== IGVM_VHT_PAGE_DATA && d.type !== IGVM_VHT_VP_CONTEXT) continue;
    const gpa = directiveGpa(d);
    const mask = directiveMask(d);
    for (const [bit, list] of byBit) {
      if (bit >= 0 && mask !== 0 && !(mask & ((1 << bit) >>> 0))) continue;
      const r = lastStartingAtOrBelow(list, gpa);
      // An insert at the page's own GPA is reported as "loaded twice" by the GPA check.
      if (!r || gpa >= r.end || gpa === r.start) continue;
      problems.push(
        `${headerAt(d)}: page ${hex(gpa)} is inside the parameter area inserted at ${hex(r.start)}`,
      );
      break;
    }
  }
}

/** The last range of `sorted` (by start) that starts at or below `gpa`. */
function lastStartingAtOrBelow(sorted: Insert[], gpa: number): Insert | undefined {
  let lo = 0;
  let hi = sorted.length - 1;
  let found: Insert | undefined;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid].start <= gpa) {
      found = sorted[mid];
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}

/** PAGE_DATA flags: only 2 MiB, unmeasured and guest-invalid are defined. */
function checkPageDataFlags(d: Directive, problems: ProblemList): void {
  const flags = directiveFlags(d);
  const reserved = (flags & ~PAGE_DATA_FLAGS) >>> 0;
  if (reserved) {
    problems.push(
      `${headerAt(d)}: PAGE_DATA flags ${hex(flags)} set reserved bits ${hex(reserved)}`,
    );
  }
}

/**
 * Pushes every problem of the rules between directives: platform and policy headers, the
 * masks of pages, parameter areas and inserts, PAGE_DATA flags, and the GPA ranges of inserts
 * and required memory (below 2^52). One pass over the headers (a second over the
 * pages when the file inserts parameter areas) plus a sort, whatever sizes they claim.
 */
export function checkDirectiveRules(h: IgvmFile, problems: ProblemList): void {
  const platforms = platformRules(problems);
  const areas = parameterAreaRules(problems);
  const pages = new Map<number, PageMask>();
  for (const d of h.directives) {
    if (d.type === IGVM_VHT_PAGE_DATA) {
      checkPageDataFlags(d, problems);
      const mask = directiveMask(d);
      const tally = pages.get(mask);
      if (tally) tally.count++;
      else pages.set(mask, { first: d, count: 1 });
      continue;
    }
    if (d.type === IGVM_VHT_REQUIRED_MEMORY) {
      const bytes = d.fields.NumberOfBytes ?? 0n;
      const beyond = gpaRangeProblem(
        d,
        `REQUIRED_MEMORY of ${hex(bytes)} bytes`,
        directiveGpaExact(d),
        bytes,
      );
      if (beyond) problems.push(beyond);
    }
    platforms.visit(d);
    areas.visit(d);
  }
  platforms.finish(pages);
  checkInsertOverlaps(h, areas.finish(), problems);
}
