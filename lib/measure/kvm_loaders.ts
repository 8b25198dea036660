/**
 * The launch updates of the loaders that start SEV-SNP guests on Linux KVM
 * (../shared/LOADERS.md §4, §6, §7.2, §9, §10): QEMU, Cloud Hypervisor and OpenVMM. All
 * three issue the file's pages first, then KVM measures one VMSA per vCPU at 0xFFFFFFFFF000
 * at LAUNCH_FINISH: the boot CPU's rebuilt from the registers the loader set, the others in
 * their reset state.
 */
import { hex, PAGE_SIZE } from "../bytes/le.ts";
import {
  IGVM_VHF_PAGE_DATA_2MB,
  IGVM_VHF_PAGE_DATA_GUEST_INVALID,
  IGVM_VHS_PAGE_DATA_TYPE_CPUID_XF,
  IGVM_VHT_PAGE_DATA,
  IGVM_VHT_PARAMETER_INSERT,
  IGVM_VHT_REQUIRED_MEMORY,
  IGVM_VHT_VP_CONTEXT,
} from "../igvm/defs.ts";
import {
  type Directive,
  directiveAccess,
  directiveFileOffset,
  type IgvmFile,
} from "../igvm/reader.ts";
import type { FileAccess } from "../io/file_reader.ts";
import {
  SNP_PAGE_TYPE_NORMAL,
  SNP_PAGE_TYPE_UNMEASURED,
  SNP_PAGE_TYPE_VMSA,
} from "./snp_digest.ts";
import type { HostConfig, LaunchUpdateSource } from "./launch_update.ts";
import {
  directiveDataType,
  directiveFlags,
  directiveGpa,
  directiveMask,
  findSnpCompatibilityMask,
  pageGpa,
  parameterAreaSizes,
} from "../igvm/directives.ts";
import { pageDataSnpType } from "./page_type.ts";
import { hashPlanned, type PlannedUpdate } from "./planned_updates.ts";
import {
  KVM_RESET_RDX,
  KVM_VMSA_GPA,
  kvmBspVmsa,
  type KvmLoaderKind,
  kvmSevFeatures,
  resetVmsa,
} from "../x86/kvm_vmsa.ts";
import { VMCB_SAVE_AREA } from "../x86/vmsa.ts";

/** A loader cannot take the file (the loader would fail or crash on it). */
export class LoaderRefusal extends Error {
  /** The class name, for messages and logs. */
  override name = "LoaderRefusal";
}

/**
 * Guest-physical ranges QEMU's q35 and pc machines give to devices, not RAM, whatever the
 * memory size: the I/O APIC, the HPET and the local APIC's MSI window. QEMU refuses to place
 * IGVM pages, parameter areas or required memory there (`qigvm_prepare_memory`: "Could not
 * prepare memory at address ... due to existing non-RAM region"), seen with QEMU 10.2.2
 * without KVM; on KVM the same devices sit there (predicted). The legacy VGA window is
 * checked apart (launch_checks.ts).
 */
const QEMU_DEVICE_RANGES: readonly { start: number; end: number; name: string }[] = [
  { start: 0xfec0_0000, end: 0xfec0_1000, name: "I/O APIC" },
  { start: 0xfed0_0000, end: 0xfed0_0400, name: "HPET" },
  { start: 0xfee0_0000, end: 0xfef0_0000, name: "local APIC" },
];

/**
 * The guest memory QEMU prepares for `d`, as its name and size in bytes (a parameter
 * insert's from its area's size in `areas`, by area index), or undefined for a directive
 * that places none. Every size is at least a page.
 */
export function qemuPlacement(
  d: Directive,
  areas: ReadonlyMap<number, number>,
): [what: string, bytes: number] | undefined {
  if (d.type === IGVM_VHT_PAGE_DATA) return ["page", PAGE_SIZE];
  if (d.type === IGVM_VHT_PARAMETER_INSERT) {
    const area = areas.get(Number(d.fields.ParameterAreaIndex ?? 0n)) ?? 0;
    return ["PARAMETER_INSERT", Math.max(area, PAGE_SIZE)];
  }
  if (d.type === IGVM_VHT_REQUIRED_MEMORY) {
    return ["REQUIRED_MEMORY", Math.max(Number(d.fields.NumberOfBytes ?? 0n), PAGE_SIZE)];
  }
  return undefined;
}

