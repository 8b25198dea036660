/**
 * The SEV-SNP VMSA (VMCB save area, AMD APM vol. 2 table B-4 / SNP ABI): layout, and the
 * encoder of the initial vCPU state the IGVM file carries in its VP_CONTEXT page.
 */
import { defineLayout } from "../bytes/layout.ts";
import { PAGE_SIZE, setU64, viewOf } from "../bytes/le.ts";

/** struct vmcb_seg, 0x10 bytes. */
export const VMCB_SEG = defineLayout("vmcb_seg", 0x10, [
  ["selector", 0x00, "u16"],
  ["attrib", 0x02, "u16"],
  ["limit", 0x04, "u32"],
  ["base", 0x08, "u64"],
]);

/** The SEV_FEATURES bits (a u64). */
export const SEV_FEATURE_BITS = defineLayout("vmcb_save_area_0_0", 8, [
  ["sev_feature_snp", 0, { bits: 1 }],
  ["sev_feature_vtom", 1, { bits: 1 }],
  ["sev_feature_reflectvc", 2, { bits: 1 }],
  ["sev_feature_restrict_injection", 3, { bits: 1 }],
  ["sev_feature_alternate_injection", 4, { bits: 1 }],
  ["sev_feature_full_debug", 5, { bits: 1 }],
  ["sev_feature_reserved1", 6, { bits: 1 }],
  ["sev_feature_snpbtb_isolation", 7, { bits: 1 }],
  ["sev_feature_resrved2", 8, { bits: 56 }],
], "bitfield");

const SEV_FEATURES_UNION = defineLayout("vmcb_save_area_0", 8, [
  ["sev_features", 0, "u64"],
  ["_0", 0, { struct: SEV_FEATURE_BITS }],
], "union");

const seg = { struct: VMCB_SEG } as const;

/** struct vmcb_save_area as the original declares it (0x408 bytes of the 4 KiB VMSA page). */
export const VMCB_SAVE_AREA = defineLayout("vmcb_save_area", 0x408, [
  ["es", 0x000, seg],
  ["cs", 0x010, seg],
  ["ss", 0x020, seg],
  ["ds", 0x030, seg],
  ["fs", 0x040, seg],
  ["gs", 0x050, seg],
  ["gdtr", 0x060, seg],
  ["ldtr", 0x070, seg],
  ["idtr", 0x080, seg],
  ["tr", 0x090, seg],
  ["reserved_1", 0x0a0, { bytes: 42 }],
  ["vmpl", 0x0ca, "u8"],
  ["cpl", 0x0cb, "u8"],
  ["reserved_2", 0x0cc, { bytes: 4 }],
  ["efer", 0x0d0, "u64"],
  ["reserved_3", 0x0d8, { bytes: 112 }],
  ["cr4", 0x148, "u64"],
  ["cr3", 0x150, "u64"],
  ["cr0", 0x158, "u64"],
  ["dr7", 0x160, "u64"],
  ["dr6", 0x168, "u64"],
  ["rflags", 0x170, "u64"],
  ["rip", 0x178, "u64"],
  ["reserved_4", 0x180, { bytes: 88 }],
  ["rsp", 0x1d8, "u64"],
  ["s_cet", 0x1e0, "u64"],
  ["ssp", 0x1e8, "u64"],
  ["isst_addr", 0x1f0, "u64"],
  ["rax", 0x1f8, "u64"],
  ["star", 0x200, "u64"],
  ["lstar", 0x208, "u64"],
  ["cstar", 0x210, "u64"],
  ["sfmask", 0x218, "u64"],
  ["kernel_gs_base", 0x220, "u64"],
  ["sysenter_cs", 0x228, "u64"],
  ["sysenter_esp", 0x230, "u64"],
  ["sysenter_eip", 0x238, "u64"],
  ["cr2", 0x240, "u64"],
  ["reserved_5", 0x248, { bytes: 32 }],
  ["g_pat", 0x268, "u64"],
  ["dbgctl", 0x270, "u64"],
  ["br_from", 0x278, "u64"],
  ["br_to", 0x280, "u64"],
  ["last_excp_from", 0x288, "u64"],
  ["last_excp_to", 0x290, "u64"],
  ["reserved_7", 0x298, { bytes: 72 }],
  ["spec_ctrl", 0x2e0, "u32"],
  ["reserved_7b", 0x2e4, { bytes: 4 }],
  ["pkru", 0x2e8, "u32"],
  ["reserved_7a", 0x2ec, { bytes: 20 }],
  ["reserved_8", 0x300, "u64"],
  ["rcx", 0x308, "u64"],
  ["rdx", 0x310, "u64"],
  ["rbx", 0x318, "u64"],
  ["reserved_9", 0x320, "u64"],
  ["rbp", 0x328, "u64"],
  ["rsi", 0x330, "u64"],
  ["rdi", 0x338, "u64"],
  ["r8", 0x340, "u64"],
  ["r9", 0x348, "u64"],
  ["r10", 0x350, "u64"],
  ["r11", 0x358, "u64"],
  ["r12", 0x360, "u64"],
  ["r13", 0x368, "u64"],
  ["r14", 0x370, "u64"],
  ["r15", 0x378, "u64"],
  ["reserved_10", 0x380, { bytes: 16 }],
  ["sw_exit_code", 0x390, "u64"],
  ["sw_exit_info_1", 0x398, "u64"],
  ["sw_exit_info_2", 0x3a0, "u64"],
  ["sw_scratch", 0x3a8, "u64"],
  ["_0", 0x3b0, { struct: SEV_FEATURES_UNION }],
  ["vintr_ctrl", 0x3b8, "u64"],
  ["guest_error_code", 0x3c0, "u64"],
  ["virtual_tom", 0x3c8, "u64"],
  ["tlb_id", 0x3d0, "u64"],
  ["pcpu_id", 0x3d8, "u64"],
  ["event_inject", 0x3e0, "u64"],
  ["xcr0", 0x3e8, "u64"],
  ["valid_bitmap", 0x3f0, { bytes: 16 }],
  ["x87_state_gpa", 0x400, "u64"],
]);

