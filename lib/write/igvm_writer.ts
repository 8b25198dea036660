/**
 * The streaming stage: walks guest pages in GPA order, fills each from the generated
 * memory or an input stream, measures it, encodes its header and writes its data at its
 * final file offset. The headers go in last, at the start of the file.
 */
import { crc32 } from "../bytes/crc32.ts";
import { isAllZero, PAGE_SIZE } from "../bytes/le.ts";
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
  loadWasmRecordHasher,
  SNP_PAGE_TYPE_CPUID,
  SNP_PAGE_TYPE_NORMAL,
  SNP_PAGE_TYPE_SECRETS,
  SNP_PAGE_TYPE_UNMEASURED,
  SNP_PAGE_TYPE_VMSA,
  SnpLaunchDigest,
} from "../measure/snp_digest.ts";
import { PageHashPool } from "../hash/hash_pool.ts";
import { ZERO_PAGE_DIGEST } from "../measure/planned_updates.ts";
import { createWasmSha384 } from "../hash/wasm_sha384.ts";

/** The result of writing an image. */
export interface WrittenImage {
  launchDigest: Uint8Array;
  totalSize: number;
  pageCount: number;
  dataPages: number;
}

/** Signs the ID block for the final digest: returns the IGVM_VHS_SNP_ID_BLOCK body. */
export type IdBlockSigner = (launchDigest: Uint8Array) => Promise<Uint8Array>;

const FLUSH_BYTES = 4 << 20;

/**
 * Writes data pages sequentially from a start offset, in large batches, double-buffered: one
 * buffer is written while the other fills, so writing overlaps hashing.
 */
