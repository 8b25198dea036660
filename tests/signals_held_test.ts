/** withSignalsHeld(): a termination signal during a commit takes effect when it ends. */
import { assertEquals } from "./assert.ts";
import { onTerminationSignal, withSignalsHeld } from "../lib/io/signals.ts";

/** Waits for `p`, with a timer that keeps the event loop alive until the signal arrives. */
async function within<T>(p: Promise<T>, ms = 5000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("no signal arrived")), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test({
  name: "withSignalsHeld(): a SIGHUP during the commit is acted on after it, not in the middle",
  ignore: Deno.build.os === "windows",
  async fn() {
    const events: string[] = [];
    let signalled!: () => void;
    const handled = new Promise<void>((resolve) => signalled = resolve);
    const stop = onTerminationSignal((signal) => {
      events.push(`handled ${signal}`);
      signalled();
    });
    try {
      await withSignalsHeld(async () => {
        events.push("first rename");
        Deno.kill(Deno.pid, "SIGHUP");
        await new Promise((r) => setTimeout(r, 100)); // the signal arrives meanwhile
        events.push("last rename");
      });
      await within(handled);
      assertEquals(events, ["first rename", "last rename", "handled SIGHUP"]);
      // Outside a commit the signal acts at once.
      events.length = 0;
      const again = new Promise<void>((resolve) => signalled = resolve);
      Deno.kill(Deno.pid, "SIGHUP");
      await within(again);
      assertEquals(events, ["handled SIGHUP"]);
    } finally {
      stop();
    }
  },
});
