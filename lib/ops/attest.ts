/**
 * `attest`: from a guest's SEV-SNP attestation report back to the image. Verifies the report's
 * signature with the VCEK (or VLEK) and the chain up to AMD's root, checks the key's TCB and
 * chip against the report, finds which image, loader and host configuration reproduce its
 * MEASUREMENT, and compares the report's policy, key digests and identity with that image.
 * Offline: certificate revocation lists are not checked.
 */
import { InputError, UsageError } from "../errors.ts";
import { toHex } from "../bytes/le.ts";
import { IGVM_VHT_SNP_ID_BLOCK } from "../igvm/defs.ts";
import { snpCompatibilityMask } from "../igvm/directives.ts";
import { type Input, inputName, readSmallInput, withInputAccess } from "../io/input_source.ts";
import {
  type AttestationReport,
  cpuSignatureOf,
  decodeTcb,
  formatTcb,
  parseAttestationReport,
  productOfCpuid,
  type SevProduct,
  signingKeyName,
  type TcbParts,
  verifyReportSignature,
} from "../measure/attestation_report.ts";
import {
  type ChainResult,
  type Check,
  checkChain,
  checkKeyAgainstReport,
  vcekUrl,
} from "../measure/amd_certs.ts";
import { decodeIgvmIdBlock, type IgvmIdBlock, sevKeyDigest } from "../measure/id_block.ts";
import { filePolicy } from "../measure/id_block_file.ts";
import { idBlockVerdict, platformMasksOf } from "../measure/id_block_checks.ts";
import { loaderModel, LOADERS } from "../measure/loaders.ts";
import { POLICY_DEBUG_BIT, POLICY_MIGRATE_MA_BIT, POLICY_SMT_BIT } from "../measure/tei_config.ts";
import { findMeasurement, searchedCpus } from "../measure/report_match.ts";
import type { CpuModel } from "../measure/host_search.ts";
import { checkFields, naming, soundHeaders } from "./igvm_file.ts";

export type { Check } from "../measure/amd_certs.ts";

/** What `attest` is asked. */
export interface AttestRequest {
  /** The ATTESTATION_REPORT: raw 1184 bytes or their hex text, as a path or a stream. */
  report: Input;
  /** The images the report's MEASUREMENT is matched against (paths or streams). */
  images?: Input[];
  /** The VCEK or VLEK certificate (PEM or DER). Without it the signature cannot be checked. */
  vcek?: Input;
  /** The ASK or ASVK (or AMD's cert_chain bundle); default: AMD's, built in. */
  ask?: Input;
  /** The ARK; default: AMD's, built in. */
  ark?: Input;
  /** The expected REPORT_DATA, hex (up to 64 bytes, zero-extended). */
  reportData?: string;
  /** The expected HOST_DATA, hex (up to 32 bytes, zero-extended). */
  hostData?: string;
  /** The minimum TCB: `bl=N,tee=N,snp=N,ucode=N[,fmc=N]` or a TCB_VERSION as `0x` hex. */
  minTcb?: string;
  /** The expected VMPL (0-3). */
  vmpl?: number;
  /** When the certificates must be valid; default now. */
  now?: Date;
}

/** The image, loader and host configuration that reproduce the measurement. */
export interface AttestMatch {
  /** The image's name as given. */
  image: string;
  /** The loader model. */
  loader: string;
  /** The vCPU count, for a KVM loader; null for the others. */
  vcpus: number | null;
  /** The CPU model's name, when the digest depends on it; else null. */
  cpu: string | null;
  /** Its CPUID(1).EAX as 0x and 8 hex digits; null as `cpu`. */
  cpuSignature: string | null;
}

