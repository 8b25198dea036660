/**
 * `igvmgen measure`: the launch digest of a file under a loader model (--loader), of every
 * model (--all-loaders), or the whole launch log (--log); text or --json.
 */
import { snpPlatformNote } from "../igvm/directives.ts";
import { UsageError } from "../errors.ts";
import { toHex } from "../bytes/le.ts";
import { openInput } from "../io/input_source.ts";
import { soundHeaders } from "../ops/igvm_file.ts";
import { planOutputTargets, writeSmallOutput } from "../io/output_target.ts";
import type { CommandStreams } from "./commands.ts";
import { checkSvn, measurementJson } from "../measure/measurement_json.ts";
import {
  DEFAULT_LOADER,
  isLoaderRefusal,
  loaderDigest,
  loaderModel,
  LOADERS,
} from "../measure/loaders.ts";
import {
  describeHostMatch,
  findDigestLoader,
  hostOptions,
  type HostSearchOptions,
  layoutLoader,
} from "../measure/host_search.ts";
import { IGVM_VHS_SNP_ID_BLOCK, IGVM_VHT_SNP_ID_BLOCK } from "../igvm/defs.ts";
import type { FileAccess } from "../io/file_reader.ts";
import type { IgvmFile } from "../igvm/reader.ts";
import { launchLogBatches, LOG_HEADER } from "../measure/launch_log.ts";
import { LaunchLogWriter } from "../measure/launch_log_writer.ts";
import { parseSubArgs } from "./sub_args.ts";
import { SUB_OPTIONS } from "./sub_options.ts";
import type { HostConfig } from "../measure/launch_update.ts";
import type { KvmLoaderName } from "../measure/kvm_loaders.ts";
import { parseCpus, parseHost, parseVcpus, printMatrix } from "./kvm_commands.ts";
import { kvmMatrixDigests } from "../measure/kvm_hosts.ts";

/** Help for `igvmgen measure`. */
export function measureHelp(): string {
  return `usage: igvmgen measure FILE [--loader NAME] [-measurement_file OUT.json] [-svn N] [--quiet]
       igvmgen measure FILE --all-loaders [--json]
       igvmgen measure FILE --log [--loader NAME] [--json]
       igvmgen measure FILE --loader qemu-kvm|ch-kvm|openvmm-kvm [--vcpus N] [--cpu C] ...
       igvmgen measure FILE --matrix [--loader NAME] --vcpus 1,2,4 --cpu milan,genoa [--json]

Prints the SNP launch digest recomputed from the file: the MEASUREMENT the PSP computes
when the loader NAME launches it.
  --loader NAME            ${LOADERS.map((l) => l.name).join(", ")}. Default: the
                           file's layout, ${DEFAULT_LOADER} or, for a file laid out for KVM
                           (-target qemu-kvm|ch-kvm), qemu-kvm. When the ID block carries
                           another digest, the options that reproduce it go to stderr
  --all-loaders            the digest under every loader model, or why it refuses the file;
                           exit 1 when the default loader refuses it
  --quiet                  no notes on stderr (warnings are still printed)
  --log                    every launch update: index, GPA, SNP page type, contents hash,
                           running digest, and the part of the guest (kernel, initrd,
                           command line, boot_params, ACPI tables, page tables, GDT, CPUID,
                           secrets, parameter area, VMSA) for images laid out by igvmgen;
                           "page data" for other files. The last digest is the measurement
  --json                   JSON output (schemas igvmgen-measure/1, igvmgen-measure-loaders/1,
                           igvmgen-measure-log/1)
  -measurement_file FILE   also write the measurement JSON; -svn N sets its guest SVN
  --vcpus N, --cpu C       the host configuration of a KVM loader (default 1 vCPU): KVM
                           measures one VMSA per vCPU, each AP's with the CPU signature
                           (milan, genoa, rome, turin, QEMU's names such as EPYC-Milan, or
                           CPUID(1).EAX such as 0x00a00f11)
  --matrix                 one digest per combination of the --vcpus and --cpu lists, for
                           qemu-kvm unless --loader says otherwise (schema
                           igvmgen-measure-matrix/1 with --json)
Loaders:
${LOADERS.map((l) => `  ${l.name.padEnd(24)} ${l.description}`).join("\n")}`;
}

