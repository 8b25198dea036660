/**
 * The VMSAs KVM measures (../shared/LOADERS.md §4.3, §4.4, §6, §7.2, §13): the boot CPU's
 * VMSA rebuilt from the vCPU state a loader sets, and the reset VMSA of the other vCPUs.
 * Offsets past `vmcb_save_area` (the FPU area) are those of Linux `struct
 * sev_es_save_area` (AMD APM vol. 2, table B-4).
 */
import { PAGE_SIZE, viewOf } from "../bytes/le.ts";
import {
  EFER_SVME,
  PAT_RESET_VALUE,
  RFLAGS_RESERVED_ONE,
  SEV_FEATURE_SNP,
  VMCB_SAVE_AREA,
  VMCB_SEG,
} from "./vmsa.ts";

/** Fields of the SEV-ES save area that `VMCB_SAVE_AREA` leaves in its reserved bytes. */
export const SEV_ES_SAVE_AREA_EXTRA = {
  xss: 0x140, // u64
  dr0: 0x180, // u64, dr1..dr3 follow
  dr0AddrMask: 0x1a0, // u64 x4
  tscAux: 0x2ec, // u32
  x87Dp: 0x400, // u64
  mxcsr: 0x408, // u32
  x87Ftw: 0x40c, // u16
  x87Fsw: 0x40e, // u16
  x87Fcw: 0x410, // u16
  x87Fop: 0x412, // u16
  x87Ds: 0x414, // u16
  x87Cs: 0x416, // u16
  x87Rip: 0x418, // u64
  fpregX87: 0x420, // 80 bytes
  fpregXmm: 0x470, // 256 bytes
  fpregYmm: 0x570, // 256 bytes
  END: 0x670,
} as const;

/** KVM's initial VMSA GPA: every VMSA is measured at this RMP GPA (Linux INITIAL_VMSA_GPA). */
export const KVM_VMSA_GPA = 0xFFFF_FFFF_F000;
const CR0_ET = 0x10;
const CR0_NW = 0x2000_0000;
const CR0_CD = 0x4000_0000;
const CR4_MCE = 0x40;
/** DR6 and DR7 after reset (AMD APM vol. 2, 13.1.1.5). */
const DR6_RESET = 0xffff_0ff0;
export const DR7_RESET = 0x400;
/** x87 control word and MXCSR after FNINIT / KVM's fpstate initialisation. */
const X87_FCW_RESET = 0x37f;
const MXCSR_RESET = 0x1f80;
/** The SEV features KVM offers besides SNP (Linux `sev_supported_vmsa_features`). */
export const SEV_FEATURE_DEBUG_SWAP = 0x20;
/** RDX of a vCPU that KVM reset before any CPUID was set (Linux `kvm_vcpu_reset`). */
export const KVM_RESET_RDX = 0x600;

/** CPUID(1).EAX of QEMU's EPYC models (family, model, stepping), by short name. */
export const CPU_SIGNATURES: Readonly<Record<string, number>> = {
  rome: 0x0083_0f10, // EPYC-Rome: family 0x17, model 0x31, stepping 0
  milan: 0x00a0_0f11, // EPYC-Milan: family 0x19, model 0x01, stepping 1
  genoa: 0x00a1_0f10, // EPYC-Genoa: family 0x19, model 0x11, stepping 0
  turin: 0x00b0_0f00, // EPYC-Turin: family 0x1a, model 0x00, stepping 0
};

/**
 * QEMU's EPYC CPU models (`-cpu help` of QEMU 10.2) with their versions, and CPUID(1).EAX of
 * each (QEMU's query-cpu-model-expansion: a model's versions keep its family, model and
 * stepping). `EPYC` is the first generation (Naples), which has no short name.
 */
const QEMU_EPYC_MODELS: readonly { name: string; versions: number; signature: number }[] = [
  { name: "EPYC", versions: 5, signature: 0x0080_0f12 }, // family 0x17, model 0x01, stepping 2
  { name: "EPYC-Rome", versions: 5, signature: CPU_SIGNATURES.rome },
  { name: "EPYC-Milan", versions: 3, signature: CPU_SIGNATURES.milan },
  { name: "EPYC-Genoa", versions: 2, signature: CPU_SIGNATURES.genoa },
  { name: "EPYC-Turin", versions: 1, signature: CPU_SIGNATURES.turin },
];

