/**
 * Rules between directives, checked before any digest: what makes a file one no loader can
 * take, or one whose measurement would cost more than the file can place. They follow the
 * igvm crate's validation (`validate_directive_headers`: a parameter area is declared once,
 * used while declared, inserted once) and add the bounds igvmgen needs: an inserted area may
 * not overlap a page or another insert, and all inserts together place at most 4 GiB, so
 * every loader model's work is bounded by what the file really places.
 */
import { PAGE_SIZE } from "../bytes/le.ts";
import {
  IGVM_VHF_PAGE_DATA_2MB,
  IGVM_VHF_PAGE_DATA_GUEST_INVALID,
  IGVM_VHF_PAGE_DATA_UNMEASURED,
  IGVM_VHS_PARAMETER,
  IGVM_VHT_PAGE_DATA,
  IGVM_VHT_PARAMETER_AREA,
  IGVM_VHT_PARAMETER_INSERT,
  IGVM_VHT_SNP_POLICY,
  IGVM_VHT_SUPPORTED_PLATFORM,
  IGVM_VHT_VP_CONTEXT,
  VARIABLE_HEADER_BODIES,
} from "./defs.ts";
import type { Directive, IgvmFile } from "./reader.ts";
import type { ProblemList } from "./problem_list.ts";
import { directiveGpa, directiveMask } from "./directives.ts";

/** The PAGE_DATA flags the format defines; the other bits are reserved. */
const PAGE_DATA_FLAGS = IGVM_VHF_PAGE_DATA_2MB | IGVM_VHF_PAGE_DATA_UNMEASURED |
  IGVM_VHF_PAGE_DATA_GUEST_INVALID;

/** The most bytes all PARAMETER_INSERTs of a file may place together: 4 GiB. */
const MAX_INSERTED_BYTES = 0x1_0000_0000;

/** Header types whose body is IGVM_VHS_PARAMETER: they name a parameter area to fill. */
const PARAMETER_USAGE_TYPES = new Set(
  [...VARIABLE_HEADER_BODIES].filter(([, b]) => b.body === IGVM_VHS_PARAMETER).map(([t]) => t),
);

const at = (d: Directive) => `header at 0x${d.offset.toString(16)}`;
const hex = (n: number) => `0x${n.toString(16)}`;

/**
 * Platform and policy headers: one SUPPORTED_PLATFORM per platform type and mask bit, one
 * SNP_POLICY per mask bit (two would leave the loader to pick one).
 */
function platformRules(problems: ProblemList): (d: Directive) => void {
  const platformTypes = new Map<bigint, Directive>();
  let platformBits = 0;
  let policyBits = 0;
  return (d) => {
    const mask = directiveMask(d);
    if (d.type === IGVM_VHT_SUPPORTED_PLATFORM) {
      const type = d.fields.PlatformType ?? 0n;
      const first = platformTypes.get(type);
      if (first) {
        problems.push(
          `${at(d)}: a second SUPPORTED_PLATFORM of type ${type} (the first at 0x${
            first.offset.toString(16)
          })`,
        );
      } else platformTypes.set(type, d);
      if (mask & platformBits) {
        problems.push(`${at(d)}: SUPPORTED_PLATFORM mask ${hex(mask)} is another platform's`);
      }
      platformBits |= mask;
    } else if (d.type === IGVM_VHT_SNP_POLICY) {
      if (mask & policyBits) {
        problems.push(`${at(d)}: a second SNP_POLICY for mask ${hex(mask & policyBits)}`);
      }
      policyBits |= mask;
    }
  };
}

/**
 * Parameter areas and their uses: an index is declared once, used (VP_COUNT, MEMORY_MAP,
 * ... at a ByteOffset inside it) while declared, inserted once; all inserts place at most
 * 4 GiB. `visit` takes each directive; `finish` returns the inserts, for the overlap check.
 */
function parameterAreaRules(problems: ProblemList) {
  const areas = new Map<number, { bytes: bigint; inserted: boolean }>();
  const inserts: Insert[] = [];
  let insertedBytes = 0;
  const visit = (d: Directive): void => {
    if (d.type === IGVM_VHT_PARAMETER_AREA) {
      const index = Number(d.fields.ParameterAreaIndex ?? 0n);
      if (areas.has(index)) problems.push(`${at(d)}: parameter area ${index} is declared twice`);
      else areas.set(index, { bytes: d.fields.NumberOfBytes ?? 0n, inserted: false });
    } else if (PARAMETER_USAGE_TYPES.has(d.type)) {
      const index = Number(d.fields.ParameterAreaIndex ?? 0n);
      const area = areas.get(index);
      if (!area) problems.push(`${at(d)}: ${d.name} names parameter area ${index}, not declared`);
      else if (area.inserted) {
        problems.push(`${at(d)}: ${d.name} names parameter area ${index} after its insert`);
      } else if ((d.fields.ByteOffset ?? 0n) >= area.bytes) {
        problems.push(
          `${at(d)}: ${d.name} at byte ${d.fields.ByteOffset} of parameter area ${index}, ` +
            `which has ${area.bytes}`,
        );
      }
    } else if (d.type === IGVM_VHT_PARAMETER_INSERT) {
      const index = Number(d.fields.ParameterAreaIndex ?? 0n);
      const area = areas.get(index);
      if (!area) {
        problems.push(`${at(d)}: PARAMETER_INSERT of parameter area ${index}, not declared`);
      } else if (area.inserted) {
        problems.push(`${at(d)}: parameter area ${index} is inserted twice`);
      } else {
        area.inserted = true;
        const bytes = Number(area.bytes);
        insertedBytes += bytes;
        const start = directiveGpa(d);
        const end = start + Math.max(bytes, PAGE_SIZE);
        inserts.push({ start, end, mask: directiveMask(d), d });
      }
    }
  };
  const finish = (): Insert[] => {
    if (insertedBytes > MAX_INSERTED_BYTES) {
      problems.push(
        `the parameter inserts place ${hex(insertedBytes)} bytes, more than 4 GiB together`,
      );
    }
    return inserts;
  };
  return { visit, finish };
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
          `${at(r.d)}: PARAMETER_INSERT at ${hex(r.start)} overlaps the one at ${
            hex(open.start)
          } (${at(open.d)})`,
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
        `${at(d)}: page ${hex(gpa)} is inside the parameter area inserted at ${hex(r.start)}`,
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
  const flags = Number(d.fields.Flags ?? 0n);
  const reserved = (flags & ~PAGE_DATA_FLAGS) >>> 0;
  if (reserved) {
    problems.push(`${at(d)}: PAGE_DATA flags ${hex(flags)} set reserved bits ${hex(reserved)}`);
  }
}

/**
 * Pushes every problem of the rules between directives: platform and policy headers,
 * parameter areas and inserts, PAGE_DATA flags. One pass over the headers (a second over the
 * pages when the file inserts parameter areas) plus a sort, whatever sizes they claim.
 */
export function checkDirectiveRules(h: IgvmFile, problems: ProblemList): void {
  const platforms = platformRules(problems);
  const areas = parameterAreaRules(problems);
  for (const d of h.directives) {
    if (d.type === IGVM_VHT_PAGE_DATA) {
      checkPageDataFlags(d, problems);
      continue;
    }
    platforms(d);
    areas.visit(d);
  }
  checkInsertOverlaps(h, areas.finish(), problems);
}
