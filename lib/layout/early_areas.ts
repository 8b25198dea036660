/**
 * `-symbol_elf`: the early boot areas of a bzImage's decompressor, from the symbols of
 * arch/x86/boot/compressed/vmlinux: `boot_stack` as linked, and `pgtable` relocated to
 * the end of init_size (startup_32 builds the page tables at the relocated address).
 */
import type { EarlyArea } from "./bzimage_layout.ts";
import { type Elf64, symbolByName } from "../elf/elf64.ts";

/** The early areas (offsets from pref_address), sorted by offset. */
export function earlyAreasFromSymbols(elf: Elf64, initSize: number): EarlyArea[] {
  const end = symbolByName(elf, "_end").value;
  const stack = symbolByName(elf, "boot_stack");
  const pgtable = symbolByName(elf, "pgtable");
  return [
    { offset: stack.value, size: stack.size },
    { offset: initSize - end + pgtable.value, size: pgtable.size },
  ].sort((a, b) => a.offset - b.offset);
}
