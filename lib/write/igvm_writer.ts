/**
 * The streaming stage: walks guest pages in GPA order, fills each from the generated
 * memory or an input stream, measures it, encodes its header and writes its data at its
 * final file offset. The headers go in last, at the start of the file.
 */
import { crc32 } from "../bytes/crc32.ts";
import { isAllZero, PAGE_SIZE } from "../bytes/le.ts";
import { emittedRuns, type Range } from "../layout/guest_allocator.ts";
import type { ByteReader, GuestImage, StreamRegion } from "../layout/guest_image.ts";
import { HeaderSectionBuilder, headerSectionSize } from "../igvm/headers.ts";
import {
  IGVM_VHF_PAGE_DATA_GUEST_INVALID,
  IGVM_VHS_PAGE_DATA_TYPE_CPUID_DATA,
  IGVM_VHS_PAGE_DATA_TYPE_NORMAL,
  IGVM_VHS_PAGE_DATA_TYPE_SECRETS,
} from "../igvm/defs.ts";
import {
  sha384,
  SNP_PAGE_TYPE_CPUID,
  SNP_PAGE_TYPE_NORMAL,
  SNP_PAGE_TYPE_SECRETS,
  SNP_PAGE_TYPE_UNMEASURED,
  SNP_PAGE_TYPE_VMSA,
  SnpLaunchDigest,
} from "../measure/snp_digest.ts";