/** Runs `igvmgen measure`; returns the exit code. Notes go to `notice` (stderr). */
export async function runMeasureCommand(
  args: readonly string[],
  print: (line: string) => void,
  streams: CommandStreams = {},
  notice: (line: string) => void = (line) => console.error(line),
): Promise<number> {
  const { values, positional } = parseSubArgs("measure", args, SUB_OPTIONS.measure);
  if (positional.length !== 1) {
    throw new UsageError(
      positional.length
        ? `measure: unexpected argument "${positional[1]}"`
        : "measure: no IGVM file given",
    );
  }
  const path = positional[0];
  const given = values.get("loader") as string | undefined;
  if (given !== undefined) loaderModel(given);
  const all = values.has("all_loaders");
  const log = values.has("log");
  const json = values.has("json");
  const quiet = values.has("quiet");
  const measurementFile = values.get("measurement_file") as string | undefined;
  const svn = checkSvn("-svn", (values.get("svn") as string | undefined) ?? "0");
  if (all && (log || given !== undefined || measurementFile)) {
    throw new UsageError(
      "measure: --all-loaders goes with no --log, --loader or -measurement_file",
    );
  }
  const matrix = values.has("matrix");
  if (matrix && (log || all || measurementFile)) {
    throw new UsageError(
      "measure: --matrix goes with no --log, --all-loaders or -measurement_file",
    );
  }
  // The loader is --loader's (qemu-kvm for --matrix), else the one the file is laid out for
  // (known once its headers are read): its host options are checked now when it is known.
  const fixed = given ?? (matrix ? "qemu-kvm" : undefined);
  if (fixed !== undefined) {
    const model = loaderModel(fixed);
    hostOf(values, model.name, model.hostDependent === true, matrix);
  }
  // The measurement file is checked before any work, as every output is.
  const [target] = measurementFile === undefined ? [] : await planOutputTargets({
    outputs: [{ option: "-measurement_file", given: measurementFile, text: true }],
    inputs: [{ option: "the input", path }],
    ...streams,
  });
  const { file, release } = await openInput(path, "IGVM file");
  const named = (e: unknown) => new Error(`${path}: ${(e as Error).message}`, { cause: e });
  try {
    // No digest is ever given for a structurally broken file.
    const headers = await soundHeaders(file).catch((e) => Promise.reject(named(e)));
    // Standard output is the digest alone; which platform it is for goes to standard error.
    const platform = snpPlatformNote(headers);
    if (platform) console.error(`igvmgen: note: ${path}: ${platform}`);
    const loader = fixed ?? layoutLoader(headers);
    const model = loaderModel(loader);
    const host = hostOf(values, model.name, model.hostDependent === true, matrix);
    if (matrix) {
      const vcpus = parseVcpus(values.get("vcpus") as string, true);
      const cpus = parseCpus(values.get("cpu") as string, true);
      const rows = await kvmMatrixDigests(model.name as KvmLoaderName, file, headers, vcpus, cpus)
        .catch((e) => Promise.reject(named(e)));
      printMatrix(path, model.name, rows, json, true, print);
      return 0;
    }
    if (all) return await printAllLoaders(path, file, headers, loader, host, json, print);
    let digest: string;
    // The file-order (hyperv) digest, when that is what was measured: the ID block's search
    // then does not compute it again.
    let fileOrderDigest: Uint8Array | undefined;
    if (log) {
      if (json) {
        print(
          `{\n  "schema": "igvmgen-measure-log/1",\n  "file": ${
            JSON.stringify(path)
          },\n  "loader": "${loader}",\n  "updates": [`,
        );
      } else print(LOG_HEADER);
      let last: Uint8Array = new Uint8Array(48);
      // The lines are written as bytes straight from the log's batches and printed about
      // 64 KiB at a time: a string or an object per line of a 1M-page log costs memory.
      const decoder = new TextDecoder();
      const writer = new LaunchLogWriter(json, (chunk) => print(decoder.decode(chunk)));
      try {
        for await (const b of launchLogBatches(file, headers, loader, host)) {
          writer.add(b);
          const n = b.updates.length;
          if (n) last = b.digests.slice((n - 1) * 48, n * 48);
        }
      } catch (e) {
        if (json) writer.dropLast();
        throw named(e);
      } finally {
        writer.flush();
      }
      digest = toHex(last);
      if (json) print(`  ],\n  "launchDigest": "${digest}"\n}`);
      else print(`launch digest (${loader}): ${digest}`);
    } else {
      const bytes = await loaderDigest(loader, file, headers, host)
        .catch((e) => Promise.reject(named(e)));
      if (loader === DEFAULT_LOADER) fileOrderDigest = bytes;
      digest = toHex(bytes);
      print(
        json
          ? JSON.stringify(
            { schema: "igvmgen-measure/1", file: path, loader, launchDigest: digest },
            null,
            2,
          )
          : digest,
      );
    }
    if (given === undefined && !log) {
      const notes = await idBlockNotes(path, file, headers, loader, host, digest, quiet, {
        fileOrderDigest,
      });
      for (const line of notes) {
        notice(line);
      }
    }
    if (target) {
      await writeSmallOutput(
        target,
        new TextEncoder().encode(measurementJson(svn, digest)),
        streams.stdout,
      );
    }
    return 0;
  } finally {
    await release();
  }
}

