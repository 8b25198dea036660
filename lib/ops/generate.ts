/**
 * The generation pipeline: inputs -> layout plan -> guest image -> measured, streamed IGVM
 * file -> measurement JSON. No printing here; the CLI reports.
 */
import type { AcpiImage } from "../../acpi/acpi_image.ts";
import { builtinAcpi } from "../../acpi/builtin.ts";
import { InputError, UsageError } from "../errors.ts";
import {
  checkHypervTarget,
  type GenerateRequest,
  type ResolvedRequest,
  resolveGenerateRequest,
} from "./generate_request.ts";
import { parseSetupHeader, SETUP_HEADER_END } from "../bzimage/setup_header.ts";
import { hex, toHex } from "../bytes/le.ts";
import { buildBzImageGuest } from "../guest/bzimage_guest.ts";
import {
  checkStdinOnce,
  holdSpools,
  type InputSource,
  isStdinPath,
  removeSpools,
} from "../io/inputs.ts";
import { type Input, inputName, inputSource, readSmallInput } from "../io/input_source.ts";
import {
  type EarlyArea,
  nativeRamEnd,
  planBzImageLayout,
  SHARED_PAYLOAD_ADDR,
} from "../layout/bzimage_layout.ts";
import type { GuestImage } from "../layout/guest_image.ts";
import { encodeIgvmIdBlock } from "../measure/id_block.ts";
import { generateP384Key, type P384Key, parseP384PrivateKeyPem } from "../measure/signing_key.ts";
import { defaultIdBlockConfig, type IdBlockConfig, parseTeiConfig } from "../measure/tei_config.ts";
import {
  commitOutputs,
  flushImageFile,
  type ImageFile,
  type NamedInput,
  openImageOutput,
  planOutputs,
  refuseCopiesOfStdin,
  refuseOutputsOverInputs,
  type StandardStreams,
} from "../io/output_target.ts";
import { checkGuestRamLimit, GUEST_RAM_LIMIT_HEX, roomBelowRamLimit } from "../layout/ram_limit.ts";
import { checkCommandLineLength } from "../bzimage/cmdline_check.ts";
import { writeIgvm, type WrittenImage } from "../write/igvm_writer.ts";
import { checkHeaderSection } from "../igvm/header_check.ts";
import { measurementJson, svnMismatchNote } from "../measure/measurement_json.ts";
import type { KvmTarget } from "./target.ts";
import { DEFAULT_LOADER } from "../measure/loader_names.ts";

/**
 * The parts of generation that only some runs use, each loaded when a run first needs it:
 * a default run (a bzImage for Hyper-V, built-in ACPI tables) compiles and runs none of
 * them, which makes loading generation about a third cheaper. Deno still reads these
 * modules' sources when it loads this one (their specifiers are literal, so that `deno
 * compile` and `deno publish` see them), which costs far less than running them.
 * tests/startup_test.ts checks a default run's modules.
 */
const optional = {
  /** `--verify`: the whole `verify` of the written file. */
  verify: () => import("./verify.ts"),
  /** `-target qemu-kvm|ch-kvm`: the KVM layout, checks and digests. */
  kvmTarget: () => import("./target.ts"),
  /** `-target qemu-kvm`: the launch checks that name QEMU's SEV-SNP object. */
  launchChecks: () => import("../measure/launch_checks.ts"),
  /** `--loader` other than hyperv, or shared pages: the written file measured again. */
  loaderPass: () => import("../measure/generate_loader.ts"),
  /** `-acpi_dir`: tables from a folder or a zip file. */
  acpiFiles: () => import("../../acpi/acpi_image.ts"),
  /** `-inform elf` and `-symbol_elf`: ELF files. */
  elf: () => import("../elf/elf64.ts"),
  /** `-inform elf`: the monitor's layout and guest image. */
  elfLayout: () => import("../layout/elf_layout.ts"),
  elfGuest: () => import("../guest/elf_guest.ts"),
  /** `-symbol_elf`: the early areas named by the kernel's symbols. */
  earlyAreas: () => import("../layout/early_areas.ts"),
};

