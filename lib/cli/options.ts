/**
 * The command line: every option of the original igvmgen, accepted as `-name value`,
 * `-name=value`, `--name value` and `--name=value`, and by unambiguous prefix (as
 * Python's argparse did).
 */
import { UsageError } from "../errors.ts";
import { loaderNames } from "../measure/loaders.ts";

type Kind = "string" | "path" | "int" | "bool" | "enum" | "flag";

interface OptionSpec {
  name: string;
  kind: Kind;
  metavar?: string;
  choices?: readonly string[];
  default?: string | number | boolean;
  aliases?: readonly string[];
  help: string;
  example?: string;
}

/** Every option, in help order. */
export const OPTION_SPECS: readonly OptionSpec[] = [
  {
    name: "o",
    kind: "path",
    metavar: "FILE",
    help: "write the IGVM file here",
    example: "-o out.igvm",
  },
  {
    name: "kernel",
    kind: "path",
    metavar: "FILE",
    help: "the kernel: a bzImage, or an ELF with -inform elf; - reads standard input",
    example: "-kernel bzImage",
  },
  {
    name: "inform",
    kind: "enum",
    choices: ["bzImage", "bzImage2", "elf"],
    default: "bzImage",
    help: "input format: bzImage, bzImage2 (with -shared_payload) or elf (security monitor)",
  },
  {
    name: "append",
    kind: "string",
    metavar: "CMDLINE",
    default: "",
    help: "kernel command line (empty when omitted)",
    example: '-append "console=ttyS0"',
  },
  { name: "rdinit", kind: "path", metavar: "FILE", help: "initrd to load after the command line" },
  {
    name: "boot_mode",
    kind: "enum",
    choices: ["x86", "x64"],
    default: "x86",
    help: "start in 32-bit protected mode (x86) or 64-bit long mode with page tables (x64)",
  },
  {
    name: "vtl",
    kind: "int",
    metavar: "N",
    default: 2,
    help: "highest VTL the image declares (0 to 2)",
  },
  {
    name: "arch",
    kind: "enum",
    choices: ["Intel", "AMD"],
    default: "Intel",
    help: "Intel sets RFLAGS to 2 as the original; AMD leaves it 0",
  },
  {
    name: "pvalidate_opt",
    kind: "bool",
    default: true,
    help: "import only the pages the kernel needs before it can pvalidate (faster boot)",
  },
  {
    name: "encrypted_page",
    kind: "bool",
    default: true,
    help: "set the C-bit (bit 51) in page-table entries and CR3 (x64)",
  },
  { name: "svme", kind: "bool", default: true, help: "set EFER.SVME in the initial vCPU state" },
  {
    name: "acpi_dir",
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
    help: "vCPUs the built-in ACPI tables describe (1 to 255)",
  },
  {
    name: "shared_payload",
    kind: "path",
    metavar: "FILE",
    help: "bzImage2: payload loaded guest-invalid (shared with the host) at 256 MiB",
  },
  {
    name: "sign_key",
    kind: "path",
    metavar: "PEM",
    help: "P-384 private key for the ID block (SEC1 or PKCS#8 PEM); a fresh key when omitted",
  },
  {
    name: "sign_deterministic",
    kind: "bool",
    default: false,
    help: "RFC 6979 deterministic ECDSA nonces (reproducible output)",
  },
  {
    name: "config_file",
    kind: "path",
    metavar: "JSON",
    help: "TEI config: family/image id, version, guest SVN and policy of the ID block",
  },
  {
    name: "loader",
    kind: "enum",
    choices: loaderNames(),
    default: "hyperv",
    help:
      "the host loader whose launch digest the ID block and -measurement_file carry (see igvmgen measure --help)",
  },
  {
    name: "measurement_file",
    kind: "path",
    metavar: "FILE",
    help: "write the launch measurement JSON here",
  },
  {
    name: "svn",
    kind: "string",
    metavar: "N",
    default: "0",
    help: "guest SVN written to the measurement JSON",
  },
  {
    name: "start_addr",
    kind: "int",
    metavar: "N",
    default: 0x1a00000,
    help: "accepted for compatibility; the original ignores it too",
  },
  {
    name: "symbol_elf",
    kind: "path",
    metavar: "FILE",
    help: "arch/x86/boot/compressed/vmlinux: take the early boot areas from its symbols",
  },
  {
    name: "vmpl2_kernel",
    kind: "path",
    metavar: "FILE",
    help: "-inform elf: a bzImage loaded for VMPL2 at 0x3d00000",
  },
  {
    name: "pgtable_level",
    kind: "int",
    metavar: "2|4",
    default: 2,
    help: "-inform elf x64: 2-level (1 GiB pages) or 4-level (16 GiB of 4 KiB pages) tables",
  },
  {
    name: "d",
    kind: "path",
    metavar: "FILE",
    help: "print the original's dump of an IGVM file and exit",
  },
  {
    name: "log-level",
    kind: "enum",
    aliases: ["l"],
    choices: ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
    default: "WARNING",
    help: "how much to report on stderr; DEBUG also shows error details",
  },
  { name: "verbose", kind: "flag", help: "same as -l DEBUG" },
  { name: "quiet", kind: "flag", help: "print nothing on success" },
  {
    name: "verify",
    kind: "flag",
    help: "before committing the output, run the full verify on it (digest, signature, ACPI)",
  },
  { name: "help", kind: "flag", aliases: ["h"], help: "show this help" },
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
  shared_payload?: string;
  sign_key?: string;
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
  help: boolean;
  /** Options given explicitly on the command line. */
  given: Set<string>;
}

