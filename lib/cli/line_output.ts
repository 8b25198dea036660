/**
 * Text output line by line, in large writes, that waits for a slow reader and ends quietly
 * when the reader goes away (`igvmgen -d big.igvm | head`).
 */

import { printable } from "./errors.ts";

/** The reader of the output has gone (a closed pipe): stop producing, and exit 0. */
export class OutputClosed extends Error {
  override name = "OutputClosed";
}

/** Where the bytes go: `Deno.stdout` or anything with its `write`. */
export interface ByteSink {
  write(bytes: Uint8Array): Promise<number>;
}

/** Lines gathered into writes of about `chunkChars` characters. */
export class LineOutput {
  private pending: string[] = [];
  private chars = 0;
  private readonly encoder = new TextEncoder();

  constructor(private readonly sink: ByteSink, private readonly chunkChars = 64 << 10) {}

  /** Adds a line; writes when enough has gathered (then waits for the write). */
  async line(text: string): Promise<void> {
    this.pending.push(text, "\n");
    this.chars += text.length + 1;
    if (this.chars >= this.chunkChars) await this.flush();
  }

  /** Writes what has gathered. Throws OutputClosed when the reader has gone. */
  async flush(): Promise<void> {
    if (this.chars === 0) return;
    const bytes = this.encoder.encode(this.pending.join(""));
    this.pending = [];
    this.chars = 0;
    try {
      for (let done = 0; done < bytes.length;) {
        done += await this.sink.write(bytes.subarray(done));
      }
    } catch (e) {
      if (e instanceof Deno.errors.BrokenPipe) throw new OutputClosed("the output was closed");
      throw e;
    }
  }
}

const encoder = new TextEncoder();

/**
 * Prints `text` and a newline to standard output at once, as `console.log` does but without
 * its formatting machinery, which for a million-line log costs tens of MB of memory. A closed
 * pipe is ignored, as `console.log` ignores it. Control characters from a hostile input are
 * escaped (lib/cli/errors.ts printable).
 */
export function printLine(text: string): void {
  const bytes = encoder.encode(printable(text) + "\n");
  try {
    for (let done = 0; done < bytes.length;) done += Deno.stdout.writeSync(bytes.subarray(done));
  } catch (e) {
    if (!(e instanceof Deno.errors.BrokenPipe)) throw e;
  }
}
