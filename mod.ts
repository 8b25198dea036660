/**
 * igvmgen as a library: build IGVM images for AMD SEV-SNP guests, and measure, verify,
 * inspect, dump, diff and sign any IGVM file, and check a guest's attestation report against
 * its images. The `igvmgen` command is a thin layer over these
 * functions, so a request here gives the same bytes as the same options on the command line.
 *
 * Requests are plain objects with camelCase fields; every generation option of the original
 * igvmgen has one (`-append` is `cmdline`, `-rdinit` is `initrd`, `-acpi_dir` is `acpi`, ...).
 * Inputs are file paths or byte streams (`ReadableStream<Uint8Array>`: a `fetch()` body,
 * `Deno.stdin.readable`). Results are plain data. A bad request throws {@link UsageError}; a
 * bad input file or value, or an output that cannot be written, throws {@link InputError},
 * with the parser's own error (e.g. {@link IgvmFormatError}) as `cause`. Other failures (an
 * I/O error while writing, a failed read-back check) are plain `Error`s.
 *
 * Generating needs read and write permission (for temporary files and the output), and
 * `--allow-run=iasl` only when `.dsl` ACPI tables are compiled.
 *
 * @example Generate an image from a kernel fetched over HTTP, then verify it
 * ```ts ignore
 * import { generate, verify } from "@igvmgen/igvmgen";
 *
 * const response = await fetch("https://example.com/bzImage");
 * const result = await generate({
 *   output: "guest.igvm",
 *   kernel: response.body!,
 *   cmdline: "console=ttyS0",
 *   bootMode: "x64",
 *   signKey: "id-key.pem",
 * });
 * console.log(result.launchMeasurement);
 *
 * const report = await verify({ file: "guest.igvm" });
 * if (!report.ok) throw new Error(report.problems.join("; "));
 * ```
 *
 * @example Measure an existing file, for Hyper-V and for QEMU on KVM with 4 vCPUs
 * ```ts ignore
 * import { CPU_SIGNATURES, measure } from "@igvmgen/igvmgen";
 *
 * const { launchDigest } = await measure({ file: "guest.igvm" });
 * const kvm = await measure({
 *   file: "guest.igvm",
 *   loader: "qemu-kvm",
 *   host: { vcpus: 4, cpuSignature: CPU_SIGNATURES.genoa },
 * });
 * ```
 *
 * @example Sign a file offline: the payload to an HSM, then its signature back in
 * ```ts ignore
 * import { sign } from "@igvmgen/igvmgen";
 *
 * await sign({ file: "guest.igvm", payloadOut: "id-block.bin" });
 * // ... the HSM signs id-block.bin (ECDSA P-384, SHA-384) into id-block.sig ...
 * await sign({
 *   file: "guest.igvm",
 *   output: "guest-signed.igvm",
 *   idSignature: "id-block.sig",
 *   idPublicKey: "id-key.pub.pem",
 * });
 * ```
 *
 * @module
 */
import { generateIgvm, type GenerateResult } from "./lib/ops/generate.ts";
import type { GenerateRequest } from "./lib/ops/generate_request.ts";
import { diffIgvmFiles, type DiffRequest, type DiffResult } from "./lib/ops/diff.ts";
import { dumpIgvmFileText } from "./lib/ops/dump.ts";
import type { IgvmFileRequest } from "./lib/ops/igvm_file.ts";
import { inspectIgvmFile, type InspectRequest } from "./lib/ops/inspect.ts";
import {
  measureIgvmFile,
  measureIgvmLog,
  type MeasureLogEntry,
  type MeasureLogRequest,
  type MeasureRequest,
  type MeasureResult,
} from "./lib/ops/measure.ts";
import { signIgvm, type SignRequest, type SignResult } from "./lib/ops/sign.ts";
import { verifyIgvmFile } from "./lib/ops/verify.ts";
import type { InspectReport } from "./lib/ops/inspect.ts";
import type { VerifyReport } from "./lib/ops/verify.ts";
import type { AttestRequest, AttestResult } from "./lib/ops/attest.ts";

export type { GenerateResult } from "./lib/ops/generate.ts";
export type {
  AcpiProfileName,
  BootMode,
  CpuVendor,
  GenerateRequest,
  KernelFormat,
} from "./lib/ops/generate_request.ts";
export type { Input, NamedStream } from "./lib/io/input_source.ts";
export type { Target } from "./lib/ops/generate_request.ts";
export type { DiffRequest, DiffResult } from "./lib/ops/diff.ts";
export type { IgvmFileRequest, LoaderChoice } from "./lib/ops/igvm_file.ts";
export type { InspectRequest } from "./lib/ops/inspect.ts";
export type {
  MeasureLogEntry,
  MeasureLogRequest,
  MeasureRequest,
  MeasureResult,
} from "./lib/ops/measure.ts";
export type { SignRequest, SignResult } from "./lib/ops/sign.ts";
export type { AttestMatch, AttestRequest, AttestResult, Check } from "./lib/ops/attest.ts";
export { LOADER_NAMES } from "./lib/ops/igvm_file.ts";
export type { HostConfig } from "./lib/measure/launch_update.ts";
export { CPU_SIGNATURES } from "./lib/x86/kvm_vmsa.ts";
export type { PartChanges } from "./lib/measure/launch_diff.ts";
export type { LaunchLogEntryJson } from "./lib/measure/launch_log.ts";

