/**
 * Runs igvmgen exactly as `deno task igvmgen` does: the permission flags are read from
 * deno.json's task, so a test fails when the code needs more than the task (and the
 * compiled binary, which gets the same flags) grants.
 */
import { ROOT } from "./helpers.ts";

interface DenoJson {
  tasks: Record<string, string>;
}

/** The permission flags of a deno.json task (the words between `deno run|compile` and the script). */
export function taskPermissionFlags(task: string): string[] {
  const json = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)) as DenoJson;
  return json.tasks[task].split(/\s+/).filter((w) => w.startsWith("--allow-"));
}

/** How to run the CLI. */
export interface TaskRunOptions {
  stdin?: Uint8Array | "null" | "inherit" | "piped";
  /** Extra environment (TMPDIR for a private temporary folder). */
  env?: Record<string, string>;
  cwd?: string;
}

/** The result of a run. */
export interface TaskRunResult {
  code: number;
  signal: Deno.Signal | null;
  stdout: Uint8Array;
  stderr: string;
}

/** The command that runs main.ts with the task's permissions. */
export function taskCommand(
  args: string[],
  options: TaskRunOptions & { stdout?: "piped" | "null" },
): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...taskPermissionFlags("igvmgen"), `${ROOT}main.ts`, ...args],
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
  const child = taskCommand(args, options).spawn();
  if (options.stdin instanceof Uint8Array) {
    const w = child.stdin.getWriter();
    await w.write(options.stdin).catch(() => {});
    await w.close().catch(() => {});
  }
  const out = await child.output();
  return {
    code: out.code,
    signal: out.signal,
    stdout: out.stdout,
    stderr: new TextDecoder().decode(out.stderr),
  };
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
