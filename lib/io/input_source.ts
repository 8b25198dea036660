/**
 * Inputs as the library takes them: a file path or a byte stream (a `fetch()` body,
 * `Deno.stdin.readable`). Streams are spooled to a temporary file where the reader needs a
 * size or random access, and read whole where the input is small (a key, a config).
 */
import { InputError } from "../errors.ts";
import { type FileAccess, openFileAccess } from "./file_reader.ts";
import {
  fileSource,
  type FileSourceOptions,
  holdSpools,
  type InputSource,
  readInputFile,
  removeSpools,
  spoolToTempFile,
} from "./inputs.ts";

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
  return input instanceof ReadableStream ? { stream: input, name: UNNAMED_STREAM } : input;
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
  return await fileSource(spooled, what, `${what} (${name})`);
}

/** Streams that are read whole (keys, configs) stop at this size. */
export const MAX_SMALL_INPUT = 1 << 20;

/** Reads a small input whole: a file as `readInputFile` does, a stream up to 1 MiB. */
export async function readSmallInput(input: Input, what: string): Promise<Uint8Array> {
  if (typeof input === "string") return await readInputFile(input, what);
  const { stream, name } = namedStream(input);
  const chunks: Uint8Array[] = [];
  let length = 0;
  try {
    for await (const chunk of stream) {
      length += chunk.length;
      if (length > MAX_SMALL_INPUT) {
        throw new Error(`more than ${MAX_SMALL_INPUT >> 20} MiB`);
      }
      chunks.push(chunk);
    }
  } catch (e) {
    throw new InputError(`cannot read ${what} from ${name}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const bytes = new Uint8Array(length);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  return bytes;
}

/**
 * Runs `f` with random access to `input`: a file is opened as it is, a stream is spooled
 * to a temporary file first. The file is closed and any spool removed when `f` settles.
 * Opening fails with `InputError("cannot read <name>: ...")`, or with the error itself when
 * `rawOpenErrors` is set.
 */
export async function withInputAccess<T>(
  input: Input,
  what: string,
  f: (file: FileAccess) => Promise<T>,
  rawOpenErrors = false,
): Promise<T> {
  holdSpools();
  try {
    let path: string;
    if (typeof input === "string") path = input;
    else {
      const { stream, name } = namedStream(input);
      path = await spoolToTempFile(stream, `the ${what} from ${name}`);
    }
    const file = await openFileAccess(path).catch((e) => {
      if (rawOpenErrors) throw e;
      throw new InputError(`cannot read ${inputName(input)}: ${(e as Error).message}`, {
        cause: e,
      });
    });
    try {
      return await f(file);
    } finally {
      file.close();
    }
  } finally {
    await removeSpools();
  }
}
