/**
 * The flat-model GDT the original builds: [NULL, kernel code, user code, kernel data,
 * user data, TSS], and the segment-register caches loaded from it.
 */
import type { Segment } from "./vmsa.ts";
import { PAGE_SIZE } from "../bytes/le.ts";

/** Size of the (all-zero) 32-bit TSS placed before the GDT. */
export const TSS_SIZE = 104;

export const SELECTOR_KERNEL_CODE = 0x08;
export const SELECTOR_KERNEL_DATA = 0x18;
export const SELECTOR_TSS = 0x28;

const CODE_TYPE = 0b1011; // execute/read, accessed (also "busy TSS" for a system descriptor)
const DATA_TYPE = 0b0011; // read/write, accessed

interface Descriptor {
  base: number;
  limit: number;
  type: number;
  s: number;
  dpl: number;
  p: number;
  l: number;
  db: number;
  g: number;
}

/** Encodes one 8-byte segment descriptor (struct desc_struct). */
function encodeDescriptor(d: Descriptor): Uint8Array {
  const out = new Uint8Array(8);
  out[0] = d.limit & 0xff;
  out[1] = (d.limit >>> 8) & 0xff;
  out[2] = d.base & 0xff;
  out[3] = (d.base >>> 8) & 0xff;
  out[4] = (d.base >>> 16) & 0xff;
  out[5] = d.type | (d.s << 4) | (d.dpl << 5) | (d.p << 7);
  out[6] = ((d.limit >>> 16) & 0xf) | (d.l << 5) | (d.db << 6) | (d.g << 7);
  out[7] = (d.base >>> 24) & 0xff;
  return out;
}

/** The segment cache (base, expanded limit, attributes) for a descriptor. */
function segmentOf(selector: number, d: Descriptor): Segment {
  const limit = d.limit & 0xfffff;
  return {
    selector,
    base: d.base,
    limit: d.g ? limit * PAGE_SIZE + PAGE_SIZE - 1 : limit,
    attrib: d.type | (d.s << 4) | (d.dpl << 5) | (d.p << 7) | (d.l << 9) | (d.db << 10) |
      (d.g << 11),
  };
}

/** A GDT placed at `gdtBase`, with its TSS at `tssBase`. */
export interface Gdt {
  bytes: Uint8Array;
  limit: number;
  cs: Segment;
  ds: Segment;
  tr: Segment;
}

/** The size of the GDT for a mode: a 16-byte TSS descriptor in long mode. */
export function gdtSize(longMode: boolean): number {
  return 5 * 8 + (longMode ? 16 : 8);
}

/** Builds the GDT bytes and segment caches for 32-bit protected or 64-bit long mode. */
export function buildGdt(longMode: boolean, tssBase: number): Gdt {
  const l = longMode ? 1 : 0;
  const flat = { base: 0, limit: 0xffff_ffff, s: 1, p: 1, g: 1 };
  const kernelCode: Descriptor = { ...flat, type: CODE_TYPE, dpl: 0, l, db: 1 - l };
  const userCode: Descriptor = { ...flat, type: CODE_TYPE, dpl: 3, l, db: 1 - l };
  const kernelData: Descriptor = { ...flat, type: DATA_TYPE, dpl: 0, l: 0, db: 1 };
  const userData: Descriptor = { ...flat, type: DATA_TYPE, dpl: 3, l: 0, db: 1 };
  const tss: Descriptor = {
    base: tssBase >>> 0,
    limit: TSS_SIZE - 1,
    type: CODE_TYPE,
    s: 0,
    dpl: 0,
    p: 1,
    l: 0,
    db: 0,
    g: 0,
  };
  const bytes = new Uint8Array(gdtSize(longMode));
  [new Uint8Array(8), kernelCode, userCode, kernelData, userData, tss].forEach((d, i) => {
    bytes.set(d instanceof Uint8Array ? d : encodeDescriptor(d), i * 8);
  });
  if (longMode) {
    new DataView(bytes.buffer).setUint32(48, Math.floor(tssBase / 2 ** 32), true);
  }
  return {
    bytes,
    limit: bytes.length - 1,
    cs: segmentOf(SELECTOR_KERNEL_CODE, kernelCode),
    ds: segmentOf(SELECTOR_KERNEL_DATA, kernelData),
    tr: segmentOf(SELECTOR_TSS, tss),
  };
}