export type { IdBlockInfo, IdBlockLoader, VerifyReport } from "./lib/ops/verify.ts";
export type { InspectReport, PageKind, PageRange } from "./lib/ops/inspect.ts";
export { InputError, UsageError } from "./lib/errors.ts";
export { IgvmFormatError } from "./lib/igvm/reader.ts";
export { KeyError } from "./lib/measure/signing_key.ts";
export { ConfigError } from "./lib/measure/tei_config.ts";
export { AcpiError } from "./acpi/acpi_image.ts";
export { SnapshotError } from "./acpi/legacy_snapshot.ts";
export { LoaderRefusal } from "./lib/measure/kvm_loaders.ts";

/** How a caller follows a generation. */
export interface GenerateOptions {
  /** Warnings worth showing a user (e.g. a kernel shorter than its header announces). */
  onNotice?: (message: string) => void;
  /** Called after each batch of pages is written, with the pages done and the total. */
  onProgress?: (pagesDone: number, pageCount: number) => void;
}

/**
 * Generates an IGVM file: reads the kernel (and initrd, payloads, key and config), lays
 * out the guest, writes and measures the image, signs the ID block, and reads the file back
 * to check it before committing it. The output, and `measurementFile` when given, appear
 * only when everything succeeded; on failure an existing output is left untouched.
 *
 * Stream inputs are copied to a temporary file first (the layout needs the size), in
 * bounded memory; memory stays at a few MiB whatever the input sizes.
 *
 * @example Build from a kernel on disk with a deterministic signature
 * ```ts ignore
 * const result = await generate({
 *   output: "out.igvm",
 *   kernel: "bzImage",
 *   cmdline: "console=ttyS0",
 *   initrd: "initrd.img",
 *   signKey: "key.pem",
 *   signDeterministic: true,
 *   measurementFile: "out.json",
 * });
 * ```
 *
 * @param request What to build; `output` and `kernel` are required, the rest defaults as in
 *   the original igvmgen.
 * @param options Callbacks for notices and progress.
 * @returns The launch measurement, the sizes and the measurement JSON.
 * @throws {UsageError} A field has a bad value, or fields that do not go together are given.
 * @throws {InputError} An input is missing, unreadable or malformed (the message names it).
 */
export function generate(
  request: GenerateRequest,
  options: GenerateOptions = {},
): Promise<GenerateResult> {
  const onProgress = options.onProgress;
  return generateIgvm(request, {
    fieldNames: true,
    notice: options.onNotice,
    progress: onProgress ? () => onProgress : undefined,
  });
}

/**
 * Recomputes the SNP launch digest of an IGVM file from its directives, as the PSP computes
 * it when the host's loader (`loader`, default `"hyperv"`) launches it, and gives the
 * measurement JSON the original igvmgen writes. Under the KVM loaders the digest depends on
 * the host: one VMSA per vCPU, each AP's holding the CPU signature (`host`).
 *
 * @param request The file; optionally the loader and host, the guest SVN and a path for
 *   the JSON.
 * @returns The launch digest (96 hex digits), the loader and the measurement JSON.
 * @throws {UsageError} `loader`, `host` or `svn` has a bad value.
 * @throws {InputError} The file cannot be read, is not a well-formed IGVM file, or the
 *   loader cannot take it (a {@link LoaderRefusal} as `cause`).
 */
export function measure(request: MeasureRequest): Promise<MeasureResult> {
  return measureIgvmFile(request);
}

/**
 * The launch log of an IGVM file: every launch update the loader issues, in the order the
 * PSP measures them, with the page's part of the guest, its contents digest and the running
 * launch digest. The last entry's `digest` is what {@link measure} gives. Entries are
 * streamed, so memory stays small whatever the file's size; the file is closed when the
 * iteration ends (also when the caller stops early).
 *
 * @example Print where each initrd page lands
 * ```ts ignore
 * for await (const e of measureLog({ file: "guest.igvm" })) {
 *   if (e.part === "initrd") console.log(e.gpa.toString(16), e.contents);
 * }
 * ```
 *
 * @param request The file, and optionally the loader and host.
 * @returns The entries, one per launch update.
 * @throws {UsageError} `loader` or `host` has a bad value (on the first step).
 * @throws {InputError} The file cannot be read, is not a well-formed IGVM file, or the
 *   loader cannot take it.
 */
