/**
 * The `sign` pipeline: read an IGVM file, recompute its launch digest under a loader model,
 * and either sign the ID block with a private key, write the 96-byte payload for an offline
 * signer, or attach an offline signature after checking it. Outputs are written atomically;
 * a refusal writes nothing.
 */
import { InputError, UsageError } from "../errors.ts";
import { toHex } from "../bytes/le.ts";
import { IGVM_VHT_SNP_ID_BLOCK } from "../igvm/defs.ts";
import { assertStructurallySound, readHeaders } from "../igvm/structure.ts";
import { openFileAccess } from "../io/file_reader.ts";
import {
  checkSignable,
  describePayloadMismatch,
  filePolicy,
  idBlockPayload,
  rewriteWithIdBlock,
} from "../measure/id_block_file.ts";
import { readInputFile } from "../io/inputs.ts";
import {
  commitOutputs,
  type ImageFile,
  type NamedInput,
  openImageOutput,
  type OutputSpec,
  planOutputTargets,
  type StandardStreams,
  writeSmallOutput,
} from "../io/output_target.ts";
import {
  assembleIgvmIdBlock,
  type AuthorSignature,
  encodeSevEcdsaPublicKey,
  type P384Point,
  signIdBlock,
  signIdKey,
  verifyAuthorSignature,
  verifyIdBlock,
} from "../measure/id_block.ts";
import { type P384Key, parseP384PrivateKeyPem } from "../measure/signing_key.ts";
import { defaultIdBlockConfig, type IdBlockConfig, parseTeiConfig } from "../measure/tei_config.ts";
import { loaderDigest, policyWarning } from "../measure/loaders.ts";
import { snpCompatibilityMask } from "../igvm/directives.ts";
import {
  type EcdsaSignature,
  type P384PublicKey,
  parseEcdsaSignature,
  parseP384PublicKey,
} from "../measure/public_key.ts";
import { measurementJson, svnMismatchNote } from "../measure/measurement_json.ts";
import { verifyIgvm } from "./verify.ts";
import { LAUNCH_CHECK_LOADERS } from "../measure/launch_checks.ts";
import { DiscardedImage } from "../io/discarded_image.ts";
import type { FileAccess } from "../io/file_reader.ts";
import { describeHost, kvmLaunchWarnings, type NamedHost } from "../measure/kvm_hosts.ts";

/** What `sign` is asked to do. */
export interface SignRequest {
  input: string;
  output?: string;
  signKey?: string;
  configFile?: string;
  svn: string;
  signDeterministic: boolean;
  measurementFile?: string;
  loader: string;
  /**
   * The host configuration of a host-dependent (KVM) loader: vCPUs and CPU model. Without it
   * such a loader's digest is that of one vCPU.
   */
  host?: NamedHost;
  /** Write the 96-byte ID block payload here and nothing else. */
  payloadOut?: string;
  /** Attach this offline signature (DER or raw r||s) ... */
  idSignature?: string;
  /** ... made with this public key (PEM/DER SubjectPublicKeyInfo or X.509 certificate) ... */
  idPublicKey?: string;
  /** ... over this payload (else the payload recomputed from the file and the options). */
  payload?: string;
  /** The author's P-384 private key: it signs the ID key; the ID block carries both. */
  authorKey?: string;
  /**
   * Write the ID public key's 0x404-byte ABI structure, what an offline author signer signs,
   * and nothing else. The ID key comes from `signKey` or `idPublicKey`.
   */
  authorPayloadOut?: string;
  /** Offline: the author's signature over the ID key (DER or raw r||s) ... */
  authorSignature?: string;
  /** ... made with this author public key (PEM/DER public key or X.509 certificate). */
  authorPublicKey?: string;
}

