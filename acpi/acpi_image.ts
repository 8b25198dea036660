/**
 * ACPI sources for `-acpi_dir`: a folder of `.dsl` (compiled by iasl into a temporary
 * folder, never into the input folder) or `.aml` tables, or the original's legacy snapshot
 * file. The result is the bytes to place in guest memory and the end of the ACPI area.
 */
import { readInputFile } from "../lib/io/inputs.ts";
import { makeRegisteredTempDir, removeTemp } from "../lib/io/temp_files.ts";
import { readZipEntries } from "./zip_reader.ts";
import { alignDown, PAGE_SIZE } from "../lib/bytes/le.ts";
import { join } from "../lib/io/path.ts";
import { walkAcpiTables } from "./walk.ts";
import {
  ACPI_DEFAULT_END_ADDR,
  ACPI_DEFAULT_XSDT_ADDR,
  ACPI_RSDP_ADDR,
  ACPI_TABLE_HEADER,
  ACPI_TABLE_RSDP,
  acpiChecksum,
  FADT,
  fixTableChecksum,
  tableSignature,
} from "./tables.ts";

/**
 * The most bytes of one ACPI file (a table, a .dsl source, a zip or a snapshot): every
 * table must fit in the ACPI area, which ends below the SNP pages at 8 MiB.
 */
const ACPI_FILE_MAX = 8 << 20;

/** ACPI bytes for guest memory. */
export interface AcpiImage {
  /** Byte strings and their GPAs, all in [0xe0000, endAddr). */
  writes: { gpa: number; bytes: Uint8Array }[];
  /** First page after the ACPI area (the original's `end_addr`). */
  endAddr: number;
  /**
   * The files read to make it besides the `-acpi_dir` path itself: a folder's tables and the
   * files `.dsl` tables include (an output must not be any of them).
   */
  sources?: string[];
}

/** An ACPI source that cannot be used. */
export class AcpiError extends Error {
  /** The class name, for messages and logs. */
  override name = "AcpiError";
}

const TOP_TABLES = ["XSDT", "RSD_"];
const FADT_SUB_TABLES = ["DSDT", "FACS"];
const XSDT_SUB_TABLES = ["FACP", "OEM0", "APIC", "TPM2", "TCPA", "MCFG"];
const SUB_TABLES = [...FADT_SUB_TABLES, ...XSDT_SUB_TABLES];
const VALID_TABLES = [...TOP_TABLES, ...SUB_TABLES];

/**
 * Loads the original's legacy snapshot (`acpi.zip`). Its decoder loads on first use, off the
 * start-up path of every other run.
 */
export async function acpiFromLegacySnapshot(fileBytes: Uint8Array): Promise<AcpiImage> {
  const { decodeLegacySnapshot } = await import("./legacy_snapshot.ts");
  const pages = await decodeLegacySnapshot(fileBytes);
  if (!pages.has(ACPI_RSDP_ADDR)) throw new AcpiError("the snapshot has no RSDP page at 0xe0000");
  for (const gpa of pages.keys()) {
    if (gpa < ACPI_RSDP_ADDR || gpa >= ACPI_DEFAULT_END_ADDR) {
      throw new AcpiError(`snapshot page 0x${gpa.toString(16)} is outside [0xe0000, 0x200000)`);
    }
  }
  const writes = [...pages].sort((a, b) => a[0] - b[0]).map(([gpa, bytes]) => ({ gpa, bytes }));
  const image = { writes, endAddr: ACPI_DEFAULT_END_ADDR };
  checkWalk(image, "the snapshot");
  return image;
}

/** A compiled table read from a folder, by its file name. */
export interface NamedTable {
  file: string;
  bytes: Uint8Array;
}

/**
 * Lays out compiled tables as the original does: RSDP at 0xe0000, XSDT at the RSDP's XSDT
 * address (1 MiB when zero, and the RSDP then says so), the other tables packed from XSDT +
 * 0x1000 in sorted signature order; the FADT gets the FACS and DSDT addresses (fields that
 * are zero), the XSDT gets one entry per table it lists. Every checksum is recomputed (a no-op
 * for tables iasl made), and the result is walked as `verify` walks an image: tables that a
 * guest could not follow (an RSDP that is not one, an FADT pointing elsewhere) are refused.
 */
