/**
 * The command line of the `sign`, `measure` and `diff` subcommands: options with one dash
 * or two, the value as the next word or after `=`; `_` and `-` in names are the same.
 */
import { UsageError } from "../errors.ts";

/** One option: a flag, a value, or a boolean (true/false/1/0). */
export interface SubOptionSpec {
  name: string;
  kind: "flag" | "value" | "bool";
  /** How the help and the completions spell it, when not `--name` (`-measurement_file`). */
  word?: string;
}

/** Parsed options by name, and the positional arguments. */
export interface SubArgs {
  values: Map<string, string | boolean>;
  positional: string[];
}

/** The words a boolean option reads as true, as generation's options do. */
export const TRUE_WORDS = ["true", "True", "TRUE", "1", "yes"];
/** The words a boolean option reads as false. */
export const FALSE_WORDS = ["false", "False", "FALSE", "0", "no"];

/**
 * A whole number as every command takes one: decimal digits, or hex digits after `0x`
 * (`-vcpus 0x10` and `--vcpus 0x10` alike); NaN for anything else.
 */
export function parseWholeNumber(text: string): number {
  const n = /^0x[0-9a-f]+$/i.test(text)
    ? parseInt(text, 16)
    : /^[0-9]+$/.test(text)
    ? parseInt(text, 10)
    : NaN;
  return Number.isSafeInteger(n) ? n : NaN;
}

/** Parses `args` for `command` against `specs`. */
export function parseSubArgs(
  command: string,
  args: readonly string[],
  specs: readonly SubOptionSpec[],
): SubArgs {
  const values = new Map<string, string | boolean>();
  const positional: string[] = [];
  const norm = (n: string) => n.replaceAll("-", "_");
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "-" || !arg.startsWith("-")) {
      positional.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq >= 0 ? body.slice(0, eq) : body;
    // Messages name the option as the user wrote it (`--measurement-file`), never a mix.
    const typed = eq >= 0 ? arg.slice(0, arg.indexOf("=")) : arg;
    const spec = specs.find((s) => norm(s.name) === norm(name));
    if (!spec) {
      throw new UsageError(`${command}: unknown option ${arg} (see igvmgen ${command} --help)`);
    }
    if (values.has(spec.name)) throw new UsageError(`${command}: ${arg} is given twice`);
    if (spec.kind === "flag") {
      if (eq >= 0) throw new UsageError(`${command}: ${arg} takes no value`);
      values.set(spec.name, true);
      continue;
    }
    let raw: string;
    if (eq >= 0) raw = body.slice(eq + 1);
    else {
      if (i + 1 >= args.length) throw new UsageError(`${command}: ${typed} needs a value`);
      raw = args[++i];
    }
    if (spec.kind === "bool") {
      if (TRUE_WORDS.includes(raw)) values.set(spec.name, true);
      else if (FALSE_WORDS.includes(raw)) values.set(spec.name, false);
      else throw new UsageError(`${command}: ${typed}: expected true/false/1/0, got "${raw}"`);
    } else {
      if (raw === "") {
        throw new UsageError(`${command}: ${typed}: expected a value, got an empty string`);
      }
      values.set(spec.name, raw);
    }
  }
  return { values, positional };
}
