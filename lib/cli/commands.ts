/**
 * The subcommands on existing IGVM files: `inspect`, `verify`, `measure`, `sign`, `diff`,
 * `attest` (an attestation report against images; its code loads only when it runs); and
 * `completions`, the shell completion script.
 */
import { UsageError } from "../errors.ts";
import { formatInspect } from "../ops/inspect.ts";
import { inspectIgvmFile } from "../ops/inspect.ts";
import { type IdBlockLoader, verifyIgvmFile } from "../ops/verify.ts";
import { DEFAULT_LOADER } from "../measure/loaders.ts";
import { readHeaders, structuralProblems } from "../igvm/structure.ts";
import { openInput } from "../io/input_source.ts";
import { runVerifyLoader, takeKvmOptions } from "./kvm_commands.ts";
import { runSignCommand, signHelp } from "./sign_command.ts";
import { measureHelp, runMeasureCommand } from "./measure_command.ts";
import { diffHelp, runDiffCommand } from "./diff_command.ts";
import { COMPLETIONS_HELP, completionScript } from "./completions.ts";
import { SUB_OPTIONS } from "./sub_options.ts";
import type { StandardStreams } from "../io/output_target.ts";

/** Standard output for the commands that write files, and what it is (from main.ts). */
export type CommandStreams = Pick<
  StandardStreams,
  "stdout" | "stdoutIdentity" | "stdoutIsTerminal" | "stdoutProbe"
>;

export const SUBCOMMANDS = [
  "inspect",
  "verify",
  "measure",
  "sign",
  "diff",
  "attest",
  "completions",
] as const;
export type Subcommand = typeof SUBCOMMANDS[number];

/** `igvmgen inspect --help`. */
const INSPECT_HELP = `usage: igvmgen inspect FILE [--json]

Summarises any IGVM file: platforms, policy, page ranges by kind, parameter areas, VMSA
registers and the ID block. A structurally broken file is refused (exit 1) with its first
problem. --json prints a stable document (schema igvmgen-inspect/1, see docs/generating.md).`;

/** `igvmgen verify --help`. */
const VERIFY_HELP = `usage: igvmgen verify FILE [--json] [--quiet]
       igvmgen verify --loader qemu-kvm|ch-kvm|openvmm-kvm FILE [--vcpus N] [--cpu C] [--json]

Checks the file against the IGVM format with igvmgen's own reader (magic, sizes, CRC-32,
header types and lengths, alignment, data placement, parameter areas), checks every field
of the ID block the PSP reads and its ECDSA P-384 signature, recomputes the SNP launch
digest and compares it with the ID block's, and walks the ACPI tables in the image. The
digest is that of the loaders the file is laid out for: a file laid out for KVM (-target
qemu-kvm|ch-kvm) is checked against qemu-kvm, ch-kvm and openvmm-kvm with 1 to 64 vCPUs of
every known CPU model, and the host found is named. Prints each problem and warning on its
own line; exit 0 when there is no problem, 1 otherwise. --quiet leaves out the OK line.

--loader L  would that loader on Linux KVM start the file? Prints every reason it would
            refuse it (exit 1) or that it would start it (exit 0), then notes; the ID block
            is compared with the digest L makes KVM compute for --vcpus N (default 1) and,
            for qemu-kvm with more than one vCPU, the CPU model --cpu (milan, genoa, rome,
            turin, QEMU's names such as EPYC-Milan, or a CPUID(1).EAX signature such as
            0x00a00f11)`;

/** Each subcommand's `--help` text. */
const HELP: Record<Exclude<Subcommand, "attest">, () => string> = {
  inspect: () => INSPECT_HELP,
  verify: () => VERIFY_HELP,
  measure: measureHelp,
  sign: signHelp,
  diff: diffHelp,
  completions: () => COMPLETIONS_HELP,
};

interface SubOptions {
  file: string;
  json: boolean;
  /** `verify --quiet`: no OK line; problems and warnings are still printed. */
  quiet: boolean;
}

/**
 * Parses the arguments of `inspect` and `verify` with the rules of generation's options:
 * one or two dashes, each option at most once, no value for a flag.
 */
