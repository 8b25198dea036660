/**
 * The streaming stage: walks guest pages in GPA order, fills each from the generated
 * memory or an input stream, measures it, encodes its header and writes its data at its
 * final file offset. The headers go in last, at the start of the file.
 */
import { crc32 } from "../bytes/crc32.ts";
import { PAGE_SIZE } from "../bytes/le.ts";
import { emittedRuns, type Range } from "../layout/guest_allocator.ts";
import type { ByteReader, ByteSink, StreamRegion } from "../io/byte_stream.ts";
import type { GuestImage } from "../layout/guest_image.ts";
import {
  HeaderSectionBuilder,
  headerSectionSize,
  NATIVE_MASK,
  originalParameterArea,
  SNP_MASK,
} from "../igvm/headers.ts";
import {
  IGVM_VHF_PAGE_DATA_GUEST_INVALID,
  IGVM_VHS_PAGE_DATA_TYPE_CPUID_DATA,
  IGVM_VHS_PAGE_DATA_TYPE_NORMAL,
  IGVM_VHS_PAGE_DATA_TYPE_SECRETS,
} from "../igvm/defs.ts";
import {
  SNP_PAGE_TYPE_CPUID,
  SNP_PAGE_TYPE_NORMAL,
  SNP_PAGE_TYPE_SECRETS,
  SNP_PAGE_TYPE_UNMEASURED,
  SNP_PAGE_TYPE_VMSA,
  SnpLaunchDigest,
  ZERO_PAGE_DIGEST,
} from "../measure/snp_digest.ts";
import type { PageHashPool } from "../hash/hash_pool.ts";
import { PageHasher } from "../hash/wasm_sha384.ts";
import { nextTurn } from "../io/event_loop.ts";

/** The result of writing an image. */
export interface WrittenImage {
  launchDigest: Uint8Array;
  totalSize: number;
  pageCount: number;
  dataPages: number;
}

/** Signs the ID block for the final digest: returns the IGVM_VHS_SNP_ID_BLOCK body. */
export type IdBlockSigner = (launchDigest: Uint8Array) => Promise<Uint8Array>;

/**
 * Writes the data section sequentially from a start offset, a batch's data pages per write,
 * straight from the batch's buffer: nothing is copied. Writes reach the sink one at a time, in
 * order (a sink may seek, then write). The caller keeps a buffer unchanged until its write
 * has settled.
 */
class DataWriter {
  #offset: number;
  /** The last write queued; it never rejects (a failure is kept in `#failure`). */
  #last: Promise<void> = Promise.resolve();
  #failure: { error: unknown } | undefined;
  constructor(private readonly sink: ByteSink, start: number) {
    this.#offset = start;
  }
  /**
   * Queues a write of `bytes` at the next offset; the promise settles when it is done. After
   * a failed write, later ones fail with the same error. `flush()` reports a failure too.
   */
  write(bytes: Uint8Array): Promise<void> {
    const offset = this.#offset;
    this.#offset += bytes.length;
    const write = this.#last.then(() => {
      if (this.#failure) throw this.#failure.error;
      return this.sink.writeAt(offset, bytes);
    });
    this.#last = write.catch((error) => void (this.#failure ??= { error }));
    return write;
  }
  /** Waits for every write; rejects with the first failure, if a write failed. */
  async flush(): Promise<void> {
    await this.#last;
    if (this.#failure) throw this.#failure.error;
  }
  /** After a failure elsewhere: waits for the writes queued, ignoring their outcome. */
  async settle(): Promise<void> {
    await this.#last;
  }
}

/** Streams the bytes of the regions, in GPA order, into pages. */
class RegionPager {
  #index = 0;
  #reader: ByteReader | undefined;
  constructor(private readonly regions: readonly StreamRegion[]) {}

  /**
   * Copies the region bytes of page `gpa` into `page` (zeroed by the caller). Returns true
   * or false when done without waiting (no region there, or an in-memory region), else a
   * promise: the per-page loop then awaits only for file input.
   */
  fill(gpa: number, page: Uint8Array): boolean | Promise<boolean> {
    const r = this.#advanceTo(gpa);
    if (!r || gpa < r.gpa) return false;
    const n = Math.min(PAGE_SIZE, r.gpa + r.length - gpa);
    if (!this.#reader) {
      if (gpa !== r.gpa) throw new Error(`region ${r.name} starts in a hole`);
      return r.open().then((reader) => {
        this.#reader = reader;
        return this.#read(r, page, n);
      });
    }
    return this.#read(r, page, n);
  }

