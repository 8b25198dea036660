/**
 * The command line: every option of the original igvmgen, accepted as `-name value`,
 * `-name=value`, `--name value` and `--name=value`, and by unambiguous prefix (as
 * Python's argparse did).
 *
 * A word is first read as the original's argparse parser read it, with the original's
 * options only (`original` below), so every word the original understood keeps its meaning
 * whatever options igvmgen adds: `-acpi` is `-acpi_dir` although `-acpi_profile` exists.
 * Only words the original rejected are then resolved by igvmgen's own rule (`resolveOwn`).
 * Adding an option is adding an entry to OPTION_SPECS, without `original`.
 */
import { UsageError } from "../errors.ts";
import { checkSvn } from "../measure/measurement_json.ts";
import { type ArgparseReading, readLikeArgparse } from "./argparse.ts";
import { FALSE_WORDS, parseWholeNumber, TRUE_WORDS } from "./sub_args.ts";
import { FILE_LOADER_NAMES } from "../measure/loader_names.ts";

type Kind = "string" | "path" | "int" | "bool" | "enum" | "flag";

interface OptionSpec {
  name: string;
  kind: Kind;
  metavar?: string;
  choices?: readonly string[];
  /** Said after the choices when a value is not one of them. */
  choiceHint?: string;
  default?: string | number | boolean;
  aliases?: readonly string[];
  help: string;
  example?: string;
  /**
   * The original's option strings for this option, exactly as its argparse parser declared
   * them (igvm-tooling 53656dd, src/igvm/igvmgen.py); absent for igvmgen's own options.
   */
  original?: readonly string[];
}

