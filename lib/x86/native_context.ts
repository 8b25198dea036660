/**
 * The NATIVE platform's boot CPU state: `IgvmNativeVpContextX64` (igvm_defs 0.4.0), the VP
 * context an IGVM loader applies to the boot vCPU of a VM without SEV. QEMU 10.2 loads it at
 * every reset of vCPU 0 (target/i386/igvm.c): EFER, CR4, CR0, CR3, CS, one data segment for
 * DS/ES/FS/GS/SS, GDTR, IDTR, the 16 general registers, RIP and RFLAGS. Every other register
 * keeps its reset value; QEMU ignores `gs_base`.
 */
import { defineLayout } from "../bytes/layout.ts";
import { PAGE_SIZE, viewOf } from "../bytes/le.ts";
import { getSeg, GPRS } from "./kvm_vmsa.ts";
import { EFER_SVME, PAGE_ENCRYPTED_BIT, VMCB_SAVE_AREA } from "./vmsa.ts";

/** IgvmNativeVpContextX64, 0xE8 bytes; the rest of its 4 KiB file page is zero. */
export const IGVM_NATIVE_VP_CONTEXT_X64 = defineLayout("IgvmNativeVpContextX64", 0xe8, [
  ["rax", 0x00, "u64"],
  ["rcx", 0x08, "u64"],
  ["rdx", 0x10, "u64"],
  ["rbx", 0x18, "u64"],
  ["rsp", 0x20, "u64"],
  ["rbp", 0x28, "u64"],
  ["rsi", 0x30, "u64"],
  ["rdi", 0x38, "u64"],
  ["r8", 0x40, "u64"],
  ["r9", 0x48, "u64"],
  ["r10", 0x50, "u64"],
  ["r11", 0x58, "u64"],
  ["r12", 0x60, "u64"],
  ["r13", 0x68, "u64"],
  ["r14", 0x70, "u64"],
  ["r15", 0x78, "u64"],
  ["rip", 0x80, "u64"],
  ["rflags", 0x88, "u64"],
  ["idtr_base", 0x90, "u64"],
  ["idtr_limit", 0x98, "u16"],
  ["reserved", 0x9a, { bytes: 4 }],
  ["gdtr_limit", 0x9e, "u16"],
  ["gdtr_base", 0xa0, "u64"],
  ["code_selector", 0xa8, "u16"],
  ["code_attributes", 0xaa, "u16"],
  ["code_base", 0xac, "u32"],
  ["code_limit", 0xb0, "u32"],
  ["data_selector", 0xb4, "u16"],
  ["data_attributes", 0xb6, "u16"],
  ["data_base", 0xb8, "u32"],
  ["data_limit", 0xbc, "u32"],
  ["gs_base", 0xc0, "u64"],
  ["cr0", 0xc8, "u64"],
  ["cr3", 0xd0, "u64"],
  ["cr4", 0xd8, "u64"],
  ["efer", 0xe0, "u64"],
]);

/** The registers both layouts name alike: the general ones, then RIP, RFLAGS and CR0/3/4. */
const SHARED_REGISTERS = [...GPRS, "rip", "rflags", "cr0", "cr3", "cr4"] as const;

/**
 * A VMSA segment attribute (12 bits: type/S/DPL/P in 7:0, AVL/L/DB/G in 11:8) in the native
 * context's form, the descriptor's bits 15:8 and 23:20 (AVL/L/DB/G in 15:12, 11:8 zero):
 * QEMU loads it shifted left by 8 into its segment cache, which holds descriptor bits.
 */
export function nativeSegmentAttributes(vmsaAttrib: number): number {
  return (vmsaAttrib & 0xff) | ((vmsaAttrib & 0xf00) << 4);
}

/**
 * The native VP context page of the boot CPU a VMSA page describes: the same registers,
 * segment attributes converted, the data segment taken from DS (the VMSA's ES, SS and DS are
 * the same flat segment in every igvmgen image), `gs_base` from GS, CR3 without the C-bit
 * and EFER without SVME (a KVM addition that means nothing without SEV).
 */
export function nativeVpContextOf(vmsa: Uint8Array): Uint8Array {
  const page = new Uint8Array(PAGE_SIZE);
  const out = viewOf(page);
  const v = viewOf(vmsa);
  const o = IGVM_NATIVE_VP_CONTEXT_X64.off;
  const s = VMCB_SAVE_AREA.off;
  for (const r of SHARED_REGISTERS) out.setBigUint64(o[r], v.getBigUint64(s[r], true), true);
  out.setBigUint64(o.efer, v.getBigUint64(s.efer, true) & ~BigInt(EFER_SVME), true);
  out.setBigUint64(o.cr3, v.getBigUint64(s.cr3, true) & ~PAGE_ENCRYPTED_BIT, true);
  const gdtr = getSeg(v, "gdtr");
  const idtr = getSeg(v, "idtr");
  out.setBigUint64(o.gdtr_base, gdtr.base, true);
  out.setUint16(o.gdtr_limit, gdtr.limit, true);
  out.setBigUint64(o.idtr_base, idtr.base, true);
  out.setUint16(o.idtr_limit, idtr.limit, true);
  for (const [name, prefix] of [["cs", "code"], ["ds", "data"]] as const) {
    const x = getSeg(v, name);
    if (x.base > 0xffff_ffffn) throw new Error(`${name}.base 0x${x.base.toString(16)} > 4 GiB`);
    out.setUint16(o[`${prefix}_selector`], x.selector, true);
    out.setUint16(o[`${prefix}_attributes`], nativeSegmentAttributes(x.attrib), true);
    out.setUint32(o[`${prefix}_base`], Number(x.base), true);
    out.setUint32(o[`${prefix}_limit`], x.limit, true);
  }
  out.setBigUint64(o.gs_base, getSeg(v, "gs").base, true);
  return page;
}
