/**
 * An image written to /dev/null: page data is dropped as it comes, and only the header
 * section (written last, at offset 0) is kept, so the self-check can read it back. No
 * temporary file at all: `-o /dev/null -measurement_file m.json` costs no disk.
 */
import type { ByteSink } from "./byte_stream.ts";

/** A sink that keeps the bytes written at offset 0 and the size, and drops the rest. */
export class DiscardedImage implements ByteSink {
  #head = new Uint8Array(0);
  #size = 0;

  writeAt(offset: number, bytes: Uint8Array): Promise<void> {
    if (offset === 0 && bytes.length > this.#head.length) this.#head = bytes.slice();
    this.#size = Math.max(this.#size, offset + bytes.length);
    return Promise.resolve();
  }

  /** Reads back within what was kept (the header section); data pages were dropped. */
  readBack(offset: number, length: number): Promise<Uint8Array> {
    if (offset + length > this.#head.length) {
      return Promise.reject(new Error("the data pages of an image sent to /dev/null are not kept"));
    }
    return Promise.resolve(this.#head.slice(offset, offset + length));
  }

  size(): Promise<number> {
    return Promise.resolve(this.#size);
  }

  abort(): Promise<void> {
    return Promise.resolve();
  }
}
