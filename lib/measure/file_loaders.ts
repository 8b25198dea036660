/**
 * Loader models that take the VMSA and every page from the file (../shared/LOADERS.md §3, §5,
 * §8, §10): Hyper-V (file order, the original's digest), Cloud Hypervisor on MSHV (stable
 * sort by GPA) and COCONUT's igvmmeasure. Each is a LaunchUpdateSource: an async iterable
 * of launch updates, produced in batches so memory stays bounded for 1M-page files.
 */
import { PAGE_SIZE } from "../bytes/le.ts";
import {
  IGVM_PLATFORM_TYPE_SEV_SNP,
  IGVM_VHF_PAGE_DATA_2MB,
  IGVM_VHF_PAGE_DATA_GUEST_INVALID,
  IGVM_VHF_PAGE_DATA_UNMEASURED,
  IGVM_VHS_PAGE_DATA_TYPE_CPUID_DATA,
  IGVM_VHS_PAGE_DATA_TYPE_CPUID_XF,
  IGVM_VHS_PAGE_DATA_TYPE_NORMAL,
  IGVM_VHS_PAGE_DATA_TYPE_SECRETS,
  IGVM_VHT_PAGE_DATA,
  IGVM_VHT_PARAMETER_AREA,
  IGVM_VHT_PARAMETER_INSERT,
  IGVM_VHT_SUPPORTED_PLATFORM,
  IGVM_VHT_VP_CONTEXT,
} from "../igvm/defs.ts";
import { type Directive, directiveFileOffset, type IgvmFile } from "../igvm/reader.ts";
import { InputError } from "../errors.ts";
import type { FileAccess } from "../io/file_reader.ts";
import type { HostConfig, LaunchUpdate, LaunchUpdateSource } from "./launch_update.ts";
import {
  sha384,
  SNP_PAGE_TYPE_CPUID,
  SNP_PAGE_TYPE_NORMAL,
  SNP_PAGE_TYPE_SECRETS,
  SNP_PAGE_TYPE_UNMEASURED,
  SNP_PAGE_TYPE_VMSA,
  SNP_PAGE_TYPE_ZERO,
  SnpLaunchDigest,
} from "./snp_digest.ts";

/** A launch update before its contents are hashed. */
export interface PlannedUpdate {
  pageType: number;
  gpa: number;
  directive: number;
  /** File offset of the page to hash (NORMAL/VMSA with data); undefined: a zero page. */
  dataOffset?: number;
}

const ZERO_CONTENTS = new Uint8Array(48);
/** SHA-384 of a 4 KiB zero page: the contents of an empty NORMAL page. */
export const ZERO_PAGE_DIGEST = sha384(new Uint8Array(PAGE_SIZE));

/** The SNP platform's compatibility mask; refuses a file without a SEV-SNP platform. */
export function snpCompatibilityMask(headers: IgvmFile): number {
  const p = headers.directives.find((d) =>
    d.type === IGVM_VHT_SUPPORTED_PLATFORM &&
    Number(d.fields.PlatformType ?? 0n) === IGVM_PLATFORM_TYPE_SEV_SNP
  );
  if (!p) throw new InputError("not a SEV-SNP IGVM file: no SEV-SNP platform header");
  return Number(p.fields.CompatibilityMask ?? 0n);
}

const gpaOf = (d: Directive) => Number(d.fields.GPA ?? 0n);

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

