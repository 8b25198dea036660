/**
 * A hashing Worker of the page hash pool (hash_pool.ts): for each 4 KiB page of a batch it
 * reports whether the page is all zero and, for measured non-zero pages, its SHA-384. The
 * batch's buffer comes in and goes back by transfer, without copies.
 */
import { createWasmSha384 } from "./wasm_sha384.ts";
import type { PageHashReply, PageHashRequest } from "./hash_pool.ts";

const PAGE = 4096;
const ready = createWasmSha384();
/** The worker's global scope (typed here: the project is checked with the window's types). */
const scope = self as unknown as {
  onmessage: (e: MessageEvent<PageHashRequest>) => void;
  postMessage(message: PageHashReply | { ready: true }, transfer?: Transferable[]): void;
};
// Tell the pool when hashing can start (the WebAssembly module is compiled).
ready.then(() => scope.postMessage({ ready: true }));

function isZeroPage(words: Int32Array, first: number): boolean {
  for (let i = first; i < first + PAGE / 4; i++) if (words[i] !== 0) return false;
  return true;
}

scope.onmessage = async (e: MessageEvent<PageHashRequest>) => {
  const hasher = await ready;
  const { id, buffer, pages, measured } = e.data;
  const bytes = new Uint8Array(buffer);
  const words = new Int32Array(buffer);
  const zero = new Uint8Array(pages);
  const digests = new Uint8Array(pages * 48);
  for (let i = 0; i < pages; i++) {
    zero[i] = isZeroPage(words, i * (PAGE / 4)) ? 1 : 0;
    if (measured[i] && !zero[i]) {
      hasher.init();
      hasher.update(bytes.subarray(i * PAGE, (i + 1) * PAGE));
      digests.set(hasher.digest("binary"), i * 48);
    }
  }
  const reply: PageHashReply = { id, buffer, zero, digests };
  scope.postMessage(reply, [buffer, digests.buffer, zero.buffer]);
};
