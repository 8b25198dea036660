/**
 * `sign` for the library: checks a typed request, resolves its inputs to paths, and signs
 * with lib/ops/sign_file.ts.
 */
import { UsageError } from "../errors.ts";
import { checkSvn, measurementJson } from "../measure/measurement_json.ts";
import { type Input, withInputPaths } from "../io/input_source.ts";
import type { HostConfig } from "../measure/launch_update.ts";
import { signIgvmFile } from "./sign_file.ts";
import { checkFields, resolveLoaderChoice } from "./igvm_file.ts";

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
  /** The author's P-384 private key (PEM): it signs the ID key; the ID block carries both. */
  authorKey?: Input;
  /** Offline: the author's signature over the ID key's 0x404-byte ABI structure ... */
  authorSignature?: Input;
  /** ... made with this author public key (PEM/DER public key or X.509 certificate). */
  authorPublicKey?: Input;
  /**
   * Write the ID key's 0x404-byte ABI structure (what an offline author signs) to this path,
   * and nothing else; the ID key is `signKey`'s or `idPublicKey`.
   */
  authorPayloadOut?: string;
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
  authorKey: true,
  authorSignature: true,
  authorPublicKey: true,
  authorPayloadOut: true,
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
    authorKey: { input: request.authorKey, what: "author key", small: true },
    authorSignature: { input: request.authorSignature, what: "signature", small: true },
    authorPublicKey: { input: request.authorPublicKey, what: "public key", small: true },
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
      authorKey: paths.authorKey,
      authorSignature: paths.authorSignature,
      authorPublicKey: paths.authorPublicKey,
      authorPayloadOut: request.authorPayloadOut,
    }, { stdout: stream, stdoutName: "the output stream", fieldNames: true });
    return {
      launchMeasurement: result.launchMeasurement,
      added: result.added,
      warnings: result.warnings,
      measurementJson: measurementJson(svn, result.launchMeasurement),
    };
  });
}