const TRUE_WORDS = ["true", "True", "TRUE", "1", "yes"];
const FALSE_WORDS = ["false", "False", "FALSE", "0", "no"];

function parseValue(spec: OptionSpec, raw: string): string | number | boolean {
  const flag = `-${spec.name}`;
  switch (spec.kind) {
    case "bool":
      if (TRUE_WORDS.includes(raw)) return true;
      if (FALSE_WORDS.includes(raw)) return false;
      throw new UsageError(`${flag}: expected true/false/1/0, got "${raw}"`);
    case "int": {
      const n = /^0x[0-9a-f]+$/i.test(raw)
        ? parseInt(raw, 16)
        : /^[0-9]+$/.test(raw)
        ? parseInt(raw, 10)
        : NaN;
      if (!Number.isSafeInteger(n)) {
        throw new UsageError(`${flag}: expected a whole number, got "${raw}"`);
      }
      return n;
    }
    case "enum":
      if (!spec.choices!.includes(raw)) {
        throw new UsageError(`${flag}: expected one of ${spec.choices!.join(", ")}, got "${raw}"`);
      }
      return raw;
    case "path":
      if (raw === "") throw new UsageError(`${flag}: expected a file name, got an empty string`);
      return raw;
    default:
      return raw;
  }
}

/** Finds an option by exact name, alias, or unique prefix. */
function lookup(name: string): OptionSpec {
  const exact = OPTION_SPECS.find((s) => s.name === name || s.aliases?.includes(name));
  if (exact) return exact;
  const prefixed = OPTION_SPECS.filter((s) => s.name.startsWith(name));
  if (prefixed.length === 1) return prefixed[0];
  if (prefixed.length > 1) {
    throw new UsageError(
      `ambiguous option -${name}: could be ${prefixed.map((s) => "-" + s.name).join(", ")}`,
    );
  }
  throw new UsageError(`unknown option -${name} (see --help)`);
}

/** Parses the command line of a generation (or `-d`) run. */
export function parseOptions(args: readonly string[]): Options {
  const out: Record<string, unknown> = { given: new Set<string>() };
  for (const s of OPTION_SPECS) {
    if (s.default !== undefined) out[s.name] = s.default;
    else if (s.kind === "flag") out[s.name] = false;
  }
  const given = out.given as Set<string>;
  let positional: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "-" || !arg.startsWith("-")) {
      if (positional !== undefined) throw new UsageError(`unexpected argument "${arg}"`);
      positional = arg;
      continue;
    }
    const body = arg.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq >= 0 ? body.slice(0, eq) : body;
    if (name === "") throw new UsageError(`unexpected argument "${arg}"`);
    const spec = lookup(name);
    if (given.has(spec.name)) throw new UsageError(`-${spec.name} is given twice`);
    given.add(spec.name);
    if (spec.kind === "flag") {
      if (eq >= 0) throw new UsageError(`-${spec.name} takes no value`);
      out[spec.name] = true;
      continue;
    }
    let raw: string;
    if (eq >= 0) raw = body.slice(eq + 1);
    else {
      if (i + 1 >= args.length) throw new UsageError(`-${spec.name} needs a value`);
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
  if (o.acpi_dir && (given.has("acpi_profile") || given.has("vcpus"))) {
    throw new UsageError(
      "-acpi_profile and -vcpus choose built-in tables; they do not go with -acpi_dir",
    );
  }
  if (o.pgtable_level !== 2 && o.pgtable_level !== 4) {
    throw new UsageError(`-pgtable_level: expected 2 or 4, got ${o.pgtable_level}`);
  }
  if (!/^[0-9]+$/.test(o.svn) || Number(o.svn) > 0xffff_ffff) {
    throw new UsageError(`-svn: expected a whole number from 0 to 4294967295, got "${o.svn}"`);
  }
  if (o.verbose) o["log-level"] = "DEBUG";
  return o;
}

/** The help text. */
export function helpText(): string {
  const lines = [
    "igvmgen: build an IGVM image (AMD SEV-SNP) from a Linux bzImage or a monitor ELF.",
    "",
    "usage: igvmgen -o OUT.igvm -kernel bzImage [-append CMDLINE] [-rdinit INITRD] [options]",
    "       igvmgen -d FILE.igvm",
    "       igvmgen inspect|verify|measure FILE.igvm   (see igvmgen verify --help)",
    "       igvmgen sign IN.igvm -o OUT.igvm -sign_key KEY.pem   (see igvmgen sign --help)",
    "       igvmgen diff A.igvm B.igvm   (see igvmgen diff --help)",
    "       cat bzImage | igvmgen - -o OUT.igvm [options]",
    "",
    "Options take one dash or two, and a value as the next word or after '=':",
    "-boot_mode x64, --boot_mode=x64. Booleans take true/false/1/0.",
    "",
  ];
  for (const s of OPTION_SPECS) {
    // The original's options are shown single-dash; igvmgen's own GNU-style ones double-dash.
    const dashes = ["log-level", "verbose", "quiet", "verify", "help", "loader"].includes(s.name)
      ? "--"
      : "-";
    const names = [...(s.aliases ?? []).map((a) => `-${a}`), `${dashes}${s.name}`];
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
