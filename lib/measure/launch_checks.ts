/**
 * Would a KVM loader start this file? The reasons QEMU, Cloud Hypervisor and OpenVMM on
 * Linux KVM refuse an IGVM file (or fail its launch), each from ../shared/LOADERS.md
 * (§4 QEMU, §6 Cloud Hypervisor, §7.2 OpenVMM, §9 Linux KVM). `igvmgen verify --loader`
 * prints them; `-target qemu-kvm|ch-kvm` images must pass their own loader's checks.
 */
import {
  IGVM_VHS_PAGE_DATA_TYPE_CPUID_XF,
  IGVM_VHS_SNP_ID_BLOCK,
  IGVM_VHT_ENVIRONMENT_INFO_PARAMETER,
  IGVM_VHT_MADT,
  IGVM_VHT_MEMORY_MAP,
  IGVM_VHT_PAGE_DATA,
  IGVM_VHT_PARAMETER_AREA,
  IGVM_VHT_PARAMETER_INSERT,
  IGVM_VHT_REQUIRED_MEMORY,
  IGVM_VHT_SNP_ID_BLOCK,
  IGVM_VHT_SNP_POLICY,
  IGVM_VHT_VP_CONTEXT,
  IGVM_VHT_VP_COUNT_PARAMETER,
} from "../igvm/defs.ts";
import {
  type Directive,
  directiveAccess,
  directiveFileOffset,
  type IgvmFile,
} from "../igvm/reader.ts";
import type { FileAccess } from "../io/file_reader.ts";
import { hex, PAGE_SIZE, toHex } from "../bytes/le.ts";
import {
  CR0_PE,
  CR0_PG,
  CR4_PAE,
  EFER_LMA,
  EFER_LME,
  EFER_NXE,
  SEV_FEATURE_SNP,
  VMCB_SAVE_AREA,
  VMCB_SEG,
} from "../x86/vmsa.ts";
import {
  DR7_RESET,
  KVM_VMSA_GPA,
  OPENVMM_SYSTEM_REGISTERS,
  SEV_ES_SAVE_AREA_EXTRA,
  SEV_FEATURE_DEBUG_SWAP,
} from "../x86/kvm_vmsa.ts";
import {
  KVM_LOADERS,
  type KvmLoaderName,
  LoaderRefusal,
  qemuDeviceRangeProblem,
  qemuPlacement,
} from "./kvm_loaders.ts";
import { type HostConfig, launchDigestOf } from "./launch_update.ts";
import {
  directiveDataType,
  directiveGpa,
  directiveMask,
  findSnpPlatform,
} from "../igvm/directives.ts";
import { POLICY_MIGRATE_MA_BIT, POLICY_RESERVED_ONE } from "./tei_config.ts";
import { idBlockVerdict } from "./id_block_checks.ts";

/** The loaders `verify --loader` checks. */
export const LAUNCH_CHECK_LOADERS = ["qemu-kvm", "ch-kvm", "openvmm-kvm"] as const;

/** What a loader would do with the file. */
export interface LaunchCheck {
  loader: KvmLoaderName;
  /** Reasons the loader refuses the file or the launch fails; empty when it starts. */
  refusals: string[];
  /** Things to know that do not stop the launch. */
  notes: string[];
  /** The launch starts, but the guest gets something other than the file says. */
  warnings: string[];
}

/**
 * The `-object sev-snp-guest` QEMU needs for a file with this policy. QEMU issues
 * SNP_LAUNCH_START with the object's `policy=` (default 0x30000) before it reads the file's
 * GuestPolicy, while the ID block it passes to SNP_LAUNCH_FINISH carries the file's: the
 * two must be equal or the firmware refuses the launch.
 */
export function qemuSnpGuestObject(policy: bigint): string {
  return `-object sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=${hex(policy)}`;
}

// Header types the igvm crate defines that igvmgen's defs do not need elsewhere.
const IGVM_VHT_RELOCATABLE_REGION = 0x102;
const IGVM_VHT_PAGE_TABLE_RELOCATION_REGION = 0x103;