export function layoutAcpiTables(tables: readonly NamedTable[]): AcpiImage {
  const byName = new Map<string, NamedTable>();
  for (const t of tables) {
    if (t.bytes.length < 4) throw new AcpiError(`${t.file}: too short for an ACPI table`);
    const name = tableSignature(t.bytes).replaceAll(" ", "_");
    if (!VALID_TABLES.includes(name)) {
      throw new AcpiError(`${t.file}: unsupported table signature "${tableSignature(t.bytes)}"`);
    }
    const other = byName.get(name);
    if (other) throw new AcpiError(`${t.file} and ${other.file} are both ${name} tables`);
    const minimum = MINIMUM_LENGTH[name] ?? ACPI_TABLE_HEADER.size;
    if (t.bytes.length < minimum) {
      throw new AcpiError(
        `${t.file}: ${
          name.replace("RSD_", "RSDP")
        } table is truncated (${t.bytes.length} bytes, at least ${minimum} needed)`,
      );
    }
    if (name !== "RSD_") {
      const length = new DataView(t.bytes.buffer, t.bytes.byteOffset).getUint32(4, true);
      if (length !== t.bytes.length) {
        throw new AcpiError(
          `${t.file}: header length ${length} but the file has ${t.bytes.length} bytes`,
        );
      }
    }
    byName.set(name, t);
  }
  for (const required of ["RSD_", "XSDT", "FACP", "DSDT", "FACS"]) {
    if (!byName.has(required)) {
      throw new AcpiError(
        `no ${required.replace("RSD_", "RSDP")} table among ${tables.length} file(s)`,
      );
    }
  }
  const rsdpFile = byName.get("RSD_")!.file;
  const rsdp = byName.get("RSD_")!.bytes.slice();
  const rsdpView = new DataView(rsdp.buffer);
  checkRsdp(rsdpFile, rsdp);
  const xsdtFromRsdp = Number(
    rsdpView.getBigUint64(ACPI_TABLE_RSDP.off.xsdt_physical_address, true),
  );
  const xsdtAddr = xsdtFromRsdp || ACPI_DEFAULT_XSDT_ADDR;
  if (xsdtAddr % PAGE_SIZE !== 0 || xsdtAddr < ACPI_RSDP_ADDR + PAGE_SIZE || xsdtAddr >= 0x800000) {
    throw new AcpiError(`the RSDP's XSDT address 0x${xsdtAddr.toString(16)} is not usable`);
  }
  if (!xsdtFromRsdp) {
    rsdpView.setBigUint64(ACPI_TABLE_RSDP.off.xsdt_physical_address, BigInt(xsdtAddr), true);
  }
  fixRsdpChecksums(rsdp);
  const names = [...byName.keys()].sort();
  const addrOf = new Map<string, number>();
  let next = xsdtAddr + PAGE_SIZE;
  for (const name of names) {
    if (!SUB_TABLES.includes(name)) continue;
    addrOf.set(name, next);
    next += byName.get(name)!.bytes.length;
  }

  const fadt = byName.get("FACP")!.bytes.slice();
  const fadtView = new DataView(fadt.buffer);
  const patchIfZero = (offset: number, width: 4 | 8, value: number) => {
    if (offset + width > fadt.length) return;
    if (width === 4 && fadtView.getUint32(offset, true) === 0) {
      fadtView.setUint32(offset, value, true);
    }
    if (width === 8 && fadtView.getBigUint64(offset, true) === 0n) {
      fadtView.setBigUint64(offset, BigInt(value), true);
    }
  };
  patchIfZero(FADT.FIRMWARE_CTRL, 4, addrOf.get("FACS")!);
  patchIfZero(FADT.DSDT, 4, addrOf.get("DSDT")!);
  patchIfZero(FADT.X_FIRMWARE_CTRL, 8, addrOf.get("FACS")!);
  patchIfZero(FADT.X_DSDT, 8, addrOf.get("DSDT")!);
  fixTableChecksum(fadt);

  const listed = names.filter((n) => XSDT_SUB_TABLES.includes(n));
  const oldXsdt = byName.get("XSDT")!.bytes;
  const xsdt = new Uint8Array(oldXsdt.length + 8 * listed.length);
  xsdt.set(oldXsdt);
  const xsdtView = new DataView(xsdt.buffer);
  listed.forEach((n, i) =>
    xsdtView.setBigUint64(oldXsdt.length + 8 * i, BigInt(addrOf.get(n)!), true)
  );
  xsdtView.setUint32(ACPI_TABLE_HEADER.off.length, xsdt.length, true);
  fixTableChecksum(xsdt);

  const writes: AcpiImage["writes"] = [
    { gpa: ACPI_RSDP_ADDR, bytes: rsdp },
    { gpa: xsdtAddr, bytes: xsdt },
  ];
  for (const name of names) {
    const gpa = addrOf.get(name);
    if (gpa === undefined) continue;
    let bytes = name === "FACP" ? fadt : byName.get(name)!.bytes;
    if (name !== "FACS" && name !== "FACP") { // the FACS has no checksum
      bytes = bytes.slice();
      fixTableChecksum(bytes);
    }
    writes.push({ gpa, bytes });
  }
  writes.sort((a, b) => a.gpa - b.gpa);
  const last = writes[writes.length - 1];
  // The original's page packing ends one page past the page holding the last byte's
  // successor: a table ending exactly on a page boundary gets an extra (zero) page.
  const endAddr = alignDown(last.gpa + last.bytes.length, PAGE_SIZE) + PAGE_SIZE;
  if (endAddr > 0x800000) throw new AcpiError("the ACPI tables do not fit below 8 MiB");
  checkWalk({ writes, endAddr }, `the tables from ${tables.map((t) => t.file).join(", ")}`);
  return { writes, endAddr };
}

