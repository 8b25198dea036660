/**
 * The qemu-kvm launch digest of a `-target qemu-kvm` image without a second pass over its
 * pages: the file-order (hyperv) digest the writer computed, extended by the AP VMSAs.
 *
 * QEMU's launch updates (../shared/LOADERS.md §4.2, §10 "qemu-kvm") are the file-order ones
 * followed by one VMSA per vCPU at 0xFFFFFFFFF000, when the file satisfies every condition
 * `fileOrderIsQemuOrder` checks (all from the headers and the one VMSA page):
 * - each directive is selected alike: the file-order rules take a compatibility mask holding
 *   every SNP bit, QEMU one holding any;
 * - no shared (guest-invalid) page: file order skips them, QEMU measures them;
 * - no 2 MiB page and only the page data types both map alike;
 * - every PARAMETER_INSERT precedes every page: QEMU issues an insert at once, ahead of the
 *   run of pages it still buffers, so an insert after a page could overtake it; and each
 *   inserted area has at least one page (QEMU measures one page even for an empty area);
 * - one VP context, for vp 0, at 0xFFFFFFFFF000, after every page and insert: file order
 *   measures it there and last, as KVM measures the boot CPU's VMSA first at LAUNCH_FINISH;
 * - its bytes are those KVM rebuilds from it (kvmBspVmsa with vp 0's SEV features and SNP).
 * Zero pages are NORMAL pages of zeros for both, unmeasured, secrets and CPUID pages are the
 * same types. The APs' VMSAs are QEMU's reset state with RDX = the CPU signature.
 */
import { PAGE_SIZE } from "../bytes/le.ts";
import {
  IGVM_VHF_PAGE_DATA_2MB,
  IGVM_VHF_PAGE_DATA_GUEST_INVALID,
  IGVM_VHS_PAGE_DATA_TYPE_CPUID_DATA,
  IGVM_VHS_PAGE_DATA_TYPE_CPUID_XF,
  IGVM_VHS_PAGE_DATA_TYPE_NORMAL,
  IGVM_VHS_PAGE_DATA_TYPE_SECRETS,
  IGVM_VHT_PAGE_DATA,
  IGVM_VHT_PARAMETER_AREA,
  IGVM_VHT_PARAMETER_INSERT,
  IGVM_VHT_VP_CONTEXT,
} from "../igvm/defs.ts";
import { directiveFileOffset, type IgvmFile } from "../igvm/reader.ts";
import type { FileAccess } from "../io/file_reader.ts";
import { KVM_VMSA_GPA, kvmBspVmsa, kvmSevFeatures, resetVmsa } from "../x86/kvm_vmsa.ts";
import {
  directiveDataType,
  directiveFlags,
  directiveMask,
  snpCompatibilityMask,
} from "../igvm/directives.ts";
import type { HostConfig } from "./launch_update.ts";
import { sha384 } from "../hash/wasm_sha384.ts";
import { encodePageInfo, SNP_PAGE_TYPE_VMSA } from "./snp_digest.ts";

const SAME_TYPE = new Set([
  IGVM_VHS_PAGE_DATA_TYPE_NORMAL,
  IGVM_VHS_PAGE_DATA_TYPE_SECRETS,
  IGVM_VHS_PAGE_DATA_TYPE_CPUID_DATA,
  IGVM_VHS_PAGE_DATA_TYPE_CPUID_XF,
]);

/**
 * The boot CPU's VMSA page when QEMU's launch updates are the file-order ones followed by
 * the VMSAs (see the module comment); undefined when any condition fails.
 */
export async function fileOrderIsQemuOrder(
  file: FileAccess,
  headers: IgvmFile,
): Promise<Uint8Array | undefined> {
  const snp = snpCompatibilityMask(headers);
  const areas = new Map<number, number>();
  let pageSeen = false;
  let context: { offset?: number } | undefined;
  for (const d of headers.directives) {
    if (d.type === IGVM_VHT_PARAMETER_AREA) {
      areas.set(Number(d.fields.ParameterAreaIndex ?? 0n), Number(d.fields.NumberOfBytes ?? 0n));
    }
    if (
      d.type !== IGVM_VHT_PAGE_DATA && d.type !== IGVM_VHT_PARAMETER_INSERT &&
      d.type !== IGVM_VHT_VP_CONTEXT
    ) continue;
    const mask = directiveMask(d);
    const fileOrder = (mask & snp) === snp;
    if (fileOrder !== ((mask & snp) !== 0)) return undefined;
    if (!fileOrder) continue;
    if (context) return undefined; // a page or insert after the VP context
    if (d.type === IGVM_VHT_PAGE_DATA) {
      const flags = directiveFlags(d);
      if (flags & (IGVM_VHF_PAGE_DATA_GUEST_INVALID | IGVM_VHF_PAGE_DATA_2MB)) return undefined;
      if (!SAME_TYPE.has(directiveDataType(d))) return undefined;
      pageSeen = true;
    } else if (d.type === IGVM_VHT_PARAMETER_INSERT) {
      const bytes = areas.get(Number(d.fields.ParameterAreaIndex ?? 0n));
      if (pageSeen || !bytes) return undefined;
    } else {
      if ((d.fields.VpIndex ?? 0n) !== 0n || Number(d.fields.GPA ?? 0n) !== KVM_VMSA_GPA) {
        return undefined;
      }
      context = { offset: directiveFileOffset(d) };
    }
  }
  if (!context || context.offset === undefined) return undefined;
  const page = (await file.readAt(context.offset, PAGE_SIZE)).slice();
  if (page.length !== PAGE_SIZE) return undefined;
  const rebuilt = kvmBspVmsa("qemu", page);
  return rebuilt.every((b, i) => b === page[i]) ? page : undefined;
}

/**
 * Extends a launch digest by the VMSAs of vCPUs 1 .. vcpus-1 in QEMU's reset state: the
 * qemu-kvm digest for `host` when `digest` is the file-order digest of a file for which
 * `fileOrderIsQemuOrder` returned `bootVmsa`.
 */
export function extendWithApVmsas(
  digest: Uint8Array,
  bootVmsa: Uint8Array,
  host: HostConfig,
): Uint8Array {
  if (host.vcpus <= 1) return digest;
  const contents = sha384(resetVmsa(kvmSevFeatures(bootVmsa), host.cpuSignature));
  let current = digest;
  for (let vp = 1; vp < host.vcpus; vp++) {
    current = sha384(encodePageInfo(current, contents, SNP_PAGE_TYPE_VMSA, KVM_VMSA_GPA));
  }
  return current;
}
