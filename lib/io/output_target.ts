/**
 * Where a run's outputs go, decided before any work: `-o` and `-measurement_file` are
 * resolved (through symlinks), their folders must exist, and neither may be one of the
 * inputs (compared by device and inode, not by spelling). A regular file is written to a
 * temporary file beside it and renamed into place; standard output and other targets that
 * are not regular files (/dev/null, a FIFO, a descriptor path such as `/dev/fd/3`) get the
 * finished bytes copied into them, with no temporary file beside them and no rename. A run's
 * outputs are committed together or not at all (see `commitTogether`).
 */
import { InputError, UsageError } from "../errors.ts";
import { AtomicFile } from "./atomic_file.ts";
import { writeError } from "./os_errors.ts";
import { isStdinPath } from "./inputs.ts";
import { DiscardedImage } from "./discarded_image.ts";
import type { ByteSink } from "./byte_stream.ts";
import { readFullyAt } from "./file_reader.ts";
import { withSignalsHeld } from "./signals.ts";
import { basename, dirname, join } from "./path.ts";
import type { StdoutState } from "./standard_output.ts";

/** Where the image is built: a temporary file, a spool, or nowhere (for /dev/null). */
export interface ImageFile extends ByteSink {
  readBack(offset: number, length: number): Promise<Uint8Array>;
  size(): Promise<number>;
  abort(): Promise<void>;
}

/** True when `path` is the null device (compared by device number, not by name). */
async function isNullDevice(path: string): Promise<boolean> {
  if (Deno.build.os === "windows") return false;
  try {
    const [a, b] = await Promise.all([Deno.stat(path), Deno.stat("/dev/null")]);
    return a.isCharDevice === true && a.rdev !== null && a.rdev === b.rdev;
  } catch {
    return false;
  }
}

/** One input path of the run and the option that gave it. */
export interface NamedInput {
  option: string;
  path: string | undefined;
  /**
   * What messages call it, when not `option path`: a file read for an input folder
   * (`aml/dsdt.dsl, read for -acpi_dir aml`).
   */
  describe?: string;
}

/**
 * What the process knows of a standard stream: the regular file it is (device and inode),
 * `"other"` (a pipe, a terminal, a device), or undefined when it cannot tell (Deno lets a
 * program stat /dev/stdin only with all permissions).
 */
export type StreamIdentity = { dev: number; ino: number } | "other" | undefined;

/** The standard streams of a run, for `-`, /dev/stdout and the identity checks. */
export interface StandardStreams {
  /** Standard output, for `-o -` (and `-o /dev/stdout`). */
  stdout?: WritableStream<Uint8Array>;
  stdoutIsTerminal?: boolean;
  /** Standard output was closed when the process started (where this can be told). */
  stdoutClosed?: boolean;
  /**
   * Tells what standard output is, asked only when an output goes there (the CLI passes
   * `probeStandardOutput`): closed, or the null device, refuses the output.
   */
  stdoutProbe?: () => Promise<StdoutState>;
  /** `--force`: write binary output to a terminal. */
  force?: boolean;
  /** What standard input is, when an input is read from it. */
  stdinIdentity?: StreamIdentity;
  /** What standard output is, when an output is written to it. */
  stdoutIdentity?: StreamIdentity;
  /** What errors call `stdout`: a library's stream is "the output stream". */
  stdoutName?: string;
}

/** What `planOutputs` needs to know. */
export interface OutputRequest extends StandardStreams {
  /** `-o`: a path, or `-` for standard output. */
  output: string;
  measurementFile?: string;
  inputs: readonly NamedInput[];
  /** Name options by the library's request fields in messages. */
  fieldNames?: boolean;
}

/** One output of a run: the option that names it and the path given. */
export interface OutputSpec {
  option: string;
  given: string;
  /** Text (JSON): fine on a terminal. */
  text?: boolean;
}

/** What `planOutputTargets` needs to know. */
export interface OutputsRequest extends StandardStreams {
  outputs: readonly OutputSpec[];
  inputs: readonly NamedInput[];
  /** Name options by the library's request fields (`output`, not `-o`) in messages. */
  fieldNames?: boolean;
}