/**
 * `measure --all-loaders`: every loader's digest, or the reason it refuses the file, one line
 * each. Exit 0 only when `defaultLoader` (the one `measure` takes for this file) gave one.
 */
async function printAllLoaders(
  path: string,
  file: FileAccess,
  headers: IgvmFile,
  defaultLoader: string,
  host: HostConfig | undefined,
  json: boolean,
  print: (line: string) => void,
): Promise<number> {
  const digests: { loader: string; launchDigest: string; description: string }[] = [];
  let defaultFailed = false;
  for (const l of LOADERS) {
    const d = await loaderDigest(l.name, file, headers, l.hostDependent ? host : undefined)
      .then(toHex, (e) => {
        if (!isLoaderRefusal(e)) throw e;
        if (l.name === defaultLoader) defaultFailed = true;
        return `error: ${e.message}`;
      });
    digests.push({ loader: l.name, launchDigest: d, description: l.description });
  }
  if (json) {
    print(
      JSON.stringify(
        {
          schema: "igvmgen-measure-loaders/1",
          file: path,
          defaultLoader,
          loaders: digests,
        },
        null,
        2,
      ),
    );
  } else for (const d of digests) print(`${d.loader.padEnd(24)} ${d.launchDigest}`);
  return defaultFailed ? 1 : 0;
}

/**
 * What `measure` without --loader says on stderr: for a file laid out for KVM, which loader
 * it measured (unless `quiet`); when the ID block carries another digest, the options that
 * reproduce it, or that none does.
 */
async function idBlockNotes(
  path: string,
  file: FileAccess,
  headers: IgvmFile,
  loader: string,
  host: HostConfig | undefined,
  digest: string,
  quiet: boolean,
  search: HostSearchOptions,
): Promise<string[]> {
  const notes: string[] = [];
  if (loader !== DEFAULT_LOADER && !quiet) {
    const vcpus = host?.vcpus ?? 1;
    notes.push(
      `igvmgen: note: ${path} is laid out for KVM: this is the ${loader} digest for ${vcpus} ` +
        `vCPU${vcpus === 1 ? "" : "s"} (--loader chooses another)`,
    );
  }
  const idBlock = headers.directives.find((d) => d.type === IGVM_VHT_SNP_ID_BLOCK);
  if (!idBlock || idBlock.length !== IGVM_VHS_SNP_ID_BLOCK.size) return notes;
  const at = IGVM_VHS_SNP_ID_BLOCK.off.Ld;
  const ld = toHex(idBlock.body.subarray(at, at + 48));
  if (ld === digest) return notes;
  const found = await findDigestLoader(file, headers, ld, search);
  notes.push(
    found.match
      ? `igvmgen: note: the ID block carries another launch digest, that of ${
        describeHostMatch(found.match)
      }: igvmgen measure ${path} ${hostOptions(found.match)} reproduces it`
      : `igvmgen: warning: the ID block's launch digest ${
        ld.slice(0, 16)
      }... is no known loader's and host's for this file (igvmgen verify ${path} lists the problems)`,
  );
  return notes;
}

/**
 * The host configuration of `--vcpus` and `--cpu`: only for a host-dependent (KVM) loader,
 * and `--cpu` is needed where each AP's VMSA holds the CPU signature.
 */
function hostOf(
  values: Map<string, string | boolean>,
  loader: string,
  hostDependent: boolean,
  matrix: boolean,
): HostConfig | undefined {
  const vcpusText = values.get("vcpus") as string | undefined;
  const cpuText = values.get("cpu") as string | undefined;
  if (matrix) {
    if (!hostDependent) throw new UsageError(`measure --matrix: ${loader} is not a KVM loader`);
    if (vcpusText === undefined || cpuText === undefined) {
      throw new UsageError("measure --matrix needs --vcpus and --cpu lists");
    }
    return undefined;
  }
  if (vcpusText === undefined && cpuText === undefined) return undefined;
  if (!hostDependent && !values.has("all_loaders")) {
    throw new UsageError(
      `measure: --vcpus and --cpu go with a KVM loader (qemu-kvm, ch-kvm, openvmm-kvm)`,
    );
  }
  const { vcpus, cpuSignature } = parseHost(loader, vcpusText, cpuText);
  return { vcpus, cpuSignature };
}
