/** A progress bar on stderr for long runs: bytes done, rate and time left. */
import { emittedRuns } from "../layout/guest_allocator.ts";
import type { GuestImage } from "../layout/guest_image.ts";
import { PAGE_SIZE } from "../bytes/le.ts";

/** Images smaller than this get no progress bar. */
export const PROGRESS_MIN_BYTES = 64 << 20;

const MiB = 1 << 20;

/** Renders one progress line. */
export function progressLine(done: number, total: number, seconds: number, width = 30): string {
  const fraction = total > 0 ? Math.min(1, done / total) : 1;
  const filled = Math.round(fraction * width);
  const rate = seconds > 0 ? done / seconds : 0;
  const eta = rate > 0 ? Math.ceil((total - done) / rate) : 0;
  return `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${(done / MiB).toFixed(0)}/${
    (total / MiB).toFixed(0)
  } MiB` +
    `  ${(rate / MiB).toFixed(0)} MiB/s  ${fraction < 1 ? `${eta}s left` : "done"}`;
}

/**
 * A progress callback for `image` writing to `write`, or undefined when the image is small.
 * Redraws at most ten times a second; ends the line when done.
 */
export function progressFor(image: GuestImage, write: (text: string) => void) {
  const total = emittedRuns(image.top, image.holes).reduce((n, r) => n + (r.end - r.start), 0);
  if (total < PROGRESS_MIN_BYTES) return undefined;
  const start = performance.now();
  let last = 0;
  return (pagesDone: number, pageCount: number) => {
    const now = performance.now();
    const finished = pagesDone >= pageCount;
    if (!finished && now - last < 100) return;
    last = now;
    write(
      `\r${progressLine(pagesDone * PAGE_SIZE, pageCount * PAGE_SIZE, (now - start) / 1000)}${
        finished ? "\n" : ""
      }`,
    );
  };
}
