/**
 * A run's outputs are put in place together or not at all: two runs to the same `-o` and
 * `-measurement_file` never leave one's image beside the other's JSON, `sign --matrix` takes
 * back what it renamed when a later output fails, and a temporary file beside an output is
 * removed even when its folder is moved while the run goes on.
 */
import { assert, assertEquals } from "./assert.ts";
import {
  FIXTURES,
  generateImage,
  HAVE_SHARED,
  listDir,
  mkfifo,
  runCli,
  tempDir,
} from "./helpers.ts";
import { makeBzImage, pseudoRandomBytes } from "../scripts/fixtures.ts";
import { taskCommand } from "./task_cli.ts";

const KEY = `${FIXTURES}test-key.pem`;

/** Waits until `test()` holds (polling), up to `ms`; returns whether it did. */
async function waitFor(test: () => boolean, ms = 30_000): Promise<boolean> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (test()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

/** The launch measurement in an IGVM file's measurement JSON and the one `measure` gives. */
async function pairOf(image: string, json: string): Promise<[string, string]> {
  const m = await runCli(["measure", image]);
  const fromJson = JSON.parse(Deno.readTextFileSync(json))["x-ms-sevsnpvm-launchmeasurement"];
  return [/[0-9a-f]{96}/.exec(m.stdout)?.[0] ?? m.stdout + m.stderr, fromJson];
}

Deno.test({
  name: "igvmgen: a run waits for another run's commit into the same folder (the folder is locked)",
  ignore: Deno.build.os !== "linux" || !HAVE_SHARED,
  async fn() {
    const dir = tempDir();
    Deno.mkdirSync(`${dir}/out`);
    Deno.writeFileSync(`${dir}/k`, makeBzImage());
    const args = ["-o", `${dir}/out/o.igvm`, "-kernel", `${dir}/k`, "-sign_key", KEY];
    const json = ["-measurement_file", `${dir}/out/m.json`];
    // Stand in for another run in the middle of its commit: hold the folder's lock.
    const folder = await Deno.open(`${dir}/out`, { read: true });
    await folder.lock(true);
    const run = runCli([...args, ...json, "-append", "a"]);
    try {
      // The temporary files appear, then nothing more while the lock is held.
      assert(await waitFor(() => listDir(`${dir}/out`).length >= 2), "temporary files appeared");
      await new Promise((r) => setTimeout(r, 1500));
      assert(!listDir(`${dir}/out`).includes("o.igvm"), "no output while another run commits");
    } finally {
      folder.close();
    }
    const r = await run;
    assertEquals(r.code, 0, r.stderr);
    assertEquals(listDir(`${dir}/out`), ["m.json", "o.igvm"]);
    const [image, fromJson] = await pairOf(`${dir}/out/o.igvm`, `${dir}/out/m.json`);
    assertEquals(image, fromJson);
  },
});

Deno.test({
  name: "igvmgen: a folder lock another program keeps is not waited for without end",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const dir = tempDir();
    Deno.mkdirSync(`${dir}/out`);
    Deno.writeFileSync(`${dir}/k`, makeBzImage());
    const folder = await Deno.open(`${dir}/out`, { read: true });
    await folder.lock(true);
    try {
      const started = performance.now();
      const r = await runCli(["-o", `${dir}/out/o.igvm`, "-kernel", `${dir}/k`]);
      assertEquals(r.code, 0, r.stderr);
      assert(performance.now() - started < 30_000);
      assertEquals(listDir(`${dir}/out`), ["o.igvm"]);
    } finally {
      folder.close();
    }
  },
});

Deno.test({
  name: "igvmgen: concurrent runs to the same -o and -measurement_file leave a matching pair",
  ignore: !HAVE_SHARED,
  async fn() {
    const dir = tempDir();
    Deno.writeFileSync(`${dir}/k`, makeBzImage());
    for (let round = 0; round < 3; round++) {
      const runs = ["console=ttyS0", "console=ttyS1", "quiet"].map((append) =>
        runCli([
          "-o",
          `${dir}/o.igvm`,
          "-measurement_file",
          `${dir}/m.json`,
          "-kernel",
          `${dir}/k`,
          "-sign_key",
          KEY,
          "-append",
          append,
        ])
      );
      for (const r of await Promise.all(runs)) assertEquals(r.code, 0, r.stderr);
      const [image, fromJson] = await pairOf(`${dir}/o.igvm`, `${dir}/m.json`);
      assertEquals(image, fromJson, `round ${round}`);
      assertEquals(listDir(dir), ["k", "m.json", "o.igvm"]);
    }
  },
});

Deno.test({
  name: "igvmgen sign --matrix whose last output fails takes back the outputs already in place",
  ignore: Deno.build.os !== "linux" || !HAVE_SHARED,
  async fn() {
    const dir = tempDir();
    Deno.writeFileSync(`${dir}/in.igvm`, await generateImage(["-target", "qemu-kvm"]));
    Deno.writeTextFileSync(`${dir}/g-2-milan.igvm`, "an older output, kept");
    mkfifo(`${dir}/blocks.fifo`);
    const run = runCli([
      "sign",
      `${dir}/in.igvm`,
      "--matrix",
      "--vcpus",
      "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16", // ID blocks of more than a pipe's buffer
      "--cpu",
      "milan",
      "-sign_key",
      KEY,
      "-o",
      `${dir}/g-{vcpus}-{cpu}.igvm`,
      "--id-blocks-out",
      `${dir}/blocks.fifo`,
    ]);
    // The reader goes away without reading: the last output (the JSON into the FIFO) fails.
    (await Deno.open(`${dir}/blocks.fifo`, { read: true })).close();
    const r = await run;
    assertEquals(r.code, 1, r.stderr);
    assertEquals(listDir(dir), ["blocks.fifo", "g-2-milan.igvm", "in.igvm"]);
    assertEquals(Deno.readTextFileSync(`${dir}/g-2-milan.igvm`), "an older output, kept");
  },
});

