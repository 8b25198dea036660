/**
 * The SNP page type a PAGE_DATA directive is measured as, shared by the loader models; each
 * model adds its own order, filtering and refusals.
 */
import {
  IGVM_VHF_PAGE_DATA_UNMEASURED,
  IGVM_VHS_PAGE_DATA_TYPE_CPUID_DATA,
  IGVM_VHS_PAGE_DATA_TYPE_CPUID_XF,
  IGVM_VHS_PAGE_DATA_TYPE_NORMAL,
  IGVM_VHS_PAGE_DATA_TYPE_SECRETS,
} from "../igvm/defs.ts";
import { type Directive, directiveFileOffset } from "../igvm/reader.ts";
import { directiveDataType, directiveFlags } from "../igvm/directives.ts";
import {
  SNP_PAGE_TYPE_CPUID,
  SNP_PAGE_TYPE_NORMAL,
  SNP_PAGE_TYPE_SECRETS,
  SNP_PAGE_TYPE_UNMEASURED,
  SNP_PAGE_TYPE_ZERO,
} from "./snp_digest.ts";

/**
 * The SNP page type a PAGE_DATA directive is measured as: SECRETS and CPUID pages by their
 * data type (CPUID_XF as CPUID), NORMAL pages as UNMEASURED when flagged so, as ZERO when
 * they have no data and `zeroPages` is set (the loader issues SNP ZERO pages), else NORMAL.
 * Undefined for a data type no loader knows. The 2 MiB and guest-invalid (shared) flags,
 * and loaders that refuse CPUID_XF, are the caller's to handle.
 */
export function pageDataSnpType(d: Directive, zeroPages: boolean): number | undefined {
  switch (directiveDataType(d)) {
    case IGVM_VHS_PAGE_DATA_TYPE_NORMAL:
      if (directiveFlags(d) & IGVM_VHF_PAGE_DATA_UNMEASURED) {
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
