/**
 * The temporary files and folders of this run (temp outputs beside `-o`, spools in the
 * system's temporary folder, the ACPI compile folder). Each is registered before or as it is
 * created and unregistered when it is renamed or removed, so a signal handler can remove
 * whatever is left, synchronously, before the process exits.
 */

import { basename, dirname, join } from "./path.ts";

const live = new Set<string>();
let removedAtExit = false;

/** A temporary file's device and inode, to find it again if its folder is moved. */
interface FileId {
  dev: number;
  ino: number;
}
const ids = new Map<string, FileId>();

/**
 * Records the device and inode of the registered temporary file at `path` (one beside an
 * output, whose folder the user may move or rename while igvmgen runs).
 */
export function noteTempIdentity(path: string, info: Deno.FileInfo): void {
  if (info.dev !== null && info.ino !== null) ids.set(path, { dev: info.dev, ino: info.ino });
}

/** Folders searched, at most, for a temporary file whose folder was moved. */
const MOVED_SEARCH_FOLDERS = 4096;

/**
 * Where a temporary file is now whose folder was moved (renamed, or moved nearby): searched
 * by its name and checked by device and inode, below the nearest remaining ancestor of its
 * folder's parent, a few levels deep. Undefined when it is not found.
 */
function findMovedSync(path: string, id: FileId): string | undefined {
  const name = basename(path);
  let root = dirname(dirname(path));
  let depth = 3;
  for (let up = 0; up < 3; up++, depth++) {
    try {
      if (Deno.statSync(root).isDirectory) break;
    } catch { /* gone too: one level up */ }
    root = dirname(root);
  }
  let level = [root];
  let visited = 0;
  for (let d = 0; d <= depth && level.length; d++) {
    const next: string[] = [];
    for (const dir of level) {
      if (++visited > MOVED_SEARCH_FOLDERS) return undefined;
      try {
        const info = Deno.lstatSync(join(dir, name));
        if (info.dev === id.dev && info.ino === id.ino) return join(dir, name);
      } catch { /* not here */ }
      try {
        for (const e of Deno.readDirSync(dir)) {
          if (e.isDirectory && !e.isSymlink) next.push(join(dir, e.name));
        }
      } catch { /* unreadable */ }
    }
    level = next;
  }
  return undefined;
}

/** Removes `path`, or the file it became when its folder was moved; errors are ignored. */
function removeSync(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch (e) {
    const id = ids.get(path);
    if (!(e instanceof Deno.errors.NotFound) || !id) return;
    const moved = findMovedSync(path, id);
    if (moved) {
      try {
        Deno.removeSync(moved);
      } catch { /* removed meanwhile */ }
    }
  }
}

/**
 * Records a temporary file or folder of this run. Whatever is still registered when the
 * process ends normally (a library caller that abandoned an iteration, say) is removed then.
 */
export function registerTemp(path: string): void {
  live.add(path);
  if (!removedAtExit) {
    removedAtExit = true;
    globalThis.addEventListener("unload", () => removeTempsSync());
  }
}

/** Forgets a temporary path (it was renamed into place or removed). */
export function unregisterTemp(path: string): void {
  live.delete(path);
  ids.delete(path);
}

/** The temporary paths currently registered (for tests and diagnostics). */
export function liveTemps(): string[] {
  return [...live];
}

/** Removes every registered temporary path now; errors (already gone) are ignored. */
export function removeTempsSync(): void {
  for (const path of live) removeSync(path);
  live.clear();
  ids.clear();
}

/**
 * Removes a temporary path and forgets it; a file whose folder was moved meanwhile is found
 * and removed where it is now.
 */
export async function removeTemp(path: string): Promise<void> {
  try {
    await Deno.remove(path, { recursive: true });
  } catch {
    // Gone, or its folder was moved: found again by its device and inode (synchronously:
    // this is rare, and the search is bounded).
    removeSync(path);
  }
  unregisterTemp(path);
}

/**
 * Makes a temporary file in the system's temporary folder and registers it. The name is
 * registered as soon as it is known; a signal between creation and registration is the only
 * window in which a file could stay behind.
 */
export async function makeRegisteredTempFile(prefix: string): Promise<string> {
  const path = await Deno.makeTempFile({ prefix }).catch((e) => {
    throw tempFolderError("file", e);
  });
  registerTemp(path);
  return path;
}

/** The same for a temporary folder. */
export async function makeRegisteredTempDir(prefix: string): Promise<string> {
  const path = await Deno.makeTempDir({ prefix }).catch((e) => {
    throw tempFolderError("folder", e);
  });
  registerTemp(path);
  return path;
}

/**
 * The error for a temporary file or folder that cannot be made: the system's temporary
 * folder comes from TMPDIR (else /tmp), so the message names TMPDIR, with its value when the
 * environment may be read (the CLI's permissions do not allow it; no prompt is shown).
 */
function tempFolderError(what: "file" | "folder", e: unknown): Error {
  let where = "TMPDIR (or /tmp when TMPDIR is not set)";
  try {
    const query = Deno.permissions.querySync({ name: "env", variable: "TMPDIR" });
    if (query.state === "granted") {
      const tmpdir = Deno.env.get("TMPDIR");
      where = tmpdir ? `TMPDIR=${tmpdir}` : "/tmp (TMPDIR is not set)";
    }
  } catch { /* no permissions API: keep the general words */ }
  const reason = ((e as Error).message ?? String(e)).replace(/\s*\(os error \d+\).*$/, "");
  // No cause: the runtime's message ("...: tmpfile") would add only a misleading name.
  return new Error(
    `cannot make a temporary ${what} in ${where}: ${reason}; set TMPDIR to a writable folder`,
  );
}
