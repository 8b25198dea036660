/**
 * Command-line text that was not valid UTF-8. Deno decodes the arguments before igvmgen
 * sees them and turns every invalid byte sequence into U+FFFD, so the original bytes are
 * gone: a path would name a different file, and `-append` would put other bytes in the
 * guest. An argument holding U+FFFD is refused (a genuine U+FFFD cannot be told apart).
 */
import { UsageError } from "../errors.ts";

const REPLACEMENT = "\uFFFD";

/** Throws a UsageError naming the first argument (or its option) that holds U+FFFD. */
export function checkArgsEncoding(args: readonly string[]): void {
  const i = args.findIndex((a) => a.includes(REPLACEMENT));
  if (i < 0) return;
  const arg = args[i];
  const eq = arg.indexOf("=");
  let where: string;
  if (arg.startsWith("-") && eq > 0 && !arg.slice(0, eq).includes(REPLACEMENT)) {
    where = `the value of ${arg.slice(0, eq).replace(/^--?/, "-")}`;
  } else if (i > 0 && /^--?[A-Za-z]/.test(args[i - 1]) && !args[i - 1].includes("=")) {
    where = `the value of ${args[i - 1].replace(/^--?/, "-")}`;
  } else {
    where = `argument ${i + 1}`;
  }
  throw new UsageError(
    `${where} is not valid UTF-8 (its bytes arrived as U+FFFD); igvmgen will not guess a file name or command line`,
  );
}