/** Every option, in help order. */
export const OPTION_SPECS: readonly OptionSpec[] = [
  {
    name: "o",
    original: ["-o"],
    kind: "path",
    metavar: "FILE",
    help: "write the IGVM file here",
    example: "-o out.igvm",
  },
  {
    name: "kernel",
    original: ["-kernel"],
    kind: "path",
    metavar: "FILE",
    help: "the kernel: a bzImage, or an ELF with -inform elf; - reads standard input",
    example: "-kernel bzImage",
  },
  {
    name: "inform",
    original: ["-inform"],
    kind: "enum",
    choices: ["bzImage", "bzImage2", "elf"],
    default: "bzImage",
    help: "input format: bzImage, bzImage2 (with -shared_payload) or elf (security monitor)",
  },
  {
    name: "append",
    original: ["-append"],
    kind: "string",
    metavar: "CMDLINE",
    default: "",
    help: "kernel command line (empty when omitted)",
    example: '-append "console=ttyS0"',
  },
  {
    name: "rdinit",
    original: ["-rdinit"],
    kind: "path",
    metavar: "FILE",
    help: "initrd to load after the command line",
  },
  {
    name: "boot_mode",
    original: ["-boot_mode"],
    kind: "enum",
    choices: ["x86", "x64"],
    default: "x86",
    help: "start in 32-bit protected mode (x86) or 64-bit long mode with page tables (x64)",
  },
  {
    name: "vtl",
    original: ["-vtl"],
    kind: "int",
    metavar: "N",
    default: 2,
    help: "highest VTL the image declares (0 to 2)",
  },
  {
    name: "arch",
    original: ["-arch"],
    kind: "enum",
    choices: ["Intel", "AMD"],
    default: "Intel",
    help: "Intel sets RFLAGS to 2 as the original; AMD leaves it 0",
  },
  {
    name: "pvalidate_opt",
    original: ["-pvalidate_opt"],
    kind: "bool",
    default: true,
    help: "import only the pages the kernel needs before it can pvalidate (faster boot)",
  },
  {
    name: "encrypted_page",
    original: ["-encrypted_page"],
    kind: "bool",
    default: true,
    help: "set the C-bit (bit 51) in page-table entries and CR3 (x64)",
  },
  {
    name: "svme",
    original: ["-svme"],
    kind: "bool",
    default: true,
    help: "set EFER.SVME in the initial vCPU state",
  },
  {
    name: "acpi_dir",
    original: ["-acpi_dir"],
    kind: "path",
    metavar: "DIR|FILE",
    help:
      "ACPI tables: a folder or zip of .dsl (needs iasl) or .aml files, or the original's acpi.zip snapshot; built-in tables when omitted",
  },
  {
    name: "acpi_profile",
    kind: "enum",
    choices: ["default", "clh"],
    default: "default",
    help:
      "built-in ACPI tables when -acpi_dir is not given: default (PC-style) or clh (Cloud Hypervisor)",
  },
  {
    name: "vcpus",
    kind: "int",
    metavar: "N",
    default: 1,
    help:
      "vCPUs the built-in ACPI tables describe (1 to 255); with a KVM -target also the vCPUs the launch digest is for",
  },
  {
    name: "target",
    kind: "enum",
    choices: ["hyperv", "qemu-kvm", "ch-kvm"],
    default: "hyperv",
    help:
      "the host: hyperv (the original's layout), or QEMU / Cloud Hypervisor on Linux KVM (VMSA at 0xFFFFFFFFF000, VTL 0, pages from 1 MiB; the ID block and measurement are that host's for -vcpus and -cpu)",
  },
  {
    name: "native",
    kind: "flag",
    help:
      "with -target qemu-kvm or ch-kvm: also a NATIVE platform, so the image boots without SEV-SNP (QEMU 10.2 and later, TCG or KVM); the SEV-SNP side and its measurement are unchanged",
  },
  {
    name: "cpu",
    kind: "string",
    metavar: "MODEL",
    help:
      "-target qemu-kvm with -vcpus > 1: the vCPU model, milan, genoa, rome, turin, QEMU's name (EPYC-Milan, EPYC-Genoa-v2...) or a CPUID(1).EAX signature (0x00a00f11)",
  },
  {
    name: "shared_payload",
    original: ["-shared_payload"],
    kind: "path",
    metavar: "FILE",
    help: "bzImage2: payload loaded guest-invalid (shared with the host) at 256 MiB",
  },
  {
    name: "sign_key",
    original: ["-sign_key"],
    kind: "path",
    metavar: "PEM",
    help: "P-384 private key for the ID block (SEC1 or PKCS#8 PEM); a fresh key when omitted",
  },
  {
    name: "author_key",
    kind: "path",
    metavar: "PEM",
    help:
      "P-384 private key of the ID block's author: it signs the ID key, and the ID block carries it (AuthorKeyEnabled)",
  },
  {
    name: "sign_deterministic",
    original: ["-sign_deterministic"],
    kind: "bool",
    default: false,
    help: "RFC 6979 deterministic ECDSA nonces (reproducible output)",
  },
  {
    name: "config_file",
    original: ["-config_file"],
    kind: "path",
    metavar: "JSON",
    help: "TEI config: family/image id, version, guest SVN and policy of the ID block",
  },
  {
    name: "loader",
    kind: "enum",
    choices: FILE_LOADER_NAMES,
    choiceHint: "KVM hosts are chosen with -target qemu-kvm or -target ch-kvm",
    default: "hyperv",
    help:
      "the host loader whose launch digest the ID block and -measurement_file carry (see igvmgen measure --help; KVM hosts: -target)",
  },
  {
    name: "measurement_file",
    original: ["-measurement_file"],
    kind: "path",
    metavar: "FILE",
    help: "write the launch measurement JSON here",
  },
  {
    name: "svn",
    original: ["-svn"],
    kind: "string",
    metavar: "N",
    default: "0",
    help: "guest SVN written to the measurement JSON",
  },
  {
    name: "start_addr",
    original: ["-start_addr"],
    kind: "int",
    metavar: "N",
    default: 0x1a00000,
    help: "accepted for compatibility; the original ignores it too",
  },
  {
    name: "symbol_elf",
    original: ["-symbol_elf"],
    kind: "path",
    metavar: "FILE",
    help: "arch/x86/boot/compressed/vmlinux: take the early boot areas from its symbols",
  },
  {
    name: "vmpl2_kernel",
    original: ["-vmpl2_kernel"],
    kind: "path",
    metavar: "FILE",
    help: "-inform elf: a bzImage loaded for VMPL2 at 0x3d00000",
  },
  {
    name: "pgtable_level",
    original: ["-pgtable_level"],
    kind: "int",
    metavar: "2|4",
    default: 2,
    help: "-inform elf x64: 2-level (1 GiB pages) or 4-level (16 GiB of 4 KiB pages) tables",
  },
  {
    name: "d",
    original: ["-d"],
    kind: "path",
    metavar: "FILE",
    help: "print the original's dump of an IGVM file and exit",
  },
  {
    name: "log-level",
    original: ["-l", "--log-level"],
    kind: "enum",
    aliases: ["l"],
    choices: ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
    default: "WARNING",
    help: "how much to report on stderr; DEBUG also shows error details",
  },
  { name: "verbose", kind: "flag", help: "same as -l DEBUG" },
  {
    name: "quiet",
    kind: "flag",
    help: "print no progress, notes or success line; warnings are still printed",
  },
  {
    name: "verify",
    kind: "flag",
    help: "before committing the output, run the full verify on it (digest, signature, ACPI)",
  },
  {
    name: "force",
    kind: "flag",
    help: "with -o -, write the image even when standard output is a terminal",
  },
  {
    name: "strict",
    kind: "flag",
    help:
      "make warnings errors (an -append longer than the kernel's cmdline_size, a truncated kernel)",
  },
  { name: "version", kind: "flag", help: "print igvmgen's version and exit" },
  {
    name: "help",
    original: ["-h", "--help"],
    kind: "flag",
    aliases: ["h"],
    help: "show this help",
  },
];

