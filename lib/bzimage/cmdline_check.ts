/** The kernel command line against the kernel's own limit (setup header `cmdline_size`). */
import { InputError } from "../errors.ts";

/**
 * A command line longer than `cmdline_size` is cut by the kernel at boot, silently. This
 * warns (through `notice`) with both lengths, or with `strict` throws.
 */
export function checkCommandLineLength(
  length: number,
  cmdlineSize: number,
  strict: boolean,
  notice?: (message: string) => void,
): void {
  if (length <= cmdlineSize) return;
  const what =
    `-append is ${length} bytes, longer than the kernel's cmdline_size ${cmdlineSize}: the kernel will cut it`;
  if (strict) throw new InputError(what);
  notice?.(`warning: ${what}`);
}
