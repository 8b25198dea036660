/**
 * The generation pipeline: inputs -> layout plan -> guest image -> measured, streamed IGVM
 * file -> measurement JSON. No printing here; the CLI reports.
 */
import { type AcpiImage, loadAcpi } from "./acpi/acpi_image.ts";
import { InputError, UsageError } from "./cli/errors.ts";
import type { Options } from "./cli/options.ts";
import { parseSetupHeader, SETUP_HEADER_END } from "./bzimage/setup_header.ts";
import { toHex } from "./bytes/le.ts";
import { buildBzImageGuest } from "./guest/bzimage_guest.ts";
import {
  fileSource,
  type InputSource,
  memorySource,
  readAllStream,
  readInputFile,
  statInputFile,
} from "./inputs.ts";
import { planBzImageLayout } from "./layout/bzimage_layout.ts";
import type { GuestImage } from "./layout/guest_image.ts";
import { encodeIgvmIdBlock } from "./measure/id_block.ts";
import { generateP384Key, type P384Key, parseP384PrivateKeyPem } from "./measure/signing_key.ts";
import { defaultIdBlockConfig, type IdBlockConfig, parseTeiConfig } from "./measure/tei_config.ts";
import { AtomicFile, writeFileAtomic } from "./write/atomic_file.ts";
import { writeIgvm } from "./write/igvm_writer.ts";

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

/** The environment of a run: standard input, and a sink for notices. */
export interface GenerateIo {
  stdin?: ReadableStream<Uint8Array>;
  notice?: (message: string) => void;
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
  if (!o.sign_key) return { key: generateP384Key(), generated: true };
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
  if (!o.acpi_dir) {
    throw new UsageError(
      "no -acpi_dir given: pass an ACPI folder or the original's acpi.zip (built-in tables are not available yet)",
    );
  }
  const dir = o.acpi_dir;
  return await wrapInput("ACPI source", dir, () => loadAcpi(dir));
}

async function openKernel(o: Options, io: GenerateIo): Promise<InputSource> {
  if (!o.kernel) throw new UsageError("no kernel: give -kernel FILE (or - for standard input)");
  if (o.kernel === "-") {
    if (!io.stdin) throw new UsageError("the kernel is - but there is no standard input");
    return memorySource(await readAllStream(io.stdin), "kernel (standard input)");
  }
  return await fileSource(o.kernel, "kernel");
}

async function planBzImage(o: Options, io: GenerateIo): Promise<GuestImage> {
  const kernel = await openKernel(o, io);
  const header = await wrapInput(
    kernel.name,
    "",
    async () => parseSetupHeader(await kernel.head(SETUP_HEADER_END), kernel.size),
  ).catch((e) => {
    throw new InputError(
      `cannot use ${kernel.name}: ${
        (e as Error).cause instanceof Error
          ? ((e as Error).cause as Error).message
          : (e as Error).message
      }`,
    );
  });
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

/** Runs a generation: validates the options, writes `-o` and `-measurement_file`. */
export async function generateIgvm(o: Options, io: GenerateIo = {}): Promise<GenerateResult> {
  if (!o.o) throw new UsageError("no output: give -o FILE");
  if (o.inform === "elf") throw new UsageError("-inform elf is not supported yet");
  for (const [opt, what] of [["measurement_file", "measurement file"]] as const) {
    const path = o[opt];
    if (path) {
      await statInputFile(path, what).then(() => {}, (e) => {
        if (!(e instanceof InputError) || !/does not exist/.test(e.message)) throw e;
      });
    }
  }
  const config = await loadConfig(o);
  const { key, generated } = await loadKey(o);
  if (generated) io.notice?.("no -sign_key: signing the ID block with a fresh random P-384 key");
  const image = await planBzImage(o, io);
  const out = await AtomicFile.create(o.o).catch((e) => {
    throw new InputError((e as Error).message, { cause: e });
  });
  let written;
  try {
    written = await writeIgvm(
      image,
      out,
      (digest) => encodeIgvmIdBlock(digest, config, key, o.sign_deterministic),
      config.policy,
    );
    const launchMeasurement = toHex(written.launchDigest);
    const json = measurementJson(o.svn, launchMeasurement);
    if (o.measurement_file) {
      await writeFileAtomic(o.measurement_file, new TextEncoder().encode(json));
    }
    await out.commit();
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
}
