/** Operating-system errors in words, for one-line messages. */
import { InputError } from "../errors.ts";

/** The reason of an OS error in words: "No space left on device (os error 28)" -> "no space left on device". */
export function osReason(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  const reason = message.replace(/\s*\(os error \d+\)/, "").replace(
    /:\s*(write|open|rename|seek|fsync).*$/,
    "",
  );
  return reason.charAt(0).toLowerCase() + reason.slice(1);
}

/** `cannot write NAME: REASON`, one line (the OS error's own stack says nothing more). */
export function writeError(name: string, e: unknown): InputError {
  if (e instanceof InputError) return e;
  return new InputError(`cannot write ${name}: ${osReason(e)}`);
}
