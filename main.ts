/**
 * igvmgen: build IGVM images for AMD SEV-SNP guests. The thin CLI: parse the arguments,
 * run, report; every error ends as one line on stderr.
 */
import { describeError, describeErrorVerbose } from "./lib/cli/errors.ts";
import { InputError, UsageError } from "./lib/errors.ts";
import { helpText, parseOptions, USAGE } from "./lib/cli/options.ts";
import { checkArgsEncoding } from "./lib/cli/arg_encoding.ts";
import { onTerminationSignal } from "./lib/io/signals.ts";
import type { Subcommand } from "./lib/cli/commands.ts";
import type { StreamIdentity } from "./lib/io/output_target.ts";
import { probeStandardOutput, standardOutputKnownClosed } from "./lib/io/standard_output.ts";

// Each mode loads its own code on first use, so `-h` and `-d` start without loading the
// generator (tests/startup_test.ts keeps Node-compatibility modules out of this graph).

/**
 * Loads a module of the CLI on first use. The specifier goes through a variable on purpose:
 * Deno fetches every module that a dynamic import with a literal specifier names, and all
 * they import, before the program starts, which would cost `-h` the generator's whole module
 * graph (about 10 ms). scripts/compile.ts includes these modules in the binary.
 */
function load<T>(specifier: string): Promise<T> {
  return import(new URL(specifier, import.meta.url).href);
}

/** Runs igvmgen with `args`; returns the exit code. */
export async function main(args: readonly string[]): Promise<number> {
  let verbose = args.includes("--verbose") ||
    /(^|\s)-(-?log-level|l)(=|\s)DEBUG/.test(args.join(" "));
  let quiet = false;
  // On SIGINT/SIGTERM/SIGHUP: temporary files are removed, then one line and 128 + signal.
  const stopSignals = onTerminationSignal((signal, exitCode) => {
    console.error(`error: interrupted by ${signal}; temporary files removed`);
    Deno.exit(exitCode);
  });
  try {
    checkArgsEncoding(args);
    if (args.length === 0) {
      // As argparse does: the usage, one error line, exit 2.
      console.error(USAGE);
      throw new UsageError("no arguments: give -o FILE and a kernel, or a command (see -h)");
    }
    if (args[0] !== undefined && !args[0].startsWith("-")) {
      const { runSubcommand, SUBCOMMANDS } = await load<typeof import("./lib/cli/commands.ts")>(
        "./lib/cli/commands.ts",
      );
      const { printLine } = await load<typeof import("./lib/cli/line_output.ts")>(
        "./lib/cli/line_output.ts",
      );
      await refuseUnknownCommand(args, SUBCOMMANDS);
      if (SUBCOMMANDS.includes(args[0] as Subcommand)) {
        // Every command but sign reports on standard output: a closed one is an error.
        if (args[0] !== "sign") refuseClosedStdout(`the ${args[0]} report`);
        return await runSubcommand(
          args[0] as Subcommand,
          args.slice(1),
          printLine,
          {
            stdout: Deno.stdout.writable,
            stdoutIdentity: streamIdentity("/dev/stdout"),
            stdoutIsTerminal: Deno.stdout.isTerminal(),
            stdoutProbe: probeStandardOutput,
          },
        );
      }
    }
    const o = parseOptions(args);
    verbose = o["log-level"] === "DEBUG";
    quiet = o.quiet;
    if (o.version) {
      const { VERSION } = await load<typeof import("./lib/cli/version.ts")>("./lib/cli/version.ts");
      console.log(`igvmgen ${VERSION}`);
      return 0;
    }
    if (o.help) {
      refuseClosedStdout("the help");
      console.log(helpText());
      return 0;
    }
    if (o.d) {
      refuseClosedStdout("the dump");
      const { runDump } = await load<typeof import("./lib/cli/dump_command.ts")>(
        "./lib/cli/dump_command.ts",
      );
      return await runDump(o.d, Deno.stdout);
    }
    if (!o.o) {
      throw new UsageError("no output: give -o FILE (or -d FILE to dump one)");
    }
    // --quiet silences notes, progress and the success line, never a warning; -l ERROR both.
    const hideWarnings = o["log-level"] === "ERROR" || o["log-level"] === "CRITICAL";
    const notices = hideWarnings || quiet;
    const stderrBytes = new TextEncoder();
    const showProgress = !quiet && Deno.stderr.isTerminal();
    const [
      { generateIgvm },
      { progressFor },
      { generateRequestFrom, mayNameStandardStream },
    ] = await Promise.all([
      load<typeof import("./lib/ops/generate.ts")>("./lib/ops/generate.ts"),
      load<typeof import("./lib/cli/progress.ts")>("./lib/cli/progress.ts"),
      load<typeof import("./lib/cli/request.ts")>("./lib/cli/request.ts"),
    ]);
    const std = mayNameStandardStream(o)
      ? { stdin: Deno.stdin.readable, stdout: Deno.stdout.writable }
      : {};
    const request = generateRequestFrom(o, std);
    const result = await generateIgvm(request, {
      ...std,
      stdoutIsTerminal: Deno.stdout.isTerminal(),
      stdoutProbe: probeStandardOutput,
      stdinIdentity: streamIdentity("/dev/stdin"),
      stdoutIdentity: streamIdentity("/dev/stdout"),
      force: o.force,
      progress: showProgress
        ? (image) => progressFor(image, (t) => Deno.stderr.writeSync(stderrBytes.encode(t)))
        : undefined,
      notice: (m) =>
        (m.startsWith("warning: ") ? hideWarnings : notices) || console.error(`igvmgen: ${m}`),
    });
    if (result.generatedKey && !notices) {
      console.error("igvmgen: no -sign_key: the ID block is signed with a fresh random P-384 key");
    }
    if (!quiet) {
      console.error(
        `igvmgen: wrote ${o.o} (${result.totalSize} bytes, ${result.pageCount} pages${
          o.verify ? ", verified" : ""
        }); launch measurement ${result.launchMeasurement}`,
      );
    }
    return 0;
  } catch (e) {
    console.error(`error: ${describeError(e)}`);
    if (verbose) console.error(describeErrorVerbose(e));
    return e instanceof UsageError ? 2 : 1;
  } finally {
    stopSignals();
  }
}