/** What a generation run produced. */
export interface GenerateResult {
  /** The path written; absent when the output was a stream. */
  output?: string;
  /** The SNP launch digest (SHA-384), 96 hex digits. */
  launchMeasurement: string;
  /** The file's size in bytes. */
  totalSize: number;
  /** Guest pages the file declares, one page header each. */
  pageCount: number;
  /** Pages that carry data in the file. */
  dataPages: number;
  /** True when no signing key was given and the ID block was signed with a fresh key. */
  generatedKey: boolean;
  /** The measurement JSON, as written to `measurementFile`. */
  measurementJson: string;
  /** `native`: the RAM in bytes the NATIVE VM needs (`-m` of QEMU); its e820 lists that much. */
  nativeMemory?: number;
}

/** The environment of a run: standard streams, notices and progress. */
export interface GenerateIo extends StandardStreams {
  /** Standard input, read when an input path names it (`/dev/stdin`). */
  stdin?: ReadableStream<Uint8Array>;
  /** Name options by the request's fields in messages (`output`, not `-o`): the library. */
  fieldNames?: boolean;
  notice?: (message: string) => void;
  /** Called once the image is planned; returns a per-batch progress callback, if wanted. */
  progress?: (image: GuestImage) => ((pagesDone: number, pageCount: number) => void) | undefined;
}

/** A run's environment, told where standard input was spooled. */
type RunIo = GenerateIo & {
  onStdinSpool?: (path: string) => void;
  /** Refuses an output that is one of the files ACPI loading read (before any write). */
  onAcpiSources?: (files: string[]) => Promise<void>;
};

/** The options that let an input read standard input. */
function stdinOf(io: RunIo) {
  return { stdin: io.stdin, onStdinSpool: io.onStdinSpool };
}

async function wrapInput<T>(what: string, path: string, f: () => T | Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof InputError) throw e;
    // Messages that name the input already (the ACPI loader's) are not prefixed again.
    const message = (e as Error).message;
    throw new InputError(message.includes(path) ? message : `${what} ${path}: ${message}`, {
      cause: e,
    });
  }
}

/** Reads and parses a PEM P-384 private key; errors name `what` and the input. */
async function readPemKey(input: Input, what: string): Promise<P384Key> {
  const pem = await readSmallInput(input, what);
  return await wrapInput(
    what,
    inputName(input),
    () => parseP384PrivateKeyPem(new TextDecoder().decode(pem)),
  );
}

async function loadKey(req: ResolvedRequest): Promise<{ key: P384Key; generated: boolean }> {
  if (!req.signKey) return { key: await generateP384Key(), generated: true };
  return { key: await readPemKey(req.signKey, "signing key"), generated: false };
}

/** The author key of `-author_key`, if given. */
async function loadAuthorKey(req: ResolvedRequest): Promise<P384Key | undefined> {
  return req.authorKey ? await readPemKey(req.authorKey, "author key") : undefined;
}

async function loadConfig(req: ResolvedRequest): Promise<IdBlockConfig> {
  if (!req.teiConfig) return defaultIdBlockConfig();
  const text = await readSmallInput(req.teiConfig, "config file");
  return wrapInput(
    "config file",
    inputName(req.teiConfig),
    () => parseTeiConfig(new TextDecoder().decode(text)),
  );
}

async function loadAcpiFor(req: ResolvedRequest, io: RunIo): Promise<AcpiImage> {
  if (!req.acpi) return builtinAcpi(req.acpiProfile, req.vcpus);
  const dir = req.acpi;
  const { loadAcpi } = await optional.acpiFiles();
  const acpi = await wrapInput("ACPI source", dir, () => loadAcpi(dir, { notice: io.notice }));
  await io.onAcpiSources?.(acpi.sources ?? []);
  return acpi;
}

/**
 * The files read for `-acpi_dir` (a folder's tables, the files its `.dsl` tables include)
 * as inputs that no output may be, each named with the option's folder.
 */