/** QEMU's CPU model names (`EPYC-Milan`, `EPYC-Milan-v2`, `EPYC-IBPB`...), lower case. */
const QEMU_CPU_NAMES: ReadonlyMap<string, number> = new Map([
  ["epyc-ibpb", 0x0080_0f12], // an alias of EPYC-v2
  ...QEMU_EPYC_MODELS.flatMap((m) => [
    [m.name.toLowerCase(), m.signature] as const,
    ...Array.from(
      { length: m.versions },
      (_, i) => [`${m.name.toLowerCase()}-v${i + 1}`, m.signature] as const,
    ),
  ]),
]);

/**
 * The CPU models a search for a host configuration tries (`verify`, `measure`): the short
 * names of CPU_SIGNATURES and QEMU's first EPYC, each with its signature.
 */
export const KNOWN_CPU_MODELS: readonly { name: string; signature: number }[] = [
  ...Object.entries(CPU_SIGNATURES).map(([name, signature]) => ({ name, signature })),
  { name: "EPYC", signature: QEMU_EPYC_MODELS[0].signature },
];

/**
 * Parses a CPU name of CPU_SIGNATURES, one of QEMU's EPYC model names (`EPYC-Milan`,
 * `epyc-genoa-v2`; any case), or a hex signature (0x...); undefined when none.
 */
export function parseCpuSignature(text: string): number | undefined {
  const lower = text.toLowerCase();
  const named = Object.hasOwn(CPU_SIGNATURES, lower)
    ? CPU_SIGNATURES[lower]
    : QEMU_CPU_NAMES.get(lower);
  if (named !== undefined) return named;
  if (/^0x[0-9a-f]{1,8}$/i.test(text)) return parseInt(text, 16);
  return undefined;
}

const O = VMCB_SAVE_AREA.off;
const X = SEV_ES_SAVE_AREA_EXTRA;
const SEGMENTS = ["es", "cs", "ss", "ds", "fs", "gs", "gdtr", "ldtr", "idtr", "tr"] as const;
/** The segment attribute bits KVM keeps (type, S, DPL, P, AVL, L, DB, G). */
const SEGMENT_ATTRIB_MASK = 0x0fff;

function setSeg(
  v: DataView,
  name: typeof SEGMENTS[number],
  s: { selector: number; attrib: number; limit: number; base: bigint },
): void {
  const at = O[name];
  v.setUint16(at + VMCB_SEG.off.selector, s.selector, true);
  v.setUint16(at + VMCB_SEG.off.attrib, s.attrib, true);
  v.setUint32(at + VMCB_SEG.off.limit, s.limit, true);
  v.setBigUint64(at + VMCB_SEG.off.base, s.base, true);
}

/** The selector, attributes, limit and base of one segment of a VMSA. */
export function getSeg(v: DataView, name: typeof SEGMENTS[number]) {
  const at = O[name];
  return {
    selector: v.getUint16(at + VMCB_SEG.off.selector, true),
    attrib: v.getUint16(at + VMCB_SEG.off.attrib, true),
    limit: v.getUint32(at + VMCB_SEG.off.limit, true),
    base: v.getBigUint64(at + VMCB_SEG.off.base, true),
  };
}

/**
 * The reset VMSA of a vCPU that no loader gave registers (QEMU's `x86_cpu_reset_hold` through
 * KVM, LOADERS.md §4.4): real mode at the reset vector 0xFFFFFFF0, CR0 = ET (CD and NW
 * cleared by KVM), CR4 = MCE, EFER = SVME, DR6/DR7, PAT, FPU at reset values, XCR0 = x87,
 * and RDX = the CPU signature (`rdx`).
 */
export function resetVmsa(sevFeatures: bigint, rdx: number): Uint8Array {
  const page = new Uint8Array(PAGE_SIZE);
  const v = viewOf(page);
  const data = { selector: 0, attrib: 0x93, limit: 0xffff, base: 0n };
  setSeg(v, "es", data);
  setSeg(v, "cs", { selector: 0xf000, attrib: 0x9b, limit: 0xffff, base: 0xffff_0000n });
  setSeg(v, "ss", data);
  setSeg(v, "ds", data);
  setSeg(v, "fs", data);
  setSeg(v, "gs", data);
  setSeg(v, "gdtr", { selector: 0, attrib: 0, limit: 0xffff, base: 0n });
  setSeg(v, "idtr", { selector: 0, attrib: 0, limit: 0xffff, base: 0n });
  setSeg(v, "ldtr", { selector: 0, attrib: 0x82, limit: 0xffff, base: 0n });
  setSeg(v, "tr", { selector: 0, attrib: 0x8b, limit: 0xffff, base: 0n });
  v.setBigUint64(O.efer, BigInt(EFER_SVME), true);
  v.setBigUint64(O.cr4, BigInt(CR4_MCE), true);
  v.setBigUint64(O.cr0, BigInt(CR0_ET), true);
  v.setBigUint64(O.dr7, BigInt(DR7_RESET), true);
  v.setBigUint64(O.dr6, BigInt(DR6_RESET), true);
  v.setBigUint64(O.rflags, BigInt(RFLAGS_RESERVED_ONE), true);
  v.setBigUint64(O.rip, 0xfff0n, true);
  v.setBigUint64(O.g_pat, PAT_RESET_VALUE, true);
  v.setBigUint64(O.rdx, BigInt(rdx), true);
  v.setBigUint64(O._0, sevFeatures, true);
  v.setBigUint64(O.xcr0, 1n, true);
  v.setUint32(X.mxcsr, MXCSR_RESET, true);
  v.setUint16(X.x87Fcw, X87_FCW_RESET, true);
  return page;
}