/** The library's request field of each command-line option an output or input comes from. */
const FIELD_NAMES: Record<string, string> = {
  "-o": "output",
  "-measurement_file": "measurementFile",
  "--payload-out": "payloadOut",
  "the input": "file",
  "-kernel": "kernel",
  "-rdinit": "initrd",
  "-shared_payload": "sharedPayload",
  "-sign_key": "signKey",
  "-author_key": "authorKey",
  "-config_file": "teiConfig",
  "-acpi_dir": "acpi",
  "-symbol_elf": "symbolElf",
  "-vmpl2_kernel": "vmpl2Kernel",
  "--id-signature": "idSignature",
  "--id-public-key": "idPublicKey",
  "--payload": "payload",
  "--author-signature": "authorSignature",
  "--author-public-key": "authorPublicKey",
};

/** How one output is written. */
export interface OutputTarget {
  /** The option that names it (`-o`, `-measurement_file`). */
  option: string;
  /** As given on the command line. */
  given: string;
  /**
   * `file`: a regular file (or a new one), written beside and renamed; `stdout`: standard
   * output; `stream`: an existing target that is not a regular file, opened and written.
   */
  kind: "file" | "stdout" | "stream";
  /** The path written: for a symlink, its final target. */
  path: string;
  /** What errors call a `stdout` target (default "standard output"). */
  label?: string;
}

/** Names that mean standard output; Deno opens these only with all access, so they map. */
export const STDOUT_PATHS = [
  "-",
  "/dev/stdout",
  "/dev/fd/1",
  "/proc/self/fd/1",
  "/proc/thread-self/fd/1",
];

/**
 * A path that names an open descriptor (`/dev/fd/N`, `/proc/self/fd/N`, what a shell's
 * `>(...)` gives, `/dev/stderr`): the number, or undefined for any other path. Such a path is
 * written through as it is, never resolved to a link target or replaced by a rename.
 */
function descriptorOfPath(path: string): number | undefined {
  if (path === "/dev/stdout") return 1;
  if (path === "/dev/stderr") return 2;
  const m = /^\/(?:dev\/fd|proc\/(self|thread-self|\d+)\/fd)\/(\d+)$/.exec(path);
  if (!m) return undefined;
  if (m[1] !== undefined && /^\d+$/.test(m[1]) && Number(m[1]) !== Deno.pid) return undefined;
  return Number(m[2]);
}

const WINDOWS = Deno.build.os === "windows";

function isAbsolute(path: string): boolean {
  return path.startsWith("/") || (WINDOWS && /^([a-zA-Z]:)?[\\/]/.test(path));
}

/**
 * Follows `path` through symlinks to the file a write should replace: an output that is a
 * symlink is written through to its target, and the link stays.
 */
async function resolveOutputPath(path: string): Promise<string> {
  for (let hops = 0; hops < 40; hops++) {
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(path);
    } catch {
      return path;
    }
    if (!info.isSymlink) return path;
    const target = await Deno.readLink(path);
    path = isAbsolute(target) ? target : join(dirname(path), target);
  }
  throw new InputError(`cannot write ${path}: too many levels of symbolic links`);
}

async function statOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new InputError(`cannot use ${path}: ${(e as Error).message}`);
  }
}

/** Resolves and checks one output; nothing is created. */
async function planTarget(
  option: string,
  given: string,
  request: StandardStreams,
): Promise<OutputTarget> {
  if (STDOUT_PATHS.includes(given) || descriptorOfPath(given) === 1) {
    if (!request.stdout) throw new UsageError(`${option} ${given} needs a standard output`);
    const state = request.stdoutClosed ? "closed" : await request.stdoutProbe?.() ?? "open";
    if (state === "closed") {
      throw new InputError(`cannot write ${option} ${given}: standard output is closed`);
    }
    if (state === "null-device") {
      throw new InputError(
        `cannot write ${option} ${given}: standard output is closed or /dev/null, which igvmgen cannot tell apart without all permissions; to discard the output, give ${option} /dev/null`,
      );
    }
    if (request.stdoutIsTerminal && !request.force) {
      throw new UsageError(
        `${option} ${given}: standard output is a terminal; redirect it, or give --force`,
      );
    }
    return { option, given, kind: "stdout", path: given, label: request.stdoutName };
  }
  if (descriptorOfPath(given) !== undefined) return await planDescriptorTarget(option, given);
  const path = await resolveOutputPath(given);
  const info = await statOrUndefined(path);
  if (info?.isDirectory) throw new InputError(`cannot write ${option} ${given}: it is a folder`);
  if (info && !info.isFile) return { option, given, kind: "stream", path };
  const dir = dirname(path);
  const folder = await statOrUndefined(dir);
  if (!folder) {
    throw new InputError(`cannot write ${option} ${given}: the folder ${dir} does not exist`);
  }
  if (!folder.isDirectory) {
    throw new InputError(`cannot write ${option} ${given}: ${dir} is not a folder`);
  }
  return { option, given, kind: "file", path };
}

