/**
 * `igvmgen inspect`: a summary of any IGVM file: platforms, policy, page ranges grouped by
 * kind and flags, counts and sizes, the VMSA's key registers and the ID block. The JSON form
 * (`--json`) has a stable schema, version 1, described in docs/generating.md.
 */
import { hex, PAGE_SIZE, toHex } from "../bytes/le.ts";
import { KVM_VMSA_GPA } from "../x86/kvm_vmsa.ts";
import {
  IGVM_VHF_PAGE_DATA_GUEST_INVALID,
  IGVM_VHF_PAGE_DATA_UNMEASURED,
  IGVM_VHS_PAGE_DATA_TYPE_CPUID_DATA,
  IGVM_VHS_PAGE_DATA_TYPE_CPUID_XF,
  IGVM_VHS_PAGE_DATA_TYPE_SECRETS,
  IGVM_VHT_PAGE_DATA,
  IGVM_VHT_PARAMETER_AREA,
  IGVM_VHT_PARAMETER_INSERT,
  IGVM_VHT_SNP_POLICY,
  IGVM_VHT_SUPPORTED_PLATFORM,
  IGVM_VHT_VP_CONTEXT,
} from "../igvm/defs.ts";
import { type Directive, directiveAccess, directiveFileOffset } from "../igvm/reader.ts";
import { directiveDataType, directiveFlags, directiveGpa } from "../igvm/directives.ts";
import { assertStructurallySound, readHeaders } from "../igvm/structure.ts";
import type { FileAccess } from "../io/file_reader.ts";
import { computeLaunchDigest, type IdBlockInfo, idBlockInfoOf } from "./verify.ts";
import { inputName, withInputAccess } from "../io/input_source.ts";
import { checkFields, type IgvmFileRequest, naming } from "./igvm_file.ts";
import { VMCB_SAVE_AREA, VMCB_SEG } from "../x86/vmsa.ts";
import { IGVM_NATIVE_VP_CONTEXT_X64 } from "../x86/native_context.ts";
import { directiveMask, findSnpCompatibilityMask, platformsOf } from "../igvm/directives.ts";

/** Kinds of pages in a range. */
export type PageKind =
  | "normal"
  | "zero"
  | "unmeasured"
  | "cpuid"
  | "secrets"
  | "vmsa"
  | "guest-invalid"
  | "parameter";

/** A run of consecutive pages of one kind. */
export interface PageRange {
  /** The first GPA, as hex. */
  start: string;
  /** The GPA after the last page, as hex. */
  end: string;
  /** Pages in the range. */
  pages: number;
  /** What the pages are. */
  kind: PageKind;
}

/** The `inspect --json` document. */
export interface InspectReport {
  /** The schema and its version. */
  schema: "igvmgen-inspect/1";
  /** The file's name as given. */
  file: string;
  /** The file's size in bytes. */
  size: number;
  /** The IGVM format version. */
  formatVersion: number;
  /**
   * The supported platforms: type, highest VTL, platform version; with more than one, also
   * each one's compatibility mask and the pages (and VP contexts) it loads.
   */
  platforms: {
    type: string;
    highestVtl: number;
    version: number;
    compatibilityMask?: number;
    pages?: number;
  }[];
  /**
   * A file with more than one platform: the platform `pages`, `ranges` and `vmsa` describe
   * (SEV-SNP); the others' own pages and VP contexts are in `otherPlatforms`.
   */
  reportedPlatform?: string;
  /** The pages only another platform loads, and its VP contexts (a NATIVE one decoded). */
  otherPlatforms?: {
    type: string;
    ranges: PageRange[];
    vpContexts: { vpIndex: number; registers: Record<string, string> }[];
  }[];
  /** The SNP policy, as hex. */
  policy?: string;
  /** Page counts: all pages, pages with data in the file, and pages by kind. */
  pages: { total: number; withData: number; byKind: Record<PageKind, number> };
  /** Runs of consecutive pages of one kind, in file order. */
  ranges: PageRange[];
  /** Parameter areas: index, size, and the GPA they are inserted at. */
  parameterAreas: { index: number; bytes: number; insertedAt?: string }[];
  /** The VMSAs: GPA, VP index and key registers as hex. */
  vmsa: { gpa: string; vpIndex: number; registers: Record<string, string> }[];
  /**
   * The ID block, decoded, with whether its signature verifies (as `verify` reports it, with
   * `launchDigest` for its `ld` and without the algorithm and curve numbers).
   */
  idBlock?: Omit<IdBlockInfo, "ld" | "idKeyAlgorithm" | "curve"> & { launchDigest: string };
  /** The SNP launch digest recomputed from the directives. */
  launchDigest: string;
}