/** What `attest` found (`--json`, schema igvmgen-attest/1). */
export interface AttestResult {
  /** The schema and its version. */
  schema: "igvmgen-attest/1";
  /** The report's fields; bytes and 64-bit values as lowercase hex. */
  report: Record<string, string | number | boolean | null>;
  /** The report's signature verifies with the VCEK/VLEK. */
  signatureValid: boolean;
  /** ARK -> ASK -> VCEK verify and are valid now. */
  chainValid: boolean;
  /** The first match, or null. */
  match: AttestMatch | null;
  /** Every loader and host configuration that reproduces the measurement. */
  matches: AttestMatch[];
  /** With images and no match: each image and which of the report's fields it shares. */
  nearest: { image: string; shares: string[] }[];
  /** Every check, in order. */
  checks: Check[];
  /** The failed checks, one line each. */
  problems: string[];
  /** What was not checked. */
  notes: string[];
  /** True when the signature and chain verify, no check fails, and an image matches (if any). */
  ok: boolean;
}

const FIELDS = {
  report: true,
  images: true,
  vcek: true,
  ask: true,
  ark: true,
  reportData: true,
  hostData: true,
  minTcb: true,
  vmpl: true,
  now: true,
} satisfies Record<keyof AttestRequest, true>;

const REVOCATION_NOTE =
  "certificate revocation lists are not checked (offline); AMD publishes them at https://kdsintf.amd.com";

/** Parses an expected hex value of at most `size` bytes, zero-extended. */
function expectedBytes(field: string, hex: string, size: number): string {
  const text = hex.replace(/^0x/i, "");
  if (!/^([0-9a-fA-F]{2})+$/.test(text) || text.length > 2 * size) {
    throw new UsageError(`${field}: expected up to ${size} bytes of hex, got "${hex}"`);
  }
  return text.toLowerCase().padEnd(2 * size, "0");
}

/** Parses `--min-tcb`: named levels, or a raw TCB_VERSION decoded for `product`. */
function parseMinTcb(text: string): (product: SevProduct) => TcbParts {
  if (/^0x[0-9a-f]{1,16}$/i.test(text)) {
    const value = BigInt(text);
    return (product) => decodeTcb(value, product);
  }
  const names: Record<string, keyof TcbParts> = {
    bl: "bootloader",
    tee: "tee",
    snp: "snp",
    ucode: "microcode",
    fmc: "fmc",
  };
  const parts: TcbParts = { bootloader: 0, tee: 0, snp: 0, microcode: 0 };
  for (const item of text.split(",")) {
    const m = /^(bl|tee|snp|ucode|fmc)=(\d{1,3})$/.exec(item.trim());
    if (!m || Number(m[2]) > 255) {
      throw new UsageError(
        `min-tcb: expected bl=N,tee=N,snp=N,ucode=N[,fmc=N] or 0xTCB_VERSION, got "${text}"`,
      );
    }
    parts[names[m[1]]] = Number(m[2]);
  }
  return () => parts;
}

/** The report as the JSON shows it. */
function reportJson(r: AttestationReport): AttestResult["report"] {
  const h = (v: bigint | undefined) => v === undefined ? null : `0x${v.toString(16)}`;
  return {
    version: r.version,
    guestSvn: r.guestSvn,
    policy: h(r.policy),
    familyId: r.familyId,
    imageId: r.imageId,
    vmpl: r.vmpl,
    signatureAlgo: r.signatureAlgo,
    currentTcb: h(r.currentTcb),
    platformInfo: h(r.platformInfo),
    authorKeyEnabled: r.authorKeyEnabled,
    maskChipKey: r.maskChipKey,
    signingKey: signingKeyName(r.signingKey),
    reportData: r.reportData,
    measurement: r.measurement,
    hostData: r.hostData,
    idKeyDigest: r.idKeyDigest,
    authorKeyDigest: r.authorKeyDigest,
    reportId: r.reportId,
    reportIdMa: r.reportIdMa,
    reportedTcb: h(r.reportedTcb),
    cpuidFamily: r.cpuid?.family ?? null,
    cpuidModel: r.cpuid?.model ?? null,
    cpuidStepping: r.cpuid?.stepping ?? null,
    chipId: r.chipId,
    committedTcb: h(r.committedTcb),
    currentVersion: r.currentVersion,
    committedVersion: r.committedVersion,
    launchTcb: h(r.launchTcb),
    launchMitVector: h(r.launchMitVector),
    currentMitVector: h(r.currentMitVector),
  };
}

