/**
 * Option words mean what they meant to the original's Python argparse parser. The original's
 * option strings are listed here from its source (igvm-tooling 53656dd, src/igvm/igvmgen.py),
 * and which prefixes are unique is computed here by argparse's rule, independently of
 * lib/cli: every unique prefix must reach its option through the real parser, whatever
 * options igvmgen adds.
 */
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { OPTION_SPECS, type Options, parseOptions } from "../lib/cli/options.ts";
import { UsageError } from "../lib/errors.ts";

/** The original's options: its option strings, our name for it, a value and its parse. */
const ORIGINAL: readonly [strings: string[], name: string, value?: [string, unknown]][] = [
  [["-h", "--help"], "help"],
  [["-l", "--log-level"], "log-level", ["INFO", "INFO"]],
  [["-d"], "d", ["x.igvm", "x.igvm"]],
  [["-inform"], "inform", ["elf", "elf"]],
  [["-arch"], "arch", ["AMD", "AMD"]],
  [["-o"], "o", ["out.igvm", "out.igvm"]],
  [["-kernel"], "kernel", ["bzImage", "bzImage"]],
  [["-vmpl2_kernel"], "vmpl2_kernel", ["vmpl2.bin", "vmpl2.bin"]],
  [["-pgtable_level"], "pgtable_level", ["4", 4]],
  [["-symbol_elf"], "symbol_elf", ["vmlinux", "vmlinux"]],
  [["-append"], "append", ["console=ttyS0 quiet", "console=ttyS0 quiet"]],
  [["-rdinit"], "rdinit", ["initrd.img", "initrd.img"]],
  [["-vtl"], "vtl", ["1", 1]],
  [["-config_file"], "config_file", ["tei.json", "tei.json"]],
  [["-sign_key"], "sign_key", ["key.pem", "key.pem"]],
  [["-sign_deterministic"], "sign_deterministic", ["true", true]],
  [["-acpi_dir"], "acpi_dir", ["acpi-clh/", "acpi-clh/"]],
  [["-pvalidate_opt"], "pvalidate_opt", ["false", false]],
  [["-boot_mode"], "boot_mode", ["x64", "x64"]],
  [["-start_addr"], "start_addr", ["4096", 4096]],
  [["-shared_payload"], "shared_payload", ["payload.bin", "payload.bin"]],
  [["-measurement_file"], "measurement_file", ["m.json", "m.json"]],
  [["-encrypted_page"], "encrypted_page", ["false", false]],
  [["-svme"], "svme", ["false", false]],
  [["-svn"], "svn", ["7", "7"]],
];
const ALL_STRINGS = ORIGINAL.flatMap(([strings]) => strings);
const NAME_OF = new Map(ORIGINAL.flatMap(([strings, name]) => strings.map((s) => [s, name])));

/**
 * The original's options a word can mean, by argparse's rule: an exact option string; else
 * `--x` abbreviates every `--x...`, and `-x` every `-x...` plus a one-letter `-x` (taking
 * the rest of the word as its value).
 */
function originalCandidates(word: string): string[] {
  if (ALL_STRINGS.includes(word)) return [word];
  if (word.startsWith("--")) return ALL_STRINGS.filter((s) => s.startsWith(word));
  return ALL_STRINGS.filter((s) => s.startsWith(word) || s === word.slice(0, 2));
}

/** Every prefix of every option string, except `-` and `--`, which argparse reads otherwise. */
const PREFIXES = [
  ...new Set(
    ALL_STRINGS.flatMap((s) => [...s].map((_, i) => s.slice(0, i + 1))).filter((p) =>
      p !== "-" && p !== "--"
    ),
  ),
];

function parse(args: string[]): Options & Record<string, unknown> {
  return parseOptions(args) as Options & Record<string, unknown>;
}

Deno.test("OPTION_SPECS marks exactly the original's options, with its option strings", () => {
  const marked = OPTION_SPECS.filter((s) => s.original).map((s) => [s.name, s.original]);
  assertEquals(
    marked.sort(),
    ORIGINAL.map(([strings, name]) => [name, strings]).sort(),
  );
});

Deno.test("the table is not vacuous: -acpi is unique and -a ambiguous in the original", () => {
  assertEquals(originalCandidates("-acpi"), ["-acpi_dir"]);
  assertEquals(originalCandidates("-a").length, 3);
  assertEquals(originalCandidates("-o"), ["-o"]);
  // 187 = what Python 3.11's argparse, given the original's parser, accepted of these 196.
  assertEquals(PREFIXES.length, 196);
  assertEquals(PREFIXES.filter((p) => originalCandidates(p).length === 1).length, 187);
});