function kindOf(d: Directive, hasData: boolean): PageKind {
  if (d.type === IGVM_VHT_VP_CONTEXT) return "vmsa";
  if (d.type === IGVM_VHT_PARAMETER_INSERT) return "parameter";
  const flags = directiveFlags(d);
  const type = directiveDataType(d);
  if (type === IGVM_VHS_PAGE_DATA_TYPE_SECRETS) return "secrets";
  if (type === IGVM_VHS_PAGE_DATA_TYPE_CPUID_DATA || type === IGVM_VHS_PAGE_DATA_TYPE_CPUID_XF) {
    return "cpuid";
  }
  if (flags & IGVM_VHF_PAGE_DATA_GUEST_INVALID) return "guest-invalid";
  if (flags & IGVM_VHF_PAGE_DATA_UNMEASURED) return "unmeasured";
  return hasData ? "normal" : "zero";
}

/** The registers `inspect` shows of every initial vCPU state. */
const CPU_REGISTERS = ["rip", "rsp", "rsi", "rflags", "cr0", "cr3", "cr4", "efer"] as const;

/** The registers of a VMSA `inspect` shows. */
const VMSA_REGISTERS = [...CPU_REGISTERS, "xcr0", "g_pat"] as const;

/** The registers of a native VP context `inspect` shows. */
const NATIVE_REGISTERS = [
  ...CPU_REGISTERS,
  "code_selector",
  "code_attributes",
  "data_selector",
  "data_attributes",
  "gdtr_base",
  "gdtr_limit",
] as const;

/** Decodes the registers of an IgvmNativeVpContextX64 page. */
function nativeRegisters(page: Uint8Array): Record<string, string> {
  const v = new DataView(page.buffer, page.byteOffset, page.byteLength);
  const out: Record<string, string> = {};
  if (page.length < IGVM_NATIVE_VP_CONTEXT_X64.size) return out;
  for (const [name, at, type] of IGVM_NATIVE_VP_CONTEXT_X64.fields) {
    if (!(NATIVE_REGISTERS as readonly string[]).includes(name)) continue;
    out[name] = hex(
      type === "u64"
        ? v.getBigUint64(at, true)
        : type === "u32"
        ? v.getUint32(at, true)
        : v.getUint16(at, true),
    );
  }
  return out;
}

/** Runs of consecutive pages of one kind, built page by page. */
class PageRanges {
  readonly list: PageRange[] = [];
  /** The GPA after the last run, as a number (its `end` is written when the run ends). */
  #end = NaN;
  #kind?: PageKind;

  /** Appends the page at `gpa`. */
  add(gpa: number, kind: PageKind): void {
    if (kind === this.#kind && gpa === this.#end) {
      this.list[this.list.length - 1].pages++;
    } else {
      this.#close();
      this.list.push({ start: hex(gpa), end: "", pages: 1, kind });
      this.#kind = kind;
    }
    this.#end = gpa + PAGE_SIZE;
  }

  /** The runs, each with its end. */
  done(): PageRange[] {
    this.#close();
    return this.list;
  }

  #close(): void {
    if (this.list.length) this.list[this.list.length - 1].end = hex(this.#end);
  }
}

