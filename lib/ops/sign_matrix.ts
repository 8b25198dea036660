/**
 * `igvmgen sign --matrix`: one ID block per host configuration of a KVM loader (vCPU count
 * and CPU model, ../shared/LOADERS.md §4.4), because KVM measures one VMSA per vCPU and each
 * AP's holds the CPU signature. It writes, per combination:
 * - the signed ID block and ID_AUTH_INFO in a JSON document (schema igvmgen-id-blocks/1), in
 *   the base64 layouts of QEMU's `sev-snp-guest,id-block=...,id-auth=...`;
 * - and/or a signed copy of the file (`-o` with a `{vcpus}`/`{cpu}` pattern);
 * - or, for an offline signer, the 96-byte payload (`--payload-out` pattern), whose
 *   signatures (`--id-signature` pattern) are then checked and attached.
 * Every output is written to a temporary file first; they appear only when all succeeded.
 */
import { InputError, UsageError } from "../errors.ts";
import { openFileAccess } from "../io/file_reader.ts";
import { readHeaders } from "../igvm/structure.ts";
import {
  checkSignable,
  filePolicy,
  idBlockPayload,
  rewriteWithIdBlock,
} from "../measure/id_block_file.ts";
import {
  commitTogether,
  type ImageFile,
  openImageOutput,
  type OutputSpec,
  type OutputTarget,
  planOutputTargets,
} from "../io/output_target.ts";
import { assembleIgvmIdBlock, signIdBlock, verifyIdBlock } from "../measure/id_block.ts";
import { encodeIdAuthInfo, toBase64 } from "../measure/id_auth.ts";
import { snpCompatibilityMask } from "../igvm/directives.ts";
import type { KvmLoaderName } from "../measure/kvm_loaders.ts";
import {
  assertVerifies,
  type AuthorOptions,
  authorSignatureFor,
  checkAuthorOptions,
  loadConfig,
  loadPublicKey,
  loadSignature,
  loadSigningKey,
  signInputs,
  type SignIo,
} from "./sign_file.ts";
import { kvmLaunchWarnings, kvmMatrixDigests, type MatrixDigest } from "../measure/kvm_hosts.ts";

/** What `sign --matrix` is asked to do. */
export interface SignMatrixRequest extends AuthorOptions {
  input: string;
  /** A host-dependent loader: qemu-kvm, ch-kvm or openvmm-kvm. */
  loader: string;
  vcpus: readonly number[];
  cpus: readonly { name: string; signature: number }[];
  signKey?: string;
  signDeterministic: boolean;
  configFile?: string;
  /** The JSON of ID blocks (schema igvmgen-id-blocks/1). */
  idBlocksOut?: string;
  /** A signed copy of the file per combination: a path with {vcpus} and {cpu}. */
  outputPattern?: string;
  /** The 96-byte payload per combination, for an offline signer: a pattern. */
  payloadOutPattern?: string;
  /** The offline signature per combination (DER or raw r||s): a pattern ... */
  idSignaturePattern?: string;
  /** ... made with this public key (PEM/DER public key or X.509 certificate). */
  idPublicKey?: string;
}

/** One combination's entry of the JSON. */
export interface IdBlockEntry {
  vcpus: number;
  cpu: string;
  /** CPUID(1).EAX of the CPU model, 0x-prefixed, 8 hex digits. */
  signature: string;
  launchDigest: string;
  /** base64 of the 96-byte SNP ID_BLOCK (QEMU's `id-block`). */
  idBlock: string;
  /** base64 of the 4096-byte ID_AUTH_INFO (QEMU's `id-auth`). */
  idAuth: string;
}

/** What `sign --matrix` did. */
export interface SignMatrixResult {
  rows: MatrixDigest[];
  entries: IdBlockEntry[];
  /** One line per output written. */
  written: string[];
  warnings: string[];
}

/** The path of `pattern` for one combination: {vcpus} and {cpu} replaced. */
function expandPattern(pattern: string, vcpus: number, cpu: string): string {
  return pattern.replaceAll("{vcpus}", String(vcpus)).replaceAll("{cpu}", cpu);
}

