/**
 * Reading a zip archive of ACPI tables with bounds: the central directory's declared sizes
 * are checked against a per-entry and a total cap before anything is inflated, and each
 * entry is inflated in small steps that stop as soon as it passes its declared size (a
 * lying header cannot make it inflate more). Inflation is the web-standard
 * DecompressionStream ("deflate-raw"). Stored (0) and deflated (8) entries are read;
 * encrypted and zip64 archives are not (ACPI tables never need them).
 */

import { inflateBounded, InflateLimitError } from "./inflate.ts";

/** A zip archive that cannot be read, or that is larger than the caps allow. */
export class ZipError extends Error {
  override name = "ZipError";
}

/** Caps on what an archive may hold once inflated. */
export interface ZipLimits {
  /** The largest entry, in bytes. */
  entryBytes: number;
  /** All the read entries together, in bytes. */
  totalBytes: number;
}

/** Caps for archives of ACPI tables: no table comes near them. */
export const ACPI_ZIP_LIMITS: ZipLimits = { entryBytes: 8 << 20, totalBytes: 32 << 20 };

/** One entry of the central directory. */
interface ZipEntry {
  name: string;
  method: number;
  flags: number;
  compressedSize: number;
  size: number;
  localHeader: number;
}

const EOCD_SIGNATURE = 0x0605_4b50;
const CENTRAL_SIGNATURE = 0x0201_4b50;
const LOCAL_SIGNATURE = 0x0403_4b50;
const ZIP64_MARK = 0xffff_ffff;

/** Reads the central directory: the entries' names, methods, sizes and offsets. */
function readCentralDirectory(bytes: Uint8Array): ZipEntry[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // The end record is in the last 22 + 65535 (comment) bytes.
  let eocd = -1;
  for (let at = bytes.length - 22; at >= 0 && at >= bytes.length - 22 - 0xffff; at--) {
    if (v.getUint32(at, true) === EOCD_SIGNATURE) {
      eocd = at;
      break;
    }
  }
  if (eocd < 0) throw new ZipError("no end of central directory record");
  const count = v.getUint16(eocd + 10, true);
  const dirSize = v.getUint32(eocd + 12, true);
  const dirOffset = v.getUint32(eocd + 16, true);
  if (count === 0xffff || dirOffset === ZIP64_MARK || dirSize === ZIP64_MARK) {
    throw new ZipError("a zip64 archive (not supported for ACPI tables)");
  }
  if (dirOffset + dirSize > eocd) throw new ZipError("the central directory runs past its end");
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const entries: ZipEntry[] = [];
  let at = dirOffset;
  for (let i = 0; i < count; i++) {
    if (at + 46 > eocd || v.getUint32(at, true) !== CENTRAL_SIGNATURE) {
      throw new ZipError(`central directory entry ${i} is damaged`);
    }
    const flags = v.getUint16(at + 8, true);
    const nameLength = v.getUint16(at + 28, true);
    const next = at + 46 + nameLength + v.getUint16(at + 30, true) + v.getUint16(at + 32, true);
    if (next > eocd) throw new ZipError(`central directory entry ${i} runs past its end`);
    const rawName = bytes.subarray(at + 46, at + 46 + nameLength);
    let name: string;
    try {
      // Bit 11: UTF-8 names; otherwise one byte per character.
      name = flags & 0x800 ? decoder.decode(rawName) : String.fromCharCode(...rawName);
    } catch {
      throw new ZipError(`central directory entry ${i}: the name is not valid UTF-8`);
    }
    entries.push({
      name,
      flags,
      method: v.getUint16(at + 10, true),
      compressedSize: v.getUint32(at + 20, true),
      size: v.getUint32(at + 24, true),
      localHeader: v.getUint32(at + 42, true),
    });
    at = next;
  }
  return entries;
}

/** Inflates raw DEFLATE data, refusing to produce more than `limit` bytes. */
async function inflateEntry(data: Uint8Array, limit: number, what: string): Promise<Uint8Array> {
  try {
    return await inflateBounded(data, "deflate-raw", limit);
  } catch (e) {
    if (e instanceof InflateLimitError) {
      throw new ZipError(`${what} inflates to more than its declared ${limit} bytes`);
    }
    throw new ZipError(`${what}: bad compressed data: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Reads the entries of a zip archive whose names `wanted` accepts, in directory order. The
 * declared sizes of the wanted entries are checked against `limits` before any is inflated;
 * each entry must then inflate to exactly its declared size.
 */
export async function readZipEntries(
  bytes: Uint8Array,
  wanted: (name: string) => boolean,
  limits: ZipLimits = ACPI_ZIP_LIMITS,
): Promise<{ name: string; bytes: Uint8Array }[]> {
  const entries = readCentralDirectory(bytes).filter((e) =>
    !e.name.endsWith("/") && wanted(e.name)
  );
  let total = 0;
  for (const e of entries) {
    if (e.size > limits.entryBytes) {
      throw new ZipError(
        `${e.name} declares ${e.size} bytes, more than the ${limits.entryBytes} allowed per entry`,
      );
    }
    total += e.size;
    if (total > limits.totalBytes) {
      throw new ZipError(
        `the entries declare more than the ${limits.totalBytes} bytes allowed in all`,
      );
    }
    if (e.flags & 1) throw new ZipError(`${e.name} is encrypted`);
    if (e.method !== 0 && e.method !== 8) {
      throw new ZipError(`${e.name}: compression method ${e.method} (only 0 and 8 are read)`);
    }
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: { name: string; bytes: Uint8Array }[] = [];
  for (const e of entries) {
    const at = e.localHeader;
    if (at + 30 > bytes.length || v.getUint32(at, true) !== LOCAL_SIGNATURE) {
      throw new ZipError(`${e.name}: no local header at ${at}`);
    }
    const dataAt = at + 30 + v.getUint16(at + 26, true) + v.getUint16(at + 28, true);
    if (dataAt + e.compressedSize > bytes.length) {
      throw new ZipError(`${e.name}: the data runs past the end of the archive`);
    }
    const data = bytes.subarray(dataAt, dataAt + e.compressedSize);
    const content = e.method === 0 ? data.slice() : await inflateEntry(data, e.size, e.name);
    if (content.length !== e.size) {
      throw new ZipError(`${e.name}: ${content.length} bytes, the directory says ${e.size}`);
    }
    out.push({ name: e.name, bytes: content });
  }
  return out;
}
