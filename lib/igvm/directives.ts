/**
 * Format-level helpers over parsed directives: the SEV-SNP platform header and its
 * compatibility mask, a directive's GPA and mask, and the bound on a parameter area's size.
 * Nothing here knows a loader.
 */
import {
  IGVM_PLATFORM_TYPE_SEV_SNP,
  IGVM_VHT_PARAMETER_AREA,
  IGVM_VHT_SUPPORTED_PLATFORM,
} from "./defs.ts";
import { hex, PAGE_SIZE } from "../bytes/le.ts";
import { type Directive, type IgvmFile, PageDataDirective } from "./reader.ts";
import { InputError } from "../errors.ts";

/** Where a problem is: "header at 0x...". */
export function headerAt(d: Directive): string {
  return `header at ${hex(d.offset)}`;
}

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

/** IgvmPlatformType values by name, as reports print them. */
const PLATFORM_TYPE_NAMES: Readonly<Record<number, string>> = {
  0x00: "NATIVE",
  0x01: "VSM isolation",
  0x02: "SEV-SNP",
  0x03: "TDX",
  0x04: "SEV",
  0x05: "SEV-ES",
};

/** One SUPPORTED_PLATFORM header of a file. */
export interface Platform {
  /** `SEV-SNP`, `NATIVE`, ... or `type N` for a value the specification does not name. */
  name: string;
  compatibilityMask: number;
  highestVtl: number;
  version: number;
}

/** The platforms a file declares, in file order. */
export function platformsOf(headers: IgvmFile): Platform[] {
  return headers.directives.filter((d) => d.type === IGVM_VHT_SUPPORTED_PLATFORM).map((d) => {
    const type = Number(d.fields.PlatformType ?? 0n);
    return {
      name: PLATFORM_TYPE_NAMES[type] ?? `type ${type}`,
      compatibilityMask: directiveMask(d),
      highestVtl: Number(d.fields.HighestVtl ?? 0n),
      version: Number(d.fields.PlatformVersion ?? 0n),
    };
  });
}

/**
 * For a file that declares more than one platform, what a digest or check of it is about:
 * its SEV-SNP platform (`-native` images also carry NATIVE). Undefined for one platform.
 */
export function snpPlatformNote(headers: IgvmFile): string | undefined {
  const platforms = platformsOf(headers);
  if (platforms.length < 2) return undefined;
  const snp = platforms.find((p) => p.name === "SEV-SNP");
  const others = platforms.filter((p) => p !== snp).map((p) => p.name).join(", ");
  return snp
    ? `the file also carries ${others}: this is its SEV-SNP platform (mask 0x${
      snp.compatibilityMask.toString(16)
    })`
    : undefined;
}

/*
 * Field readers that go over every page: a PAGE_DATA directive is read from its table row,
 * with no fields object built (a file with a 1 GiB initrd has 263k of them).
 */

/**
 * The GPA of a directive as a number (0 when it has none). Exact below 2^53 and for every
 * page-aligned GPA; an unaligned GPA above 2^53 is rounded, so alignment is checked with
 * {@link directiveGpaPageOffset} and GPAs are told apart with {@link directiveGpaExact}.
 */
export function directiveGpa(d: Directive): number {
  if (d instanceof PageDataDirective) return d.table.gpa(d.row);
  return Number(d.fields.GPA ?? 0n);
}

/** The GPA of a directive, exact (0 when it has none). */
export function directiveGpaExact(d: Directive): bigint {
  if (d instanceof PageDataDirective) return d.table.gpaExact(d.row);
  return d.fields.GPA ?? 0n;
}

/** The offset of a directive's GPA within its 4 KiB page, exact: 0 for an aligned GPA. */
export function directiveGpaPageOffset(d: Directive): number {
  if (d instanceof PageDataDirective) return d.table.gpaPageOffset(d.row);
  return Number((d.fields.GPA ?? 0n) & 0xfffn);
}

/**
 * The GPA of a directive that places a page, as a number: exact, as every 4 KiB-aligned GPA
 * is. An unaligned GPA fails with `refuse(message)`: no loader places such a page (the igvm
 * crate refuses the file), and above 2^53 its number would be another, aligned GPA.
 */
