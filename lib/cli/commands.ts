/** The subcommands: `inspect`, `verify` and `measure` of an existing IGVM file. */
import { UsageError } from "../errors.ts";
import { formatInspect } from "../igvm/inspect.ts";
import { inspectIgvmFile, measureIgvmFile, verifyIgvmFile } from "../file_operations.ts";
import { assertStructurallySound, openFileAccess, readHeaders } from "../igvm/verify.ts";
import { measurementJson } from "../measure/measurement_json.ts";
import { checkSvn } from "./options.ts";
import { writeFileAtomic } from "../io/atomic_file.ts";
import {
  KVM_SUBCOMMAND_HELP,
  runMeasureLoader,
  runVerifyLoader,
  takeKvmOptions,
} from "./kvm_commands.ts";

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
         JSON with -measurement_file; -svn sets its guest SVN, default 0)

On Linux KVM (QEMU, Cloud Hypervisor, OpenVMM):
${KVM_SUBCOMMAND_HELP}`;

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
      if (inline !== undefined) throw new UsageError(`--json takes no value`);
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
  const { kvm, rest } = takeKvmOptions(command, args);
  const o = parseSubOptions(command, rest);
  if (kvm?.matrix && o.measurementFile) {
    throw new UsageError("measure --matrix writes no -measurement_file: give --loader instead");
  }
  if (kvm && command !== "inspect") {
    return await runKvmSubcommand(command, o, kvm, print);
  }
  if (command === "inspect") {
    const report = await inspectIgvmFile({ file: o.file });
    print(o.json ? JSON.stringify(report, null, 2) : formatInspect(report));
    return 0;
  }
  if (command === "verify") {
    const report = await verifyIgvmFile({ file: o.file });
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
  const result = await measureIgvmFile({
    file: o.file,
    svn: o.svn,
    measurementFile: o.measurementFile,
  });
  print(result.launchDigest);
  return 0;
}

/** `verify --loader` and `measure --loader/--matrix` for the KVM loaders. */
async function runKvmSubcommand(
  command: Subcommand,
  o: SubOptions,
  kvm: NonNullable<ReturnType<typeof takeKvmOptions>["kvm"]>,
  print: (line: string) => void,
): Promise<number> {
  const file = await openFileAccess(o.file).catch((e) => {
    throw new Error(`cannot read ${o.file}: ${(e as Error).message}`, { cause: e });
  });
  try {
    const named = (e: unknown) => new Error(`${o.file}: ${(e as Error).message}`, { cause: e });
    const headers = await readHeaders(file).catch((e) => Promise.reject(named(e)));
    // A loader's digest, like the default one, is never given for a broken file.
    if (command === "measure") {
      try {
        assertStructurallySound(file, headers);
      } catch (e) {
        throw named(e);
      }
    }
    if (command === "verify") {
      return await runVerifyLoader(o.file, file, headers, kvm, o.json, print);
    }
    const digest = await runMeasureLoader(o.file, file, headers, kvm, print).catch((e) =>
      Promise.reject(named(e))
    );
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
