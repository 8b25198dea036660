/**
 * Loader models that take the VMSA and every page from the file (../shared/LOADERS.md §3, §5,
 * §8, §10): Hyper-V (file order, the original's digest), Cloud Hypervisor on MSHV (stable
 * sort by GPA) and COCONUT's igvmmeasure. Each is a LaunchUpdateSource: an async iterable
 * of launch updates, produced in batches so memory stays bounded for 1M-page files.
 */
import { PAGE_SIZE } from "../bytes/le.ts";
import {
  IGVM_VHF_PAGE_DATA_2MB,
  IGVM_VHF_PAGE_DATA_GUEST_INVALID,
  IGVM_VHS_PAGE_DATA_TYPE_CPUID_XF,
  IGVM_VHT_PAGE_DATA,
  IGVM_VHT_PARAMETER_AREA,
  IGVM_VHT_PARAMETER_INSERT,
  IGVM_VHT_VP_CONTEXT,
} from "../igvm/defs.ts";
import { directiveAccess, directiveFileOffset, type IgvmFile } from "../igvm/reader.ts";
import { InputError } from "../errors.ts";
import type { HostConfig, LaunchUpdateSource } from "./launch_update.ts";
import {
  SNP_PAGE_TYPE_NORMAL,
  SNP_PAGE_TYPE_UNMEASURED,
  SNP_PAGE_TYPE_VMSA,
} from "./snp_digest.ts";
import {
  directiveDataType,
  directiveFlags,
  directiveGpa as gpaOf,
  directiveMask,
  pageGpa,
  parameterAreaSizes,
  snpCompatibilityMask,
} from "../igvm/directives.ts";
import { pageDataSnpType } from "./page_type.ts";
import { disjointOrder, grown, stableOrder } from "../igvm/structure.ts";
import { hashPlanned, type PlannedUpdate } from "./planned_updates.ts";

/** How one file-order model treats the directives (LOADERS.md §10). */
interface FileOrderRules {
  /** True when the directive's compatibility mask selects it for the SNP platform. */
  selects: (mask: number, snpMask: number) => boolean;
  /** Shared (guest-invalid) pages: skipped, or measured as NORMAL. */
  sharedMeasured: boolean;
  /** A PARAMETER_INSERT counts its first page only (else every page of its area). */
  insertFirstPageOnly: boolean;
  /** Empty NORMAL pages measured as ZERO (type 3) rather than NORMAL of a zero page. */
  nativeZero: boolean;
  /** The loader's name for errors. */
  name: string;
}

/** A refusal of a file the models cannot measure. */
const refuse = (message: string) => new InputError(message);

/** The updates of the directives in file order under `rules`. */
function* planFileOrder(headers: IgvmFile, rules: FileOrderRules): Generator<PlannedUpdate> {
  const snpMask = snpCompatibilityMask(headers);
  parameterAreaSizes(headers); // refuses, up front, an area size no guest can have
  const areaBytes = new Map<number, number>();
  const ds = directiveAccess(headers.directives);
  for (let i = 0; i < ds.length; i++) {
    const d = ds.at(i);
    const mask = directiveMask(d);
    if (d.type === IGVM_VHT_PARAMETER_AREA) {
      areaBytes.set(Number(d.fields.ParameterAreaIndex), Number(d.fields.NumberOfBytes));
    } else if (d.type === IGVM_VHT_PAGE_DATA) {
      if (!rules.selects(mask, snpMask)) continue;
      const flags = directiveFlags(d);
      const gpa = pageGpa(d, refuse);
      if (flags & IGVM_VHF_PAGE_DATA_2MB) {
        throw new InputError(
          `page 0x${gpa.toString(16)} is a 2 MiB page: not supported by the ${rules.name} model`,
        );
      }
      if ((flags & IGVM_VHF_PAGE_DATA_GUEST_INVALID) && !rules.sharedMeasured) continue;
      const pageType = pageDataSnpType(d, rules.nativeZero);
      if (pageType === undefined) {
        throw new InputError(
          `page 0x${gpa.toString(16)}: unknown page data type ${directiveDataType(d)}`,
        );
      }
      yield {
        pageType,
        gpa,
        directive: i,
        dataOffset: pageType === SNP_PAGE_TYPE_NORMAL ? directiveFileOffset(d) : undefined,
      };
    } else if (d.type === IGVM_VHT_PARAMETER_INSERT) {
      if (!rules.selects(mask, snpMask)) continue;
      const index = Number(d.fields.ParameterAreaIndex);
      const bytes = areaBytes.get(index);
      if (bytes === undefined) {
        throw new InputError(`PARAMETER_INSERT at 0x${d.offset.toString(16)}: no area ${index}`);
      }
      const pages = rules.insertFirstPageOnly ? 1 : Math.ceil(bytes / PAGE_SIZE);
      for (let p = 0; p < pages; p++) {
        const gpa = pageGpa(d, refuse) + p * PAGE_SIZE;
        yield { pageType: SNP_PAGE_TYPE_UNMEASURED, gpa, directive: i };
      }
    } else if (d.type === IGVM_VHT_VP_CONTEXT) {
      if (!rules.selects(mask, snpMask)) continue;
      yield {
        pageType: SNP_PAGE_TYPE_VMSA,
        gpa: pageGpa(d, refuse),
        directive: i,
        dataOffset: directiveFileOffset(d),
      };
    }
  }
}

