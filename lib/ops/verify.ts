/**
 * `igvmgen verify`: checks an IGVM file on the reader (not the writer): its structure
 * (lib/igvm/structure.ts), then recomputes the SNP launch digest from the directives, checks
 * the ID block's signature, and walks the ACPI tables found in the image.
 */
import { PAGE_SIZE, toHex, viewOf } from "../bytes/le.ts";
import { KNOWN_CPU_MODELS, KVM_VMSA_GPA } from "../x86/kvm_vmsa.ts";
import { VMCB_SAVE_AREA } from "../x86/vmsa.ts";
import { BOOT_PARAMS } from "../bzimage/boot_params.ts";
import { IGVM_VHS_SNP_ID_BLOCK, IGVM_VHT_SNP_ID_BLOCK, IGVM_VHT_SNP_POLICY } from "../igvm/defs.ts";
import type { Directive, IgvmFile } from "../igvm/reader.ts";
import { guestReaderOf, readHeaders, structuralProblems } from "../igvm/structure.ts";
import type { ProblemList } from "../igvm/problem_list.ts";
import { snpPlatformNote } from "../igvm/directives.ts";
import { decodeIgvmIdBlock, sevKeyDigest } from "../measure/id_block.ts";
import { walkAcpiTables } from "../../acpi/walk.ts";
import { DEFAULT_LOADER, LOADERS } from "../measure/loaders.ts";
import {
  fileLayout,
  findDigestLoader,
  HOST_SEARCH_CPUS,
  HOST_SEARCH_LOADERS,
  HOST_SEARCH_MAX_VCPUS,
} from "../measure/host_search.ts";
import { checkLaunch, LAUNCH_CHECK_LOADERS } from "../measure/launch_checks.ts";
import { idBlockVerdict, type PlatformMasks, platformMasksOf } from "../measure/id_block_checks.ts";
import { DEFAULT_HOST, hypervUpdates } from "../measure/file_loaders.ts";
import { launchDigestOf } from "../measure/launch_update.ts";
import type { FileAccess } from "../io/file_reader.ts";
import { inputName, withInputAccess } from "../io/input_source.ts";
import { checkFields, FILE_FIELDS, type IgvmFileRequest, naming } from "./igvm_file.ts";

/** The ID block of a file, decoded. */
export interface IdBlockInfo {
  /** The launch digest the block states, 96 hex digits. */
  ld: string;
  /** FAMILY_ID, 32 hex digits in file order. */
  familyId: string;
  /** IMAGE_ID, 32 hex digits in file order. */
  imageId: string;
  /** VERSION (1). */
  version: number;
  /** GUEST_SVN. */
  guestSvn: number;
  /** ID_KEY_ALGO: 1 is ECDSA P-384 with SHA-384. */
  idKeyAlgorithm: number;
  /** The public key's curve: 2 is P-384. */
  curve: number;
  /** The public key's X coordinate, big-endian hex. */
  publicKeyX: string;
  /** The public key's Y coordinate, big-endian hex. */
  publicKeyY: string;
  /**
   * Whether the PSP accepts the signature: it verifies with the block's public key, and R, S
   * and the key are the numbers the PSP reads (their high bytes zero, curve P-384, ...).
   */
  signatureValid: boolean;
  /** Every problem of the block (lib/measure/id_block_checks.ts idBlockVerdict). */
  problems: string[];
  /**
   * SHA-384 of the ID public key in the firmware ABI's 0x404-byte layout: the ID_KEY_DIGEST
   * an attestation report of a guest launched with this block shows (lowercase hex).
   */
  idKeyDigest: string;
  /** The same for the author key: the report's AUTHOR_KEY_DIGEST (zeros without one). */
  authorKeyDigest: string;
  /** Whether the block carries an author key (AuthorKeyEnabled). */
  authorKeyEnabled: boolean;
  /** With an author key: whether its signature over the ID public key verifies. */
  authorSignatureValid?: boolean;
}

/** A loader, and for a KVM loader the host configuration, whose digest an ID block carries. */
export interface IdBlockLoader {
  /** The loader model (see `LOADER_NAMES`). */
  loader: string;
  /** KVM loaders: the vCPU count. */
  vcpus?: number;
  /** KVM loaders whose digest depends on the CPU model: its name (`--cpu`). */
  cpu?: string;
  /** ... and its CPUID(1).EAX, `0x` and 8 hex digits. */
  cpuSignature?: string;
}

