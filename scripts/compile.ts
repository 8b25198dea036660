/**
 * `deno task compile [--output FILE] [--target TRIPLE]`: builds the single igvmgen executable
 * (default `./igvmgen`) with only the permissions igvmgen needs, and the hashing worker's
 * module included. `deno compile` needs Deno's `denort` runtime: it downloads it from
 * dl.deno.land, or takes the file `DENORT_BIN` names. When it cannot, this says so in one
 * line, not with deno's cause chain and backtrace.
 */

/**
 * The modules `deno compile` cannot find by itself: the hashing Worker's, and those main.ts
 * loads on first use through a variable specifier (tests/compile_test.ts checks the list
 * against main.ts).
 */
export const COMPILED_LAZY_MODULES = [
  "lib/hash/hash_worker.ts",
  "lib/cli/commands.ts",
  "lib/cli/line_output.ts",
  "lib/cli/version.ts",
  "lib/cli/dump_command.ts",
  "lib/ops/generate.ts",
  "lib/cli/progress.ts",
  "lib/cli/request.ts",
];

/** igvmgen's permissions, and the modules to include. */
export const COMPILE_FLAGS = [
  "--allow-read",
  "--allow-write",
  "--allow-run=iasl",
  ...COMPILED_LAZY_MODULES.flatMap((m) => ["--include", m]),
];

/** `--output FILE` and `--target TRIPLE`, the only arguments this task takes. */
function parseArgs(args: readonly string[]): { output: string; target?: string } {
  const out: { output: string; target?: string } = { output: "igvmgen" };
  for (let i = 0; i < args.length; i++) {
    const [name, inline] = args[i].split(/=(.*)/s, 2);
    if (name !== "--output" && name !== "--target") {
      throw new Error(`unexpected argument "${args[i]}" (expected --output FILE, --target TRIPLE)`);
    }
    const value = inline ?? args[++i];
    if (!value) throw new Error(`${name} needs a value`);
    if (name === "--output") out.output = value;
    else out.target = value;
  }
  return out;
}

/**
 * One line for a failed `deno compile`, from its stderr: what failed (the denort runtime, or
 * the first error line) and the innermost cause.
 */
export function compileFailureLine(stderr: string): string {
  // deno colours its output unless NO_COLOR is set; the escapes are not part of the message.
  // deno-lint-ignore no-control-regex
  const plain = stderr.replace(/\x1b\[[0-9;]*m/g, "");
  const causes = [...plain.matchAll(/^\s+\d+: (.*)$/gm)].map((m) => m[1].trim())
    .filter((c) => c !== "<unknown>");
  const first = /^error: (.*)$/m.exec(plain)?.[1]?.trim() ?? "deno compile failed";
  const denort = /denort/i.test(plain) || causes.includes("Setting up base binary.");
  const why = causes.filter((c) => !/^Setting up base binary\.?$/.test(c));
  const cause = why.length ? why[denort ? 0 : why.length - 1] : first;
  if (denort) {
    return `error: deno compile could not get Deno's denort runtime (${cause}); download the ` +
      `denort zip of this Deno version from dl.deno.land elsewhere, unzip it, and set ` +
      `DENORT_BIN to the denort file`;
  }
  return `error: deno compile failed: ${first}${why.length ? ` (${cause})` : ""}`;
}

if (import.meta.main) {
  let options;
  try {
    options = parseArgs(Deno.args);
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(2);
  }
  const root = new URL("../", import.meta.url).pathname;
  // The output is named from where the task runs; deno compile runs from the repository.
  const output = options.output.startsWith("/")
    ? options.output
    : `${Deno.cwd()}/${options.output}`;
  const args = [
    "compile",
    ...COMPILE_FLAGS,
    ...(options.target ? ["--target", options.target] : []),
    "--output",
    output,
    "main.ts",
  ];
  const result = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: root,
    stdout: "inherit",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(result.stderr);
  if (result.success) {
    await Deno.stderr.write(result.stderr);
  } else {
    console.error(compileFailureLine(stderr));
    Deno.exit(1);
  }
}
