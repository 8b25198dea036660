/** Inputs that deliver nothing (an empty pipe, standard input, a spent stream) are errors. */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { makeBzImage } from "../scripts/fixtures.ts";
import { generate, InputError } from "../mod.ts";
import { listDir, mkfifo, runCli, tempDir } from "./helpers.ts";

/** A stream read to its end already. */
async function spentStream(): Promise<ReadableStream<Uint8Array>> {
  const stream = new Blob([new Uint8Array([1, 2, 3])]).stream();
  const reader = stream.getReader();
  while (!(await reader.read()).done) { /* read it all */ }
  reader.releaseLock();
  return stream;
}

Deno.test("igvmgen -rdinit /dev/stdin with an empty standard input fails, writing nothing", async () => {
  const dir = tempDir();
  Deno.writeFileSync(`${dir}/k`, makeBzImage());
  const r = await runCli(
    ["-o", `${dir}/o.igvm`, "-kernel", `${dir}/k`, "-rdinit", "/dev/stdin"],
    new Uint8Array(0),
  );
  assertEquals(r.code, 1, r.stderr);
  assert(/-rdinit \/dev\/stdin delivered no bytes/.test(r.stderr), r.stderr);
  assertEquals(listDir(dir), ["k"]);
});

Deno.test("igvmgen -rdinit FIFO and -shared_payload FIFO fail when the writer sends nothing", async () => {
  const dir = tempDir();
  Deno.writeFileSync(`${dir}/k`, makeBzImage());
  Deno.writeFileSync(`${dir}/p`, new Uint8Array(4096).fill(7));
  for (
    const args of [
      ["-rdinit", `${dir}/fifo`],
      ["-inform", "bzImage2", "-rdinit", `${dir}/p`, "-shared_payload", `${dir}/fifo`],
    ]
  ) {
    mkfifo(`${dir}/fifo`);
    const run = runCli(["-o", `${dir}/o.igvm`, "-kernel", `${dir}/k`, ...args]);
    (await Deno.open(`${dir}/fifo`, { write: true })).close(); // opened and closed: no bytes
    const r = await run;
    assertEquals(r.code, 1, r.stderr);
    assert(r.stderr.includes(`${dir}/fifo delivered no bytes`), r.stderr);
    Deno.removeSync(`${dir}/fifo`);
    assertEquals(listDir(dir), ["k", "p"]);
  }
});

Deno.test("generate() refuses an initrd or payload stream already read to its end", async () => {
  const dir = tempDir();
  Deno.writeFileSync(`${dir}/k`, makeBzImage());
  await assertRejects(
    async () =>
      await generate({
        output: `${dir}/o.igvm`,
        kernel: `${dir}/k`,
        initrd: { stream: await spentStream(), name: "the initrd stream" },
      }),
    InputError,
    "the initrd stream delivered no bytes",
  );
  await assertRejects(
    async () =>
      await generate({
        output: `${dir}/o.igvm`,
        kernel: `${dir}/k`,
        kernelFormat: "bzImage2",
        initrd: `${dir}/k`,
        sharedPayload: await spentStream(),
      }),
    InputError,
    "delivered no bytes",
  );
  assertEquals(listDir(dir), ["k"]);
});
