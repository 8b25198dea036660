/**
 * `igvmgen verify`: checks an IGVM file on the reader (not the writer): its structure
 * (lib/igvm/structure.ts), then recomputes the SNP launch digest from the directives, checks
 * the ID block's signature, and walks the ACPI tables found in the image.
 */
import { PAGE_SIZE, toHex, viewOf } from "../bytes/le.ts";
import { KVM_VMSA_GPA } from "../x86/kvm_vmsa.ts";
import { VMCB_SAVE_AREA } from "../x86/vmsa.ts";
import { BOOT_PARAMS } from "../bzimage/boot_params.ts";
import {
  IGVM_VHS_SNP_ID_BLOCK,
  IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY,
  IGVM_VHS_SNP_ID_BLOCK_SIGNATURE,
  IGVM_VHT_SNP_ID_BLOCK,
  IGVM_VHT_SNP_POLICY,
  IGVM_VHT_VP_CONTEXT,
  SNP_ECDSA_CURVE_P384,
  SNP_ID_BLOCK_ALGORITHM_ECDSA_P384_SHA384,
} from "../igvm/defs.ts";
import type { Directive, IgvmFile } from "../igvm/reader.ts";
import { guestReaderOf, readHeaders, structuralProblems } from "../igvm/structure.ts";
import type { ProblemList } from "../igvm/problem_list.ts";
import { snpPlatformNote } from "../igvm/directives.ts";
import { fromLittleEndian72, verifyIdBlock } from "../measure/id_block.ts";
import { walkAcpiTables } from "../../acpi/walk.ts";
import { loaderSignedFor } from "../measure/loaders.ts";
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
  /** Whether the signature verifies with the block's public key. */
  signatureValid: boolean;
}

/** Everything `verify` found. */
export interface VerifyReport {
  /** True when there is no problem (warnings allowed). */
  ok: boolean;
  /** Each problem found, one sentence each. */
  problems: string[];
  /** Departures from specifications that loaders accept (e.g. the original's unaligned FACS). */
  warnings: string[];
  /** The SNP launch digest recomputed from the directives, 96 hex digits ("" if impossible). */
  launchDigest: string;
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

/** Decodes and checks the ID block against the digest and the policy. */
async function checkIdBlock(
  d: Directive,
  policy: bigint | undefined,
  problems: ProblemList,
): Promise<IdBlockInfo> {
  const b = d.body;
  const o = IGVM_VHS_SNP_ID_BLOCK.off;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const sig = o.IdKeySignature;
  const key = o.IdPublicKey;
  // Big numbers are 72-byte little-endian fields; the curve uses the first 48 bytes.
  const big = (at: number) => fromLittleEndian72(b.subarray(at, at + 72));
  const r = big(sig + IGVM_VHS_SNP_ID_BLOCK_SIGNATURE.off.R);
  const s = big(sig + IGVM_VHS_SNP_ID_BLOCK_SIGNATURE.off.S);
  const x = big(key + IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY.off.Qx);
  const y = big(key + IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY.off.Qy);
  const block = new Uint8Array(96);
  block.set(b.subarray(o.Ld, o.Ld + 88));
  new DataView(block.buffer).setBigUint64(88, policy ?? 0n, true);
  const algorithm = v.getUint32(o.IdKeyAlgorithm, true);
  const curve = v.getUint32(key + IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY.off.Curve, true);
  if (algorithm !== SNP_ID_BLOCK_ALGORITHM_ECDSA_P384_SHA384) {
    problems.push(`ID block: key algorithm ${algorithm}, expected 1 (ECDSA P-384 SHA-384)`);
  }
  if (curve !== SNP_ECDSA_CURVE_P384) problems.push(`ID block: curve ${curve}, expected 2 (P-384)`);
  if (b.subarray(o.Reserved, o.Reserved + 3).some((x) => x !== 0)) {
    problems.push("ID block: reserved bytes are not zero");
  }
  const valid = policy !== undefined && await verifyIdBlock(block, r, s, x, y);
  if (!valid) problems.push("ID block: the signature does not verify with the block's public key");
  return {
    ld: toHex(b.subarray(o.Ld, o.Ld + 48)),
    familyId: toHex(b.subarray(o.FamilyId, o.FamilyId + 16)),
    imageId: toHex(b.subarray(o.ImageId, o.ImageId + 16)),
    version: v.getUint32(o.Version, true),
    guestSvn: v.getUint32(o.GuestSvn, true),
    idKeyAlgorithm: algorithm,
    curve,
    publicKeyX: toHex(x),
    publicKeyY: toHex(y),
    signatureValid: valid,
  };
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

/** True for a file laid out for KVM: its VP context is at 0xFFFFFFFFF000. */
function laidOutForKvm(h: IgvmFile): boolean {
  return h.directives.some((d) =>
    d.type === IGVM_VHT_VP_CONTEXT && d.fields.GPA === BigInt(KVM_VMSA_GPA)
  );
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
  let launchDigest = "";
  // A structurally broken file has no launch digest worth giving (and recomputing one from
  // millions of hostile headers would only cost time).
  if (sound) {
    try {
      launchDigest = toHex(await computeLaunchDigest(file, h));
    } catch (e) {
      problems.push(`cannot recompute the launch digest: ${(e as Error).message}`);
    }
  }
  const warnings: string[] = [];
  const idHeaders = h.directives.filter((d) => d.type === IGVM_VHT_SNP_ID_BLOCK);
  let idBlock: IdBlockInfo | undefined;
  let signedFor: string | undefined; // another loader whose digest the ID block carries
  if (idHeaders.length === 0) problems.push("no SNP_ID_BLOCK header");
  else if (idHeaders.length > 1) problems.push(`${idHeaders.length} SNP_ID_BLOCK headers`);
  if (idHeaders.length >= 1 && idHeaders[0].length === IGVM_VHS_SNP_ID_BLOCK.size) {
    idBlock = await checkIdBlock(idHeaders[0], policy, problems);
    // A file laid out for KVM (VMSA at 0xFFFFFFFFF000) carries the digest of one host
    // configuration (vCPUs, CPU model), which only `verify --loader` can check.
    const forKvm = laidOutForKvm(h);
    const mismatch = launchDigest !== "" && idBlock.ld !== launchDigest;
    signedFor = mismatch && !forKvm ? await loaderSignedFor(file, h, idBlock.ld) : undefined;
    if (mismatch && forKvm) {
      warnings.push(
        "the ID block's launch digest is not the file-order digest: the file is laid out for " +
          "KVM, whose digest depends on the vCPU count and model (check it with verify --loader)",
      );
    } else if (mismatch && !signedFor) {
      problems.push(
        `the ID block's launch digest ${idBlock.ld.slice(0, 16)}... is not the file's ${
          launchDigest.slice(0, 16)
        }...`,
      );
    }
  }
  // ACPI: walk the tables from the RSDP, reading only the pages the walk needs.
  const guest = guestReaderOf(file, h);
  await guest.load(0xe0000, 0x800000 - 0xe0000); // the ACPI area, below the SNP pages
  const rsdpAddr = (laidOutForKvm(h) ? await kvmLayoutRsdp(guest) : undefined) ?? 0xe0000;
  const acpi = walkAcpiTables((gpa, n) => guest.read(gpa, n), rsdpAddr);
  if (signedFor) {
    warnings.push(
      `the ID block carries the ${signedFor} loader's launch digest, not hyperv's (see measure --all-loaders)`,
    );
  }
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
