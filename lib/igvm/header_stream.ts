/**
 * Reading an IGVM file's header section from disk in bounded chunks, so that memory follows
 * the headers actually found, not the size the fixed header claims: a hostile file may claim
 * a 4 GiB section of zeros. Reading stops at the first header that cannot be valid.
 */
import { crc32 } from "../bytes/crc32.ts";
import { IGVM_FIXED_HEADER } from "./defs.ts";
import {
  DirectiveCollector,
  type HeaderVisitor,
  type IgvmFile,
  IgvmFormatError,
  MAX_HEADER_LENGTH,
  parseFixedHeader,
  type RawHeader,
  walkHeaders,
} from "./reader.ts";
import type { FileAccess } from "../io/file_reader.ts";

/** Bytes of the header section read at once; larger than any valid header. */
const SECTION_CHUNK = 1 << 20;

/** Reads and checks the fixed header of a file. */
async function readFixedHeader(file: FileAccess): Promise<Record<string, number>> {
  return parseFixedHeader(await file.readAt(0, IGVM_FIXED_HEADER.size), file.size);
}

/**
 * Walks the variable headers of `file` a chunk at a time. `visit(v)` hands every header to
 * `v` (bodies are views into the chunk, valid during the call); `walk()` yields each chunk's
 * headers as RawHeaders (valid until the next step). Both throw IgvmFormatError at the first
 * header that cannot be valid. When the walk is done, `checksum()` gives the CRC-32 of the
 * header section with the checksum field zero, and `end()` the offset after the last header.
 */
export function headerChunks(file: FileAccess, fixed: Record<string, number>) {
  const start = fixed.VariableHeaderOffset;
  const end = start + fixed.VariableHeaderSize;
  let crc = 0;
  let after = start;
  /** Reads the section chunk by chunk, handing each header to `visit`; yields per chunk. */
  async function* chunks(visit: HeaderVisitor): AsyncGenerator<void> {
    let crcDone = 0; // bytes [0, crcDone) are in `crc`
    let buffer: Uint8Array | undefined; // one chunk's bytes, reused for the next chunk
    const read = async (offset: number, length: number) => {
      buffer ??= new Uint8Array(Math.min(SECTION_CHUNK, end));
      const bytes = await file.readAt(offset, length, buffer);
      if (bytes.length !== length) {
        throw new IgvmFormatError(`truncated: the header section ends past the end of the file`);
      }
      if (offset + length > crcDone) {
        let fresh = bytes.subarray(crcDone - offset);
        if (crcDone === 0) {
          // The checksum field counts as zero.
          fresh = fresh.slice();
          fresh.fill(0, IGVM_FIXED_HEADER.off.Checksum, IGVM_FIXED_HEADER.off.Checksum + 4);
        }
        crc = crc32(fresh, crc) >>> 0;
        crcDone = offset + length;
      }
      return bytes;
    };
    while (crcDone < start) await read(crcDone, Math.min(SECTION_CHUNK, start - crcDone));
    let at = start;
    while (at < end) {
      const chunk = await read(at, Math.min(SECTION_CHUNK, end - at));
      const next = walkHeaders(chunk, at, at, end, visit);
      if (next === at) {
        // Cannot happen with MAX_HEADER_LENGTH far below the chunk size.
        throw new IgvmFormatError(
          `header at 0x${at.toString(16)} is longer than ${MAX_HEADER_LENGTH} bytes`,
        );
      }
      at = next;
      yield;
    }
    after = at;
  }
  async function* walk(): AsyncGenerator<RawHeader[]> {
    let headers: RawHeader[] = [];
    const collect: HeaderVisitor = (type, offset, length, chunk, bodyAt) =>
      headers.push({
        type,
        offset,
        length,
        body: new Uint8Array(chunk.buffer, chunk.byteOffset + bodyAt, length),
      });
    for await (const _ of chunks(collect)) {
      yield headers;
      headers = [];
    }
  }
  async function visit(v: HeaderVisitor): Promise<void> {
    for await (const _ of chunks(v));
  }
  return { walk, visit, checksum: () => crc, end: () => after };
}

/**
 * Reads and parses the header section of a file, chunk by chunk. Memory grows with the
 * headers parsed, never with the size the fixed header claims.
 */
export async function readIgvmHeaders(file: FileAccess): Promise<IgvmFile> {
  const fixed = await readFixedHeader(file);
  const section = headerChunks(file, fixed);
  const collector = new DirectiveCollector();
  await section.visit(collector.visit);
  return collector.finish(fixed, file.size, section.checksum(), section.end());
}
