/**
 * What standard output is, for a run that writes to it. When a program starts with
 * standard output closed, the runtime reopens descriptor 1 on /dev/null (read-write) before
 * any code runs, so writes "succeed" into nothing. igvmgen tells that apart where the
 * runtime lets it: /proc/self/fdinfo/1 (the open flags) and /proc/self/fd/1 (the file) need
 * all permissions. With narrower ones it can still see, through the descriptor itself, that
 * standard output is the null device, but not whether the shell put it there (`>/dev/null`)
 * or closed it (`>&-`). Files are compared by device AND inode: an inode number alone is
 * shared by files on other file systems.
 */

/**
 * `open`: a terminal, a pipe, a file; `closed`: closed at start-up; `null-device`: /dev/null,
 * closed or redirected there, which cannot be told with the permissions given.
 */
export type StdoutState = "open" | "closed" | "null-device";

/** True when `a` and `b` are the same file: same device and same inode. */
function sameFile(
  a: { dev: number | null; ino: number | null },
  b: { dev: number | null; ino: number | null },
): boolean {
  return a.dev !== null && a.ino !== null && a.dev === b.dev && a.ino === b.ino;
}

/**
 * What /proc tells of standard output, or undefined when it cannot be read (other systems,
 * or permissions narrower than all). Synchronous and cheap: run at start-up.
 */
function stdoutStateFromProc(): Exclude<StdoutState, "null-device"> | undefined {
  if (Deno.build.os !== "linux") return undefined;
  try {
    const devNull = Deno.statSync("/dev/null");
    const target = Deno.statSync("/proc/self/fd/1"); // follows the link: the open file
    if (!sameFile(target, devNull)) return "open";
    const info = Deno.readTextFileSync("/proc/self/fdinfo/1");
    const flags = parseInt(/^flags:\s*([0-7]+)/m.exec(info)?.[1] ?? "", 8);
    // The runtime opens it read-write; a shell's `>/dev/null` opens it write-only.
    return (flags & 3) === 2 ? "closed" : "open";
  } catch {
    return undefined;
  }
}

/**
 * True when standard output is known to be closed (see {@link stdoutStateFromProc}); false
 * when it is open or this cannot be told.
 */
export function standardOutputKnownClosed(): boolean {
  return stdoutStateFromProc() === "closed";
}

/**
 * What standard output is, for a run about to write data there: /proc where readable, else
 * the descriptor's own device and inode (read through the Node-compatibility layer, loaded
 * here on first use only, off every other run's start-up).
 */
export async function probeStandardOutput(): Promise<StdoutState> {
  const fromProc = stdoutStateFromProc();
  if (fromProc !== undefined || Deno.build.os !== "linux") return fromProc ?? "open";
  try {
    const { fstatSync } = await import("node:fs");
    const stdout = fstatSync(1);
    return sameFile(stdout, Deno.statSync("/dev/null")) ? "null-device" : "open";
  } catch {
    return "open";
  }
}
