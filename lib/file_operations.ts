/**
 * The operations on an existing IGVM file: measure (its digest, or the launch log), diff,
 * sign, verify, inspect and dump. Each takes a request naming the file (a path or a stream) and
 * returns plain data; the file is read with igvmgen's own reader (lib/igvm/), never the
 * writer's code.
 */
import { toHex } from "./bytes/le.ts";
import { InputError, UsageError } from "./errors.ts";
import { checkSvn } from "./measure/measurement_json.ts";
import { dumpIgvm } from "./igvm/dump.ts";
import { inspectIgvm, type InspectReport } from "./igvm/inspect.ts";
import type { IgvmFile } from "./igvm/reader.ts";
import {
  assertStructurallySound,
  readHeaders,
  verifyIgvm,
  type VerifyReport,
} from "./igvm/verify.ts";
import { planOutputTargets, writeSmallOutput } from "./io/output_target.ts";
import type { FileAccess } from "./io/file_reader.ts";
import {
  type Input,
  inputName,
  openInput,
  withInputAccess,
  withInputPaths,
} from "./io/input_source.ts";
import { signIgvmFile } from "./sign_file.ts";
import { measurementJson } from "./measure/measurement_json.ts";
import { DEFAULT_LOADER, loaderDigest, loaderNames, LOADERS } from "./measure/loaders.ts";
import type { HostConfig } from "./measure/launch_update.ts";
import { launchLog, SNP_PAGE_TYPE_NAMES } from "./measure/launch_log.ts";
import { diffLaunches, type LaunchDiff } from "./measure/launch_diff.ts";

/** A request about one IGVM file. */
export interface IgvmFileRequest {
  /** The IGVM file: a path, or a stream (spooled to a temporary file, then removed). */
  file: Input;
}

/** The names of the loader models, the default (`"hyperv"`) first. */
export const LOADER_NAMES: readonly string[] = loaderNames();

/** Which host loads the file: a loader model and, for the KVM loaders, the host's CPUs. */
export interface LoaderChoice {
  /**
   * The loader model whose launch updates the PSP measures: one of {@link LOADER_NAMES}.
   * Default `"hyperv"` (Hyper-V and the original igvmgen: file order).
   */
  loader?: string;
  /**
   * The host configuration the KVM loaders' digest depends on (`qemu-kvm`, `ch-kvm`,
   * `openvmm-kvm`; refused with the others). Default 1 vCPU and EPYC-Milan's signature.
   */
  host?: HostConfig;
}

/** What `measure` is asked. */
export interface MeasureRequest extends IgvmFileRequest, LoaderChoice {
  /** The guest SVN written to the measurement JSON, a whole number. Default `"0"`. */
  svn?: string | number;
  /** Also write the measurement JSON to this path (atomically). */
  measurementFile?: string;
}

/** What `measure` found. */
export interface MeasureResult {
  /** The SNP launch digest recomputed from the file, 96 hex digits. */
  launchDigest: string;
  /** The loader model it was computed for. */
  loader: string;
  /** The measurement JSON, as the original igvmgen writes it. */
  measurementJson: string;
}

/** Checks a loader choice; a bad field is a `UsageError` naming it. */
export function resolveLoaderChoice(
  choice: LoaderChoice,
  field = "loader",
): { loader: string; host?: HostConfig } {
  const loader = choice.loader ?? DEFAULT_LOADER;
  const model = LOADERS.find((l) => l.name === loader);
  if (!model) {
    throw new UsageError(
      `${field}: expected one of ${LOADER_NAMES.join(", ")}, got ${JSON.stringify(loader)}`,
    );
  }
  const host = choice.host;
  if (host === undefined) return { loader };
  if (!model.hostDependent) {
    throw new UsageError(
      `host: goes with a KVM loader (${
        LOADERS.filter((l) => l.hostDependent).map((l) => l.name).join(", ")
      }), not ${loader}`,
    );
  }
  if (!Number.isSafeInteger(host.vcpus) || host.vcpus < 1 || host.vcpus > 512) {
    throw new UsageError(`host.vcpus: expected a whole number from 1 to 512, got ${host.vcpus}`);
  }
  if (
    !Number.isSafeInteger(host.cpuSignature) || host.cpuSignature < 0 ||
    host.cpuSignature > 0xffff_ffff
  ) {
    throw new UsageError(
      `host.cpuSignature: expected a CPUID(1).EAX value (a u32), got ${host.cpuSignature}`,
    );
  }
  return { loader, host: { vcpus: host.vcpus, cpuSignature: host.cpuSignature } };
}