/** What `sign` did. */
export interface SignResult {
  output?: string;
  payloadOut?: string;
  authorPayloadOut?: string;
  launchMeasurement: string;
  /** True when the file had no ID block and one was added. */
  added: boolean;
  /** Warnings for the user (e.g. a policy the loader will not launch with). */
  warnings: string[];
}

/** Standard output, for `-o -`, `--payload-out -` and `-measurement_file -`. */
export type SignIo =
  & Pick<
    StandardStreams,
    | "stdout"
    | "stdoutIdentity"
    | "stdoutName"
    | "stdoutIsTerminal"
    | "stdoutClosed"
    | "stdoutProbe"
    | "force"
  >
  & {
    /** Name options by the library's request fields in messages (`signKey`, not `-sign_key`). */
    fieldNames?: boolean;
  };

/** The inputs of a sign run with their options, for the outputs' identity check. */
export function signInputs(
  r: Pick<SignRequest, "input" | "signKey" | "configFile" | "idPublicKey"> & AuthorOptions,
  more: readonly NamedInput[] = [],
): NamedInput[] {
  return [
    { option: "the input", path: r.input },
    { option: "-sign_key", path: r.signKey },
    { option: "-config_file", path: r.configFile },
    { option: "--id-public-key", path: r.idPublicKey },
    { option: "-author_key", path: r.authorKey },
    { option: "--author-signature", path: r.authorSignature },
    { option: "--author-public-key", path: r.authorPublicKey },
    ...more,
  ];
}

/** Loads the ID block fields: the config file's, or the defaults with the file's policy. */
export async function loadConfig(path: string | undefined, policy: bigint | undefined) {
  if (!path) {
    const config = defaultIdBlockConfig();
    if (policy !== undefined) config.policy = policy;
    return config;
  }
  const text = new TextDecoder().decode(await readInputFile(path, "config file"));
  try {
    return parseTeiConfig(text);
  } catch (e) {
    throw new InputError(`config file ${path}: ${(e as Error).message}`, { cause: e });
  }
}

/** The author options of `sign` and `sign --matrix`. */
export interface AuthorOptions {
  authorKey?: string;
  authorSignature?: string;
  authorPublicKey?: string;
}

/** Refuses author options that do not go together. */
export function checkAuthorOptions(r: AuthorOptions): void {
  if (r.authorKey && (r.authorSignature || r.authorPublicKey)) {
    throw new UsageError("sign: -author_key does not go with --author-signature");
  }
  if ((r.authorSignature === undefined) !== (r.authorPublicKey === undefined)) {
    throw new UsageError("sign: --author-signature and --author-public-key go together");
  }
}

/**
 * The author's signature over the ID key `idKey`: made with `-author_key`, or the offline
 * `--author-signature` after checking it verifies with `--author-public-key`. Undefined
 * without author options.
 */
export async function authorSignatureFor(
  r: AuthorOptions & { signDeterministic: boolean },
  idKey: P384Point,
): Promise<AuthorSignature | undefined> {
  if (r.authorKey) {
    return signIdKey(idKey, await loadSigningKey(r.authorKey, "author key"), r.signDeterministic);
  }
  if (r.authorSignature === undefined) return undefined;
  const sig = await loadSignature(r.authorSignature, "--author-signature");
  const key = await loadPublicKey(r.authorPublicKey!, "--author-public-key");
  const author = { signature: { r: sig.r, s: sig.s }, key: { x: key.x, y: key.y } };
  if (!await verifyAuthorSignature(idKey, author)) {
    throw new InputError(
      `--author-signature ${r.authorSignature}: does not verify over the ID public key (its 0x404-byte SEV ECDSA public key structure) with ${r.authorPublicKey}`,
    );
  }
  return author;
}

