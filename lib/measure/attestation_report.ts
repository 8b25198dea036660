/**
 * The SEV-SNP attestation report (ATTESTATION_REPORT, SEV-SNP firmware ABI specification,
 * MSG_REPORT_REQ): its layout, versions 2, 3 and 5, decoding from the raw 1184 bytes or their
 * hex text, and the check of its ECDSA P-384/SHA-384 signature over bytes 0x000-0x29F.
 */
import { defineLayout } from "../bytes/layout.ts";
import { isAllZero, toHex, viewOf } from "../bytes/le.ts";
import { InputError } from "../errors.ts";
import { fromLittleEndian72, verifyIdBlock } from "./id_block.ts";

/**
 * ATTESTATION_REPORT, 0x4a0 bytes, little-endian, as of report version 5. Version 3 added
 * the CPUID fields (reserved in version 2), version 5 the mitigation vectors (reserved before).
 */
export const ATTESTATION_REPORT = defineLayout("ATTESTATION_REPORT", 0x4a0, [
  ["Version", 0x000, "u32"],
  ["GuestSvn", 0x004, "u32"],
  ["Policy", 0x008, "u64"],
  ["FamilyId", 0x010, { bytes: 16 }],
  ["ImageId", 0x020, { bytes: 16 }],
  ["Vmpl", 0x030, "u32"],
  ["SignatureAlgo", 0x034, "u32"],
  ["CurrentTcb", 0x038, "u64"],
  ["PlatformInfo", 0x040, "u64"],
  ["SignerInfo", 0x048, "u32"], // bit 0 AUTHOR_KEY_EN, 1 MASK_CHIP_KEY, 4:2 SIGNING_KEY
  ["Reserved0", 0x04c, "u32"],
  ["ReportData", 0x050, { bytes: 64 }],
  ["Measurement", 0x090, { bytes: 48 }],
  ["HostData", 0x0c0, { bytes: 32 }],
  ["IdKeyDigest", 0x0e0, { bytes: 48 }],
  ["AuthorKeyDigest", 0x110, { bytes: 48 }],
  ["ReportId", 0x140, { bytes: 32 }],
  ["ReportIdMa", 0x160, { bytes: 32 }],
  ["ReportedTcb", 0x180, "u64"],
  ["CpuidFamId", 0x188, "u8"], // version 3 and later
  ["CpuidModId", 0x189, "u8"], // version 3 and later
  ["CpuidStep", 0x18a, "u8"], // version 3 and later
  ["Reserved1", 0x18b, { bytes: 21 }],
  ["ChipId", 0x1a0, { bytes: 64 }],
  ["CommittedTcb", 0x1e0, "u64"],
  ["CurrentBuild", 0x1e8, "u8"],
  ["CurrentMinor", 0x1e9, "u8"],
  ["CurrentMajor", 0x1ea, "u8"],
  ["Reserved2", 0x1eb, "u8"],
  ["CommittedBuild", 0x1ec, "u8"],
  ["CommittedMinor", 0x1ed, "u8"],
  ["CommittedMajor", 0x1ee, "u8"],
  ["Reserved3", 0x1ef, "u8"],
  ["LaunchTcb", 0x1f0, "u64"],
  ["LaunchMitVector", 0x1f8, "u64"], // version 5 and later
  ["CurrentMitVector", 0x200, "u64"], // version 5 and later
  ["Reserved4", 0x208, { bytes: 0x98 }],
  ["Signature", 0x2a0, { bytes: 0x200 }],
]);

/** The signature inside the report: R and S, little-endian, zero-extended to 72 bytes. */
export const ECDSA_P384_SHA384_SIGNATURE = defineLayout("ECDSA_P384_SHA384_SIGNATURE", 0x200, [
  ["R", 0x00, { bytes: 72 }],
  ["S", 0x48, { bytes: 72 }],
  ["Reserved", 0x90, { bytes: 0x170 }],
]);