/**
 * Why QEMU cannot place `bytes` of guest memory at `gpa` (`what` names them), or undefined:
 * they overlap one of {@link QEMU_DEVICE_RANGES}. QEMU prepares a run of pages at once and
 * names the run's start (or, when the run starts in RAM, says the region is too small), so
 * its message is quoted without an address.
 */
export function qemuDeviceRangeProblem(
  what: string,
  gpa: number,
  bytes: number,
): string | undefined {
  if (gpa >= 0xfef0_0000 || gpa + bytes <= 0xfec0_0000) return undefined; // most pages
  const r = QEMU_DEVICE_RANGES.find((r) => gpa < r.end && gpa + bytes > r.start);
  if (!r) return undefined;
  return `${what} at ${hex(gpa)} overlaps the ${r.name} at ${hex(r.start)}-${
    hex(r.end - 1)
  }, which QEMU maps as a device, not RAM: QEMU stops ("Could not prepare memory at ` +
    `address ... due to existing non-RAM region", seen with QEMU 10.2.2)`;
}

/** Refuses a page or area QEMU cannot place ({@link qemuDeviceRangeProblem}). */
function assertQemuPlaces(what: string, gpa: number, bytes: number): void {
  const problem = qemuDeviceRangeProblem(what, gpa, bytes);
  if (problem) throw new LoaderRefusal(problem);
}

/** A planned update: its page's file data is read and hashed later, in batches. */
type Planned = PlannedUpdate;

/** The compatibility mask of the file's SEV-SNP platform; a file without one is refused. */
function snpMask(headers: IgvmFile): number {
  const mask = findSnpCompatibilityMask(headers);
  if (mask === undefined) {
    throw new LoaderRefusal("not a SEV-SNP IGVM file: no SEV-SNP platform header");
  }
  return mask;
}

/** Parameter area sizes by index; a size no guest can have is a refusal. */
function parameterAreas(headers: IgvmFile): Map<number, number> {
  return parameterAreaSizes(headers, refuse);
}

/** A refusal for a directive this loader cannot place. */
const refuse = (message: string) => new LoaderRefusal(message);

/** UNMEASURED updates for every page of the inserted parameter area. */
function* parameterPages(
  d: Directive,
  index: number,
  areas: Map<number, number>,
): Generator<Planned> {
  const size = areas.get(Number(d.fields.ParameterAreaIndex ?? 0n));
  if (size === undefined) {
    throw new LoaderRefusal(
      `PARAMETER_INSERT at 0x${d.offset.toString(16)} names an undeclared parameter area`,
    );
  }
  for (let at = 0; at < Math.max(size, 1); at += PAGE_SIZE) {
    yield { pageType: SNP_PAGE_TYPE_UNMEASURED, gpa: pageGpa(d, refuse) + at, directive: index };
  }
}

/** Reads the VMSA pages of the file's VP contexts, by VP index. */
async function vpContexts(
  file: FileAccess,
  headers: IgvmFile,
  matches: (d: Directive) => boolean,
): Promise<Map<number, Uint8Array>> {
  const out = new Map<number, Uint8Array>();
  for (const d of headers.directives) {
    if (d.type !== IGVM_VHT_VP_CONTEXT || !matches(d)) continue;
    pageGpa(d, refuse); // KVM places the VMSA elsewhere, but no loader takes an unaligned GPA
    const offset = directiveFileOffset(d);
    const page = new Uint8Array(PAGE_SIZE);
    if (offset !== undefined) page.set(await file.readAt(offset, PAGE_SIZE));
    out.set(Number(d.fields.VpIndex ?? 0n), page);
  }
  return out;
}

/**
 * The VMSA KVM measures at LAUNCH_FINISH for vCPU `vp`: a vCPU with a VP context in the file
 * is rebuilt from it the way `kind` hands registers to KVM; the others keep their reset state
 * with RDX = `apRdx`. Every VMSA carries vp 0's SEV features (KVM_SEV_INIT2) plus SNP.
 */