export function measureLog(request: MeasureLogRequest): AsyncGenerator<MeasureLogEntry> {
  return measureIgvmLog(request);
}

/**
 * Explains why the launch digests of two IGVM files differ: the first launch update where
 * they part, and per part of the guest (kernel, initrd, ACPI tables, ...) the pages
 * changed, added and removed. Each file can be measured under its own loader.
 *
 * @param request The two files, and optionally their loaders.
 * @returns Whether the digests are equal, both digests, the first difference and the parts.
 * @throws {UsageError} A loader name is unknown.
 * @throws {InputError} A file cannot be read or is not an IGVM file, or a loader cannot
 *   take it.
 */
export function diff(request: DiffRequest): Promise<DiffResult> {
  return diffIgvmFiles(request);
}

/**
 * Adds the SNP ID block to any SEV-SNP IGVM file, or replaces it, over the launch digest
 * recomputed from the file under `loader`. With `signKey` it signs and writes `output`.
 * Offline, it writes the 96-byte payload the ID key signs (`payloadOut`), or attaches a
 * signature made elsewhere (`idSignature` and `idPublicKey`) once it verifies over that
 * payload. Outputs appear only when all succeeded; writing over the input is refused.
 *
 * @example Re-sign a file with another key
 * ```ts ignore
 * const { launchMeasurement } = await sign({
 *   file: "guest.igvm",
 *   output: "guest-signed.igvm",
 *   signKey: "id-key.pem",
 * });
 * ```
 *
 * @param request The file, the outputs, and the key or the offline signature.
 * @returns The launch measurement, whether an ID block was added, warnings, and the
 *   measurement JSON.
 * @throws {UsageError} Fields are missing, have bad values, or do not go together.
 * @throws {InputError} The file, key, config or signature cannot be read or is malformed,
 *   the signature does not verify, or an output cannot be written.
 */
export function sign(request: SignRequest): Promise<SignResult> {
  return signIgvm(request);
}

/**
 * Checks an IGVM file with igvmgen's own reader: the format (magic, sizes, CRC-32, header
 * types and lengths, alignment, data placement), the recomputed launch digest against the ID
 * block's, the ID block's ECDSA P-384 signature, and the ACPI tables in the image. Problems
 * are listed in the report, not thrown.
 *
 * @param request The file.
 * @returns `ok`, the problems and warnings, the launch digest, policy, ID block and tables.
 * @throws {InputError} The file cannot be read, or its header section cannot be parsed.
 */
export function verify(request: IgvmFileRequest): Promise<VerifyReport> {
  return verifyIgvmFile(request);
}

/**
 * Summarises an IGVM file: platforms, policy, page ranges by kind, parameter areas, VMSA
 * registers and the ID block. The report is the `inspect --json` document (schema
 * `igvmgen-inspect/1`).
 *
 * @param request The file, and the name the report gives it.
 * @returns The report.
 * @throws {InputError} The file cannot be read or is not a well-formed IGVM file.
 */
export function inspect(request: InspectRequest): Promise<InspectReport> {
  return inspectIgvmFile(request);
}

/**
 * The original igvmgen's text dump of an IGVM file (`-d`), line for line: the fixed header,
 * each variable header with its offset, and the VMSA of each VP context.
 *
 * @param request The file.
 * @returns The dump, ending with a newline.
 * @throws {InputError} The file cannot be read or is not an IGVM file.
 */
export function dump(request: IgvmFileRequest): Promise<string> {
  return dumpIgvmFileText(request);
}

/**
 * Checks an SEV-SNP attestation report (versions 2, 3 and 5; raw or hex) and traces it back
 * to its image: the report's ECDSA P-384 signature with the VCEK or VLEK, the chain up to AMD's
 * root (Milan, Genoa and Turin built in), the key's TCB and chip ID against the report, which
 * image, loader, vCPU count and CPU model reproduce its MEASUREMENT, and the report's policy,
 * key digests, family and image IDs and guest SVN against that image. Revocation lists are not
 * checked. Failed checks are listed in the result, not thrown.
 *
 * @example Check a report against an image
 * ```ts ignore
 * import { attest } from "@igvmgen/igvmgen";
 *
 * const result = await attest({ report: "report.bin", vcek: "vcek.pem", images: ["guest.igvm"] });
 * if (!result.ok) console.error(result.problems.join("\n"));
 * ```
 *
 * @param request The report, the certificates, the images, and the expected values.
 * @returns `ok`, `signatureValid`, `chainValid`, the `match`, every check and the problems.
 * @throws {UsageError} A bad request (a malformed expected value or minimum TCB).
 * @throws {InputError} The report or a certificate or image cannot be read or parsed.
 */
export async function attest(request: AttestRequest): Promise<AttestResult> {
  const { attest } = await import("./lib/ops/attest.ts");
  return await attest(request);
}