/** QEMU's IGVM handlers (backends/igvm.c); any other directive is an error (LOADERS.md §4.1). */
const QEMU_DIRECTIVES = new Set([
  IGVM_VHT_PAGE_DATA,
  IGVM_VHT_VP_CONTEXT,
  IGVM_VHT_PARAMETER_AREA,
  IGVM_VHT_PARAMETER_INSERT,
  IGVM_VHT_MEMORY_MAP,
  IGVM_VHT_VP_COUNT_PARAMETER,
  IGVM_VHT_ENVIRONMENT_INFO_PARAMETER,
  IGVM_VHT_REQUIRED_MEMORY,
  IGVM_VHT_SNP_ID_BLOCK,
]);
/** Directives Cloud Hypervisor meets with `todo!()` (LOADERS.md §5, shared by CH on KVM). */
const CH_PANICS = new Map([
  [0x308, "SRAT"],
  [0x309, "MADT"],
  [0x30a, "MMIO_RANGES"],
  [0x30d, "ERROR_RANGE"],
  [0x30f, "SLIT"],
  [0x310, "PPTT"],
  [0x311, "VBS_MEASUREMENT"],
  [0x312, "DEVICE_TREE"],
  [0x313, "ENVIRONMENT_INFO_PARAMETER"],
]);

/** The VMSA fields QEMU keeps in sync with KVM (`check_vmsa_supported`): [offset, size]. */
function qemuAllowedFields(): [number, number][] {
  const o = VMCB_SAVE_AREA.off;
  const x = SEV_ES_SAVE_AREA_EXTRA;
  const gprs = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"] as const;
  const high = ["r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"] as const;
  return [
    [0, 0xa0], // es, cs, ss, ds, fs, gs, gdtr, ldtr, idtr, tr
    [o.efer, 8],
    [o.cr4, 8],
    [o.cr3, 8],
    [o.cr0, 8],
    [o.dr7, 8],
    [o.dr6, 8],
    [o.rflags, 8],
    [o.rip, 8],
    [o.g_pat, 8],
    [o._0, 8], // sev_features
    [o.xcr0, 8],
    [x.x87Fcw, 2],
    [x.mxcsr, 4],
    ...[...gprs, ...high].map((g) => [o[g], 8] as [number, number]),
  ];
}

/** OpenVMM's allow-list of VMSA fields (`virt_kvm/src/snp.rs`, LOADERS.md §7.2). */
function openvmmAllowedFields(): [number, number][] {
  const o = VMCB_SAVE_AREA.off;
  const x = SEV_ES_SAVE_AREA_EXTRA;
  return [
    ...qemuAllowedFields(),
    [x.xss, 8],
    [x.dr0, 32],
    ...OPENVMM_SYSTEM_REGISTERS.map((n) => [o[n], 8] as [number, number]),
    [o.spec_ctrl, 4],
    [x.tscAux, 4],
    [x.x87Dp, 8],
    [x.x87Fsw, 2],
    [x.x87Fop, 2],
    [x.x87Rip, 8],
  ];
}

/** Names the VMSA field at `offset` for messages. */
function vmsaFieldName(offset: number): string {
  const extra = Object.entries(SEV_ES_SAVE_AREA_EXTRA).filter(([n]) => n !== "END")
    .sort((a, b) => a[1] - b[1]);
  const save = [...VMCB_SAVE_AREA.fields].map(([n, at]) => [n, at] as [string, number])
    .filter(([n]) => !n.startsWith("reserved"));
  const all = [...save, ...extra].sort((a, b) => a[1] - b[1]);
  let name = `byte 0x${offset.toString(16)}`;
  for (const [n, at] of all) if (at <= offset) name = n === "_0" ? "sev_features" : n;
  return `${name} (offset 0x${offset.toString(16)})`;
}

/** The non-zero VMSA bytes outside `allowed`, grouped by field. */
function fieldsOutside(vmsa: Uint8Array, allowed: [number, number][]): string[] {
  const ok = new Uint8Array(PAGE_SIZE);
  for (const [at, n] of allowed) ok.fill(1, at, at + n);
  const names = new Set<string>();
  for (let i = 0; i < PAGE_SIZE; i++) if (vmsa[i] !== 0 && !ok[i]) names.add(vmsaFieldName(i));
  return [...names];
}

function u64(page: Uint8Array, at: number): bigint {
  return new DataView(page.buffer, page.byteOffset, page.byteLength).getBigUint64(at, true);
}

/** The SNP guest policy bits Linux KVM accepts (`SNP_POLICY_MASK_VALID`, LOADERS.md §9). */
const KVM_SNP_POLICY_VALID = 0x1b_ffffn;
const SNP_POLICY_MIGRATE_MA = 1n << POLICY_MIGRATE_MA_BIT;

