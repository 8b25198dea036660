/**
 * Termination signals: on SIGINT, SIGTERM or SIGHUP the run's child processes (iasl) are
 * killed and waited for, then its temporary and spool files are removed (an existing output
 * is never touched: it is replaced only by a rename at the end).
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

/** Child processes under way (iasl), killed when a termination signal arrives. */
const children = new Set<Deno.ChildProcess>();

/** How long a killed child is waited for before the files are removed regardless. */
const CHILD_WAIT_MS = 2000;

/**
 * Tracks `child` until the returned function is called: a termination signal kills it and
 * waits for it to end before removing temporary files (it may be writing into one).
 */
export function trackChildProcess(child: Deno.ChildProcess): () => void {
  children.add(child);
  return () => children.delete(child);
}

/** Kills the tracked children and waits (at most CHILD_WAIT_MS) until they have ended. */
async function stopChildren(): Promise<void> {
  if (children.size === 0) return;
  const ended: Promise<unknown>[] = [];
  for (const child of children) {
    try {
      child.kill("SIGKILL");
    } catch { /* already ended */ }
    ended.push(child.status.catch(() => undefined));
  }
  children.clear();
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.all(ended),
    new Promise((resolve) => timer = setTimeout(resolve, CHILD_WAIT_MS)),
  ]);
  clearTimeout(timer);
}

/** The signals handled, with the shell's exit status for each (128 + signal number). */
const TERMINATION_SIGNALS = [
  { signal: "SIGINT", exitCode: 130 },
  { signal: "SIGTERM", exitCode: 143 },
  { signal: "SIGHUP", exitCode: 129 },
] as const;

/**
 * Installs the handlers: on a signal, child processes are killed and temporary files are
 * removed, then `then(signal, code)`
 * runs (the CLI prints one line and exits with `code`). Returns a function that uninstalls
 * them. Signals the platform does not support (Windows has no SIGTERM or SIGHUP) are skipped.
 */
export function onTerminationSignal(
  then: (signal: Deno.Signal, exitCode: number) => void,
): () => void {
  const installed: [Deno.Signal, () => void][] = [];
  for (const { signal, exitCode } of TERMINATION_SIGNALS) {
    const handler = () => {
      const act = async () => {
        await stopChildren();
        removeTempsSync();
        then(signal, exitCode);
      };
      // During a commit (renames into place) the signal waits for it to end, so that the
      // outputs of a run appear all together or not at all.
      if (committing > 0) deferred ??= () => void act();
      else void act();
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