/** The updates of the directives in file order under `rules`. */
function* planFileOrder(headers: IgvmFile, rules: FileOrderRules): Generator<PlannedUpdate> {
  const snpMask = snpCompatibilityMask(headers);
  const areaBytes = new Map<number, number>();
  const ds = headers.directives;
  for (let i = 0; i < ds.length; i++) {
    const d = ds[i];
    const mask = Number(d.fields.CompatibilityMask ?? 0n);
    if (d.type === IGVM_VHT_PARAMETER_AREA) {
      areaBytes.set(Number(d.fields.ParameterAreaIndex), Number(d.fields.NumberOfBytes));
    } else if (d.type === IGVM_VHT_PAGE_DATA) {
      if (!rules.selects(mask, snpMask)) continue;
      const flags = Number(d.fields.Flags ?? 0n);
      const gpa = gpaOf(d);
      if (flags & IGVM_VHF_PAGE_DATA_2MB) {
        throw new InputError(
          `page 0x${gpa.toString(16)} is a 2 MiB page: not supported by the ${rules.name} model`,
        );
      }
      if ((flags & IGVM_VHF_PAGE_DATA_GUEST_INVALID) && !rules.sharedMeasured) continue;
      const dataType = Number(d.fields.DataType ?? 0n);
      const offset = directiveFileOffset(d);
      if (dataType === IGVM_VHS_PAGE_DATA_TYPE_SECRETS) {
        yield { pageType: SNP_PAGE_TYPE_SECRETS, gpa, directive: i };
      } else if (
        dataType === IGVM_VHS_PAGE_DATA_TYPE_CPUID_DATA ||
        dataType === IGVM_VHS_PAGE_DATA_TYPE_CPUID_XF
      ) yield { pageType: SNP_PAGE_TYPE_CPUID, gpa, directive: i };
      else if (dataType !== IGVM_VHS_PAGE_DATA_TYPE_NORMAL) {
        throw new InputError(`page 0x${gpa.toString(16)}: unknown page data type ${dataType}`);
      } else if (flags & IGVM_VHF_PAGE_DATA_UNMEASURED) {
        yield { pageType: SNP_PAGE_TYPE_UNMEASURED, gpa, directive: i };
      } else if (offset === undefined && rules.nativeZero) {
        yield { pageType: SNP_PAGE_TYPE_ZERO, gpa, directive: i };
      } else yield { pageType: SNP_PAGE_TYPE_NORMAL, gpa, directive: i, dataOffset: offset };
    } else if (d.type === IGVM_VHT_PARAMETER_INSERT) {
      if (!rules.selects(mask, snpMask)) continue;
      const index = Number(d.fields.ParameterAreaIndex);
      const bytes = areaBytes.get(index);
      if (bytes === undefined) {
        throw new InputError(`PARAMETER_INSERT at 0x${d.offset.toString(16)}: no area ${index}`);
      }
      const pages = rules.insertFirstPageOnly ? 1 : Math.ceil(bytes / PAGE_SIZE);
      for (let p = 0; p < pages; p++) {
        yield { pageType: SNP_PAGE_TYPE_UNMEASURED, gpa: gpaOf(d) + p * PAGE_SIZE, directive: i };
      }
    } else if (d.type === IGVM_VHT_VP_CONTEXT) {
      if (!rules.selects(mask, snpMask)) continue;
      yield {
        pageType: SNP_PAGE_TYPE_VMSA,
        gpa: gpaOf(d),
        directive: i,
        dataOffset: directiveFileOffset(d),
      };
    }
  }
}

const BATCH = 256;
/** A batch's pages are read in one go when their file data lies within this span. */
const SPAN_BYTES = 4 * BATCH * PAGE_SIZE;

/**
 * Hashes planned updates in batches of 256 (the batch's file data read in one span when it
 * is contiguous enough, then SHA-384 in parallel by WebCrypto) and yields them in order.
 */