/** Reasons Linux KVM refuses a guest policy at SNP_LAUNCH_START (empty when it is fine). */
export function kvmPolicyProblems(policy: bigint): string[] {
  const out: string[] = [];
  if (!(policy & POLICY_RESERVED_ONE)) out.push(`policy ${hex(policy)} lacks bit 17 (must be one)`);
  if (policy & SNP_POLICY_MIGRATE_MA) {
    out.push(`policy ${hex(policy)} sets MIGRATE_MA (bit 18), which KVM does not support`);
  }
  const other = policy & ~KVM_SNP_POLICY_VALID & ~SNP_POLICY_MIGRATE_MA;
  if (other) out.push(`policy ${hex(policy)} sets bits ${hex(other)} outside KVM's valid mask`);
  return out;
}

/** SEV feature bits by name (AMD APM vol. 2, table 15-36). */
const SEV_FEATURE_NAMES: [bigint, string][] = [
  [0x2n, "vTOM"],
  [0x4n, "ReflectVC"],
  [0x8n, "RestrictInjection"],
  [0x10n, "AlternateInjection"],
  [0x40n, "PreventHostIBS"],
  [0x80n, "BTBIsolation"],
];

const SEGMENT = (name: string) => (VMCB_SAVE_AREA.off as Record<string, number>)[name];

/** The last directive that passes `test`, read from the end without copying the list. */
function lastOf(ds: readonly Directive[], test: (d: Directive) => boolean): Directive | undefined {
  const access = directiveAccess(ds);
  for (let i = access.length - 1; i >= 0; i--) {
    const d = access.at(i);
    if (test(d)) return d;
  }
  return undefined;
}

/**
 * Checks whether `loader` would start the file. `host` (vCPUs and CPU model) is used to
 * compare the file's ID block with the digest the loader makes KVM compute (a pass over the
 * whole file). The ID block the loader passes is checked as the PSP checks it (its fields and
 * signatures: id_block_checks.ts idBlockVerdict). `compareIdBlock: false` leaves both out, for
 * callers that check or re-sign the ID block themselves.
 */