/** SIGNATURE_ALGO 1: ECDSA P-384 with SHA-384. */
export const SIG_ALGO_ECDSA_P384_SHA384 = 1;
/** The bytes the signature covers: 0x000 to 0x29F. */
export const SIGNED_LENGTH = 0x2a0;
/** SIGNING_KEY values of SIGNER_INFO. */
export const SIGNING_KEY_VCEK = 0;
export const SIGNING_KEY_VLEK = 1;
export const SIGNING_KEY_NONE = 7;
/** The report versions whose layout this module knows. */
export const REPORT_VERSIONS = [2, 3, 4, 5] as const;

/** An SEV-SNP processor generation, as AMD's key distribution service names it. */
export type SevProduct = "Milan" | "Genoa" | "Turin";

/** The components of a TCB_VERSION; `fmc` only on Turin and later. */
export interface TcbParts {
  fmc?: number;
  bootloader: number;
  tee: number;
  snp: number;
  microcode: number;
}

/** A decoded attestation report. Byte fields are lowercase hex. */
export interface AttestationReport {
  /** The 1184 bytes. */
  bytes: Uint8Array;
  version: number;
  guestSvn: number;
  policy: bigint;
  familyId: string;
  imageId: string;
  vmpl: number;
  signatureAlgo: number;
  currentTcb: bigint;
  platformInfo: bigint;
  authorKeyEnabled: boolean;
  maskChipKey: boolean;
  /** SIGNING_KEY: 0 VCEK, 1 VLEK, 7 none. */
  signingKey: number;
  reportData: string;
  measurement: string;
  hostData: string;
  idKeyDigest: string;
  authorKeyDigest: string;
  reportId: string;
  reportIdMa: string;
  reportedTcb: bigint;
  /** CPUID(1) family, model and stepping of the chip (version 3 and later). */
  cpuid?: { family: number; model: number; stepping: number };
  chipId: string;
  committedTcb: bigint;
  currentVersion: string;
  committedVersion: string;
  launchTcb: bigint;
  launchMitVector?: bigint;
  currentMitVector?: bigint;
  /** The signature's R and S, big-endian 48 bytes each. */
  signatureR: Uint8Array;
  signatureS: Uint8Array;
  /** Fields that break the layout's rules (reserved bytes not zero, ...). */
  problems: string[];
}

const REPORT_SIZE = ATTESTATION_REPORT.size;
const NOT_A_REPORT = `not an SEV-SNP attestation report: expected the raw ${REPORT_SIZE} bytes ` +
  `(/dev/sev-guest, snpguest report) or their ${2 * REPORT_SIZE} hex digits`;

/**
 * The report's 1184 bytes from what a user hands over: the raw bytes, or hex text (any case,
 * whitespace and a leading 0x ignored). Anything else is refused with one line.
 */
export function reportBytesOf(input: Uint8Array): Uint8Array {
  if (input.length === REPORT_SIZE) return input;
  if (input.length > 4 * REPORT_SIZE) {
    throw new InputError(`${NOT_A_REPORT}; got ${input.length} bytes`);
  }
  const text = new TextDecoder("latin1").decode(input).replace(/\s+/g, "").replace(/^0x/i, "");
  if (!/^[0-9a-fA-F]*$/.test(text)) {
    throw new InputError(`${NOT_A_REPORT}; got ${input.length} bytes that are not hex text`);
  }
  if (text.length !== 2 * REPORT_SIZE) {
    throw new InputError(`${NOT_A_REPORT}; got ${text.length} hex digits`);
  }
  return Uint8Array.from(text.match(/../g)!, (b) => parseInt(b, 16));
}

