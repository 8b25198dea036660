/**
 * `-d FILE`: the original igvmgen's text dump of an IGVM file, line for line: the fixed
 * header, each variable header with its offset, and the VMSA of each VP_CONTEXT.
 */
import { type Layout, readScalar } from "../bytes/layout.ts";
import { hex, viewOf } from "../bytes/le.ts";
import {
  IGVM_FIXED_HEADER,
  IGVM_VHS_VARIABLE_HEADER,
  IGVM_VHS_VP_CONTEXT,
  IGVM_VHT_VP_CONTEXT,
  VARIABLE_HEADER_BODIES,
} from "./defs.ts";
import { VMCB_SAVE_AREA } from "../x86/vmsa.ts";
import { IgvmFormatError, parseFixedHeader } from "./reader.ts";
import { type FileAccess, openFileAccess } from "../io/file_reader.ts";
import { headerChunks } from "./header_stream.ts";

export { IgvmFormatError };

/** Renders a structure as Python ctypes `dumps()` did: `{ name:0x.. name:[..] sub: { .. } }`. */
export function dumpStruct(layout: Layout, view: DataView, base: number): string {
  const parts = ["{"];
  if (layout.kind === "bitfield") {
    const unit = view.getBigUint64(base, true);
    for (const [name, bit, type] of layout.fields) {
      const width = BigInt((type as { bits: number }).bits);
      parts.push(`${name}:${hex((unit >> BigInt(bit)) & ((1n << width) - 1n))}`);
    }
  } else {
    for (const [name, offset, type] of layout.fields) {
      const at = base + offset;
      if (typeof type === "string") parts.push(`${name}:${hex(readScalar(view, at, type))}`);
      else if ("bytes" in type) {
        const items: number[] = [];
        for (let i = 0; i < type.bytes; i++) items.push(view.getUint8(at + i));
        parts.push(`${name}:[${items.join(", ")}]`);
      } else if ("struct" in type) parts.push(`${name}:`, dumpStruct(type.struct, view, at));
      else throw new Error(`${layout.name}.${name}: a bit field outside a bit-field layout`);
    }
  }
  parts.push("}");
  return parts.join(" ");
}

/** Random access to a file's bytes. */
export type ReadAt = (offset: number, length: number) => Promise<Uint8Array>;

/**
 * Produces the dump line by line, in the original's format, and hands each to `emit` (awaited,
 * so a slow or closed output holds or stops the dump). The header section is read in bounded
 * chunks; the dump stops with an IgvmFormatError at the first header that cannot be valid.
 */
async function dumpIgvmLines(
  file: FileAccess,
  emit: (line: string) => void | Promise<void>,
): Promise<void> {
  const need = async (offset: number, length: number, what: string) => {
    if (offset + length > file.size) {
      throw new IgvmFormatError(
        `truncated: ${what} at 0x${offset.toString(16)} runs past the end (${file.size} bytes)`,
      );
    }
    const bytes = await file.readAt(offset, length);
    return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
  const head = await file.readAt(0, IGVM_FIXED_HEADER.size);
  const fixed = parseFixedHeader(head, file.size);
  await emit(dumpStruct(IGVM_FIXED_HEADER, viewOf(head), 0));
  for await (const headers of headerChunks(file, fixed).walk()) {
    for (const h of headers) {
      const known = VARIABLE_HEADER_BODIES.get(h.type);
      const off = h.offset.toString(16).padStart(2, "0");
      const body = new DataView(h.body.buffer, h.body.byteOffset, h.body.byteLength);
      if (known) await emit(`${known.name}(${off})` + dumpStruct(known.body, body, 0));
      else {
        const generic = new DataView(new ArrayBuffer(IGVM_VHS_VARIABLE_HEADER.size));
        generic.setUint32(IGVM_VHS_VARIABLE_HEADER.off.Type, h.type, true);
        generic.setUint32(IGVM_VHS_VARIABLE_HEADER.off.Length, h.length, true);
        await emit(dumpStruct(IGVM_VHS_VARIABLE_HEADER, generic, 0) + `(${off})`);
      }
      if (h.type === IGVM_VHT_VP_CONTEXT) {
        const fileOffset = body.getUint32(IGVM_VHS_VP_CONTEXT.off.FileOffset, true);
        const vmsa = await need(fileOffset, VMCB_SAVE_AREA.size, "the VMSA page");
        await emit(
          `IGVM_VHT_VP_CONTEXT(${off})` + dumpStruct(IGVM_VHS_VP_CONTEXT, body, 0) +
            dumpStruct(VMCB_SAVE_AREA, vmsa, 0),
        );
      }
    }
  }
}

/** Produces the whole dump text (with the trailing newline `print` added): for small files. */
export async function dumpIgvm(readAt: ReadAt, fileSize: number): Promise<string> {
  const lines: string[] = [];
  await dumpIgvmLines({ size: fileSize, readAt }, (line) => {
    lines.push(line);
  });
  return lines.join("\n") + "\n";
}

/**
 * Dumps an IGVM file on disk to `emit`, line by line. Memory stays bounded whatever the
 * file's size: nothing is held but a chunk of the header section.
 */
export async function dumpIgvmFile(
  path: string,
  emit: (line: string) => void | Promise<void>,
): Promise<void> {
  const file = await openFileAccess(path);
  try {
    await dumpIgvmLines(file, emit);
  } finally {
    file.close();
  }
}
