/**
 * SHA-384 on the project's own WebAssembly module (sha384.wat, embedded in sha384_wasm.ts):
 * synchronous, ready in well under a millisecond, nothing to resolve or download. Pages are
 * hashed two at a time in the lanes of 128-bit vectors (about 1.5 times one at a time), which
 * outruns WebCrypto's per-call cost, hash-wasm and node:crypto on 4 KiB pages.
 *
 * Each hasher owns a WebAssembly instance, and so its own memory: instances are cheap, and no
 * two users share a hash state. The compiled module is shared.
 */
import { SHA384_WASM_BASE64 } from "./sha384_wasm.ts";

/** Bytes in a SHA-384 digest. */
export const SHA384_BYTES = 48;

const PAGE = 4096;

/** What sha384.wat exports (see its comments). */
interface Sha384Exports {
  memory: WebAssembly.Memory;
  heap: WebAssembly.Global;
  init(): void;
  blocks(at: number, count: number): void;
  finish(at: number, length: number, total: number, out: number): void;
  page(at: number, out: number): void;
  pages(at: number, count: number, flags: number, out: number): void;
  chain(at: number): void;
}

let compiled: WebAssembly.Module | undefined;

/**
 * A new instance whose memory has `heapBytes` free from `heap` on. Its memory never grows
 * after this, so views of it stay valid.
 */
function instantiate(heapBytes: number): { wasm: Sha384Exports; heap: number; mem: Uint8Array } {
  compiled ??= new WebAssembly.Module(Uint8Array.fromBase64(SHA384_WASM_BASE64));
  const wasm = new WebAssembly.Instance(compiled).exports as unknown as Sha384Exports;
  const heap = wasm.heap.value as number;
  const missing = heap + heapBytes - wasm.memory.buffer.byteLength;
  if (missing > 0) wasm.memory.grow(Math.ceil(missing / 65536));
  return { wasm, heap, mem: new Uint8Array(wasm.memory.buffer) };
}

/** Bytes a streaming hasher buffers before it compresses them. */
const STREAM_CHUNK = 32 << 10;

/** A streaming SHA-384: `update()` any number of times, then `digest()`, which resets it. */
export class Sha384 {
  readonly #wasm: Sha384Exports;
  readonly #mem: Uint8Array;
  readonly #heap: number;
  #fill = 0;
  #total = 0;

  constructor() {
    const { wasm, heap, mem } = instantiate(STREAM_CHUNK + 256);
    this.#wasm = wasm;
    this.#heap = heap;
    this.#mem = mem;
    wasm.init();
  }

  /** Adds `bytes` to the message. */
  update(bytes: Uint8Array): this {
    for (let at = 0; at < bytes.length;) {
      const n = Math.min(STREAM_CHUNK - this.#fill, bytes.length - at);
      this.#mem.set(bytes.subarray(at, at + n), this.#heap + this.#fill);
      this.#fill += n;
      at += n;
      if (this.#fill === STREAM_CHUNK) {
        this.#wasm.blocks(this.#heap, STREAM_CHUNK / 128);
        this.#fill = 0;
      }
    }
    this.#total += bytes.length;
    return this;
  }

  /** The digest of the message so far (48 bytes); the hasher starts a new message. */
  digest(): Uint8Array<ArrayBuffer> {
    const whole = this.#fill & ~127;
    const out = this.#heap + STREAM_CHUNK;
    this.#wasm.blocks(this.#heap, whole / 128);
    this.#wasm.finish(this.#heap + whole, this.#fill - whole, this.#total, out);
    const digest = this.#mem.slice(out, out + SHA384_BYTES);
    this.#wasm.init();
    this.#fill = 0;
    this.#total = 0;
    return digest;
  }
}

let shared: Sha384 | undefined;

/** SHA-384 of `bytes`, synchronously. */
export function sha384(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  shared ??= new Sha384();
  return shared.update(bytes).digest();
}

/** Pages a PageHasher copies into its memory and hashes per call into WebAssembly. */
const PAGE_BATCH = 256;

/**
 * Hashes 4 KiB pages in batches: for each page, whether it is all zero and, for the measured
 * non-zero ones, its SHA-384. Pages are copied into WebAssembly memory, 256 per call, unless
 * they are in the hasher's own `hosted` buffer, which is hashed where it is.
 */
export class PageHasher {
  /**
   * A buffer of `hostPages` pages in the hasher's memory (empty without): pages put there
   * are hashed without a copy. It stays valid as long as the hasher.
   */
  readonly hosted: Uint8Array<ArrayBuffer>;
  readonly #wasm: Sha384Exports;
  readonly #mem: Uint8Array;
  readonly #capacity: number;
  readonly #pages: number;
  readonly #flags: number;
  readonly #digests: number;

