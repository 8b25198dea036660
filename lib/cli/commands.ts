/** The subcommands: `inspect`, `verify` and `measure` of an existing IGVM file. */
import { UsageError } from "../errors.ts";
import { formatInspect, inspectIgvm } from "../igvm/inspect.ts";
import { measureIgvm, openFileAccess, verifyIgvm } from "../igvm/verify.ts";
import { checkSvn } from "./options.ts";
import { toHex } from "../bytes/le.ts";
import { measurementJson } from "../generate.ts";
import { writeFileAtomic } from "../io/atomic_file.ts";

export const SUBCOMMANDS = ["inspect", "verify", "measure"] as const;
export type Subcommand = typeof SUBCOMMANDS[number];

/** Help for the subcommands. */
export const SUBCOMMAND_HELP = `usage: igvmgen inspect FILE [--json]
       igvmgen verify FILE [--json]
       igvmgen measure FILE [-measurement_file OUT.json] [-svn N]

inspect  summarise any IGVM file: platforms, policy, page ranges by kind, VMSA registers,
         ID block (--json: a stable JSON document, schema igvmgen-inspect/1)
verify   check the file against the IGVM format on igvmgen's own reader, recompute the SNP
         launch digest, verify the ID block signature, walk the ACPI tables in the image;
         prints each problem on its own line; exit 0 when there is none, 1 otherwise
measure  print the SNP launch digest recomputed from the file (and write the measurement
         JSON with -measurement_file; -svn sets its guest SVN, default 0)`;

interface SubOptions {
  file: string;
  json: boolean;
  measurementFile?: string;
  svn: string;
}

/**
 * Parses a subcommand's arguments with the rules of generation's options: `-name value` or
 * `-name=value`, one or two dashes, each option at most once, no value for a flag, no empty
 * file name, `-svn` a u32.
 */
function parseSubOptions(command: Subcommand, args: readonly string[]): SubOptions {
  const o: SubOptions = { file: "", json: false, svn: "0" };
  const accepted = command === "measure" ? ["measurement_file", "svn"] : ["json"];
  const given = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith("-")) {
      if (o.file) throw new UsageError(`${command}: unexpected argument "${arg}"`);
      o.file = arg;
      continue;
    }
    const [name, inline] = arg.replace(/^--?/, "").split(/=(.*)/s, 2);
    if (!accepted.includes(name)) {
      throw new UsageError(`${command}: unknown option ${arg} (see igvmgen ${command} --help)`);
    }
    if (given.has(name)) throw new UsageError(`-${name} is given twice`);
    given.add(name);
    if (name === "json") {
      if (inline !== undefined) throw new UsageError(`-json takes no value`);
      o.json = true;
      continue;
    }
    if (inline === undefined && i + 1 >= args.length) {
      throw new UsageError(`-${name} needs a value`);
    }
    const value = inline ?? args[++i];
    if (name === "svn") o.svn = checkSvn(value);
    else if (value === "") {
      throw new UsageError(`-${name}: expected a file name, got an empty string`);
    } else o.measurementFile = value;
  }
  if (!o.file) throw new UsageError(`${command}: no IGVM file given`);
  return o;
}

/** Runs a subcommand; returns the exit code. `print` writes a line to standard output. */
export async function runSubcommand(
  command: Subcommand,
  args: readonly string[],
  print: (line: string) => void,
) {
  if (args.includes("--help") || args.includes("-h")) {
    print(SUBCOMMAND_HELP);
    return 0;
  }
  const o = parseSubOptions(command, args);
  const file = await openFileAccess(o.file).catch((e) => {
    throw new Error(`cannot read ${o.file}: ${(e as Error).message}`, { cause: e });
  });
  try {
    const named = (e: unknown) => new Error(`${o.file}: ${(e as Error).message}`, { cause: e });
    if (command === "inspect") {
      const report = await inspectIgvm(file, o.file).catch((e) => Promise.reject(named(e)));
      print(o.json ? JSON.stringify(report, null, 2) : formatInspect(report));
      return 0;
    }
    if (command === "verify") {
      const report = await verifyIgvm(file).catch((e) => Promise.reject(named(e)));
      if (o.json) print(JSON.stringify({ file: o.file, ...report }, null, 2));
      else if (report.ok) {
        for (const w of report.warnings) print(`${o.file}: warning: ${w}`);
        print(
          `${o.file}: OK (launch digest ${report.launchDigest}, signature valid, ACPI ${
            report.acpiTables.length
              ? report.acpiTables.map((t) => t.split("@")[0]).join(" ")
              : "none"
          })`,
        );
      } else for (const p of report.problems) print(`${o.file}: ${p}`);
      return report.ok ? 0 : 1;
    }
    const digest = toHex(await measureIgvm(file).catch((e) => Promise.reject(named(e))));
    print(digest);
    if (o.measurementFile) {
      await writeFileAtomic(
        o.measurementFile,
        new TextEncoder().encode(measurementJson(o.svn, digest)),
      );
    }
    return 0;
  } finally {
    file.close();
  }
}
