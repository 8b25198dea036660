/**
 * Compiling one `.dsl` table with iasl, bounded: the source is copied into igvmgen's own
 * temporary folder under a plain name (iasl cuts its `-p` prefix at the first dot, so a
 * table named `x.v2.dsl` or a folder with a dot in its name would lose its output), the files
 * it `Include`s must be regular files of bounded size, and iasl itself runs with a time limit
 * and a cap on what it prints and writes. Every error names the table.
 */
import { join } from "../lib/io/path.ts";
import { describeKind } from "./acpi_image.ts";
import { trackChildProcess } from "../lib/io/signals.ts";

/** The most bytes of a table source or of a file it includes. */
const DSL_FILE_MAX = 8 << 20;

/** How long one iasl run may take (a real table compiles in well under a second). */
const IASL_TIME_LIMIT_MS = 30_000;

/** The most bytes iasl may print, and the most any file it writes may grow to. */
const IASL_OUTPUT_MAX = 1 << 20;
const IASL_FILE_MAX = 16 << 20;

/** Includes are followed this deep, and at most this many files are looked at in all. */
const INCLUDE_DEPTH_MAX = 16;
const INCLUDE_FILES_MAX = 256;

/** How one table is compiled. */
export interface IaslRun {
  /** What errors call the table (its path, or `archive.zip:name.dsl`). */
  table: string;
  /** The source text, read whole (at most DSL_FILE_MAX bytes). */
  source: Uint8Array;
  /**
   * Folders iasl searches for relative `Include` names, in order: the table's own folder (for
   * a folder of tables) and the current folder, as when iasl compiles the file where it is.
   */
  includeDirs: readonly string[];
  /** Our temporary folder: the copy, and iasl's outputs, go here. */
  workDir: string;
  /** A plain name (letters and digits) for the copy and its outputs. */
  stem: string;
  /** The iasl command. */
  iasl: string;
  /** Overrides IASL_TIME_LIMIT_MS (tests). */
  timeLimitMs?: number;
  /** Told the files the source includes (see includedFiles) before iasl runs. */
  onIncludes?: (paths: string[]) => void;
}

/** Why a table could not be compiled; the message names the table. */
export class IaslError extends Error {
  /** The class name, for messages and logs. */
  override name = "IaslError";
}

/**
 * The file names a source includes: ASL `Include ("name")` and the preprocessor's
 * `#include "name"`, `#include <name>` and `#includebuffer "name" Target`. Matches inside
 * comments count too, which only means such a name is checked as well.
 */
function includedNames(source: string): string[] {
  const names: string[] = [];
  const pattern =
    /#\s*include(?:buffer)?\s*(?:"([^"\n]*)"|<([^>\n]*)>)|\binclude\s*\(\s*"([^"\n]*)"/gi;
  for (const m of source.matchAll(pattern)) names.push(m[1] ?? m[2] ?? m[3]);
  return names.filter((n) => n !== "");
}

/**
 * The files `source` includes, and the files those include, as iasl would open them (the
 * first of `includeDirs` that has the name): each one must be a regular file of at most
 * DSL_FILE_MAX bytes (a device or a FIFO would keep iasl reading without end). A name found
 * nowhere is left to iasl to report. Returns the paths found, in the order they were met.
 */
export async function includedFiles(
  run: Pick<IaslRun, "table" | "source" | "includeDirs">,
): Promise<string[]> {
  const seen = new Set<string>();
  const visit = async (text: string, depth: number, from: string): Promise<void> => {
    for (const name of includedNames(text)) {
      const candidates = name.startsWith("/")
        ? [name]
        : run.includeDirs.map((dir) => join(dir, name));
      for (const path of candidates) {
        let info: Deno.FileInfo;
        try {
          info = await Deno.stat(path);
        } catch (e) {
          if (e instanceof Deno.errors.NotFound) continue;
          throw new IaslError(
            `${run.table}: cannot read ${path}, which ${from} includes: ${(e as Error).message}`,
          );
        }
        if (!info.isFile) {
          throw new IaslError(
            `${run.table}: ${from} includes ${path}, which is ${
              describeKind(info, "not a regular file")
            }; only regular files can be included`,
          );
        }
        if (info.size > DSL_FILE_MAX) {
          throw new IaslError(
            `${run.table}: ${from} includes ${path}, ${info.size} bytes, more than ${DSL_FILE_MAX}`,
          );
        }
        if (seen.has(path)) break;
        seen.add(path);
        if (seen.size > INCLUDE_FILES_MAX) {
          throw new IaslError(`${run.table}: includes more than ${INCLUDE_FILES_MAX} files`);
        }
        if (depth >= INCLUDE_DEPTH_MAX) {
          throw new IaslError(`${run.table}: includes nest more than ${INCLUDE_DEPTH_MAX} deep`);
        }
        const bytes = await Deno.readFile(path).catch((e) => {
          throw new IaslError(`${run.table}: cannot read ${path}: ${(e as Error).message}`);
        });
        await visit(new TextDecoder().decode(bytes), depth + 1, path);
        break; // iasl opens the first one it finds
      }
    }
  };
  await visit(new TextDecoder().decode(run.source), 0, "it");
  return [...seen];
}

