/**
 * What the loader models share about the directives of an IGVM file: the SEV-SNP platform's
 * compatibility mask, and the SNP page type a PAGE_DATA directive is measured as
 * (../shared/LOADERS.md §10). Each model adds its own order, filtering and refusals.
 */
import {
  IGVM_PLATFORM_TYPE_SEV_SNP,
  IGVM_VHF_PAGE_DATA_UNMEASURED,
  IGVM_VHS_PAGE_DATA_TYPE_CPUID_DATA,
  IGVM_VHS_PAGE_DATA_TYPE_CPUID_XF,
  IGVM_VHS_PAGE_DATA_TYPE_NORMAL,
  IGVM_VHS_PAGE_DATA_TYPE_SECRETS,
  IGVM_VHT_SUPPORTED_PLATFORM,
} from "../igvm/defs.ts";
import { type Directive, directiveFileOffset, type IgvmFile } from "../igvm/reader.ts";
import { InputError } from "../errors.ts";
import {
  SNP_PAGE_TYPE_CPUID,
  SNP_PAGE_TYPE_NORMAL,
  SNP_PAGE_TYPE_SECRETS,
  SNP_PAGE_TYPE_UNMEASURED,
  SNP_PAGE_TYPE_ZERO,
} from "./snp_digest.ts";

/** The file's SEV-SNP SUPPORTED_PLATFORM header, if it has one. */
export function findSnpPlatform(headers: IgvmFile): Directive | undefined {
  return headers.directives.find((d) =>
    d.type === IGVM_VHT_SUPPORTED_PLATFORM &&
    Number(d.fields.PlatformType ?? 0n) === IGVM_PLATFORM_TYPE_SEV_SNP
  );
}

/** The compatibility mask of the file's SEV-SNP platform, or undefined when it has none. */
export function findSnpCompatibilityMask(headers: IgvmFile): number | undefined {
  const p = findSnpPlatform(headers);
  return p ? directiveMask(p) : undefined;
}

/** The SNP platform's compatibility mask; refuses a file without a SEV-SNP platform. */
export function snpCompatibilityMask(headers: IgvmFile): number {
  const mask = findSnpCompatibilityMask(headers);
  if (mask === undefined) {
    throw new InputError("not a SEV-SNP IGVM file: no SEV-SNP platform header");
  }
  return mask;
}

/** The GPA of a directive (0 when it has none). */
export function directiveGpa(d: Directive): number {
  return Number(d.fields.GPA ?? 0n);
}

/** The compatibility mask of a directive (0 when it has none, or for no directive). */
export function directiveMask(d: Directive | undefined): number {
  return Number(d?.fields.CompatibilityMask ?? 0n);
}

/**
 * The SNP page type a PAGE_DATA directive is measured as: SECRETS and CPUID pages by their
 * data type (CPUID_XF as CPUID), NORMAL pages as UNMEASURED when flagged so, as ZERO when
 * they have no data and `zeroPages` is set (the loader issues SNP ZERO pages), else NORMAL.
 * Undefined for a data type no loader knows. The 2 MiB and guest-invalid (shared) flags,
 * and loaders that refuse CPUID_XF, are the caller's to handle.
 */
export function pageDataSnpType(d: Directive, zeroPages: boolean): number | undefined {
  switch (Number(d.fields.DataType ?? 0n)) {
    case IGVM_VHS_PAGE_DATA_TYPE_NORMAL:
      if (Number(d.fields.Flags ?? 0n) & IGVM_VHF_PAGE_DATA_UNMEASURED) {
        return SNP_PAGE_TYPE_UNMEASURED;
      }
      return zeroPages && directiveFileOffset(d) === undefined
        ? SNP_PAGE_TYPE_ZERO
        : SNP_PAGE_TYPE_NORMAL;
    case IGVM_VHS_PAGE_DATA_TYPE_SECRETS:
      return SNP_PAGE_TYPE_SECRETS;
    case IGVM_VHS_PAGE_DATA_TYPE_CPUID_DATA:
    case IGVM_VHS_PAGE_DATA_TYPE_CPUID_XF:
      return SNP_PAGE_TYPE_CPUID;
    default:
      return undefined;
  }
}
