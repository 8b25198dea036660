/**
 * Bounded inflation with the web's DecompressionStream: the output is read as it comes and
 * refused as soon as it passes its bound, so a small bomb of compressed data never fills
 * memory. The stream is written and read directly (one writer, one reader), which starts in
 * about half the time of going through Blob and Response.
 */

/** Compressed bytes handed to the inflater at once: the output per step stays small. */
const INFLATE_STEP = 16 << 10;

/** Data that inflates to more than its bound. */
export class InflateLimitError extends Error {
  override name = "InflateLimitError";
  /** `limit`: the bound, in bytes. */
  constructor(limit: number) {
    super(`the data inflates to more than ${limit} bytes`);
  }
}

/**
 * Inflates `data`: zlib data (RFC 1950) for "deflate", bare DEFLATE data (RFC 1951) for
 * "deflate-raw". Throws InflateLimitError once the output passes `limit` bytes; damaged
 * data rejects with the stream's error. zlib data must end with the Adler-32 of what it
 * inflates to: the stream returns what it could inflate from data cut short, without an
 * error. (Bare DEFLATE has no checksum; a zip entry has its CRC-32, checked by its reader.)
 */
export async function inflateBounded(
  data: Uint8Array,
  format: "deflate" | "deflate-raw",
  limit: number,
): Promise<Uint8Array> {
  const stream = new DecompressionStream(format);
  const writer = stream.writable.getWriter();
  const reader = stream.readable.getReader();
  const feed = (async () => {
    for (let at = 0; at < data.length; at += INFLATE_STEP) {
      await writer.write(data.slice(at, at + INFLATE_STEP));
    }
    await writer.close();
  })();
  feed.catch(() => {}); // its failure is the reader's, reported below
  const parts: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > limit) throw new InflateLimitError(limit);
      parts.push(value);
    }
    await feed;
  } catch (e) {
    await reader.cancel().catch(() => {});
    throw e;
  }
  let out = parts[0] ?? new Uint8Array(0);
  if (parts.length > 1) {
    out = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
  }
  if (format === "deflate") {
    const stored = data.length >= 6
      ? new DataView(data.buffer, data.byteOffset + data.length - 4, 4).getUint32(0)
      : undefined;
    if (stored !== adler32(out)) {
      throw new Error("the zlib data is cut short or damaged: its Adler-32 does not match");
    }
  }
  return out;
}

/** Adler-32 (RFC 1950) of `bytes`. */
export function adler32(bytes: Uint8Array): number {
  let a = 1;
  let b = 0;
  // 5552 bytes is the most that can be summed before b passes 2^32 (as zlib's NMAX).
  for (let at = 0; at < bytes.length; at += 5552) {
    const end = Math.min(at + 5552, bytes.length);
    for (let i = at; i < end; i++) {
      a += bytes[i];
      b += a;
    }
    a %= 65521;
    b %= 65521;
  }
  return ((b << 16) | a) >>> 0;
}
