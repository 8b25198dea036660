/**
 * How Python's argparse (3.8 to 3.11, `allow_abbrev` on, prefix `-`) reads one word of a
 * command line, given a parser's option strings. The original igvmgen's options are
 * resolved this way first, so that every word the original understood keeps its meaning.
 * (argparse's `_parse_optional` and `_get_option_tuples`.)
 */

/** What argparse makes of one word. */
export type ArgparseReading =
  /** An option. `value` is the text after `=`, or the rest of a one-letter option (`-ofile`). */
  | { kind: "option"; option: string; value?: string; attachedToShort: boolean }
  /** A prefix of several option strings: argparse stops with "ambiguous option". */
  | { kind: "ambiguous"; candidates: string[] }
  /** It looks like an option but matches none: argparse stops with "unrecognized arguments". */
  | { kind: "unknown" }
  /** Not an option: a positional argument or an option's value. */
  | { kind: "value" };

const NEGATIVE_NUMBER = /^-\d+$|^-\d*\.\d+$/;

/** Reads `word` as argparse would, with `optionStrings` the parser's (e.g. "-o", "--help"). */
export function readLikeArgparse(
  word: string,
  optionStrings: readonly string[],
): ArgparseReading {
  if (word === "" || word[0] !== "-") return { kind: "value" };
  if (optionStrings.includes(word)) {
    return { kind: "option", option: word, attachedToShort: false };
  }
  if (word.length === 1) return { kind: "value" };
  const eq = word.indexOf("=");
  if (eq >= 0 && optionStrings.includes(word.slice(0, eq))) {
    return {
      kind: "option",
      option: word.slice(0, eq),
      value: word.slice(eq + 1),
      attachedToShort: false,
    };
  }
  const matches = prefixMatches(word, optionStrings);
  if (matches.length > 1) return { kind: "ambiguous", candidates: matches.map((m) => m.option) };
  if (matches.length === 1) return matches[0];
  if (NEGATIVE_NUMBER.test(word) && !optionStrings.some((s) => NEGATIVE_NUMBER.test(s))) {
    return { kind: "value" };
  }
  if (word.includes(" ")) return { kind: "value" };
  return { kind: "unknown" };
}

/**
 * The option strings `word` abbreviates. `--x=v` matches every `--x...`; `-x` matches every
 * `-x...`, and also a one-letter option `-x` with the rest of the word as its value.
 */
function prefixMatches(
  word: string,
  optionStrings: readonly string[],
): (ArgparseReading & { kind: "option" })[] {
  if (word[1] === "-") {
    const eq = word.indexOf("=");
    const prefix = eq >= 0 ? word.slice(0, eq) : word;
    const value = eq >= 0 ? word.slice(eq + 1) : undefined;
    return optionStrings.filter((s) => s.startsWith(prefix)).map((option) => ({
      kind: "option",
      option,
      value,
      attachedToShort: false,
    }));
  }
  const short = word.slice(0, 2);
  const out: (ArgparseReading & { kind: "option" })[] = [];
  for (const option of optionStrings) {
    if (option === short) {
      out.push({ kind: "option", option, value: word.slice(2), attachedToShort: true });
    } else if (option.startsWith(word)) {
      out.push({ kind: "option", option, attachedToShort: false });
    }
  }
  return out;
}
