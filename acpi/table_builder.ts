/**
 * Encoders of the ACPI tables igvmgen builds itself (ACPI 6.5, chapter 5): RSDP (revision
 * 2), XSDT, FADT (revision 6), FACS, MADT, MCFG and a DSDT around AML. Checksums included.
 */
import { ACPI_TABLE_HEADER, acpiChecksum, fixTableChecksum } from "./tables.ts";

/** OEM fields written into every table header. */
export const OEM = {
  id: "IGVMGN",
  tableIdPrefix: "IGVM",
  revision: 1,
  creatorId: "IGVM",
  creatorRevision: 1,
};

function ascii(s: string, length: number): Uint8Array {
  const out = new Uint8Array(length).fill(0x20);
  out.set(new TextEncoder().encode(s).subarray(0, length));
  return out;
}

/** A table of `length` bytes with its SDT header filled (checksum set by `finish`). */
function sdt(
  signature: string,
  length: number,
  revision: number,
  tableId: string,
): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(length);
  const view = new DataView(bytes.buffer);
  const o = ACPI_TABLE_HEADER.off;
  bytes.set(ascii(signature, 4), o.signature);
  view.setUint32(o.length, length, true);
  bytes[o.revision] = revision;
  bytes.set(ascii(OEM.id, 6), o.oem_id);
  bytes.set(ascii(tableId, 8), o.oem_table_id);
  view.setUint32(o.oem_revision, OEM.revision, true);
  bytes.set(ascii(OEM.creatorId, 4), o.asl_compiler_id);
  view.setUint32(o.asl_compiler_revision, OEM.creatorRevision, true);
  return { bytes, view };
}

function finish(bytes: Uint8Array): Uint8Array {
  fixTableChecksum(bytes);
  return bytes;
}

/** RSDP revision 2 pointing at the XSDT (no RSDT). */
export function encodeRsdp(xsdtAddr: number): Uint8Array {
  const b = new Uint8Array(36);
  const v = new DataView(b.buffer);
  b.set(ascii("RSD PTR ", 8), 0);
  b.set(ascii(OEM.id, 6), 9);
  b[15] = 2;
  v.setUint32(20, 36, true);
  v.setBigUint64(24, BigInt(xsdtAddr), true);
  b[8] = acpiChecksum(b, 0, 20, 8);
  b[32] = acpiChecksum(b, 0, 36, 32);
  return b;
}

/** XSDT listing `entries`. */
export function encodeXsdt(entries: readonly number[]): Uint8Array {
  const { bytes, view } = sdt("XSDT", 36 + 8 * entries.length, 1, `${OEM.tableIdPrefix}XSDT`);
  entries.forEach((a, i) => view.setBigUint64(36 + 8 * i, BigInt(a), true));
  return finish(bytes);
}

/** A Generic Address Structure (5.2.3.2). */
export interface Gas {
  spaceId: number; // 0 memory, 1 system I/O
  bitWidth: number;
  bitOffset?: number;
  accessSize: number; // 1 byte .. 4 qword
  address: number;
}

function putGas(view: DataView, at: number, g: Gas): void {
  view.setUint8(at, g.spaceId);
  view.setUint8(at + 1, g.bitWidth);
  view.setUint8(at + 2, g.bitOffset ?? 0);
  view.setUint8(at + 3, g.accessSize);
  view.setBigUint64(at + 4, BigInt(g.address), true);
}

/** FADT fields a profile chooses. */
export interface FadtSpec {
  flags: number;
  iapcBootArch: number;
  resetReg?: Gas;
  resetValue?: number;
  sleepControl?: Gas;
  sleepStatus?: Gas;
  hypervisorId?: string;
}

export const FADT_WBINVD = 1 << 0;
export const FADT_PWR_BUTTON = 1 << 4;
export const FADT_SLP_BUTTON = 1 << 5;
export const FADT_TMR_VAL_EXT = 1 << 8;
export const FADT_RESET_REG_SUP = 1 << 10;
export const FADT_HW_REDUCED_ACPI = 1 << 20;
export const IAPC_VGA_NOT_PRESENT = 1 << 2;
export const IAPC_CMOS_RTC_NOT_PRESENT = 1 << 5;

