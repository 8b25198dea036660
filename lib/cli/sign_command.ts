/** `igvmgen sign`: the command line of lib/ops/sign.ts and lib/ops/sign_file.ts. */
import { UsageError } from "../errors.ts";
import { signIgvmFile, type SignIo } from "../ops/sign_file.ts";
import { DEFAULT_LOADER, loaderModel, loaderNames } from "../measure/loaders.ts";
import { parseSubArgs } from "./sub_args.ts";
import { SUB_OPTIONS } from "./sub_options.ts";
import { checkSvn } from "../measure/measurement_json.ts";
import { signHostOf, signMatrixOf } from "./sign_host.ts";
import { describeHost } from "../measure/kvm_hosts.ts";
import { signMatrix } from "../ops/sign_matrix.ts";

/** Help for `igvmgen sign`. */
export function signHelp(): string {
  return `usage: igvmgen sign IN.igvm -o OUT.igvm -sign_key KEY.pem [options]
       igvmgen sign IN.igvm --payload-out ID_BLOCK.bin [options]
       igvmgen sign IN.igvm -o OUT.igvm --id-signature SIG --id-public-key KEY [--payload ID_BLOCK.bin] [options]
       igvmgen sign IN.igvm --matrix [--loader L] --vcpus 1,2,4 --cpu milan,genoa -sign_key KEY.pem
                    [--id-blocks-out BLOCKS.json] [-o 'OUT-{vcpus}-{cpu}.igvm'] [options]

Adds the SNP ID block to any SEV-SNP IGVM file, or replaces it. The launch digest is
recomputed from the file. An output that is one of the inputs (the IGVM file, the key, the
config, the signature, the public key, the payload) is refused; outputs appear only when all is
done. - or /dev/stdout is standard output; a FIFO or a device is written directly.

  -o FILE                  the signed file (- for standard output; on a terminal only
                           with --force). A file without an SNP_POLICY header gets one with
                           the ID block's policy. The signed file must pass igvmgen verify
                           (else nothing is written and the reason is given)
  --quiet                  no success line and no notes (warnings are still printed)
  -sign_key PEM            P-384 private key (SEC1 or PKCS#8 PEM)
  -sign_deterministic BOOL RFC 6979 nonces (reproducible output; default false)
  -config_file JSON        TEI config: family/image id, version, guest SVN, policy (as in
                           generation). Without it: the defaults, and the file's policy
  -svn N                   guest SVN for -measurement_file (default 0)
  -measurement_file FILE   write the measurement JSON (- for standard output)
  --loader NAME            whose launch digest to sign: ${loaderNames().join(", ")}
                           (default ${DEFAULT_LOADER})
  --vcpus N, --cpu C       the host of a KVM loader (qemu-kvm, ch-kvm, openvmm-kvm): KVM
                           measures one VMSA per vCPU, each AP's with the CPU signature
                           (milan, genoa, rome, turin, EPYC-Milan... or 0xSIGNATURE). Default 1 vCPU;
                           qemu-kvm and openvmm-kvm need --cpu with more than one
Offline signing (the ID key stays in an HSM or a cloud KMS):
  --payload-out FILE       write the 96-byte SNP ID_BLOCK the ID key signs, nothing else
                           (- for standard output)
  --id-signature SIG       attach this ECDSA P-384 SHA-384 signature: DER (openssl dgst
                           -sha384 -sign, KMS, PKCS#11) or 96 raw bytes r||s
  --id-public-key KEY      the ID public key: PEM or DER public key, or an X.509 certificate
  --payload FILE           the payload that was signed; checked against the file's digest
                           and the options (default: recomputed from the file and options)
Before writing, the signature must verify over the payload with a P-384 key, the payload's
digest must be this file's, and its fields must match the options.
Author key (SEV-SNP lets an author key certify the ID key, so ID keys can rotate):
  -author_key PEM          P-384 private key of the author: it signs the ID public key, and
                           the ID block (and --id-blocks-out's ID_AUTH_INFO) carries the
                           author key and that signature
  --author-signature SIG   offline: the author's ECDSA P-384 SHA-384 signature (DER or raw
                           r||s) over the ID key's 0x404-byte SEV ECDSA public key structure
  --author-public-key KEY  the author public key (PEM or DER public key, or a certificate)
  --author-payload-out FILE  with -sign_key or --id-public-key: write the ID key's 0x404-byte
                           structure for the author to sign, nothing else
One ID block per host (--matrix, for qemu-kvm unless --loader says otherwise):
  --vcpus LIST, --cpu LIST every combination of the two comma lists
  --id-blocks-out FILE     JSON, schema igvmgen-id-blocks/1: per combination vcpus, cpu,
                           signature (CPUID(1).EAX), launchDigest, idBlock and idAuth (base64
                           of the 96-byte ID_BLOCK and the 4096-byte ID_AUTH_INFO, as QEMU's
                           sev-snp-guest id-block= and id-auth= take them)
  -o PATTERN               a signed copy of the file per combination; {vcpus} and {cpu} in
                           the name are replaced (e.g. 'guest-{vcpus}-{cpu}.igvm')
  --payload-out PATTERN    the payload per combination for an offline signer, nothing else
  --id-signature PATTERN   with --id-public-key: the offline signature per combination,
                           checked over its payload, for --id-blocks-out and -o
Every output is written only when all combinations succeeded.`;
}

