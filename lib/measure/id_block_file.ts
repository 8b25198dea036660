/**
 * `igvmgen sign`: adds or replaces the SNP ID block of any SEV-SNP IGVM file. The launch
 * digest is recomputed from the file under a loader model; the new file is the input with
 * the ID block header replaced in place (or appended to the header section, shifting the
 * data section and every file offset that points into it), its policy header set, and the
 * header CRC-32 recomputed.
 */
import { viewOf } from "../bytes/le.ts";
import {
  IGVM_FIXED_HEADER,
  IGVM_VHS_SNP_ID_BLOCK,
  IGVM_VHS_SNP_POLICY,
  IGVM_VHS_VARIABLE_HEADER,
  IGVM_VHT_PAGE_DATA,
  IGVM_VHT_PARAMETER_AREA,
  IGVM_VHT_SNP_ID_BLOCK,
  IGVM_VHT_SNP_POLICY,
  IGVM_VHT_VP_CONTEXT,
  VARIABLE_HEADER_BODIES,
} from "../igvm/defs.ts";
import { headerSectionChecksum, type IgvmFile } from "../igvm/reader.ts";
import { InputError } from "../errors.ts";
import type { FileAccess } from "../io/file_reader.ts";
import { encodeSnpIdBlock } from "./id_block.ts";

import type { IdBlockConfig } from "./tei_config.ts";
import { snpCompatibilityMask } from "../igvm/directives.ts";

/** Where the new file goes: positioned writes. */
export interface SignSink {
  writeAt(offset: number, bytes: Uint8Array): Promise<void>;
}

/** The file's SNP_POLICY value, if it has that header. */
export function filePolicy(headers: IgvmFile): bigint | undefined {
  return headers.directives.find((d) => d.type === IGVM_VHT_SNP_POLICY)?.fields.Policy;
}

/**
 * Refuses a file `sign` cannot rewrite safely: a damaged header section (size, CRC), more
 * than one ID block, or an ID block of the wrong length.
 */
export function checkSignable(headers: IgvmFile, fileSize: number): void {
  snpCompatibilityMask(headers);
  if (headers.fixed.TotalFileSize !== fileSize) {
    throw new InputError(
      `TotalFileSize is ${headers.fixed.TotalFileSize}, the file has ${fileSize} bytes: damaged`,
    );
  }
  const crc = headers.problems.find((p) => p.startsWith("checksum"));
  if (crc) throw new InputError(`the header ${crc}: damaged`);
  const ids = headers.directives.filter((d) => d.type === IGVM_VHT_SNP_ID_BLOCK);
  if (ids.length > 1) throw new InputError(`${ids.length} SNP_ID_BLOCK headers; expected one`);
  if (ids.length === 1 && ids[0].length !== IGVM_VHS_SNP_ID_BLOCK.size) {
    throw new InputError(`the SNP_ID_BLOCK header is ${ids[0].length} bytes, expected 696`);
  }
}

/** The 96-byte ID block the ID key signs, for a digest and the options' fields. */
export function idBlockPayload(launchDigest: Uint8Array, config: IdBlockConfig): Uint8Array {
  return encodeSnpIdBlock(launchDigest, config);
}

/** The fields of a 96-byte payload that are compared with the options. */
export function describePayloadMismatch(
  payload: Uint8Array,
  expected: Uint8Array,
): string | undefined {
  const fields: [string, number, number][] = [
    ["family id", 48, 64],
    ["image id", 64, 80],
    ["version", 80, 84],
    ["guest SVN", 84, 88],
    ["policy", 88, 96],
  ];
  for (const [name, from, to] of fields) {
    const a = payload.subarray(from, to);
    const b = expected.subarray(from, to);
    if (a.some((v, i) => v !== b[i])) {
      const v = viewOf(payload);
      const w = viewOf(expected);
      const show = (x: DataView, bytes: Uint8Array) =>
        to - from === 4
          ? String(x.getUint32(from, true))
          : to - from === 8
          ? "0x" + x.getBigUint64(from, true).toString(16)
          : [...bytes].map((c) => c.toString(16).padStart(2, "0")).join("");
      return `the payload's ${name} ${show(v, a)} differs from the options' ${show(w, b)}`;
    }
  }
  return undefined;
}

const COPY_CHUNK = 4 << 20;

/**
 * Writes `file` into `out` with `idBlockBody` as its ID block and `policy` in its
 * SNP_POLICY header. A file without an SNP_POLICY header gets one (for its SEV-SNP platform,
 * before the first directive), so that the policy the ID block is signed over is the file's;
 * a file without an ID block gets one after its last header. Added headers move the data
 * section and every file offset into it. Returns the new file's size.
 */