/** Parsed options: names as in OPTION_SPECS, with `-` in names kept. */
export interface Options {
  o?: string;
  kernel?: string;
  inform: "bzImage" | "bzImage2" | "elf";
  append: string;
  rdinit?: string;
  boot_mode: "x86" | "x64";
  vtl: number;
  arch: "Intel" | "AMD";
  pvalidate_opt: boolean;
  encrypted_page: boolean;
  svme: boolean;
  acpi_dir?: string;
  acpi_profile: "default" | "clh";
  vcpus: number;
  target: "hyperv" | "qemu-kvm" | "ch-kvm";
  native: boolean;
  cpu?: string;
  shared_payload?: string;
  sign_key?: string;
  author_key?: string;
  sign_deterministic: boolean;
  config_file?: string;
  measurement_file?: string;
  loader: string;
  svn: string;
  start_addr: number;
  symbol_elf?: string;
  vmpl2_kernel?: string;
  pgtable_level: number;
  d?: string;
  "log-level": "DEBUG" | "INFO" | "WARNING" | "ERROR" | "CRITICAL";
  verbose: boolean;
  quiet: boolean;
  verify: boolean;
  force: boolean;
  strict: boolean;
  version: boolean;
  help: boolean;
  /** Options given explicitly on the command line. */
  given: Set<string>;
}

/** igvmgen's own GNU-style options, shown (in help and errors) with two dashes. */
const DOUBLE_DASH = [
  "log-level",
  "verbose",
  "quiet",
  "verify",
  "force",
  "strict",
  "version",
  "help",
  "loader",
];

/** How help and errors name an option: the original's single-dash, igvmgen's own double-dash. */
function optionLabel(spec: OptionSpec): string {
  return `${DOUBLE_DASH.includes(spec.name) ? "--" : "-"}${spec.name}`;
}

function parseValue(spec: OptionSpec, raw: string): string | number | boolean {
  const flag = optionLabel(spec);
  switch (spec.kind) {
    case "bool":
      if (TRUE_WORDS.includes(raw)) return true;
      if (FALSE_WORDS.includes(raw)) return false;
      throw new UsageError(`${flag}: expected true/false/1/0, got "${raw}"`);
    case "int": {
      const n = parseWholeNumber(raw);
      if (!Number.isSafeInteger(n)) {
        throw new UsageError(`${flag}: expected a whole number, got "${raw}"`);
      }
      return n;
    }
    case "enum":
      if (!spec.choices!.includes(raw)) {
        throw new UsageError(
          `${flag}: expected one of ${spec.choices!.join(", ")}, got "${raw}"${
            spec.choiceHint ? ` (${spec.choiceHint})` : ""
          }`,
        );
      }
      return raw;
    case "path":
      if (raw === "") throw new UsageError(`${flag}: expected a file name, got an empty string`);
      return raw;
    default:
      return raw;
  }
}

/** The original's option strings, and the option each one names. */
const ORIGINAL_STRINGS = new Map(
  OPTION_SPECS.flatMap((s) => (s.original ?? []).map((o) => [o, s] as const)),
);
const ORIGINAL_STRING_LIST = [...ORIGINAL_STRINGS.keys()];