function checkPattern(option: string, pattern: string, rows: readonly MatrixDigest[]): void {
  if (pattern === "-") throw new UsageError(`sign --matrix: ${option} takes a file pattern, not -`);
  const names = rows.map((r) => expandPattern(pattern, r.vcpus, r.cpu));
  if (new Set(names).size !== names.length) {
    throw new UsageError(
      `sign --matrix: ${option} "${pattern}" names one file for several combinations: put {vcpus} and {cpu} in it`,
    );
  }
}

function checkMatrixRequest(r: SignMatrixRequest): void {
  const offline = r.idSignaturePattern !== undefined || r.idPublicKey !== undefined;
  checkAuthorOptions(r);
  if (r.payloadOutPattern !== undefined) {
    if (
      r.signKey || offline || r.idBlocksOut || r.outputPattern || r.authorKey || r.authorSignature
    ) {
      throw new UsageError(
        "sign --matrix: --payload-out writes only the payloads; it takes no -o, -sign_key, --id-signature or --id-blocks-out",
      );
    }
    return;
  }
  if (offline) {
    if (!r.idSignaturePattern || !r.idPublicKey) {
      throw new UsageError("sign: --id-signature and --id-public-key go together");
    }
    if (r.signKey) throw new UsageError("sign: -sign_key does not go with --id-signature");
  } else if (!r.signKey) {
    throw new UsageError(
      "sign --matrix: give -sign_key PEM, --payload-out PATTERN, or --id-signature PATTERN --id-public-key KEY (see sign --help)",
    );
  }
  if (!r.idBlocksOut && !r.outputPattern) {
    throw new UsageError("sign --matrix: no output: give --id-blocks-out FILE and/or -o PATTERN");
  }
  if (r.idBlocksOut === "-") {
    throw new UsageError("sign --matrix: --id-blocks-out takes a file, not -");
  }
}