for (const end of ["its end", "SIGINT"] as const) {
  Deno.test({
    name: `igvmgen -o DIR/o.igvm with DIR moved mid-run, then ${end}: no temporary file left`,
    ignore: Deno.build.os !== "linux",
    async fn() {
      const dir = tempDir();
      Deno.mkdirSync(`${dir}/out`);
      Deno.mkdirSync(`${dir}/tmp`);
      Deno.writeFileSync(`${dir}/k`, makeBzImage());
      // A big, mostly sparse initrd keeps the run busy for a while.
      const f = await Deno.open(`${dir}/rd`, { write: true, create: true });
      await f.write(pseudoRandomBytes(16 << 20, 11));
      await f.truncate(384 << 20);
      f.close();
      const child = taskCommand(
        ["-o", `${dir}/out/o.igvm`, "-kernel", `${dir}/k`, "-rdinit", `${dir}/rd`],
        { env: { TMPDIR: `${dir}/tmp` }, stdout: "null" },
      ).spawn();
      assert(
        await waitFor(() => listDir(`${dir}/out`).length > 0),
        "the temporary output appeared",
      );
      Deno.renameSync(`${dir}/out`, `${dir}/moved`);
      if (end === "SIGINT") {
        await new Promise((r) => setTimeout(r, 100));
        child.kill("SIGINT");
      }
      const out = await child.output();
      const stderr = new TextDecoder().decode(out.stderr);
      if (end === "SIGINT") assertEquals(out.code, 130, stderr);
      else {
        assertEquals(out.code, 1, stderr);
        assert(/out was moved or removed/.test(stderr), stderr);
      }
      assertEquals(listDir(`${dir}/moved`), [], stderr);
      assertEquals(listDir(`${dir}/tmp`), []);
    },
  });
}

Deno.test("flushImageFile() flushes and closes an image bound for a file before its commit; a spool for a stream stays open", async () => {
  const { commitOutputs, flushImageFile, openImageOutput, planOutputs } = await import(
    "../lib/io/output_target.ts"
  );
  const dir = tempDir();
  const plan = await planOutputs({ output: `${dir}/o.bin`, inputs: [] });
  const out = await openImageOutput(plan.image);
  await out.writeAt(0, new Uint8Array([1, 2, 3]));
  await flushImageFile(plan.image, out);
  let refused = false;
  await out.writeAt(3, new Uint8Array([4])).catch(() => refused = true);
  assert(refused, "the flushed image is closed: no write after it");
  assertEquals(listDir(dir).length, 1, "only the temporary file, not yet in place");
  await commitOutputs(plan, out, undefined);
  assertEquals([...Deno.readFileSync(`${dir}/o.bin`)], [1, 2, 3]);
  assertEquals(listDir(dir), ["o.bin"]);

  const chunks: Uint8Array[] = [];
  const stdout = new WritableStream<Uint8Array>({ write: (c) => void chunks.push(c) });
  const toStdout = await planOutputs({ output: "-", inputs: [], stdout });
  const spool = await openImageOutput(toStdout.image);
  await spool.writeAt(0, new Uint8Array([5]));
  await flushImageFile(toStdout.image, spool);
  await spool.writeAt(1, new Uint8Array([6]));
  await commitOutputs(toStdout, spool, undefined, stdout);
  assertEquals(chunks.flatMap((c) => [...c]), [5, 6]);
});

Deno.test("AtomicFile.abort() after a commit, a swap into place or a copy out removes nothing: its temporary path may name another file by then", async () => {
  const { AtomicFile } = await import("../lib/io/atomic_file.ts");
  const dir = tempDir();
  const stranger = new Uint8Array([9, 9]);
  const placeAnotherFileAt = (path: string) => Deno.writeFileSync(path, stranger);
  const committed = await AtomicFile.create(`${dir}/a.bin`);
  await committed.writeAt(0, new Uint8Array([1]));
  await committed.commit();
  const swapped = await AtomicFile.create(`${dir}/b.bin`);
  await swapped.writeAt(0, new Uint8Array([2]));
  await (await swapped.swapIn()).keep();
  const spool = await AtomicFile.createSpool();
  await spool.writeAt(0, new Uint8Array([3]));
  const chunks: Uint8Array[] = [];
  await spool.commitTo(new WritableStream({ write: (c) => void chunks.push(c) }));
  for (const file of [committed, swapped, spool]) {
    placeAnotherFileAt(file.tempPath);
    await file.abort();
    assertEquals([...Deno.readFileSync(file.tempPath)], [...stranger], file.tempPath);
    Deno.removeSync(file.tempPath);
  }
  assertEquals([...Deno.readFileSync(`${dir}/a.bin`)], [1]);
  assertEquals([...Deno.readFileSync(`${dir}/b.bin`)], [2]);
  assertEquals(chunks.flatMap((c) => [...c]), [3]);
  // Before any commit, abort() removes the temporary file as it always did.
  const dropped = await AtomicFile.create(`${dir}/c.bin`);
  await dropped.writeAt(0, new Uint8Array([4]));
  await dropped.abort();
  assertEquals(listDir(dir).sort(), ["a.bin", "b.bin"]);
});
