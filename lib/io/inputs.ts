/** Opening the user's input files: checks that name the file, and sizes for planning. */
import { InputError, UsageError } from "../errors.ts";
import type { ByteReader, StreamRegion } from "./byte_stream.ts";
import { openFileRange } from "./file_reader.ts";
import { makeRegisteredTempFile, removeTemp } from "./temp_files.ts";
import { isWriteError, writeError } from "./os_errors.ts";

/** Stats `path` as a readable regular file, with a message naming `what` and the path. */
async function statInputFile(path: string, what: string): Promise<Deno.FileInfo> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new InputError(`${what} ${path} does not exist`);
    throw new InputError(`cannot read ${what} ${path}: ${(e as Error).message}`);
  }
  if (info.isDirectory) throw new InputError(`${what} ${path} is a folder, not a file`);
  return info;
}

/**
 * The cap on small side inputs (keys, configs), from a file or a stream read whole: far above
 * any real one.
 */
export const SIDE_INPUT_MAX = 1 << 20;

/**
 * Reads a whole small input file, naming it in errors. It must be a regular file of at most
 * `maxBytes`; at most `maxBytes + 1` bytes are ever read, so a file that grows (or a device
 * that never ends) cannot exhaust memory.
 */
export async function readInputFile(
  path: string,
  what: string,
  maxBytes = SIDE_INPUT_MAX,
): Promise<Uint8Array> {
  const info = await statInputFile(path, what);
  if (!info.isFile) throw new InputError(`${what} ${path} is not a regular file`);
  const tooLarge = () =>
    new InputError(`${what} ${path} is larger than ${maxBytes} bytes, too large for a ${what}`);
  if (info.size > maxBytes) throw tooLarge();
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    throw new InputError(`cannot read ${what} ${path}: ${(e as Error).message}`);
  }
  try {
    const buf = new Uint8Array(maxBytes + 1);
    let got = 0;
    while (got < buf.length) {
      const n = await file.read(buf.subarray(got));
      if (n === null) break;
      got += n;
    }
    if (got > maxBytes) throw tooLarge();
    return buf.slice(0, got);
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError(`cannot read ${what} ${path}: ${(e as Error).message}`);
  } finally {
    file.close();
  }
}

/** Paths that name this process's standard input, which Deno opens only with all access. */
export const STDIN_PATHS = ["/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"];

/** True when `path` names standard input (read through Deno.stdin instead of opened). */
export function isStdinPath(path: string): boolean {
  return STDIN_PATHS.includes(path);
}

/**
 * Standard input can be read once: refuses a run where two options name it (`-` or
 * `/dev/stdin`).
 */
export function checkStdinOnce(inputs: readonly { option: string; path?: string }[]): void {
  const readers = inputs.filter((i) =>
    i.path === "-" && i.option === "-kernel" || (i.path !== undefined && isStdinPath(i.path))
  );
  if (readers.length > 1) {
    throw new UsageError(
      `standard input can be read once: ${
        readers.map((r) => `${r.option} ${r.path}`).join(" and ")
      }`,
    );
  }
}

/** An input larger than this cannot be used; `why` says why (ends the error message). */
export interface InputLimit {
  maxBytes: number;
  why: string;
}

/** The error for an input over its limit. */
function tooLargeError(label: string, size: string, limit: InputLimit): InputError {
  return new InputError(`${label} is ${size} bytes, more than ${limit.maxBytes}: ${limit.why}`);
}

/**
 * Copies a stream of unknown length (standard input, a pipe) into a temporary file in the
 * system's temporary folder, in bounded memory, so it can be sized and read like a file.
 * With `limit`, copying stops with an error as soon as the stream passes `limit.maxBytes`.
 * A stream that delivers no bytes at all is an error.
 */
