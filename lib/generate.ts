/**
 * The generation pipeline: inputs -> layout plan -> guest image -> measured, streamed IGVM
 * file -> measurement JSON. No printing here; the CLI reports.
 */
import { type AcpiImage, loadAcpi } from "../acpi/acpi_image.ts";
import { builtinAcpi } from "../acpi/builtin.ts";
import { InputError, UsageError } from "./errors.ts";
import type { Options } from "./cli/options.ts";
import { parseSetupHeader, SETUP_HEADER_END } from "./bzimage/setup_header.ts";
import { toHex } from "./bytes/le.ts";
import { buildBzImageGuest } from "./guest/bzimage_guest.ts";
import {
  fileSource,
  type InputSource,
  readInputFile,
  removeSpools,
  spoolToTempFile,
} from "./io/inputs.ts";
import { type EarlyArea, planBzImageLayout } from "./layout/bzimage_layout.ts";
import { planElfLayout } from "./layout/elf_layout.ts";
import { buildElfGuest } from "./guest/elf_guest.ts";
import { flatBinary, parseElf64, sectionByName } from "./elf/elf64.ts";
import { earlyAreasFromSymbols } from "./elf/early_areas.ts";
import type { GuestImage } from "./layout/guest_image.ts";
import { encodeIgvmIdBlock } from "./measure/id_block.ts";
import { generateP384Key, type P384Key, parseP384PrivateKeyPem } from "./measure/signing_key.ts";
import { defaultIdBlockConfig, type IdBlockConfig, parseTeiConfig } from "./measure/tei_config.ts";
import { AtomicFile, writeFileAtomic } from "./io/atomic_file.ts";
import { writeIgvm, type WrittenImage } from "./write/igvm_writer.ts";
import { checkHeaderSection } from "./igvm/reader.ts";
import { verifyIgvm } from "./igvm/verify.ts";

/** What a generation run produced. */
export interface GenerateResult {
  output: string;
  launchMeasurement: string;
  totalSize: number;
  pageCount: number;
  dataPages: number;
  generatedKey: boolean;
  measurementJson: string;
}

/** The environment of a run: standard input and output, notices, progress. */
export interface GenerateIo {
  stdin?: ReadableStream<Uint8Array>;
  stdout?: WritableStream<Uint8Array>;
  notice?: (message: string) => void;
  /** Called once the image is planned; returns a per-batch progress callback, if wanted. */
  progress?: (image: GuestImage) => ((pagesDone: number, pageCount: number) => void) | undefined;
}

/** The measurement JSON as the original writes it (indent 2, no trailing newline). */
export function measurementJson(svn: string, launchMeasurement: string): string {
  return JSON.stringify(
    { "x-ms-sevsnpvm-guestsvn": svn, "x-ms-sevsnpvm-launchmeasurement": launchMeasurement },
    null,
    2,
  );
}

async function wrapInput<T>(what: string, path: string, f: () => T | Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError(`${what} ${path}: ${(e as Error).message}`, { cause: e });
  }
}

async function loadKey(o: Options): Promise<{ key: P384Key; generated: boolean }> {
  if (!o.sign_key) return { key: await generateP384Key(), generated: true };
  const pem = await readInputFile(o.sign_key, "signing key");
  const key = await wrapInput(
    "signing key",
    o.sign_key,
    () => parseP384PrivateKeyPem(new TextDecoder().decode(pem)),
  );
  return { key, generated: false };
}

async function loadConfig(o: Options): Promise<IdBlockConfig> {
  if (!o.config_file) return defaultIdBlockConfig();
  const text = await readInputFile(o.config_file, "config file");
  return wrapInput(
    "config file",
    o.config_file,
    () => parseTeiConfig(new TextDecoder().decode(text)),
  );
}

async function loadAcpiFor(o: Options): Promise<AcpiImage> {
  if (!o.acpi_dir) return builtinAcpi(o.acpi_profile, o.vcpus);
  const dir = o.acpi_dir;
  return await wrapInput("ACPI source", dir, () => loadAcpi(dir));
}

async function openKernel(o: Options, io: GenerateIo): Promise<InputSource> {
  if (!o.kernel) throw new UsageError("no kernel: give -kernel FILE (or - for standard input)");
  if (o.kernel === "-") {
    if (!io.stdin) throw new UsageError("the kernel is - but there is no standard input");
    const spooled = await spoolToTempFile(io.stdin, "the kernel from standard input");
    return await fileSource(spooled, "kernel", "kernel (standard input)");
  }
  return await fileSource(o.kernel, "kernel");
}

/** Parses the setup header of a bzImage source, naming it in errors. */
async function readSetupHeader(source: InputSource) {
  try {
    return parseSetupHeader(await source.head(SETUP_HEADER_END), source.size);
  } catch (e) {
    throw new InputError(`cannot use ${source.name}: ${(e as Error).message}`, { cause: e });
  }
}

