/** Sequential readers over files and in-memory bytes, with large reads ahead of use. */
import type { ByteReader } from "./byte_stream.ts";

/** Read size for files: large reads keep syscalls and async hops off the per-page path. */
const READ_CHUNK = 2 << 20;

/**
 * Reads a file from `offset`, `length` bytes at most. `read()` reads in 2 MiB chunks: while
 * one chunk is consumed, the next is already being read. `readSync()` reads straight into
 * the caller's buffer on this thread: for large reads (the writer reads whole batches) it
 * saves a copy and the hand-offs to Deno's I/O threads, which cost the most when the
 * machine's cores are busy hashing. A reader serves one kind of read only.
 */
export async function openFileRange(
  path: string,
  offset: number,
  length: number,
): Promise<ByteReader> {
  const file = await Deno.open(path, { read: true });
  await file.seek(offset, Deno.SeekMode.Start);
  const size = Math.min(READ_CHUNK, Math.max(length, 1));
  let spare: Uint8Array[] = [];
  let left = length; // bytes of the range not yet requested from the file
  const readChunk = (buf: Uint8Array): Promise<Uint8Array> => {
    const chunk = readInto(buf);
    chunk.catch(() => {}); // awaited by read(); a reader closed early must not leak a rejection
    return chunk;
  };
  const readInto = async (buf: Uint8Array): Promise<Uint8Array> => {
    const want = Math.min(buf.length, left);
    left -= want;
    let got = 0;
    while (got < want) {
      const n = await file.read(buf.subarray(got, want));
      if (n === null) break;
      got += n;
    }
    return buf.subarray(0, got);
  };
  let current: Uint8Array = new Uint8Array(0);
  let at = 0;
  let next: Promise<Uint8Array> | undefined;
  let which = 0;
  let mode: "async" | "sync" | undefined;
  return {
    readSync(dst: Uint8Array): number {
      if (mode === "async") throw new Error("readSync() on a reader already read with read()");
      mode = "sync";
      const want = Math.min(dst.length, left);
      let got = 0;
      while (got < want) {
        const n = file.readSync(dst.subarray(got, want));
        if (n === null) break;
        got += n;
      }
      left -= got;
      return got;
    },
    async read(dst: Uint8Array): Promise<number> {
      if (mode === "sync") throw new Error("read() on a reader already read with readSync()");
      if (mode === undefined) {
        mode = "async";
        spare = [new Uint8Array(size), new Uint8Array(size)];
        next = left > 0 ? readChunk(spare[0]) : undefined;
      }
      let got = 0;
      while (got < dst.length) {
        if (at === current.length) {
          if (!next) break;
          current = await next;
          at = 0;
          which ^= 1;
          next = left > 0 ? readChunk(spare[which]) : undefined;
          if (current.length === 0) break;
        }
        const n = Math.min(current.length - at, dst.length - got);
        dst.set(current.subarray(at, at + n), got);
        at += n;
        got += n;
      }
      return got;
    },
    close: () => {
      // A read ahead may still be running; close once it settles.
      if (next) next.then(() => file.close(), () => file.close());
      else file.close();
    },
  };
}

/** A reader over bytes already in memory. */
export function bytesReader(bytes: Uint8Array): ByteReader {
  let at = 0;
  const readSync = (dst: Uint8Array): number => {
    const n = Math.min(dst.length, bytes.length - at);
    dst.set(bytes.subarray(at, at + n));
    at += n;
    return n;
  };
  return { read: (dst) => Promise.resolve(readSync(dst)), readSync, close() {} };
}

/** Reads into `buf` from `offset` until it is full or the file ends; returns what was read. */
export async function readFullyAt(
  file: Deno.FsFile,
  offset: number,
  buf: Uint8Array,
): Promise<Uint8Array> {
  await file.seek(offset, Deno.SeekMode.Start);
  let got = 0;
  while (got < buf.length) {
    const n = await file.read(buf.subarray(got));
    if (n === null) break;
    got += n;
  }
  return buf.subarray(0, got);
}

/** Random access to a file. */
export interface FileAccess {
  size: number;
  /** Reads up to `length` bytes at `offset` (fewer at the end of the file). */
  readAt(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
}

/** Opens a regular file for random access; `close()` when done. */
export async function openFileAccess(path: string): Promise<FileAccess & { close(): void }> {
  const info = await Deno.stat(path);
  if (!info.isFile) throw new Error(`${path} is not a file`);
  const file = await Deno.open(path, { read: true });
  // One handle, one position: reads are queued so concurrent callers cannot interleave a
  // seek with another caller's read.
  let queue: Promise<unknown> = Promise.resolve();
  return {
    size: info.size,
    readAt(offset: number, length: number, into?: Uint8Array) {
      const n = Math.max(0, Math.min(length, info.size - offset));
      const buf = into && into.length >= n ? into.subarray(0, n) : new Uint8Array(n);
      const next = queue.then(() => readFullyAt(file, offset, buf));
      queue = next.catch(() => {});
      return next;
    },
    close: () => file.close(),
  };
}
