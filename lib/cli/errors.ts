/** The one error sink's formatting: one line, or the whole chain when verbose. */

/** The one line the sink prints for an error, with its causes' messages when they add any. */
export function describeError(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  let text = e.message;
  let cause = e.cause;
  while (cause instanceof Error) {
    if (!text.includes(cause.message)) text += `: ${cause.message}`;
    cause = cause.cause;
  }
  return text.replace(/\s*\n\s*/g, " ");
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