/** The general-purpose registers at their VMSA offsets. */
export const GPRS = [
  "rax",
  "rcx",
  "rdx",
  "rbx",
  "rsp",
  "rbp",
  "rsi",
  "rdi",
  "r8",
  "r9",
  "r10",
  "r11",
  "r12",
  "r13",
  "r14",
  "r15",
] as const;

/**
 * The 64-bit registers OpenVMM's allow-list has beyond QEMU's (`virt_kvm/src/snp.rs`,
 * LOADERS.md §7.2): set on the boot CPU, and allowed non-zero in the file's VMSA.
 */
export const OPENVMM_SYSTEM_REGISTERS = [
  "cr2",
  "star",
  "lstar",
  "cstar",
  "sfmask",
  "kernel_gs_base",
  "sysenter_cs",
  "sysenter_esp",
  "sysenter_eip",
] as const;

/** Which fields of the file's VMSA a loader hands to KVM, and how. */
interface BspRecipe {
  /** Segments copied (the others keep their reset state). */
  segments: readonly (typeof SEGMENTS[number])[];
  /** QEMU's `sev_apply_cpu_context` loads TR with LDTR's base (LOADERS.md §4.3). */
  trBaseFromLdtr: boolean;
  /** 64-bit fields copied as they are. */
  copied: readonly string[];
  /** FPU fields copied from the file (else KVM's fpstate defaults). */
  fpuFromFile: boolean;
}

const QEMU_RECIPE: BspRecipe = {
  segments: SEGMENTS,
  trBaseFromLdtr: true,
  copied: ["cr3", "dr6", "dr7", "rip", "g_pat", "xcr0", ...GPRS],
  // LOADERS.md §13: QEMU's KVM_SET_XSAVE carries XSTATE_BV = 0, so KVM keeps its defaults.
  fpuFromFile: false,
};

const CH_RECIPE: BspRecipe = {
  // Cloud Hypervisor `setup_sev_snp_regs`: no XCR0, PAT, DR6/DR7 or FPU (LOADERS.md §6).
  segments: SEGMENTS,
  trBaseFromLdtr: false,
  copied: ["cr3", "rip", ...GPRS],
  fpuFromFile: false,
};

const OPENVMM_RECIPE: BspRecipe = {
  // OpenVMM's allow-list (LOADERS.md §7.2); the FPU comes from the file's xsave image.
  segments: SEGMENTS,
  trBaseFromLdtr: false,
  copied: ["cr3", "dr6", "dr7", "rip", "g_pat", "xcr0", ...OPENVMM_SYSTEM_REGISTERS, ...GPRS],
  fpuFromFile: true,
};

/** Which loader's view of the boot CPU to build. */
export type KvmLoaderKind = "qemu" | "ch" | "openvmm";

const RECIPES: Record<KvmLoaderKind, BspRecipe> = {
  qemu: QEMU_RECIPE,
  ch: CH_RECIPE,
  openvmm: OPENVMM_RECIPE,
};

/**
 * The SEV features KVM gives every vCPU: those of vp 0's VMSA page (none without one) plus
 * SNP.
 */
export function kvmSevFeatures(vp0: Uint8Array | undefined): bigint {
  return (vp0 ? viewOf(vp0).getBigUint64(O._0, true) : 0n) | BigInt(SEV_FEATURE_SNP);
}