/**
 * An output at a descriptor path other than standard output: written through (opened for
 * appending, so a log file given as `3>>log` is neither replaced nor overwritten). Deno opens
 * such paths only with all permissions; with fewer the error says how to do without.
 */
async function planDescriptorTarget(option: string, given: string): Promise<OutputTarget> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(given);
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
      throw new InputError(
        `cannot write ${option} ${given}: the runtime lets igvmgen open a descriptor path only with all permissions; write ${option} - and redirect standard output instead`,
      );
    }
    if (e instanceof Deno.errors.NotFound) {
      throw new InputError(`cannot write ${option} ${given}: no such open descriptor`);
    }
    throw new InputError(`cannot write ${option} ${given}: ${(e as Error).message}`);
  }
  if (info.isDirectory) throw new InputError(`cannot write ${option} ${given}: it is a folder`);
  return { option, given, kind: "stream", path: given };
}

/**
 * A file's identity: device and inode when the file exists (so two spellings, hard links and
 * symlinks compare equal), else its folder's real path and its name. `known`: the caller's
 * Deno.stat of `path`, saving a second one.
 */
async function identityOf(
  path: string,
  known?: Deno.FileInfo,
): Promise<string | undefined> {
  const info = known ?? await Deno.stat(path).catch(() => undefined);
  if (info && info.dev !== null && info.ino !== null && Deno.build.os !== "windows") {
    return `inode ${info.dev}:${info.ino}`;
  }
  try {
    return `path ${await Deno.realPath(path)}`;
  } catch {
    const dir = await Deno.realPath(dirname(path)).catch(() => undefined);
    return dir === undefined ? undefined : `path ${join(dir, basename(path))}`;
  }
}

/** The error for an output that is the input `input` (`what`: how to name its path). */
function sameAsInput(out: OutputTarget, input: NamedInput, what = input.path): UsageError {
  return new UsageError(
    `${out.option} ${out.given} is the same file as ${
      input.describe ?? `${input.option} ${what}`
    }: refusing to overwrite an input`,
  );
}

/**
 * Refuses an output that is one of `inputs` (device and inode, links followed), for inputs
 * known only once read (the files a zip's `.dsl` tables include): called after planning and
 * before anything is written.
 */
export async function refuseOutputsOverInputs(
  outputs: readonly (OutputTarget | undefined)[],
  inputs: readonly NamedInput[],
): Promise<void> {
  const ids: [OutputTarget, string | undefined][] = [];
  for (const out of outputs) {
    if (out && out.kind !== "stdout") ids.push([out, await identityOf(out.path)]);
  }
  for (const input of inputs) {
    if (input.path === undefined) continue;
    const info = await Deno.stat(input.path).catch(() => undefined);
    if (!info?.isFile) continue;
    const id = await identityOf(input.path, info);
    const hit = ids.find(([, outId]) => id !== undefined && outId === id);
    if (hit) throw sameAsInput(hit[0], input);
  }
}

/** The identity of a standard stream that is a regular file. */
function streamId(identity: StreamIdentity): string | undefined {
  return typeof identity === "object" ? `inode ${identity.dev}:${identity.ino}` : undefined;
}

/** True when an input path names standard input. */
function readsStdin(input: NamedInput): boolean {
  return input.path !== undefined && (input.path === "-" || isStdinPath(input.path));
}

/**
 * Checks the outputs before any work: their folders exist, they are not folders, none is
 * an input (standard input and output included, when they are regular files), no two are
 * the same file, and binary output goes to a terminal only with `--force`. Creates nothing.
 */