class DataWriter {
  #bufs = [new Uint8Array(FLUSH_BYTES), new Uint8Array(FLUSH_BYTES)];
  #current = 0;
  #fill = 0;
  #offset: number;
  #inFlight: Promise<void> | undefined;
  constructor(private readonly sink: ByteSink, start: number) {
    this.#offset = start;
  }
  /** Appends a page; returns a promise only when it had to wait for a write. */
  push(page: Uint8Array): Promise<void> | undefined {
    this.#bufs[this.#current].set(page, this.#fill);
    this.#fill += page.length;
    return this.#fill === FLUSH_BYTES ? this.#start() : undefined;
  }
  /**
   * Starts writing the current buffer; waits for the previous write first, so a failed
   * write is reported by the next push or by `flush()`.
   */
  async #start(): Promise<void> {
    const previous = this.#inFlight;
    if (previous) await previous;
    const bytes = this.#bufs[this.#current].subarray(0, this.#fill);
    const write = this.sink.writeAt(this.#offset, bytes);
    // Awaited by the next #start, flush() or settle(); until then a rejection is held, not
    // reported as unhandled.
    write.catch(() => {});
    this.#inFlight = write;
    this.#offset += this.#fill;
    this.#current ^= 1;
    this.#fill = 0;
  }
  /** Writes what is buffered and waits for every write. */
  async flush(): Promise<void> {
    if (this.#fill > 0) await this.#start();
    if (this.#inFlight) await this.#inFlight;
    this.#inFlight = undefined;
  }
  /** After a failure elsewhere: waits for the write in flight, ignoring its outcome. */
  async settle(): Promise<void> {
    await this.#inFlight?.catch(() => {});
    this.#inFlight = undefined;
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
   * and none is generated. Returns how many pages it filled; 0 means the pages at `gpa` need
   * `fill()` (a hole, a generated page, or no region there).
   */
  async fillPages(
    gpa: number,
    dst: Uint8Array,
    maxPages: number,
    isGenerated: (gpa: number) => boolean,
  ): Promise<number> {
    const r = this.#advanceTo(gpa);
    if (!r || gpa < r.gpa || (!this.#reader && gpa !== r.gpa)) return 0;
    const end = r.gpa + r.length;
    let pages = 0;
    while (
      pages < maxPages && gpa + pages * PAGE_SIZE < end && !isGenerated(gpa + pages * PAGE_SIZE)
    ) pages++;
    if (pages === 0) return 0;
    this.#reader ??= await r.open();
    const length = Math.min(pages * PAGE_SIZE, end - gpa);
    dst.fill(0, length, pages * PAGE_SIZE);
    const target = dst.subarray(0, length);
    const got = this.#reader.readSync
      ? this.#reader.readSync(target)
      : await this.#reader.read(target);
    if (got !== length) throw new Error(`${r.name} ended early: expected ${r.length} bytes`);
    return pages;
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
}

function newBatch(pages: number): Batch {
  return {
    bytes: new Uint8Array(pages * PAGE_SIZE),
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
  /** Sets `zero` and `digests` of the batch. */
  hash(b: Batch): Promise<void>;
  close(): void;
}

/**
 * Hashing on this thread's WebCrypto, 128 pages (512 KiB) at a time: no start-up cost, for
 * small images. Larger batches keep more promises alive and grow V8's young generation.
 */
function mainThreadHasher(): BatchHasher {
  const batchPages = 128;
  return {
    batchPages,
    depth: 1,
    async hash(b) {
      const pending: (Promise<ArrayBuffer> | undefined)[] = new Array(b.filled);
      for (let i = 0; i < b.filled; i++) {
        const page = b.bytes.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
        b.zero[i] = isAllZero(page) ? 1 : 0;
        if (b.measured[i] && !b.zero[i]) pending[i] = crypto.subtle.digest("SHA-384", page);
      }
      const digests = await Promise.all(pending);
      for (let i = 0; i < b.filled; i++) {
        const d = digests[i];
        if (d) b.digests.set(new Uint8Array(d), i * 48);
      }
    },
    close() {},
  };
}

/**
 * Hashing on this thread with hash-wasm's WebAssembly SHA-384, synchronously: faster than
 * WebCrypto's per-page calls once the module is loaded (it is, for the page-info chain, when
 * workers are used).
 */
async function wasmHasher(batchPages: number): Promise<BatchHasher> {
  const h = await createWasmSha384();
  return {
    batchPages,
    depth: 1,
    hash(b) {
      for (let i = 0; i < b.filled; i++) {
        const page = b.bytes.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
        b.zero[i] = isAllZero(page) ? 1 : 0;
        if (b.measured[i] && !b.zero[i]) {
          h.init();
          h.update(page);
          b.digests.set(h.digest("binary"), i * 48);
        }
      }
      return Promise.resolve();
    },
    close() {},
  };
}

/**
 * Hashing in a pool of Workers, one per core (at most 4), 512 pages (2 MiB) at a time: each batch's
 * buffer goes to a worker and comes back by transfer. Two batches per worker are in flight,
 * so a worker never waits for the next one. Until the workers have started, batches are
 * hashed on this thread instead (unless `onlyWorkers`), so their start-up costs no waiting.
 */
async function workerHasher(onlyWorkers: boolean): Promise<BatchHasher> {
  const pool = new PageHashPool();
  let meanwhile: BatchHasher;
  try {
    meanwhile = await wasmHasher(512);
  } catch (e) {
    pool.close();
    throw e;
  }
  let started = onlyWorkers;
  pool.ready.then(() => started = true, () => {});
  return {
    batchPages: 512,
    depth: 2 * pool.size,
    async hash(b) {
      if (!started) return await meanwhile.hash(b);
      const reply = await pool.hash(b.bytes.buffer, b.filled, b.measured);
      b.bytes = new Uint8Array(reply.buffer);
      b.zero = reply.zero;
      b.digests = reply.digests;
    },
    close: () => pool.close(),
  };
}

/**
 * Where page contents are hashed by default, by the size of the streamed input: WebCrypto on
 * this thread below 16 MiB (nothing to load), hash-wasm on this thread below 48 MiB (its
 * ~10 ms load pays off, workers' start-up of 40+ ms does not), Workers from 48 MiB.
 * Measured on 2 cores: a 32 MiB ELF page table and 64 and 128 MiB initrds.
 */
const WASM_MIN_BYTES = 16 << 20;
const WORKER_MIN_BYTES = 48 << 20;

/** Where page contents are hashed. */
export type HashingMode = "auto" | "webcrypto" | "wasm" | "workers";

/** Options of `writeIgvm`. */
export interface WriteOptions {
  /**
   * `webcrypto`: this thread's WebCrypto; `wasm`: hash-wasm on this thread; `workers`: only
   * in Workers; `auto` (default): by the streamed input's size (see WORKER_MIN_BYTES), with
   * workers helped by this thread while they start.
   */
  hashing?: HashingMode;
}

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
  if (mode === "auto") {
    mode = streamedBytes >= WORKER_MIN_BYTES
      ? "workers"
      : streamedBytes >= WASM_MIN_BYTES
      ? "wasm"
      : "webcrypto";
  }
  // With hash-wasm loaded, the page-info chain uses it too (see loadWasmRecordHasher).
  const digest = new SnpLaunchDigest(
    mode === "webcrypto" ? undefined : await loadWasmRecordHasher(),
  );
  const data = new DataWriter(sink, headerSize);
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

  /** Emits a hashed batch in order: headers, the page-info chain, data. */
  const emit = async (b: Batch) => {
    for (let i = 0; i < b.filled; i++) {
      const gpa = b.gpas[i];
      const page = b.bytes.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
      const contents = b.measured[i] && !b.zero[i]
        ? b.digests.subarray(i * 48, (i + 1) * 48)
        : ZERO_PAGE_DIGEST;
      let wait: Promise<void> | undefined;
      switch (b.kinds[i]) {
        case PageKind.Vmsa:
          headers.vpContext(gpa, nextDataOffset());
          wait = data.push(page);
          digest.extend(gpa, SNP_PAGE_TYPE_VMSA, undefined, contents);
          break;
        case PageKind.Parameter:
          headers.parameterAreas(areas);
          digest.extend(gpa, SNP_PAGE_TYPE_UNMEASURED);
          break;
        case PageKind.Cpuid:
          headers.pageData(gpa, nextDataOffset(), 0, IGVM_VHS_PAGE_DATA_TYPE_CPUID_DATA);
          wait = data.push(page);
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
          if (!b.zero[i]) wait = data.push(page);
          if (!invalid) digest.extend(gpa, SNP_PAGE_TYPE_NORMAL, undefined, contents);
        }
      }
      if (wait) await wait;
    }
    pagesDone += b.filled;
    onProgress?.(pagesDone, pageCount);
    b.filled = 0;
  };

  const hasher = mode === "workers"
    ? await workerHasher(options.hashing === "workers")
    : mode === "wasm"
    ? await wasmHasher(512)
    : mainThreadHasher();
  // Batches are filled in order and hashed `depth` at a time; the oldest is emitted first.
  const inFlight: { batch: Batch; hashed: Promise<void> }[] = [];
  const spare: Batch[] = [];
  let current = newBatch(hasher.batchPages);
  const emitOldest = async () => {
    const { batch, hashed } = inFlight.shift()!;
    await hashed;
    await emit(batch);
    spare.push(batch);
  };
  const submit = async () => {
    const hashed = hasher.hash(current);
    hashed.catch(() => {}); // awaited in order by emitOldest; a failure surfaces there
    inFlight.push({ batch: current, hashed });
    current = spare.pop() ?? newBatch(hasher.batchPages);
    while (inFlight.length > hasher.depth) await emitOldest();
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
        let pages = await pager.fillPages(gpa, b.bytes.subarray(at), room, isGenerated);
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
      await data.push(vmsa);
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
        await data.push(native.pages.get(gpa)!);
        onProgress?.(++pagesDone, pageCount);
      }
      headers.vpContext(0, nextDataOffset(), NATIVE_MASK);
      await data.push(native.vpContext);
      onProgress?.(++pagesDone, pageCount);
    }
    await data.flush();
  } catch (e) {
    // No write may still be running when the caller removes the file.
    await data.settle();
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
