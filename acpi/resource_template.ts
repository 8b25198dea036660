/**
 * Resource descriptors for `_CRS` (ACPI 6.5, 6.4 "Resource Data Types"): IO, IRQ, extended
 * interrupt, fixed 32-bit memory, and Word/DWord/QWord address spaces (memory, IO, bus
 * numbers). `resourceTemplate()` ends the list with its End Tag.
 */
import { buffer, terms } from "./aml.ts";

function le(value: number | bigint, bytes: number): number[] {
  const v = BigInt(value);
  return Array.from({ length: bytes }, (_, i) => Number((v >> BigInt(8 * i)) & 0xffn));
}

/** IO (Decode16, min, max, alignment, length): small item 0x47. */
export function io(min: number, max: number, alignment: number, length: number): Uint8Array {
  return new Uint8Array([0x47, 0x01, ...le(min, 2), ...le(max, 2), alignment, length]);
}

/** IRQNoFlags () { irqs }: small item 0x22 (edge, active high, exclusive). */
export function irqNoFlags(...irqs: number[]): Uint8Array {
  const mask = irqs.reduce((m, i) => m | (1 << i), 0);
  return new Uint8Array([0x22, ...le(mask, 2)]);
}

/** Interrupt (ResourceConsumer, Edge|Level, ActiveHigh|ActiveLow, Exclusive) { gsi }: 0x89. */
export function extendedInterrupt(gsi: number, edge = true, activeLow = false): Uint8Array {
  const flags = 0x01 | (edge ? 0x02 : 0) | (activeLow ? 0x04 : 0);
  return new Uint8Array([0x89, ...le(6, 2), flags, 1, ...le(gsi, 4)]);
}

/** Memory32Fixed (ReadWrite, base, length): large item 0x86. */
export function memory32Fixed(base: number, length: number): Uint8Array {
  return new Uint8Array([0x86, ...le(9, 2), 0x01, ...le(base, 4), ...le(length, 4)]);
}

const RESOURCE_MEMORY = 0;
const RESOURCE_IO = 1;
const RESOURCE_BUS = 2;
/** General flags: producer, positive decode, minimum and maximum fixed. */
const PRODUCER_FIXED = 0x0c;
/** Memory: ReadWrite, NonCacheable, AddressRangeMemory, TypeStatic. */
const MEMORY_RW = 0x01;
/** IO: EntireRange, TypeStatic, DenseTranslation. */
const IO_ENTIRE_RANGE = 0x03;

function addressSpace(
  tag: number,
  width: 2 | 4 | 8,
  type: number,
  typeFlags: number,
  min: number | bigint,
  max: number | bigint,
): Uint8Array {
  const length = BigInt(max) - BigInt(min) + 1n;
  const body = [
    type,
    PRODUCER_FIXED,
    typeFlags,
    ...le(0, width),
    ...le(min, width),
    ...le(max, width),
    ...le(0, width),
    ...le(length, width),
  ];
  return new Uint8Array([tag, ...le(body.length, 2), ...body]);
}

/** WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, min..max). */
export function wordBusNumber(min: number, max: number): Uint8Array {
  return addressSpace(0x88, 2, RESOURCE_BUS, 0, min, max);
}

/** WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, min..max). */
export function wordIo(min: number, max: number): Uint8Array {
  return addressSpace(0x88, 2, RESOURCE_IO, IO_ENTIRE_RANGE, min, max);
}

/** DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite). */
export function dwordMemory(min: number, max: number): Uint8Array {
  return addressSpace(0x87, 4, RESOURCE_MEMORY, MEMORY_RW, min, max);
}

/** QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite). */
export function qwordMemory(min: bigint, max: bigint): Uint8Array {
  return addressSpace(0x8a, 8, RESOURCE_MEMORY, MEMORY_RW, min, max);
}

/** ResourceTemplate () { descriptors }: a Buffer ending with an End Tag (checksum 0). */
export function resourceTemplate(...descriptors: Uint8Array[]): Uint8Array {
  return buffer(terms(...descriptors, new Uint8Array([0x79, 0x00])));
}
