/** Waiting for a turn of the event loop from code that otherwise never waits. */

const NOTHING = new Uint8Array(0);

/**
 * Resolves after a turn of the event loop, not as a microtask: an asynchronous operation
 * (WebCrypto's, which runs off the main thread) lets what waits on the loop run, such as
 * signal listeners and Workers' messages. A timer would do too, but Deno's timers load its
 * Node layer, which igvmgen keeps out of start-up.
 */
export async function nextTurn(): Promise<void> {
  await crypto.subtle.digest("SHA-384", NOTHING);
}