/** An option named by a word of the command line, with the value the word carries. */
interface NamedOption {
  spec: OptionSpec;
  /** The text after `=`, or the rest of a one-letter option (`-lDEBUG`). */
  value?: string;
}

/**
 * The option `word` names. The original's reading wins whenever the original would have
 * accepted it; argparse's one-letter reading (`-lX` = `-l X`) counts only when the original
 * took X: not for a flag (`-help`), nor a value outside an option's choices (`-log-level`).
 */
function resolveOption(word: string, reading: ArgparseReading): NamedOption {
  if (reading.kind === "ambiguous") {
    throw new UsageError(`ambiguous option ${word}: could be ${reading.candidates.join(", ")}`);
  }
  if (reading.kind === "option") {
    const spec = ORIGINAL_STRINGS.get(reading.option)!;
    const taken = !reading.attachedToShort ||
      (spec.kind !== "flag" && (!spec.choices || spec.choices.includes(reading.value!)));
    if (taken) return { spec, value: reading.value };
  }
  return resolveOwn(word);
}

/**
 * igvmgen's rule for words the original rejected (`--acpi_dir`, `-acpi=DIR`, `--verify`):
 * one or two dashes, an optional `=value`, and a name or unique prefix. The original's
 * options come first; an igvmgen option is found only when no original one matches.
 */
function resolveOwn(word: string): NamedOption {
  const body = word.replace(/^--?/, "");
  const eq = body.indexOf("=");
  const name = eq >= 0 ? body.slice(0, eq) : body;
  const value = eq >= 0 ? body.slice(eq + 1) : undefined;
  if (name === "") throw new UsageError(`unexpected argument "${word}"`);
  for (const original of [true, false]) {
    const specs = OPTION_SPECS.filter((s) => (s.original !== undefined) === original);
    const exact = specs.find((s) => s.name === name || s.aliases?.includes(name));
    if (exact) return { spec: exact, value };
    const prefixed = specs.filter((s) => s.name.startsWith(name));
    if (prefixed.length === 1) return { spec: prefixed[0], value };
    if (prefixed.length > 1) {
      throw new UsageError(
        `ambiguous option ${word}: could be ${prefixed.map((s) => "-" + s.name).join(", ")}`,
      );
    }
  }
  throw new UsageError(`unknown option ${word} (see --help)`);
}

/**
 * Parses the command line of a generation (or `-d`) run. As with argparse, an option given
 * twice takes its last value, and an option's value is the next word unless that word looks
 * like an option (write `-append=-x` for such a value). igvmgen's own additions: `--`
 * makes every following word a positional argument, and one positional argument is the
 * kernel.
 */
export function parseOptions(args: readonly string[]): Options {
  const out: Record<string, unknown> = { given: new Set<string>() };
  for (const s of OPTION_SPECS) {
    if (s.default !== undefined) out[s.name] = s.default;
    else if (s.kind === "flag") out[s.name] = false;
  }
  const given = out.given as Set<string>;
  let positional: string | undefined;
  let optionsEnded = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!optionsEnded && arg === "--") {
      optionsEnded = true;
      continue;
    }
    const reading: ArgparseReading = optionsEnded
      ? { kind: "value" }
      : readLikeArgparse(arg, ORIGINAL_STRING_LIST);
    // argparse reads `--append="a b"` (a space) or `-1` as a value, never as an option; as a
    // positional it was an error in the original (it had none), so igvmgen's rule reads it.
    const positionalWord = optionsEnded || arg === "-" || !arg.startsWith("-");
    if (reading.kind === "value" && positionalWord) {
      if (positional !== undefined) throw new UsageError(`unexpected argument "${arg}"`);
      positional = arg;
      continue;
    }
    const { spec, value } = resolveOption(arg, reading);
    given.add(spec.name);
    if (spec.kind === "flag") {
      if (value !== undefined) throw new UsageError(`${optionLabel(spec)} takes no value`);
      out[spec.name] = true;
      continue;
    }
    let raw: string;
    if (value !== undefined) raw = value;
    else {
      const next = args[i + 1];
      if (next === undefined) throw new UsageError(`${optionLabel(spec)} needs a value`);
      if (next === "--" || readLikeArgparse(next, ORIGINAL_STRING_LIST).kind !== "value") {
        throw new UsageError(
          `${optionLabel(spec)} needs a value, got the option-like "${next}" (write ${
            optionLabel(spec)
          }=VALUE for a value that starts with -)`,
        );
      }
      raw = args[++i];
    }
    out[spec.name] = parseValue(spec, raw);
  }
  if (positional !== undefined) {
    if (given.has("kernel")) {
      throw new UsageError(`the kernel is given twice: -kernel and "${positional}"`);
    }
    out.kernel = positional;
    given.add("kernel");
  }
  const o = out as unknown as Options;
  if (o.vtl < 0 || o.vtl > 2) throw new UsageError(`-vtl: expected 0, 1 or 2, got ${o.vtl}`);
  if (o.vcpus < 1 || o.vcpus > 255) {
    throw new UsageError(`-vcpus: expected 1 to 255, got ${o.vcpus}`);
  }
  const forTables = ["acpi_profile", ...(o.target === "hyperv" ? ["vcpus"] : [])]
    .filter((name) => given.has(name));
  if (o.acpi_dir && forTables.length) {
    throw new UsageError(
      `${forTables.map((n) => `-${n}`).join(" and ")} ${
        forTables.length > 1 ? "choose" : "chooses"
      } the built-in ACPI tables; ${
        forTables.length > 1 ? "they do" : "it does"
      } not go with -acpi_dir`,
    );
  }
  if (o.pgtable_level !== 2 && o.pgtable_level !== 4) {
    throw new UsageError(`-pgtable_level: expected 2 or 4, got ${o.pgtable_level}`);
  }
  checkSvn("-svn", o.svn);
  if (o.verbose) o["log-level"] = "DEBUG";
  return o;
}

