/** The command line's options as the library's request: the CLI's only translation step. */
import type { GenerateRequest } from "../ops/generate_request.ts";
import type { Input } from "../io/input_source.ts";
import type { Options } from "./options.ts";
import { UsageError } from "../errors.ts";

/** Where `-` leads: the process's standard input and output. */
export interface StandardStreams {
  stdin?: ReadableStream<Uint8Array>;
  stdout?: WritableStream<Uint8Array>;
}

/**
 * Whether a value of `o` could name standard input or output: `-`, or a path under /dev or
 * /proc (the library maps names such as `/dev/stdin` and `/proc/self/fd/1` to the streams).
 * Only then does the CLI make them streams: the first Web Stream of a process costs about
 * 3 ms, a few percent of generating from a small kernel.
 */
export function mayNameStandardStream(o: Options): boolean {
  return Object.values(o).some((v) =>
    typeof v === "string" && (v === "-" || v.startsWith("/dev/") || v.startsWith("/proc/"))
  );
}

/**
 * The generation request of parsed options. `-` as the kernel reads standard input, `-o -`
 * writes standard output. Every option the user could give is passed on, defaults included,
 * except `-acpi_profile` and `-vcpus` with `-acpi_dir` (parseOptions rejects those when
 * given). `-start_addr`, which the original ignores too, has no field.
 */
export function generateRequestFrom(o: Options, std: StandardStreams = {}): GenerateRequest {
  if (!o.o) throw new UsageError("no output: give -o FILE");
  if (o.o === "-" && !std.stdout) throw new UsageError("-o - needs a standard output");
  if (o.kernel === "-" && !std.stdin) {
    throw new UsageError("the kernel is - but there is no standard input");
  }
  const kernel: Input | undefined = o.kernel === "-"
    ? { stream: std.stdin!, name: "standard input" }
    : o.kernel || undefined; // an empty name is "no kernel", reported where it always was
  // A KVM -target sets these itself: only values the user gave are checked against it.
  const fixedByTarget = (name: string) => o.target !== "hyperv" && !o.given.has(name);
  return {
    output: o.o === "-" ? std.stdout! : o.o,
    kernel: kernel!,
    kernelFormat: o.inform,
    cmdline: o.append,
    initrd: o.rdinit,
    bootMode: o.boot_mode,
    vtl: fixedByTarget("vtl") ? undefined : o.vtl,
    arch: fixedByTarget("arch") ? undefined : o.arch,
    pvalidateOpt: o.pvalidate_opt,
    encryptedPage: o.encrypted_page,
    svme: fixedByTarget("svme") ? undefined : o.svme,
    acpi: o.acpi_dir,
    acpiProfile: o.acpi_dir ? undefined : o.acpi_profile,
    // -vcpus also sizes a KVM target's digest, so it goes with -acpi_dir there.
    vcpus: o.acpi_dir && o.target === "hyperv" ? undefined : o.vcpus,
    target: o.target,
    native: o.native,
    cpu: o.cpu,
    sharedPayload: o.shared_payload,
    signKey: o.sign_key,
    authorKey: o.author_key,
    signDeterministic: o.sign_deterministic,
    teiConfig: o.config_file,
    measurementFile: o.measurement_file,
    svn: o.svn,
    symbolElf: o.symbol_elf,
    vmpl2Kernel: o.vmpl2_kernel,
    pgtableLevel: o.pgtable_level as 2 | 4,
    verify: o.verify,
    strict: o.strict,
    // Given or not: a KVM -target refuses any --loader, even the default's name.
    loader: o.given.has("loader") ? o.loader : undefined,
  };
}
