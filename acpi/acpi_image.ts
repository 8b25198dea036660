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
import {
  ACPI_DEFAULT_END_ADDR,
  ACPI_DEFAULT_XSDT_ADDR,
  ACPI_RSDP_ADDR,
  ACPI_TABLE_HEADER,
  ACPI_TABLE_RSDP,
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
  return { writes, endAddr: ACPI_DEFAULT_END_ADDR };
}

/** A compiled table read from a folder, by its file name. */
export interface NamedTable {
  file: string;
  bytes: Uint8Array;
}

/**
 * Lays out compiled tables as the original does: RSDP at 0xe0000 as given, XSDT at the
 * RSDP's XSDT address (1 MiB when zero), the other tables packed from XSDT + 0x1000 in
 * sorted signature order; the FADT gets the FACS and DSDT addresses (fields that are zero),
 * the XSDT gets one entry per table it lists; checksums are recomputed.
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
    const minimum = name === "RSD_" ? ACPI_TABLE_RSDP.size : ACPI_TABLE_HEADER.size;
    if (t.bytes.length < minimum) throw new AcpiError(`${t.file}: ${name} table is truncated`);
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
  const rsdp = byName.get("RSD_")!.bytes;
  const xsdtFromRsdp = Number(
    new DataView(rsdp.buffer, rsdp.byteOffset).getBigUint64(
      ACPI_TABLE_RSDP.off.xsdt_physical_address,
      true,
    ),
  );
  const xsdtAddr = xsdtFromRsdp || ACPI_DEFAULT_XSDT_ADDR;
  if (xsdtAddr % PAGE_SIZE !== 0 || xsdtAddr < ACPI_RSDP_ADDR + PAGE_SIZE || xsdtAddr >= 0x800000) {
    throw new AcpiError(`the RSDP's XSDT address 0x${xsdtAddr.toString(16)} is not usable`);
  }
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

  const writes = [{ gpa: ACPI_RSDP_ADDR, bytes: rsdp }, { gpa: xsdtAddr, bytes: xsdt }];
  for (const name of names) {
    const gpa = addrOf.get(name);
    if (gpa !== undefined) {
      writes.push({ gpa, bytes: name === "FACP" ? fadt : byName.get(name)!.bytes });
    }
  }
  writes.sort((a, b) => a.gpa - b.gpa);
  const last = writes[writes.length - 1];
  // The original's page packing ends one page past the page holding the last byte's
  // successor: a table ending exactly on a page boundary gets an extra (zero) page.
  const endAddr = alignDown(last.gpa + last.bytes.length, PAGE_SIZE) + PAGE_SIZE;
  if (endAddr > 0x800000) throw new AcpiError("the ACPI tables do not fit below 8 MiB");
  return { writes, endAddr };
}

/** How `.dsl` files are compiled: the iasl command, injectable for tests. */
export interface AcpiLoadOptions {
  iasl?: string;
}

/** Compiles one `.dsl` with iasl into `outDir` and returns the AML bytes. */
async function compileDsl(file: string, outDir: string, iasl: string): Promise<Uint8Array> {
  const stem = file.replace(/^.*\//, "").replace(/\.dsl$/i, "");
  const prefix = join(outDir, stem);
  let output: Deno.CommandOutput;
  try {
    // -f: produce AML despite errors, as the original does (Hyper-V's DSDT needs it).
    output = await new Deno.Command(iasl, {
      args: ["-f", "-p", prefix, file],
      stdout: "piped",
      stderr: "piped",
    })
      .output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new AcpiError(
        `${file}: compiling .dsl tables needs iasl; install acpica-tools (apt install acpica-tools) or pass compiled .aml tables`,
      );
    }
    throw e;
  }
  try {
    return await Deno.readFile(`${prefix}.aml`);
  } catch {
    throw new AcpiError(`iasl rejected ${file}: ${firstIaslError(output)}`);
  }
}

/** The first error iasl reported, or how it ended when it reported none (it can crash). */
function firstIaslError(output: Deno.CommandOutput): string {
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const error = lines.find((l) => /^Error\s/.test(l) || /\bError\b/.test(l));
  if (error) return error.replace(/\s+/g, " ");
  const ended = output.signal
    ? `iasl was killed by ${output.signal}`
    : `iasl exited with status ${output.code}`;
  return `${ended} and wrote no AML${
    lines.length ? ` (last output: ${lines[lines.length - 1]})` : ""
  }`;
}

/** True when `bytes` start like a zip archive (a local file header, "PK\x03\x04"). */
export function looksLikeZip(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 &&
    bytes[3] === 0x04;
}

