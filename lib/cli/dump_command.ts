/** `igvmgen -d FILE`: the original's text dump, streamed to standard output. */
import { dumpIgvmFile } from "../igvm/dump.ts";
import { describeError } from "./errors.ts";
import { type ByteSink, LineOutput, OutputClosed } from "./line_output.ts";

/**
 * Dumps `path` to `sink` line by line; returns the exit code. A reader that goes away (a
 * closed pipe) ends the dump quietly with 0. On a bad file, what was dumped before the
 * fault is written, then the error is thrown.
 */
export async function runDump(path: string, sink: ByteSink): Promise<number> {
  const out = new LineOutput(sink);
  try {
    await dumpIgvmFile(path, (line) => out.line(line));
    await out.flush();
    return 0;
  } catch (e) {
    if (e instanceof OutputClosed) return 0;
    try {
      await out.flush();
    } catch (closed) {
      if (!(closed instanceof OutputClosed)) throw closed;
    }
    throw new Error(`cannot dump ${path}: ${describeError(e)}`, { cause: e });
  }
}