// Control register and EFER bits (AMD APM vol. 2, 3.1).
export const CR0_PE = 0x1;
export const CR0_PG = 0x8000_0000;
export const CR4_PSE = 0x10;
export const CR4_PAE = 0x20;
export const EFER_SCE = 0x1;
export const EFER_LME = 0x100;
export const EFER_LMA = 0x400;
export const EFER_NXE = 0x800;
export const EFER_SVME = 0x1000;
export const RFLAGS_RESERVED_ONE = 0x2;
/** PAT power-on value: WB, WT, UC-, UC, WB, WT, UC-, UC. */
export const PAT_RESET_VALUE = 0x0007_0406_0007_0406n;
export const SEV_FEATURE_SNP = 0x1;
export const SEV_FEATURE_RESTRICTED_INJECTION = 0x8;
/** The C-bit the original sets in page-table entries and CR3 with `-encrypted_page`. */
export const PAGE_ENCRYPTED_BIT = 1n << 51n;

/** A segment register as the VMSA holds it. */
export interface Segment {
  selector: number;
  attrib: number;
  limit: number;
  base: number;
}

/** The vCPU state igvmgen sets; every other VMSA field is zero. */
export interface VmsaState {
  cs: Segment;
  ds: Segment;
  es: Segment;
  ss: Segment;
  tr: Segment;
  gdtr: { base: number; limit: number };
  efer: number;
  cr0: number;
  cr3: bigint;
  cr4: number;
  rflags: number;
  rip: number;
  rsp: number;
  rsi: number;
  sevFeatures: number;
  xcr0: number;
  gPat: bigint;
}

/** Encodes the VMSA page (4 KiB, zero past the save area). */
export function encodeVmsaPage(state: VmsaState): Uint8Array {
  const page = new Uint8Array(PAGE_SIZE);
  const view = viewOf(page);
  const o = VMCB_SAVE_AREA.off;
  const putSeg = (at: number, s: Segment) => {
    view.setUint16(at + VMCB_SEG.off.selector, s.selector, true);
    view.setUint16(at + VMCB_SEG.off.attrib, s.attrib, true);
    view.setUint32(at + VMCB_SEG.off.limit, s.limit, true);
    setU64(view, at + VMCB_SEG.off.base, s.base);
  };
  putSeg(o.es, state.es);
  putSeg(o.cs, state.cs);
  putSeg(o.ss, state.ss);
  putSeg(o.ds, state.ds);
  putSeg(o.tr, state.tr);
  putSeg(o.gdtr, { selector: 0, attrib: 0, limit: state.gdtr.limit, base: state.gdtr.base });
  setU64(view, o.efer, state.efer);
  setU64(view, o.cr4, state.cr4);
  setU64(view, o.cr3, state.cr3);
  setU64(view, o.cr0, state.cr0);
  setU64(view, o.rflags, state.rflags);
  setU64(view, o.rip, state.rip);
  setU64(view, o.rsp, state.rsp);
  setU64(view, o.rsi, state.rsi);
  setU64(view, o.g_pat, state.gPat);
  setU64(view, o._0, state.sevFeatures);
  setU64(view, o.xcr0, state.xcr0);
  return page;
}