/** One table input by name: compiled bytes, or `.dsl` text to compile. */
interface TableInput {
  name: string;
  dsl: boolean;
  /** The file to compile (for .dsl), or the bytes. */
  path?: string;
  bytes?: Uint8Array;
}

/** Picks `.dsl` and `.aml` inputs; a `.dsl` wins over an `.aml` of the same name. */
function selectTables<T extends { name: string }>(entries: T[]): { dsl: T[]; aml: T[] } {
  const sorted = [...entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const dsl = sorted.filter((e) => /\.dsl$/i.test(e.name));
  const stems = new Set(dsl.map((e) => e.name.replace(/\.dsl$/i, "")));
  const aml = sorted.filter((e) =>
    /\.aml$/i.test(e.name) && !stems.has(e.name.replace(/\.aml$/i, ""))
  );
  return { dsl, aml };
}

/** Compiles the `.dsl` inputs (in a temporary folder) and lays out all tables. */
async function compileAndLayout(
  inputs: TableInput[],
  options: AcpiLoadOptions,
): Promise<AcpiImage> {
  const tables: NamedTable[] = inputs.filter((t) => !t.dsl).map((t) => ({
    file: t.name,
    bytes: t.bytes!,
  }));
  const dsl = inputs.filter((t) => t.dsl);
  if (dsl.length > 0) {
    const outDir = await makeRegisteredTempDir("igvmgen-acpi-");
    try {
      for (const t of dsl) {
        let path = t.path;
        if (!path) {
          // A .dsl from an archive: write it into our own temporary folder first.
          path = join(outDir, `src-${t.name.replace(/^.*\//, "")}`);
          await Deno.writeFile(path, t.bytes!);
        }
        tables.push({
          file: t.name,
          bytes: await compileDsl(path, outDir, options.iasl ?? "iasl"),
        });
      }
    } finally {
      await removeTemp(outDir);
    }
  }
  return layoutAcpiTables(tables);
}

/**
 * Reads the tables of a zip archive of `.dsl`/`.aml` files (folders inside are flattened).
 * Only those entries are inflated, within the caps of ACPI_ZIP_LIMITS, so an archive that
 * inflates to gigabytes is refused before it costs time or memory.
 */
async function tablesFromZip(path: string, bytes: Uint8Array): Promise<TableInput[]> {
  const files = new Map<string, Uint8Array>();
  try {
    const read = await readZipEntries(bytes, (name) => /\.(dsl|aml)$/i.test(name));
    for (const e of read) files.set(e.name, e.bytes); // a repeated name: the last one wins
  } catch (e) {
    throw new AcpiError(`${path}: not a readable zip archive: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const entries = [...files].map(([name, b]) => ({ name, bytes: b }));
  const { dsl, aml } = selectTables(entries);
  if (dsl.length + aml.length === 0) {
    throw new AcpiError(`${path}: no .dsl or .aml tables in the archive`);
  }
  return [
    ...aml.map((e) => ({ name: `${path}:${e.name}`, dsl: false, bytes: e.bytes })),
    ...dsl.map((e) => ({ name: `${path}:${e.name}`, dsl: true, bytes: e.bytes })),
  ];
}

/**
 * Loads ACPI from `-acpi_dir PATH`: a folder or a zip archive of `.dsl`/`.aml` tables, or
 * the original's legacy snapshot file (told apart by content). `.dsl` files win over `.aml`
 * files of the same name, as the original reads only `.dsl`. Nothing is written into the
 * input folder.
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
      return await compileAndLayout(await tablesFromZip(path, bytes), options);
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
  const entries: { name: string }[] = [];
  try {
    for await (const e of Deno.readDir(path)) if (e.isFile) entries.push({ name: e.name });
  } catch (e) {
    throw new AcpiError(`cannot read ACPI folder ${path}: ${(e as Error).message}`, { cause: e });
  }
  const { dsl, aml } = selectTables(entries);
  if (dsl.length + aml.length === 0) {
    throw new AcpiError(`${path}: no .dsl or .aml tables in the folder`);
  }
  const inputs: TableInput[] = [];
  for (const e of aml) {
    inputs.push({
      name: join(path, e.name),
      dsl: false,
      bytes: await readInputFile(join(path, e.name), "ACPI table", ACPI_FILE_MAX),
    });
  }
  for (const e of dsl) {
    inputs.push({ name: join(path, e.name), dsl: true, path: join(path, e.name) });
  }
  return await compileAndLayout(inputs, options);
}