export async function checkLaunch(
  loader: KvmLoaderName,
  file: FileAccess,
  headers: IgvmFile,
  host: HostConfig = { vcpus: 1, cpuSignature: 0 },
  options: { compareIdBlock?: boolean } = {},
): Promise<LaunchCheck> {
  const refusals: string[] = [];
  const notes: string[] = [];
  const warnings: string[] = [];
  const name = { "qemu-kvm": "QEMU", "ch-kvm": "Cloud Hypervisor", "openvmm-kvm": "OpenVMM" }[
    loader
  ];
  const ds = headers.directives;
  const platform = findSnpPlatform(headers);
  if (!platform) refusals.push("no SEV-SNP SUPPORTED_PLATFORM header: no platform to load");
  const mask = directiveMask(platform);
  // QEMU skips directives of other platforms; Cloud Hypervisor's igvm crate drops them when it
  // parses the file for SEV-SNP. Either way only those sharing a bit with SNP's mask load.
  const applies = (d: Directive) => (directiveMask(d) & mask) !== 0;

  // Directive types.
  for (const d of ds) {
    if (d.type < 0x301) continue;
    if (loader === "qemu-kvm" && !QEMU_DIRECTIVES.has(d.type)) {
      refusals.push(
        d.type === IGVM_VHT_MADT
          ? `${d.name} at 0x${d.offset.toString(16)}: only QEMU trees after 10.1 handle MADT`
          : `${d.name} at 0x${
            d.offset.toString(16)
          }: QEMU stops with "IGVM: Unknown header type encountered"`,
      );
    }
    if (loader === "ch-kvm" && CH_PANICS.has(d.type)) {
      refusals.push(
        `${CH_PANICS.get(d.type)} header at 0x${d.offset.toString(16)}: Cloud Hypervisor panics`,
      );
    }
    if (
      d.type === IGVM_VHT_PAGE_DATA && applies(d) &&
      directiveDataType(d) === IGVM_VHS_PAGE_DATA_TYPE_CPUID_XF && loader !== "qemu-kvm"
    ) {
      refusals.push(
        `CPUID_XF page 0x${Number(d.fields.GPA).toString(16)}: ${name} cannot load it${
          loader === "ch-kvm" ? " (panics)" : ""
        }`,
      );
    }
  }

  // Guest policy.
  const policyHeader = ds.find((d) => d.type === IGVM_VHT_SNP_POLICY);
  const policy = policyHeader?.fields.Policy;
  if (policy === undefined) {
    if (loader === "openvmm-kvm") refusals.push("no GuestPolicy header: OpenVMM requires one");
    if (loader === "qemu-kvm") notes.push("no GuestPolicy header: the ID block's policy is 0");
  } else {
    for (const p of kvmPolicyProblems(policy)) refusals.push(`${p}: KVM refuses SNP_LAUNCH_START`);
    if (loader === "qemu-kvm") {
      notes.push(
        `QEMU needs ${qemuSnpGuestObject(policy)}: it starts the launch with that policy ` +
          `(0x30000 when absent), and the ID block carries ${hex(policy)}`,
      );
    }
  }

  // The VP contexts.
  const contexts = ds.filter((d) => d.type === IGVM_VHT_VP_CONTEXT && applies(d));
  if (contexts.length === 0) refusals.push("no VP context: there is no boot CPU state");
  for (const c of contexts) {
    const gpa = Number(c.fields.GPA ?? 0n);
    if (gpa !== KVM_VMSA_GPA && loader !== "ch-kvm") {
      refusals.push(
        `VP context ${c.fields.VpIndex ?? 0n}: VMSA GPA 0x${
          gpa.toString(16)
        }, ${name} requires 0xfffffffff000`,
      );
    }
  }
  if (loader === "openvmm-kvm") {
    if (contexts.length > 1 || contexts.some((c) => (c.fields.VpIndex ?? 0n) !== 0n)) {
      refusals.push("OpenVMM takes exactly one VP context, for vp 0");
    }
    const highestVtl = Number(platform?.fields.HighestVtl ?? 0n);
    if (highestVtl !== 0) refusals.push(`highest VTL ${highestVtl}: OpenVMM on KVM requires 0`);
    if ((platform?.fields.SharedGPABoundary ?? 0n) !== 0n) {
      refusals.push("a shared GPA boundary: OpenVMM on KVM requires none");
    }
    for (const d of ds) {
      if (
        d.type === IGVM_VHT_RELOCATABLE_REGION || d.type === IGVM_VHT_PAGE_TABLE_RELOCATION_REGION
      ) {
        refusals.push(`relocation header at 0x${d.offset.toString(16)}: OpenVMM on KVM refuses it`);
      }
    }
  }
  const lastDirective = lastOf(ds, (d) =>
    d.type >= 0x301 && d.type !== IGVM_VHT_SNP_ID_BLOCK &&
    (d.fields.CompatibilityMask === undefined || applies(d)));
  if (contexts.length && lastDirective && lastDirective.type !== IGVM_VHT_VP_CONTEXT) {
    const text = `the VP context is not the last directive: KVM measures the VMSA ` +
      `after every page, so tools that measure in file order disagree with KVM`;
    (loader === "openvmm-kvm" ? refusals : notes).push(text);
  }

  // The boot CPU's VMSA.
  const vp0 = contexts.find((c) => (c.fields.VpIndex ?? 0n) === 0n);
  if (vp0) {
    const offset = directiveFileOffset(vp0);
    const vmsa = new Uint8Array(PAGE_SIZE);
    if (offset !== undefined) vmsa.set(await file.readAt(offset, PAGE_SIZE));
    const o = VMCB_SAVE_AREA.off;
    const features = u64(vmsa, o._0);
    if (!(features & BigInt(SEV_FEATURE_SNP))) {
      refusals.push(`SEV features ${hex(features)} lack SNP (bit 0)`);
    }
    const unsupported = features & ~BigInt(SEV_FEATURE_SNP | SEV_FEATURE_DEBUG_SWAP);
    if (unsupported) {
      const names = SEV_FEATURE_NAMES.filter(([b]) => unsupported & b).map(([, n]) => n);
      refusals.push(
        `SEV features ${hex(features)}: ${hex(unsupported)}${
          names.length ? ` (${names.join(", ")})` : ""
        } not supported by KVM, which offers SNP and DebugSwap only (KVM_SEV_INIT2 fails)`,
      );
    }
    if (loader === "qemu-kvm" || loader === "openvmm-kvm") {
      const outside = fieldsOutside(
        vmsa,
        loader === "qemu-kvm" ? qemuAllowedFields() : openvmmAllowedFields(),
      );
      if (outside.length) {
        refusals.push(
          `VMSA fields ${name} does not hand to KVM are not zero: ${outside.join(", ")}`,
        );
      }
      const dr7 = u64(vmsa, o.dr7);
      if (dr7 & ~BigInt(DR7_RESET)) {
        refusals.push(`DR7 ${hex(dr7)}: KVM refuses any bit but 0x400 (sev_es_sync_vmsa)`);
      }
    }
    if (loader === "openvmm-kvm") {
      const cr0 = u64(vmsa, o.cr0);
      const cr4 = u64(vmsa, o.cr4);
      const efer = u64(vmsa, o.efer);
      const csAttrib = new DataView(vmsa.buffer).getUint16(
        SEGMENT("cs") + VMCB_SEG.off.attrib,
        true,
      );
      const PE_PG = BigInt(CR0_PE) | BigInt(CR0_PG); // CR0_PG | CR0_PE is negative as a number
      const longMode = (cr0 & PE_PG) === PE_PG &&
        (cr4 & BigInt(CR4_PAE)) !== 0n &&
        (efer & BigInt(EFER_LME | EFER_LMA | EFER_NXE)) ===
          BigInt(EFER_LME | EFER_LMA | EFER_NXE) &&
        (csAttrib & 0x200) !== 0 && u64(vmsa, o.rip) !== 0n && u64(vmsa, o.cr3) !== 0n;
      if (!longMode) {
        refusals.push(
          "the boot CPU is not in 64-bit paged mode (CR0.PE|PG, CR4.PAE, EFER.LME|LMA|NXE, CS.L, " +
            "RIP and CR3 set): OpenVMM on KVM requires it (-boot_mode x64)",
        );
      }
    }
  }

  // Pages QEMU may not be able to place, and the parameter area's memory map.
  if (loader === "qemu-kvm") {
    refusals.push(...qemuPlacementRefusals(ds, applies));
    warnings.push(...memoryMapWarnings(ds));
  }

  // The ID block against the digest this loader makes KVM compute.
  const idBlock = ds.find((d) => d.type === IGVM_VHT_SNP_ID_BLOCK);
  if (idBlock && loader === "openvmm-kvm") notes.push("OpenVMM on KVM does not pass the ID block");
  const compare = options.compareIdBlock ?? true;
  // What the PSP finds wrong with the block the loader passes (QEMU and Cloud Hypervisor pass
  // it when its mask names the SEV-SNP platform; QEMU with policy 0 when the file has none).
  let broken: string[] = [];
  if (idBlock && compare && applies(idBlock)) {
    const o = IGVM_VHS_SNP_ID_BLOCK.off;
    const inFile = idBlock.body[o.AuthorKeyEnabled];
    // QEMU ignores AuthorKeyEnabled: it passes AUTH_KEY_EN = the author key's first byte (the
    // low byte of its curve) != 0. Cloud Hypervisor passes AuthorKeyEnabled.
    const passed = loader === "qemu-kvm" ? (idBlock.body[o.AuthorPublicKey] !== 0 ? 1 : 0) : inFile;
    if (loader === "qemu-kvm" && passed !== inFile) {
      warnings.push(
        passed
          ? "the ID block's AuthorKeyEnabled is 0, but QEMU passes its author key to the PSP " +
            "(it goes by the author key's curve): the guest's report shows AUTHOR_KEY_EN 1 and " +
            "that key's digest"
          : `the ID block's AuthorKeyEnabled is ${inFile}, but QEMU passes no author key (it ` +
            "goes by the author key's curve, 0 here): the guest's report shows AUTHOR_KEY_EN 0",
      );
    }
    const verdict = await idBlockVerdict(idBlock.body, policy ?? 0n, { snp: mask, all: mask }, {
      authorKeyEnabled: passed,
    });
    broken = verdict.launchProblems;
  }
  if (idBlock && compare && loader !== "openvmm-kvm" && refusals.length === 0) {
    const o = IGVM_VHS_SNP_ID_BLOCK.off;
    const ld = toHex(idBlock.body.subarray(o.Ld, o.Ld + 48));
    let digest = "";
    try {
      digest = toHex(await launchDigestOf(KVM_LOADERS[loader](file, headers, host)));
    } catch (e) {
      if (!(e instanceof LoaderRefusal)) throw e;
      refusals.push(e.message);
    }
    if (digest && ld !== digest) {
      refusals.push(
        `the ID block's launch digest ${ld.slice(0, 16)}... is not the one ${name} makes KVM ` +
          `compute for ${host.vcpus} vCPU(s)${
            loader === "qemu-kvm" && host.vcpus > 1
              ? ` of signature 0x${host.cpuSignature.toString(16).padStart(8, "0")}`
              : ""
          } (${digest.slice(0, 16)}...): SNP_LAUNCH_FINISH fails`,
      );
    } else if (digest) {
      notes.push(
        `the ID block carries the launch digest igvmgen predicts for ${name} on KVM with ` +
          `${host.vcpus} vCPU(s); the prediction comes from the loaders' source code and is not ` +
          `yet confirmed on SEV-SNP hardware`,
      );
    }
  }
  for (const p of broken) {
    if (loader === "openvmm-kvm") {
      warnings.push(`the ID block: ${p} (OpenVMM on KVM does not pass it, so the launch starts)`);
    } else refusals.push(`the ID block: ${p}: the PSP fails SNP_LAUNCH_FINISH`);
  }
  return { loader, refusals, notes, warnings };
}