function vmsaPage(
  kind: KvmLoaderKind,
  contexts: Map<number, Uint8Array>,
  vp: number,
  apRdx: number,
): Uint8Array {
  const features = kvmSevFeatures(contexts.get(0));
  const context = contexts.get(vp);
  if (!context) return resetVmsa(features, apRdx);
  const page = kvmBspVmsa(kind, context);
  new DataView(page.buffer).setBigUint64(VMCB_SAVE_AREA.off._0, features, true);
  return page;
}

/** The VMSAs KVM measures at LAUNCH_FINISH, one per vCPU (see {@link vmsaPage}). */
function vmsaUpdates(
  kind: KvmLoaderKind,
  contexts: Map<number, Uint8Array>,
  host: HostConfig,
  apRdx: number,
): Planned[] {
  if (!Number.isSafeInteger(host.vcpus) || host.vcpus < 1) {
    throw new RangeError(`vCPU count ${host.vcpus}: expected 1 or more`);
  }
  const out: Planned[] = [];
  for (let vp = 0; vp < host.vcpus; vp++) {
    const page = vmsaPage(kind, contexts, vp, apRdx);
    out.push({ pageType: SNP_PAGE_TYPE_VMSA, gpa: KVM_VMSA_GPA, directive: -1, page });
  }
  return out;
}

/** How each KVM loader hands VMSAs to KVM, and whose signature the APs' RDX holds. */
const KVM_VMSA_RULES = {
  "qemu-kvm": { kind: "qemu", apRdxIsCpu: true },
  "ch-kvm": { kind: "ch", apRdxIsCpu: false },
  "openvmm-kvm": { kind: "openvmm", apRdxIsCpu: true },
} as const satisfies Record<string, { kind: KvmLoaderKind; apRdxIsCpu: boolean }>;

/**
 * True when `loader`'s digest depends on the CPU model with more than one vCPU: its APs
 * start with RDX = the CPU signature (Cloud Hypervisor's hold KVM's reset value whatever
 * the model).
 */
export function kvmDigestDependsOnCpu(loader: KvmLoaderName): boolean {
  return KVM_VMSA_RULES[loader].apRdxIsCpu;
}

/**
 * The VMSA pages `loader` has KVM measure, after every page of the file: `vmsaFor(vp,
 * cpuSignature)` is vCPU `vp`'s (vp 0 the boot CPU). A digest for n vCPUs is the one for
 * n - 1 extended by `vmsaFor(n - 1, ...)`, so a search over vCPU counts extends one VMSA at
 * a time instead of measuring the file again.
 */
export async function kvmVmsaPages(
  loader: KvmLoaderName,
  file: FileAccess,
  headers: IgvmFile,
): Promise<(vp: number, cpuSignature: number) => Uint8Array> {
  const rules = KVM_VMSA_RULES[loader];
  const mask = snpMask(headers);
  // The VP contexts of the SEV-SNP platform (a file's other platforms have their own).
  const matches = (d: Directive) => (directiveMask(d) & mask) !== 0;
  const contexts = await vpContexts(file, headers, matches);
  return (vp, cpuSignature) =>
    vmsaPage(rules.kind, contexts, vp, rules.apRdxIsCpu ? cpuSignature : KVM_RESET_RDX);
}

/** The SNP page type of a PAGE_DATA directive under KVM, or a refusal. */
function kvmPageType(d: Directive, loader: string, zeroType: boolean): number {
  const flags = directiveFlags(d);
  if (flags & IGVM_VHF_PAGE_DATA_2MB) {
    throw new LoaderRefusal(`2 MiB pages are not modelled (header at 0x${d.offset.toString(16)})`);
  }
  const dataType = directiveDataType(d);
  if (dataType === IGVM_VHS_PAGE_DATA_TYPE_CPUID_XF && loader !== "qemu-kvm") {
    throw new LoaderRefusal(
      `${loader} cannot load CPUID_XF pages (header at 0x${d.offset.toString(16)})`,
    );
  }
  const pageType = pageDataSnpType(d, zeroType);
  if (pageType === undefined) {
    throw new LoaderRefusal(
      `page data type ${dataType} is unknown to ${loader} (header at 0x${d.offset.toString(16)})`,
    );
  }
  return pageType;
}