/**
 * The boot CPU's VMSA as KVM measures it when a loader starts a vCPU from the file's VMSA
 * page `file`: KVM's reset VMSA, with the fields the loader copies, then KVM's own
 * additions: CR0.ET (CD/NW cleared), CR4.MCE, EFER.SVME, RFLAGS bit 1, CPL = SS.DPL,
 * `sev_features` = the file's plus SNP.
 */
export function kvmBspVmsa(kind: KvmLoaderKind, file: Uint8Array): Uint8Array {
  const recipe = RECIPES[kind];
  const f = viewOf(file);
  const page = resetVmsa(kvmSevFeatures(file), 0);
  const v = viewOf(page);
  for (const name of recipe.segments) {
    const s = getSeg(f, name);
    if (name === "gdtr" || name === "idtr") {
      setSeg(v, name, { selector: 0, attrib: 0, limit: s.limit, base: s.base });
      continue;
    }
    if (name === "tr" && recipe.trBaseFromLdtr) s.base = getSeg(f, "ldtr").base;
    // An attribute without P makes the segment unusable: KVM keeps its other bits.
    setSeg(v, name, { ...s, attrib: s.attrib & SEGMENT_ATTRIB_MASK });
  }
  for (const name of recipe.copied) {
    v.setBigUint64(
      O[name as keyof typeof O],
      f.getBigUint64(O[name as keyof typeof O], true),
      true,
    );
  }
  const cr0 = f.getBigUint64(O.cr0, true);
  v.setBigUint64(O.cr0, (cr0 | BigInt(CR0_ET)) & ~BigInt(CR0_CD | CR0_NW), true);
  v.setBigUint64(O.cr4, f.getBigUint64(O.cr4, true) | BigInt(CR4_MCE), true);
  v.setBigUint64(O.efer, f.getBigUint64(O.efer, true) | BigInt(EFER_SVME), true);
  v.setBigUint64(O.rflags, f.getBigUint64(O.rflags, true) | BigInt(RFLAGS_RESERVED_ONE), true);
  v.setBigUint64(O.xcr0, v.getBigUint64(O.xcr0, true) | 1n, true);
  v.setUint8(O.cpl, (getSeg(v, "ss").attrib >> 5) & 3);
  if (recipe.fpuFromFile) {
    for (const at of [X.mxcsr]) v.setUint32(at, f.getUint32(at, true), true);
    for (const at of [X.x87Fsw, X.x87Fcw, X.x87Fop]) v.setUint16(at, f.getUint16(at, true), true);
    for (const at of [X.x87Dp, X.x87Rip]) v.setBigUint64(at, f.getBigUint64(at, true), true);
  }
  if (kind === "openvmm") v.setBigUint64(X.xss, f.getBigUint64(X.xss, true), true);
  return page;
}

/**
 * Makes a VMSA page one that every KVM loader measures as it is (the `-target qemu-kvm` and
 * `ch-kvm` images): SEV features SNP only, the bits KVM adds set already (CR0.ET, CR4.MCE,
 * EFER.SVME, RFLAGS bit 1), DR6/DR7, XCR0, PAT and the FPU at the reset values KVM starts
 * from, and LDTR's base equal to TR's. QEMU loads TR with LDTR's base; the LDTR itself is
 * null and not present, so its base is never used by the guest, while TR keeps its TSS.
 */
export function kvmTargetVmsa(page: Uint8Array): Uint8Array {
  const out = page.slice();
  const v = viewOf(out);
  v.setBigUint64(O._0, BigInt(SEV_FEATURE_SNP), true);
  v.setBigUint64(O.cr0, v.getBigUint64(O.cr0, true) | BigInt(CR0_ET), true);
  v.setBigUint64(O.cr4, v.getBigUint64(O.cr4, true) | BigInt(CR4_MCE), true);
  v.setBigUint64(O.efer, v.getBigUint64(O.efer, true) | BigInt(EFER_SVME), true);
  v.setBigUint64(O.rflags, v.getBigUint64(O.rflags, true) | BigInt(RFLAGS_RESERVED_ONE), true);
  v.setBigUint64(O.dr6, BigInt(DR6_RESET), true);
  v.setBigUint64(O.dr7, BigInt(DR7_RESET), true);
  v.setBigUint64(O.xcr0, 1n, true);
  v.setBigUint64(O.g_pat, PAT_RESET_VALUE, true);
  v.setUint32(X.mxcsr, MXCSR_RESET, true);
  v.setUint16(X.x87Fcw, X87_FCW_RESET, true);
  v.setBigUint64(O.ldtr + VMCB_SEG.off.base, v.getBigUint64(O.tr + VMCB_SEG.off.base, true), true);
  return out;
}