/**
 * Where QEMU cannot place the SEV-SNP platform's (`applies`) memory, in one walk: pages in the
 * legacy window 0xa0000-0xfffff (QEMU 10.2.2, run here: "Could not prepare memory at address
 * 0xA0000 due to existing non-RAM region", LOADERS.md §14), and the first page, parameter
 * insert or required memory on a device (qemuDeviceRangeProblem), with how many more.
 */
function qemuPlacementRefusals(
  ds: readonly Directive[],
  applies: (d: Directive) => boolean,
): string[] {
  // Area sizes as the file gives them (parameterAreaSizes would throw on a bad one).
  const areaBytes = new Map<number, number>();
  let legacy = 0;
  let firstLegacy = 0;
  let device: string | undefined;
  let moreDevices = 0;
  const access = directiveAccess(ds);
  for (let i = 0; i < access.length; i++) {
    const d = access.at(i);
    if (d.type === IGVM_VHT_PARAMETER_AREA) {
      areaBytes.set(
        Number(d.fields.ParameterAreaIndex ?? 0n),
        Number(d.fields.NumberOfBytes ?? 0n),
      );
    }
    const placed = qemuPlacement(d, areaBytes);
    if (!placed || !applies(d)) continue;
    const gpa = directiveGpa(d);
    if (d.type === IGVM_VHT_PAGE_DATA && gpa >= 0xa0000 && gpa < 0x100000 && !legacy++) {
      firstLegacy = gpa;
    }
    const problem = qemuDeviceRangeProblem(placed[0], gpa, placed[1]);
    if (problem && device) moreDevices++;
    else if (problem) device = problem;
  }
  const refusals: string[] = [];
  if (legacy) {
    refusals.push(
      `${legacy} pages in 0xa0000-0xfffff, which q35 and pc map as VGA and BIOS, not RAM: ` +
        `QEMU stops with "Could not prepare memory at address 0x${
          firstLegacy.toString(16).toUpperCase()
        } due to existing non-RAM region"`,
    );
  }
  if (device) refusals.push(moreDevices ? `${device} (and ${moreDevices} more there)` : device);
  return refusals;
}