/** Everything `verify` found. */
export interface VerifyReport {
  /** True when there is no problem (warnings allowed). */
  ok: boolean;
  /** Each problem found, one sentence each. */
  problems: string[];
  /** Departures from specifications that loaders accept (e.g. the original's unaligned FACS). */
  warnings: string[];
  /**
   * The SNP launch digest recomputed from the directives in file order (the hyperv loader),
   * 96 hex digits ("" if impossible). The ID block's digest is that of `signedFor`.
   */
  launchDigest: string;
  /**
   * The layout of the file: `kvm` when its VP context is at 0xFFFFFFFFF000 (`-target
   * qemu-kvm|ch-kvm`), whose ID block is checked against the KVM loaders' digests; else
   * `hyperv`.
   */
  layout: "hyperv" | "kvm";
  /** Whose launch digest the ID block carries, when one of the loaders' is. */
  signedFor?: IdBlockLoader;
  /** The SNP policy, as hex (`0x...`). */
  policy?: string;
  /** The ID block, decoded. */
  idBlock?: IdBlockInfo;
  /** The ACPI tables found from the RSDP, as `SIGNATURE@0xGPA`. */
  acpiTables: string[];
  /** A file with more than one platform: that the report is about its SEV-SNP platform. */
  platformNote?: string;
}

/**
 * Recomputes the launch digest from the directives as Hyper-V and the original igvmgen
 * measure them: the `hyperv` loader model (file order, shared pages not measured), whose
 * pages are hashed in batches.
 */
export function computeLaunchDigest(file: FileAccess, headers: IgvmFile): Promise<Uint8Array> {
  return launchDigestOf(hypervUpdates(file, headers, DEFAULT_HOST));
}

/** Decodes and checks the ID block: everything the PSP reads, and the signatures. */
async function checkIdBlock(
  d: Directive,
  policy: bigint | undefined,
  platforms: PlatformMasks,
  problems?: ProblemList,
): Promise<IdBlockInfo> {
  const b = d.body;
  const verdict = await idBlockVerdict(b, policy, platforms);
  for (const p of verdict.problems) problems?.push(`ID block: ${p}`);
  const decoded = decodeIgvmIdBlock(b);
  const author = decoded.author;
  const { authorSignatureValid } = verdict;
  return {
    ld: toHex(decoded.ld),
    familyId: toHex(decoded.familyId),
    imageId: toHex(decoded.imageId),
    version: decoded.version,
    guestSvn: decoded.guestSvn,
    idKeyAlgorithm: decoded.idKeyAlgorithm,
    curve: decoded.idKeyCurve,
    publicKeyX: toHex(decoded.idKey.x),
    publicKeyY: toHex(decoded.idKey.y),
    signatureValid: verdict.signatureValid,
    problems: verdict.problems,
    idKeyDigest: toHex(sevKeyDigest(decoded.idKey)),
    authorKeyDigest: author ? toHex(sevKeyDigest(author.key)) : "0".repeat(96),
    authorKeyEnabled: author !== undefined,
    ...(authorSignatureValid === undefined ? {} : { authorSignatureValid }),
  };
}

/**
 * The ID block of a file, decoded and checked as `verify` reports it (its problems listed in
 * it, and pushed to `problems` when given); undefined without a block of the right size.
 */
export async function idBlockInfoOf(
  h: IgvmFile,
  problems?: ProblemList,
): Promise<IdBlockInfo | undefined> {
  const d = h.directives.find((d) => d.type === IGVM_VHT_SNP_ID_BLOCK);
  if (d?.length !== IGVM_VHS_SNP_ID_BLOCK.size) return undefined;
  const policy = h.directives.find((d) => d.type === IGVM_VHT_SNP_POLICY)?.fields.Policy;
  return await checkIdBlock(d, policy, platformMasksOf(h), problems);
}

/**
 * For a file laid out for KVM (`-target qemu-kvm|ch-kvm`: VMSA at 0xFFFFFFFFF000, nothing
 * below 1 MiB), the RSDP address from boot_params.acpi_rsdp_addr, which the VMSA's RSI
 * points at; undefined for other files.
 */