export async function rewriteWithIdBlock(
  file: FileAccess,
  headers: IgvmFile,
  idBlockBody: Uint8Array,
  policy: bigint,
  out: SignSink,
): Promise<number> {
  checkSignable(headers, file.size);
  const sectionEnd = headers.fixed.VariableHeaderOffset + headers.fixed.VariableHeaderSize;
  const old = await file.readAt(0, sectionEnd);
  const existing = headers.directives.find((d) => d.type === IGVM_VHT_SNP_ID_BLOCK);
  const policyHeader = headers.directives.find((d) => d.type === IGVM_VHT_SNP_POLICY);
  // Where a new policy header goes (before the first directive), and the bytes each adds.
  const policyAt = policyHeader
    ? sectionEnd
    : (headers.directives.find((d) => d.type >= IGVM_VHT_PARAMETER_AREA)?.offset ?? sectionEnd);
  const policySpan = policyHeader ? 0 : IGVM_VHS_VARIABLE_HEADER.size + IGVM_VHS_SNP_POLICY.size;
  const idSpan = existing ? 0 : IGVM_VHS_VARIABLE_HEADER.size + IGVM_VHS_SNP_ID_BLOCK.size; // 8-aligned
  const delta = policySpan + idSpan;
  /** Where a header of the input is in the new header section. */
  const moved = (offset: number) => offset >= policyAt ? offset + policySpan : offset;
  const head = new Uint8Array(sectionEnd + delta);
  head.set(old.subarray(0, policyAt));
  head.set(old.subarray(policyAt), policyAt + policySpan);
  const v = viewOf(head);
  const body = IGVM_VHS_VARIABLE_HEADER.size;
  if (policyHeader) {
    v.setBigUint64(policyHeader.offset + body + IGVM_VHS_SNP_POLICY.off.Policy, policy, true);
  } else {
    v.setUint32(policyAt, IGVM_VHT_SNP_POLICY, true);
    v.setUint32(policyAt + 4, IGVM_VHS_SNP_POLICY.size, true);
    v.setBigUint64(policyAt + body + IGVM_VHS_SNP_POLICY.off.Policy, policy, true);
    v.setUint32(
      policyAt + body + IGVM_VHS_SNP_POLICY.off.CompatibilityMask,
      snpCompatibilityMask(headers),
      true,
    );
  }
  if (existing) {
    head.set(idBlockBody, moved(existing.offset) + body);
  } else {
    // Appended after the last header.
    const at = sectionEnd + policySpan;
    v.setUint32(at, IGVM_VHT_SNP_ID_BLOCK, true);
    v.setUint32(at + 4, IGVM_VHS_SNP_ID_BLOCK.size, true);
    head.set(idBlockBody, at + body);
  }
  if (delta) {
    // Every file offset into the data section moves.
    for (const d of headers.directives) {
      if (!VARIABLE_HEADER_BODIES.has(d.type)) {
        throw new InputError(
          `header type 0x${d.type.toString(16)} at 0x${
            d.offset.toString(16)
          } is unknown: cannot move the data section to add ${
            existing ? "an SNP_POLICY header" : "an ID block"
          }`,
        );
      }
      if (
        d.type !== IGVM_VHT_PAGE_DATA && d.type !== IGVM_VHT_VP_CONTEXT &&
        d.type !== IGVM_VHT_PARAMETER_AREA
      ) continue;
      const at = moved(d.offset) + body + 0x0c; // FileOffset in all three
      const offset = v.getUint32(at, true);
      if (offset !== 0) v.setUint32(at, offset + delta, true);
    }
    const total = file.size + delta;
    if (total > 0xffff_ffff) throw new InputError("the signed file would exceed 4 GiB");
    v.setUint32(
      IGVM_FIXED_HEADER.off.VariableHeaderSize,
      headers.fixed.VariableHeaderSize + delta,
      true,
    );
    v.setUint32(IGVM_FIXED_HEADER.off.TotalFileSize, total, true);
  }
  v.setUint32(IGVM_FIXED_HEADER.off.Checksum, headerSectionChecksum(head, head.length), true);
  await out.writeAt(0, head);
  const buf = new Uint8Array(COPY_CHUNK);
  for (let at = sectionEnd; at < file.size; at += COPY_CHUNK) {
    const chunk = await file.readAt(at, Math.min(COPY_CHUNK, file.size - at), buf);
    await out.writeAt(at + delta, chunk);
  }
  return file.size + delta;
}

/**
 * Replaces the body of the file's ID block header in place (same size) and updates the
 * header CRC: only the header section is written.
 */
export async function rewriteIdBlockInPlace(
  file: FileAccess,
  headers: IgvmFile,
  idBlockBody: Uint8Array,
  out: SignSink,
): Promise<void> {
  checkSignable(headers, file.size);
  const existing = headers.directives.find((d) => d.type === IGVM_VHT_SNP_ID_BLOCK);
  if (!existing) throw new InputError("no SNP_ID_BLOCK header to replace");
  const sectionEnd = headers.fixed.VariableHeaderOffset + headers.fixed.VariableHeaderSize;
  const head = (await file.readAt(0, sectionEnd)).slice();
  head.set(idBlockBody, existing.offset + IGVM_VHS_VARIABLE_HEADER.size);
  viewOf(head).setUint32(
    IGVM_FIXED_HEADER.off.Checksum,
    headerSectionChecksum(head, head.length),
    true,
  );
  await out.writeAt(0, head);
}