export async function planOutputTargets(request: OutputsRequest): Promise<OutputTarget[]> {
  if (request.fieldNames) {
    const field = <T extends { option: string }>(x: T): T => ({
      ...x,
      option: FIELD_NAMES[x.option] ?? x.option,
    });
    request = {
      ...request,
      fieldNames: false,
      outputs: request.outputs.map(field),
      inputs: request.inputs.map(field),
    };
  }
  const outputs: OutputTarget[] = [];
  for (const spec of request.outputs) {
    outputs.push(
      await planTarget(
        spec.option,
        spec.given,
        spec.text ? { ...request, stdoutIsTerminal: false } : request,
      ),
    );
  }
  const ids = new Map<OutputTarget, string | undefined>();
  for (const out of outputs) {
    ids.set(
      out,
      out.kind === "stdout"
        ? streamId(request.stdoutIdentity) ?? "stdout"
        : await identityOf(out.path),
    );
  }
  for (const input of request.inputs) {
    if (input.path === undefined) continue;
    if (readsStdin(input)) {
      const id = streamId(request.stdinIdentity);
      const out = outputs.find((o) => id !== undefined && ids.get(o) === id);
      if (out) throw sameAsInput(out, input, `${input.path} (standard input)`);
      continue;
    }
    const info = await Deno.stat(input.path).catch(() => undefined);
    if (!info) continue; // a missing input is reported when it is opened
    const id = await identityOf(input.path, info);
    if (info.isDirectory) {
      // A folder of ACPI tables: an output there named like a table would become an input.
      for (const out of outputs) {
        if (
          out.kind === "file" && /\.(dsl|aml)$/i.test(basename(out.path)) &&
          await identityOf(dirname(out.path)) === id
        ) {
          throw new UsageError(
            `${out.option} ${out.given} would write a table into ${input.option} ${input.path}: refusing to change an input folder`,
          );
        }
      }
      continue;
    }
    for (const out of outputs) {
      if (id !== undefined && ids.get(out) === id) throw sameAsInput(out, input);
    }
  }
  for (let i = 0; i < outputs.length; i++) {
    for (let j = i + 1; j < outputs.length; j++) {
      const [a, b] = [outputs[i], outputs[j]];
      if (
        ids.get(a) !== undefined && ids.get(a) === ids.get(b) &&
        !(a.kind === "stream" && await isNullDevice(a.path)) // /dev/null twice is fine
      ) {
        throw new UsageError(
          `${a.option} ${a.given} and ${b.option} ${b.given} are the same ${
            a.kind === "stdout" && b.kind === "stdout" ? "standard output" : "file"
          }`,
        );
      }
    }
  }
  return outputs;
}

/** True when two files have the same bytes (compared in 1 MiB chunks). */
async function sameBytes(a: string, b: string, size: number): Promise<boolean> {
  const [fa, fb] = await Promise.all([Deno.open(a), Deno.open(b)]);
  try {
    const chunk = 1 << 20;
    for (let at = 0; at < size; at += chunk) {
      const length = Math.min(chunk, size - at);
      const [x, y] = await Promise.all([
        readFullyAt(fa, at, new Uint8Array(length)),
        readFullyAt(fb, at, new Uint8Array(length)),
      ]);
      if (x.some((v, i) => v !== y[i])) return false;
    }
    return true;
  } finally {
    fa.close();
    fb.close();
  }
}

/**
 * When which file standard input is cannot be told (stat of /dev/stdin needs all
 * permissions), refuses an existing output with exactly the bytes read from it (spooled to
 * `spool`): it may be that very file (`igvmgen -o bzImage - < bzImage`). Nothing has been
 * written yet when this runs.
 */
export async function refuseCopiesOfStdin(
  plan: OutputPlan,
  spool: string,
  option: string,
): Promise<void> {
  const size = (await Deno.stat(spool)).size;
  for (const out of [plan.image, plan.measurement]) {
    if (out?.kind !== "file") continue;
    const info = await Deno.stat(out.path).catch(() => undefined);
    if (!info?.isFile || info.size !== size || !await sameBytes(out.path, spool, size)) continue;
    throw new UsageError(
      `${out.option} ${out.given} has the same bytes as ${option} (standard input), so it may be the same file: refusing to overwrite an input`,
    );
  }
}

/** Both outputs of a generation, planned. */
export interface OutputPlan {
  image: OutputTarget;
  measurement?: OutputTarget;
}

/** {@link planOutputTargets} for `-o` and `-measurement_file`. */
export async function planOutputs(request: OutputRequest): Promise<OutputPlan> {
  const [image, measurement] = await planOutputTargets({
    ...request,
    outputs: [
      { option: "-o", given: request.output },
      ...(request.measurementFile === undefined
        ? []
        : [{ option: "-measurement_file", given: request.measurementFile, text: true }]),
    ],
  });
  return { image, measurement };
}