async function kvmLayoutRsdp(guest: ReturnType<typeof guestReaderOf>): Promise<number | undefined> {
  await guest.load(KVM_VMSA_GPA, PAGE_SIZE);
  const vmsa = guest.read(KVM_VMSA_GPA, PAGE_SIZE);
  const rsi = Number(viewOf(vmsa).getBigUint64(VMCB_SAVE_AREA.off.rsi, true));
  const at = rsi + BOOT_PARAMS.acpi_rsdp_addr;
  if (at + 8 > 0x1_0000_0000) return undefined;
  await guest.load(rsi, BOOT_PARAMS.acpi_rsdp_addr + 8);
  const rsdp = Number(viewOf(guest.read(at, 8)).getBigUint64(0, true));
  return rsdp >= 0x100000 && rsdp + 36 <= 0x800000 ? rsdp : undefined;
}

/** The ID block's loader, found: its name, host and the problems of launching with it. */
interface FoundLoader {
  signedFor: IdBlockLoader;
  /** Reasons that loader would not start the file (KVM loaders' launch checks). */
  refusals: string[];
  /** A note for the user (e.g. "carries the ch-mshv digest, not hyperv's"). */
  warning?: string;
}

/**
 * Whose launch digest `ld` is (lib/measure/host_search.ts: the KVM loaders' hosts first for a
 * file laid out for KVM, then the file-based loaders), with the reasons a KVM loader found
 * would not start the file. A loader that refuses the file is a line of `notes`.
 */
async function findIdBlockLoader(
  file: FileAccess,
  h: IgvmFile,
  ld: string,
  fileOrder: Uint8Array,
  forKvm: boolean,
  notes: string[],
): Promise<FoundLoader | undefined> {
  // KVM loaders can give one file the same digest (QEMU and OpenVMM often do): a loader
  // that would not start the file gives way to the next one whose digest matches too.
  let loaders = HOST_SEARCH_LOADERS;
  let refused: FoundLoader | undefined;
  while (true) {
    const search = await findDigestLoader(file, h, ld, { fileOrderDigest: fileOrder, loaders });
    const match = search.match;
    if (!match) {
      if (refused) return refused;
      for (const r of search.refusals) notes.push(`${r.loader} cannot take this file: ${r.reason}`);
      return undefined;
    }
    const signedFor: IdBlockLoader = { loader: match.loader };
    if (match.vcpus !== undefined) signedFor.vcpus = match.vcpus;
    if (match.cpu) {
      signedFor.cpu = match.cpu.name;
      signedFor.cpuSignature = `0x${match.cpu.signature.toString(16).padStart(8, "0")}`;
    }
    const kvm = LAUNCH_CHECK_LOADERS.find((l) => l === match.loader);
    if (!kvm) {
      // A file-based loader's digest (after no KVM host's): a warning when unexpected.
      if (refused) return refused;
      if (forKvm) {
        // Only the KVM loaders take a file laid out for KVM, and none gives this digest.
        return {
          signedFor,
          refusals: [
            `the file is laid out for KVM (VMSA at 0xFFFFFFFFF000), but the ID block carries ` +
            `the ${match.loader} loader's digest, which no KVM loader gives it: the launch ` +
            `would fail (sign it with --loader qemu-kvm or ch-kvm)`,
          ],
        };
      }
      let warning: string | undefined;
      if (match.loader !== DEFAULT_LOADER) {
        warning = `the ID block carries the ${match.loader} loader's launch digest, not ` +
          `hyperv's (see measure --all-loaders)`;
      }
      return { signedFor, refusals: [], warning };
    }
    const host = { vcpus: match.vcpus ?? 1, cpuSignature: match.cpu?.signature ?? 0 };
    const check = await checkLaunch(kvm, file, h, host, { compareIdBlock: false });
    const found = {
      signedFor,
      refusals: check.refusals.map((r) =>
        `${kvm}, whose launch digest the ID block carries, would not start this file: ${r}`
      ),
    };
    if (found.refusals.length === 0) return found;
    refused ??= found;
    loaders = loaders.slice(loaders.indexOf(kvm) + 1);
    if (loaders.length === 0) return refused;
  }
}