function parseSubOptions(command: "inspect" | "verify", args: readonly string[]): SubOptions {
  const o: SubOptions = { file: "", json: false, quiet: false };
  // The flags as lib/cli/sub_options.ts declares them (verify's values are taken before).
  const flags: string[] = SUB_OPTIONS[command].filter((s) => s.kind === "flag").map((s) => s.name);
  const given = new Set<string>();
  for (const arg of args) {
    if (!arg.startsWith("-")) {
      if (o.file) throw new UsageError(`${command}: unexpected argument "${arg}"`);
      o.file = arg;
      continue;
    }
    const [name, inline] = arg.replace(/^--?/, "").split(/=(.*)/s, 2);
    if (!flags.includes(name)) {
      throw new UsageError(`${command}: unknown option ${arg} (see igvmgen ${command} --help)`);
    }
    if (given.has(name)) throw new UsageError(`${arg.split("=")[0]} is given twice`);
    given.add(name);
    if (inline !== undefined) throw new UsageError(`--${name} takes no value`);
    if (name === "json") o.json = true;
    else o.quiet = true;
  }
  if (!o.file) throw new UsageError(`${command}: no IGVM file given`);
  return o;
}

/** Runs a subcommand; returns the exit code. `print` writes a line to standard output. */
export async function runSubcommand(
  command: Subcommand,
  args: readonly string[],
  print: (line: string) => void,
  streams: CommandStreams = { stdout: Deno.stdout.writable },
) {
  if (command === "attest") {
    const { runAttestCommand } = await import("./attest_command.ts");
    return await runAttestCommand(args, print);
  }
  if (args.includes("--help") || args.includes("-h")) {
    print(HELP[command]());
    return 0;
  }
  if (command === "sign") {
    return await runSignCommand(args, (l) => console.error(l), streams);
  }
  if (command === "measure") return await runMeasureCommand(args, print, streams);
  if (command === "diff") return await runDiffCommand(args, print);
  if (command === "completions") {
    print(completionScript(args));
    return 0;
  }
  const { kvm, rest } = takeKvmOptions(command, args);
  const o = parseSubOptions(command, rest);
  if (kvm && command === "verify") return await runVerifyKvm(o, kvm, print);
  if (command === "inspect") {
    const report = await inspectIgvmFile({ file: o.file });
    print(o.json ? JSON.stringify(report, null, 2) : formatInspect(report));
    return 0;
  }
  const report = await verifyIgvmFile({ file: o.file });
  if (o.json) print(JSON.stringify({ file: o.file, ...report }, null, 2));
  else {
    if (report.platformNote) print(`${o.file}: note: ${report.platformNote}`);
    for (const p of report.problems) print(`${o.file}: ${p}`);
    for (const w of report.warnings) print(`${o.file}: warning: ${w}`);
    if (report.ok && !o.quiet) {
      print(
        `${o.file}: OK (launch digest ${
          report.signedFor && report.idBlock ? report.idBlock.ld : report.launchDigest
        }${signedForText(report.signedFor)}, signature valid, ACPI ${
          report.acpiTables.length
            ? report.acpiTables.map((t) => t.split("@")[0]).join(" ")
            : "none"
        })`,
      );
    }
  }
  return report.ok ? 0 : 1;
}

/** " of qemu-kvm with 4 vCPUs of genoa": whose digest the ID block carries; "" for hyperv. */
function signedForText(signedFor: IdBlockLoader | undefined): string {
  if (!signedFor || signedFor.loader === DEFAULT_LOADER) return "";
  if (signedFor.vcpus === undefined) return ` of ${signedFor.loader}`;
  const vcpus = `${signedFor.vcpus} vCPU${signedFor.vcpus === 1 ? "" : "s"}`;
  const cpu = !signedFor.cpu
    ? ""
    : signedFor.cpu === signedFor.cpuSignature
    ? ` of CPU ${signedFor.cpu}`
    : ` of ${signedFor.cpu} (${signedFor.cpuSignature})`;
  return ` of ${signedFor.loader} with ${vcpus}${cpu}`;
}

/** `verify --loader qemu-kvm|ch-kvm|openvmm-kvm`: would that loader start the file? */
async function runVerifyKvm(
  o: SubOptions,
  kvm: NonNullable<ReturnType<typeof takeKvmOptions>["kvm"]>,
  print: (line: string) => void,
): Promise<number> {
  const { file, release } = await openInput(o.file, "IGVM file");
  try {
    const headers = await readHeaders(file).catch((e) => {
      throw new Error(`${o.file}: ${(e as Error).message}`, { cause: e });
    });
    // A structurally broken file is refused before any loader model measures it.
    const problems = structuralProblems(file, headers).toArray();
    if (problems.length) {
      if (o.json) {
        print(JSON.stringify(
          { file: o.file, accepted: false, loader: kvm.loader, refusals: problems, notes: [] },
          null,
          2,
        ));
      } else for (const p of problems) print(`${o.file}: ${p}`);
      return 1;
    }
    return await runVerifyLoader(o.file, file, headers, kvm, o.json, print);
  } finally {
    await release();
  }
}