/** Reads a child's output stream, keeping the first `keep` bytes; calls `over` past `max`. */
async function drain(
  stream: ReadableStream<Uint8Array>,
  keep: number,
  max: number,
  over: () => void,
): Promise<Uint8Array> {
  const kept = new Uint8Array(keep);
  let got = 0;
  let total = 0;
  for await (const chunk of stream) {
    const n = Math.min(chunk.length, keep - got);
    kept.set(chunk.subarray(0, n), got);
    got += n;
    total += chunk.length;
    if (total > max) over();
  }
  return kept.subarray(0, got);
}

/** The sizes of the files in `dir` whose names start with `stem.` (iasl's outputs). */
async function largestOutput(dir: string, stem: string): Promise<number> {
  let largest = 0;
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.name.startsWith(`${stem}.`) || e.name === `${stem}.dsl`) continue;
      const info = await Deno.stat(join(dir, e.name)).catch(() => undefined);
      if (info) largest = Math.max(largest, info.size);
    }
  } catch { /* the folder is gone: nothing to measure */ }
  return largest;
}

/**
 * Compiles one table with iasl (`-f`: AML despite errors, as the original does; Hyper-V's DSDT
 * needs it) and returns the AML bytes.
 */
export async function compileDslTable(run: IaslRun): Promise<Uint8Array> {
  run.onIncludes?.(await includedFiles(run));
  const copy = join(run.workDir, `${run.stem}.dsl`);
  await Deno.writeFile(copy, run.source);
  const args = ["-f", ...run.includeDirs.flatMap((d) => ["-I", d]), "-p", run.stem, copy];
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(run.iasl, {
      args,
      cwd: run.workDir,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new IaslError(
        `${run.table}: compiling .dsl tables needs iasl; install acpica-tools (apt install acpica-tools) or pass compiled .aml tables`,
      );
    }
    throw new IaslError(`${run.table}: cannot run iasl: ${(e as Error).message}`, { cause: e });
  }
  const untrack = trackChildProcess(child);
  let stopped: string | undefined;
  const stop = (why: string) => {
    if (stopped) return;
    stopped = why;
    try {
      child.kill("SIGKILL");
    } catch { /* already ended */ }
  };
  const limit = run.timeLimitMs ?? IASL_TIME_LIMIT_MS;
  const timer = setTimeout(() => stop(`took more than ${limit / 1000} s`), limit);
  const watch = setInterval(async () => {
    if (await largestOutput(run.workDir, run.stem) > IASL_FILE_MAX) {
      stop(`wrote a file of more than ${IASL_FILE_MAX >> 20} MiB`);
    }
  }, 100);
  const tooMuch = () => stop(`printed more than ${IASL_OUTPUT_MAX >> 20} MiB`);
  let status: Deno.CommandStatus;
  let text: string;
  try {
    const [out, err, s] = await Promise.all([
      drain(child.stdout, 16 << 10, IASL_OUTPUT_MAX, tooMuch),
      drain(child.stderr, 16 << 10, IASL_OUTPUT_MAX, tooMuch),
      child.status,
    ]);
    status = s;
    text = (new TextDecoder().decode(out) + "\n" + new TextDecoder().decode(err))
      .replaceAll(copy, run.table);
  } finally {
    untrack();
    clearTimeout(timer);
    clearInterval(watch);
  }
  if (stopped) {
    throw new IaslError(`iasl stopped compiling ${run.table}: it ${stopped}`);
  }
  const aml = join(run.workDir, `${run.stem}.aml`);
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(aml);
  } catch {
    throw new IaslError(`iasl rejected ${run.table}: ${firstIaslError(text, status)}`);
  }
  if (info.size > DSL_FILE_MAX) {
    throw new IaslError(`iasl made ${info.size} bytes of AML from ${run.table}: too large`);
  }
  return await Deno.readFile(aml);
}

/** The first error iasl reported, or how it ended when it reported none (it can crash). */
function firstIaslError(text: string, status: Deno.CommandStatus): string {
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const error = lines.find((l) => /^Error\s/.test(l) || /\bError\b/.test(l));
  if (error) return error.replace(/\s+/g, " ");
  const ended = status.signal
    ? `iasl was killed by ${status.signal}`
    : `iasl exited with status ${status.code}`;
  return `${ended} and wrote no AML${
    lines.length ? ` (last output: ${lines[lines.length - 1]})` : ""
  }`;
}
