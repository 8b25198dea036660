/**
 * IGVM file format, version 1: layouts and constants only (microsoft/igvm `igvm_defs`).
 * Names follow the specification so a search finds them there.
 */
import { defineLayout } from "../bytes/layout.ts";

export const IGVM_MAGIC_VALUE = 0x4D56_4749; // "IGVM"
export const IGVM_FORMAT_VERSION_1 = 1;

/** IGVM_FIXED_HEADER, 0x18 bytes. */
export const IGVM_FIXED_HEADER = defineLayout("IGVM_FIXED_HEADER", 0x18, [
  ["Magic", 0x00, "u32"],
  ["FormatVersion", 0x04, "u32"],
  ["VariableHeaderOffset", 0x08, "u32"],
  ["VariableHeaderSize", 0x0c, "u32"],
  ["TotalFileSize", 0x10, "u32"],
  ["Checksum", 0x14, "u32"],
]);

/** IGVM_VHS_VARIABLE_HEADER, 8 bytes: the type and length before every variable header. */
export const IGVM_VHS_VARIABLE_HEADER = defineLayout("IGVM_VHS_VARIABLE_HEADER", 0x08, [
  ["Type", 0x00, "u32"],
  ["Length", 0x04, "u32"],
]);

// Variable header types (IGVM_VARIABLE_HEADER_TYPE).
export const IGVM_VHT_SUPPORTED_PLATFORM = 0x001;
export const IGVM_VHT_SNP_POLICY = 0x101;
export const IGVM_VHT_PARAMETER_AREA = 0x301;
export const IGVM_VHT_PAGE_DATA = 0x302;
export const IGVM_VHT_PARAMETER_INSERT = 0x303;
export const IGVM_VHT_VP_CONTEXT = 0x304;
export const IGVM_VHT_REQUIRED_MEMORY = 0x305;
export const IGVM_VHT_SHARED_BOUNDARY_GPA = 0x306;
export const IGVM_VHT_VP_COUNT_PARAMETER = 0x307;
export const IGVM_VHT_SRAT = 0x308;
export const IGVM_VHT_MADT = 0x309;
export const IGVM_VHT_MMIO_RANGES = 0x30a;
export const IGVM_VHT_SNP_ID_BLOCK = 0x30b;
export const IGVM_VHT_MEMORY_MAP = 0x30c;
export const IGVM_VHT_ERROR_RANGE = 0x30d;
export const IGVM_VHT_COMMAND_LINE = 0x30e;
export const IGVM_VHT_ENVIRONMENT_INFO_PARAMETER = 0x313;

/** IGVM_VHS_SUPPORTED_PLATFORM, 0x10 bytes. */
export const IGVM_VHS_SUPPORTED_PLATFORM = defineLayout("IGVM_VHS_SUPPORTED_PLATFORM", 0x10, [
  ["CompatibilityMask", 0x00, "u32"],
  ["HighestVtl", 0x04, "u8"],
  ["PlatformType", 0x05, "u8"],
  ["PlatformVersion", 0x06, "u16"],
  ["SharedGPABoundary", 0x08, "u64"],
]);
export const IGVM_PLATFORM_TYPE_NATIVE = 0;
export const IGVM_PLATFORM_TYPE_SEV_SNP = 2;
export const IGVM_NATIVE_PLATFORM_VERSION = 1;
export const IGVM_SNP_PLATFORM_VERSION = 1;

/** IGVM_VHS_SNP_POLICY, 0x10 bytes. */
export const IGVM_VHS_SNP_POLICY = defineLayout("IGVM_VHS_SNP_POLICY", 0x10, [
  ["Policy", 0x00, "u64"],
  ["CompatibilityMask", 0x08, "u32"],
  ["Reserved", 0x0c, "u32"],
]);

/** IGVM_VHS_PARAMETER_AREA, 0x10 bytes. */
export const IGVM_VHS_PARAMETER_AREA = defineLayout("IGVM_VHS_PARAMETER_AREA", 0x10, [
  ["NumberOfBytes", 0x00, "u64"],
  ["ParameterAreaIndex", 0x08, "u32"],
  ["FileOffset", 0x0c, "u32"],
]);

/** IGVM_VHS_PAGE_DATA, 0x18 bytes. FileOffset 0 means a zero page with no data. */
export const IGVM_VHS_PAGE_DATA = defineLayout("IGVM_VHS_PAGE_DATA", 0x18, [
  ["GPA", 0x00, "u64"],
  ["CompatibilityMask", 0x08, "u32"],
  ["FileOffset", 0x0c, "u32"],
  ["Flags", 0x10, "u32"],
  ["DataType", 0x14, "u16"],
  ["Reserved", 0x16, "u16"],
]);
export const IGVM_VHF_PAGE_DATA_2MB = 0x1;
export const IGVM_VHF_PAGE_DATA_UNMEASURED = 0x2;
export const IGVM_VHF_PAGE_DATA_GUEST_INVALID = 0x4;
export const IGVM_VHS_PAGE_DATA_TYPE_NORMAL = 0;
export const IGVM_VHS_PAGE_DATA_TYPE_SECRETS = 1;
export const IGVM_VHS_PAGE_DATA_TYPE_CPUID_DATA = 2;
export const IGVM_VHS_PAGE_DATA_TYPE_CPUID_XF = 3;