/** "0x30000 (debug off, no migration agent, SMT allowed, ABI >= 0.0)". */
function describePolicy(policy: bigint): string {
  const bit = (n: bigint) => (policy >> n) & 1n;
  return `0x${policy.toString(16)} (debug ${bit(POLICY_DEBUG_BIT) ? "ALLOWED" : "off"}, ${
    bit(POLICY_MIGRATE_MA_BIT) ? "migration agent allowed" : "no migration agent"
  }, SMT ${bit(POLICY_SMT_BIT) ? "allowed" : "not allowed"}, ABI >= ${(policy >> 8n) & 0xffn}.${
    policy & 0xffn
  })`;
}

/** What an image says the report should show. */
interface ImageFacts {
  name: string;
  idBlock?: IgvmIdBlock;
  /** Every problem of the image's ID block (id_block_checks.ts idBlockVerdict). */
  idBlockProblems: string[];
  policy?: bigint;
}

const ZERO48 = "0".repeat(96);

/** The report's fields an image agrees with (for "nearest" when nothing matches). */
function sharedFields(image: ImageFacts, r: AttestationReport): string[] {
  const shares: string[] = [];
  const id = image.idBlock;
  if (id && toHex(id.ld) === r.measurement) shares.push("its ID block's launch digest");
  if (id && toHex(sevKeyDigest(id.idKey)) === r.idKeyDigest) shares.push("ID key");
  if (id && toHex(id.familyId) === r.familyId) shares.push("family ID");
  if (id && toHex(id.imageId) === r.imageId) shares.push("image ID");
  if (id && id.guestSvn === r.guestSvn) shares.push("guest SVN");
  if (image.policy === r.policy) shares.push("policy");
  return shares;
}

/** The checks of the report's identity fields against the matched image. */
function imageChecks(image: ImageFacts, loader: string, r: AttestationReport): Check[] {
  const checks: Check[] = [];
  const policy = loaderModel(loader).idBlockPolicy ?? image.policy;
  checks.push({
    name: "POLICY = the image's",
    ok: policy === r.policy,
    detail: policy === r.policy
      ? describePolicy(r.policy)
      : `the report's ${describePolicy(r.policy)}, the image's ${
        policy === undefined ? "(none)" : `0x${policy.toString(16)}`
      }`,
  });
  const id = image.idBlock;
  if (!id) {
    checks.push({
      name: "ID_KEY_DIGEST",
      ok: true,
      detail: r.idKeyDigest === ZERO48
        ? "zero: launched without an ID block, and the image has none"
        : `${r.idKeyDigest.slice(0, 16)}...: an ID block from outside the image`,
    });
    return checks;
  }
  if (image.idBlockProblems.length) {
    checks.push({
      name: "the image's ID block",
      ok: false,
      detail: `broken, so the PSP would not launch the image with it: ${
        image.idBlockProblems.join("; ")
      }`,
    });
  }
  const idDigest = toHex(sevKeyDigest(id.idKey));
  const launchedWithout = r.idKeyDigest === ZERO48;
  checks.push({
    name: "ID_KEY_DIGEST = the image's ID key",
    ok: r.idKeyDigest === idDigest,
    detail: r.idKeyDigest === idDigest
      ? idDigest
      : launchedWithout
      ? `zero: the guest was launched without an ID block; the image's ID key digest is ${idDigest}`
      : `${r.idKeyDigest}, the image's ID key digest is ${idDigest}`,
  });
  const authorDigest = id.author ? toHex(sevKeyDigest(id.author.key)) : ZERO48;
  if (!launchedWithout) {
    checks.push({
      name: "AUTHOR_KEY_DIGEST = the image's author key",
      ok: r.authorKeyDigest === authorDigest && r.authorKeyEnabled === (id.author !== undefined),
      detail: r.authorKeyDigest === authorDigest
        ? id.author ? authorDigest : "zero: no author key, as in the image"
        : `${r.authorKeyDigest}, the image's is ${id.author ? authorDigest : "none (zero)"}`,
    });
    const same = (name: string, got: string, want: string) =>
      checks.push({
        name: `${name} = the image's`,
        ok: got === want,
        detail: got === want ? got : `${got}, the image's ${want}`,
      });
    same("FAMILY_ID", r.familyId, toHex(id.familyId));
    same("IMAGE_ID", r.imageId, toHex(id.imageId));
    same("GUEST_SVN", String(r.guestSvn), String(id.guestSvn));
  }
  return checks;
}

