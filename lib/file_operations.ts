/**
 * The operations on an existing IGVM file: measure, verify, inspect and dump. Each takes a
 * request naming the file (a path or a stream) and returns plain data; the file is read
 * with igvmgen's own reader (lib/igvm/), never the writer's code.
 */
import { toHex } from "./bytes/le.ts";
import { InputError } from "./errors.ts";
import { checkSvn } from "./generate_request.ts";
import { dumpIgvm } from "./igvm/dump.ts";
import { inspectIgvm, type InspectReport } from "./igvm/inspect.ts";
import { measureIgvm, verifyIgvm, type VerifyReport } from "./igvm/verify.ts";
import { writeFileAtomic } from "./io/atomic_file.ts";
import { type Input, inputName, withInputAccess } from "./io/input_source.ts";
import { measurementJson } from "./measure/measurement_json.ts";

/** A request about one IGVM file. */
export interface IgvmFileRequest {
  /** The IGVM file: a path, or a stream (spooled to a temporary file, then removed). */
  file: Input;
}

/** What `measure` is asked. */
export interface MeasureRequest extends IgvmFileRequest {
  /** The guest SVN written to the measurement JSON, a whole number. Default `"0"`. */
  svn?: string | number;
  /** Also write the measurement JSON to this path (atomically). */
  measurementFile?: string;
}

/** What `measure` found. */
export interface MeasureResult {
  /** The SNP launch digest recomputed from the file, 96 hex digits. */
  launchDigest: string;
  /** The measurement JSON, as the original igvmgen writes it. */
  measurementJson: string;
}

/** Rethrows an error of reading `name` as an `InputError` that names it. */
function naming(name: string): (e: unknown) => never {
  return (e) => {
    throw new InputError(`${name}: ${(e as Error).message}`, { cause: e });
  };
}

/** Recomputes the SNP launch digest of a file, as the PSP computes it. */
export async function measureIgvmFile(request: MeasureRequest): Promise<MeasureResult> {
  const svn = checkSvn("svn", request.svn ?? "0");
  const name = inputName(request.file);
  const launchDigest = await withInputAccess(request.file, "IGVM file", async (file) => {
    return toHex(await measureIgvm(file).catch(naming(name)));
  });
  const json = measurementJson(svn, launchDigest);
  if (request.measurementFile) {
    await writeFileAtomic(request.measurementFile, new TextEncoder().encode(json));
  }
  return { launchDigest, measurementJson: json };
}

/** Checks a file; its problems are listed in the report, not thrown. */
export async function verifyIgvmFile(request: IgvmFileRequest): Promise<VerifyReport> {
  const name = inputName(request.file);
  return await withInputAccess(
    request.file,
    "IGVM file",
    (file) => verifyIgvm(file).catch(naming(name)),
  );
}

/** What `inspect` is asked. */
export interface InspectRequest extends IgvmFileRequest {
  /** The name the report gives the file. Default: the path, or the stream's name. */
  name?: string;
}

/** Summarises a file: platforms, policy, page ranges, VMSAs, ID block. */
export async function inspectIgvmFile(request: InspectRequest): Promise<InspectReport> {
  const name = inputName(request.file);
  return await withInputAccess(
    request.file,
    "IGVM file",
    (file) => inspectIgvm(file, request.name ?? name).catch(naming(name)),
  );
}

/** The original igvmgen's text dump (`-d`) of a file. */
export async function dumpIgvmFileText(request: IgvmFileRequest): Promise<string> {
  const name = inputName(request.file);
  try {
    return await withInputAccess(
      request.file,
      "IGVM file",
      (file) => dumpIgvm((offset, length) => file.readAt(offset, length), file.size),
      true,
    );
  } catch (e) {
    throw new InputError(`cannot dump ${name}: ${(e as Error).message}`, { cause: e });
  }
}