function checkRequest(r: SignRequest): void {
  const offline = r.idSignature !== undefined || r.idPublicKey !== undefined;
  checkAuthorOptions(r);
  const author = r.authorKey ?? r.authorSignature;
  if (r.payloadOut !== undefined) {
    if (r.output || r.signKey || offline || r.payload || r.measurementFile || author) {
      throw new UsageError(
        "sign: --payload-out writes only the payload; it takes no -o, -sign_key, --id-signature, --payload, -measurement_file or author options",
      );
    }
    return;
  }
  if (!r.output) throw new UsageError("sign: no output: give -o FILE (or --payload-out FILE)");
  if (offline) {
    if (!r.idSignature || !r.idPublicKey) {
      throw new UsageError("sign: --id-signature and --id-public-key go together");
    }
    if (r.signKey) throw new UsageError("sign: -sign_key does not go with --id-signature");
  } else {
    if (r.payload) throw new UsageError("sign: --payload goes with --id-signature");
    if (!r.signKey) {
      throw new UsageError(
        "sign: give -sign_key PEM, or --id-signature SIG --id-public-key KEY (see sign --help)",
      );
    }
  }
}

/**
 * `--author-payload-out`: writes the ID key's 0x404-byte SEV ECDSA public key structure, what
 * the author key signs. The IGVM file is not read.
 */
async function writeAuthorPayload(r: SignRequest, io: SignIo): Promise<SignResult> {
  const others = [r.output, r.payloadOut, r.idSignature, r.payload, r.measurementFile];
  if (others.some((x) => x !== undefined) || r.authorKey || r.authorSignature) {
    throw new UsageError(
      "sign: --author-payload-out writes only the ID key for the author to sign; it takes -sign_key or --id-public-key and nothing else",
    );
  }
  if ((r.signKey === undefined) === (r.idPublicKey === undefined)) {
    throw new UsageError(
      "sign: --author-payload-out needs the ID key: -sign_key or --id-public-key",
    );
  }
  const [target] = await planOutputTargets({
    outputs: [{ option: "--author-payload-out", given: r.authorPayloadOut! }],
    inputs: signInputs(r),
    ...io,
  });
  const idKey = r.signKey ? await loadSigningKey(r.signKey) : await loadPublicKey(r.idPublicKey!);
  await writeSmallOutput(target, encodeSevEcdsaPublicKey(idKey), io.stdout);
  return {
    authorPayloadOut: r.authorPayloadOut,
    launchMeasurement: "",
    added: false,
    warnings: [],
  };
}