/** Where the writer puts bytes: positioned writes into a seekable sink. */
export interface ByteSink {
  writeAt(offset: number, bytes: Uint8Array): Promise<void>;
}

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
  /** Starts writing the current buffer; waits for the previous write first. */
  async #start(): Promise<void> {
    const previous = this.#inFlight;
    if (previous) await previous;
    const bytes = this.#bufs[this.#current].subarray(0, this.#fill);
    this.#inFlight = this.sink.writeAt(this.#offset, bytes);
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
    while (this.#index < this.regions.length) {
      const r = this.regions[this.#index];
      const end = r.gpa + r.length;
      if (gpa >= end) {
        this.#reader?.close();
        this.#reader = undefined;
        this.#index++;
        continue;
      }
      if (gpa < r.gpa) return false;
      const n = Math.min(PAGE_SIZE, end - gpa);
      if (!this.#reader) {
        if (gpa !== r.gpa) throw new Error(`region ${r.name} starts in a hole`);
        return r.open().then((reader) => {
          this.#reader = reader;
          return this.#read(r, page, n);
        });
      }
      return this.#read(r, page, n);
    }
    return false;
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

/**
 * Pages assembled and hashed together (512 KiB), hashed in parallel by WebCrypto. Larger
 * batches keep more promises alive across awaits and grow V8's young generation.
 */
const BATCH_PAGES = 128;

/** A batch of assembled pages and what each one is. */
interface Batch {
  bytes: Uint8Array;
  gpas: Float64Array;
  kinds: Uint8Array;
  zero: Uint8Array;
  filled: number;
}

function newBatch(): Batch {
  return {
    bytes: new Uint8Array(BATCH_PAGES * PAGE_SIZE),
    gpas: new Float64Array(BATCH_PAGES),
    kinds: new Uint8Array(BATCH_PAGES),
    zero: new Uint8Array(BATCH_PAGES),
    filled: 0,
  };
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
 * Writes `image` as an IGVM file into `sink` and returns its launch digest. Pages are
 * assembled in batches; the contents of each batch are hashed in parallel (WebCrypto
 * SHA-384), then headers, the page-info chain and data are produced in GPA order.
 */
export async function writeIgvm(
  image: GuestImage,
  sink: ByteSink,
  signIdBlock: IdBlockSigner,
  policy: bigint,
  onProgress?: (pagesDone: number, pageCount: number) => void,
): Promise<WrittenImage> {
  for (const r of image.regions) {
    if (r.gpa % PAGE_SIZE !== 0) throw new Error(`region ${r.name} is not page aligned`);
  }
  const runs = emittedRuns(image.top, image.holes);
  const pageCount = runs.reduce((n, r) => n + (r.end - r.start) / PAGE_SIZE, 0);
  for (const special of [image.vmsaPage, image.cpuidPage, image.secretsPage, image.paramPage]) {
    if (!runs.some((r) => r.start <= special && special < r.end)) {
      throw new Error(`special page 0x${special.toString(16)} is not in guest memory`);
    }
  }
  const headerSize = headerSectionSize(pageCount);
  const headers = new HeaderSectionBuilder(headerSize);
  headers.supportedPlatform(image.highestVtl);
  headers.snpPolicy(policy);
  const digest = new SnpLaunchDigest();
  const data = new DataWriter(sink, headerSize);
  const pager = new RegionPager([...image.regions].sort((a, b) => a.gpa - b.gpa));
  let dataPages = 0;
  let pagesDone = 0;
  const nextDataOffset = () => headerSize + PAGE_SIZE * dataPages++;

  const kindOf = (gpa: number): PageKind => {
    if (gpa === image.vmsaPage) return PageKind.Vmsa;
    if (gpa === image.paramPage) return PageKind.Parameter;
    if (gpa === image.cpuidPage) return PageKind.Cpuid;
    if (gpa === image.secretsPage) return PageKind.Secrets;
    return inRanges(gpa, image.guestInvalid) ? PageKind.GuestInvalid : PageKind.Normal;
  };

  /** Starts hashing the measured, non-zero pages of a batch (in parallel, off this thread). */
  const startDigests = (b: Batch): Promise<(ArrayBuffer | undefined)[]> => {
    const pending: (Promise<ArrayBuffer> | undefined)[] = new Array(b.filled);
    for (let i = 0; i < b.filled; i++) {
      const page = b.bytes.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
      b.zero[i] = isAllZero(page) ? 1 : 0;
      const measured = b.kinds[i] === PageKind.Normal || b.kinds[i] === PageKind.Vmsa;
      if (measured && !b.zero[i]) {
        pending[i] = crypto.subtle.digest("SHA-384", page as Uint8Array<ArrayBuffer>);
      }
    }
    return Promise.all(pending);
  };

  /** Emits a hashed batch in order: headers, the page-info chain, data. */
  const emit = async (b: Batch, digests: (ArrayBuffer | undefined)[]) => {
    for (let i = 0; i < b.filled; i++) {
      const gpa = b.gpas[i];
      const page = b.bytes.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
      const d = digests[i];
      const contents = d ? new Uint8Array(d) : ZERO_PAGE_DIGEST;
      let wait: Promise<void> | undefined;
      switch (b.kinds[i]) {
        case PageKind.Vmsa:
          headers.vpContext(gpa, nextDataOffset());
          wait = data.push(page);
          digest.extend(gpa, SNP_PAGE_TYPE_VMSA, undefined, contents);
          break;
        case PageKind.Parameter:
          headers.parameterPage(gpa);
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

  // Two batches: while one is being hashed, the next is filled.
  const batches = [newBatch(), newBatch()];
  let current = 0;
  let inFlight: { batch: Batch; digests: Promise<(ArrayBuffer | undefined)[]> } | undefined;
  const rotate = async () => {
    const b = batches[current];
    const digests = startDigests(b);
    if (inFlight) await emit(inFlight.batch, await inFlight.digests);
    inFlight = { batch: b, digests };
    current ^= 1;
  };
  try {
    for (const run of runs) {
      for (let gpa = run.start; gpa < run.end; gpa += PAGE_SIZE) {
        const b = batches[current];
        const page = b.bytes.subarray(b.filled * PAGE_SIZE, (b.filled + 1) * PAGE_SIZE);
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
        b.gpas[b.filled] = gpa;
        b.kinds[b.filled] = kindOf(gpa);
        if (++b.filled === BATCH_PAGES) await rotate();
      }
    }
    if (batches[current].filled > 0) await rotate();
    if (inFlight) await emit(inFlight.batch, await inFlight.digests);
  } finally {
    pager.close();
  }
  await data.flush();
  const launchDigest = digest.value;
  headers.snpIdBlock(await signIdBlock(launchDigest));
  const totalSize = headerSize + PAGE_SIZE * dataPages;
  if (totalSize > 0xffff_ffff) throw new Error("the image is larger than the 4 GiB IGVM limit");
  await sink.writeAt(0, headers.finish(totalSize, crc32));
  return { launchDigest, totalSize, pageCount, dataPages };
}

const ZERO_PAGE_DIGEST = sha384(new Uint8Array(PAGE_SIZE));
