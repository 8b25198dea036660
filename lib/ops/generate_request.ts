/**
 * The request of a generation: every option of the original igvmgen as a typed camelCase
 * field, with the original's defaults. The CLI builds one from its command line
 * (lib/cli/request.ts); library users write one (mod.ts).
 */
import { MAX_VCPUS, PROFILE_NAMES, type ProfileName } from "../../acpi/profiles.ts";
import { UsageError } from "../errors.ts";
import { checkSvn } from "../measure/measurement_json.ts";
import type { Input } from "../io/input_source.ts";
import { FILE_LOADER_NAMES } from "../measure/loader_names.ts";

/**
 * The host an image is laid out for: `hyperv` (the original's layout), or QEMU / Cloud
 * Hypervisor on Linux KVM (lib/ops/target.ts).
 */
export type Target = "hyperv" | "qemu-kvm" | "ch-kvm";

/** The `-target` values. */
export const TARGETS: readonly Target[] = ["hyperv", "qemu-kvm", "ch-kvm"];

/** The kernel's format: a bzImage, a bzImage with a shared payload, or a monitor ELF. */
export type KernelFormat = "bzImage" | "bzImage2" | "elf";
/** 32-bit protected mode, or 64-bit long mode with page tables. */
export type BootMode = "x86" | "x64";
/** The CPU vendor the initial vCPU state is written for. */
export type CpuVendor = "Intel" | "AMD";
/** The built-in ACPI tables: PC-style (`default`) or Cloud Hypervisor's (`clh`). */
export type AcpiProfileName = ProfileName;

/**
 * What to generate. Only `output` and `kernel` are required; every other field has the
 * original igvmgen's default. Each field names its command-line option.
 */
export interface GenerateRequest {
  /**
   * Where the IGVM file goes (`-o`). A path: written to a temporary file beside it and
   * renamed into place only when everything succeeded. A stream: it receives the whole file
   * only when everything succeeded, and is not closed.
   */
  output: string | WritableStream<Uint8Array>;
  /** The kernel (`-kernel`): a bzImage, or an ELF with `kernelFormat: "elf"`. */
  kernel: Input;
  /** `-inform`: the kernel's format. Default `"bzImage"`. */
  kernelFormat?: KernelFormat;
  /** `-append`: the kernel command line. Default empty. */
  cmdline?: string;
  /** `-rdinit`: the initrd, loaded after the command line. */
  initrd?: Input;
  /** `-boot_mode`: start in 32-bit protected mode or 64-bit long mode. Default `"x86"`. */
  bootMode?: BootMode;
  /** `-vtl`: the highest VTL the image declares, 0 to 2. Default 2. */
  vtl?: number;
  /** `-arch`: `"Intel"` sets RFLAGS to 2 as the original; `"AMD"` leaves it 0. Default `"Intel"`. */
  arch?: CpuVendor;
  /** `-pvalidate_opt`: import only the pages the kernel needs before it can pvalidate. Default true. */
  pvalidateOpt?: boolean;
  /** `-encrypted_page`: set the C-bit (bit 51) in page-table entries and CR3 (x64). Default true. */
  encryptedPage?: boolean;
  /** `-svme`: set EFER.SVME in the initial vCPU state. Default true. */
  svme?: boolean;
  /**
   * `-acpi_dir`: ACPI tables from a folder or zip of `.dsl` (needs iasl) or `.aml` files, or
   * the original's `acpi.zip` snapshot. The built-in tables when absent.
   */
  acpi?: string;
  /** `-acpi_profile`: the built-in ACPI tables, when `acpi` is absent. Default `"default"`. */
  acpiProfile?: AcpiProfileName;
  /**
   * `-vcpus`: vCPUs the built-in ACPI tables describe, 1 to 255. Default 1. With a KVM
   * `target`, also the vCPUs the launch digest is for.
   */
  vcpus?: number;
  /**
   * `-target`: the host the image is for. `hyperv` (default) is the original's layout;
   * `qemu-kvm` and `ch-kvm` lay out an image those loaders accept, signed over their digest.
   */
  target?: Target;
  /**
   * `-native`: with a KVM `target`, the image also carries a NATIVE platform and boots
   * without SEV-SNP under QEMU 10.2 or later; the SEV-SNP side is unchanged. Default false.
   */
  native?: boolean;
  /** `-cpu`: with `target: "qemu-kvm"` and more than one vCPU, the vCPU model or signature. */
  cpu?: string;
  /**
   * `--loader`: the host loader whose launch digest the ID block and the measurement carry:
   * `hyperv` (default), `ch-mshv`, `igvmmeasure`, `igvmmeasure-native-zero`. KVM hosts take
   * `target` instead.
   */
  loader?: string;
  /**
   * `--strict`: warnings are errors (a `cmdline` longer than the kernel's cmdline_size, a
   * kernel shorter than its header announces, a policy the host refuses).
   */
  strict?: boolean;
  /** `-shared_payload`: with `kernelFormat: "bzImage2"`, a payload loaded shared at 256 MiB. */
  sharedPayload?: Input;
  /** `-sign_key`: the P-384 private key (PEM) for the ID block; a fresh key when absent. */
  signKey?: Input;
  /**
   * `-author_key`: the P-384 private key (PEM) of the ID block's author, which signs the ID
   * key; the ID block then carries the author key and that signature (AuthorKeyEnabled).
   */
  authorKey?: Input;
  /** `-sign_deterministic`: RFC 6979 nonces, for reproducible output. Default false. */
  signDeterministic?: boolean;
  /** `-config_file`: the TEI config (JSON) with the ID block's ids, version, SVN and policy. */
  teiConfig?: Input;
  /** `-measurement_file`: also write the measurement JSON to this path. */
  measurementFile?: string;
  /** `-svn`: the guest SVN in the measurement JSON, a whole number. Default `"0"`. */
  svn?: string | number;
  /** `-symbol_elf`: `arch/x86/boot/compressed/vmlinux`, for the early boot areas. */
  symbolElf?: Input;
  /** `-vmpl2_kernel`: with `kernelFormat: "elf"`, a bzImage loaded for VMPL2. */
  vmpl2Kernel?: Input;
  /** `-pgtable_level`: for an ELF in x64 mode, 2- or 4-level page tables. Default 2. */
  pgtableLevel?: 2 | 4;
  /** `--verify`: run the whole `verify` on the written file before committing it. Default false. */
  verify?: boolean;
}