/** Decodes a report (raw or hex text); versions 2 to 5. */
export function parseAttestationReport(input: Uint8Array): AttestationReport {
  const bytes = reportBytesOf(input).slice();
  const v = viewOf(bytes);
  const o = ATTESTATION_REPORT.off;
  const version = v.getUint32(o.Version, true);
  if (!(REPORT_VERSIONS as readonly number[]).includes(version)) {
    throw new InputError(
      `attestation report version ${version}: versions ${REPORT_VERSIONS.join(", ")} are known`,
    );
  }
  const hexOf = (name: string, length: number) => toHex(bytes.subarray(o[name], o[name] + length));
  const problems: string[] = [];
  const zero = (name: string, from: number, to: number) => {
    if (!isAllZero(bytes.subarray(from, to))) problems.push(`reserved ${name} is not zero`);
  };
  const vmpl = v.getUint32(o.Vmpl, true);
  if (vmpl > 3) problems.push(`VMPL ${vmpl}: the PSP reports VMPL 0 to 3 only`);
  const signerInfo = v.getUint32(o.SignerInfo, true);
  if (signerInfo & 0xffff_ffe0) problems.push("SIGNER_INFO: reserved bits are set");
  zero("bytes 0x04C-0x04F", o.Reserved0, o.ReportData);
  zero(
    version >= 3 ? "bytes 0x18B-0x19F" : "bytes 0x188-0x19F",
    version >= 3 ? o.Reserved1 : o.CpuidFamId,
    o.ChipId,
  );
  zero("byte 0x1EB", o.Reserved2, o.Reserved2 + 1);
  zero("byte 0x1EF", o.Reserved3, o.Reserved3 + 1);
  zero(
    version >= 5 ? "bytes 0x208-0x29F" : "bytes 0x1F8-0x29F",
    version >= 5 ? o.Reserved4 : o.LaunchMitVector,
    o.Signature,
  );
  const sig = bytes.subarray(o.Signature, o.Signature + ECDSA_P384_SHA384_SIGNATURE.size);
  const so = ECDSA_P384_SHA384_SIGNATURE.off;
  if (
    !isAllZero(sig.subarray(so.R + 48, so.R + 72)) || !isAllZero(sig.subarray(so.S + 48, so.S + 72))
  ) {
    problems.push("the signature's R or S is longer than 48 bytes");
  }
  zero(
    "bytes 0x330-0x49F (the signature's, after R and S)",
    o.Signature + so.Reserved,
    REPORT_SIZE,
  );
  const versionText = (at: number) => `${bytes[at + 2]}.${bytes[at + 1]}.${bytes[at]}`; // major.minor.build
  return {
    bytes,
    version,
    guestSvn: v.getUint32(o.GuestSvn, true),
    policy: v.getBigUint64(o.Policy, true),
    familyId: hexOf("FamilyId", 16),
    imageId: hexOf("ImageId", 16),
    vmpl,
    signatureAlgo: v.getUint32(o.SignatureAlgo, true),
    currentTcb: v.getBigUint64(o.CurrentTcb, true),
    platformInfo: v.getBigUint64(o.PlatformInfo, true),
    authorKeyEnabled: (signerInfo & 1) !== 0,
    maskChipKey: (signerInfo & 2) !== 0,
    signingKey: (signerInfo >> 2) & 7,
    reportData: hexOf("ReportData", 64),
    measurement: hexOf("Measurement", 48),
    hostData: hexOf("HostData", 32),
    idKeyDigest: hexOf("IdKeyDigest", 48),
    authorKeyDigest: hexOf("AuthorKeyDigest", 48),
    reportId: hexOf("ReportId", 32),
    reportIdMa: hexOf("ReportIdMa", 32),
    reportedTcb: v.getBigUint64(o.ReportedTcb, true),
    cpuid: version >= 3
      ? { family: bytes[o.CpuidFamId], model: bytes[o.CpuidModId], stepping: bytes[o.CpuidStep] }
      : undefined,
    chipId: hexOf("ChipId", 64),
    committedTcb: v.getBigUint64(o.CommittedTcb, true),
    currentVersion: versionText(o.CurrentBuild),
    committedVersion: versionText(o.CommittedBuild),
    launchTcb: v.getBigUint64(o.LaunchTcb, true),
    launchMitVector: version >= 5 ? v.getBigUint64(o.LaunchMitVector, true) : undefined,
    currentMitVector: version >= 5 ? v.getBigUint64(o.CurrentMitVector, true) : undefined,
    signatureR: fromLittleEndian72(sig.subarray(so.R, so.R + 72)),
    signatureS: fromLittleEndian72(sig.subarray(so.S, so.S + 72)),
    problems,
  };
}

