/**
 * Inputs as the library takes them: a file path or a byte stream (a `fetch()` body,
 * `Deno.stdin.readable`). Streams are spooled to a temporary file where the reader needs a
 * size or random access, and read whole where the input is small (a key, a config).
 */
import { InputError, UsageError } from "../errors.ts";
import { type FileAccess, openFileAccess } from "./file_reader.ts";
import {
  fileSource,
  type FileSourceOptions,
  type InputSource,
  readInputFile,
  SIDE_INPUT_MAX,
  spoolToTempFile,
} from "./inputs.ts";
import { removeTemp } from "./temp_files.ts";

/** A byte stream with the name messages use for it (`"standard input"`, a URL). */
export interface NamedStream {
  /** The bytes, read once to the end. */
  stream: ReadableStream<Uint8Array>;
  /** What errors call the stream. */
  name: string;
}

/** An input: a file path, a byte stream, or a byte stream with a name for messages. */
export type Input = string | ReadableStream<Uint8Array> | NamedStream;

/** The default name of an unnamed stream in messages. */
const UNNAMED_STREAM = "a stream";

function namedStream(input: Exclude<Input, string>): NamedStream {
  if (input instanceof ReadableStream) return { stream: input, name: UNNAMED_STREAM };
  if (!(input?.stream instanceof ReadableStream)) {
    throw new UsageError(
      `expected a path, a ReadableStream<Uint8Array> or { stream, name } as an input, got ${
        input === null ? "null" : typeof input
      }`,
    );
  }
  return input;
}

/** What messages call `input`: its path, or its stream's name. */
export function inputName(input: Input): string {
  return typeof input === "string" ? input : namedStream(input).name;
}

/**
 * A sized, re-readable source over `input`. A stream is spooled to a temporary file
 * (removed by `removeSpools()`), named `<what> (<stream name>)` in messages.
 */
export async function inputSource(
  input: Input,
  what: string,
  options: FileSourceOptions = {},
): Promise<InputSource> {
  if (typeof input === "string") return await fileSource(input, what, undefined, options);
  const { stream, name } = namedStream(input);
  const spooled = await spoolToTempFile(stream, `the ${what} from ${name}`, options.limit);
  if (stream === options.stdin) options.onStdinSpool?.(spooled);
  return await fileSource(spooled, what, `${what} (${name})`);
}

/**
 * Reads a small input whole: a file as `readInputFile` does, a stream up to 1 MiB (and at
 * least one byte).
 */
export async function readSmallInput(input: Input, what: string): Promise<Uint8Array> {
  if (typeof input === "string") return await readInputFile(input, what);
  const { stream, name } = namedStream(input);
  const chunks: Uint8Array[] = [];
  let length = 0;
  try {
    for await (const chunk of stream) {
      length += chunk.length;
      if (length > SIDE_INPUT_MAX) {
        throw new Error(`more than ${SIDE_INPUT_MAX >> 20} MiB`);
      }
      chunks.push(chunk);
    }
  } catch (e) {
    throw new InputError(`cannot read ${what} from ${name}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  if (length === 0) {
    throw new InputError(
      `cannot read ${what} from ${name}: it delivered no bytes (a stream already read to its end?)`,
    );
  }
  const bytes = new Uint8Array(length);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  return bytes;
}

/** An input opened for random access; `release()` closes it and removes any spool. */
export interface OpenedInput {
  file: FileAccess;
  release(): Promise<void>;
}

/**
 * Opens `input` for random access: a file as it is, a stream spooled to a temporary file
 * first. The caller must `release()` it. Opening fails with `InputError("cannot read
 * <name>: ...")`, or with the error itself when `rawOpenErrors` is set.
 */
export async function openInput(
  input: Input,
  what: string,
  rawOpenErrors = false,
): Promise<OpenedInput> {
  // A spool here belongs to this call alone: released with it, whatever other calls do.
  let spool: string | undefined;
  try {
    let path: string;
    if (typeof input === "string") path = input;
    else {
      const { stream, name } = namedStream(input);
      path = spool = await spoolToTempFile(stream, `the ${what} from ${name}`, undefined, true);
    }
    const file = await openFileAccess(path).catch((e) => {
      if (rawOpenErrors) throw e;
      throw new InputError(`cannot read ${inputName(input)}: ${(e as Error).message}`, {
        cause: e,
      });
    });
    let released = false;
    return {
      file,
      async release() {
        if (released) return;
        released = true;
        try {
          file.close();
        } finally {
          if (spool) await removeTemp(spool);
        }
      },
    };
  } catch (e) {
    if (spool) await removeTemp(spool);
    throw e;
  }
}

/**
 * Runs `f` with random access to `input` (see {@link openInput}). The file is closed and
 * any spool removed when `f` settles.
 */
export async function withInputAccess<T>(
  input: Input,
  what: string,
  f: (file: FileAccess) => Promise<T>,
  rawOpenErrors = false,
): Promise<T> {
  const opened = await openInput(input, what, rawOpenErrors);
  try {
    return await f(opened.file);
  } finally {
    await opened.release();
  }
}

/**
 * Runs `f` with a path for each input: a path as it is, a stream spooled to a temporary
 * file (small inputs up to `SIDE_INPUT_MAX`). The spools are removed when `f` settles. An
 * `InputError` or `UsageError` that names a spool names its stream instead.
 */
export async function withInputPaths<K extends string, T>(
  inputs: { [key in K]?: { input: Input | undefined; what: string; small?: boolean } },
  f: (paths: { [key in K]?: string }) => Promise<T>,
): Promise<T> {
  const names = new Map<string, string>(); // this call's spools, removed when it settles
  try {
    const paths: { [key in K]?: string } = {};
    for (const key of Object.keys(inputs) as K[]) {
      const { input, what, small } = inputs[key]!;
      if (input === undefined) continue;
      if (typeof input === "string") {
        paths[key] = input;
        continue;
      }
      const { stream, name } = namedStream(input);
      const limit = small ? { maxBytes: SIDE_INPUT_MAX, why: `${what} is read whole` } : undefined;
      const path = await spoolToTempFile(stream, `the ${what} from ${name}`, limit, true);
      names.set(path, name);
      paths[key] = path;
    }
    return await f(paths);
  } catch (e) {
    if (names.size === 0 || !(e instanceof InputError || e instanceof UsageError)) throw e;
    let message = e.message;
    for (const [path, name] of names) message = message.replaceAll(path, name);
    if (message === e.message) throw e;
    throw new (e instanceof InputError ? InputError : UsageError)(message, { cause: e });
  } finally {
    for (const path of names.keys()) await removeTemp(path);
  }
}