Deno.test("parseOptions(): every prefix unique among the original's options means that option", () => {
  let checked = 0;
  for (const prefix of PREFIXES) {
    const candidates = originalCandidates(prefix);
    if (candidates.length !== 1) continue;
    const name = NAME_OF.get(candidates[0])!;
    const [, , value] = ORIGINAL.find(([, n]) => n === name)!;
    // -p, --p and -p=value (the last two are igvmgen's, for words the original rejected).
    const forms = value ? [[prefix, value[0]], [`${prefix}=${value[0]}`]] : [[prefix]];
    if (!prefix.startsWith("--")) forms.push(...forms.map(([w, ...v]) => [`-${w}`, ...v]));
    for (const args of forms) {
      const o = parse(args);
      assertEquals([...o.given], [name], `${args.join(" ")} means -${name}`);
      assertEquals(o[name], value ? value[1] : true, `${args.join(" ")}: the value`);
      checked++;
    }
  }
  assertEquals(checked, 716);
});

Deno.test("parseOptions(): a prefix ambiguous among the original's options stays an error", () => {
  const ambiguous = PREFIXES.filter((p) => originalCandidates(p).length > 1);
  assertEquals(ambiguous.sort(), ["-a", "-p", "-s", "-si", "-sig", "-sign", "-sign_", "-sv", "-v"]);
  for (const prefix of ambiguous) {
    assertThrows(() => parse([prefix, "1"]), UsageError, `ambiguous option ${prefix}`);
  }
});

Deno.test("parseOptions(): each of igvmgen's own options is reachable by its --name", () => {
  const own = OPTION_SPECS.filter((s) => !s.original);
  assert(own.length >= 5, "acpi_profile, vcpus, verbose, quiet, verify at least");
  for (const spec of own) {
    const args = spec.kind === "flag"
      ? [`--${spec.name}`]
      : [`--${spec.name}`, spec.choices?.[1] ?? spec.choices?.[0] ?? "2"];
    assert(parse(args).given.has(spec.name), `--${spec.name}`);
  }
  assertEquals(parse(["-acpi_p", "clh"]).acpi_profile, "clh");
  assertEquals(parse(["-vcpus", "4"]).vcpus, 4);
  assertEquals(parse(["-verb"]).verbose, true);
});

Deno.test("parseOptions(): one-letter options take the rest of the word, as in argparse", () => {
  assertEquals(parse(["-oout.igvm"]).o, "out.igvm");
  assertEquals(parse(["-ofoo=bar"]).o, "foo=bar");
  assertEquals(parse(["-dx.igvm"]).d, "x.igvm");
  assertEquals(parse(["-lDEBUG"])["log-level"], "DEBUG");
  // Words the original rejected (-l with a level it did not know, -h with text) are igvmgen's.
  assertEquals(parse(["-log-level", "INFO"])["log-level"], "INFO");
  assertEquals(parse(["-help"]).help, true);
});

Deno.test("parseOptions(): an option given twice takes its last value, as in argparse", () => {
  const o = parse(["-vtl", "1", "-append", "a", "-vtl", "0", "-append", "b c"]);
  assertEquals([o.vtl, o.append], [0, "b c"]);
  assertEquals(parse(["-acpi", "a/", "-acpi_dir", "b/"]).acpi_dir, "b/");
});

Deno.test("parseOptions(): values that start with a dash, where argparse takes them", () => {
  assertEquals(parse(["-append", "-1"]).append, "-1");
  assertEquals(parse(["-append", "-"]).append, "-");
  assertEquals(parse(["-append", "-foo bar"]).append, "-foo bar");
  assertEquals(parse(["-append=-foo"]).append, "-foo");
  assertEquals(parse(["-append=-o x"]).append, "-o x");
  for (const word of ["-foo", "-o x", "-k", "--", "--verify", "-x=1"]) {
    assertThrows(() => parse(["-append", word]), UsageError, "-append needs a value");
  }
  assertThrows(() => parse(["-append"]), UsageError, "-append needs a value");
});

Deno.test("parseOptions(): -- ends the options; the word after it is the kernel", () => {
  const o = parse(["-o", "x.igvm", "--", "-kernel"]);
  assertEquals([o.o, o.kernel], ["x.igvm", "-kernel"]);
  assertThrows(() => parse(["--", "a", "b"]), UsageError, 'unexpected argument "b"');
  assertThrows(() => parse(["-kernel", "a", "--", "b"]), UsageError, "the kernel is given twice");
});