/**
 * What a guest reading the parameters by the file's layout gets wrong under QEMU: QEMU writes
 * the memory map from offset 0 of its area whatever the MEMORY_MAP's byte offset (it honours
 * VP_COUNT's and ENVIRONMENT_INFO's), so parameters placed before the map's offset in the
 * same area lie where QEMU writes the map's first entries.
 */
function memoryMapWarnings(ds: readonly Directive[]): string[] {
  const out: string[] = [];
  const index = (d: Directive) => d.fields.ParameterAreaIndex ?? 0n;
  for (const map of ds.filter((d) => d.type === IGVM_VHT_MEMORY_MAP)) {
    const offset = map.fields.ByteOffset ?? 0n;
    if (offset === 0n) continue;
    const under = ds.filter((d) =>
      (d.type === IGVM_VHT_VP_COUNT_PARAMETER || d.type === IGVM_VHT_ENVIRONMENT_INFO_PARAMETER) &&
      index(d) === index(map) && (d.fields.ByteOffset ?? 0n) < offset
    ).map((d) => `${d.name.replace("IGVM_VHT_", "")} at ${hex(d.fields.ByteOffset ?? 0n)}`);
    out.push(
      `MEMORY_MAP at ${hex(offset)} of parameter area ${index(map)}: QEMU writes the memory ` +
        `map from offset 0, so a guest reading it at ${hex(offset)} misses its first entries${
          under.length ? `, and ${under.join(", ")} lies where QEMU writes them` : ""
        }`,
    );
  }
  return out;
}
