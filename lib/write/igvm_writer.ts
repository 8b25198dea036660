/**
 * The streaming stage: walks guest pages in GPA order, fills each from the generated
 * memory or an input stream, measures it, encodes its header and writes its data at its
 * final file offset. The headers go in last, at the start of the file.
 */
import { crc32 } from "node:zlib";
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
export type IdBlockSigner = (launchDigest: Uint8Array) => Uint8Array;

const FLUSH_BYTES = 4 << 20;

/** Writes data pages sequentially from a start offset, in large batches. */
class DataWriter {
  #buf = new Uint8Array(FLUSH_BYTES);
  #fill = 0;
  #offset: number;
  constructor(private readonly sink: ByteSink, start: number) {
    this.#offset = start;
  }
  async push(page: Uint8Array): Promise<void> {
    this.#buf.set(page, this.#fill);
    this.#fill += page.length;
    if (this.#fill === this.#buf.length) await this.flush();
  }
  async flush(): Promise<void> {
    if (this.#fill === 0) return;
    await this.sink.writeAt(this.#offset, this.#buf.subarray(0, this.#fill));
    this.#offset += this.#fill;
    this.#fill = 0;
  }
}

/** Streams the bytes of the regions, in GPA order, into pages. */
class RegionPager {
  #index = 0;
  #reader: ByteReader | undefined;
  constructor(private readonly regions: readonly StreamRegion[]) {}

  /** Copies the region bytes of page `gpa` into `page` (zeroed by the caller); true if any. */
  async fill(gpa: number, page: Uint8Array): Promise<boolean> {
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
      if (!this.#reader) {
        if (gpa !== r.gpa) throw new Error(`region ${r.name} starts in a hole`);
        this.#reader = await r.open();
      }
      const n = Math.min(PAGE_SIZE, end - gpa);
      const got = await this.#reader.read(page.subarray(0, n));
      if (got !== n) throw new Error(`${r.name} ended early: expected ${r.length} bytes`);
      return true;
    }
    return false;
  }

  close(): void {
    this.#reader?.close();
  }
}

function inRanges(gpa: number, ranges: readonly Range[]): boolean {
  return ranges.some((r) => r.start <= gpa && gpa < r.end);
}

/** Writes `image` as an IGVM file into `sink` and returns its launch digest. */
export async function writeIgvm(
  image: GuestImage,
  sink: ByteSink,
  signIdBlock: IdBlockSigner,
  policy: bigint,
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
  const page = new Uint8Array(PAGE_SIZE);
  let dataPages = 0;
  const nextDataOffset = () => headerSize + PAGE_SIZE * dataPages++;
  try {
    for (const run of runs) {
      for (let gpa = run.start; gpa < run.end; gpa += PAGE_SIZE) {
        page.fill(0);
        const streamed = await pager.fill(gpa, page);
        const generated = image.memory.page(gpa);
        if (generated) {
          if (streamed) {
            throw new Error(`page 0x${gpa.toString(16)} is both generated and streamed`);
          }
          page.set(generated);
        }
        if (gpa === image.vmsaPage) {
          headers.vpContext(gpa, nextDataOffset());
          await data.push(page);
          digest.extend(gpa, SNP_PAGE_TYPE_VMSA, page);
        } else if (gpa === image.paramPage) {
          headers.parameterPage(gpa);
          digest.extend(gpa, SNP_PAGE_TYPE_UNMEASURED);
        } else if (gpa === image.cpuidPage) {
          headers.pageData(gpa, nextDataOffset(), 0, IGVM_VHS_PAGE_DATA_TYPE_CPUID_DATA);
          await data.push(page);
          digest.extend(gpa, SNP_PAGE_TYPE_CPUID);
        } else if (gpa === image.secretsPage) {
          headers.pageData(gpa, 0, 0, IGVM_VHS_PAGE_DATA_TYPE_SECRETS);
          digest.extend(gpa, SNP_PAGE_TYPE_SECRETS);
        } else {
          const zero = isAllZero(page);
          const invalid = inRanges(gpa, image.guestInvalid);
          headers.pageData(
            gpa,
            zero ? 0 : nextDataOffset(),
            invalid ? IGVM_VHF_PAGE_DATA_GUEST_INVALID : 0,
            IGVM_VHS_PAGE_DATA_TYPE_NORMAL,
          );
          if (!zero) await data.push(page);
          if (!invalid) {
            digest.extend(gpa, SNP_PAGE_TYPE_NORMAL, page, zero ? ZERO_PAGE_DIGEST : undefined);
          }
        }
      }
    }
  } finally {
    pager.close();
  }
  await data.flush();
  const launchDigest = digest.value;
  headers.snpIdBlock(signIdBlock(launchDigest));
  const totalSize = headerSize + PAGE_SIZE * dataPages;
  if (totalSize > 0xffff_ffff) throw new Error("the image is larger than the 4 GiB IGVM limit");
  await sink.writeAt(0, headers.finish(totalSize, (b) => crc32(b) >>> 0));
  return { launchDigest, totalSize, pageCount, dataPages };
}

const ZERO_PAGE_DIGEST = sha384(new Uint8Array(PAGE_SIZE));