export async function* hashPlanned(
  file: FileAccess,
  planned: Iterable<PlannedUpdate>,
): AsyncGenerator<LaunchUpdate> {
  let batch: PlannedUpdate[] = [];
  const spanBuffer = new Uint8Array(Math.min(SPAN_BYTES, Math.max(file.size, PAGE_SIZE)));
  const flush = async (): Promise<LaunchUpdate[]> => {
    const hashed = batch.filter((u) =>
      (u.pageType === SNP_PAGE_TYPE_NORMAL || u.pageType === SNP_PAGE_TYPE_VMSA) &&
      u.dataOffset !== undefined
    );
    let lo = Infinity;
    let hi = -Infinity;
    for (const u of hashed) {
      lo = Math.min(lo, u.dataOffset!);
      hi = Math.max(hi, u.dataOffset! + PAGE_SIZE);
    }
    const span = hashed.length > 1 && hi - lo <= spanBuffer.length
      ? await file.readAt(lo, hi - lo, spanBuffer)
      : undefined;
    const contents = await Promise.all(batch.map(async (u) => {
      if (u.pageType !== SNP_PAGE_TYPE_NORMAL && u.pageType !== SNP_PAGE_TYPE_VMSA) {
        return ZERO_CONTENTS;
      }
      if (u.dataOffset === undefined) return ZERO_PAGE_DIGEST;
      const at = u.dataOffset - lo;
      const page = span && at + PAGE_SIZE <= span.length
        ? span.subarray(at, at + PAGE_SIZE)
        : await file.readAt(u.dataOffset, PAGE_SIZE);
      if (page.length !== PAGE_SIZE) {
        throw new InputError(
          `page 0x${u.gpa.toString(16)}: file data at 0x${
            u.dataOffset.toString(16)
          } runs past the end`,
        );
      }
      return new Uint8Array(await crypto.subtle.digest("SHA-384", page as Uint8Array<ArrayBuffer>));
    }));
    const out = batch.map((u, i) => ({
      pageType: u.pageType,
      gpa: u.gpa,
      directive: u.directive,
      contents: contents[i],
    }));
    batch = [];
    return out;
  };
  for (const u of planned) {
    batch.push(u);
    if (batch.length === BATCH) yield* await flush();
  }
  if (batch.length) yield* await flush();
}

/**
 * Stable sort by GPA. The planned updates are held in typed arrays (about 25 bytes each)
 * and the sort runs on an index array, so 1M pages need about 25 MB.
 */
function* sortedByGpa(plan: () => Iterable<PlannedUpdate>): Generator<PlannedUpdate> {
  let n = 0;
  for (const _ of plan()) n++;
  const gpa = new Float64Array(n);
  const dataOffset = new Float64Array(n);
  const directive = new Int32Array(n);
  const pageType = new Uint8Array(n);
  let i = 0;
  for (const u of plan()) {
    gpa[i] = u.gpa;
    dataOffset[i] = u.dataOffset ?? -1;
    directive[i] = u.directive;
    pageType[i] = u.pageType;
    i++;
  }
  const order = new Uint32Array(n);
  for (let k = 0; k < n; k++) order[k] = k;
  order.sort((a, b) => gpa[a] - gpa[b] || a - b);
  for (const k of order) {
    yield {
      gpa: gpa[k],
      pageType: pageType[k],
      directive: directive[k],
      dataOffset: dataOffset[k] < 0 ? undefined : dataOffset[k],
    };
  }
}

const ALL = () => true;
const ALL_BITS = (mask: number, snp: number) => (mask & snp) === snp;
const ANY_BIT = (mask: number, snp: number) => (mask & snp) !== 0;

/** The rules behind each file-based model, for tests and the log. */
export const FILE_ORDER_RULES = {
  hyperv: {
    name: "hyperv",
    selects: ALL_BITS,
    sharedMeasured: false,
    insertFirstPageOnly: false,
    nativeZero: false,
  },
  "ch-mshv": {
    name: "ch-mshv",
    selects: ALL,
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
  const plan = () => planFileOrder(headers, FILE_ORDER_RULES["ch-mshv"]);
  for (const d of headers.directives) {
    if (
      d.type === IGVM_VHT_PAGE_DATA &&
      Number(d.fields.DataType ?? 0n) === IGVM_VHS_PAGE_DATA_TYPE_CPUID_XF
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

/** Folds launch updates into the SNP launch digest. */
export async function digestOfUpdates(updates: AsyncIterable<LaunchUpdate>): Promise<Uint8Array> {
  const digest = new SnpLaunchDigest();
  for await (const u of updates) digest.extend(u.gpa, u.pageType, undefined, u.contents);
  return digest.value;
}

/** The host configuration used when none is given: 1 vCPU, EPYC-Milan's signature. */
export const DEFAULT_HOST: HostConfig = { vcpus: 1, cpuSignature: 0x00A00F11 };
