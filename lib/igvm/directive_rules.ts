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
function checkPlatformHeaders(h: IgvmFile, problems: ProblemList): void {
  const platformTypes = new Map<bigint, Directive>();
  let platformBits = 0;
  let policyBits = 0;
  for (const d of h.directives) {
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
  }
}

/**
 * Parameter areas and their uses: an index is declared once, used (VP_COUNT, MEMORY_MAP,
 * ... at a ByteOffset inside it) while declared, inserted once; the GPA range an insert
 * places overlaps no page and no other insert; all inserts place at most 4 GiB.
 */
function checkParameterAreas(h: IgvmFile, problems: ProblemList): void {
  const areas = new Map<number, { bytes: bigint; inserted: boolean }>();
  const inserts: { start: number; end: number; d: Directive }[] = [];
  let insertedBytes = 0;
  for (const d of h.directives) {
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
        continue;
      }
      if (area.inserted) {
        problems.push(`${at(d)}: parameter area ${index} is inserted twice`);
        continue;
      }
      area.inserted = true;
      const bytes = Number(area.bytes);
      insertedBytes += bytes;
      const start = directiveGpa(d);
      inserts.push({ start, end: start + Math.max(bytes, PAGE_SIZE), d });
    }
  }
  if (insertedBytes > MAX_INSERTED_BYTES) {
    problems.push(
      `the parameter inserts place ${hex(insertedBytes)} bytes, more than 4 GiB together`,
    );
  }
  checkInsertOverlaps(h, inserts, problems);
}

/** An insert's GPA range may not overlap another insert's or any page of the file. */
function checkInsertOverlaps(
  h: IgvmFile,
  inserts: { start: number; end: number; d: Directive }[],
  problems: ProblemList,
): void {
  if (inserts.length === 0) return;
  const sorted = [...inserts].sort((a, b) => a.start - b.start);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].start < sorted[i - 1].end) {
      problems.push(
        `${at(sorted[i].d)}: PARAMETER_INSERT at ${hex(sorted[i].start)} overlaps the one at ${
          hex(sorted[i - 1].start)
        } (${at(sorted[i - 1].d)})`,
      );
    }
  }
  // Each page against the sorted ranges: a binary search for the last range starting at or
  // below it.
  for (const d of h.directives) {
    if (d.type !== IGVM_VHT_PAGE_DATA && d.type !== IGVM_VHT_VP_CONTEXT) continue;
    const gpa = directiveGpa(d);
    let lo = 0;
    let hi = sorted.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (sorted[mid].start <= gpa) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    // An insert at the page's own GPA is reported as "loaded twice" by the GPA check.
    if (found >= 0 && gpa < sorted[found].end && gpa !== sorted[found].start) {
      problems.push(
        `${at(d)}: page ${hex(gpa)} is inside the parameter area inserted at ${
          hex(sorted[found].start)
        }`,
      );
    }
  }
}

/** PAGE_DATA flags: only 2 MiB, unmeasured and guest-invalid are defined. */
function checkPageDataFlags(h: IgvmFile, problems: ProblemList): void {
  for (const d of h.directives) {
    if (d.type !== IGVM_VHT_PAGE_DATA) continue;
    const flags = Number(d.fields.Flags ?? 0n);
    const reserved = (flags & ~PAGE_DATA_FLAGS) >>> 0;
    if (reserved) {
      problems.push(`${at(d)}: PAGE_DATA flags ${hex(flags)} set reserved bits ${hex(reserved)}`);
    }
  }
}

/**
 * Pushes every problem of the rules between directives: platform and policy headers,
 * parameter areas and inserts, PAGE_DATA flags. Runs in time linear in the headers (plus a
 * sort), whatever sizes the headers claim.
 */
export function checkDirectiveRules(h: IgvmFile, problems: ProblemList): void {
  checkPlatformHeaders(h, problems);
  checkParameterAreas(h, problems);
  checkPageDataFlags(h, problems);
}
