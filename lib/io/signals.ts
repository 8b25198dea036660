/**
 * Termination signals: on SIGINT, SIGTERM or SIGHUP the run's temporary and spool files are
 * removed (an existing output is never touched: it is replaced only by a rename at the end).
 * The CLI decides what to print and exits; nothing here exits the process.
 */
import { removeTempsSync } from "./temp_files.ts";

/** The signals handled, with the shell's exit status for each (128 + signal number). */
export const TERMINATION_SIGNALS = [
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
      removeTempsSync();
      then(signal, exitCode);
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