/** IGVM_VHS_PARAMETER_INSERT, 0x10 bytes. */
export const IGVM_VHS_PARAMETER_INSERT = defineLayout("IGVM_VHS_PARAMETER_INSERT", 0x10, [
  ["GPA", 0x00, "u64"],
  ["CompatibilityMask", 0x08, "u32"],
  ["ParameterAreaIndex", 0x0c, "u32"],
]);

/**
 * IGVM_VHS_PARAMETER, 8 bytes: VP_COUNT_PARAMETER, MEMORY_MAP, SRAT, MADT, COMMAND_LINE,
 * ENVIRONMENT_INFO_PARAMETER.
 */
export const IGVM_VHS_PARAMETER = defineLayout("IGVM_VHS_PARAMETER", 0x08, [
  ["ParameterAreaIndex", 0x00, "u32"],
  ["ByteOffset", 0x04, "u32"],
]);

/** IGVM_VHS_VP_CONTEXT, 0x14 bytes (padded to 0x18 in the file). */
export const IGVM_VHS_VP_CONTEXT = defineLayout("IGVM_VHS_VP_CONTEXT", 0x14, [
  ["GPA", 0x00, "u64"],
  ["CompatibilityMask", 0x08, "u32"],
  ["FileOffset", 0x0c, "u32"],
  ["VpIndex", 0x10, "u16"],
  ["Reserved", 0x12, "u16"],
]);

/** IGVM_VHS_REQUIRED_MEMORY, 0x18 bytes (only for `-d` of other tools' files). */
export const IGVM_VHS_REQUIRED_MEMORY = defineLayout("IGVM_VHS_REQUIRED_MEMORY", 0x18, [
  ["GPA", 0x00, "u64"],
  ["CompatibilityMask", 0x08, "u32"],
  ["NumberOfBytes", 0x0c, "u32"],
  ["Flags", 0x10, "u32"],
  ["Reserved", 0x14, "u32"],
]);

/** One MMIO range of IGVM_VHS_MMIO_RANGES. */
const IGVM_VHS_MMIO_RANGE = defineLayout("IGVM_VHS_MMIO_RANGES_0", 0x10, [
  ["StartingGpaPageNumber", 0x00, "u64"],
  ["NumberOfPages", 0x08, "u64"],
]);

/** IGVM_VHS_MMIO_RANGES, 0x20 bytes: two ranges. */
export const IGVM_VHS_MMIO_RANGES = defineLayout("IGVM_VHS_MMIO_RANGES", 0x20, [
  ["MmioRanges_0", 0x00, { struct: IGVM_VHS_MMIO_RANGE }],
  ["MmioRanges_1", 0x10, { struct: IGVM_VHS_MMIO_RANGE }],
]);

/** IGVM_VHS_ERROR_RANGE, 0x10 bytes. */
export const IGVM_VHS_ERROR_RANGE = defineLayout("IGVM_VHS_ERROR_RANGE", 0x10, [
  ["GPA", 0x00, "u64"],
  ["CompatibilityMask", 0x08, "u32"],
  ["SizeBytes", 0x0c, "u32"],
]);

/** IGVM_VHS_MEMORY_MAP_ENTRY, 0x18 bytes: an entry the host writes into a parameter area. */
export const IGVM_VHS_MEMORY_MAP_ENTRY = defineLayout("IGVM_VHS_MEMORY_MAP_ENTRY", 0x18, [
  ["StartingGpaPageNumber", 0x00, "u64"],
  ["NumberOfPages", 0x08, "u64"],
  ["Type", 0x10, "u16"],
  ["Flags", 0x12, "u16"],
  ["Reserved", 0x14, "u32"],
]);

/** IGVM_VHS_SNP_ID_BLOCK_SIGNATURE, 0x90 bytes: R and S, little-endian, zero-padded to 72. */
export const IGVM_VHS_SNP_ID_BLOCK_SIGNATURE = defineLayout(
  "IGVM_VHS_SNP_ID_BLOCK_SIGNATURE",
  0x90,
  [
    ["R", 0x00, { bytes: 72 }],
    ["S", 0x48, { bytes: 72 }],
  ],
);

/** IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY, 0x98 bytes. Curve 2 = P-384. */
export const IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY = defineLayout(
  "IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY",
  0x98,
  [
    ["Curve", 0x00, "u32"],
    ["Reserved", 0x04, "u32"],
    ["Qx", 0x08, { bytes: 72 }],
    ["Qy", 0x50, { bytes: 72 }],
  ],
);

