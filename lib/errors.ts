/** The library's error classes; the CLI maps them to exit codes (UsageError 2, others 1). */

/** A bad command line: exit code 2. */
export class UsageError extends Error {
  /** The class name, for messages and logs. */
  override name = "UsageError";
}

/** A bad input file or value, named in the message: exit code 1. */
export class InputError extends Error {
  /** The class name, for messages and logs. */
  override name = "InputError";
}
