/** Sequential readers over files and streams, with large reads. */
import type { ByteReader } from "../layout/guest_image.ts";

/** Reads a file from `offset`, `length` bytes at most. */
export async function openFileRange(
  path: string,
  offset: number,
  length: number,
): Promise<ByteReader> {
  const file = await Deno.open(path, { read: true });
  await file.seek(offset, Deno.SeekMode.Start);
  let left = length;
  return {
    async read(dst: Uint8Array): Promise<number> {
      let got = 0;
      const want = Math.min(dst.length, left);
      while (got < want) {
        const n = await file.read(dst.subarray(got, want));
        if (n === null) break;
        got += n;
      }
      left -= got;
      return got;
    },
    close: () => file.close(),
  };
}

/** A reader over bytes already in memory. */
export function bytesReader(bytes: Uint8Array): ByteReader {
  let at = 0;
  return {
    read(dst: Uint8Array): Promise<number> {
      const n = Math.min(dst.length, bytes.length - at);
      dst.set(bytes.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
    close() {},
  };
}
