/**
 * Termination signals: on SIGINT, SIGTERM or SIGHUP the run's temporary and spool files are
 * removed (an existing output is never touched: it is replaced only by a rename at the end).
 * The CLI decides what to print and exits; nothing here exits the process.
 */
import { removeTempsSync } from "./temp_files.ts";

/** Commits under way, and the signal that arrived during one (acted on when they end). */
let committing = 0;
let deferred: (() => void) | undefined;

/**
 * Runs `commit` (the renames that put a run's outputs in place) with termination signals
 * held: a signal that arrives meanwhile takes effect when it ends, so a run's outputs never
 * appear in part.
 */
export async function withSignalsHeld<T>(commit: () => Promise<T>): Promise<T> {
  committing++;
  try {
    return await commit();
  } finally {
    committing--;
    if (committing === 0 && deferred) {
      const act = deferred;
      deferred = undefined;
      act();
    }
  }
}

/** The signals handled, with the shell's exit status for each (128 + signal number). */
const TERMINATION_SIGNALS = [
  { signal: "SIGINT", exitCode: 130 },
  { signal: "SIGTERM", exitCode: 143 },
  { signal: "SIGHUP", exitCode: 129 },
] as const;

/**
 * Installs the handlers: on a signal, temporary files are removed, then `then(signal, code)`
 * runs (the CLI prints one line and exits with `code`). Returns a function that uninstalls
 * them. Signals the platform does not support (Windows has no SIGTERM or SIGHUP) are skipped.
 */
export function onTerminationSignal(
  then: (signal: Deno.Signal, exitCode: number) => void,
): () => void {
  const installed: [Deno.Signal, () => void][] = [];
  for (const { signal, exitCode } of TERMINATION_SIGNALS) {
    const handler = () => {
      const act = () => {
        removeTempsSync();
        then(signal, exitCode);
      };
      // During a commit (renames into place) the signal waits for it to end, so that the
      // outputs of a run appear all together or not at all.
      if (committing > 0) deferred ??= act;
      else act();
    };
    try {
      Deno.addSignalListener(signal, handler);
      installed.push([signal, handler]);
    } catch { /* not supported on this platform */ }
  }
  return () => {
    for (const [signal, handler] of installed) Deno.removeSignalListener(signal, handler);
  };
}