/** Reads a small input, naming the option in errors. */
async function readOption(
  input: Input,
  what: string,
): Promise<{ name: string; bytes: Uint8Array }> {
  return { name: inputName(input), bytes: await readSmallInput(input, what) };
}

/** The expected values of a request, checked. */
interface Expectations {
  reportData?: string;
  hostData?: string;
  minTcb?: (product: SevProduct) => TcbParts;
  vmpl?: number;
}

function expectationsOf(request: AttestRequest): Expectations {
  if (request.report === undefined) throw new UsageError("attest: no report given");
  if ((request.ask || request.ark) && !request.vcek) {
    throw new UsageError("attest: --ask and --ark go with --vcek");
  }
  const { vmpl } = request;
  if (vmpl !== undefined && !(Number.isInteger(vmpl) && vmpl >= 0 && vmpl <= 3)) {
    throw new UsageError(`vmpl: expected 0 to 3, got ${vmpl}`);
  }
  return {
    reportData: request.reportData === undefined
      ? undefined
      : expectedBytes("report-data", request.reportData, 64),
    hostData: request.hostData === undefined
      ? undefined
      : expectedBytes("host-data", request.hostData, 32),
    minTcb: request.minTcb === undefined ? undefined : parseMinTcb(request.minTcb),
    vmpl,
  };
}

/** The chain, the report's signature, and the key against the report. */
async function signatureChecks(
  report: AttestationReport,
  request: AttestRequest,
): Promise<{ checks: Check[]; chain?: ChainResult; signatureValid: boolean }> {
  if (!request.vcek) {
    // A version 2 report does not name its generation: Turin's CHIP_ID has 8 bytes.
    const guess = report.cpuid
      ? undefined
      : /^.{16}0{112}$/.test(report.chipId)
      ? "Turin"
      : "Milan";
    const url = vcekUrl(report, guess);
    const where = !url
      ? ""
      : ` (AMD serves this chip's VCEK at ${url}${
        guess === "Milan" ? "; on Genoa, /Genoa/ in place of /Milan/" : ""
      })`;
    const detail = `not checked: give --vcek${where}`;
    return { checks: [{ name: "report signature", ok: false, detail }], signatureValid: false };
  }
  const read = async (input: Input | undefined, what: string) =>
    input === undefined ? undefined : await readOption(input, what);
  let chain: ChainResult;
  try {
    chain = await checkChain({
      vek: (await read(request.vcek, "VCEK certificate"))!,
      ask: await read(request.ask, "ASK certificate"),
      ark: await read(request.ark, "ARK certificate"),
      now: request.now ?? new Date(),
    });
  } catch (e) {
    if (e instanceof UsageError || e instanceof InputError) throw e;
    throw new InputError((e as Error).message, { cause: e });
  }
  const checks = [...chain.checks];
  const key = chain.vek?.publicKey;
  const signatureValid = key?.kind === "ec" && key.curve === "P-384" &&
    await verifyReportSignature(report, key);
  checks.push({
    name: "report signature",
    ok: signatureValid,
    detail: signatureValid
      ? `ECDSA P-384 SHA-384 over bytes 0x000-0x29F, with the ${chain.keyKind ?? "VCEK"}`
      : report.maskChipKey
      ? "MASK_CHIP_KEY is set: the firmware did not sign this report"
      : `does not verify with ${
        inputName(request.vcek)
      }: the report was changed, or another key signed it`,
  });
  if (chain.vek && chain.keyKind) {
    checks.push(...checkKeyAgainstReport(chain.vek, chain.keyKind, chain.product, report));
  }
  return { checks, chain, signatureValid };
}