/** Runs `igvmgen sign`; returns the exit code. */
export async function runSignCommand(
  args: readonly string[],
  notice: (line: string) => void,
  streams: SignIo = { stdout: Deno.stdout.writable },
): Promise<number> {
  const { values, positional } = parseSubArgs("sign", args, SUB_OPTIONS.sign);
  const quiet = values.has("quiet");
  streams = { ...streams, force: values.has("force") };
  if (positional.length !== 1) {
    throw new UsageError(
      positional.length
        ? `sign: one input file, got ${positional.length}`
        : "sign: no IGVM file given",
    );
  }
  const str = (n: string) => values.get(n) as string | undefined;
  if (values.has("matrix")) {
    return await runSignMatrix(positional[0], values, notice, streams, quiet);
  }
  if (str("id_blocks_out") !== undefined) {
    throw new UsageError("sign: --id-blocks-out goes with --matrix");
  }
  const loader = str("loader") ?? DEFAULT_LOADER;
  loaderModel(loader);
  const host = signHostOf(loader, str("vcpus"), str("cpu"));
  const result = await signIgvmFile({
    input: positional[0],
    output: str("o"),
    signKey: str("sign_key"),
    signDeterministic: values.get("sign_deterministic") === true,
    configFile: str("config_file"),
    svn: checkSvn("-svn", str("svn") ?? "0"),
    measurementFile: str("measurement_file"),
    loader,
    host,
    payloadOut: str("payload_out"),
    idSignature: str("id_signature"),
    idPublicKey: str("id_public_key"),
    payload: str("payload"),
    authorKey: str("author_key"),
    authorSignature: str("author_signature"),
    authorPublicKey: str("author_public_key"),
    authorPayloadOut: str("author_payload_out"),
  }, streams);
  if (result.authorPayloadOut) {
    notice(
      `igvmgen: wrote the ID key for the author to sign, ${result.authorPayloadOut} (1028 bytes)`,
    );
    return 0;
  }
  // --quiet drops notes and the success line, never a warning.
  for (const w of result.warnings) if (!(quiet && w.startsWith("note:"))) notice(`igvmgen: ${w}`);
  const of = `loader ${loader}${host ? `, ${describeHost(host)}` : ""}`;
  if (quiet) return 0;
  if (result.payloadOut) {
    notice(
      `igvmgen: wrote the ID block payload ${result.payloadOut} (96 bytes); launch measurement ${result.launchMeasurement} (${of})`,
    );
  } else {
    notice(
      `igvmgen: ${
        result.added ? "added an ID block" : "replaced the ID block"
      }: wrote ${result.output}; launch measurement ${result.launchMeasurement} (${of})`,
    );
  }
  return 0;
}

/** `sign --matrix`: one ID block per vCPU count and CPU model. */
async function runSignMatrix(
  input: string,
  values: Map<string, string | boolean>,
  notice: (line: string) => void,
  streams: SignIo,
  quiet: boolean,
): Promise<number> {
  const str = (n: string) => values.get(n) as string | undefined;
  const loader = str("loader") ?? "qemu-kvm";
  loaderModel(loader);
  const { vcpus, cpus } = signMatrixOf(loader, str("vcpus"), str("cpu"));
  for (const n of ["payload", "measurement_file"]) {
    if (values.has(n)) {
      throw new UsageError(`sign --matrix: -${n.replaceAll("_", "-")} does not go with --matrix`);
    }
  }
  const result = await signMatrix({
    input,
    loader,
    vcpus,
    cpus,
    signKey: str("sign_key"),
    signDeterministic: values.get("sign_deterministic") === true,
    configFile: str("config_file"),
    idBlocksOut: str("id_blocks_out"),
    outputPattern: str("o"),
    payloadOutPattern: str("payload_out"),
    idSignaturePattern: str("id_signature"),
    idPublicKey: str("id_public_key"),
    authorKey: str("author_key"),
    authorSignature: str("author_signature"),
    authorPublicKey: str("author_public_key"),
  }, streams);
  for (const w of result.warnings) notice(`igvmgen: ${w}`);
  if (!quiet) { for (const line of result.written) notice(`igvmgen: wrote ${line}`); }
  return 0;
}
