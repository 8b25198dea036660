/**
 * The ID block's identity and policy: the original's defaults, or a TEI config JSON
 * (`-config_file`) validated field by field.
 */

/** The fields of the SNP ID block besides the launch digest. */
export interface IdBlockConfig {
  familyId: Uint8Array; // 16 bytes
  imageId: Uint8Array; // 16 bytes
  version: number;
  guestSvn: number;
  policy: bigint;
}

/** A config file that cannot be used. */
export class ConfigError extends Error {
  /** The class name, for messages and logs. */
  override name = "ConfigError";
}

// SNP guest policy (SEV-SNP firmware ABI, table 9).
export const POLICY_RESERVED_ONE = 0x20000n; // bit 17, must be one
export const POLICY_DEBUG_BIT = 19n;
export const POLICY_MIGRATE_MA_BIT = 18n;
export const POLICY_SMT_BIT = 16n;
const POLICY_ABI_MAJOR_SHIFT = 8n;
/** 0x3001f: reserved-one, SMT allowed, ABI 0.31. */
export const DEFAULT_SNP_POLICY = POLICY_RESERVED_ONE | (1n << POLICY_SMT_BIT) | 0x1fn;

/** The original's defaults: family id 01 00.., image id 02 00.., version 1, SVN 2. */
export function defaultIdBlockConfig(): IdBlockConfig {
  const familyId = new Uint8Array(16);
  familyId[0] = 1;
  const imageId = new Uint8Array(16);
  imageId[0] = 2;
  return { familyId, imageId, version: 1, guestSvn: 2, policy: DEFAULT_SNP_POLICY };
}

function parseId(value: unknown, field: string): Uint8Array {
  if (typeof value !== "string" || !/^[0-9a-fA-F]{32}$/.test(value)) {
    throw new ConfigError(`tei_config_data.${field} must be 32 hex digits`);
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = parseInt(value.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function parseUint(value: unknown, field: string, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > max) {
    throw new ConfigError(`${field} must be an integer from 0 to ${max}`);
  }
  return value;
}

function parseBool(value: unknown, field: string): boolean {
  if (typeof value !== "boolean") throw new ConfigError(`${field} must be true or false`);
  return value;
}

/** The keys a config may hold, per object; any other key is an error that names it. */
const TOP_KEYS = ["tei_config_name", "tei_config_version", "tei_config_data"];
const DATA_KEYS = ["version", "guest_svn", "family_id", "image_id", "policy"];
const POLICY_KEYS = ["debug_allowed", "migrate_ma", "smt_allowed", "abi_major", "abi_minor"];

function checkKeys(object: Record<string, unknown>, allowed: readonly string[], where: string) {
  for (const key of Object.keys(object)) {
    if (!allowed.includes(key)) {
      throw new ConfigError(
        `unknown key "${key}" in ${where} (expected ${allowed.join(", ")})`,
      );
    }
  }
}

/** The policy fields' defaults: those of DEFAULT_SNP_POLICY (SMT allowed, ABI 0.31). */
const POLICY_DEFAULTS = {
  debug_allowed: false,
  migrate_ma: false,
  smt_allowed: true,
  abi_major: 0,
  abi_minor: 0x1f,
};

/**
 * Parses a TEI config (see docs/generating.md): `tei_config_data` with optional `version`
 * (must be 1), `guest_svn`, `family_id`, `image_id` (32 hex digits, big-endian) and `policy`
 * (`debug_allowed`, `migrate_ma`, `smt_allowed`, `abi_major`, `abi_minor`), ORed onto the
 * reserved-one bit 17. Missing fields keep the defaults, policy fields included, so a partial
 * policy changes only what it names. Unknown keys are errors: a misspelt field must not
 * silently leave a default in the ID block.
 */
export function parseTeiConfig(text: string): IdBlockConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`not JSON: ${(e as Error).message}`, { cause: e });
  }
  const data = (json as { tei_config_data?: unknown } | null)?.tei_config_data;
  if (
    typeof json !== "object" || json === null || Array.isArray(json) ||
    typeof data !== "object" || data === null || Array.isArray(data)
  ) {
    throw new ConfigError(`no "tei_config_data" object`);
  }
  const top = json as Record<string, unknown>;
  checkKeys(top, TOP_KEYS, "the config");
  if ("tei_config_name" in top && typeof top.tei_config_name !== "string") {
    throw new ConfigError("tei_config_name must be a string");
  }
  if ("tei_config_version" in top) {
    parseUint(top.tei_config_version, "tei_config_version", 0xffff_ffff);
  }
  const d = data as Record<string, unknown>;
  checkKeys(d, DATA_KEYS, "tei_config_data");
  const config = defaultIdBlockConfig();
  if ("version" in d) {
    config.version = parseUint(d.version, "tei_config_data.version", 0xffff_ffff);
    if (config.version !== 1) {
      throw new ConfigError("tei_config_data.version must be 1 (ID block version 1)");
    }
  }
  if ("guest_svn" in d) {
    config.guestSvn = parseUint(d.guest_svn, "tei_config_data.guest_svn", 0xffff_ffff);
  }
  if ("family_id" in d) config.familyId = parseId(d.family_id, "family_id");
  if ("image_id" in d) config.imageId = parseId(d.image_id, "image_id");
  if ("policy" in d) {
    const p = d.policy as Record<string, unknown>;
    if (typeof p !== "object" || p === null || Array.isArray(p)) {
      throw new ConfigError("tei_config_data.policy must be an object");
    }
    checkKeys(p, POLICY_KEYS, "tei_config_data.policy");
    const given = { ...POLICY_DEFAULTS };
    for (const name of ["debug_allowed", "migrate_ma", "smt_allowed"] as const) {
      if (name in p) given[name] = parseBool(p[name], `policy.${name}`);
    }
    for (const name of ["abi_major", "abi_minor"] as const) {
      if (name in p) given[name] = parseUint(p[name], `policy.${name}`, 255);
    }
    config.policy = POLICY_RESERVED_ONE |
      (given.debug_allowed ? 1n << POLICY_DEBUG_BIT : 0n) |
      (given.migrate_ma ? 1n << POLICY_MIGRATE_MA_BIT : 0n) |
      (given.smt_allowed ? 1n << POLICY_SMT_BIT : 0n) |
      (BigInt(given.abi_major) << POLICY_ABI_MAJOR_SHIFT) |
      BigInt(given.abi_minor);
  }
  return config;
}