/**
 * Opens where the image is built: a temporary file beside it, or a spool. For /dev/null
 * nothing is kept but the headers, unless `keepAll` (`--verify` reads every page back).
 */
export async function openImageOutput(
  target: OutputTarget,
  keepAll = false,
): Promise<ImageFile> {
  if (target.kind === "stream" && !keepAll && await isNullDevice(target.path)) {
    return new DiscardedImage();
  }
  try {
    return target.kind === "file"
      ? await AtomicFile.create(target.path, target.given)
      : await AtomicFile.createSpool();
  } catch (e) {
    throw writeError(target.given, e);
  }
}

/** Opens an existing target that is not a regular file (a FIFO, a device) for writing. */
async function openTargetFile(target: OutputTarget): Promise<Deno.FsFile> {
  const append = descriptorOfPath(target.path) !== undefined;
  try {
    return await Deno.open(target.path, { write: true, append });
  } catch (e) {
    throw writeError(target.given, e);
  }
}

/** Writes bytes straight into a target that is not a regular file (no temp, no rename). */
async function writeStreamTarget(
  target: OutputTarget,
  stdout: WritableStream<Uint8Array> | undefined,
  write: (stream: WritableStream<Uint8Array>) => Promise<void>,
): Promise<void> {
  if (target.kind === "stdout") return await write(stdout!);
  const file = await openTargetFile(target);
  try {
    await write(file.writable);
  } finally {
    try {
      file.close();
    } catch { /* closed with its stream */ }
  }
}

/** How errors name a target. */
function targetName(target: OutputTarget): string {
  return target.kind === "stdout" ? target.label ?? "standard output" : target.given;
}

/**
 * Writes a small output whole (a measurement JSON, a payload): a regular file through a
 * temporary file beside it, standard output and other targets directly.
 */
export async function writeSmallOutput(
  target: OutputTarget,
  bytes: Uint8Array,
  stdout?: WritableStream<Uint8Array>,
): Promise<void> {
  if (target.kind === "file") {
    const staged = await stageSmallOutput(target, bytes);
    await staged.commit();
  } else if (target.kind === "stdout") {
    const writer = stdout!.getWriter();
    try {
      await writer.write(bytes);
    } catch (e) {
      throw writeError(targetName(target), e);
    } finally {
      writer.releaseLock();
    }
  } else {
    // Written with the file's own writes: data sent through `FsFile.writable` and then
    // closed can be lost on a FIFO (the reader got no bytes).
    const file = await openTargetFile(target);
    try {
      let done = 0;
      while (done < bytes.length) done += await file.write(bytes.subarray(done));
    } catch (e) {
      throw writeError(target.given, e);
    } finally {
      file.close();
    }
  }
}

/** A small output written to its temporary file, ready to commit. */
async function stageSmallOutput(target: OutputTarget, bytes: Uint8Array): Promise<AtomicFile> {
  const staged = await AtomicFile.create(target.path, target.given).catch((e) => {
    throw writeError(target.given, e);
  });
  await staged.writeAt(0, bytes).catch(async (e) => {
    await staged.abort();
    throw e;
  });
  return staged;
}

/**
 * Commits an image built by {@link openImageOutput}: renames a regular file into place, or
 * copies the spool into standard output or a target that is not a regular file.
 */
export async function commitImage(
  target: OutputTarget,
  image: ImageFile,
  stdout?: WritableStream<Uint8Array>,
): Promise<void> {
  if (image instanceof DiscardedImage) return; // nothing to write
  if (target.kind === "file") return await (image as AtomicFile).commit();
  await writeStreamTarget(
    target,
    stdout,
    (stream) => (image as AtomicFile).commitTo(stream, targetName(target)),
  );
}

/**
 * Flushes a finished image bound for a regular file to disk and closes it, ahead of
 * {@link commitOutputs} (whose flush then has nothing left to do), so that the flush can
 * overlap other work such as the self-check's reading back. Nothing for other targets:
 * streams and /dev/null are not flushed.
 */
export async function flushImageFile(target: OutputTarget, image: ImageFile): Promise<void> {
  if (target.kind === "file" && image instanceof AtomicFile) await image.flush();
}