Deno.test("parseOptions(): words the original rejected follow igvmgen's rule", () => {
  assertEquals(parse(["--acpi", "d/"]).acpi_dir, "d/");
  assertEquals(parse(["-acpi=d/"]).acpi_dir, "d/");
  assertEquals(parse(["--acpi_dir=d/"]).acpi_dir, "d/");
  assertThrows(() => parse(["--s", "1"]), UsageError, "ambiguous option --s");
  assertThrows(() => parse(["-ve"]), UsageError, "ambiguous option -ve");
  assertThrows(() => parse(["-nonsense"]), UsageError, "unknown option -nonsense");
  assertThrows(() => parse(["--verify=1"]), UsageError, "-verify takes no value");
});

/**
 * Python's argparse itself, when python3 is installed: a parser with the original's option
 * strings (values kept as text) reads each command line; the runs it accepted must mean the
 * same to parseOptions().
 */
const ARGPARSE_ORACLE = `
import argparse, json, sys
class Stop(Exception): pass
class Parser(argparse.ArgumentParser):
    def error(self, message): raise Stop(message)
    def exit(self, status=0, message=None): raise Stop("help")
    def print_help(self, file=None): pass
options, lines = json.load(sys.stdin)
parser = Parser()
for strings in options:
    if strings[0] != "-h": parser.add_argument(*strings)
out = []
for args in lines:
    try:
        ns = parser.parse_args(args)
        out.append({k: v for k, v in vars(ns).items() if v is not None})
    except Stop as e:
        out.append(str(e) if str(e) == "help" else None)
print(json.dumps(out))
`;

function havePython(): boolean {
  try {
    return new Deno.Command("python3", { args: ["-c", ""], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

Deno.test({
  name: havePython()
    ? "parseOptions() agrees with Python's argparse on every command line it accepted"
    : "parseOptions() agrees with Python's argparse (python3 is absent: skipped)",
  ignore: !havePython(),
  async fn() {
    const values = ORIGINAL.filter(([, , v]) => v).map(([, name, v]) => [name, v![0]] as const);
    const lines: string[][] = [];
    for (const prefix of PREFIXES) {
      lines.push([prefix]);
      for (const [, value] of values) lines.push([prefix, value], [`${prefix}=${value}`]);
    }
    // Not reproduced: argparse's one-letter flags combined with the next letter's option
    // (`-h=out.igvm` was `-h -o ut.igvm`); with -h, the only flag, the original printed help.
    const combinedHelp = (args: string[]) => /^-h.|^--h[a-z]*=/.test(args[0]);
    lines.splice(0, lines.length, ...lines.filter((args) => !combinedHelp(args)));
    const generated = lines.length;
    lines.push(
      ["-oout.igvm"],
      ["-ofoo=bar"],
      ["-dx.igvm"],
      ["-lDEBUG"],
      ["-append", "-1"],
      ["-append", "-"],
      ["-append", "-foo bar"],
      ["-append=-foo"],
      ["-vtl", "1", "-vtl", "0"],
      ["-acpi", "a/", "-acpi_dir", "b/", "-ac", "c/"],
      ["-kernel", "k", "-append", "a b", "-o", "o", "-svn", "3", "-sign_k", "p", "-sign_d", "true"],
    );
    const child = new Deno.Command("python3", {
      args: ["-c", ARGPARSE_ORACLE],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(
      new TextEncoder().encode(JSON.stringify([ORIGINAL.map(([s]) => s), lines])),
    );
    await writer.close();
    const results = JSON.parse(new TextDecoder().decode((await child.output()).stdout)) as (
      Record<string, string> | "help" | null
    )[];
    assertEquals(results.length, lines.length);
    const nameOf = (dest: string) => dest === "log_level" ? "log-level" : dest;
    let accepted = 0;
    for (const [i, args] of lines.entries()) {
      const expected = results[i];
      if (expected === null) continue;
      // The oracle keeps values as text; the original checked types (-vtl elf, -l x.igvm
      // failed there), so only lines where each option got its own kind of value count.
      const intended = (dest: string, v: string) =>
        i >= generated ||
        values.some(([name, value]) => name === nameOf(dest) && value === v);
      if (expected !== "help" && !Object.entries(expected).every(([d, v]) => intended(d, v))) {
        continue;
      }
      accepted++;
      const o = parse(args);
      if (expected === "help") {
        assert(o.help, args.join(" "));
        continue;
      }
      const dests = Object.keys(expected);
      assertEquals([...o.given].sort(), dests.map(nameOf).sort(), args.join(" "));
      for (const dest of dests) {
        assertEquals(String(o[nameOf(dest)]), expected[dest], args.join(" "));
      }
    }
    assert(accepted > 400, `${accepted} accepted`); // 413 with Python 3.11
  },
});