function planned(d: Directive, index: number, pageType: number): Planned {
  return {
    pageType,
    gpa: pageGpa(d, refuse),
    directive: index,
    dataOffset: pageType === SNP_PAGE_TYPE_NORMAL ? directiveFileOffset(d) : undefined,
  };
}

/**
 * QEMU (10.1 and later) on KVM, LOADERS.md §4 and §10 "qemu-kvm". Page data is buffered
 * into runs (contiguous GPAs, same flags, type and mask, all with data or all without, and
 * consecutive directives); a run goes to the launch queue only when the next page breaks it
 * or the file ends, while a PARAMETER_INSERT goes at once, so it can overtake the run in
 * front of it. Zero pages are measured as normal pages, `shared` pages as any other, CPUID
 * pages with the host's contents (their type alone is measured). Then the vCPUs' VMSAs: the
 * boot CPU's rebuilt from the file's VMSA (CR0.ET, CR4.MCE, EFER.SVME, TR base from LDTR,
 * KVM's FPU defaults), the others in QEMU's reset state with RDX = the CPU signature.
 */
export const qemuKvmUpdates: LaunchUpdateSource = kvmUpdates("qemu", qemuPlan);

/** A loader's plan of the SEV-SNP platform's directives, with the vCPUs' VMSAs it ends with. */
type KvmPlan = (
  headers: IgvmFile,
  matches: (d: Directive) => boolean,
  areas: Map<number, number>,
  vmsas: Planned[],
) => Iterable<Planned>;

/**
 * The launch updates of a KVM loader: `plan` over the directives of the SEV-SNP platform (no
 * such platform, no SNP launch: nothing matches), with the vCPUs' VMSAs, whose application
 * processors start with RDX = `apRdx(host)` (by default the CPU signature).
 */
function kvmUpdates(
  kind: KvmLoaderKind,
  plan: KvmPlan,
  apRdx = (host: HostConfig) => host.cpuSignature,
): LaunchUpdateSource {
  return (file, headers, host) =>
    hashPlanned(file, async () => {
      const mask = snpMask(headers);
      const matches = (d: Directive) => (directiveMask(d) & mask) !== 0;
      const areas = parameterAreas(headers);
      const contexts = await vpContexts(file, headers, matches);
      return plan(headers, matches, areas, vmsaUpdates(kind, contexts, host, apRdx(host)));
    }, refuse); // file data past the end is a refusal
}

/**
 * QEMU's launch queue for {@link qemuKvmUpdates}, streamed. A pending run is a range of
 * consecutive directives, so it takes no memory however many pages it holds.
 */
function* qemuPlan(
  headers: IgvmFile,
  matches: (d: Directive) => boolean,
  areas: Map<number, number>,
  vmsas: Planned[],
): Generator<Planned> {
  const ds = directiveAccess(headers.directives);
  let runStart = 0; // the pending run is ds[runStart, runEnd)
  let runEnd = 0;
  // What the pending run's pages share: flags, data type, mask, and having no data.
  let runFlags = 0;
  let runType = 0;
  let runMask = 0;
  let runEmpty = false;
  let nextGpa = -1;
  function* flush(): Generator<Planned> {
    for (let i = runStart; i < runEnd; i++) {
      const d = ds.at(i);
      yield planned(d, i, kvmPageType(d, "qemu-kvm", false));
    }
    runStart = runEnd = 0;
  }
  for (let index = 0; index < ds.length; index++) {
    const d = ds.at(index);
    if (d.type === IGVM_VHT_PAGE_DATA) {
      if (!matches(d)) continue;
      kvmPageType(d, "qemu-kvm", false); // a refusal comes at the page that causes it
      const flags = directiveFlags(d);
      const dataType = directiveDataType(d);
      const dMask = directiveMask(d);
      const empty = directiveFileOffset(d) === undefined;
      const sameKind = flags === runFlags && dataType === runType && dMask === runMask &&
        empty === runEmpty;
      const running = runEnd > runStart;
      const gpa = pageGpa(d, refuse);
      assertQemuPlaces("page", gpa, PAGE_SIZE);
      if (running && (!sameKind || gpa !== nextGpa || runEnd !== index)) {
        yield* flush();
      }
      if (runEnd === runStart) runStart = index;
      runEnd = index + 1;
      runFlags = flags;
      runType = dataType;
      runMask = dMask;
      runEmpty = empty;
      nextGpa = gpa + PAGE_SIZE;
    } else if (d.type === IGVM_VHT_PARAMETER_INSERT && matches(d)) {
      const [what, bytes] = qemuPlacement(d, areas)!;
      assertQemuPlaces(what, pageGpa(d, refuse), bytes);
      yield* parameterPages(d, index, areas); // before the pending run
    } else if (d.type === IGVM_VHT_REQUIRED_MEMORY && matches(d)) {
      // No launch update, but QEMU prepares the memory and stops on a device there.
      const [what, bytes] = qemuPlacement(d, areas)!;
      assertQemuPlaces(what, directiveGpa(d), bytes);
    }
  }
  yield* flush();
  yield* vmsas;
}