/**
 * Refuses a request field the operation does not know: a misspelling (`measurement_file`,
 * `loaderb`) is a `UsageError`, never silently ignored. `fields` lists every field (its type
 * keeps the list complete).
 */
function checkFields(what: string, request: unknown, fields: Record<string, true>): void {
  if (typeof request !== "object" || request === null) {
    throw new UsageError(`${what}: the request must be an object`);
  }
  const unknown = Object.keys(request).filter((k) => !(k in fields));
  if (unknown.length) {
    throw new UsageError(
      `${what}: unknown request field${unknown.length > 1 ? "s" : ""} ${
        unknown.join(", ")
      } (expected ${Object.keys(fields).join(", ")})`,
    );
  }
}

const FILE_FIELDS = { file: true } satisfies Record<keyof IgvmFileRequest, true>;
const LOG_FIELDS = { file: true, loader: true, host: true } satisfies Record<
  keyof MeasureLogRequest,
  true
>;
const MEASURE_FIELDS = { ...LOG_FIELDS, svn: true, measurementFile: true } satisfies Record<
  keyof MeasureRequest,
  true
>;

/** The headers of a file that has no structural problem (else the first one is thrown). */
export async function soundHeaders(file: FileAccess): Promise<IgvmFile> {
  const headers = await readHeaders(file);
  assertStructurallySound(file, headers);
  return headers;
}

/** Rethrows an error of reading `name` as an `InputError` that names it. */
function naming(name: string): (e: unknown) => never {
  return (e) => {
    throw new InputError(`${name}: ${(e as Error).message}`, { cause: e });
  };
}

/** Recomputes the SNP launch digest of a file, as the PSP computes it. */
export async function measureIgvmFile(request: MeasureRequest): Promise<MeasureResult> {
  checkFields("measure", request, MEASURE_FIELDS);
  const svn = checkSvn("svn", request.svn ?? "0");
  const { loader, host } = resolveLoaderChoice(request);
  const name = inputName(request.file);
  // The measurement file is checked before any work, as every output is.
  const [target] = request.measurementFile === undefined ? [] : await planOutputTargets({
    outputs: [{ option: "measurementFile", given: request.measurementFile, text: true }],
    inputs: [{ option: "file", path: typeof request.file === "string" ? request.file : undefined }],
  });
  const launchDigest = await withInputAccess(request.file, "IGVM file", async (file) => {
    const digest = soundHeaders(file).then((h) => loaderDigest(loader, file, h, host));
    return toHex(await digest.catch(naming(name)));
  });
  const json = measurementJson(svn, launchDigest);
  if (target) await writeSmallOutput(target, new TextEncoder().encode(json));
  return { launchDigest, loader, measurementJson: json };
}

/** What `measureLog` is asked: the file and its loader. */
export interface MeasureLogRequest extends IgvmFileRequest, LoaderChoice {}

/** One launch update of the log, as the PSP measures it. */
export interface MeasureLogEntry {
  /** Its position in the launch, from 0. */
  index: number;
  /** The guest physical address measured (0xFFFFFFFFF000 for VMSAs under KVM). */
  gpa: number;
  /** The SNP page type: NORMAL, VMSA, ZERO, UNMEASURED, SECRETS or CPUID. */
  pageType: string;
  /** The index of the directive in the file it comes from; -1 for a page the host adds. */
  directive: number;
  /**
   * The part of the guest it belongs to (kernel, initrd, command line, ACPI tables, page
   * tables, VMSA, ...) for images laid out by igvmgen; `"page data"` for other files.
   */
  part: string;
  /** The page's contents digest (SHA-384, 96 hex digits; zeros for unmeasured types). */
  contents: string;
  /** The running launch digest after this update, 96 hex digits. */
  digest: string;
}

/**
 * The launch log of a file, one entry per launch update, streamed: a 1M-page file needs no
 * more memory than its headers. The last entry's digest is the launch digest.
 */
export async function* measureIgvmLog(request: MeasureLogRequest): AsyncGenerator<MeasureLogEntry> {
  checkFields("measureLog", request, LOG_FIELDS);
  const { loader, host } = resolveLoaderChoice(request);
  const name = inputName(request.file);
  const opened = await openInput(request.file, "IGVM file");
  try {
    const file = opened.file;
    const headers = await soundHeaders(file).catch(naming(name));
    const entries = launchLog(file, headers, loader, host)[Symbol.asyncIterator]();
    while (true) {
      const next = await entries.next().catch(naming(name));
      if (next.done) return;
      const e = next.value;
      yield {
        index: e.index,
        gpa: e.gpa,
        pageType: SNP_PAGE_TYPE_NAMES[e.pageType] ?? String(e.pageType),
        directive: e.directive,
        part: e.part,
        contents: toHex(e.contents),
        digest: toHex(e.digest),
      };
    }
  } finally {
    await opened.release();
  }
}