/** IGVM_VHS_SNP_ID_BLOCK, 0x2b8 bytes. */
export const IGVM_VHS_SNP_ID_BLOCK = defineLayout("IGVM_VHS_SNP_ID_BLOCK", 0x2b8, [
  ["CompatibilityMask", 0x000, "u32"],
  ["AuthorKeyEnabled", 0x004, "u8"],
  ["Reserved", 0x005, { bytes: 3 }],
  ["Ld", 0x008, { bytes: 48 }],
  ["FamilyId", 0x038, { bytes: 16 }],
  ["ImageId", 0x048, { bytes: 16 }],
  ["Version", 0x058, "u32"],
  ["GuestSvn", 0x05c, "u32"],
  ["IdKeyAlgorithm", 0x060, "u32"],
  ["AuthorKeyAlgorithm", 0x064, "u32"],
  ["IdKeySignature", 0x068, { struct: IGVM_VHS_SNP_ID_BLOCK_SIGNATURE }],
  ["IdPublicKey", 0x0f8, { struct: IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY }],
  ["AuthorKeySignature", 0x190, { struct: IGVM_VHS_SNP_ID_BLOCK_SIGNATURE }],
  ["AuthorPublicKey", 0x220, { struct: IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY }],
]);
export const SNP_ID_BLOCK_ALGORITHM_ECDSA_P384_SHA384 = 1;
export const SNP_ECDSA_CURVE_P384 = 2;

/** The body layout of each variable header type, and the name `-d` prints for it. */
export const VARIABLE_HEADER_BODIES: ReadonlyMap<
  number,
  { name: string; body: typeof IGVM_VHS_PAGE_DATA }
> = new Map([
  [IGVM_VHT_SUPPORTED_PLATFORM, {
    name: "IGVM_VHT_SUPPORTED_PLATFORM",
    body: IGVM_VHS_SUPPORTED_PLATFORM,
  }],
  [IGVM_VHT_SNP_POLICY, { name: "IGVM_VHT_SNP_POLICY", body: IGVM_VHS_SNP_POLICY }],
  [IGVM_VHT_PARAMETER_AREA, { name: "IGVM_VHT_PARAMETER_AREA", body: IGVM_VHS_PARAMETER_AREA }],
  [IGVM_VHT_PAGE_DATA, { name: "IGVM_VHT_PAGE_DATA", body: IGVM_VHS_PAGE_DATA }],
  [IGVM_VHT_PARAMETER_INSERT, {
    name: "IGVM_VHT_PARAMETER_INSERT",
    body: IGVM_VHS_PARAMETER_INSERT,
  }],
  [IGVM_VHT_VP_CONTEXT, { name: "IGVM_VHT_VP_CONTEXT", body: IGVM_VHS_VP_CONTEXT }],
  [IGVM_VHT_REQUIRED_MEMORY, { name: "IGVM_VHT_REQUIRED_MEMORY", body: IGVM_VHS_REQUIRED_MEMORY }],
  [IGVM_VHT_VP_COUNT_PARAMETER, { name: "IGVM_VHT_VP_COUNT_PARAMETER", body: IGVM_VHS_PARAMETER }],
  [IGVM_VHT_SRAT, { name: "IGVM_VHT_SRAT", body: IGVM_VHS_PARAMETER }],
  [IGVM_VHT_MADT, { name: "IGVM_VHT_MADT", body: IGVM_VHS_PARAMETER }],
  [IGVM_VHT_MMIO_RANGES, { name: "IGVM_VHT_MMIO_RANGES", body: IGVM_VHS_MMIO_RANGES }],
  [IGVM_VHT_SNP_ID_BLOCK, { name: "IGVM_VHT_SNP_ID_BLOCK", body: IGVM_VHS_SNP_ID_BLOCK }],
  [IGVM_VHT_MEMORY_MAP, { name: "IGVM_VHT_MEMORY_MAP", body: IGVM_VHS_PARAMETER }],
  [IGVM_VHT_ERROR_RANGE, { name: "IGVM_VHT_ERROR_RANGE", body: IGVM_VHS_ERROR_RANGE }],
  [IGVM_VHT_COMMAND_LINE, { name: "IGVM_VHT_COMMAND_LINE", body: IGVM_VHS_PARAMETER }],
  [IGVM_VHT_ENVIRONMENT_INFO_PARAMETER, {
    name: "IGVM_VHT_ENVIRONMENT_INFO_PARAMETER",
    body: IGVM_VHS_PARAMETER,
  }],
]);

/** Each variable header starts 8-byte aligned; the original fills gaps with ASCII '0'. */
export const IGVM_HEADER_ALIGNMENT = 8;
export const IGVM_HEADER_PAD_BYTE = 0x30;