/** FADT revision 6.5 (276 bytes) linking the FACS and the DSDT (32- and 64-bit fields). */
export function encodeFadt(spec: FadtSpec, facs: number, dsdt: number): Uint8Array {
  const { bytes, view } = sdt("FACP", 276, 6, `${OEM.tableIdPrefix}FACP`);
  view.setUint32(36, facs, true); // FIRMWARE_CTRL
  view.setUint32(40, dsdt, true); // DSDT
  view.setUint16(109, spec.iapcBootArch, true);
  view.setUint32(112, spec.flags, true);
  if (spec.resetReg) {
    putGas(view, 116, spec.resetReg);
    view.setUint8(128, spec.resetValue ?? 0);
  }
  view.setUint8(131, 5); // FADT minor version: ACPI 6.5
  view.setBigUint64(132, BigInt(facs), true); // X_FIRMWARE_CTRL
  view.setBigUint64(140, BigInt(dsdt), true); // X_DSDT
  if (spec.sleepControl) putGas(view, 244, spec.sleepControl);
  if (spec.sleepStatus) putGas(view, 256, spec.sleepStatus);
  if (spec.hypervisorId) bytes.set(ascii(spec.hypervisorId, 8), 268);
  return finish(bytes);
}

/** FACS (64 bytes, version 2); it has no checksum. */
export function encodeFacs(): Uint8Array {
  const b = new Uint8Array(64);
  b.set(ascii("FACS", 4), 0);
  new DataView(b.buffer).setUint32(4, 64, true);
  b[32] = 2; // version
  return b;
}

/** An interrupt source override (MADT type 2). */
export interface InterruptOverride {
  source: number;
  gsi: number;
  flags: number; // MPS INTI flags: polarity bits 0-1, trigger mode bits 2-3
}

/** MADT fields a profile chooses. */
export interface MadtSpec {
  vcpus: number;
  ioApicId: number;
  ioApicAddress: number;
  overrides: readonly InterruptOverride[];
}

export const LOCAL_APIC_ADDRESS = 0xfee00000;
/** The last APIC ID a type-0 Local APIC entry can carry; higher IDs use x2APIC entries. */
export const MAX_XAPIC_ID = 254;

/** MADT revision 5: one enabled local APIC (or x2APIC) per vCPU, an I/O APIC, overrides, NMI. */
export function encodeMadt(spec: MadtSpec): Uint8Array {
  const entries: number[][] = [];
  for (let i = 0; i < spec.vcpus; i++) {
    if (i <= MAX_XAPIC_ID) entries.push([0, 8, i, i, 1, 0, 0, 0]);
    else entries.push([9, 16, 0, 0, ...u32(i), ...u32(1), ...u32(i)]);
  }
  entries.push([1, 12, spec.ioApicId, 0, ...u32(spec.ioApicAddress), ...u32(0)]);
  for (const o of spec.overrides) {
    entries.push([2, 10, 0, o.source, ...u32(o.gsi), o.flags & 0xff, o.flags >> 8]);
  }
  entries.push([4, 6, 0xff, 0, 0, 1]); // Local APIC NMI: all processors, LINT1
  if (spec.vcpus > MAX_XAPIC_ID + 1) {
    entries.push([0x0a, 12, 0, 0, ...u32(0xffff_ffff), 1, 0, 0, 0]); // x2APIC NMI
  }
  const length = 44 + entries.reduce((n, e) => n + e.length, 0);
  const { bytes, view } = sdt("APIC", length, 5, `${OEM.tableIdPrefix}MADT`);
  view.setUint32(36, LOCAL_APIC_ADDRESS, true);
  view.setUint32(40, 0, true); // flags: no PC-AT compatible dual 8259
  let at = 44;
  for (const e of entries) {
    bytes.set(e, at);
    at += e.length;
  }
  return finish(bytes);
}

function u32(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

/** One PCI segment's ECAM window. */
export interface EcamWindow {
  base: number;
  segment: number;
  startBus: number;
  endBus: number;
}

/** MCFG listing ECAM windows. */
export function encodeMcfg(windows: readonly EcamWindow[]): Uint8Array {
  const { bytes, view } = sdt("MCFG", 44 + 16 * windows.length, 1, `${OEM.tableIdPrefix}MCFG`);
  windows.forEach((w, i) => {
    const at = 44 + 16 * i;
    view.setBigUint64(at, BigInt(w.base), true);
    view.setUint16(at + 8, w.segment, true);
    bytes[at + 10] = w.startBus;
    bytes[at + 11] = w.endBus;
  });
  return finish(bytes);
}

/** DSDT revision 2 (64-bit integers) around an AML term list. */
export function encodeDsdt(aml: Uint8Array): Uint8Array {
  const { bytes } = sdt("DSDT", 36 + aml.length, 2, `${OEM.tableIdPrefix}DSDT`);
  bytes.set(aml, 36);
  return finish(bytes);
}