export function pageGpa(d: Directive, refuse: (message: string) => Error): number {
  if (directiveGpaPageOffset(d) !== 0) {
    throw refuse(
      `${headerAt(d)}: GPA 0x${directiveGpaExact(d).toString(16)} is not page aligned`,
    );
  }
  return directiveGpa(d);
}

/**
 * One past the highest guest physical address any x86 guest can have: 2^52. The physical
 * address width (MAXPHYADDR) is at most 52 bits on x86-64 (a SEV-SNP host's is 48 to 52), so
 * guest memory at or above it cannot exist: Linux KVM refuses a memory slot that reaches past
 * the host's width, and with it any launch update there.
 */
export const GPA_LIMIT = 2n ** 52n;

/**
 * Why `bytes` of guest memory from `gpa` cannot be placed, or undefined when they can: they
 * end beyond {@link GPA_LIMIT} (a range that passes 2^64 included). `what` names the memory
 * ("page", "PARAMETER_INSERT of 0x1000 bytes", ...).
 */
export function gpaRangeProblem(
  d: Directive,
  what: string,
  gpa: bigint,
  bytes: bigint,
): string | undefined {
  if (gpa + bytes <= GPA_LIMIT) return undefined;
  return `${headerAt(d)}: ${what} at GPA 0x${gpa.toString(16)} ends beyond 2^52, where no x86 ` +
    `guest has memory (physical addresses have at most 52 bits): KVM refuses it (predicted)`;
}

/** The compatibility mask of a directive (0 when it has none, or for no directive). */
export function directiveMask(d: Directive | undefined): number {
  if (d instanceof PageDataDirective) return d.table.mask(d.row);
  return Number(d?.fields.CompatibilityMask ?? 0n);
}

/** The Flags of a directive (0 when it has none). */
export function directiveFlags(d: Directive): number {
  if (d instanceof PageDataDirective) return d.table.flags(d.row);
  return Number(d.fields.Flags ?? 0n);
}

/** The DataType of a directive (0 when it has none). */
export function directiveDataType(d: Directive): number {
  if (d instanceof PageDataDirective) return d.table.dataType(d.row);
  return Number(d.fields.DataType ?? 0n);
}

/** True when a directive has a Reserved field that is not zero. */
export function hasNonZeroReserved(d: Directive): boolean {
  if (d instanceof PageDataDirective) return d.table.reserved(d.row) !== 0;
  return d.fields.Reserved !== undefined && d.fields.Reserved !== 0n;
}

/**
 * The largest parameter area accepted: 4 GiB, the most guest memory an IGVM file can lay out
 * below the 32-bit boundary. Loaders measure an area page by page, so an unbounded declared
 * size (NumberOfBytes is a u64) would make every model loop once per declared page.
 */
const MAX_PARAMETER_AREA_BYTES = 0x1_0000_0000;

/**
 * Why a PARAMETER_AREA's NumberOfBytes cannot be valid, or undefined when it can: it must be
 * a whole number of 4 KiB pages (as the igvm crate requires), at least one (loaders disagree
 * on how an empty area is measured) and at most {@link MAX_PARAMETER_AREA_BYTES}.
 */
export function parameterAreaSizeProblem(bytes: bigint): string | undefined {
  const hex = `0x${bytes.toString(16)}`;
  if (bytes === 0n) return "size 0: an area has at least one page";
  if (bytes % BigInt(PAGE_SIZE) !== 0n) return `size ${hex} is not a multiple of 4 KiB`;
  if (bytes > BigInt(MAX_PARAMETER_AREA_BYTES)) return `size ${hex} is more than 4 GiB`;
  return undefined;
}

/**
 * The parameter areas of a file: size in bytes by area index. A size that cannot be valid
 * ({@link parameterAreaSizeProblem}) fails with `refuse(message)`, so no model loops over it.
 */
export function parameterAreaSizes(
  headers: IgvmFile,
  refuse: (message: string) => Error = (message) => new InputError(message),
): Map<number, number> {
  const areas = new Map<number, number>();
  for (const d of headers.directives) {
    if (d.type !== IGVM_VHT_PARAMETER_AREA) continue;
    const bytes = d.fields.NumberOfBytes ?? 0n;
    const problem = parameterAreaSizeProblem(bytes);
    if (problem) throw refuse(`PARAMETER_AREA at 0x${d.offset.toString(16)}: ${problem}`);
    areas.set(Number(d.fields.ParameterAreaIndex ?? 0n), Number(bytes));
  }
  return areas;
}