function acpiSourceInputs(req: ResolvedRequest, io: GenerateIo, files: string[]): NamedInput[] {
  const option = io.fieldNames ? "acpi" : "-acpi_dir";
  return files.map((path) => ({
    option: "-acpi_dir",
    path,
    describe: `${path}, read for ${option} ${req.acpi}`,
  }));
}

async function openKernel(req: ResolvedRequest, io: RunIo): Promise<InputSource> {
  if (!req.kernel) throw new UsageError("no kernel: give -kernel FILE (or - for standard input)");
  return await inputSource(req.kernel, "kernel", {
    ...stdinOf(io),
    limit: kernelLimit(req),
    option: "-kernel",
  });
}

/** The first bytes of an ELF file. */
const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46];

/**
 * Parses the setup header of a bzImage source, naming it in errors. `elfHint`: what to say
 * when the source is an ELF file instead (the kernel: how to load a monitor ELF).
 */
async function readSetupHeader(source: InputSource, elfHint?: string) {
  const head = await source.head(SETUP_HEADER_END);
  if (elfHint && ELF_MAGIC.every((b, i) => head[i] === b)) {
    throw new InputError(`cannot use ${source.name}: it is an ELF file, not a bzImage; ${elfHint}`);
  }
  try {
    return parseSetupHeader(head, source.size);
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
  const { parseElf64 } = await optional.elf();
  try {
    return parseElf64(await source.head(source.size));
  } catch (e) {
    throw new InputError(`cannot use ${source.name} as an ELF: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

async function earlyAreasFor(
  req: ResolvedRequest,
  initSize: number,
): Promise<EarlyArea[] | undefined> {
  if (!req.symbolElf) return undefined;
  const source = await inputSource(req.symbolElf, "symbol ELF", {
    limit: { maxBytes: MAX_ELF_FILE, why: "too large for an ELF" },
    option: "-symbol_elf",
    regularOnly: true,
  });
  const elf = await readElf(source);
  const { earlyAreasFromSymbols } = await optional.earlyAreas();
  try {
    return earlyAreasFromSymbols(elf, initSize);
  } catch (e) {
    throw new InputError(`cannot use ${source.name}: ${(e as Error).message}`, { cause: e });
  }
}

async function planElf(req: ResolvedRequest, io: RunIo): Promise<GuestImage> {
  if (req.initrd || req.sharedPayload || req.symbolElf) {
    throw new UsageError("-inform elf takes no -rdinit, -shared_payload or -symbol_elf");
  }
  const [{ flatBinary, sectionByName }, { planElfLayout, VMPL2_KERNEL_ADDR }, { buildElfGuest }] =
    await Promise.all([optional.elf(), optional.elfLayout(), optional.elfGuest()]);
  const kernel = await openKernel(req, io);
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
  const vmpl2 = req.vmpl2Kernel
    ? await inputSource(req.vmpl2Kernel, "VMPL2 kernel", {
      ...stdinOf(io),
      limit: ramLimit(VMPL2_KERNEL_ADDR, "the VMPL2 kernel"),
      option: "-vmpl2_kernel",
    })
    : undefined;
  const vmpl2Header = vmpl2 ? await readSetupHeader(vmpl2) : undefined;
  const acpi = await loadAcpiFor(req, io);
  const cmdline = new TextEncoder().encode(req.cmdline + "\0");
  let layout;
  try {
    layout = planElfLayout({
      acpiEnd: acpi.endAddr,
      bootMode: req.bootMode,
      pgtableLevel: req.pgtableLevel,
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
  checkGuestRamLimit(
    layout.top,
    req.vmpl2Kernel ? `-vmpl2_kernel ${inputName(req.vmpl2Kernel)}` : kernel.name,
  );
  return buildElfGuest({
    layout,
    acpi,
    cmdline,
    image,
    vmpl2Kernel: vmpl2 ? { ...vmpl2.region(0), gpa: layout.vmpl2Kernel } : undefined,
    vmpl2Header,
    bootMode: req.bootMode,
    arch: req.arch,
    svme: req.svme,
    encryptedPage: req.encryptedPage,
    highestVtl: req.vtl,
  });
}

async function planBzImage(
  req: ResolvedRequest,
  io: RunIo,
  kvm?: KvmTarget,
): Promise<GuestImage> {
  if (req.vmpl2Kernel) throw new UsageError("-vmpl2_kernel is only used with -inform elf");
  const kernel = await openKernel(req, io);
  const header = await readSetupHeader(
    kernel,
    `give ${
      io.fieldNames ? 'kernelFormat: "elf"' : "-inform elf"
    } if it is a monitor ELF (a Linux kernel is given as its bzImage, arch/x86/boot/bzImage)`,
  );
  const initrd = req.initrd
    ? await inputSource(req.initrd, "initrd", {
      ...stdinOf(io),
      limit: ramLimit(header.prefAddress + header.initSize, "the initrd"),
      option: "-rdinit",
    })
    : undefined;
  let shared: InputSource | undefined;
  if (req.kernelFormat === "bzImage2") {
    if (!req.sharedPayload) throw new UsageError("-inform bzImage2 needs -shared_payload FILE");
    shared = await inputSource(req.sharedPayload, "shared payload", {
      ...stdinOf(io),
      limit: ramLimit(SHARED_PAYLOAD_ADDR, "the shared payload"),
      option: "-shared_payload",
    });
  } else if (req.sharedPayload) {
    throw new UsageError("-shared_payload is only used with -inform bzImage2");
  }
  const target = kvm ? await optional.kvmTarget() : undefined;
  const loaded = await loadAcpiFor(req, io);
  const { acpi, rsdpAddr } = target
    ? target.relocateRsdp(loaded)
    : { acpi: loaded, rsdpAddr: undefined };
  const cmdline = new TextEncoder().encode(req.cmdline);
  checkCommandLineLength(cmdline.length, header.cmdlineSize, req.strict, io.notice);
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
      bootMode: req.bootMode,
      pvalidateOpt: req.pvalidateOpt,
      sharedPayloadLength: shared?.size,
      earlyAreas: await earlyAreasFor(req, header.initSize),
      kvm: target?.KVM_LAYOUT,
    });
  } catch (e) {
    throw new InputError(`cannot lay out ${kernel.name}: ${(e as Error).message}`, { cause: e });
  }
  checkGuestRamLimit(
    layout.top,
    req.sharedPayload
      ? `-shared_payload ${inputName(req.sharedPayload)}`
      : req.initrd
      ? `-rdinit ${inputName(req.initrd)}`
      : kernel.name,
  );
  const image = buildBzImageGuest({
    layout,
    header,
    acpi,
    rsdpAddr,
    cmdline,
    kernelPayload: { ...payload, gpa: layout.kernelBase },
    initrd: initrd ? { ...initrd.region(0), gpa: layout.initrd } : undefined,
    sharedPayload: shared ? { ...shared.region(0), gpa: layout.sharedPayload!.start } : undefined,
    bootMode: req.bootMode,
    arch: req.arch,
    svme: req.svme,
    encryptedPage: req.encryptedPage,
    highestVtl: req.vtl,
    native: kvm?.native ? { ramEnd: nativeRamEnd(layout.top) } : undefined,
  });
  return target ? target.finishKvmImage(image) : image;
}

/**
 * Reads the written file back before it is committed and checks it with the independent
 * reader: the header section's CRC, sizes and header count. With `full` (`--verify`), also
 * the whole `verify`: recomputed launch digest, ID block signature, ACPI walk.
 */
async function selfCheck(out: ImageFile, written: WrittenImage, full: boolean): Promise<void> {
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
    const { verifyIgvm } = await optional.verify();
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

/** The input paths of a run, with their options, for the outputs' identity check. */
function namedInputs(req: ResolvedRequest) {
  const path = (input: Input | undefined) => typeof input === "string" ? input : undefined;
  return [
    { option: "-kernel", path: path(req.kernel) },
    { option: "-rdinit", path: path(req.initrd) },
    { option: "-shared_payload", path: path(req.sharedPayload) },
    { option: "-sign_key", path: path(req.signKey) },
    { option: "-author_key", path: path(req.authorKey) },
    { option: "-config_file", path: path(req.teiConfig) },
    { option: "-acpi_dir", path: req.acpi },
    { option: "-symbol_elf", path: path(req.symbolElf) },
    { option: "-vmpl2_kernel", path: path(req.vmpl2Kernel) },
  ];
}

/**
 * `strict`: every warning (a notice that starts with "warning: ": a truncated kernel, a cut
 * command line, a policy or layout the chosen host refuses) fails the run instead; other
 * notices pass through.
 */
function warningsAsErrors(
  notice: ((message: string) => void) | undefined,
): (message: string) => void {
  return (message) => {
    if (message.startsWith("warning: ")) {
      throw new InputError(`${message.slice("warning: ".length)} (an error under strict)`);
    }
    notice?.(message);
  };
}

/**
 * Runs a generation: checks the request, writes `output` (a file, or a stream) and
 * `measurementFile`. Outputs appear only when everything succeeded.
 */
export async function generateIgvm(
  request: GenerateRequest,
  io: GenerateIo = {},
): Promise<GenerateResult> {
  const req = resolveGenerateRequest(request);
  if (req.strict) io = { ...io, notice: warningsAsErrors(io.notice) };
  const dest = req.output;
  const toStream = typeof dest !== "string";
  const inputs = namedInputs(req);
  const kernelStream = typeof req.kernel === "string" ? undefined : req.kernel;
  const kernelIsStdin = kernelStream !== undefined && io.stdin !== undefined &&
    (kernelStream === io.stdin || (kernelStream as { stream?: unknown }).stream === io.stdin);
  const allInputs = kernelIsStdin ? [{ option: "-kernel", path: "-" }, ...inputs] : inputs;
  checkStdinOnce(allInputs);
  // An -acpi_dir folder's files, links followed, must not be outputs either: found now.
  const acpiDir = req.acpi;
  const acpiFiles = acpiDir === undefined ? [] : await wrapInput(
    "ACPI source",
    acpiDir,
    async () => (await optional.acpiFiles()).acpiInputFiles(acpiDir),
  );
  const outputs = await planOutputs({
    output: toStream ? "-" : dest,
    measurementFile: req.measurementFile,
    inputs: [...allInputs, ...acpiSourceInputs(req, io, acpiFiles)],
    stdout: toStream ? dest : io.stdout,
    stdoutIsTerminal: io.stdoutIsTerminal,
    stdoutClosed: io.stdoutClosed,
    stdoutProbe: io.stdoutProbe,
    force: io.force,
    stdinIdentity: io.stdinIdentity,
    stdoutIdentity: !toStream || dest === io.stdout ? io.stdoutIdentity : undefined,
    stdoutName: toStream && dest !== io.stdout ? "the output stream" : undefined,
    fieldNames: io.fieldNames,
  });
  holdSpools();
  try {
    const target = req.target === "hyperv" ? undefined : await optional.kvmTarget();
    if (!target) checkHypervTarget(req);
    const kvm = target?.kvmTargetOf(request, req);
    const config = await loadConfig(req);
    if (target && kvm) target.checkKvmPolicy(kvm, config.policy);
    const { key, generated } = await loadKey(req);
    const authorKey = await loadAuthorKey(req);
    let stdinSpool: string | undefined;
    const runIo: RunIo = {
      ...io,
      onStdinSpool: (path) => stdinSpool = path,
      onAcpiSources: (files) =>
        refuseOutputsOverInputs(
          [outputs.image, outputs.measurement],
          acpiSourceInputs(req, io, files),
        ),
    };
    const image = req.kernelFormat === "elf"
      ? await planElf(req, runIo)
      : await planBzImage(req, runIo, kvm);
    if (stdinSpool !== undefined && io.stdinIdentity === undefined) {
      // Which file standard input is cannot be told here: an output with its bytes may be it.
      const reader = allInputs.find((i) => i.path === "-" || isStdinPath(i.path ?? ""))!;
      await refuseCopiesOfStdin(outputs, stdinSpool, reader.option);
    }
    // Another loader's digest is computed from the written pages: keep them (/dev/null too).
    const hasGuestInvalid = image.guestInvalid.length > 0;
    const remeasure = kvm !== undefined || req.loader !== DEFAULT_LOADER || hasGuestInvalid;
    const out = await openImageOutput(outputs.image, req.verify || remeasure);
    try {
      // A fresh key signs once: WebCrypto's RFC 6979 nonce is then as unpredictable as the
      // key itself, so random nonces (and the library drawing them) are not needed.
      const sign = (digest: Uint8Array) =>
        encodeIgvmIdBlock(digest, config, key, req.signDeterministic || generated, authorKey);
      const written = await writeIgvm(image, out, sign, config.policy, io.progress?.(image));
      // The written digest is the default loader's (which forces no ID block policy).
      const targetDigest = target && kvm
        ? await target.retargetWrittenImage(out, kvm, written.launchDigest, sign)
        : remeasure
        ? await (await optional.loaderPass()).signForLoader(
          { size: written.totalSize, readAt: (offset, length) => out.readBack(offset, length) },
          out,
          req.loader,
          written.launchDigest,
          hasGuestInvalid,
          sign,
          config.policy,
          io.notice,
        )
        : written.launchDigest;
      if (kvm) io.notice?.(`the ID block and launch measurement are for ${kvm.description}`);
      if (kvm?.loader === "qemu-kvm") {
        const { qemuSnpGuestObject } = await optional.launchChecks();
        io.notice?.(
          `on SEV-SNP, QEMU needs ${qemuSnpGuestObject(config.policy)}: it starts the launch ` +
            `with that policy (0x30000 when absent), and the ID block carries ${
              hex(config.policy)
            }`,
        );
      }
      const nativeMemory = image.native?.memoryBytes;
      if (target && kvm && nativeMemory) {
        const file = toStream ? "IMAGE" : dest;
        io.notice?.(
          `without SEV-SNP (QEMU 10.2 or later): ${
            target.nativeQemuCommand(file, nativeMemory, kvm.host.vcpus)
          }`,
        );
      }
      // The bytes are final: they go to disk while the self-check reads them back, and a
      // failed check still wins over a failed flush.
      const [check, flush] = await Promise.allSettled([
        selfCheck(out, written, req.verify),
        flushImageFile(outputs.image, out),
      ]);
      if (check.status === "rejected") throw check.reason;
      if (flush.status === "rejected") throw flush.reason;
      const launchMeasurement = toHex(targetDigest);
      const json = measurementJson(req.svn, launchMeasurement);
      await commitOutputs(
        outputs,
        out,
        req.measurementFile ? json : undefined,
        toStream ? dest : io.stdout,
      );
      const svnNote = req.measurementFile && svnMismatchNote(req.svn, config.guestSvn);
      if (svnNote) io.notice?.(svnNote);
      return {
        output: toStream ? undefined : dest,
        launchMeasurement,
        totalSize: written.totalSize,
        pageCount: written.pageCount,
        dataPages: written.dataPages,
        generatedKey: generated,
        measurementJson: json,
        nativeMemory,
      };
    } catch (e) {
      await out.abort();
      throw e;
    }
  } finally {
    await removeSpools();
  }
}

/** The limit of an input loaded at `start`: it must end below the MMIO hole. */
function ramLimit(start: number, what: string) {
  return {
    maxBytes: roomBelowRamLimit(start),
    why: `${what} is loaded at 0x${
      start.toString(16)
    } and guest RAM must end by ${GUEST_RAM_LIMIT_HEX}, where the MMIO hole starts`,
  };
}

/** The kernel's limit: an ELF is read whole (256 MiB at most); a bzImage must fit in RAM. */
function kernelLimit(req: ResolvedRequest) {
  return req.kernelFormat === "elf"
    ? { maxBytes: MAX_ELF_FILE, why: "too large for an ELF" }
    : ramLimit(0x10_0000, "the kernel");
}