/** What `diff` is asked: two files, each under a loader. */
export interface DiffRequest {
  /** The first file (A). */
  a: Input;
  /** The second file (B). */
  b: Input;
  /** The loader model of A, and of B unless `loaderB` is given. Default `"hyperv"`. */
  loader?: string;
  /** The loader model of B. */
  loaderB?: string;
}

/** Why two launch digests differ: the first launch update that differs, pages per part. */
export type DiffResult = LaunchDiff;

/**
 * Compares the launches of two files: their digests, the first update where they differ,
 * and per part of the guest the pages changed, added and removed.
 */
export async function diffIgvmFiles(request: DiffRequest): Promise<DiffResult> {
  checkFields(
    "diff",
    request,
    { a: true, b: true, loader: true, loaderB: true } satisfies Record<keyof DiffRequest, true>,
  );
  const loaderA = resolveLoaderChoice({ loader: request.loader }).loader;
  const loaderB = resolveLoaderChoice({ loader: request.loaderB ?? loaderA }, "loaderB").loader;
  const [nameA, nameB] = [inputName(request.a), inputName(request.b)];
  return await withInputAccess(request.a, "IGVM file", async (fileA) => {
    const headersA = await readHeaders(fileA).catch(naming(nameA));
    return await withInputAccess(request.b, "IGVM file", async (fileB) => {
      const headersB = await readHeaders(fileB).catch(naming(nameB));
      return await diffLaunches(
        { file: fileA, headers: headersA, loader: loaderA, name: nameA },
        { file: fileB, headers: headersB, loader: loaderB, name: nameB },
      ).catch((e) => {
        const message = (e as Error).message;
        const named = message.includes(nameA) || message.includes(nameB);
        throw new InputError(named ? message : `${nameA} / ${nameB}: ${message}`, { cause: e });
      });
    });
  });
}

/** Checks a file; its problems are listed in the report, not thrown. */
export async function verifyIgvmFile(request: IgvmFileRequest): Promise<VerifyReport> {
  checkFields("verify", request, FILE_FIELDS);
  const name = inputName(request.file);
  return await withInputAccess(
    request.file,
    "IGVM file",
    (file) => verifyIgvm(file).catch(naming(name)),
  );
}

/** What `inspect` is asked. */
export interface InspectRequest extends IgvmFileRequest {
  /** The name the report gives the file. Default: the path, or the stream's name. */
  name?: string;
}

/** Summarises a file: platforms, policy, page ranges, VMSAs, ID block. */
export async function inspectIgvmFile(request: InspectRequest): Promise<InspectReport> {
  checkFields(
    "inspect",
    request,
    { file: true, name: true } satisfies Record<keyof InspectRequest, true>,
  );
  const name = inputName(request.file);
  return await withInputAccess(
    request.file,
    "IGVM file",
    (file) => inspectIgvm(file, request.name ?? name).catch(naming(name)),
  );
}