/** The fewest bytes each table needs (the FADT: an ACPI 1.0 one, with its DSDT field). */
const MINIMUM_LENGTH: Record<string, number> = {
  RSD_: ACPI_TABLE_RSDP.size,
  FACS: 64,
  FACP: 116,
};

/**
 * Refuses an RSDP a guest could not use: a wrong signature, a revision before 2 (no XSDT
 * address; igvmgen lays out an XSDT), or a length other than 36.
 */
function checkRsdp(file: string, rsdp: Uint8Array): void {
  const signature = String.fromCharCode(...rsdp.subarray(0, 8));
  if (signature !== "RSD PTR ") {
    throw new AcpiError(`${file}: the RSDP's signature is "${signature}", not "RSD PTR "`);
  }
  const revision = rsdp[ACPI_TABLE_RSDP.off.revision];
  if (revision < 2) {
    throw new AcpiError(
      `${file}: RSDP revision ${revision} has no XSDT address; igvmgen needs revision 2 or later`,
    );
  }
  const length = new DataView(rsdp.buffer, rsdp.byteOffset).getUint32(
    ACPI_TABLE_RSDP.off.length,
    true,
  );
  if (length !== ACPI_TABLE_RSDP.size) {
    throw new AcpiError(`${file}: the RSDP's length field is ${length}, not 36`);
  }
}

/** Sets an RSDP's checksum (its first 20 bytes) and extended checksum (all 36). */
function fixRsdpChecksums(rsdp: Uint8Array): void {
  rsdp[ACPI_TABLE_RSDP.off.checksum] = acpiChecksum(rsdp, 0, 20, ACPI_TABLE_RSDP.off.checksum);
  rsdp[ACPI_TABLE_RSDP.off.extended_checksum] = acpiChecksum(
    rsdp,
    0,
    ACPI_TABLE_RSDP.size,
    ACPI_TABLE_RSDP.off.extended_checksum,
  );
}

/**
 * Walks the laid-out tables as `verify` walks an image and refuses them on any problem it
 * would report (it warns of the FACS alignment, which the original's packing never gives).
 */
function checkWalk(image: AcpiImage, source: string): void {
  const read = (gpa: number, length: number): Uint8Array => {
    const out = new Uint8Array(length);
    for (const w of image.writes) {
      const from = Math.max(gpa, w.gpa);
      const to = Math.min(gpa + length, w.gpa + w.bytes.length);
      if (from < to) out.set(w.bytes.subarray(from - w.gpa, to - w.gpa), from - gpa);
    }
    return out;
  };
  // As in verify: a FACS off its alignment is a warning, and with no RSDP there is nothing
  // to walk (the layout always writes one; a snapshot may hold other pages only).
  const problems = walkAcpiTables(read).problems.filter((p) =>
    !/not 64-byte aligned|^no RSDP signature/.test(p)
  );
  if (problems.length > 0) {
    throw new AcpiError(
      `${source} would not form valid ACPI in the guest: ${problems.join("; ")}`,
    );
  }
}

