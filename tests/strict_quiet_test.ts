/**
 * `--strict` makes every warning about a broken image an error; `--quiet` silences progress,
 * notes and the success line, never a warning.
 */
import { assert, assertEquals } from "./assert.ts";
import { makeBzImage } from "../scripts/fixtures.ts";
import { listDir, runCli, tempDir } from "./helpers.ts";

/** A bzImage cut short: its header announces 64 KiB of payload, it holds 32 KiB. */
function truncatedKernel(): Uint8Array {
  const whole = makeBzImage({ payloadLength: 64 << 10 });
  return whole.subarray(0, whole.length - (32 << 10));
}

const LONG_CMDLINE = "x".repeat(3000); // the synthetic kernel's cmdline_size is 2047

Deno.test("igvmgen --strict with a truncated kernel fails, naming the kernel, and writes nothing", async () => {
  const dir = tempDir();
  Deno.writeFileSync(`${dir}/k`, truncatedKernel());
  const lax = await runCli(["-o", `${dir}/lax.igvm`, "-kernel", `${dir}/k`]);
  assertEquals(lax.code, 0, lax.stderr);
  assert(/warning: .*looks truncated/.test(lax.stderr), lax.stderr);
  const strict = await runCli(["-o", `${dir}/o.igvm`, "-kernel", `${dir}/k`, "--strict"]);
  assertEquals(strict.code, 1, strict.stderr);
  assert(
    /^error: kernel .*\/k has 32768 payload bytes.*truncated/.test(strict.stderr),
    strict.stderr,
  );
  assertEquals(strict.stderr.trim().split("\n").length, 1, strict.stderr);
  assertEquals(listDir(dir), ["k", "lax.igvm"]);
});

Deno.test("igvmgen --quiet prints no success line but still every warning", async () => {
  const dir = tempDir();
  Deno.writeFileSync(`${dir}/k`, truncatedKernel());
  const r = await runCli([
    "-o",
    `${dir}/o.igvm`,
    "-kernel",
    `${dir}/k`,
    "-append",
    LONG_CMDLINE,
    "--quiet",
  ]);
  assertEquals(r.code, 0, r.stderr);
  assert(/warning: -append is 3000 bytes/.test(r.stderr), r.stderr);
  assert(/warning: .*looks truncated/.test(r.stderr), r.stderr);
  assert(!/wrote|fresh random/.test(r.stderr), r.stderr);
  assertEquals(r.stdout, "");
  // A clean run under --quiet prints nothing at all.
  Deno.writeFileSync(`${dir}/good`, makeBzImage());
  const clean = await runCli(["-o", `${dir}/o.igvm`, "-kernel", `${dir}/good`, "--quiet"]);
  assertEquals([clean.code, clean.stdout, clean.stderr], [0, "", ""]);
});