/** One finished output of a run: built in `image`, or small `bytes` written whole. */
export interface FinishedOutput {
  target: OutputTarget;
  image?: ImageFile;
  bytes?: Uint8Array;
}

/**
 * How long a commit waits for a folder's lock. Another igvmgen run holds it for its renames
 * only (milliseconds); a lock held longer is some other program's, and is not waited for.
 */
const FOLDER_LOCK_WAIT_MS = 10_000;

/** Takes `file`'s exclusive lock, polling, within `ms`; false when it stayed taken. */
async function lockWithin(file: Deno.FsFile, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  for (let wait = 1;; wait = Math.min(wait * 2, 50)) {
    if (await file.tryLock(true)) return true;
    if (performance.now() >= end) return false;
    await new Promise((r) => setTimeout(r, wait));
  }
}

/**
 * Locks the folders outputs are renamed into (an exclusive lock on each folder, taken in
 * one order), so that two runs writing the same outputs put theirs in place one after the
 * other, never interleaved. Returns the release. Where a folder cannot be opened or locked
 * (within FOLDER_LOCK_WAIT_MS), it goes unlocked.
 */
async function lockFolders(paths: readonly string[]): Promise<() => void> {
  const held: Deno.FsFile[] = [];
  if (Deno.build.os !== "windows") {
    for (const dir of [...new Set(paths.map((p) => dirname(p)))].sort()) {
      try {
        const folder = await Deno.open(dir, { read: true });
        try {
          if (await lockWithin(folder, FOLDER_LOCK_WAIT_MS)) held.push(folder);
          else folder.close();
        } catch {
          folder.close();
        }
      } catch { /* not openable: unlocked */ }
    }
  }
  return () => {
    for (const folder of held) {
      try {
        folder.close(); // closing drops the lock
      } catch { /* already closed */ }
    }
  };
}

/**
 * Puts a run's outputs in place together or not at all. Regular files are renamed into place
 * under the output folders' locks and with termination signals held, each replaced output
 * kept until all are in place; standard output and other streams get their bytes after that
 * (they cannot be taken back), and if one fails the files are put back as they were.
 * Everything not committed is removed.
 */
export async function commitTogether(
  outputs: readonly FinishedOutput[],
  stdout?: WritableStream<Uint8Array>,
): Promise<void> {
  const files: AtomicFile[] = [];
  const streams: FinishedOutput[] = [];
  try {
    for (const out of outputs) {
      if (out.image instanceof DiscardedImage) continue;
      if (out.target.kind !== "file") streams.push(out);
      else files.push(out.image as AtomicFile ?? await stageSmallOutput(out.target, out.bytes!));
    }
    // Flushes can take long: done before the locks and the held signals.
    for (const file of files) await file.flush();
  } catch (e) {
    for (const file of files) await file.abort();
    throw e;
  }
  const release = await lockFolders(files.map((f) => f.path));
  try {
    const swapped: Awaited<ReturnType<AtomicFile["swapIn"]>>[] = [];
    const undo = async () => {
      while (swapped.length) await swapped.pop()!.undo();
    };
    await withSignalsHeld(async () => {
      try {
        for (const file of files) swapped.push(await file.swapIn());
      } catch (e) {
        await undo();
        throw e;
      }
    });
    try {
      for (const out of streams) {
        if (out.image) await commitImage(out.target, out.image, stdout);
        else await writeSmallOutput(out.target, out.bytes!, stdout);
      }
    } catch (e) {
      await withSignalsHeld(undo);
      throw e;
    }
    for (const s of swapped) await s.keep();
  } finally {
    release();
    // No-ops for the files renamed into place and the spools already copied out.
    for (const file of files) await file.abort();
    for (const out of streams) await out.image?.abort().catch(() => {});
  }
}

/**
 * Commits a generation's or a signing's outputs together (see {@link commitTogether}): the
 * image and its measurement JSON, so neither appears without the other, and two runs to the
 * same files never leave one's image beside the other's JSON.
 */
export async function commitOutputs(
  plan: OutputPlan,
  image: ImageFile,
  measurementJson: string | undefined,
  stdout?: WritableStream<Uint8Array>,
): Promise<void> {
  const outputs: FinishedOutput[] = [{ target: plan.image, image }];
  if (plan.measurement && measurementJson !== undefined) {
    outputs.push({ target: plan.measurement, bytes: new TextEncoder().encode(measurementJson) });
  }
  await commitTogether(outputs, stdout);
}
