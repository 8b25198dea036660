/** Operating-system errors in words, for one-line messages. */
import { InputError } from "../errors.ts";

/** The reason of an OS error in words: "No space left on device (os error 28)" -> "no space left on device". */
function osReason(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  const reason = message.replace(/\s*\(os error \d+\)/, "").replace(
    /:\s*(write|open|rename|seek|fsync).*$/,
    "",
  );
  return reason.charAt(0).toLowerCase() + reason.slice(1);
}

/** The errors made by `writeError`, so a second call passes them on unchanged. */
const writeErrors = new WeakSet<Error>();

/** True for an error of `writeError`. */
export function isWriteError(e: unknown): boolean {
  return e instanceof Error && writeErrors.has(e);
}

/**
 * `cannot write NAME: REASON`, one line (the OS error's own stack says nothing more). A
 * failed write is a plain `Error`, not an `InputError`: the inputs were fine.
 */
export function writeError(name: string, e: unknown): Error {
  if (e instanceof InputError || isWriteError(e)) return e as Error;
  const error = new Error(`cannot write ${name}: ${osReason(e)}`);
  writeErrors.add(error);
  return error;
}