/** Runs `sign`. */
export async function signIgvmFile(r: SignRequest, io: SignIo = {}): Promise<SignResult> {
  if (r.authorPayloadOut !== undefined) return await writeAuthorPayload(r, io);
  checkRequest(r);
  const specs = [
    { option: "-o", given: r.output },
    { option: "--payload-out", given: r.payloadOut },
    { option: "-measurement_file", given: r.measurementFile, text: true },
  ].filter((s): s is OutputSpec => s.given !== undefined);
  const targets = await planOutputTargets({
    outputs: specs,
    inputs: signInputs(r, [
      { option: "--id-signature", path: r.idSignature },
      { option: "--payload", path: r.payload },
    ]),
    ...io,
  });
  const target = (option: string) => targets[specs.findIndex((s) => s.option === option)];
  // The key and the offline inputs are read first: a bad one fails before the digest.
  const key = r.signKey ? await loadSigningKey(r.signKey) : undefined;
  const offline = r.idSignature ? await loadOfflineInputs(r) : undefined;
  const file = await openFileAccess(r.input).catch((e) => {
    throw new InputError(`cannot read ${r.input}: ${(e as Error).message}`, { cause: e });
  });
  try {
    const named = (e: unknown) =>
      new InputError(`${r.input}: ${(e as Error).message}`, { cause: e });
    const headers = await readHeaders(file).catch((e) => Promise.reject(named(e)));
    try {
      // A structurally broken file is refused as measure refuses it: no digest, no signature.
      assertStructurallySound(file, headers);
      checkSignable(headers, file.size);
    } catch (e) {
      throw named(e);
    }
    const config: IdBlockConfig = await loadConfig(r.configFile, filePolicy(headers));
    const digest = await loaderDigest(r.loader, file, headers, r.host).catch((e) =>
      Promise.reject(e instanceof UsageError ? e : named(e))
    );
    const launchMeasurement = toHex(digest);
    const expected = idBlockPayload(digest, config);
    const warning = policyWarning(r.loader, config.policy);
    const warnings = warning ? [warning] : [];
    warnings.push(...await kvmLaunchWarnings(r.loader, file, headers, config.policy, r.host));
    if (r.payloadOut) {
      await writeSmallOutput(target("--payload-out")!, expected, io.stdout);
      return { payloadOut: r.payloadOut, launchMeasurement, added: false, warnings };
    }
    const mask = snpCompatibilityMask(headers);
    let body: Uint8Array;
    const author = await authorSignatureFor(r, offline ? offline.key : key!);
    if (offline) {
      body = await offlineIdBlock(r, offline, digest, expected, mask, author);
    } else {
      const sig = await signIdBlock(expected, key!, r.signDeterministic);
      body = assembleIgvmIdBlock(expected, sig.r, sig.s, key!.x, key!.y, mask, author);
    }
    const plan = { image: target("-o")!, measurement: target("-measurement_file") };
    const out = await openImageOutput(plan.image);
    try {
      const size = await rewriteWithIdBlock(file, headers, body, config.policy, out);
      await assertVerifies(out, size, r);
      const json = r.measurementFile ? measurementJson(r.svn, launchMeasurement) : undefined;
      await commitOutputs(plan, out, json, io.stdout);
    } catch (e) {
      await out.abort();
      throw e;
    }
    const added = !headers.directives.some((d) => d.type === IGVM_VHT_SNP_ID_BLOCK);
    const svnNote = r.measurementFile && svnMismatchNote(r.svn, config.guestSvn);
    if (svnNote) warnings.push(svnNote);
    if (filePolicy(headers) === undefined) {
      warnings.push(
        `note: ${r.input} had no SNP_POLICY header: added one with the ID block's policy 0x${
          config.policy.toString(16)
        }`,
      );
    }
    return { output: r.output, launchMeasurement, added, warnings };
  } finally {
    file.close();
  }
}

/**
 * Refuses a signed file that `verify` would not accept, with verify's first problem: sign
 * never writes a file its own verify rejects (a loader or host whose digest verify does not
 * look for on this layout, ACPI tables that are broken already, ...). A discarded output
 * (the null device) is not read back.
 */
export async function assertVerifies(
  out: ImageFile,
  size: number,
  r: Pick<SignRequest, "input" | "loader">,
): Promise<void> {
  if (out instanceof DiscardedImage) return;
  const written: FileAccess = { size, readAt: (offset, length) => out.readBack(offset, length) };
  const report = await verifyIgvm(written);
  if (report.ok) return;
  const more = report.problems.length > 1 ? ` (and ${report.problems.length - 1} more)` : "";
  const hint = LAUNCH_CHECK_LOADERS.some((l) => l === r.loader) &&
      report.layout !== "kvm"
    ? `: ${r.input} is not laid out for KVM (-target ${r.loader}), so no KVM loader starts it`
    : "";
  throw new InputError(
    `${r.input}: the signed file would not pass verify: ${report.problems[0]}${more}${hint}`,
  );
}

export async function loadSigningKey(path: string, what = "signing key"): Promise<P384Key> {
  const pem = new TextDecoder().decode(await readInputFile(path, what));
  try {
    return await parseP384PrivateKeyPem(pem);
  } catch (e) {
    throw new InputError(`${what} ${path}: ${(e as Error).message}`, { cause: e });
  }
}

/** The offline signature, its public key and the payload it was made over (if given). */
interface OfflineInputs {
  key: P384PublicKey;
  sig: EcdsaSignature;
  payload?: Uint8Array;
}