/** A request with every default filled in and every value checked. */
export interface ResolvedRequest {
  output: string | WritableStream<Uint8Array>;
  kernel: Input;
  kernelFormat: KernelFormat;
  cmdline: string;
  initrd?: Input;
  bootMode: BootMode;
  vtl: number;
  arch: CpuVendor;
  pvalidateOpt: boolean;
  encryptedPage: boolean;
  svme: boolean;
  acpi?: string;
  acpiProfile: AcpiProfileName;
  vcpus: number;
  target: Target;
  native: boolean;
  cpu?: string;
  strict: boolean;
  loader: string;
  sharedPayload?: Input;
  signKey?: Input;
  authorKey?: Input;
  signDeterministic: boolean;
  teiConfig?: Input;
  measurementFile?: string;
  svn: string;
  symbolElf?: Input;
  vmpl2Kernel?: Input;
  pgtableLevel: 2 | 4;
  verify: boolean;
}

/** The defaults of a request: the original igvmgen's. */
const GENERATE_DEFAULTS = {
  kernelFormat: "bzImage",
  cmdline: "",
  bootMode: "x86",
  vtl: 2,
  arch: "Intel",
  pvalidateOpt: true,
  encryptedPage: true,
  svme: true,
  acpiProfile: "default",
  vcpus: 1,
  target: "hyperv",
  native: false,
  strict: false,
  loader: "hyperv",
  signDeterministic: false,
  svn: "0",
  pgtableLevel: 2,
  verify: false,
} as const;

/**
 * Every field of a GenerateRequest (the type makes this list complete): a misspelt field is
 * an error, never silently ignored.
 */
const REQUEST_FIELDS: ReadonlySet<string> = new Set(Object.keys(
  {
    output: true,
    kernel: true,
    kernelFormat: true,
    cmdline: true,
    initrd: true,
    bootMode: true,
    vtl: true,
    arch: true,
    pvalidateOpt: true,
    encryptedPage: true,
    svme: true,
    acpi: true,
    acpiProfile: true,
    vcpus: true,
    target: true,
    native: true,
    cpu: true,
    loader: true,
    strict: true,
    sharedPayload: true,
    signKey: true,
    authorKey: true,
    signDeterministic: true,
    teiConfig: true,
    measurementFile: true,
    svn: true,
    symbolElf: true,
    vmpl2Kernel: true,
    pgtableLevel: true,
    verify: true,
  } satisfies Record<keyof GenerateRequest, true>,
));

function oneOf<T extends string>(field: string, value: T, choices: readonly string[]): T {
  if (!choices.includes(value)) {
    throw new UsageError(`${field}: expected one of ${choices.join(", ")}, got "${value}"`);
  }
  return value;
}