/** The usage lines, shown by -h and, alone, when igvmgen is run with no arguments. */
export const USAGE =
  `usage: igvmgen -o OUT.igvm -kernel bzImage [-append CMDLINE] [-rdinit INITRD] [options]
       igvmgen -d FILE.igvm
       igvmgen inspect|verify|measure FILE.igvm   (see igvmgen verify --help)
       igvmgen sign IN.igvm -o OUT.igvm -sign_key KEY.pem   (see igvmgen sign --help)
       igvmgen diff A.igvm B.igvm   (see igvmgen diff --help)
       igvmgen attest REPORT --vcek VCEK.pem --image FILE.igvm   (see igvmgen attest --help)
       igvmgen completions bash|zsh
       cat bzImage | igvmgen - -o OUT.igvm [options]`;

/** Each option as the command line spells it, with its fixed choices (booleans: true/false). */
export function optionWords(): { word: string; choices?: readonly string[]; flag: boolean }[] {
  return OPTION_SPECS.flatMap((s) =>
    [...(s.aliases ?? []).map((a) => `-${a}`), optionLabel(s)].map((word) => ({
      word,
      choices: s.kind === "bool" ? ["true", "false"] : s.choices,
      flag: s.kind === "flag",
    }))
  );
}

/** The help text. */
export function helpText(): string {
  const lines = [
    "igvmgen: build an IGVM image (AMD SEV-SNP) from a Linux bzImage or a monitor ELF.",
    "",
    ...USAGE.split("\n"),
    "",
    "Options take one dash or two, and a value as the next word or after '=':",
    "-boot_mode x64, --boot_mode=x64. Booleans take true/false/1/0.",
    "Prefixes mean what they meant to the original (-acpi is -acpi_dir); a repeated option",
    "takes its last value; -- ends the options.",
    "",
  ];
  for (const s of OPTION_SPECS) {
    const names = [...(s.aliases ?? []).map((a) => `-${a}`), optionLabel(s)];
    const value = s.kind === "flag"
      ? ""
      : s.kind === "bool"
      ? " BOOL"
      : s.kind === "enum"
      ? ` {${s.choices!.join(",")}}`
      : ` ${s.metavar ?? "VALUE"}`;
    const dflt = s.default !== undefined && s.default !== ""
      ? ` (default: ${
        typeof s.default === "number" && s.default > 9 ? "0x" + s.default.toString(16) : s.default
      })`
      : "";
    lines.push(`  ${names.join(", ")}${value}`);
    lines.push(`      ${s.help}${dflt}`);
  }
  lines.push("", "Exit status: 0 on success, 1 on a bad input, 2 on a bad command line.");
  return lines.join("\n");
}
