/**
 * Running the CLI exactly as a user does: `deno run` with the permissions of `deno task
 * igvmgen` (read from deno.json), timed, with the peak RSS from /usr/bin/time when present.
 */
import { ROOT } from "./helpers.ts";

/** The permission flags of the `igvmgen` task in deno.json. */
export function igvmgenTaskFlags(): string[] {
  const config = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  const words = (config.tasks.igvmgen as string).split(/\s+/);
  return words.slice(words.indexOf("run") + 1, words.indexOf("main.ts"));
}

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

/** True when runs report their peak RSS. */
export const HAVE_PEAK_RSS = GNU_TIME !== undefined;

/** A finished run. */
export interface UserRun {
  code: number;
  stdout: string;
  stderr: string;
  seconds: number;
  /** Peak resident memory in MiB, when GNU time is installed. */
  peakRssMiB?: number;
}

/**
 * Runs `igvmgen ARGS` under the task's permissions. With `shell`, the command is a bash
 * pipeline in which `IGVMGEN` stands for the igvmgen command, and the exit code is that of
 * igvmgen (pipefail semantics of PIPESTATUS[0]).
 */
export async function runUserCli(
  args: string[],
  options: { shellTail?: string } = {},
): Promise<UserRun> {
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-test-run-" });
  try {
    const rssFile = `${dir}/rss`;
    const deno = [Deno.execPath(), "run", "--quiet", ...igvmgenTaskFlags(), `${ROOT}main.ts`];
    const timed = GNU_TIME ? [GNU_TIME, "-f", "%M", "-o", rssFile, ...deno] : deno;
    const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
    const command = options.shellTail
      ? [
        "bash",
        "-c",
        `${[...timed, ...args].map(quote).join(" ")} ${options.shellTail}; exit \${PIPESTATUS[0]}`,
      ]
      : [...timed, ...args];
    const started = performance.now();
    const out = await new Deno.Command(command[0], {
      args: command.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      cwd: ROOT,
      env: { NO_COLOR: "1" },
    }).output();
    const seconds = (performance.now() - started) / 1000;
    const dec = new TextDecoder();
    let peakRssMiB: number | undefined;
    if (GNU_TIME) {
      const text = await Deno.readTextFile(rssFile).catch(() => "");
      const kb = text.trim().split("\n").map(Number).filter(Number.isFinite).at(-1);
      if (kb !== undefined) peakRssMiB = kb / 1024;
    }
    return {
      code: out.code,
      stdout: dec.decode(out.stdout),
      stderr: dec.decode(out.stderr),
      seconds,
      peakRssMiB,
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