/** Builds the inspect report of a file; refuses a file with a structural problem. */
async function inspectIgvm(file: FileAccess, name: string): Promise<InspectReport> {
  const h = await readHeaders(file);
  assertStructurallySound(file, h);
  // Of verify's work, only the digest and the ID block: no ACPI walk, no host search.
  const launchDigest = await computeLaunchDigest(file, h).then(toHex, () => "");
  const id = await idBlockInfoOf(h);
  const byKind = {
    normal: 0,
    zero: 0,
    unmeasured: 0,
    cpuid: 0,
    secrets: 0,
    vmsa: 0,
    "guest-invalid": 0,
    parameter: 0,
  };
  const ranges = new PageRanges();
  let withData = 0;
  let total = 0;
  const declared = platformsOf(h);
  // With several platforms, the pages and VMSAs are the SEV-SNP platform's; other platforms
  // get their own pages and VP contexts listed apart.
  const snpMask = declared.length > 1 ? findSnpCompatibilityMask(h) : undefined;
  const platforms: InspectReport["platforms"] = declared.map((p) => ({
    type: p.name,
    highestVtl: p.highestVtl,
    version: p.version,
    ...(snpMask === undefined ? {} : { compatibilityMask: p.compatibilityMask, pages: 0 }),
  }));
  const others = declared.filter((p) => p.compatibilityMask !== snpMask).map((p) => ({
    type: p.name,
    mask: p.compatibilityMask,
    ranges: new PageRanges(),
    vpContexts: [] as { vpIndex: number; registers: Record<string, string> }[],
  }));
  const parameterAreas: InspectReport["parameterAreas"] = [];
  const vmsa: InspectReport["vmsa"] = [];
  let policy: string | undefined;
  const ds = directiveAccess(h.directives);
  for (let i = 0; i < ds.length; i++) {
    const d = ds.at(i);
    if (d.type === IGVM_VHT_SUPPORTED_PLATFORM) {
      continue;
    } else if (d.type === IGVM_VHT_SNP_POLICY) {
      policy = hex(d.fields.Policy ?? 0n);
    } else if (d.type === IGVM_VHT_PARAMETER_AREA) {
      parameterAreas.push({
        index: Number(d.fields.ParameterAreaIndex ?? 0n),
        bytes: Number(d.fields.NumberOfBytes ?? 0n),
      });
    }
    if (d.type === IGVM_VHT_PARAMETER_INSERT) {
      const area = parameterAreas.find((a) =>
        a.index === Number(d.fields.ParameterAreaIndex ?? 0n)
      );
      if (area) area.insertedAt = hex(d.fields.GPA ?? 0n);
    }
    if (
      d.type !== IGVM_VHT_PAGE_DATA && d.type !== IGVM_VHT_VP_CONTEXT &&
      d.type !== IGVM_VHT_PARAMETER_INSERT
    ) continue;
    const gpa = directiveGpa(d);
    const offset = directiveFileOffset(d);
    const kind = kindOf(d, offset !== undefined);
    const mask = directiveMask(d);
    for (const p of platforms) if (p.pages !== undefined && p.compatibilityMask! & mask) p.pages++;
    if (snpMask !== undefined && !(mask & snpMask)) {
      for (const o of others.filter((o) => o.mask & mask)) {
        if (d.type !== IGVM_VHT_VP_CONTEXT) o.ranges.add(gpa, kind);
        else if (offset !== undefined) {
          o.vpContexts.push({
            vpIndex: Number(d.fields.VpIndex ?? 0n),
            registers: nativeRegisters(await file.readAt(offset, IGVM_NATIVE_VP_CONTEXT_X64.size)),
          });
        }
      }
      continue;
    }
    if (offset !== undefined) withData++;
    byKind[kind]++;
    total++;
    ranges.add(gpa, kind);
    if (d.type === IGVM_VHT_VP_CONTEXT && offset !== undefined) {
      const page = await file.readAt(offset, VMCB_SAVE_AREA.size);
      const v = new DataView(page.buffer, page.byteOffset, page.byteLength);
      const registers: Record<string, string> = {};
      if (page.length === VMCB_SAVE_AREA.size) {
        for (const r of VMSA_REGISTERS) {
          registers[r] = hex(v.getBigUint64(VMCB_SAVE_AREA.off[r], true));
        }
        for (const seg of ["cs", "ds", "tr", "gdtr"]) {
          const at = VMCB_SAVE_AREA.off[seg];
          registers[`${seg}.selector`] = hex(v.getUint16(at + VMCB_SEG.off.selector, true));
          registers[`${seg}.attrib`] = hex(v.getUint16(at + VMCB_SEG.off.attrib, true));
          registers[`${seg}.base`] = hex(v.getBigUint64(at + VMCB_SEG.off.base, true));
          registers[`${seg}.limit`] = hex(v.getUint32(at + VMCB_SEG.off.limit, true));
        }
        registers.sev_features = hex(v.getBigUint64(VMCB_SAVE_AREA.off._0, true));
      }
      vmsa.push({ gpa: hex(gpa), vpIndex: Number(d.fields.VpIndex ?? 0n), registers });
    }
  }
  return {
    schema: "igvmgen-inspect/1",
    file: name,
    size: file.size,
    formatVersion: h.fixed.FormatVersion,
    platforms,
    ...(snpMask === undefined ? {} : {
      reportedPlatform: "SEV-SNP",
      otherPlatforms: others.map(({ type, ranges, vpContexts }) => ({
        type,
        ranges: ranges.done(),
        vpContexts,
      })),
    }),
    policy,
    pages: { total, withData, byKind },
    ranges: ranges.done(),
    parameterAreas,
    vmsa,
    idBlock: id && {
      familyId: id.familyId,
      imageId: id.imageId,
      version: id.version,
      guestSvn: id.guestSvn,
      launchDigest: id.ld,
      publicKeyX: id.publicKeyX,
      publicKeyY: id.publicKeyY,
      signatureValid: id.signatureValid,
      problems: id.problems,
      idKeyDigest: id.idKeyDigest,
      authorKeyDigest: id.authorKeyDigest,
      authorKeyEnabled: id.authorKeyEnabled,
      ...(id.authorSignatureValid === undefined
        ? {}
        : { authorSignatureValid: id.authorSignatureValid }),
    },
    launchDigest,
  };
}

