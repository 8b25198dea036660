/**
 * What the operations on an existing IGVM file share: the request naming the file (a path or
 * a stream), the loader choice, the check of request fields, and the sound headers every
 * digest starts from. The file is read with igvmgen's own reader (lib/igvm/), never the
 * writer's code.
 */
import { InputError, UsageError } from "../errors.ts";
import type { IgvmFile } from "../igvm/reader.ts";
import { assertStructurallySound, readHeaders } from "../igvm/structure.ts";
import type { FileAccess } from "../io/file_reader.ts";
import type { Input } from "../io/input_source.ts";
import { DEFAULT_LOADER, loaderNames, LOADERS } from "../measure/loaders.ts";
import type { HostConfig } from "../measure/launch_update.ts";

/** A request about one IGVM file. */
export interface IgvmFileRequest {
  /** The IGVM file: a path, or a stream (spooled to a temporary file, then removed). */
  file: Input;
}

/** The names of the loader models, the default (`"hyperv"`) first. */
export const LOADER_NAMES: readonly string[] = loaderNames();

/** Which host loads the file: a loader model and, for the KVM loaders, the host's CPUs. */
export interface LoaderChoice {
  /**
   * The loader model whose launch updates the PSP measures: one of {@link LOADER_NAMES}.
   * Default: the file's layout's, `"hyperv"` (Hyper-V and the original igvmgen: file order)
   * or, for a file laid out for KVM (VP context at 0xFFFFFFFFF000), `"qemu-kvm"`
   * (`measure` and `measureLog`; `sign` and `diff` default to `"hyperv"`).
   */
  loader?: string;
  /**
   * The host configuration the KVM loaders' digest depends on (`qemu-kvm`, `ch-kvm`,
   * `openvmm-kvm`; refused with the others). Default 1 vCPU and EPYC-Milan's signature.
   */
  host?: HostConfig;
}

/** Checks a loader choice; a bad field is a `UsageError` naming it. */
export function resolveLoaderChoice(
  choice: LoaderChoice,
  field = "loader",
): { loader: string; host?: HostConfig } {
  const loader = choice.loader ?? DEFAULT_LOADER;
  const model = LOADERS.find((l) => l.name === loader);
  if (!model) {
    throw new UsageError(
      `${field}: expected one of ${LOADER_NAMES.join(", ")}, got ${JSON.stringify(loader)}`,
    );
  }
  const host = choice.host;
  if (host === undefined) return { loader };
  if (!model.hostDependent) {
    throw new UsageError(
      `host: goes with a KVM loader (${
        LOADERS.filter((l) => l.hostDependent).map((l) => l.name).join(", ")
      }), not ${loader}`,
    );
  }
  if (!Number.isSafeInteger(host.vcpus) || host.vcpus < 1 || host.vcpus > 512) {
    throw new UsageError(`host.vcpus: expected a whole number from 1 to 512, got ${host.vcpus}`);
  }
  if (
    !Number.isSafeInteger(host.cpuSignature) || host.cpuSignature < 0 ||
    host.cpuSignature > 0xffff_ffff
  ) {
    throw new UsageError(
      `host.cpuSignature: expected a CPUID(1).EAX value (a u32), got ${host.cpuSignature}`,
    );
  }
  return { loader, host: { vcpus: host.vcpus, cpuSignature: host.cpuSignature } };
}

/**
 * Refuses a request field the operation does not know: a misspelling (`measurement_file`,
 * `loaderb`) is a `UsageError`, never silently ignored. `fields` lists every field (its type
 * keeps the list complete).
 */
export function checkFields(what: string, request: unknown, fields: Record<string, true>): void {
  if (typeof request !== "object" || request === null) {
    throw new UsageError(`${what}: the request must be an object`);
  }
  const unknown = Object.keys(request).filter((k) => !(k in fields));
  if (unknown.length) {
    throw new UsageError(
      `${what}: unknown request field${unknown.length > 1 ? "s" : ""} ${
        unknown.join(", ")
      } (expected ${Object.keys(fields).join(", ")})`,
    );
  }
}

/** The fields of a request that names only the file. */
export const FILE_FIELDS = { file: true } satisfies Record<keyof IgvmFileRequest, true>;

/** The headers of a file that has no structural problem (else the first one is thrown). */
export async function soundHeaders(file: FileAccess): Promise<IgvmFile> {
  const headers = await readHeaders(file);
  assertStructurallySound(file, headers);
  return headers;
}

/** Rethrows an error of reading `name` as an `InputError` that names it. */
export function naming(name: string): (e: unknown) => never {
  return (e) => {
    throw new InputError(`${name}: ${(e as Error).message}`, { cause: e });
  };
}