/** How `.dsl` files are compiled: the iasl command and its time limit, injectable for tests. */
export interface AcpiLoadOptions {
  iasl?: string;
  /** How long one iasl run may take, in milliseconds (default 30 s). */
  iaslTimeLimitMs?: number;
  /** Told of an `.aml` file that is not read because a `.dsl` of the same name is. */
  notice?: (message: string) => void;
}

/** True when `bytes` start like a zip archive (a local file header, "PK\x03\x04"). */
export function looksLikeZip(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 &&
    bytes[3] === 0x04;
}

/** One table input: compiled bytes, or `.dsl` source text to compile. */
interface TableInput {
  /** What messages call it: its path, or `archive.zip:name`. */
  name: string;
  dsl: boolean;
  bytes: Uint8Array;
  /** For a `.dsl` in a folder: the folder, searched first for the files it includes. */
  dir?: string;
}

/**
 * Picks `.dsl` and `.aml` inputs; a `.dsl` wins over an `.aml` of the same name (the
 * original reads only `.dsl`), and the `.aml` it hides is listed in `dropped`.
 */
function selectTables<T extends { name: string }>(
  entries: T[],
): { dsl: T[]; aml: T[]; dropped: { aml: T; dsl: T }[] } {
  const sorted = [...entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const dsl = sorted.filter((e) => /\.dsl$/i.test(e.name));
  const stems = new Map(dsl.map((e) => [e.name.replace(/\.dsl$/i, ""), e]));
  const aml: T[] = [];
  const dropped: { aml: T; dsl: T }[] = [];
  for (const e of sorted) {
    if (!/\.aml$/i.test(e.name)) continue;
    const source = stems.get(e.name.replace(/\.aml$/i, ""));
    if (source) dropped.push({ aml: e, dsl: source });
    else aml.push(e);
  }
  return { dsl, aml, dropped };
}

/** Tells `notice` of each `.aml` not read because its `.dsl` is compiled instead. */
function noteDropped(
  dropped: { aml: { name: string }; dsl: { name: string } }[],
  where: (name: string) => string,
  notice: ((message: string) => void) | undefined,
): void {
  for (const d of dropped) {
    notice?.(
      `note: ${where(d.aml.name)} is not read: ${
        where(d.dsl.name)
      } has the same name and is compiled instead`,
    );
  }
}

/** True for the names of table files (`.dsl` and `.aml`, in any case). */
function isTableName(name: string): boolean {
  return /\.(dsl|aml)$/i.test(name);
}

/** Compiles the `.dsl` inputs (in a temporary folder) and lays out all tables. */
async function compileAndLayout(
  inputs: TableInput[],
  options: AcpiLoadOptions,
): Promise<AcpiImage> {
  const tables: NamedTable[] = inputs.filter((t) => !t.dsl).map((t) => ({
    file: t.name,
    bytes: t.bytes,
  }));
  const dsl = inputs.filter((t) => t.dsl);
  const sources = inputs.filter((t) => t.dir !== undefined).map((t) => t.name);
  if (dsl.length > 0) {
    const { compileDslTable, IaslError } = await import("./iasl.ts");
    const outDir = await makeRegisteredTempDir("igvmgen-acpi-");
    const cwd = Deno.cwd();
    try {
      for (const [i, t] of dsl.entries()) {
        const bytes = await compileDslTable({
          table: t.name,
          source: t.bytes,
          includeDirs: t.dir === undefined ? [cwd] : includeDirsOf(t.dir, cwd),
          workDir: outDir,
          stem: `table${i}`,
          iasl: options.iasl ?? "iasl",
          timeLimitMs: options.iaslTimeLimitMs,
          onIncludes: (paths) => sources.push(...paths),
        }).catch((e) => {
          throw e instanceof IaslError ? new AcpiError(e.message, { cause: e }) : e;
        });
        tables.push({ file: t.name, bytes });
      }
    } finally {
      await removeTemp(outDir);
    }
  }
  return { ...layoutAcpiTables(tables), sources };
}

/**
 * Reads the tables of a zip archive of `.dsl`/`.aml` files (folders inside are kept in the
 * names). Only those entries are inflated, within the caps of ACPI_ZIP_LIMITS, so an archive
 * that inflates to gigabytes is refused before it costs time or memory. An entry named twice
 * is refused: one of the two would be dropped.
 */
async function tablesFromZip(
  path: string,
  bytes: Uint8Array,
  notice?: (message: string) => void,
): Promise<TableInput[]> {
  const files = new Map<string, Uint8Array>();
  let read: { name: string; bytes: Uint8Array }[];
  try {
    read = await readZipEntries(bytes, isTableName);
  } catch (e) {
    throw new AcpiError(`${path}: not a readable zip archive: ${(e as Error).message}`, {
      cause: e,
    });
  }
  for (const e of read) {
    if (files.has(e.name)) throw new AcpiError(`${path}: the archive has two entries ${e.name}`);
    files.set(e.name, e.bytes);
  }
  const entries = [...files].map(([name, b]) => ({ name, bytes: b }));
  const { dsl, aml, dropped } = selectTables(entries);
  if (dsl.length + aml.length === 0) {
    throw new AcpiError(`${path}: no .dsl or .aml tables in the archive`);
  }
  noteDropped(dropped, (name) => `${path}:${name}`, notice);
  return [
    ...aml.map((e) => ({ name: `${path}:${e.name}`, dsl: false, bytes: e.bytes })),
    ...dsl.map((e) => ({ name: `${path}:${e.name}`, dsl: true, bytes: e.bytes })),
  ];
}

/**
 * The table files of a folder. A symbolic link is followed to what it names; an entry named
 * like a table that is not (or does not lead to) a regular file is refused by name, never
 * skipped, and so is a table under another name (`.asl`, acpidump's `.dat`) and a subfolder
 * that holds table files (only the folder's own tables are read; a subfolder with none, such
 * as one of files that tables include, is left alone).
 */
async function tableFilesIn(path: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(path)) {
      if (/\.(asl|dat)$/i.test(e.name)) {
        // ASL sources and acpidump's binary tables: tables by another name, never skipped.
        throw new AcpiError(
          `${
            join(path, e.name)
          }: igvmgen does not read this file name; give table sources as .dsl and compiled tables as .aml`,
        );
      }
      if (!isTableName(e.name)) {
        if (e.isDirectory || e.isSymlink) await refuseSubfolderOfTables(join(path, e.name), path);
        continue;
      }
      if (e.isFile) {
        names.push(e.name);
        continue;
      }
      const entry = join(path, e.name);
      let info: Deno.FileInfo;
      try {
        info = await Deno.stat(entry);
      } catch (err) {
        throw new AcpiError(
          err instanceof Deno.errors.NotFound
            ? `ACPI table ${entry} is a symbolic link to nothing (${await linkTarget(entry)})`
            : `cannot read ACPI table ${entry}: ${(err as Error).message}`,
          { cause: err },
        );
      }
      if (!info.isFile) {
        throw new AcpiError(
          `ACPI table ${entry} is ${describeKind(info)}${
            e.isSymlink ? ` (through a symbolic link)` : ""
          }, not a regular file`,
        );
      }
      names.push(e.name);
    }
  } catch (e) {
    if (e instanceof AcpiError) throw e;
    throw new AcpiError(`cannot read ACPI folder ${path}: ${(e as Error).message}`, { cause: e });
  }
  return names;
}