/** The human-readable form of a report. */
export function formatInspect(r: InspectReport): string {
  const mib = (pages: number) => `${(pages * PAGE_SIZE / 1024).toFixed(0)} KiB`;
  const lines = [
    `${r.file}: IGVM format ${r.formatVersion}, ${r.size} bytes`,
    `platforms:   ${
      r.platforms.map((p) =>
        `${p.type} (${
          p.pages !== undefined ? `mask ${hex(p.compatibilityMask!)}, ${p.pages} pages, ` : ""
        }version ${p.version}, highest VTL ${p.highestVtl})`
      ).join(", ")
    }`,
    ...(r.reportedPlatform
      ? [`reported:    the ${r.reportedPlatform} platform (pages, ranges, VMSA, digest below)`]
      : []),
    `policy:      ${r.policy ?? "none"}`,
    `pages:       ${r.pages.total} (${
      mib(r.pages.total)
    }), ${r.pages.withData} with data in the file`,
    `             ${
      Object.entries(r.pages.byKind).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(
        ", ",
      )
    }`,
    `launch digest ${r.launchDigest}`,
    "ranges:",
    ...r.ranges.map((x) =>
      `  ${x.start.padStart(12)} - ${x.end.padStart(12)}  ${
        String(x.pages).padStart(7)
      } pages  ${x.kind}`
    ),
  ];
  for (const a of r.parameterAreas) {
    lines.push(
      `parameter area ${a.index}: ${a.bytes} bytes${a.insertedAt ? ` at ${a.insertedAt}` : ""}`,
    );
  }
  for (const v of r.vmsa) {
    lines.push(`VMSA (VP ${v.vpIndex}) at ${v.gpa}:`);
    const regs = Object.entries(v.registers);
    for (let i = 0; i < regs.length; i += 4) {
      lines.push("  " + regs.slice(i, i + 4).map(([k, val]) => `${k}=${val}`).join("  "));
    }
  }
  for (const o of r.otherPlatforms ?? []) {
    const own = o.ranges.reduce((n, x) => n + x.pages, 0);
    lines.push(`${o.type} platform: ${own} pages of its own (the others shared):`);
    for (const x of o.ranges) {
      lines.push(
        `  ${x.start.padStart(12)} - ${x.end.padStart(12)}  ${
          String(x.pages).padStart(7)
        } pages  ${x.kind}`,
      );
    }
    for (const v of o.vpContexts) {
      lines.push(`${o.type} VP context (VP ${v.vpIndex}):`);
      const regs = Object.entries(v.registers);
      for (let i = 0; i < regs.length; i += 4) {
        lines.push("  " + regs.slice(i, i + 4).map(([k, val]) => `${k}=${val}`).join("  "));
      }
    }
  }
  if (r.idBlock) {
    const b = r.idBlock;
    lines.push(
      "ID block:",
      `  family id ${b.familyId}  image id ${b.imageId}  version ${b.version}  guest SVN ${b.guestSvn}`,
      `  launch digest ${b.launchDigest}${
        b.launchDigest === r.launchDigest
          ? " (matches the file)"
          : r.vmsa.some((v) => v.gpa === hex(KVM_VMSA_GPA))
          ? " (not the file-order digest: laid out for KVM, see verify --loader)"
          : " (DOES NOT match the file)"
      }`,
      `  public key x ${b.publicKeyX}`,
      `             y ${b.publicKeyY}`,
      `  signature ${b.signatureValid ? "valid" : "INVALID"}`,
      ...b.problems.map((p) => `  problem: ${p}`),
      `  ID key digest     ${b.idKeyDigest}`,
      `  author key digest ${b.authorKeyDigest}${
        b.authorKeyEnabled
          ? ` (author signature ${b.authorSignatureValid ? "valid" : "INVALID"})`
          : " (no author key)"
      }`,
    );
  }
  return lines.join("\n");
}

/** What `inspect` is asked. */
export interface InspectRequest extends IgvmFileRequest {
  /** The name the report gives the file. Default: the path, or the stream's name. */
  name?: string;
}

/** Summarises a file: platforms, policy, page ranges, VMSAs, ID block. */
export async function inspectIgvmFile(request: InspectRequest): Promise<InspectReport> {
  checkFields(
    "inspect",
    request,
    { file: true, name: true } satisfies Record<keyof InspectRequest, true>,
  );
  const name = inputName(request.file);
  return await withInputAccess(
    request.file,
    "IGVM file",
    (file) => inspectIgvm(file, request.name ?? name).catch(naming(name)),
  );
}
