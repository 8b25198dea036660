/**
 * Output files written to a temporary file beside the target and renamed into place only
 * on success: a failure leaves no partial file and an existing output untouched.
 */
import { basename, dirname, join } from "./path.ts";
import type { ByteSink } from "./byte_stream.ts";
import { readFullyAt } from "./file_reader.ts";
import {
  makeRegisteredTempFile,
  noteTempIdentity,
  registerTemp,
  removeTemp,
  unregisterTemp,
} from "./temp_files.ts";
import { writeError } from "./os_errors.ts";

/**
 * Written bytes after which a regular output starts flushing them to disk in the background
 * (one flush at a time). The flush before the rename, which makes the file durable before it
 * replaces anything, is then short: on a virtual disk, flushing 34 MB at the end took 35-50 ms.
 */
const BACKGROUND_FLUSH_BYTES = 4 << 20;

/**
 * Notes a temporary file's device and inode: it is then found and removed even if its folder
 * (the output's, or TMPDIR for a spool) is moved while igvmgen runs.
 */
async function noteIdentity(tempPath: string, file: Deno.FsFile): Promise<void> {
  const created = await file.stat().catch(() => undefined);
  if (created) noteTempIdentity(tempPath, created);
}

/** A folder's device and inode, to tell it from another made at its path later. */
interface FolderIdentity {
  dev: number;
  ino: number | null;
}

/** A temporary file that becomes `path` on commit. */
export class AtomicFile implements ByteSink {
  private constructor(
    readonly path: string,
    readonly tempPath: string,
    private file: Deno.FsFile,
    /** How errors name the output: the path as the user gave it (`path` is resolved). */
    private readonly name: string,
    /** The folder of `tempPath` when the file was made, if it could be told. */
    private readonly folder?: FolderIdentity,
  ) {}

  /**
   * Creates the temporary file in the target's folder (which must exist); errors name the
   * output `name` (default `path`). A failure to create it is the reason alone ("the folder …
   * does not exist"): callers name the output, as the user gave it, with `writeError`.
   */
  static async create(path: string, name = path): Promise<AtomicFile> {
    const dir = dirname(path);
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(dir);
    } catch {
      throw new Error(`the folder ${dir} does not exist`);
    }
    if (!info.isDirectory) throw new Error(`${dir} is not a folder`);
    let existing: Deno.FileInfo | undefined;
    try {
      existing = await Deno.stat(path);
      if (existing.isDirectory) throw new Error("it is a folder");
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const suffix = crypto.getRandomValues(new Uint32Array(2)).join("");
    const tempPath = join(dir, `.${basename(path)}.${suffix}.tmp`);
    registerTemp(tempPath);
    let file: Deno.FsFile;
    try {
      file = await Deno.open(tempPath, { write: true, createNew: true, mode: 0o644 });
    } catch (e) {
      unregisterTemp(tempPath);
      throw e;
    }
    await noteIdentity(tempPath, file);
    const out = new AtomicFile(path, tempPath, file, name, info);
    await out.#keepModeOf(existing);
    return out;
  }