function wholeNumber(field: string, value: number, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(`${field}: expected a whole number from ${min} to ${max}, got ${value}`);
  }
  return value;
}

function flag(field: string, value: boolean): boolean {
  if (typeof value !== "boolean") throw new UsageError(`${field}: expected true or false`);
  return value;
}

function checkInput(field: string, input: Input | undefined): void {
  if (input === undefined) return;
  if (typeof input === "string") {
    if (input === "") throw new UsageError(`${field}: expected a file name, got an empty string`);
  } else if (!(input instanceof ReadableStream) && !(input?.stream instanceof ReadableStream)) {
    throw new UsageError(`${field}: expected a path or a ReadableStream<Uint8Array>`);
  }
}

/**
 * Fills in the defaults and checks every value; a bad value is a `UsageError` naming the
 * field. (A missing kernel is reported later, where the CLI has always reported it.)
 */
export function resolveGenerateRequest(request: GenerateRequest): ResolvedRequest {
  if (typeof request !== "object" || request === null) {
    throw new UsageError("the request must be an object");
  }
  const unknown = Object.keys(request).filter((k) => !REQUEST_FIELDS.has(k));
  if (unknown.length) {
    throw new UsageError(
      `unknown request field${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")} (expected ${
        [...REQUEST_FIELDS].join(", ")
      })`,
    );
  }
  const r = { ...GENERATE_DEFAULTS, ...withoutUndefined(request) } as ResolvedRequest;
  if (typeof r.output === "string") {
    if (r.output === "") throw new UsageError("output: expected a path, got an empty string");
  } else if (!(r.output instanceof WritableStream)) {
    throw new UsageError("output: expected a path or a WritableStream<Uint8Array>");
  }
  for (
    const field of [
      "kernel",
      "initrd",
      "sharedPayload",
      "signKey",
      "authorKey",
      "teiConfig",
      "symbolElf",
      "vmpl2Kernel",
    ] as const
  ) {
    checkInput(field, r[field]);
  }
  if (r.acpi !== undefined && (typeof r.acpi !== "string" || r.acpi === "")) {
    throw new UsageError("acpi: expected the path of a folder or a zip file");
  }
  oneOf("kernelFormat", r.kernelFormat, ["bzImage", "bzImage2", "elf"]);
  oneOf("bootMode", r.bootMode, ["x86", "x64"]);
  oneOf("arch", r.arch, ["Intel", "AMD"]);
  oneOf("acpiProfile", r.acpiProfile, PROFILE_NAMES);
  oneOf("target", r.target, TARGETS);
  oneOf("loader", r.loader, FILE_LOADER_NAMES);
  if (r.target !== "hyperv" && request.loader !== undefined) {
    throw new UsageError(
      `--loader ${r.loader} does not go with -target ${r.target} (loader, target): a KVM target signs for its own loader`,
    );
  }
  if (r.cpu !== undefined && typeof r.cpu !== "string") {
    throw new UsageError("cpu: expected a string");
  }
  if (typeof r.cmdline !== "string") throw new UsageError("cmdline: expected a string");
  wholeNumber("vtl", r.vtl, 0, 2);
  wholeNumber("vcpus", r.vcpus, 1, MAX_VCPUS);
  if (r.pgtableLevel !== 2 && r.pgtableLevel !== 4) {
    throw new UsageError(`pgtableLevel: expected 2 or 4, got ${r.pgtableLevel}`);
  }
  flag("pvalidateOpt", r.pvalidateOpt);
  flag("encryptedPage", r.encryptedPage);
  flag("svme", r.svme);
  flag("signDeterministic", r.signDeterministic);
  flag("verify", r.verify);
  flag("strict", r.strict);
  flag("native", r.native);
  r.svn = checkSvn("svn", r.svn);
  const vcpusForTables = request.vcpus !== undefined && r.target === "hyperv";
  if (r.acpi !== undefined && (request.acpiProfile !== undefined || vcpusForTables)) {
    throw new UsageError(
      "acpiProfile and vcpus choose built-in tables; they do not go with acpi",
    );
  }
  return r;
}

/** The fields of `o` that are not undefined (so they do not hide a default). */
function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Fails on the options that only a KVM target takes when the target is `hyperv`; a KVM
 * target's options are checked by kvmTargetOf (lib/ops/target.ts), loaded only for one.
 */
export function checkHypervTarget(o: ResolvedRequest): void {
  if (o.cpu !== undefined) throw new UsageError("-cpu goes with -target qemu-kvm or ch-kvm");
  if (o.native) {
    throw new UsageError(
      "-native goes with -target qemu-kvm or ch-kvm: the NATIVE platform shares their layout",
    );
  }
}
