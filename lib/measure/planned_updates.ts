/**
 * Launch updates planned by a loader model before their pages are hashed, and the one
 * hashing stage every model uses: batches of 256 pages, the batch's file data read in one
 * go (straight into the hasher's memory when it lies in one run of the file, else in one
 * span when it lies close together), SHA-384 on the WebAssembly engine (pages in pairs, one
 * call per batch), handed on in order, a batch at a time or one update at a time.
 */
import { PAGE_SIZE } from "../bytes/le.ts";
import { InputError } from "../errors.ts";
import type { FileAccess } from "../io/file_reader.ts";
import { nextTurn } from "../io/event_loop.ts";
import type { LaunchUpdate, UpdateBatch } from "./launch_update.ts";
import { PageHasher } from "../hash/wasm_sha384.ts";
import { SNP_PAGE_TYPE_NORMAL, SNP_PAGE_TYPE_VMSA, ZERO_PAGE_DIGEST } from "./snp_digest.ts";

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

const DIGEST = 48;
const ZERO_CONTENTS = new Uint8Array(DIGEST);

const BATCH = 256;
/** A batch's pages are read in one go when their file data lies within this span. */
const SPAN_BYTES = 4 * BATCH * PAGE_SIZE;

/** Long runs give the event loop a turn this often (ms), so signal handlers run. */
const YIELD_EVERY_MS = 50;

const ALL_MEASURED = new Uint8Array(BATCH).fill(1);

const isContentMeasured = (u: PlannedUpdate) =>
  u.pageType === SNP_PAGE_TYPE_NORMAL || u.pageType === SNP_PAGE_TYPE_VMSA;

/**
 * The hashed launch updates of a plan: iterated, one {@link LaunchUpdate} per page; through
 * {@link batches}, up to 256 at a time with their contents digests in one buffer and no
 * object per page, which is how the digest and the log go through a 1M-page file.
 */
export class HashedUpdates implements AsyncIterable<LaunchUpdate> {
  /**
   * `plan` gives the planned updates (it may first read the file, as a KVM loader reads
   * the VP contexts); it runs when the updates are first read, and its failures reject
   * that read. A page whose file data runs past the end of the file fails with
   * `refuse(message)`.
   */
  constructor(
    private readonly file: FileAccess,
    private readonly plan: () => Iterable<PlannedUpdate> | Promise<Iterable<PlannedUpdate>>,
    private readonly refuse: (message: string) => Error,
  ) {}

  /**
   * The updates in order, in batches of up to 256; a batch and its buffers are valid until
   * the next one is asked for. Zero pages are not hashed again (their digest is
   * {@link ZERO_PAGE_DIGEST}). Every {@link YIELD_EVERY_MS} ms it waits for a turn of the
   * event loop: pages that need no hashing (unmeasured, zero) would otherwise run on
   * microtasks alone, and SIGINT or SIGTERM would wait for the end of the run.
   */
  async *batches(): AsyncGenerator<UpdateBatch> {
    const planned = await this.plan();
    const hasher = new PageHasher(BATCH);
    const batch = new BatchHasher(this.file, hasher, this.refuse);
    let turn = performance.now();
    for (const u of planned) {
      if (batch.add(u) < BATCH) continue;
      yield await batch.hash();
      if (performance.now() - turn > YIELD_EVERY_MS) {
        await nextTurn();
        turn = performance.now();
      }
    }
    if (batch.updates.length) yield await batch.hash();
  }

  /** The updates one at a time, each with its own contents digest. */
  async *[Symbol.asyncIterator](): AsyncGenerator<LaunchUpdate> {
    for await (const b of this.batches()) {
      for (let k = 0; k < b.updates.length; k++) {
        const u = b.updates[k];
        yield {
          pageType: u.pageType,
          gpa: u.gpa,
          directive: u.directive,
          contents: b.contents.slice(k * DIGEST, (k + 1) * DIGEST),
        };
      }
    }
  }
}

/**
 * One batch being gathered and hashed. Pages are gathered in the hasher's own buffer and
 * hashed where they are; when every page with file data in the batch follows the previous
 * one in the file (a kernel's or an initrd's run), they are read there in one read.
 */
class BatchHasher {
  updates: PlannedUpdate[] = [];
  readonly #contents = new Uint8Array(BATCH * DIGEST);
  readonly #zero = new Uint8Array(BATCH);
  readonly #digests = new Uint8Array(BATCH * DIGEST);
  /** Update k's page in the hasher's buffer, or -1 when its contents need no hashing. */
  readonly #slot = new Int32Array(BATCH);
  /** For a span of file data that is not one run; made when first needed. */
  #spanBuffer?: Uint8Array;

  constructor(
    private readonly file: FileAccess,
    private readonly hasher: PageHasher,
    private readonly refuse: (message: string) => Error,
  ) {}

  /** Adds an update; returns how many the batch holds. */
  add(u: PlannedUpdate): number {
    return this.updates.push(u);
  }