/** The policy's debug bit, and the values the request expects. */
function expectationChecks(
  report: AttestationReport,
  expected: Expectations,
  product: SevProduct | undefined,
): Check[] {
  const checks: Check[] = [];
  const debug = ((report.policy >> POLICY_DEBUG_BIT) & 1n) === 1n;
  checks.push({
    name: "POLICY: debugging not allowed",
    ok: !debug,
    detail: debug
      ? `${describePolicy(report.policy)}: the host can read and change the guest's memory`
      : describePolicy(report.policy),
  });
  if (expected.vmpl !== undefined) {
    checks.push({
      name: `VMPL = ${expected.vmpl}`,
      ok: report.vmpl === expected.vmpl,
      detail: `the report was requested at VMPL ${report.vmpl}`,
    });
  }
  for (
    const [name, want, got] of [
      ["REPORT_DATA", expected.reportData, report.reportData],
      ["HOST_DATA", expected.hostData, report.hostData],
    ] as const
  ) {
    if (want === undefined) continue;
    checks.push({
      name: `${name} = the expected value`,
      ok: want === got,
      detail: want === got ? got : `the report has ${got}, expected ${want}`,
    });
  }
  if (expected.minTcb) checks.push(minTcbCheck(report, expected.minTcb, product));
  return checks;
}

/** Every component of the reported, current and committed TCB at least the minimum's. */
function minTcbCheck(
  report: AttestationReport,
  minTcb: (product: SevProduct) => TcbParts,
  product: SevProduct | undefined,
): Check {
  const name = "TCB >= minimum";
  if (!product) {
    return {
      name,
      ok: false,
      detail: "the processor generation is unknown (give --vcek): the TCB cannot be decoded",
    };
  }
  const min = minTcb(product);
  const low: string[] = [];
  for (
    const [field, tcb] of [
      ["REPORTED_TCB", report.reportedTcb],
      ["CURRENT_TCB", report.currentTcb],
      ["COMMITTED_TCB", report.committedTcb],
    ] as const
  ) {
    const parts = decodeTcb(tcb, product);
    const below = (Object.keys(min) as (keyof TcbParts)[]).filter((k) =>
      (parts[k] ?? 0) < (min[k] ?? 0)
    );
    if (below.length) low.push(`${field} ${formatTcb(parts)}`);
  }
  return {
    name,
    ok: low.length === 0,
    detail: low.length
      ? `below ${formatTcb(min)}: ${low.join("; ")}`
      : `${formatTcb(decodeTcb(report.reportedTcb, product))} (reported, current, committed)`,
  };
}

/**
 * Searches the images for the report's MEASUREMENT; with a match, checks the report's
 * identity fields against that image, else names the nearest images.
 */
