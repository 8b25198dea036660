/** `diff`: why the launches of two files differ. */
import { InputError } from "../errors.ts";
import { type Input, inputName, withInputAccess } from "../io/input_source.ts";
import { diffLaunches, type LaunchDiff } from "../measure/launch_diff.ts";
import { checkFields, naming, resolveLoaderChoice, soundHeaders } from "./igvm_file.ts";

/** What `diff` is asked: two files, each under a loader. */
export interface DiffRequest {
  /** The first file (A). */
  a: Input;
  /** The second file (B). */
  b: Input;
  /** The loader model of A, and of B unless `loaderB` is given. Default `"hyperv"`. */
  loader?: string;
  /** The loader model of B. */
  loaderB?: string;
}

/** Why two launch digests differ: the first launch update that differs, pages per part. */
export type DiffResult = LaunchDiff;

/**
 * Compares the launches of two files: their digests, the first update where they differ,
 * and per part of the guest the pages changed, added and removed.
 */
export async function diffIgvmFiles(request: DiffRequest): Promise<DiffResult> {
  checkFields(
    "diff",
    request,
    { a: true, b: true, loader: true, loaderB: true } satisfies Record<keyof DiffRequest, true>,
  );
  const loaderA = resolveLoaderChoice({ loader: request.loader }).loader;
  const loaderB = resolveLoaderChoice({ loader: request.loaderB ?? loaderA }, "loaderB").loader;
  const [nameA, nameB] = [inputName(request.a), inputName(request.b)];
  return await withInputAccess(request.a, "IGVM file", async (fileA) => {
    // A structurally broken file has no launch to explain (as measure refuses it).
    const headersA = await soundHeaders(fileA).catch(naming(nameA));
    return await withInputAccess(request.b, "IGVM file", async (fileB) => {
      const headersB = await soundHeaders(fileB).catch(naming(nameB));
      return await diffLaunches(
        { file: fileA, headers: headersA, loader: loaderA, name: nameA },
        { file: fileB, headers: headersB, loader: loaderB, name: nameB },
      ).catch((e) => {
        const message = (e as Error).message;
        const named = message.includes(nameA) || message.includes(nameB);
        throw new InputError(named ? message : `${nameA} / ${nameB}: ${message}`, { cause: e });
      });
    });
  });
}