/** Why no loader's digest is the ID block's, for the problem line. */
function mismatchProblem(ld: string, fileOrder: string, forKvm: boolean): string {
  const loaders = LOADERS.filter((l) => !l.hostDependent).map((l) => l.name);
  if (!forKvm) {
    return `the ID block's launch digest ${ld.slice(0, 16)}... is not the file's ${
      fileOrder.slice(0, 16)
    }... (nor that of ${loaders.slice(1).join(", ")})`;
  }
  return `the ID block's launch digest ${ld.slice(0, 16)}... is not this file's under ${
    HOST_SEARCH_LOADERS.join(", ")
  } with 1 to ${HOST_SEARCH_MAX_VCPUS} vCPUs of ${
    KNOWN_CPU_MODELS.map((c) => c.name).join(", ")
  } and ${HOST_SEARCH_CPUS.length - KNOWN_CPU_MODELS.length} other EPYC signatures, nor under ${
    loaders.join(", ")
  }: the launch would fail (verify --loader L --vcpus N ` +
    `--cpu C checks one host)`;
}

/** Verifies a file; problems are listed, never thrown (except for unreadable files). */
export async function verifyIgvm(
  file: FileAccess,
  headers?: IgvmFile,
  /** The structural check of these headers, when the caller made it already. */
  checked?: ProblemList,
): Promise<VerifyReport> {
  const h = headers ?? await readHeaders(file);
  const problems = checked ?? structuralProblems(file, h);
  const sound = problems.count === 0;
  const policyHeader = h.directives.find((d) => d.type === IGVM_VHT_SNP_POLICY);
  const policy = policyHeader?.fields.Policy;
  if (!policyHeader) problems.push("no SNP_POLICY header");
  const forKvm = fileLayout(h) === "kvm";
  let fileOrder: Uint8Array | undefined;
  // A structurally broken file has no launch digest worth giving (and recomputing one from
  // millions of hostile headers would only cost time).
  if (sound) {
    try {
      fileOrder = await computeLaunchDigest(file, h);
    } catch (e) {
      problems.push(`cannot recompute the launch digest: ${(e as Error).message}`);
    }
  }
  const launchDigest = fileOrder ? toHex(fileOrder) : "";
  const warnings: string[] = [];
  const idHeaders = h.directives.filter((d) => d.type === IGVM_VHT_SNP_ID_BLOCK);
  let signedFor: IdBlockLoader | undefined;
  if (idHeaders.length === 0) problems.push("no SNP_ID_BLOCK header");
  else if (idHeaders.length > 1) problems.push(`${idHeaders.length} SNP_ID_BLOCK headers`);
  const idBlock = await idBlockInfoOf(h, problems);
  if (idBlock && fileOrder) {
    const notes: string[] = [];
    const found = await findIdBlockLoader(file, h, idBlock.ld, fileOrder, forKvm, notes);
    if (found) {
      signedFor = found.signedFor;
      problems.push(...found.refusals);
      if (found.warning) warnings.push(found.warning);
    } else {
      problems.push(mismatchProblem(idBlock.ld, launchDigest, forKvm));
      warnings.push(...notes);
    }
  }
  // ACPI: walk the tables from the RSDP, reading only the pages the walk needs.
  const guest = guestReaderOf(file, h);
  await guest.load(0xe0000, 0x800000 - 0xe0000); // the ACPI area, below the SNP pages
  const rsdpAddr = (forKvm ? await kvmLayoutRsdp(guest) : undefined) ?? 0xe0000;
  const acpi = walkAcpiTables((gpa, n) => guest.read(gpa, n), rsdpAddr);
  const where = `0x${rsdpAddr.toString(16)}`;
  const hasRsdp = acpi.problems[0] !== `no RSDP signature at ${where}`;
  if (!hasRsdp) warnings.push(`no ACPI RSDP at ${where}: ACPI tables not checked`);
  for (const p of hasRsdp ? acpi.problems : []) {
    (/not 64-byte aligned/.test(p) ? warnings : problems).push(`ACPI: ${p}`);
  }
  return {
    ok: problems.count === 0,
    problems: problems.toArray(),
    warnings,
    launchDigest,
    layout: forKvm ? "kvm" : "hyperv",
    signedFor,
    policy: policy !== undefined ? "0x" + policy.toString(16) : undefined,
    idBlock,
    acpiTables: acpi.tables.map((t) => `${t.signature}@0x${t.gpa.toString(16)}`),
    platformNote: snpPlatformNote(h),
  };
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
