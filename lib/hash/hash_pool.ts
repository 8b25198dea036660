/**
 * SHA-384 of page contents on every core: a pool of Workers (hash_worker.ts), each hashing
 * whole batches of pages with a WebAssembly SHA-384. A batch's buffer is handed to a worker
 * and back by transfer, never copied. The caller keeps the order: it awaits each batch's
 * result in the order it submitted them.
 */

/** A batch sent to a worker. */
export interface PageHashRequest {
  id: number;
  buffer: ArrayBuffer;
  pages: number;
  /** 1 where the page's contents are measured (its digest is wanted). */
  measured: Uint8Array<ArrayBuffer>;
}

/** A worker's answer: the buffer back, a zero flag per page, and 48 bytes per page. */
export interface PageHashReply {
  id: number;
  buffer: ArrayBuffer;
  zero: Uint8Array<ArrayBuffer>;
  /** SHA-384 of each measured non-zero page; zeros elsewhere. */
  digests: Uint8Array<ArrayBuffer>;
}

interface Pending {
  worker: number;
  resolve: (reply: PageHashReply) => void;
  reject: (error: Error) => void;
}

/** A pool of hashing workers; `close()` terminates them all. */
export class PageHashPool {
  readonly #workers: Worker[] = [];
  readonly #load: number[] = [];
  readonly #pending = new Map<number, Pending>();
  #nextId = 0;
  #failure: Error | undefined;
  #starting: number;
  #onReady!: () => void;
  #onStartFailure!: (e: Error) => void;
  /**
   * Settles when every worker can hash (they take tens of milliseconds to start); the caller
   * may hash elsewhere meanwhile. Rejects if the pool fails first.
   */
  readonly ready: Promise<void>;

  /**
   * Starts `size` workers (at least 1). Each costs a V8 isolate (~10 MB) and two batches in
   * flight; the writer chooses how many (one per core but its own, at most 4).
   */
  constructor(size: number) {
    this.#starting = Math.max(1, size);
    this.ready = new Promise((resolve, reject) => {
      this.#onReady = resolve;
      this.#onStartFailure = reject;
    });
    this.ready.catch(() => {}); // a failure also reaches every pending and later hash()
    for (let i = 0; i < Math.max(1, size); i++) {
      const worker = new Worker(new URL("./hash_worker.ts", import.meta.url), { type: "module" });
      worker.onmessage = (e: MessageEvent<PageHashReply | { ready: true }>) => {
        if ("ready" in e.data) {
          if (--this.#starting === 0) this.#onReady();
        } else this.#settle(e.data);
      };
      worker.onerror = (e: ErrorEvent) => {
        e.preventDefault();
        this.#fail(new Error(`a hashing worker failed: ${e.message}`));
      };
      this.#workers.push(worker);
      this.#load.push(0);
    }
  }

  /** How many workers hash in parallel. */
  get size(): number {
    return this.#workers.length;
  }

  /** Whether every worker has `queued` batches or more waiting or hashing. */
  saturated(queued: number): boolean {
    return this.#load.every((n) => n >= queued);
  }

  /**
   * Hashes the first `pages` pages of `buffer`, which is transferred: it is unusable here
   * until the reply hands it back.
   */
  hash(buffer: ArrayBuffer, pages: number, measured: Uint8Array): Promise<PageHashReply> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#workers.length === 0) return Promise.reject(new Error("the hash pool is closed"));
    let worker = 0;
    for (let i = 1; i < this.#load.length; i++) if (this.#load[i] < this.#load[worker]) worker = i;
    const id = this.#nextId++;
    this.#load[worker]++;
    const request: PageHashRequest = { id, buffer, pages, measured: measured.slice(0, pages) };
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { worker, resolve, reject });
      this.#workers[worker].postMessage(request, [buffer, request.measured.buffer]);
    });
  }

  #settle(reply: PageHashReply): void {
    const p = this.#pending.get(reply.id);
    if (!p) return;
    this.#pending.delete(reply.id);
    this.#load[p.worker]--;
    p.resolve(reply);
  }

  #fail(error: Error): void {
    this.#failure ??= error;
    this.close();
  }

  /** Terminates the workers; hashing still pending fails. Safe to call more than once. */
  close(): void {
    for (const w of this.#workers) w.terminate();
    this.#workers.length = 0;
    const error = this.#failure ?? new Error("the hash pool was closed");
    this.#onStartFailure(error);
    for (const p of this.#pending.values()) p.reject(error);
    this.#pending.clear();
  }
}