/**
 * Refuses `entry` (in the ACPI folder `folder`) when it is a folder, or a link to one, that
 * holds table files: its tables would be left out without a word.
 */
async function refuseSubfolderOfTables(entry: string, folder: string): Promise<void> {
  const info = await Deno.stat(entry).catch(() => undefined);
  if (!info?.isDirectory) return; // a link to a file or to nothing: not a table, not read
  const tables: string[] = [];
  try {
    for await (const e of Deno.readDir(entry)) {
      if (isTableName(e.name) || /\.(asl|dat)$/i.test(e.name)) tables.push(e.name);
    }
  } catch (err) {
    throw new AcpiError(
      `cannot read ${entry}, a subfolder of the ACPI folder ${folder}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  if (tables.length === 0) return;
  tables.sort();
  throw new AcpiError(
    `${entry} is a subfolder holding tables (${tables.slice(0, 3).join(", ")}${
      tables.length > 3 ? ", ..." : ""
    }); igvmgen reads only the tables directly in ${folder}: move them there`,
  );
}

/** Where a symbolic link points, for messages. */
async function linkTarget(path: string): Promise<string> {
  try {
    return `it points to ${await Deno.readLink(path)}`;
  } catch {
    return "its target cannot be read";
  }
}

/** What a file that is not a regular file is, in words; `otherwise` when none of those. */
export function describeKind(info: Deno.FileInfo, otherwise = "a special file"): string {
  if (info.isDirectory) return "a folder";
  if (info.isFifo) return "a FIFO";
  if (info.isCharDevice) return "a character device";
  if (info.isBlockDevice) return "a block device";
  if (info.isSocket) return "a socket";
  return otherwise;
}

/** The tables of a folder, selected; none is an error. */
async function folderTables(path: string) {
  const selected = selectTables((await tableFilesIn(path)).map((name) => ({ name })));
  if (selected.dsl.length + selected.aml.length === 0) {
    throw new AcpiError(`${path}: no .dsl or .aml tables in the folder`);
  }
  return selected;
}

/**
 * The files `-acpi_dir PATH` will read besides PATH itself, found before any work so that
 * no output can be one of them: for a folder, its tables (links followed by the caller's
 * identity check) and the files its `.dsl` tables include, found as iasl finds them. A
 * file (a zip or a snapshot) gives none here: the files a zip's tables include are in
 * `AcpiImage.sources` once it is loaded. Errors are those loadAcpi would raise.
 */
export async function acpiInputFiles(path: string): Promise<string[]> {
  const info = await Deno.stat(path).catch(() => undefined);
  if (!info?.isDirectory) return [];
  const { dsl, aml } = await folderTables(path);
  const files = [...aml, ...dsl].map((e) => join(path, e.name));
  if (dsl.length > 0) {
    const { includedFiles, IaslError } = await import("./iasl.ts");
    const cwd = Deno.cwd();
    for (const e of dsl) {
      const file = join(path, e.name);
      const source = await readInputFile(file, "ACPI table", ACPI_FILE_MAX);
      const includes = await includedFiles({
        table: file,
        source,
        includeDirs: includeDirsOf(path, cwd),
      }).catch((err) => {
        throw err instanceof IaslError ? new AcpiError(err.message, { cause: err }) : err;
      });
      files.push(...includes);
    }
  }
  return files;
}

/** The folders iasl searches for a folder table's includes: the table's folder, then cwd. */
function includeDirsOf(dir: string, cwd: string): string[] {
  return [...new Set([dir.startsWith("/") ? dir : join(cwd, dir), cwd])];
}

/**
 * Loads ACPI from `-acpi_dir PATH`: a folder or a zip archive of `.dsl`/`.aml` tables, or
 * the original's legacy snapshot file (told apart by content). `.dsl` files win over `.aml`
 * files of the same name, as the original reads only `.dsl` (`notice` is told of each). Every table is read whole
 * within ACPI_FILE_MAX; nothing is written into the input folder.
 */
export async function loadAcpi(path: string, options: AcpiLoadOptions = {}): Promise<AcpiImage> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    throw new AcpiError(`cannot read ACPI source ${path}: ${(e as Error).message}`, { cause: e });
  }
  if (info.isFile) {
    const bytes = await readInputFile(path, "ACPI source", ACPI_FILE_MAX);
    if (looksLikeZip(bytes)) {
      return await compileAndLayout(await tablesFromZip(path, bytes, options.notice), options);
    }
    const { looksLikeLegacySnapshot } = await import("./legacy_snapshot.ts");
    if (looksLikeLegacySnapshot(bytes)) return await acpiFromLegacySnapshot(bytes);
    throw new AcpiError(
      `${path}: not an ACPI folder, a zip of tables or a legacy igvmgen ACPI snapshot`,
    );
  }
  if (!info.isDirectory) {
    throw new AcpiError(`ACPI source ${path} is not a folder or a regular file`);
  }
  const { dsl, aml, dropped } = await folderTables(path);
  noteDropped(dropped, (name) => join(path, name), options.notice);
  const inputs: TableInput[] = [];
  for (const e of [...aml, ...dsl]) {
    const file = join(path, e.name);
    inputs.push({
      name: file,
      dsl: dsl.includes(e),
      bytes: await readInputFile(file, "ACPI table", ACPI_FILE_MAX),
      dir: path,
    });
  }
  return await compileAndLayout(inputs, options);
}