  /** Hashes the batch's pages; the batch is emptied when the next update is added. */
  async hash(): Promise<UpdateBatch> {
    const updates = this.updates;
    this.updates = [];
    const slot = this.#slot;
    const hosted = this.hasher.hosted;
    // The pages read from the file, in order: their data's offsets, first and last.
    let fromFile = 0;
    let inOneRun = true;
    let lo = Infinity;
    let hi = -Infinity;
    let count = 0;
    for (let k = 0; k < updates.length; k++) {
      const u = updates[k];
      if (!isContentMeasured(u) || (!u.page && u.dataOffset === undefined)) {
        slot[k] = -1;
        continue;
      }
      slot[k] = count++;
      if (u.page) {
        inOneRun = false;
        continue;
      }
      const offset = u.dataOffset!;
      if (fromFile > 0 && offset !== hi) inOneRun = false;
      lo = Math.min(lo, offset);
      hi = Math.max(hi, offset + PAGE_SIZE);
      fromFile++;
    }
    if (fromFile > 0 && inOneRun) {
      // Every page to hash is file data, one page after another: one read, no copy.
      const read = await this.file.readAt(lo, hi - lo, hosted);
      if (read.length !== hi - lo) this.#pastTheEnd(updates, read.length, lo);
      // A FileAccess may answer from its own bytes rather than fill `into`.
      if (read.buffer !== hosted.buffer || read.byteOffset !== hosted.byteOffset) hosted.set(read);
    } else if (count > 0) {
      await this.#gather(updates, lo, hi, fromFile);
    }
    const zero = this.#zero;
    const digests = this.#digests;
    this.hasher.hashPages(hosted, count, ALL_MEASURED, zero, digests);
    const contents = this.#contents;
    for (let k = 0; k < updates.length; k++) {
      const i = slot[k];
      const at = k * DIGEST;
      if (i >= 0 && !zero[i]) {
        for (let b = 0; b < DIGEST; b++) contents[at + b] = digests[i * DIGEST + b]; // no view per page
      } else {
        contents.set(
          i >= 0 || isContentMeasured(updates[k]) ? ZERO_PAGE_DIGEST : ZERO_CONTENTS,
          at,
        );
      }
    }
    return { updates, contents };
  }

  /** Copies each page to hash into the hasher's buffer: from one span read, or one by one. */
  async #gather(updates: PlannedUpdate[], lo: number, hi: number, fromFile: number) {
    const hosted = this.hasher.hosted;
    let span: Uint8Array | undefined;
    if (fromFile > 1 && hi - lo <= SPAN_BYTES) {
      this.#spanBuffer ??= new Uint8Array(
        Math.min(SPAN_BYTES, Math.max(this.file.size, PAGE_SIZE)),
      );
      if (hi - lo <= this.#spanBuffer.length) {
        span = await this.file.readAt(lo, hi - lo, this.#spanBuffer);
      }
    }
    for (let k = 0; k < updates.length; k++) {
      const i = this.#slot[k];
      if (i < 0) continue;
      const u = updates[k];
      let page = u.page;
      if (!page) {
        const offset = u.dataOffset!;
        const at = offset - lo;
        page = span && at + PAGE_SIZE <= span.length
          ? span.subarray(at, at + PAGE_SIZE)
          : await this.file.readAt(offset, PAGE_SIZE, hosted.subarray(i * PAGE_SIZE));
        if (page.length !== PAGE_SIZE) this.#refusePage(u);
      }
      if (page.buffer !== hosted.buffer || page.byteOffset !== hosted.byteOffset + i * PAGE_SIZE) {
        hosted.set(page.subarray(0, PAGE_SIZE), i * PAGE_SIZE);
      }
    }
  }

  /** A one-run read came back short: the first page it cut is refused. */
  #pastTheEnd(updates: PlannedUpdate[], got: number, lo: number): never {
    for (let k = 0; k < updates.length; k++) {
      const u = updates[k];
      if (this.#slot[k] >= 0 && u.dataOffset! + PAGE_SIZE > lo + got) this.#refusePage(u);
    }
    throw this.refuse("file data runs past the end of the file");
  }

  #refusePage(u: PlannedUpdate): never {
    throw this.refuse(
      `page 0x${u.gpa.toString(16)}: file data at 0x${
        u.dataOffset!.toString(16)
      } runs past the end`,
    );
  }
}

/**
 * Hashes planned updates in batches of 256 and hands them on in order (see
 * {@link HashedUpdates}). A page whose file data runs past the end of the file fails with
 * `refuse(message)` (an InputError by default).
 */
export function hashPlanned(
  file: FileAccess,
  planned:
    | Iterable<PlannedUpdate>
    | (() => Iterable<PlannedUpdate> | Promise<Iterable<PlannedUpdate>>),
  refuse: (message: string) => Error = (message) => new InputError(message),
): HashedUpdates {
  return new HashedUpdates(file, typeof planned === "function" ? planned : () => planned, refuse);
}