  /** Moves past (and closes) the regions that end at or before `gpa`; returns the next one. */
  #advanceTo(gpa: number): StreamRegion | undefined {
    while (this.#index < this.regions.length) {
      const r = this.regions[this.#index];
      if (gpa < r.gpa + r.length) return r;
      this.#reader?.close();
      this.#reader = undefined;
      this.#index++;
    }
    return undefined;
  }

  /**
   * Reads up to `maxPages` pages from `gpa` in one read, when they all come from one region
   * and none is generated. Returns how many pages it filled, at once when the reader reads
   * synchronously, else by a promise; 0 means the pages at `gpa` need `fill()` (a hole, a
   * generated page, or no region there).
   */
  fillPages(
    gpa: number,
    dst: Uint8Array,
    maxPages: number,
    isGenerated: (gpa: number) => boolean,
  ): number | Promise<number> {
    const r = this.#advanceTo(gpa);
    if (!r || gpa < r.gpa || (!this.#reader && gpa !== r.gpa)) return 0;
    const end = r.gpa + r.length;
    let pages = 0;
    while (
      pages < maxPages && gpa + pages * PAGE_SIZE < end && !isGenerated(gpa + pages * PAGE_SIZE)
    ) pages++;
    if (pages === 0) return 0;
    const length = Math.min(pages * PAGE_SIZE, end - gpa);
    dst.fill(0, length, pages * PAGE_SIZE);
    const target = dst.subarray(0, length);
    const check = (got: number) => {
      if (got !== length) throw new Error(`${r.name} ended early: expected ${r.length} bytes`);
      return pages;
    };
    if (!this.#reader) {
      return r.open().then((reader) => {
        this.#reader = reader;
        return reader.readSync ? check(reader.readSync(target)) : reader.read(target).then(check);
      });
    }
    const reader = this.#reader;
    return reader.readSync ? check(reader.readSync(target)) : reader.read(target).then(check);
  }

  #read(r: StreamRegion, page: Uint8Array, n: number): boolean | Promise<boolean> {
    const check = (got: number) => {
      if (got !== n) throw new Error(`${r.name} ended early: expected ${r.length} bytes`);
      return true;
    };
    const reader = this.#reader!;
    if (reader.readSync) return check(reader.readSync(page.subarray(0, n)));
    return reader.read(page.subarray(0, n)).then(check);
  }

  close(): void {
    this.#reader?.close();
  }
}

function inRanges(gpa: number, ranges: readonly Range[]): boolean {
  return ranges.some((r) => r.start <= gpa && gpa < r.end);
}

/** A batch of assembled pages, what each one is, and (once hashed) their digests. */
interface Batch {
  bytes: Uint8Array<ArrayBuffer>;
  gpas: Float64Array;
  kinds: Uint8Array;
  /** 1 where the page's contents are measured (normal and VMSA pages). */
  measured: Uint8Array<ArrayBuffer>;
  zero: Uint8Array;
  /** SHA-384 of each measured non-zero page, 48 bytes per page. */
  digests: Uint8Array;
  filled: number;
  /** The write of the batch's data pages, while `bytes` must stay as it is. */
  writing?: Promise<void>;
  /** The hasher whose memory holds `bytes`, if one does. */
  hasher?: PageHasher;
}

/** A batch of `pages` pages; in `hasher`'s memory when given (hashed there without a copy). */
function newBatch(pages: number, hasher?: PageHasher): Batch {
  return {
    hasher,
    bytes: hasher ? hasher.hosted : new Uint8Array(pages * PAGE_SIZE),
    gpas: new Float64Array(pages),
    kinds: new Uint8Array(pages),
    measured: new Uint8Array(pages),
    zero: new Uint8Array(pages),
    digests: new Uint8Array(pages * 48),
    filled: 0,
  };
}

/** How the page contents of batches are hashed. */
interface BatchHasher {
  /** Pages per batch. */
  readonly batchPages: number;
  /** Batches hashing at once, beyond the one being filled. */
  readonly depth: number;
  /** A new batch, laid out for this hasher. */
  newBatch(): Batch;
  /**
   * Sets `zero` and `digests` of the batch: at once (returns undefined) or by the returned
   * promise.
   */
  hash(b: Batch): Promise<void> | undefined;
  close(): void;
}

/**
 * Hashing on this thread, synchronously, with the WebAssembly SHA-384 (PageHasher). Its
 * batches live in WebAssembly memory, each in its own hasher's: pages are read there, hashed
 * and written from there, never copied.
 */
function threadHasher(batchPages: number): BatchHasher {
  let shared: PageHasher | undefined; // for batches in plain memory (workers' batches)
  return {
    batchPages,
    depth: 0,
    newBatch: () => newBatch(batchPages, new PageHasher(batchPages)),
    hash(b) {
      const hasher = b.hasher ?? (shared ??= new PageHasher());
      hasher.hashPages(b.bytes, b.filled, b.measured, b.zero, b.digests);
      return undefined;
    },
    close() {},
  };
}

/**
 * Batches a worker may have queued (hashing or waiting) before this thread hashes the next
 * batch itself: one waiting behind the one it hashes keeps every worker busy.
 */
const QUEUED_PER_WORKER = 2;

/**
 * Hashing in a pool of Workers, 512 pages (2 MiB) at a time: each batch's buffer goes to a
 * worker and comes back by transfer. With `withThisThread`, there is one worker per core but
 * this one (at least 1, at most 4), and this thread hashes a batch itself whenever every
 * worker already has QUEUED_PER_WORKER of them: it reads, emits and writes too, so it takes
 * whatever share of the hashing the workers leave, and no core idles. Without it, one worker
 * per core hashes everything (at most 4). With it, until the workers have started, batches
 * are hashed on this thread, so their start-up costs no waiting.
 */
function workerHasher(Pool: typeof PageHashPool, withThisThread: boolean): BatchHasher {
  const cores = navigator.hardwareConcurrency || 1;
  const pool = new Pool(Math.min(withThisThread ? cores - 1 : cores, 4)); // at least 1
  const meanwhile = threadHasher(512);
  let started = !withThisThread;
  pool.ready.then(() => started = true, () => {});
  // Workers answer by messages, which arrive only when this thread turns its event loop:
  // with a reader and a sink that never wait, nothing else would turn it.
  const dispatch = (b: Batch): Promise<void> | undefined => {
    if (withThisThread && pool.saturated(QUEUED_PER_WORKER)) return meanwhile.hash(b);
    return pool.hash(b.bytes.buffer, b.filled, b.measured).then((reply) => {
      b.bytes = new Uint8Array(reply.buffer);
      b.zero = reply.zero;
      b.digests = reply.digests;
    });
  };
  return {
    batchPages: 512,
    depth: QUEUED_PER_WORKER * pool.size,
    // Workers take a batch's buffer by transfer: a plain ArrayBuffer.
    newBatch: () => newBatch(512),
    hash: (b) =>
      started ? dispatch(b) : nextTurn().then(() => started ? dispatch(b) : meanwhile.hash(b)),
    close() {
      pool.close();
    },
  };
}

/**
 * From this many streamed bytes, page contents are hashed in Workers and on this thread
 * (below it, on this thread alone). Starting a Worker blocks this thread for 15-25 ms and each
 * batch is copied once more in the worker, so Workers pay off only for large inputs.
 */
const WORKER_MIN_BYTES = 48 << 20;

/** Where page contents are hashed. */
export type HashingMode = "auto" | "thread" | "workers" | "shared";

/** Options of `writeIgvm`. */
export interface WriteOptions {
  /**
   * `thread`: on this thread; `workers`: only in Workers; `shared`: in Workers and on this
   * thread (see workerHasher); `auto` (default): `thread` or `shared` by the streamed input's
   * size (see WORKER_MIN_BYTES).
   */
  hashing?: HashingMode;
}

/**
 * Batches beyond those hashing whose data may still be in writing: enough that reading and
 * hashing rarely wait for a write (each is 2 MiB at most).
 */
const SPARE_BATCHES = 4;

/** The legacy VGA/BIOS window QEMU refuses to load a page into (not RAM on pc and q35). */
const LEGACY_WINDOW = { start: 0xa0000, end: 0x100000 } as const;

/**
 * Refuses a NATIVE side the writer cannot emit: it needs the KVM order (its pages follow
 * the VMSA), whole pages that replace planned ones, and nothing in the legacy window.
 */
function checkNativeSide(image: GuestImage, runs: readonly Range[], kvmOrder: boolean): void {
  if (!kvmOrder) throw new Error("a NATIVE platform needs the KVM launch order");
  const inMemory = (gpa: number) => runs.some((r) => r.start <= gpa && gpa < r.end);
  for (const [gpa, page] of image.native!.pages) {
    if (page.length !== PAGE_SIZE || gpa % PAGE_SIZE !== 0 || !inMemory(gpa)) {
      throw new Error(`native page 0x${gpa.toString(16)} does not replace a planned page`);
    }
  }
  const legacy = runs.find((r) => r.start < LEGACY_WINDOW.end && r.end > LEGACY_WINDOW.start);
  if (legacy) {
    throw new Error(
      `pages at 0x${
        Math.max(legacy.start, LEGACY_WINDOW.start).toString(16)
      }: a NATIVE image has nothing in 0xa0000-0xfffff, which QEMU does not load`,
    );
  }
}

/** How a page is emitted. */
const enum PageKind {
  Normal,
  GuestInvalid,
  Vmsa,
  Parameter,
  Cpuid,
  Secrets,
}

/**
 * Writes `image` as an IGVM file into `sink` and returns its launch digest (SEV-SNP's: a
 * NATIVE side, `image.native`, adds a platform whose own pages and VP context follow the
 * VMSA and are not measured). Pages are assembled in batches; the contents of each batch are
 * hashed (in Workers, or on this thread for smaller images: see WriteOptions), then headers,
 * the page-info chain and data are produced in GPA order.
 */
export async function writeIgvm(
  image: GuestImage,
  sink: ByteSink,
  signIdBlock: IdBlockSigner,
  policy: bigint,
  onProgress?: (pagesDone: number, pageCount: number) => void,
  options: WriteOptions = {},
): Promise<WrittenImage> {
  for (const r of image.regions) {
    if (r.gpa % PAGE_SIZE !== 0) throw new Error(`region ${r.name} is not page aligned`);
  }
  const runs = emittedRuns(image.top, image.holes);
  const kvmOrder = image.launchOrder === "kvm";
  const areas = image.parameterAreas ?? [originalParameterArea(image.paramPage)];
  const areaPages = new Set(areas.map((a) => a.gpa));
  const native = image.native;
  if (!kvmOrder && areas.length !== 1) {
    throw new Error("the GPA-order layout has one parameter area");
  }
  if (native) checkNativeSide(image, runs, kvmOrder);
  const memoryPages = runs.reduce((n, r) => n + (r.end - r.start) / PAGE_SIZE, 0);
  // The VMSA is outside guest memory in the KVM order; the NATIVE pages and VP context
  // follow every other directive.
  const pageCount = memoryPages + (kvmOrder ? 1 : 0) + (native ? native.pages.size + 1 : 0);
  const specials = [image.cpuidPage, image.secretsPage, ...areaPages];
  if (!kvmOrder) specials.push(image.vmsaPage);
  for (const special of specials) {
    if (!runs.some((r) => r.start <= special && special < r.end)) {
      throw new Error(`special page 0x${special.toString(16)} is not in guest memory`);
    }
  }
  const headerSize = headerSectionSize({
    pages: memoryPages - areaPages.size - (kvmOrder ? 0 : 1) + (native?.pages.size ?? 0),
    vpContexts: native ? 2 : 1,
    parameterAreas: areas,
    platforms: native ? 2 : 1,
  });
  const headers = new HeaderSectionBuilder(headerSize);
  headers.supportedPlatform(image.highestVtl);
  if (native) headers.nativePlatform();
  headers.snpPolicy(policy);
  // With -native, what both platforms load carries both mask bits.
  const shared = native ? SNP_MASK | NATIVE_MASK : SNP_MASK;
  const maskOf = (gpa: number) => native?.pages.has(gpa) ? SNP_MASK : shared;
  const streamedBytes = image.regions.reduce((n, r) => n + r.length, 0);
  let mode = options.hashing ?? "auto";
  if (mode === "auto") mode = streamedBytes >= WORKER_MIN_BYTES ? "shared" : "thread";
  const digest = new SnpLaunchDigest();
  const writer = new DataWriter(sink, headerSize);
  const pager = new RegionPager([...image.regions].sort((a, b) => a.gpa - b.gpa));
  let dataPages = 0;
  let pagesDone = 0;
  const nextDataOffset = () => headerSize + PAGE_SIZE * dataPages++;

  const kindOf = (gpa: number): PageKind => {
    if (gpa === image.vmsaPage) return PageKind.Vmsa;
    if (areaPages.has(gpa)) return PageKind.Parameter;
    if (gpa === image.cpuidPage) return PageKind.Cpuid;
    if (gpa === image.secretsPage) return PageKind.Secrets;
    return inRanges(gpa, image.guestInvalid) ? PageKind.GuestInvalid : PageKind.Normal;
  };

  /**
   * Emits a hashed batch in order: headers and the page-info chain, page by page; then its
   * data pages, moved together at the start of its buffer, in one write.
   */
  const emit = (b: Batch) => {
    const bytes = b.bytes;
    let data = 0; // data pages of this batch so far
    const keep = (i: number) => {
      if (i !== data) bytes.copyWithin(data * PAGE_SIZE, i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
      data++;
    };
    for (let i = 0; i < b.filled; i++) {
      const gpa = b.gpas[i];
      const contents = b.measured[i] && !b.zero[i]
        ? b.digests.subarray(i * 48, (i + 1) * 48)
        : ZERO_PAGE_DIGEST;
      switch (b.kinds[i]) {
        case PageKind.Vmsa:
          headers.vpContext(gpa, nextDataOffset());
          keep(i);
          digest.extend(gpa, SNP_PAGE_TYPE_VMSA, undefined, contents);
          break;
        case PageKind.Parameter:
          headers.parameterAreas(areas);
          digest.extend(gpa, SNP_PAGE_TYPE_UNMEASURED);
          break;
        case PageKind.Cpuid:
          headers.pageData(gpa, nextDataOffset(), 0, IGVM_VHS_PAGE_DATA_TYPE_CPUID_DATA);
          keep(i);
          digest.extend(gpa, SNP_PAGE_TYPE_CPUID);
          break;
        case PageKind.Secrets:
          headers.pageData(gpa, 0, 0, IGVM_VHS_PAGE_DATA_TYPE_SECRETS);
          digest.extend(gpa, SNP_PAGE_TYPE_SECRETS);
          break;
        default: {
          const invalid = b.kinds[i] === PageKind.GuestInvalid;
          headers.pageData(
            gpa,
            b.zero[i] ? 0 : nextDataOffset(),
            invalid ? IGVM_VHF_PAGE_DATA_GUEST_INVALID : 0,
            IGVM_VHS_PAGE_DATA_TYPE_NORMAL,
            maskOf(gpa),
          );
          if (!b.zero[i]) keep(i);
          if (!invalid) digest.extend(gpa, SNP_PAGE_TYPE_NORMAL, undefined, contents);
        }
      }
    }
    if (data > 0) b.writing = writer.write(bytes.subarray(0, data * PAGE_SIZE));
    pagesDone += b.filled;
    onProgress?.(pagesDone, pageCount);
    b.filled = 0;
  };

  // On this thread, batches of 512 KiB: the few that are reused are all the fresh memory
  // a small image touches (fresh pages cost a fault each).
  // The pool's module loads only for an image that uses it.
  const hasher = mode === "thread"
    ? threadHasher(128)
    : workerHasher((await import("../hash/hash_pool.ts")).PageHashPool, mode === "shared");
  // Batches are filled in order and hashed `depth` at a time; the oldest is emitted first.
  // An emitted batch is reused once its data is written; until then, up to
  // `depth + SPARE_BATCHES` batches exist, so that writing overlaps reading and hashing.
  const inFlight: { batch: Batch; hashed: Promise<void> | undefined }[] = [];
  const spare: Batch[] = [];
  let batches = 1;
  let current = hasher.newBatch();
  const emitOldest = async () => {
    const { batch, hashed } = inFlight.shift()!;
    if (hashed) await hashed;
    emit(batch);
    spare.push(batch);
  };
  const nextBatch = async (): Promise<Batch> => {
    if (spare.length === 0 || (spare[0].writing && batches < hasher.depth + SPARE_BATCHES)) {
      batches++;
      return hasher.newBatch();
    }
    const b = spare.shift()!;
    if (b.writing) await b.writing;
    b.writing = undefined;
    return b;
  };
  const submit = async () => {
    const hashed = hasher.hash(current);
    hashed?.catch(() => {}); // awaited in order by emitOldest; a failure surfaces there
    inFlight.push({ batch: current, hashed });
    while (inFlight.length > hasher.depth) await emitOldest();
    current = await nextBatch();
  };
  if (kvmOrder) {
    headers.parameterAreas(areas, shared);
    for (const a of areas) digest.extend(a.gpa, SNP_PAGE_TYPE_UNMEASURED);
    pagesDone += areas.length;
  }
  try {
    const isGenerated = (gpa: number) => image.memory.page(gpa) !== undefined;
    for (const run of runs) {
      for (let gpa = run.start; gpa < run.end;) {
        if (kvmOrder && areaPages.has(gpa)) {
          gpa += PAGE_SIZE; // written first, above
          continue;
        }
        const b = current;
        const at = b.filled * PAGE_SIZE;
        const room = Math.min(hasher.batchPages - b.filled, (run.end - gpa) / PAGE_SIZE);
        // Streamed pages are read in one go; the others page by page.
        const filled = pager.fillPages(gpa, b.bytes.subarray(at), room, isGenerated);
        let pages = typeof filled === "number" ? filled : await filled;
        if (pages === 0) {
          pages = 1;
          const page = b.bytes.subarray(at, at + PAGE_SIZE);
          page.fill(0);
          const filling = pager.fill(gpa, page);
          const streamed = typeof filling === "boolean" ? filling : await filling;
          const generated = image.memory.page(gpa);
          if (generated) {
            if (streamed) {
              throw new Error(`page 0x${gpa.toString(16)} is both generated and streamed`);
            }
            page.set(generated);
          }
        }
        for (let i = 0; i < pages; i++, gpa += PAGE_SIZE) {
          const kind = kindOf(gpa);
          b.gpas[b.filled] = gpa;
          b.kinds[b.filled] = kind;
          b.measured[b.filled] = kind === PageKind.Normal || kind === PageKind.Vmsa ? 1 : 0;
          b.filled++;
        }
        if (b.filled === hasher.batchPages) await submit();
      }
    }
    if (current.filled > 0) await submit();
    while (inFlight.length > 0) await emitOldest();
    if (kvmOrder) {
      // KVM measures the VMSA after every page: its VP context is the last directive.
      const vmsa = image.memory.page(image.vmsaPage);
      if (!vmsa) throw new Error("the image has no VMSA page");
      headers.vpContext(image.vmsaPage, nextDataOffset());
      await writer.write(vmsa);
      digest.extend(image.vmsaPage, SNP_PAGE_TYPE_VMSA, vmsa);
      onProgress?.(++pagesDone, pageCount);
    }
    if (native) {
      // Not measured for SEV-SNP: after the VMSA, so QEMU's SNP order is the file's.
      for (const gpa of [...native.pages.keys()].sort((a, b) => a - b)) {
        headers.pageData(
          gpa,
          nextDataOffset(),
          0,
          IGVM_VHS_PAGE_DATA_TYPE_NORMAL,
          NATIVE_MASK,
        );
        await writer.write(native.pages.get(gpa)!);
        onProgress?.(++pagesDone, pageCount);
      }
      headers.vpContext(0, nextDataOffset(), NATIVE_MASK);
      await writer.write(native.vpContext);
      onProgress?.(++pagesDone, pageCount);
    }
    await writer.flush();
  } catch (e) {
    // No write may still be running when the caller removes the file.
    await writer.settle();
    throw e;
  } finally {
    hasher.close();
    pager.close();
  }
  const launchDigest = digest.value;
  headers.snpIdBlock(await signIdBlock(launchDigest));
  const totalSize = headerSize + PAGE_SIZE * dataPages;
  if (totalSize > 0xffff_ffff) throw new Error("the image is larger than the 4 GiB IGVM limit");
  await sink.writeAt(0, headers.finish(totalSize, crc32));
  return { launchDigest, totalSize, pageCount, dataPages };
}