/** The original igvmgen's text dump (`-d`) of a file. */
export async function dumpIgvmFileText(request: IgvmFileRequest): Promise<string> {
  checkFields("dump", request, FILE_FIELDS);
  const name = inputName(request.file);
  try {
    return await withInputAccess(
      request.file,
      "IGVM file",
      (file) => dumpIgvm((offset, length) => file.readAt(offset, length), file.size),
      true,
    );
  } catch (e) {
    throw new InputError(`cannot dump ${name}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * What `sign` is asked. Three ways:
 * - with a key: `output` and `signKey`;
 * - offline, step 1: `payloadOut` only, for the signer (an HSM, a cloud KMS);
 * - offline, step 2: `output`, `idSignature` and `idPublicKey` (and `payload` if the
 *   signer's payload should be checked rather than recomputed).
 */
export interface SignRequest {
  /** The SEV-SNP IGVM file to sign: a path, or a stream (spooled to a temporary file). */
  file: Input;
  /**
   * The signed file: a path (written atomically; never the input itself), or a stream
   * (written when all is done, and not closed).
   */
  output?: string | WritableStream<Uint8Array>;
  /** The P-384 private key (SEC1 or PKCS#8 PEM). */
  signKey?: Input;
  /** RFC 6979 nonces, for reproducible output. Default false. */
  signDeterministic?: boolean;
  /**
   * With a KVM `loader`: the host configuration whose digest the ID block carries (vCPUs
   * and CPU signature; default 1 vCPU). Refused with the other loaders.
   */
  host?: HostConfig;
  /**
   * The TEI config (JSON): family and image id, version, guest SVN, policy. Default: the
   * defaults, with the file's policy.
   */
  teiConfig?: Input;
  /** The guest SVN in the measurement JSON, a whole number. Default `"0"`. */
  svn?: string | number;
  /** Also write the measurement JSON to this path (atomically). */
  measurementFile?: string;
  /** Whose launch digest to sign: one of `LOADER_NAMES`. Default `"hyperv"`. */
  loader?: string;
  /** Write the 96-byte ID block payload the ID key signs here (a path or a stream), only. */
  payloadOut?: string | WritableStream<Uint8Array>;
  /** The offline signature: DER, or 96 raw bytes r||s (ECDSA P-384 with SHA-384). */
  idSignature?: Input;
  /** The ID public key: PEM or DER SubjectPublicKeyInfo, or an X.509 certificate. */
  idPublicKey?: Input;
  /** The payload that was signed, checked against the file's digest and the options. */
  payload?: Input;
}

/** What `sign` did. */
export interface SignResult {
  /** The launch digest signed (or put in the payload), 96 hex digits. */
  launchMeasurement: string;
  /** True when the file had no ID block and one was added (false for `payloadOut`). */
  added: boolean;
  /** Warnings worth showing a user (e.g. a policy the loader will not launch with). */
  warnings: string[];
  /** The measurement JSON, as the original igvmgen writes it. */
  measurementJson: string;
}

function checkOutput(field: string, output: unknown): void {
  if (output === undefined || output instanceof WritableStream) return;
  if (typeof output !== "string" || output === "" || output === "-") {
    throw new UsageError(`${field}: expected a path or a WritableStream<Uint8Array>`);
  }
}

const SIGN_FIELDS = {
  file: true,
  output: true,
  signKey: true,
  signDeterministic: true,
  host: true,
  teiConfig: true,
  svn: true,
  measurementFile: true,
  loader: true,
  payloadOut: true,
  idSignature: true,
  idPublicKey: true,
  payload: true,
} satisfies Record<keyof SignRequest, true>;

/** Runs `sign` for the library; see {@link SignRequest} for its three ways. */
export async function signIgvm(request: SignRequest): Promise<SignResult> {
  checkFields("sign", request, SIGN_FIELDS);
  const file: unknown = request.file;
  if (
    typeof file === "string" ? file === "" : !(file instanceof ReadableStream) &&
      !((file as { stream?: unknown })?.stream instanceof ReadableStream)
  ) {
    throw new UsageError("file: expected a path or a ReadableStream<Uint8Array>");
  }
  const svn = checkSvn("svn", request.svn ?? "0");
  const { loader, host } = resolveLoaderChoice({ loader: request.loader, host: request.host });
  checkOutput("output", request.output);
  checkOutput("payloadOut", request.payloadOut);
  if (request.output instanceof WritableStream && request.payloadOut !== undefined) {
    throw new UsageError("sign: payloadOut writes only the payload; it takes no output");
  }
  const stream = [request.output, request.payloadOut].find((o) => o instanceof WritableStream);
  const asPath = (o: string | WritableStream<Uint8Array> | undefined) =>
    o instanceof WritableStream ? "-" : o;
  return await withInputPaths({
    file: { input: request.file, what: "IGVM file" },
    signKey: { input: request.signKey, what: "signing key", small: true },
    teiConfig: { input: request.teiConfig, what: "config file", small: true },
    idSignature: { input: request.idSignature, what: "signature", small: true },
    idPublicKey: { input: request.idPublicKey, what: "public key", small: true },
    payload: { input: request.payload, what: "payload", small: true },
  }, async (paths) => {
    const result = await signIgvmFile({
      input: paths.file!,
      output: asPath(request.output),
      signKey: paths.signKey,
      signDeterministic: request.signDeterministic === true,
      configFile: paths.teiConfig,
      svn,
      measurementFile: request.measurementFile,
      loader,
      host: host && { ...host, cpu: `0x${host.cpuSignature.toString(16).padStart(8, "0")}` },
      payloadOut: asPath(request.payloadOut),
      idSignature: paths.idSignature,
      idPublicKey: paths.idPublicKey,
      payload: paths.payload,
    }, { stdout: stream, stdoutName: "the output stream", fieldNames: true });
    return {
      launchMeasurement: result.launchMeasurement,
      added: result.added,
      warnings: result.warnings,
      measurementJson: measurementJson(svn, result.launchMeasurement),
    };
  });
}
