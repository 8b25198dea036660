/** Opening the user's input files: checks that name the file, and sizes for planning. */
import { InputError } from "./cli/errors.ts";
import type { ByteReader, StreamRegion } from "./layout/guest_image.ts";
import { bytesReader, openFileRange } from "./write/file_reader.ts";

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

/** Reads all of a stream (standard input) into memory. */
export async function readAllStream(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const c of stream) {
    chunks.push(c);
    total += c.length;
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
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

/** A source over a file on disk. */
export async function fileSource(path: string, what: string): Promise<InputSource> {
  const info = await statInputFile(path, what);
  const size = info.size;
  return {
    name: `${what} ${path}`,
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
        name: `${what} ${path}`,
        length,
        open: (): Promise<ByteReader> => openFileRange(path, Math.min(offset, size), length),
      };
    },
  };
}

/** A source over bytes in memory (standard input). */
export function memorySource(bytes: Uint8Array, name: string): InputSource {
  return {
    name,
    size: bytes.length,
    head: (length: number) => Promise.resolve(bytes.subarray(0, length)),
    region(offset: number) {
      const rest = bytes.subarray(Math.min(offset, bytes.length));
      return { name, length: rest.length, open: () => Promise.resolve(bytesReader(rest)) };
    },
  };
}
