/**
 * Walks the ACPI tables of a guest image as an OS would: RSDP at 0xE0000, the XSDT, every
 * table it lists, and the FADT's FACS and DSDT; checks signatures, lengths and checksums.
 */
import { ACPI_RSDP_ADDR, acpiChecksum, tableSignature } from "./tables.ts";

/** A table found in guest memory. */
export interface FoundTable {
  signature: string;
  gpa: number;
  bytes: Uint8Array;
}

/** The tables found and the problems seen. */
export interface AcpiWalk {
  tables: FoundTable[];
  problems: string[];
}

/** Reads guest memory. */
export type GuestReader = (gpa: number, length: number) => Uint8Array;

const MAX_TABLE = 1 << 20;
/** Bounds that keep a hostile image from making the walk slow. */
const MAX_XSDT_ENTRIES = 256;
const MAX_TOTAL_BYTES = 8 << 20;

/** Walks the tables from the RSDP. */
export function walkAcpiTables(read: GuestReader, rsdpAddr = ACPI_RSDP_ADDR): AcpiWalk {
  const problems: string[] = [];
  const tables: FoundTable[] = [];
  const rsdp = read(rsdpAddr, 36);
  if (new TextDecoder().decode(rsdp.subarray(0, 8)) !== "RSD PTR ") {
    return { tables, problems: [`no RSDP signature at 0x${rsdpAddr.toString(16)}`] };
  }
  if (acpiChecksum(rsdp, 0, 20) !== 0) problems.push("RSDP: bad checksum");
  const rv = new DataView(rsdp.buffer, rsdp.byteOffset);
  if (rsdp[15] >= 2) {
    const length = rv.getUint32(20, true);
    if (length !== 36) problems.push(`RSDP: length ${length}, expected 36`);
    else if (acpiChecksum(rsdp, 0, 36) !== 0) problems.push("RSDP: bad extended checksum");
  }
  tables.push({ signature: "RSDP", gpa: rsdpAddr, bytes: rsdp });
  const visited = new Set<number>();
  let totalBytes = 0;
  const readTable = (gpa: number, expect?: string): FoundTable | undefined => {
    if (visited.has(gpa)) return tables.find((t) => t.gpa === gpa);
    visited.add(gpa);
    const head = read(gpa, 8);
    const signature = tableSignature(head);
    const length = new DataView(head.buffer, head.byteOffset).getUint32(4, true);
    if (expect && signature !== expect) {
      problems.push(`${expect} expected at 0x${gpa.toString(16)}, found "${signature}"`);
      return undefined;
    }
    if (length < (signature === "FACS" ? 64 : 36) || length > MAX_TABLE) {
      problems.push(`${signature} at 0x${gpa.toString(16)}: implausible length ${length}`);
      return undefined;
    }
    totalBytes += length;
    if (totalBytes > MAX_TOTAL_BYTES) {
      problems.push(`the tables add up to more than ${MAX_TOTAL_BYTES >> 20} MiB; walk stopped`);
      return undefined;
    }
    const bytes = read(gpa, length);
    if (signature !== "FACS" && acpiChecksum(bytes) !== 0) {
      problems.push(`${signature} at 0x${gpa.toString(16)}: bad checksum`);
    }
    const t = { signature, gpa, bytes };
    tables.push(t);
    return t;
  };
  const xsdtAddr = Number(rv.getBigUint64(24, true));
  const xsdt = xsdtAddr ? readTable(xsdtAddr, "XSDT") : undefined;
  if (!xsdt) {
    if (!xsdtAddr) problems.push("the RSDP has no XSDT address");
    return { tables, problems };
  }
  const xv = new DataView(xsdt.bytes.buffer, xsdt.bytes.byteOffset);
  const entries = Math.floor((xsdt.bytes.length - 36) / 8);
  if (entries > MAX_XSDT_ENTRIES) {
    problems.push(`the XSDT lists ${entries} tables (more than ${MAX_XSDT_ENTRIES}); walk stopped`);
    return { tables, problems };
  }
  for (let i = 36; i + 8 <= xsdt.bytes.length; i += 8) {
    const t = readTable(Number(xv.getBigUint64(i, true)));
    if (t?.signature !== "FACP") continue;
    const fv = new DataView(t.bytes.buffer, t.bytes.byteOffset);
    const facs = t.bytes.length >= 140 && fv.getBigUint64(132, true)
      ? Number(fv.getBigUint64(132, true))
      : fv.getUint32(36, true);
    const dsdt = t.bytes.length >= 148 && fv.getBigUint64(140, true)
      ? Number(fv.getBigUint64(140, true))
      : fv.getUint32(40, true);
    if (facs) {
      readTable(facs, "FACS");
      if (facs % 64 !== 0) problems.push(`FACS at 0x${facs.toString(16)} is not 64-byte aligned`);
    }
    if (dsdt) readTable(dsdt, "DSDT");
    else problems.push("the FADT has no DSDT");
  }
  return { tables, problems };
}

/** The enabled processors a MADT lists (Local APIC and x2APIC entries with the enabled bit). */
export function madtEnabledCpus(madt: Uint8Array): number[] {
  const ids: number[] = [];
  const v = new DataView(madt.buffer, madt.byteOffset, madt.byteLength);
  for (let at = 44; at + 2 <= madt.length;) {
    const type = madt[at];
    const length = madt[at + 1];
    if (length < 2) break;
    if (type === 0 && (v.getUint32(at + 4, true) & 1)) ids.push(madt[at + 3]);
    if (type === 9 && (v.getUint32(at + 8, true) & 1)) ids.push(v.getUint32(at + 4, true));
    at += length;
  }
  return ids;
}
