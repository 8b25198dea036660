/**
 * Runs igvmgen exactly as `deno task igvmgen` does: the permission flags are read from
 * deno.json's task, so a test fails when the code needs more than the task (and the
 * compiled binary, which gets the same flags) grants. A run is timed and can report its
 * peak RSS (with GNU time) or feed its output to a shell pipeline.
 */
import { ROOT, taskPermissionFlags } from "./helpers.ts";

/** GNU time, to read the peak RSS of a run; undefined when it is not installed. */
const GNU_TIME = (() => {
  try {
    const r = new Deno.Command("/usr/bin/time", {
      args: ["-f", "%M", "true"],
      stdout: "null",
      stderr: "piped",
    }).outputSync();
    return r.success && /^\d+\s*$/.test(new TextDecoder().decode(r.stderr))
      ? "/usr/bin/time"
      : undefined;
  } catch {
    return undefined;
  }
})();

/** True when runs with `peakRss` report their peak RSS. */
export const HAVE_PEAK_RSS = GNU_TIME !== undefined;

/** How to run the CLI. */
export interface TaskRunOptions {
  stdin?: Uint8Array | "null" | "inherit" | "piped";
  /** Extra environment (TMPDIR for a private temporary folder). */
  env?: Record<string, string>;
  cwd?: string;
  /** Run under GNU time (when installed) and report the peak RSS. */
  peakRss?: boolean;
  /**
   * A bash pipeline tail (`| head -5`) that igvmgen's standard output feeds; the exit
   * code is still igvmgen's (PIPESTATUS[0]).
   */
  shellTail?: string;
}

/** The result of a run. */
export interface TaskRunResult {
  code: number;
  signal: Deno.Signal | null;
  stdout: Uint8Array;
  stderr: string;
  /** Wall-clock time of the run. */
  seconds: number;
  /** Peak resident memory in MiB, with `peakRss` when GNU time is installed. */
  peakRssMiB?: number;
}

/** The words that run main.ts with the task's permissions. */
function denoRunWords(args: string[]): string[] {
  return [
    Deno.execPath(),
    "run",
    "--quiet",
    ...taskPermissionFlags("igvmgen"),
    `${ROOT}main.ts`,
    ...args,
  ];
}

/** The command that runs main.ts with the task's permissions (`peakRss` and `shellTail` aside). */
export function taskCommand(
  args: string[],
  options: TaskRunOptions & { stdout?: "piped" | "null" },
  rssFile?: string,
): Deno.Command {
  let words = denoRunWords(args);
  if (rssFile !== undefined && GNU_TIME) words = [GNU_TIME, "-f", "%M", "-o", rssFile, ...words];
  if (options.shellTail) {
    const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
    const line = `${words.map(quote).join(" ")} ${options.shellTail}; exit \${PIPESTATUS[0]}`;
    words = ["bash", "-c", line];
  }
  return new Deno.Command(words[0], {
    args: words.slice(1),
    stdin: options.stdin instanceof Uint8Array ? "piped" : options.stdin ?? "null",
    stdout: options.stdout ?? "piped",
    stderr: "piped",
    cwd: options.cwd ?? ROOT,
    env: { NO_COLOR: "1", ...options.env },
  });
}

/** Runs main.ts under the task's permissions and waits for it. */
export async function runTask(
  args: string[],
  options: TaskRunOptions = {},
): Promise<TaskRunResult> {
  const dir = options.peakRss && GNU_TIME
    ? await Deno.makeTempDir({ prefix: "igvmgen-test-run-" })
    : undefined;
  try {
    const rssFile = dir === undefined ? undefined : `${dir}/rss`;
    const started = performance.now();
    const child = taskCommand(args, options, rssFile).spawn();
    if (options.stdin instanceof Uint8Array) {
      const w = child.stdin.getWriter();
      await w.write(options.stdin).catch(() => {});
      await w.close().catch(() => {});
    }
    const out = await child.output();
    const seconds = (performance.now() - started) / 1000;
    let peakRssMiB: number | undefined;
    if (rssFile !== undefined) {
      const text = await Deno.readTextFile(rssFile).catch(() => "");
      const kb = text.trim().split("\n").map(Number).filter(Number.isFinite).at(-1);
      if (kb !== undefined) peakRssMiB = kb / 1024;
    }
    return {
      code: out.code,
      signal: out.signal,
      stdout: out.stdout,
      stderr: new TextDecoder().decode(out.stderr),
      seconds,
      peakRssMiB,
    };
  } finally {
    if (dir !== undefined) await Deno.remove(dir, { recursive: true });
  }
}

/**
 * The measurement JSON of `igvmgen -o DIR/a.igvm -kernel DIR/k -measurement_file DIR/a.json`,
 * the reference for runs that write their measurement elsewhere.
 */
export async function referenceMeasurement(dir: string): Promise<string> {
  const args = ["-o", `${dir}/a.igvm`, "-kernel", `${dir}/k`, "-measurement_file", `${dir}/a.json`];
  const r = await runTask(args);
  if (r.code !== 0) throw new Error(`the reference run failed: ${r.stderr}`);
  return Deno.readTextFileSync(`${dir}/a.json`);
}

/** Asserts one `error:` line on stderr, no stack trace, and the exit code. */
export function oneLineError(
  r: { code: number; stderr: string },
  code: number,
  ...includes: string[]
) {
  const lines = r.stderr.trim().split("\n").filter((l) => l !== "");
  if (r.code !== code) throw new Error(`exit ${r.code}, expected ${code}: ${r.stderr}`);
  if (lines.length !== 1) throw new Error(`one line expected: ${r.stderr}`);
  if (!lines[0].startsWith("error: ")) throw new Error(`not an error line: ${lines[0]}`);
  if (/\bat .*\.ts:\d+/.test(r.stderr) || r.stderr.includes("Uncaught")) {
    throw new Error(`a stack trace: ${r.stderr}`);
  }
  for (const s of includes) {
    if (!lines[0].includes(s)) throw new Error(`"${lines[0]}" lacks "${s}"`);
  }
  return lines[0];
}

let scriptInstalled: boolean | undefined;

/** True when script(1) is installed, which gives a run a terminal (else prints a note). */
export function haveScript(): boolean {
  if (scriptInstalled === undefined) {
    try {
      new Deno.Command("script", { args: ["-V"], stdout: "null", stderr: "null" }).outputSync();
      scriptInstalled = true;
    } catch {
      scriptInstalled = false;
    }
  }
  if (!scriptInstalled) {
    console.log("note: script(1) is not installed; the terminal case is skipped");
  }
  return scriptInstalled;
}

/**
 * Runs igvmgen under the task's permissions with a terminal as standard output (script(1)).
 * `args` is a shell word list; `dir` is a scratch folder for the standard error and the exit
 * code, which script(1) does not pass on.
 */
export async function runOnTerminal(
  args: string,
  dir: string,
): Promise<{ out: Uint8Array; code: number; stderr: string }> {
  const line = `${denoRunWords([]).join(" ")} ${args} 2>${dir}/err; echo "exit=$?" >${dir}/code`;
  const r = await new Deno.Command("script", {
    args: ["-qec", line, "/dev/null"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "null",
    env: { NO_COLOR: "1" },
  }).output();
  return {
    out: r.stdout,
    code: Number(Deno.readTextFileSync(`${dir}/code`).trim().split("=")[1]),
    stderr: Deno.readTextFileSync(`${dir}/err`),
  };
}
