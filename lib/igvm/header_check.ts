/**
 * The light check of a header section that generation runs on every file it writes before
 * committing it: no directive objects, constant memory per header. Apart from the reader
 * (which re-exports it) so that generation loads the layouts only.
 */
import { crc32 } from "../bytes/crc32.ts";
import {
  IGVM_FIXED_HEADER,
  IGVM_MAGIC_VALUE,
  IGVM_VHT_PAGE_DATA,
  IGVM_VHT_PARAMETER_INSERT,
  IGVM_VHT_VP_CONTEXT,
  VARIABLE_HEADER_BODIES,
} from "./defs.ts";

/** CRC-32 of the header section `head[0, end)` with the fixed header's checksum field zero. */
export function headerSectionChecksum(head: Uint8Array, end: number): number {
  const section = head.slice(0, end);
  new DataView(section.buffer).setUint32(IGVM_FIXED_HEADER.off.Checksum, 0, true);
  return crc32(section);
}

/** The outcome of the light structural check. */
export interface HeaderSectionCheck {
  problems: string[];
  /** PAGE_DATA, VP_CONTEXT and PARAMETER_INSERT headers: one per guest page. */
  pageHeaders: number;
}

/**
 * Checks a header section without building directive objects (constant memory per header):
 * magic, sizes, CRC-32, known types with exact lengths, 8-byte steps. Used to check every
 * file igvmgen writes before it is committed.
 */
export function checkHeaderSection(head: Uint8Array, fileSize: number): HeaderSectionCheck {
  const problems: string[] = [];
  const v = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (head.length < IGVM_FIXED_HEADER.size || v.getUint32(0, true) !== IGVM_MAGIC_VALUE) {
    return { problems: ["no IGVM fixed header"], pageHeaders: 0 };
  }
  const start = v.getUint32(IGVM_FIXED_HEADER.off.VariableHeaderOffset, true);
  const end = start + v.getUint32(IGVM_FIXED_HEADER.off.VariableHeaderSize, true);
  if (end > head.length) return { problems: ["the header section is truncated"], pageHeaders: 0 };
  if (v.getUint32(IGVM_FIXED_HEADER.off.TotalFileSize, true) !== fileSize) {
    problems.push("TotalFileSize differs from the file size");
  }
  const stored = v.getUint32(IGVM_FIXED_HEADER.off.Checksum, true);
  if (headerSectionChecksum(head, end) !== stored) problems.push("header checksum mismatch");
  let pageHeaders = 0;
  let at = start;
  while (at < end) {
    if (at + 8 > end) {
      problems.push(`header at 0x${at.toString(16)} runs past the section`);
      break;
    }
    const type = v.getUint32(at, true);
    const length = v.getUint32(at + 4, true);
    const known = VARIABLE_HEADER_BODIES.get(type);
    if (!known || known.body.size !== length) {
      problems.push(
        `header at 0x${at.toString(16)}: type 0x${type.toString(16)} with length ${length}`,
      );
      break;
    }
    if (
      type === IGVM_VHT_PAGE_DATA || type === IGVM_VHT_VP_CONTEXT ||
      type === IGVM_VHT_PARAMETER_INSERT
    ) pageHeaders++;
    at = Math.ceil((at + 8 + length) / 8) * 8;
  }
  return { problems, pageHeaders };
}