  /**
   * An existing output keeps its permission bits (not on Windows, which has none);
   * `existing` is what create() found at `path`, if anything.
   */
  async #keepModeOf(existing: Deno.FileInfo | undefined): Promise<void> {
    if (Deno.build.os === "windows") return;
    if (!existing?.isFile || existing.mode === null) return;
    try {
      await Deno.chmod(this.tempPath, existing.mode & 0o7777);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) {
        await this.abort();
        throw e;
      }
    }
  }

  /**
   * Where the handle's file position is, or -1 when that is not known (after a failed
   * write). Writing in sequence then needs no seek: one request less for each write.
   */
  #position = 0;

  async writeAt(offset: number, bytes: Uint8Array): Promise<void> {
    try {
      if (offset !== this.#position) await this.file.seek(offset, Deno.SeekMode.Start);
      this.#position = -1;
      let done = 0;
      while (done < bytes.length) done += await this.file.write(bytes.subarray(done));
      this.#position = offset + done;
    } catch (e) {
      throw writeError(this.#label, e);
    }
    this.#unflushed += bytes.length;
    if (this.#unflushed >= BACKGROUND_FLUSH_BYTES) this.#flushInBackground();
  }

  /** Bytes written since the last background flush started. */
  #unflushed = 0;
  /** The background flush under way, if one is; it never rejects. */
  #background: Promise<void> | undefined;
  /** What a background flush failed with: flush() reports it. */
  #backgroundFailure: { error: unknown } | undefined;
  /** False once a second handle could not be opened, or flush() or abort() began. */
  #backgroundFlushes = true;

  /**
   * Starts flushing what was written so far to disk, through a second handle, so that
   * writing goes on meanwhile: the disk works while the pages are hashed, and the flush
   * before the rename has only the last bytes left. One at a time, each with a handle of its
   * own that it closes (outputs waiting to be committed hold one descriptor each); not for a
   * spool, which is copied out, never renamed into place.
   */
  #flushInBackground(): void {
    if (this.#background || this.path === "-" || !this.#backgroundFlushes) return;
    this.#unflushed = 0;
    this.#background = (async () => {
      const handle = await Deno.open(this.tempPath, { read: true, write: true }).catch(() => {
        this.#backgroundFlushes = false; // the final flush still flushes everything
      });
      if (!handle) return;
      try {
        await handle.syncData();
      } finally {
        handle.close();
      }
    })().catch((error) => void (this.#backgroundFailure ??= { error }))
      .finally(() => this.#background = undefined);
  }

  /** Stops background flushes and waits for the one under way, if any. */
  async #endBackground(): Promise<void> {
    this.#backgroundFlushes = false;
    await this.#background;
  }

  /** How errors name this file: the output, or the spool of `-o -`. */
  get #label(): string {
    return this.path === "-"
      ? `the spool of standard output ${this.tempPath} (in TMPDIR)`
      : this.name;
  }

  /** Reads back what was written (for the self-check before commit). */
  async readBack(offset: number, length: number): Promise<Uint8Array> {
    const file = await Deno.open(this.tempPath, { read: true }).catch((e) => {
      throw this.#lost(e);
    });
    try {
      return await readFullyAt(file, offset, new Uint8Array(length));
    } finally {
      file.close();
    }
  }

  /** The size of what was written so far. */
  async size(): Promise<number> {
    return (await Deno.stat(this.tempPath).catch((e) => {
      throw this.#lost(e);
    })).size;
  }

  /**
   * The error for a temporary file that is no longer where it was made: its folder was moved
   * or removed while the run went on (another folder may have been made at its path), or the
   * file itself was removed (the file is removed on abort, wherever it is).
   */
  #lost(e: unknown): Error {
    if (!(e instanceof Deno.errors.NotFound)) return writeError(this.#label, e);
    const folder = dirname(this.tempPath);
    let sameFolder = false;
    try {
      const now = Deno.statSync(folder);
      sameFolder = now.isDirectory &&
        (!this.folder || (now.dev === this.folder.dev && now.ino === this.folder.ino));
    } catch { /* gone */ }
    return writeError(
      this.#label,
      new Error(
        sameFolder
          ? `its temporary file ${this.tempPath} was removed while igvmgen wrote it`
          : `its folder ${folder} was moved or removed while igvmgen wrote it`,
      ),
    );
  }

  /** A temporary file in the system's temporary folder, for output to a stream (`-o -`). */
  static async createSpool(): Promise<AtomicFile> {
    const tempPath = await makeRegisteredTempFile("igvmgen-out-");
    const file = await Deno.open(tempPath, { write: true, read: true });
    await noteIdentity(tempPath, file);
    const folder = await Deno.stat(dirname(tempPath)).catch(() => undefined);
    return new AtomicFile("-", tempPath, file, "-", folder);
  }

  /** Copies the finished spool to `stream` (standard output, named `name`) and removes it. */
  async commitTo(stream: WritableStream<Uint8Array>, name = "standard output"): Promise<void> {
    this.file.close();
    try {
      const src = await Deno.open(this.tempPath, { read: true });
      await src.readable.pipeTo(stream, { preventClose: true });
    } catch (e) {
      throw writeError(name, e);
    } finally {
      await removeTemp(this.tempPath);
      this.#gone = true;
    }
  }

  #flushed = false;
  /** True once nothing is left at the temporary path: renamed into place, or copied out. */
  #gone = false;

  /**
   * Flushes the data to disk and closes the file: all of `commit()` but the rename. Done
   * apart so that a caller can hold signals over the renames alone, not over a long flush.
   */
  async flush(): Promise<void> {
    if (this.#flushed) return;
    await this.#endBackground();
    try {
      if (this.#backgroundFailure) throw this.#backgroundFailure.error;
      await this.file.syncData();
      this.file.close();
    } catch (e) {
      throw writeError(this.#label, e);
    }
    this.#flushed = true;
  }

  /** Flushes and renames into place. */
  async commit(): Promise<void> {
    await this.flush();
    try {
      await Deno.rename(this.tempPath, this.path);
    } catch (e) {
      throw this.#lost(e);
    }
    unregisterTemp(this.tempPath);
    this.#gone = true;
  }

  /**
   * Renames the finished file into place like `commit()`, keeping what it replaces (a hard
   * link under a temporary name) until the returned `keep()`; `undo()` puts that back, or
   * removes the new file where there was none. This lets a run put several outputs in place
   * together or not at all. On a file system without hard links an existing output cannot be
   * kept: `undo()` then leaves the new file (it never loses both).
   */
  async swapIn(): Promise<{ undo(): Promise<void>; keep(): Promise<void> }> {
    await this.flush();
    const existing = await Deno.lstat(this.path).catch(() => undefined);
    let backup: string | undefined;
    if (existing?.isFile) {
      backup = `${this.tempPath.replace(/\.tmp$/, "")}.old`;
      registerTemp(backup);
      try {
        await Deno.link(this.path, backup);
      } catch {
        unregisterTemp(backup);
        backup = undefined;
      }
    }
    try {
      await Deno.rename(this.tempPath, this.path);
    } catch (e) {
      if (backup) await removeTemp(backup);
      throw this.#lost(e);
    }
    unregisterTemp(this.tempPath);
    this.#gone = true;
    const path = this.path;
    return {
      async undo() {
        if (backup) {
          await Deno.rename(backup, path).catch(() => {});
          unregisterTemp(backup);
        } else if (!existing) await Deno.remove(path).catch(() => {});
      },
      async keep() {
        if (backup) await removeTemp(backup);
      },
    };
  }

  /**
   * Removes the temporary file; nothing once it was renamed into place or copied out (its
   * path may name another file by then).
   */
  async abort(): Promise<void> {
    if (this.#gone) return;
    await this.#endBackground();
    try {
      this.file.close();
    } catch { /* already closed */ }
    await removeTemp(this.tempPath);
  }
}