/** Parses the bytes of `--id-public-key`; a refusal names the option and the path. */
function parsePublicKeyOption(
  path: string,
  bytes: Uint8Array,
  option = "--id-public-key",
): P384PublicKey {
  try {
    return parseP384PublicKey(bytes);
  } catch (e) {
    throw new InputError(`${option} ${path}: ${(e as Error).message}`, { cause: e });
  }
}

/** Parses the bytes of `--id-signature`; a refusal names the option and the path. */
function parseSignatureOption(
  path: string,
  bytes: Uint8Array,
  option = "--id-signature",
): EcdsaSignature {
  try {
    return parseEcdsaSignature(bytes);
  } catch (e) {
    throw new InputError(`${option} ${path}: ${(e as Error).message}`, { cause: e });
  }
}

/** Reads and parses `--id-public-key` (or the `option` named). */
export async function loadPublicKey(path: string, option?: string): Promise<P384PublicKey> {
  return parsePublicKeyOption(path, await readInputFile(path, "public key"), option);
}

/** Reads and parses `--id-signature` (or the `option` named). */
export async function loadSignature(path: string, option?: string): Promise<EcdsaSignature> {
  return parseSignatureOption(path, await readInputFile(path, "signature"), option);
}

async function loadOfflineInputs(r: SignRequest): Promise<OfflineInputs> {
  const keyBytes = await readInputFile(r.idPublicKey!, "public key");
  const sigBytes = await readInputFile(r.idSignature!, "signature");
  const key = parsePublicKeyOption(r.idPublicKey!, keyBytes);
  const sig = parseSignatureOption(r.idSignature!, sigBytes);
  if (!r.payload) return { key, sig };
  const payload = await readInputFile(r.payload, "payload");
  if (payload.length !== 96) {
    throw new InputError(
      `--payload ${r.payload}: ${payload.length} bytes, an ID block payload has 96`,
    );
  }
  return { key, sig, payload };
}

/**
 * Checks an offline signature and builds the ID block from it. Each check refuses with one
 * line: the key is P-384; the payload (given or recomputed) has this file's digest and the
 * options' fields; the signature verifies over it with the key.
 */
async function offlineIdBlock(
  r: SignRequest,
  { key, sig, payload: given }: OfflineInputs,
  digest: Uint8Array,
  expected: Uint8Array,
  mask: number,
  author: AuthorSignature | undefined,
): Promise<Uint8Array> {
  const payload = given ?? expected;
  if (given) {
    if (payload.subarray(0, 48).some((b, i) => b !== digest[i])) {
      throw new InputError(
        `--payload ${r.payload}: its launch digest ${
          toHex(payload.subarray(0, 48)).slice(0, 16)
        }... is not this file's ${toHex(digest).slice(0, 16)}... under ${
          loaderLabel(r)
        }: the payload is for another image or host`,
      );
    }
    const mismatch = describePayloadMismatch(payload, expected);
    if (mismatch) throw new InputError(`--payload ${r.payload}: ${mismatch}`);
  }
  if (!await verifyIdBlock(payload, sig.r, sig.s, key.x, key.y)) {
    throw new InputError(
      `--id-signature ${r.idSignature}: does not verify over the ${
        r.payload ? "payload" : "payload recomputed from this file and the options"
      } with ${r.idPublicKey}${
        r.payload
          ? ""
          : ` (signed for another image, other options, or another loader or host than ${
            loaderLabel(r)
          }?)`
      }`,
    );
  }
  return assembleIgvmIdBlock(payload, sig.r, sig.s, key.x, key.y, mask, author);
}

/** The loader and, for a KVM loader, its host: "loader qemu-kvm with 2 vCPUs, genoa". */
function loaderLabel(r: Pick<SignRequest, "loader" | "host">): string {
  return r.host ? `loader ${r.loader} with ${describeHost(r.host)}` : `loader ${r.loader}`;
}