/**
 * Runs of planned updates in typed arrays: run r is `count[r]` updates of type
 * `pageType[r]` from GPA `gpa[r]`, directive `directive[r]` and file data `dataOffset[r]`
 * (-1: none) on, each the next page, directive and page of data after the one before.
 */
class PlanRuns {
  gpa = new Float64Array(16);
  dataOffset = new Float64Array(16);
  directive = new Int32Array(16);
  count = new Uint32Array(16);
  pageType = new Uint8Array(16);
  length = 0;

  /** Appends an update: to the last run when it follows it, else as a new run. */
  add(u: PlannedUpdate): void {
    const r = this.length - 1;
    const offset = u.dataOffset ?? -1;
    if (r >= 0) {
      const k = this.count[r];
      const from = this.dataOffset[r];
      if (
        u.pageType === this.pageType[r] && u.gpa === this.gpa[r] + k * PAGE_SIZE &&
        u.directive === this.directive[r] + k &&
        (from < 0 ? offset < 0 : offset === from + k * PAGE_SIZE)
      ) {
        this.count[r]++;
        return;
      }
    }
    if (this.length === this.gpa.length) {
      this.gpa = grown(this.gpa);
      this.dataOffset = grown(this.dataOffset);
      this.directive = grown(this.directive);
      this.count = grown(this.count);
      this.pageType = grown(this.pageType);
    }
    this.gpa[this.length] = u.gpa;
    this.dataOffset[this.length] = offset;
    this.directive[this.length] = u.directive;
    this.count[this.length] = 1;
    this.pageType[this.length] = u.pageType;
    this.length++;
  }

  /** Update k of run r. */
  *updates(r: number): Generator<PlannedUpdate> {
    const from = this.dataOffset[r];
    for (let k = 0; k < this.count[r]; k++) {
      yield {
        gpa: this.gpa[r] + k * PAGE_SIZE,
        pageType: this.pageType[r],
        directive: this.directive[r] + k,
        dataOffset: from < 0 ? undefined : from + k * PAGE_SIZE,
      };
    }
  }
}

/**
 * Stable sort by GPA. The plan is held as runs of consecutive pages (a kernel's or an
 * initrd's pages are one run) in typed arrays, and the runs are sorted when no two overlap;
 * else the pages one by one, about 25 bytes each, so 1M pages need about 25 MB.
 */
