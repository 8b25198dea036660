/**
 * The temporary files and folders of this run (temp outputs beside `-o`, spools in the
 * system's temporary folder, the ACPI compile folder). Each is registered before or as it is
 * created and unregistered when it is renamed or removed, so a signal handler can remove
 * whatever is left, synchronously, before the process exits.
 */

const live = new Set<string>();
let removedAtExit = false;

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
}

/** The temporary paths currently registered (for tests and diagnostics). */
export function liveTemps(): string[] {
  return [...live];
}

/** Removes every registered temporary path now; errors (already gone) are ignored. */
export function removeTempsSync(): void {
  for (const path of live) {
    try {
      Deno.removeSync(path, { recursive: true });
    } catch { /* already gone */ }
  }
  live.clear();
}

/** Removes a temporary path and forgets it. */
export async function removeTemp(path: string): Promise<void> {
  await Deno.remove(path, { recursive: true }).catch(() => {});
  live.delete(path);
}

/**
 * Makes a temporary file in the system's temporary folder and registers it. The name is
 * registered as soon as it is known; a signal between creation and registration is the only
 * window in which a file could stay behind.
 */
export async function makeRegisteredTempFile(prefix: string): Promise<string> {
  const path = await Deno.makeTempFile({ prefix });
  registerTemp(path);
  return path;
}

/** The same for a temporary folder. */
export async function makeRegisteredTempDir(prefix: string): Promise<string> {
  const path = await Deno.makeTempDir({ prefix });
  registerTemp(path);
  return path;
}