/**
 * A first word that is neither a subcommand nor an existing file, and reads like a mistyped
 * command (`verfy`: a plain word close to a command's name, or followed by another word the
 * kernel could not be), is an unknown command, not a kernel path. A kernel file with any
 * name still works: an existing file is always the kernel.
 */
async function refuseUnknownCommand(
  args: readonly string[],
  commands: readonly string[],
): Promise<void> {
  const word = args[0];
  if (commands.includes(word) || !/^[A-Za-z][A-Za-z0-9_-]*$/.test(word)) return;
  try {
    await Deno.lstat(word);
    return; // a file (or a link) of that name: the kernel
  } catch { /* no such file */ }
  const close = commands.filter((c) => editDistance(word.toLowerCase(), c) <= 2);
  let anotherWord = false; // a second positional word: the options would refuse it anyway
  try {
    parseOptions(args);
  } catch (e) {
    anotherWord = e instanceof UsageError && e.message.startsWith("unexpected argument");
  }
  if (close.length === 0 && !anotherWord) return;
  throw new UsageError(
    `unknown command ${word}${
      close.length ? ` (did you mean ${close.join(" or ")}?)` : ""
    }; commands: ${commands.join(", ")} (see --help)`,
  );
}

/** The Levenshtein distance of two short words. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row.push(
        Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1)),
      );
    }
    prev = row;
  }
  return prev[b.length];
}

/**
 * Refuses a run that would print `what` into a standard output known to be closed (the
 * runtime would let the lines vanish into /dev/null). Where this cannot be told, it runs.
 */
function refuseClosedStdout(what: string): void {
  if (standardOutputKnownClosed()) {
    throw new InputError(`cannot write ${what}: standard output is closed`);
  }
}

/**
 * What a standard stream is: its regular file (device and inode), "other", or undefined
 * when Deno does not let igvmgen tell (stat of /dev/stdin needs all permissions).
 */
function streamIdentity(path: "/dev/stdin" | "/dev/stdout"): StreamIdentity {
  if (Deno.build.os === "windows") return undefined;
  try {
    const info = Deno.statSync(path);
    return info.isFile && info.ino !== null ? { dev: info.dev, ino: info.ino } : "other";
  } catch {
    return undefined;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
