/**
 * `-d FILE`: the original igvmgen's text dump of an IGVM file, line for line: the fixed
 * header, each variable header with its offset, and the VMSA of each VP_CONTEXT.
 */
import { type Layout, readScalar } from "../bytes/layout.ts";
import { hex } from "../bytes/le.ts";
import {
  IGVM_FIXED_HEADER,
  IGVM_MAGIC_VALUE,
  IGVM_VHS_VARIABLE_HEADER,
  IGVM_VHS_VP_CONTEXT,
  IGVM_VHT_VP_CONTEXT,
  VARIABLE_HEADER_BODIES,
} from "./defs.ts";
import { VMCB_SAVE_AREA } from "../x86/vmsa.ts";
import { IgvmFormatError } from "./reader.ts";

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

/** Produces the dump text (with the trailing newline `print` added). */
export async function dumpIgvm(readAt: ReadAt, fileSize: number): Promise<string> {
  const need = async (offset: number, length: number, what: string) => {
    if (offset + length > fileSize) {
      throw new IgvmFormatError(
        `truncated: ${what} at 0x${offset.toString(16)} runs past the end (${fileSize} bytes)`,
      );
    }
    const bytes = await readAt(offset, length);
    return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
  const fixed = await need(0, IGVM_FIXED_HEADER.size, "the fixed header");
  if (fixed.getUint32(IGVM_FIXED_HEADER.off.Magic, true) !== IGVM_MAGIC_VALUE) {
    throw new IgvmFormatError(`no IGVM magic: not an IGVM file`);
  }
  const lines = [dumpStruct(IGVM_FIXED_HEADER, fixed, 0)];
  const start = fixed.getUint32(IGVM_FIXED_HEADER.off.VariableHeaderOffset, true);
  const size = fixed.getUint32(IGVM_FIXED_HEADER.off.VariableHeaderSize, true);
  const section = await need(start, size, "the variable headers");
  let offset = start;
  while (offset < start + size) {
    const rel = offset - start;
    if (rel + IGVM_VHS_VARIABLE_HEADER.size > size) {
      throw new IgvmFormatError(
        `variable header at 0x${offset.toString(16)} runs past the header section`,
      );
    }
    const type = section.getUint32(rel + IGVM_VHS_VARIABLE_HEADER.off.Type, true);
    const length = section.getUint32(rel + IGVM_VHS_VARIABLE_HEADER.off.Length, true);
    const known = VARIABLE_HEADER_BODIES.get(type);
    const off = offset.toString(16).padStart(2, "0");
    if (known) {
      if (rel + IGVM_VHS_VARIABLE_HEADER.size + known.body.size > size) {
        throw new IgvmFormatError(
          `${known.name} at 0x${offset.toString(16)} runs past the header section`,
        );
      }
      lines.push(
        `${known.name}(${off})` +
          dumpStruct(known.body, section, rel + IGVM_VHS_VARIABLE_HEADER.size),
      );
    } else {
      lines.push(dumpStruct(IGVM_VHS_VARIABLE_HEADER, section, rel) + `(${off})`);
    }
    if (type === IGVM_VHT_VP_CONTEXT) {
      const bodyAt = rel + IGVM_VHS_VARIABLE_HEADER.size;
      const fileOffset = section.getUint32(bodyAt + IGVM_VHS_VP_CONTEXT.off.FileOffset, true);
      const vmsa = await need(fileOffset, VMCB_SAVE_AREA.size, "the VMSA page");
      lines.push(
        `IGVM_VHT_VP_CONTEXT(${off})` + dumpStruct(IGVM_VHS_VP_CONTEXT, section, bodyAt) +
          dumpStruct(VMCB_SAVE_AREA, vmsa, 0),
      );
    }
    offset += IGVM_VHS_VARIABLE_HEADER.size + length;
    offset = Math.ceil(offset / 8) * 8;
  }
  return lines.join("\n") + "\n";
}
