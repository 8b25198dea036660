/** The subcommands on existing IGVM files: `inspect`, `verify`, `measure`, `sign`, `diff`. */
import { UsageError } from "../errors.ts";
import { formatInspect, inspectIgvm } from "../igvm/inspect.ts";
import { openFileAccess, verifyIgvm } from "../igvm/verify.ts";
import { runSignCommand } from "./sign_command.ts";
import { runMeasureCommand } from "./measure_command.ts";
import { runDiffCommand } from "./diff_command.ts";

export const SUBCOMMANDS = ["inspect", "verify", "measure", "sign", "diff"] as const;
export type Subcommand = typeof SUBCOMMANDS[number];

/** Help for the subcommands. */
export const SUBCOMMAND_HELP = `usage: igvmgen inspect FILE [--json]
       igvmgen verify FILE [--json]
       igvmgen measure FILE [--loader NAME | --all-loaders | --log] [--json]
                    [-measurement_file OUT.json] [-svn N]
       igvmgen sign IN -o OUT (-sign_key KEY.pem | --id-signature SIG --id-public-key KEY)
       igvmgen sign IN --payload-out ID_BLOCK.bin
       igvmgen diff A B [--loader NAME] [--loader-b NAME] [--json]

inspect  summarise any IGVM file: platforms, policy, page ranges by kind, VMSA registers,
         ID block (--json: a stable JSON document, schema igvmgen-inspect/1)
verify   check the file against the IGVM format on igvmgen's own reader, recompute the SNP
         launch digest, verify the ID block signature, walk the ACPI tables in the image;
         prints each problem on its own line; exit 0 when there is none, 1 otherwise
measure  print the SNP launch digest recomputed from the file under a host loader model
         (--loader; --all-loaders for each), or every launch update with the part of the
         guest it measures (--log); -measurement_file writes the measurement JSON
sign     add or replace the SNP ID block of any SEV-SNP IGVM file: with a private key, or
         offline (--payload-out for the signer, then --id-signature/--id-public-key)
diff     the first launch update where two files differ, and the pages changed, added
         and removed per part; exit 0 when the digests are equal, 1 otherwise

Each command has its own --help (igvmgen sign --help).`;

interface SubOptions {
  file: string;
  json: boolean;
}

function parseSubOptions(command: Subcommand, args: readonly string[]): SubOptions {
  const o: SubOptions = { file: "", json: false };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const [name] = arg.startsWith("-") ? arg.replace(/^--?/, "").split(/=(.*)/s, 2) : [undefined];
    if (name === undefined) {
      if (o.file) throw new UsageError(`${command}: unexpected argument "${arg}"`);
      o.file = arg;
    } else if (name === "json") o.json = true;
    else {throw new UsageError(
        `${command}: unknown option ${arg} (see igvmgen ${command} --help)`,
      );}
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
  if (command === "sign") return await runSignCommand(args, print, (l) => console.error(l));
  if (command === "measure") return await runMeasureCommand(args, print);
  if (command === "diff") return await runDiffCommand(args, print);
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
    throw new UsageError(`unknown command ${command}`);
  } finally {
    file.close();
  }
}
