/** Helpers of the KVM loader tests: in-memory file access, collecting launch updates. */
import type { FileAccess } from "../lib/io/file_reader.ts";
import type { LaunchUpdate } from "../lib/measure/launch_update.ts";

/** A FileAccess over bytes in memory. */
export function bytesAccess(bytes: Uint8Array): FileAccess {
  return {
    size: bytes.length,
    readAt: (offset, length) => Promise.resolve(bytes.slice(offset, offset + length)),
  };
}

/** Collects a loader's updates. */
export async function updatesOf(iter: AsyncIterable<LaunchUpdate>): Promise<LaunchUpdate[]> {
  const out: LaunchUpdate[] = [];
  for await (const u of iter) out.push(u);
  return out;
}
