/** Opening the user's input files: checks that name the file, and sizes for planning. */
import { InputError } from "../errors.ts";
import type { ByteReader, StreamRegion } from "../layout/guest_image.ts";
import { openFileRange } from "./file_reader.ts";

/** Stats `path` as a readable regular file, with a message naming `what` and the path. */
export async function statInputFile(path: string, what: string): Promise<Deno.FileInfo> {
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

/** Reads a whole (small) input file, naming it in errors. */
export async function readInputFile(path: string, what: string): Promise<Uint8Array> {
  await statInputFile(path, what);
  try {
    return await Deno.readFile(path);
  } catch (e) {
    throw new InputError(`cannot read ${what} ${path}: ${(e as Error).message}`);
  }
}

/** Temporary spool files made by this run, removed by `removeSpools()`. */
const spools: string[] = [];

/**
 * Copies a stream of unknown length (standard input, a pipe) into a temporary file in the
 * system's temporary folder, in bounded memory, so it can be sized and read like a file.
 */
export async function spoolToTempFile(
  stream: ReadableStream<Uint8Array>,
  what: string,
): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "igvmgen-spool-" });
  spools.push(path);
  const file = await Deno.open(path, { write: true });
  try {
    for await (const chunk of stream) {
      let done = 0;
      while (done < chunk.length) done += await file.write(chunk.subarray(done));
    }
  } catch (e) {
    throw new InputError(`cannot read ${what}: ${(e as Error).message}`, { cause: e });
  } finally {
    file.close();
  }
  return path;
}

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
  while (spools.length) await Deno.remove(spools.pop()!).catch(() => {});
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

/**
 * A source over a file on disk. A path that is not a regular file (a pipe, a FIFO,
 * /dev/stdin) is spooled to a temporary file first, since the layout needs its size.
 */
export async function fileSource(
  path: string,
  what: string,
  label = `${what} ${path}`,
): Promise<InputSource> {
  let info = await statInputFile(path, what);
  if (!info.isFile) {
    const file = await Deno.open(path, { read: true }).catch((e) => {
      throw new InputError(`cannot read ${what} ${path}: ${(e as Error).message}`);
    });
    path = await spoolToTempFile(file.readable, `${what} ${path}`);
    info = await Deno.stat(path);
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
