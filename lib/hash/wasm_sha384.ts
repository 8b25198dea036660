/**
 * hash-wasm's WebAssembly SHA-384, loaded without Deno's Node-compatibility layer.
 *
 * hash-wasm's ES module build probes the global `Buffer` once, when it is evaluated. In Deno
 * that global is a lazy getter that loads the node:buffer shim and its internal bindings
 * (about 25 modules). The probe only picks a faster path for Node's Buffer inputs, which
 * igvmgen never passes, so the getter is hidden while the module loads and put back after.
 */
// The package's main file is CommonJS, which Deno loads through its Node layer; its ES module
// file is loaded instead. It has no declarations of its own; the package's are its API.
import type * as HashWasm from "npm:hash-wasm@4.13.0";

let loading: Promise<typeof HashWasm> | undefined;

function loadHashWasm(): Promise<typeof HashWasm> {
  loading ??= (async () => {
    const saved = Object.getOwnPropertyDescriptor(globalThis, "Buffer");
    Object.defineProperty(globalThis, "Buffer", {
      value: undefined,
      configurable: true,
      writable: true,
    });
    try {
      return await import("npm:hash-wasm@4.13.0/dist/index.esm.js") as typeof HashWasm;
    } finally {
      if (saved) Object.defineProperty(globalThis, "Buffer", saved);
      else delete (globalThis as { Buffer?: unknown }).Buffer;
    }
  })();
  return loading;
}

/** A fresh SHA-384 hasher on WebAssembly (init, update, digest). */
export async function createWasmSha384(): Promise<HashWasm.IHasher> {
  const { createSHA384 } = await loadHashWasm();
  return await createSHA384();
}
