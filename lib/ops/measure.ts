/**
 * `measure`: the SNP launch digest of a file under a loader model, as the PSP computes it,
 * and the launch log behind it.
 */
import { toHex } from "../bytes/le.ts";
import { checkSvn, measurementJson } from "../measure/measurement_json.ts";
import { planOutputTargets, writeSmallOutput } from "../io/output_target.ts";
import { inputName, openInput, withInputAccess } from "../io/input_source.ts";
import { loaderDigest } from "../measure/loaders.ts";
import { layoutLoader } from "../measure/host_search.ts";
import { launchLog, SNP_PAGE_TYPE_NAMES } from "../measure/launch_log.ts";
import {
  checkFields,
  type IgvmFileRequest,
  type LoaderChoice,
  naming,
  resolveLoaderChoice,
  soundHeaders,
} from "./igvm_file.ts";

/** What `measure` is asked. */
export interface MeasureRequest extends IgvmFileRequest, LoaderChoice {
  /** The guest SVN written to the measurement JSON, a whole number. Default `"0"`. */
  svn?: string | number;
  /** Also write the measurement JSON to this path (atomically). */
  measurementFile?: string;
}

/** What `measure` found. */
export interface MeasureResult {
  /** The SNP launch digest recomputed from the file, 96 hex digits. */
  launchDigest: string;
  /**
   * The loader model it was computed for: the request's, else the file's layout's (`hyperv`,
   * or `qemu-kvm` for a file laid out for KVM).
   */
  loader: string;
  /** The measurement JSON, as the original igvmgen writes it. */
  measurementJson: string;
}

const LOG_FIELDS = { file: true, loader: true, host: true } satisfies Record<
  keyof MeasureLogRequest,
  true
>;
const MEASURE_FIELDS = { ...LOG_FIELDS, svn: true, measurementFile: true } satisfies Record<
  keyof MeasureRequest,
  true
>;

/** Recomputes the SNP launch digest of a file, as the PSP computes it. */
export async function measureIgvmFile(request: MeasureRequest): Promise<MeasureResult> {
  checkFields("measure", request, MEASURE_FIELDS);
  const svn = checkSvn("svn", request.svn ?? "0");
  // Without a loader the file's layout chooses it (known once its headers are read).
  if (request.loader !== undefined) resolveLoaderChoice(request);
  const name = inputName(request.file);
  // The measurement file is checked before any work, as every output is.
  const [target] = request.measurementFile === undefined ? [] : await planOutputTargets({
    outputs: [{ option: "measurementFile", given: request.measurementFile, text: true }],
    inputs: [{ option: "file", path: typeof request.file === "string" ? request.file : undefined }],
  });
  const { launchDigest, loader } = await withInputAccess(
    request.file,
    "IGVM file",
    async (file) => {
      const headers = await soundHeaders(file).catch(naming(name));
      const { loader, host } = resolveLoaderChoice({
        loader: request.loader ?? layoutLoader(headers),
        host: request.host,
      });
      const digest = await loaderDigest(loader, file, headers, host).catch(naming(name));
      return { launchDigest: toHex(digest), loader };
    },
  );
  const json = measurementJson(svn, launchDigest);
  if (target) await writeSmallOutput(target, new TextEncoder().encode(json));
  return { launchDigest, loader, measurementJson: json };
}

/** What `measureLog` is asked: the file and its loader. */
export interface MeasureLogRequest extends IgvmFileRequest, LoaderChoice {}

/** One launch update of the log, as the PSP measures it. */
export interface MeasureLogEntry {
  /** Its position in the launch, from 0. */
  index: number;
  /** The guest physical address measured (0xFFFFFFFFF000 for VMSAs under KVM). */
  gpa: number;
  /** The SNP page type: NORMAL, VMSA, ZERO, UNMEASURED, SECRETS or CPUID. */
  pageType: string;
  /** The index of the directive in the file it comes from; -1 for a page the host adds. */
  directive: number;
  /**
   * The part of the guest it belongs to (kernel, initrd, command line, ACPI tables, page
   * tables, VMSA, ...) for images laid out by igvmgen; `"page data"` for other files.
   */
  part: string;
  /** The page's contents digest (SHA-384, 96 hex digits; zeros for unmeasured types). */
  contents: string;
  /** The running launch digest after this update, 96 hex digits. */
  digest: string;
}

/**
 * The launch log of a file, one entry per launch update, streamed: a 1M-page file needs no
 * more memory than its headers. The last entry's digest is the launch digest.
 */
export async function* measureIgvmLog(request: MeasureLogRequest): AsyncGenerator<MeasureLogEntry> {
  checkFields("measureLog", request, LOG_FIELDS);
  if (request.loader !== undefined) resolveLoaderChoice(request);
  const name = inputName(request.file);
  const opened = await openInput(request.file, "IGVM file");
  try {
    const file = opened.file;
    const headers = await soundHeaders(file).catch(naming(name));
    const { loader, host } = resolveLoaderChoice({
      loader: request.loader ?? layoutLoader(headers),
      host: request.host,
    });
    const entries = launchLog(file, headers, loader, host)[Symbol.asyncIterator]();
    while (true) {
      const next = await entries.next().catch(naming(name));
      if (next.done) return;
      const e = next.value;
      yield {
        index: e.index,
        gpa: e.gpa,
        pageType: SNP_PAGE_TYPE_NAMES[e.pageType] ?? String(e.pageType),
        directive: e.directive,
        part: e.part,
        contents: toHex(e.contents),
        digest: toHex(e.digest),
      };
    }
  } finally {
    await opened.release();
  }
}
