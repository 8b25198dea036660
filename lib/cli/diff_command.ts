/** `igvmgen diff A B`: why two launch digests differ (lib/measure/launch_diff.ts). */
import { snpPlatformNote } from "../igvm/directives.ts";
import { UsageError } from "../errors.ts";
import { assertStructurallySound, readHeaders } from "../igvm/structure.ts";
import { openFileAccess } from "../io/file_reader.ts";
import { DEFAULT_LOADER, loaderModel, LOADERS } from "../measure/loaders.ts";
import { diffLaunches, formatDiff } from "../measure/launch_diff.ts";
import { parseSubArgs } from "./sub_args.ts";
import { SUB_OPTIONS } from "./sub_options.ts";

/** Help for `igvmgen diff`. */
export function diffHelp(): string {
  return `usage: igvmgen diff A.igvm B.igvm [--loader NAME] [--loader-b NAME] [--json]

Explains two launch digests: the first launch update that differs, and per part of the
guest (kernel, initrd, command line, ACPI tables...) the pages changed, added and removed.
Exit 0 when the digests are equal, 1 otherwise. A file with a structural problem (see
igvmgen verify) is refused with one line and exit 1, as measure refuses it.
  --loader NAME     the loader model for both files: ${LOADERS.map((l) => l.name).join(", ")}
                    (default ${DEFAULT_LOADER})
  --loader-b NAME   another loader model for B (compare loaders: diff F F --loader-b ch-mshv)
  --json            the same as a JSON document (schema igvmgen-diff/1)`;
}

/** Runs `igvmgen diff`; returns the exit code. */
export async function runDiffCommand(
  args: readonly string[],
  print: (line: string) => void,
): Promise<number> {
  const { values, positional } = parseSubArgs("diff", args, SUB_OPTIONS.diff);
  if (positional.length !== 2) throw new UsageError("diff: give two IGVM files, A and B");
  const loaderA = (values.get("loader") as string | undefined) ?? DEFAULT_LOADER;
  const loaderB = (values.get("loader_b") as string | undefined) ?? loaderA;
  loaderModel(loaderA);
  loaderModel(loaderB);
  const opened: { close(): void }[] = [];
  try {
    const sides: Parameters<typeof diffLaunches>[0][] = [];
    for (const [path, loader] of [[positional[0], loaderA], [positional[1], loaderB]]) {
      const file = await openFileAccess(path).catch((e) => {
        throw new Error(`cannot read ${path}: ${(e as Error).message}`, { cause: e });
      });
      opened.push(file);
      const named = (e: unknown) => new Error(`${path}: ${(e as Error).message}`, { cause: e });
      const headers = await readHeaders(file).catch((e) => Promise.reject(named(e)));
      // A structurally broken file has no launch digest to explain (as measure refuses it).
      try {
        assertStructurallySound(file, headers);
      } catch (e) {
        throw named(e);
      }
      sides.push({ file, headers, loader, name: path });
    }
    const d = await diffLaunches(sides[0], sides[1]);
    // A multi-platform file is compared on its SEV-SNP platform; the names say so.
    const label = (i: number, loader: string) =>
      `${positional[i]} (${loader}${
        snpPlatformNote(sides[i].headers) ? ", SEV-SNP platform" : ""
      })`;
    const nameA = label(0, loaderA);
    const nameB = label(1, loaderB);
    if (values.has("json")) {
      print(JSON.stringify({ schema: "igvmgen-diff/1", a: nameA, b: nameB, ...d }, null, 2));
    } else for (const line of formatDiff(d, nameA, nameB)) print(line);
    return d.equal ? 0 : 1;
  } finally {
    for (const f of opened) f.close();
  }
}
