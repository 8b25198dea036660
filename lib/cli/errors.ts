/** The one error sink's formatting: one line, or the whole chain when verbose. */

/**
 * The one line the sink prints for an error, with its causes' messages when they add any.
 * The runtime's wording is made plain: no `(os error 2): stat 'x'` tail, and no advice to
 * rerun with more permissions where the input simply has to be a file.
 */
export function describeError(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  let text = plainMessage(e.message);
  let cause = e.cause;
  while (cause instanceof Error) {
    const more = plainMessage(cause.message, text);
    if (!text.includes(more)) text += `: ${more}`;
    cause = cause.cause;
  }
  return printable(text.replace(/\s*\n\s*/g, " "));
}

// deno-lint-ignore no-control-regex
const CONTROL_CHARACTERS = /[\x00-\x08\x0b-\x1f\x7f]/g;

/**
 * The text with control characters other than tab and newline escaped (`\x1b`, `\x00`):
 * bytes from a hostile input (a table signature, a file name) never reach the terminal raw.
 */
export function printable(text: string): string {
  return text.replace(
    CONTROL_CHARACTERS,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
}

/** An OS or permission message from the runtime, in the words a user needs. */
function plainMessage(message: string, known = ""): string {
  const access =
    /[Rr]equires (all|read|write) access to "([^"]+)", run again with the --allow-\S+ flag/
      .exec(message);
  if (access) {
    const [, kind, path] = access;
    return kind === "read"
      ? `cannot open ${path} with igvmgen's permissions: give a regular file (standard input is read only as the kernel, -rdinit, -shared_payload or -vmpl2_kernel)`
      : `cannot open ${path} with igvmgen's permissions: give a regular file, or - for standard output and redirect it`;
  }
  // "No such file or directory (os error 2): stat 'x'": the path stays unless already said.
  return message.replace(
    / \(os error \d+\)(?:: [a-z_]+ '([^']*)'(?: -> '[^']*')?)?/g,
    (_, path: string | undefined, offset: number) =>
      path && !(known + message.slice(0, offset)).includes(path) ? `: ${path}` : "",
  );
}

/** The full chain with stacks, for `-l DEBUG` / `--verbose`. */
export function describeErrorVerbose(e: unknown): string {
  const out: string[] = [];
  let cur: unknown = e;
  while (cur instanceof Error) {
    out.push(cur.stack ?? cur.message);
    cur = cur.cause;
  }
  if (cur !== undefined && cur !== e) out.push(String(cur));
  return out.join("\ncaused by: ");
}
