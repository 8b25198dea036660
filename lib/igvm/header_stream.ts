/**
 * Reading an IGVM file's header section from disk in bounded chunks, so that memory follows
 * the headers actually found, not the size the fixed header claims: a hostile file may claim
 * a 4 GiB section of zeros. Reading stops at the first header that cannot be valid.
 */
import { crc32 } from "../bytes/crc32.ts";
import { IGVM_FIXED_HEADER } from "./defs.ts";
import {
  DirectiveCollector,
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
 * Yields the variable headers of `file`, a chunk's worth at a time (the bodies are views into
 * the chunk, valid until the next step). Throws IgvmFormatError at the first header that
 * cannot be valid. When the walk is done, `checksum()` gives the CRC-32 of the header
 * section with the checksum field zero, and `end()` the offset after the last header.
 */
export function headerChunks(file: FileAccess, fixed: Record<string, number>) {
  const start = fixed.VariableHeaderOffset;
  const end = start + fixed.VariableHeaderSize;
  let crc = 0;
  let after = start;
  async function* walk(): AsyncGenerator<RawHeader[]> {
    let crcDone = 0; // bytes [0, crcDone) are in `crc`
    const read = async (offset: number, length: number) => {
      const bytes = await file.readAt(offset, length);
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
      const headers: RawHeader[] = [];
      const next = walkHeaders(chunk, at, at, end, headers);
      if (next === at) {
        // Cannot happen with MAX_HEADER_LENGTH far below the chunk size.
        throw new IgvmFormatError(
          `header at 0x${at.toString(16)} is longer than ${MAX_HEADER_LENGTH} bytes`,
        );
      }
      at = next;
      yield headers;
    }
    after = at;
  }
  return { walk, checksum: () => crc, end: () => after };
}

/**
 * Reads and parses the header section of a file, chunk by chunk. Memory grows with the
 * headers parsed, never with the size the fixed header claims.
 */
export async function readIgvmHeaders(file: FileAccess): Promise<IgvmFile> {
  const fixed = await readFixedHeader(file);
  const section = headerChunks(file, fixed);
  const collector = new DirectiveCollector();
  for await (const headers of section.walk()) collector.add(headers);
  return collector.finish(fixed, file.size, section.checksum(), section.end());
}