export async function spoolToTempFile(
  stream: ReadableStream<Uint8Array>,
  what: string,
  limit?: InputLimit,
  /** The caller removes the spool itself (with `removeTemp`), not `removeSpools()`. */
  owned = false,
  /** No bytes at all is fine (a device such as /dev/null, named on purpose). */
  allowEmpty = false,
): Promise<string> {
  const path = await makeRegisteredTempFile("igvmgen-spool-");
  let file: Deno.FsFile | undefined;
  let total = 0;
  try {
    file = await Deno.open(path, { write: true });
    for await (const chunk of stream) {
      total += chunk.length;
      if (limit && total > limit.maxBytes) {
        throw new InputError(
          `${what} has more than ${limit.maxBytes} bytes (reading stopped there): ${limit.why}`,
        );
      }
      let done = 0;
      try {
        while (done < chunk.length) done += await file.write(chunk.subarray(done));
      } catch (e) {
        throw writeError(`the spool of ${what} ${path} (in TMPDIR)`, e);
      }
    }
    if (total === 0 && !allowEmpty) {
      // A pipe whose writer failed, a stream already read to its end: never "no input".
      throw new InputError(
        `${what} delivered no bytes: an empty pipe, standard input or stream is refused (one already read to its end, or whose writer failed?)`,
      );
    }
  } catch (e) {
    file?.close();
    file = undefined;
    await removeTemp(path);
    if (e instanceof InputError || isWriteError(e)) throw e;
    throw new InputError(`cannot read ${what}: ${(e as Error).message}`, { cause: e });
  } finally {
    file?.close();
  }
  if (!owned) spools.push(path);
  return path;
}

/** Temporary spool files made by this run, removed by `removeSpools()`. */
const spools: string[] = [];

/** Runs under way that may still read their spools (library calls can overlap). */
let spoolHolders = 0;

/** Marks the start of a run that spools; pair each call with one `removeSpools()`. */
export function holdSpools(): void {
  spoolHolders++;
}

/**
 * Ends a run's hold on the spool files; the files are removed when no other run holds
 * them (at once when nothing called `holdSpools()`).
 */
export async function removeSpools(): Promise<void> {
  spoolHolders = Math.max(0, spoolHolders - 1);
  if (spoolHolders > 0) return;
  while (spools.length) await removeTemp(spools.pop()!);
}

/** A kernel, initrd or payload source: a file range or bytes in memory. */
export interface InputSource {
  name: string;
  size: number;
  /** The first bytes (for header parsing). */
  head(length: number): Promise<Uint8Array>;
  /** A region reading [offset, size) of the source. */
  region(offset: number): Omit<StreamRegion, "gpa">;
}

/** How `fileSource` opens its input. */
export interface FileSourceOptions {
  /** Standard input, read when the path names it (`/dev/stdin`). */
  stdin?: ReadableStream<Uint8Array>;
  /** The most bytes the input can have; larger inputs fail before any work. */
  limit?: InputLimit;
  /** The option that names the input (`-rdinit`), for errors. */
  option?: string;
  /** Refuse anything but a regular file (side inputs such as `-symbol_elf`). */
  regularOnly?: boolean;
  /** Told the spool's path when standard input was read into one. */
  onStdinSpool?: (path: string) => void;
}

/**
 * A source over a file on disk. A path that is not a regular file (a pipe, a FIFO,
 * /dev/stdin) is spooled to a temporary file first, since the layout needs its size; the
 * spool stops at `options.limit`.
 */
export async function fileSource(
  path: string,
  what: string,
  label = `${what} ${path}`,
  options: FileSourceOptions = {},
): Promise<InputSource> {
  const { limit } = options;
  const named = options.option ? `${options.option} ${path}` : label;
  let info: Deno.FileInfo;
  if (isStdinPath(path)) {
    if (options.regularOnly) throw new InputError(`${named} is not a regular file`);
    if (!options.stdin) throw new InputError(`${named}: there is no standard input`);
    path = await spoolToTempFile(options.stdin, named, limit);
    options.onStdinSpool?.(path);
    info = await Deno.stat(path);
  } else {
    info = await statInputFile(path, what);
    if (!info.isFile) {
      if (options.regularOnly) throw new InputError(`${named} is not a regular file`);
      const file = await Deno.open(path, { read: true }).catch((e) => {
        throw new InputError(`cannot read ${what} ${path}: ${(e as Error).message}`);
      });
      // A pipe or FIFO must deliver something; a device (/dev/null) is named on purpose.
      path = await spoolToTempFile(file.readable, named, limit, false, info.isCharDevice === true);
      info = await Deno.stat(path);
    } else if (limit && info.size > limit.maxBytes) {
      throw tooLargeError(named, String(info.size), limit);
    }
  }
  const size = info.size;
  return {
    name: label,
    size,
    async head(length: number) {
      const r = await openFileRange(path, 0, Math.min(length, size));
      try {
        const buf = new Uint8Array(Math.min(length, size));
        const n = await r.read(buf);
        return buf.subarray(0, n);
      } finally {
        r.close();
      }
    },
    region(offset: number) {
      const length = Math.max(0, size - offset);
      return {
        name: label,
        length,
        open: (): Promise<ByteReader> => openFileRange(path, Math.min(offset, size), length),
      };
    },
  };
}
