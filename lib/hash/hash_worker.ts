/**
 * A hashing Worker of the page hash pool (hash_pool.ts): for each 4 KiB page of a batch it
 * reports whether the page is all zero and, for measured non-zero pages, its SHA-384, on the
 * WebAssembly engine (wasm_sha384.ts), which loads in well under a millisecond. The batch's
 * buffer comes in and goes back by transfer, without copies.
 */
import { PageHasher } from "./wasm_sha384.ts";
import type { PageHashReply, PageHashRequest } from "./hash_pool.ts";

const hasher = new PageHasher();
/** The worker's global scope (typed here: the project is checked with the window's types). */
const scope = self as unknown as {
  onmessage: (e: MessageEvent<PageHashRequest>) => void;
  postMessage(message: PageHashReply | { ready: true }, transfer?: Transferable[]): void;
};

scope.onmessage = (e: MessageEvent<PageHashRequest>) => {
  const { id, buffer, pages, measured } = e.data;
  const zero = new Uint8Array(pages);
  const digests = new Uint8Array(pages * 48);
  hasher.hashPages(new Uint8Array(buffer), pages, measured, zero, digests);
  const reply: PageHashReply = { id, buffer, zero, digests };
  scope.postMessage(reply, [buffer, digests.buffer, zero.buffer]);
};
// Tell the pool that hashing can start.
scope.postMessage({ ready: true });