/**
 * Cloud Hypervisor on KVM, LOADERS.md §6 and §10 "ch-kvm": file order; the directives of
 * other platforms dropped (the igvm crate parses the file with the SEV-SNP isolation filter:
 * a directive whose mask shares no bit with the SNP platform's is skipped, and with no SNP
 * platform only mask 0 is); zero pages are SNP ZERO pages, pages with data NORMAL; `shared` pages measured;
 * a parameter area UNMEASURED page by page where it is inserted; CPUID_XF makes it panic.
 * Then the VMSAs: the boot CPU's from the registers `setup_sev_snp_regs` sets (everything
 * else at KVM's reset values), the others in KVM's reset state with RDX 0x600 (KVM's value
 * when no CPUID was set at reset; UNCONFIRMED, LOADERS.md §12.4), whatever the CPU model.
 */
export const chKvmUpdates: LaunchUpdateSource = kvmUpdates("ch", chPlan, () => KVM_RESET_RDX);

/** Cloud Hypervisor's launch queue for {@link chKvmUpdates}, streamed. */
function* chPlan(
  headers: IgvmFile,
  kept: (d: Directive) => boolean,
  areas: Map<number, number>,
  vmsas: Planned[],
): Generator<Planned> {
  const ds = directiveAccess(headers.directives);
  for (let index = 0; index < ds.length; index++) {
    const d = ds.at(index);
    if (!kept(d)) continue;
    if (d.type === IGVM_VHT_PAGE_DATA) yield planned(d, index, kvmPageType(d, "ch-kvm", true));
    else if (d.type === IGVM_VHT_PARAMETER_INSERT) yield* parameterPages(d, index, areas);
  }
  yield* vmsas;
}

/**
 * OpenVMM on KVM, LOADERS.md §7.2 and §10 "openvmm-kvm": file order; zero pages measured as
 * normal pages; `shared` pages made shared and not measured; parameter areas UNMEASURED;
 * CPUID_XF refused. Then the VMSAs: the boot CPU's from OpenVMM's allow-list of VMSA fields,
 * the others in the reset state with RDX = the CPU signature (UNCONFIRMED, §12.4).
 */
export const openvmmKvmUpdates: LaunchUpdateSource = kvmUpdates("openvmm", openvmmPlan);

/** OpenVMM's launch queue for {@link openvmmKvmUpdates}, streamed. */
function* openvmmPlan(
  headers: IgvmFile,
  matches: (d: Directive) => boolean,
  areas: Map<number, number>,
  vmsas: Planned[],
): Generator<Planned> {
  const ds = directiveAccess(headers.directives);
  for (let index = 0; index < ds.length; index++) {
    const d = ds.at(index);
    if (!matches(d)) continue;
    if (d.type === IGVM_VHT_PAGE_DATA) {
      const type = kvmPageType(d, "openvmm-kvm", false);
      if (directiveFlags(d) & IGVM_VHF_PAGE_DATA_GUEST_INVALID) continue;
      yield planned(d, index, type);
    } else if (d.type === IGVM_VHT_PARAMETER_INSERT) yield* parameterPages(d, index, areas);
  }
  yield* vmsas;
}

/** The KVM loaders by name. */
export const KVM_LOADERS = {
  "qemu-kvm": qemuKvmUpdates,
  "ch-kvm": chKvmUpdates,
  "openvmm-kvm": openvmmKvmUpdates,
} as const satisfies Record<string, LaunchUpdateSource>;
export type KvmLoaderName = keyof typeof KVM_LOADERS;