/** Runs `sign --matrix`. */
export async function signMatrix(
  r: SignMatrixRequest,
  io: SignIo = {},
): Promise<SignMatrixResult> {
  checkMatrixRequest(r);
  const plannedRows = r.cpus.flatMap((cpu) => r.vcpus.map((vcpus) => ({ vcpus, cpu: cpu.name })));
  for (
    const [pattern, option] of [
      [r.outputPattern, "-o"],
      [r.payloadOutPattern, "--payload-out"],
      [r.idSignaturePattern, "--id-signature"],
    ] as const
  ) {
    if (pattern !== undefined) checkPattern(option, pattern, plannedRows as MatrixDigest[]);
  }
  const specs: OutputSpec[] = [
    ...(r.idBlocksOut ? [{ option: "--id-blocks-out", given: r.idBlocksOut, text: true }] : []),
    ...([[r.outputPattern, "-o"], [r.payloadOutPattern, "--payload-out"]] as const).flatMap((
      [pattern, option],
    ) =>
      pattern === undefined
        ? []
        : plannedRows.map((row) => ({ option, given: expandPattern(pattern, row.vcpus, row.cpu) }))
    ),
  ];
  if (new Set(specs.map((s) => s.given)).size !== specs.length) {
    throw new UsageError("sign --matrix: two outputs have the same name");
  }
  const signatures = r.idSignaturePattern === undefined ? [] : plannedRows.map((row) => ({
    option: "--id-signature",
    path: expandPattern(r.idSignaturePattern!, row.vcpus, row.cpu),
  }));
  const targets = await planOutputTargets({
    outputs: specs,
    inputs: signInputs(r, signatures),
    ...io,
  });
  const key = r.signKey ? await loadSigningKey(r.signKey) : undefined;
  const publicKey = r.idPublicKey ? await loadPublicKey(r.idPublicKey) : undefined;
  const file = await openFileAccess(r.input).catch((e) => {
    throw new InputError(`cannot read ${r.input}: ${(e as Error).message}`, { cause: e });
  });
  const pending: { target: OutputTarget; image: ImageFile }[] = [];
  try {
    const named = (e: unknown) =>
      new InputError(`${r.input}: ${(e as Error).message}`, { cause: e });
    const headers = await readHeaders(file).catch((e) => Promise.reject(named(e)));
    try {
      checkSignable(headers, file.size);
    } catch (e) {
      throw named(e);
    }
    const config = await loadConfig(r.configFile, filePolicy(headers));
    const rows = await kvmMatrixDigests(r.loader as KvmLoaderName, file, headers, r.vcpus, r.cpus)
      .catch((e) => Promise.reject(e instanceof UsageError ? e : named(e)));
    const warnings = await kvmLaunchWarnings(r.loader, file, headers, config.policy, undefined);
    const mask = snpCompatibilityMask(headers);
    const written: string[] = [];
    const stage = async (path: string, bytes?: Uint8Array) => {
      const target = targets.find((t) => t.given === path)!;
      const image = await openImageOutput(target);
      pending.push({ target, image });
      if (bytes) await image.writeAt(0, bytes);
      return image;
    };
    const entries: IdBlockEntry[] = [];
    // The author signs the ID key, the same for every combination.
    const idKey = key ?? publicKey;
    const author = idKey ? await authorSignatureFor(r, idKey) : undefined;
    for (const row of rows) {
      const digest = Uint8Array.from(row.launchDigest.match(/../g)!, (b) => parseInt(b, 16));
      const payload = idBlockPayload(digest, config);
      const what = `${row.vcpus} vCPU${row.vcpus === 1 ? "" : "s"}, ${row.cpu}`;
      if (r.payloadOutPattern) {
        const path = expandPattern(r.payloadOutPattern, row.vcpus, row.cpu);
        await stage(path, payload);
        written.push(`${path}: the ID block payload for ${what} (${row.launchDigest})`);
        continue;
      }
      let sig: { r: Uint8Array; s: Uint8Array };
      let point: { x: Uint8Array; y: Uint8Array };
      if (key) {
        sig = await signIdBlock(payload, key, r.signDeterministic);
        point = key;
      } else {
        const path = expandPattern(r.idSignaturePattern!, row.vcpus, row.cpu);
        sig = await loadSignature(path);
        point = publicKey!;
        if (!await verifyIdBlock(payload, sig.r, sig.s, point.x, point.y)) {
          throw new InputError(
            `--id-signature ${path}: does not verify over the payload for ${what} (launch digest ${
              row.launchDigest.slice(0, 16)
            }...) with ${r.idPublicKey}`,
          );
        }
      }
      entries.push({
        vcpus: row.vcpus,
        cpu: row.cpu,
        signature: row.signature,
        launchDigest: row.launchDigest,
        idBlock: toBase64(payload),
        idAuth: toBase64(encodeIdAuthInfo(sig.r, sig.s, point.x, point.y, author)),
      });
      if (r.outputPattern) {
        const path = expandPattern(r.outputPattern, row.vcpus, row.cpu);
        const out = await stage(path);
        const body = assembleIgvmIdBlock(payload, sig.r, sig.s, point.x, point.y, mask, author);
        const size = await rewriteWithIdBlock(file, headers, body, config.policy, out);
        await assertVerifies(out, size, r);
        written.push(`${path}: signed for ${r.loader} with ${what} (${row.launchDigest})`);
      }
    }
    if (r.idBlocksOut) {
      const doc = {
        schema: "igvmgen-id-blocks/1",
        file: r.input,
        loader: r.loader,
        policy: `0x${config.policy.toString(16)}`,
        // QEMU takes an ID_AUTH_INFO with author fields with author-key-enabled=on.
        ...(author ? { authorKeyEnabled: true } : {}),
        idBlocks: entries,
      };
      await stage(r.idBlocksOut, new TextEncoder().encode(JSON.stringify(doc, null, 2) + "\n"));
      written.push(`${r.idBlocksOut}: ${entries.length} ID blocks for ${r.loader}`);
    }
    // Every output together or none: a late failure takes back those already in place.
    await commitTogether(pending.splice(0), io.stdout);
    return { rows, entries, written, warnings };
  } finally {
    for (const out of pending) await out.image.abort().catch(() => {});
    file.close();
  }
}