/**
 * Checks the report's signature with the public key of its VCEK or VLEK (x, y big-endian):
 * ECDSA P-384 over SHA-384 of bytes 0x000-0x29F. False for any other SIGNATURE_ALGO.
 */
export function verifyReportSignature(
  report: AttestationReport,
  key: { x: Uint8Array; y: Uint8Array },
): Promise<boolean> {
  if (report.signatureAlgo !== SIG_ALGO_ECDSA_P384_SHA384) return Promise.resolve(false);
  const signed = report.bytes.subarray(0, SIGNED_LENGTH);
  return verifyIdBlock(signed, report.signatureR, report.signatureS, key.x, key.y);
}

/**
 * CPUID(1).EAX for a family, model and stepping as the report gives them (the combined
 * values): the signature KVM puts in each AP's RDX with `-cpu host`.
 */
export function cpuSignatureOf(cpuid: { family: number; model: number; stepping: number }): number {
  const baseFamily = Math.min(cpuid.family, 0xf);
  const extFamily = cpuid.family - baseFamily;
  return ((extFamily << 20) | ((cpuid.model >> 4) << 16) | (baseFamily << 8) |
    ((cpuid.model & 0xf) << 4) | (cpuid.stepping & 0xf)) >>> 0;
}

/**
 * The processor generation of a CPUID family and model (AMD family 19h models 00-0Fh Milan,
 * 10-1Fh and A0-AFh Genoa; family 1Ah models 00-11h Turin), or undefined.
 */
export function productOfCpuid(cpuid: { family: number; model: number }): SevProduct | undefined {
  const { family, model } = cpuid;
  if (family === 0x19 && model <= 0x0f) return "Milan";
  if (family === 0x19 && ((model >= 0x10 && model <= 0x1f) || (model >= 0xa0 && model <= 0xaf))) {
    return "Genoa";
  }
  if (family === 0x1a && model <= 0x11) return "Turin";
  return undefined;
}

/**
 * The parts of a TCB_VERSION. Milan and Genoa: byte 0 boot loader, 1 TEE, 6 SNP, 7 microcode;
 * Turin: byte 0 FMC, 1 boot loader, 2 TEE, 3 SNP, 7 microcode.
 */
export function decodeTcb(tcb: bigint, product: SevProduct): TcbParts {
  const byte = (i: number) => Number((tcb >> BigInt(8 * i)) & 0xffn);
  if (product === "Turin") {
    return { fmc: byte(0), bootloader: byte(1), tee: byte(2), snp: byte(3), microcode: byte(7) };
  }
  return { bootloader: byte(0), tee: byte(1), snp: byte(6), microcode: byte(7) };
}

/** "bl=3 tee=0 snp=8 ucode=115" (with fmc= first on Turin). */
export function formatTcb(parts: TcbParts): string {
  return `${
    parts.fmc === undefined ? "" : `fmc=${parts.fmc} `
  }bl=${parts.bootloader} tee=${parts.tee} snp=${parts.snp} ucode=${parts.microcode}`;
}

/** The name of a SIGNING_KEY value. */
export function signingKeyName(value: number): string {
  return value === SIGNING_KEY_VCEK
    ? "VCEK"
    : value === SIGNING_KEY_VLEK
    ? "VLEK"
    : value === SIGNING_KEY_NONE
    ? "none"
    : `reserved value ${value}`;
}
