/**
 * Launch updates planned by a loader model before their pages are hashed, and the one
 * hashing stage every model uses: batches of 256 pages, the batch's file data read in one
 * span when it lies close together, SHA-384 on the WebAssembly engine (pages in pairs, one
 * call per batch), yielded in order.
 */
import { PAGE_SIZE } from "../bytes/le.ts";
import { InputError } from "../errors.ts";
import type { FileAccess } from "../io/file_reader.ts";
import type { LaunchUpdate } from "./launch_update.ts";
import { PageHasher, sha384 } from "../hash/wasm_sha384.ts";
import { SNP_PAGE_TYPE_NORMAL, SNP_PAGE_TYPE_VMSA } from "./snp_digest.ts";

/** A launch update before its contents are hashed. */
export interface PlannedUpdate {
  pageType: number;
  gpa: number;
  directive: number;
  /** File offset of the page to hash (NORMAL/VMSA with data); undefined: a zero page. */
  dataOffset?: number;
  /** The page itself, for a page the loader builds (KVM's VMSAs); wins over `dataOffset`. */
  page?: Uint8Array;
}

const ZERO_CONTENTS = new Uint8Array(48);
/** SHA-384 of a 4 KiB zero page: the contents of an empty NORMAL page. */
export const ZERO_PAGE_DIGEST = sha384(new Uint8Array(PAGE_SIZE));

const BATCH = 256;
/** A batch's pages are read in one go when their file data lies within this span. */
const SPAN_BYTES = 4 * BATCH * PAGE_SIZE;

/** Long runs give the event loop a turn this often (ms), so signal handlers run. */
const YIELD_EVERY_MS = 50;

const NOTHING = new Uint8Array(0);
const ALL_MEASURED = new Uint8Array(BATCH).fill(1);

/**
 * Resolves after a turn of the event loop, not as a microtask: an asynchronous operation
 * (WebCrypto's, which runs off the main thread) lets pending signal listeners run. A timer
 * would do too, but Deno's timers load its Node layer, which igvmgen keeps out of start-up.
 */
async function nextTurn(): Promise<void> {
  await crypto.subtle.digest("SHA-384", NOTHING);
}

const isContentMeasured = (u: PlannedUpdate) =>
  u.pageType === SNP_PAGE_TYPE_NORMAL || u.pageType === SNP_PAGE_TYPE_VMSA;

/**
 * Hashes planned updates in batches of 256 and yields them in order. Zero pages are not
 * hashed again (their digest is {@link ZERO_PAGE_DIGEST}). A page whose file data runs past
 * the end of the file fails with `refuse(message)` (an InputError by default). Every
 * {@link YIELD_EVERY_MS} ms it waits for a turn of the event loop: pages that need no hashing
 * (unmeasured, zero) would otherwise run on microtasks alone, and SIGINT or SIGTERM would
 * wait for the end of the run.
 */
export async function* hashPlanned(
  file: FileAccess,
  planned: Iterable<PlannedUpdate>,
  refuse: (message: string) => Error = (message) => new InputError(message),
): AsyncGenerator<LaunchUpdate> {
  let batch: PlannedUpdate[] = [];
  const hasher = new PageHasher();
  const pages = new Uint8Array(BATCH * PAGE_SIZE);
  const zero = new Uint8Array(BATCH);
  const digests = new Uint8Array(BATCH * 48);
  const spanBuffer = new Uint8Array(Math.min(SPAN_BYTES, Math.max(file.size, PAGE_SIZE)));
  const flush = async (): Promise<LaunchUpdate[]> => {
    const fromFile = batch.filter((u) =>
      isContentMeasured(u) && !u.page && u.dataOffset !== undefined
    );
    let lo = Infinity;
    let hi = -Infinity;
    for (const u of fromFile) {
      lo = Math.min(lo, u.dataOffset!);
      hi = Math.max(hi, u.dataOffset! + PAGE_SIZE);
    }
    const span = fromFile.length > 1 && hi - lo <= spanBuffer.length
      ? await file.readAt(lo, hi - lo, spanBuffer)
      : undefined;
    // The pages to hash are gathered into one buffer and hashed in one call; `slot[i]` is
    // update i's page in it, or -1 when its contents need no hashing.
    const slot = new Int32Array(batch.length).fill(-1);
    let count = 0;
    for (let i = 0; i < batch.length; i++) {
      const u = batch[i];
      if (!isContentMeasured(u) || (!u.page && u.dataOffset === undefined)) continue;
      let page = u.page;
      if (!page) {
        const offset = u.dataOffset!;
        const at = offset - lo;
        page = span && at + PAGE_SIZE <= span.length
          ? span.subarray(at, at + PAGE_SIZE)
          : await file.readAt(offset, PAGE_SIZE);
        if (page.length !== PAGE_SIZE) {
          throw refuse(
            `page 0x${u.gpa.toString(16)}: file data at 0x${offset.toString(16)} runs past the end`,
          );
        }
      }
      pages.set(page, count * PAGE_SIZE);
      slot[i] = count++;
    }
    hasher.hashPages(pages, count, ALL_MEASURED, zero, digests);
    const contents = batch.map((u, i) => {
      const k = slot[i];
      if (k >= 0) return zero[k] ? ZERO_PAGE_DIGEST : digests.slice(k * 48, (k + 1) * 48);
      return isContentMeasured(u) ? ZERO_PAGE_DIGEST : ZERO_CONTENTS;
    });
    const out = batch.map((u, i) => ({
      pageType: u.pageType,
      gpa: u.gpa,
      directive: u.directive,
      contents: contents[i],
    }));
    batch = [];
    return out;
  };
  let turn = performance.now();
  for (const u of planned) {
    batch.push(u);
    if (batch.length === BATCH) {
      yield* await flush();
      if (performance.now() - turn > YIELD_EVERY_MS) {
        await nextTurn();
        turn = performance.now();
      }
    }
  }
  if (batch.length) yield* await flush();
}