  /** `hostPages`: the size of `hosted`, in pages. */
  constructor(hostPages = 0) {
    const capacity = Math.max(hostPages, PAGE_BATCH);
    const { wasm, heap, mem } = instantiate(capacity * (PAGE + 1 + SHA384_BYTES));
    this.#wasm = wasm;
    this.#mem = mem;
    this.#capacity = capacity;
    this.#pages = heap;
    this.#flags = heap + capacity * PAGE;
    this.#digests = this.#flags + capacity;
    this.hosted = new Uint8Array(mem.buffer, heap, hostPages * PAGE) as Uint8Array<ArrayBuffer>;
  }

  /**
   * For each of the first `count` pages of `bytes`: sets `zero[i]` to 1 if the page is all
   * zero (else 0) and, where `measured[i]` is non-zero and the page is not, writes its SHA-384
   * to `digests` at 48 * i. Other digest slots are left as they are.
   */
  hashPages(
    bytes: Uint8Array,
    count: number,
    measured: Uint8Array,
    zero: Uint8Array,
    digests: Uint8Array,
  ): void {
    if (bytes.length < count * PAGE) throw new RangeError("hashPages: fewer bytes than pages");
    const mem = this.#mem;
    const inPlace = bytes.buffer === mem.buffer && bytes.byteOffset === this.#pages;
    const step = inPlace ? this.#capacity : PAGE_BATCH;
    for (let first = 0; first < count; first += step) {
      const n = Math.min(step, count - first);
      if (!inPlace) mem.set(bytes.subarray(first * PAGE, (first + n) * PAGE), this.#pages);
      for (let i = 0; i < n; i++) mem[this.#flags + i] = measured[first + i] ? 1 : 0;
      this.#wasm.pages(this.#pages + (inPlace ? first * PAGE : 0), n, this.#flags, this.#digests);
      for (let i = 0; i < n; i++) {
        const flags = mem[this.#flags + i];
        zero[first + i] = flags >> 1;
        if (flags === 1) {
          const at = this.#digests + i * SHA384_BYTES;
          digests.set(mem.subarray(at, at + SHA384_BYTES), (first + i) * SHA384_BYTES);
        }
      }
    }
  }
}

/**
 * The step of a hash chain over 112-byte records whose first 48 bytes hold the digest so far,
 * such as SEV-SNP's PAGE_INFO: `record` lives in WebAssembly memory, and `step()` replaces
 * its first 48 bytes with the SHA-384 of all 112, with no copy and no allocation.
 */
export class Sha384RecordChain {
  /** The record; the caller fills bytes 48-111 before each step. */
  readonly record: Uint8Array<ArrayBuffer>;
  readonly #wasm: Sha384Exports;
  readonly #at: number;

  constructor() {
    const { wasm, heap, mem } = instantiate(112);
    this.#wasm = wasm;
    this.#at = heap;
    this.record = new Uint8Array(mem.buffer, heap, 112) as Uint8Array<ArrayBuffer>;
  }

  /** record[0..48] = SHA-384(record). */
  step(): void {
    this.#wasm.chain(this.#at);
  }
}