/** ELF inputs are read whole; a monitor must fit below 61 MiB, so this is generous. */
const MAX_ELF_FILE = 256 << 20;

/** Reads a whole ELF source and parses it, naming it in errors. */
async function readElf(source: InputSource) {
  if (source.size > MAX_ELF_FILE) {
    throw new InputError(
      `cannot use ${source.name} as an ELF: ${source.size} bytes, more than ${
        MAX_ELF_FILE >> 20
      } MiB`,
    );
  }
  try {
    return parseElf64(await source.head(source.size));
  } catch (e) {
    throw new InputError(`cannot use ${source.name} as an ELF: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

async function earlyAreasFor(o: Options, initSize: number): Promise<EarlyArea[] | undefined> {
  if (!o.symbol_elf) return undefined;
  const source = await fileSource(o.symbol_elf, "symbol ELF");
  const elf = await readElf(source);
  try {
    return earlyAreasFromSymbols(elf, initSize);
  } catch (e) {
    throw new InputError(`cannot use ${source.name}: ${(e as Error).message}`, { cause: e });
  }
}

async function planElf(o: Options, io: GenerateIo): Promise<GuestImage> {
  if (o.rdinit || o.shared_payload || o.symbol_elf) {
    throw new UsageError("-inform elf takes no -rdinit, -shared_payload or -symbol_elf");
  }
  const kernel = await openKernel(o, io);
  const elf = await readElf(kernel);
  let image: Uint8Array;
  let text;
  try {
    image = flatBinary(elf);
    text = sectionByName(elf, ".text");
  } catch (e) {
    throw new InputError(`cannot use ${kernel.name}: ${(e as Error).message}`, { cause: e });
  }
  if (elf.entry < text.addr) {
    throw new InputError(
      `cannot use ${kernel.name}: the entry point 0x${elf.entry.toString(16)} is before .text`,
    );
  }
  const vmpl2 = o.vmpl2_kernel ? await fileSource(o.vmpl2_kernel, "VMPL2 kernel") : undefined;
  const vmpl2Header = vmpl2 ? await readSetupHeader(vmpl2) : undefined;
  const acpi = await loadAcpiFor(o);
  const cmdline = new TextEncoder().encode(o.append + "\0");
  let layout;
  try {
    layout = planElfLayout({
      acpiEnd: acpi.endAddr,
      bootMode: o.boot_mode,
      pgtableLevel: o.pgtable_level as 2 | 4,
      cmdlineLength: cmdline.length,
      imageLength: image.length,
      entryOffset: elf.entry - text.addr,
      textAddr: text.addr,
      maxSectionEnd: Math.max(...elf.sections.map((s) => s.addr + s.size)),
      vmpl2KernelLength: vmpl2?.size ?? 0,
    });
  } catch (e) {
    throw new InputError(`cannot lay out ${kernel.name}: ${(e as Error).message}`, { cause: e });
  }
  return buildElfGuest({
    layout,
    acpi,
    cmdline,
    image,
    vmpl2Kernel: vmpl2 ? { ...vmpl2.region(0), gpa: layout.vmpl2Kernel } : undefined,
    vmpl2Header,
    bootMode: o.boot_mode,
    arch: o.arch,
    svme: o.svme,
    encryptedPage: o.encrypted_page,
    highestVtl: o.vtl,
  });
}

async function planBzImage(o: Options, io: GenerateIo): Promise<GuestImage> {
  if (o.vmpl2_kernel) throw new UsageError("-vmpl2_kernel is only used with -inform elf");
  const kernel = await openKernel(o, io);
  const header = await readSetupHeader(kernel);
  const initrd = o.rdinit ? await fileSource(o.rdinit, "initrd") : undefined;
  let shared: InputSource | undefined;
  if (o.inform === "bzImage2") {
    if (!o.shared_payload) throw new UsageError("-inform bzImage2 needs -shared_payload FILE");
    shared = await fileSource(o.shared_payload, "shared payload");
  } else if (o.shared_payload) {
    throw new UsageError("-shared_payload is only used with -inform bzImage2");
  }
  const acpi = await loadAcpiFor(o);
  const cmdline = new TextEncoder().encode(o.append);
  const payload = kernel.region(header.payloadOffset);
  if (payload.length < header.announcedPayload) {
    io.notice?.(
      `warning: ${kernel.name} has ${payload.length} payload bytes, its header announces ${header.announcedPayload}: the kernel looks truncated`,
    );
  }
  let layout;
  try {
    layout = planBzImageLayout({
      header,
      payloadLength: payload.length,
      cmdlineLength: cmdline.length,
      initrdLength: initrd?.size ?? 0,
      acpiEnd: acpi.endAddr,
      bootMode: o.boot_mode,
      pvalidateOpt: o.pvalidate_opt,
      sharedPayloadLength: shared?.size,
      earlyAreas: await earlyAreasFor(o, header.initSize),
    });
  } catch (e) {
    throw new InputError(`cannot lay out ${kernel.name}: ${(e as Error).message}`, { cause: e });
  }
  return buildBzImageGuest({
    layout,
    header,
    acpi,
    cmdline,
    kernelPayload: { ...payload, gpa: layout.kernelBase },
    initrd: initrd ? { ...initrd.region(0), gpa: layout.initrd } : undefined,
    sharedPayload: shared ? { ...shared.region(0), gpa: layout.sharedPayload!.start } : undefined,
    bootMode: o.boot_mode,
    arch: o.arch,
    svme: o.svme,
    encryptedPage: o.encrypted_page,
    highestVtl: o.vtl,
  });
}

/**
 * Reads the written file back before it is committed and checks it with the independent
 * reader: the header section's CRC, sizes and header count. With `full` (`--verify`), also
 * the whole `verify`: recomputed launch digest, ID block signature, ACPI walk.
 */
async function selfCheck(out: AtomicFile, written: WrittenImage, full: boolean): Promise<void> {
  const size = await out.size();
  const fixed = await out.readBack(0, 24);
  const fv = new DataView(fixed.buffer, fixed.byteOffset, fixed.byteLength);
  const sectionEnd = fv.getUint32(8, true) + fv.getUint32(12, true); // header offset + size
  const check = checkHeaderSection(await out.readBack(0, sectionEnd), size);
  const problems = [...check.problems];
  if (size !== written.totalSize) {
    problems.push(`the file has ${size} bytes, ${written.totalSize} were written`);
  }
  if (check.pageHeaders !== written.pageCount) {
    problems.push(`${check.pageHeaders} page headers for ${written.pageCount} pages`);
  }
  if (full) {
    const report = await verifyIgvm({
      size,
      readAt: (offset, length) => out.readBack(offset, length),
    });
    problems.push(...report.problems);
    if (report.launchDigest !== toHex(written.launchDigest)) {
      problems.push("the recomputed launch digest differs");
    }
  }
  if (problems.length) {
    throw new Error(`the written image failed its self-check: ${problems.join("; ")}`);
  }
}

/** Rejects an output path that is an existing folder, before any work is done. */
async function checkOutputPath(path: string, what: string): Promise<void> {
  try {
    if ((await Deno.stat(path)).isDirectory) {
      throw new InputError(`cannot write ${what} ${path}: it is a folder`);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/**
 * Runs a generation: validates the options, writes `-o` (a file, or standard output for
 * `-`) and `-measurement_file`. Outputs appear only when everything succeeded.
 */
export async function generateIgvm(o: Options, io: GenerateIo = {}): Promise<GenerateResult> {
  if (!o.o) throw new UsageError("no output: give -o FILE");
  const toStdout = o.o === "-";
  if (toStdout && !io.stdout) throw new UsageError("-o - needs a standard output");
  if (!toStdout) await checkOutputPath(o.o, "output");
  if (o.measurement_file) await checkOutputPath(o.measurement_file, "measurement file");
  try {
    const config = await loadConfig(o);
    const { key, generated } = await loadKey(o);
    const image = o.inform === "elf" ? await planElf(o, io) : await planBzImage(o, io);
    const out = await (toStdout ? AtomicFile.createSpool() : AtomicFile.create(o.o)).catch((e) => {
      throw new InputError((e as Error).message, { cause: e });
    });
    try {
      const written = await writeIgvm(
        image,
        out,
        // A fresh key signs once: WebCrypto's RFC 6979 nonce is then as unpredictable as the
        // key itself, so random nonces (and the library drawing them) are not needed.
        (digest) => encodeIgvmIdBlock(digest, config, key, o.sign_deterministic || generated),
        config.policy,
        io.progress?.(image),
      );
      await selfCheck(out, written, o.verify);
      const launchMeasurement = toHex(written.launchDigest);
      const json = measurementJson(o.svn, launchMeasurement);
      if (o.measurement_file) {
        await writeFileAtomic(o.measurement_file, new TextEncoder().encode(json));
      }
      if (toStdout) await out.commitTo(io.stdout!);
      else await out.commit();
      return {
        output: o.o,
        launchMeasurement,
        totalSize: written.totalSize,
        pageCount: written.pageCount,
        dataPages: written.dataPages,
        generatedKey: generated,
        measurementJson: json,
      };
    } catch (e) {
      await out.abort();
      throw e;
    }
  } finally {
    await removeSpools();
  }
}