function* sortedByGpa(plan: Iterable<PlannedUpdate>): Generator<PlannedUpdate> {
  const runs = new PlanRuns();
  let n = 0;
  for (const u of plan) {
    runs.add(u);
    n++;
  }
  const order = disjointOrder(runs.gpa, runs.count, runs.length);
  if (order) {
    for (const r of order) yield* runs.updates(r);
    return;
  }
  const gpa = new Float64Array(n);
  const dataOffset = new Float64Array(n);
  const directive = new Int32Array(n);
  const pageType = new Uint8Array(n);
  let i = 0;
  for (let r = 0; r < runs.length; r++) {
    for (const u of runs.updates(r)) {
      gpa[i] = u.gpa;
      dataOffset[i] = u.dataOffset ?? -1;
      directive[i] = u.directive;
      pageType[i] = u.pageType;
      i++;
    }
  }
  for (const k of stableOrder(gpa, n)) {
    yield {
      gpa: gpa[k],
      pageType: pageType[k],
      directive: directive[k],
      dataOffset: dataOffset[k] < 0 ? undefined : dataOffset[k],
    };
  }
}

const ALL_BITS = (mask: number, snp: number) => (mask & snp) === snp;
const ANY_BIT = (mask: number, snp: number) => (mask & snp) !== 0;

/** The rules behind each file-based model, for tests and the log. */
const FILE_ORDER_RULES = {
  hyperv: {
    name: "hyperv",
    selects: ALL_BITS,
    sharedMeasured: false,
    insertFirstPageOnly: false,
    nativeZero: false,
  },
  "ch-mshv": {
    name: "ch-mshv",
    // Cloud Hypervisor filters nothing itself, but its igvm crate parses the file for SEV-SNP
    // and drops the directives whose mask shares no bit with the SNP platform's.
    selects: ANY_BIT,
    sharedMeasured: true,
    insertFirstPageOnly: true,
    nativeZero: false,
  },
  igvmmeasure: {
    name: "igvmmeasure",
    selects: ANY_BIT,
    sharedMeasured: true,
    insertFirstPageOnly: true,
    nativeZero: false,
  },
  "igvmmeasure-native-zero": {
    name: "igvmmeasure-native-zero",
    selects: ANY_BIT,
    sharedMeasured: true,
    insertFirstPageOnly: true,
    nativeZero: true,
  },
} as const satisfies Record<string, FileOrderRules>;

/** Hyper-V (and the original igvmgen, and the igvm crate): file order, shared pages skipped. */
export const hypervUpdates: LaunchUpdateSource = (file, headers) =>
  hashPlanned(file, planFileOrder(headers, FILE_ORDER_RULES.hyperv));

/**
 * Cloud Hypervisor on MSHV (LOADERS.md §5): shared pages measured as NORMAL, a parameter
 * insert counts its first page only, then a stable sort by GPA. CPUID_XF pages make CH panic.
 */
export const chMshvUpdates: LaunchUpdateSource = (file, headers) => {
  // Planned (and sorted) when the updates are first read: a generator runs only then.
  const plan = planFileOrder(headers, FILE_ORDER_RULES["ch-mshv"]);
  for (const d of headers.directives) {
    if (
      d.type === IGVM_VHT_PAGE_DATA && directiveDataType(d) === IGVM_VHS_PAGE_DATA_TYPE_CPUID_XF
    ) {
      throw new InputError(
        `page 0x${
          gpaOf(d).toString(16)
        } is a CPUID_XF page: Cloud Hypervisor on MSHV cannot load it`,
      );
    }
  }
  return hashPlanned(file, sortedByGpa(plan));
};

/** COCONUT igvmmeasure (LOADERS.md §8): file order, shared measured, one insert page. */
export const igvmmeasureUpdates: LaunchUpdateSource = (file, headers) =>
  hashPlanned(file, planFileOrder(headers, FILE_ORDER_RULES.igvmmeasure));

/** igvmmeasure --native-zero: empty NORMAL pages are ZERO pages. */
export const igvmmeasureNativeZeroUpdates: LaunchUpdateSource = (file, headers) =>
  hashPlanned(file, planFileOrder(headers, FILE_ORDER_RULES["igvmmeasure-native-zero"]));

/** The host configuration used when none is given: 1 vCPU, EPYC-Milan's signature. */
export const DEFAULT_HOST: HostConfig = { vcpus: 1, cpuSignature: 0x00A00F11 };