async function imageMatchChecks(
  report: AttestationReport,
  images: readonly Input[],
): Promise<{ checks: Check[]; matches: AttestMatch[]; nearest: AttestResult["nearest"] }> {
  const extra: CpuModel[] = report.cpuid
    ? [{ name: "the report's CPU", signature: cpuSignatureOf(report.cpuid) }]
    : [];
  const cpus = searchedCpus(extra);
  const matches: AttestMatch[] = [];
  const facts: ImageFacts[] = [];
  const unloadable: string[] = [];
  for (const image of images) {
    const name = inputName(image);
    await withInputAccess(image, "IGVM file", async (file) => {
      const headers = await soundHeaders(file).then((h) => {
        snpCompatibilityMask(h); // refuses a file without an SEV-SNP platform
        return h;
      }).catch(naming(name));
      const d = headers.directives.find((x) => x.type === IGVM_VHT_SNP_ID_BLOCK);
      const policy = filePolicy(headers);
      const verdict = d && await idBlockVerdict(d.body, policy, platformMasksOf(headers));
      facts.push({
        name,
        idBlock: d ? decodeIgvmIdBlock(d.body) : undefined,
        idBlockProblems: verdict?.problems ?? [],
        policy,
      });
      const found = await findMeasurement(file, headers, report.measurement, cpus);
      if (found.matches.length === 0 && found.refusals.length === LOADERS.length) {
        unloadable.push(`no loader takes ${name} (${found.refusals[0].reason})`);
      }
      for (const m of found.matches) {
        matches.push({
          image: name,
          loader: m.loader,
          vcpus: m.vcpus ?? null,
          cpu: m.cpu?.name ?? null,
          cpuSignature: m.cpu ? `0x${m.cpu.signature.toString(16).padStart(8, "0")}` : null,
        });
      }
    });
  }
  const match = matches[0];
  if (match) {
    const host = match.vcpus === null
      ? ""
      : `, ${match.vcpus} vCPU${match.vcpus === 1 ? "" : "s"}${
        match.cpu ? `, ${match.cpu} (${match.cpuSignature})` : ""
      }`;
    const more = matches.length - 1;
    const detail = `${match.image} under ${match.loader}${host}${
      more ? ` (and ${more} more configuration${more > 1 ? "s" : ""})` : ""
    }`;
    const image = facts.find((f) => f.name === match.image)!;
    return {
      checks: [
        { name: "MEASUREMENT", ok: true, detail },
        ...imageChecks(image, match.loader, report),
      ],
      matches,
      nearest: [],
    };
  }
  const nearest = facts.map((f) => ({ image: f.name, shares: sharedFields(f, report) }));
  nearest.sort((a, b) => b.shares.length - a.shares.length);
  const best = nearest.filter((n) =>
    n.shares.length > 0 && n.shares.length === nearest[0].shares.length
  );
  const detail = `${report.measurement.slice(0, 16)}... matches none of the ${images.length} image${
    images.length > 1 ? "s" : ""
  } under any loader, 1-64 vCPUs and the CPU models ${cpus.map((c) => c.name).join(", ")}${
    best.length
      ? `; nearest: ${best.map((n) => `${n.image} (same ${n.shares.join(", ")})`).join("; ")}`
      : ""
  }${
    unloadable.map((u) => `; ${u}`).join("")
  }; \`igvmgen measure --log\` and \`igvmgen diff\` show where an image differs`;
  return { checks: [{ name: "MEASUREMENT", ok: false, detail }], matches, nearest };
}

/** Runs `attest`. */
export async function attest(request: AttestRequest): Promise<AttestResult> {
  checkFields("attest", request, FIELDS);
  const expected = expectationsOf(request);
  const input = await readOption(request.report, "attestation report");
  let report: AttestationReport;
  try {
    report = parseAttestationReport(input.bytes);
  } catch (e) {
    throw new InputError(`${input.name}: ${(e as Error).message}`, { cause: e });
  }
  const checks: Check[] = [{
    name: "report format",
    ok: report.problems.length === 0,
    detail: report.problems.length
      ? report.problems.join("; ")
      : `version ${report.version}, signed by the ${signingKeyName(report.signingKey)}`,
  }];
  const signed = await signatureChecks(report, request);
  checks.push(...signed.checks);
  const product = signed.chain?.product ??
    (report.cpuid ? productOfCpuid(report.cpuid) : undefined);
  checks.push(...expectationChecks(report, expected, product));
  const images = request.images ?? [];
  const found = images.length
    ? await imageMatchChecks(report, images)
    : { checks: [], matches: [], nearest: [] };
  checks.push(...found.checks);
  const problems = checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);
  const chainValid = signed.chain?.valid ?? false;
  return {
    schema: "igvmgen-attest/1",
    report: reportJson(report),
    signatureValid: signed.signatureValid,
    chainValid,
    match: found.matches[0] ?? null,
    matches: found.matches,
    nearest: found.nearest,
    checks,
    problems,
    notes: [REVOCATION_NOTE],
    ok: signed.signatureValid && chainValid && problems.length === 0 &&
      (images.length === 0 || found.matches.length > 0),
  };
}

/** The checklist as text: one line per check, ✔ or ✘, then the notes. */
export function formatAttest(result: AttestResult): string {
  const lines = result.checks.map((c) => `${c.ok ? "✔" : "✘"} ${c.name}: ${c.detail}`);
  for (const n of result.notes) lines.push(`  note: ${n}`);
  lines.push(
    result.ok
      ? "attest: OK"
      : `attest: FAILED (${result.problems.length} problem${
        result.problems.length === 1 ? "" : "s"
      })`,
  );
  return lines.join("\n");
}
