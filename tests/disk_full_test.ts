/**
 * A full disk while writing: the writer awaits and reports every write (no unhandled
 * rejection, no stack), and the CLI removes every temporary file. The CLI case uses a real
 * 4 MiB tmpfs when the test may mount one (root on Linux); otherwise it says why it skips.
 */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { listDir } from "./helpers.ts";
import { makeBzImage, pseudoRandomBytes } from "../scripts/fixtures.ts";
import { oneLineError, runTask } from "./task_cli.ts";
import type { ByteSink } from "../lib/io/byte_stream.ts";
import { writeIgvm } from "../lib/write/igvm_writer.ts";
import { SparseMemory } from "../lib/layout/sparse_memory.ts";
import type { GuestImage } from "../lib/layout/guest_image.ts";
import { bytesReader } from "../lib/io/file_reader.ts";
import { AtomicFile } from "../lib/io/atomic_file.ts";
import { liveTemps } from "../lib/io/temp_files.ts";

/** A small image: 4 special pages, then `dataBytes` of streamed, non-zero data. */
function imageWith(dataBytes: number): GuestImage {
  const data = pseudoRandomBytes(dataBytes, 5);
  const start = 0x10_0000;
  return {
    top: start + dataBytes,
    holes: [{ start: 0x4000, end: start }],
    cpuidPage: 0,
    secretsPage: 0x1000,
    paramPage: 0x2000,
    vmsaPage: 0x3000,
    guestInvalid: [],
    regions: [{
      name: "data",
      gpa: start,
      length: dataBytes,
      open: () => Promise.resolve(bytesReader(data)),
    }],
    memory: new SparseMemory(),
    highestVtl: 2,
  };
}

const ENOSPC = () => new Error("No space left on device (os error 28)");

/** A sink that accepts `capacity` bytes of data, then fails (now, or after a delay). */
class FullSink implements ByteSink {
  written = 0;
  writes = 0;
  pending = 0;
  /** Writes started after one had failed. */
  afterFailure = 0;
  #failed = false;
  constructor(private capacity: number, private delayMs = 0) {}
  async writeAt(_offset: number, bytes: Uint8Array): Promise<void> {
    this.writes++;
    if (this.#failed) this.afterFailure++;
    this.pending++;
    try {
      if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
      if (this.written + bytes.length > this.capacity) {
        this.#failed = true;
        throw ENOSPC();
      }
      this.written += bytes.length;
    } finally {
      this.pending--;
    }
  }
}

const sign = () => Promise.resolve(new Uint8Array(0x2b8 - 8));

Deno.test("writeIgvm() reports a sink that fails mid-write, and leaves no write running", async () => {
  for (const delayMs of [0, 20]) {
    const sink = new FullSink(6 << 20, delayMs);
    // An unhandled rejection would fail this test on its own (Deno's test sanitizers).
    await assertRejects(
      () => writeIgvm(imageWith(32 << 20), sink, sign, 0x3001fn),
      Error,
      "No space left on device",
    );
    assertEquals(sink.pending, 0, "every write settled before writeIgvm returned");
    assertEquals(sink.afterFailure, 0, `stopped at the first failure (${sink.writes} writes)`);
  }
});

Deno.test("writeIgvm() reports a failing write of the headers at the end", async () => {
  class HeaderFails implements ByteSink {
    writeAt(offset: number): Promise<void> {
      return offset === 0 ? Promise.reject(ENOSPC()) : Promise.resolve();
    }
  }
  await assertRejects(
    () => writeIgvm(imageWith(1 << 20), new HeaderFails(), sign, 0x3001fn),
    Error,
    "No space left on device",
  );
});

Deno.test("AtomicFile registers its temp file for signals; abort removes and unregisters it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-atomic-" });
  try {
    const f = await AtomicFile.create(`${dir}/out.igvm`);
    assert(liveTemps().includes(f.tempPath), "the temp file is registered for signals");
    await f.abort();
    assertEquals(listDir(dir), []);
    assert(!liveTemps().includes(f.tempPath), "and unregistered once removed");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Mounts a tmpfs of `size` at a fresh folder; undefined (with the reason) when not allowed. */
async function mountTmpfs(size: string): Promise<{ dir: string } | { skip: string }> {
  if (Deno.build.os !== "linux") return { skip: "tmpfs needs Linux" };
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-tmpfs-" });
  try {
    const r = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (r.success) return { dir };
    await Deno.remove(dir);
    return { skip: `mount failed: ${new TextDecoder().decode(r.stderr).trim()}` };
  } catch (e) {
    await Deno.remove(dir);
    return { skip: `cannot run mount: ${(e as Error).message}` };
  }
}

async function unmount(dir: string): Promise<void> {
  await new Deno.Command("umount", { args: [dir], stdout: "null", stderr: "null" }).output();
  await Deno.remove(dir);
}

Deno.test("igvmgen on a full 4 MiB tmpfs: one line, no temp file, the old output untouched", async () => {
  const mounted = await mountTmpfs("4m");
  if ("skip" in mounted) {
    console.log(`note: disk-full test skipped (${mounted.skip})`);
    return;
  }
  const inputs = await Deno.makeTempDir({ prefix: "igvmgen-fullin-" });
  try {
    const full = mounted.dir;
    await Deno.writeFile(`${inputs}/k`, makeBzImage());
    await Deno.writeFile(`${inputs}/rd`, pseudoRandomBytes(8 << 20, 9));
    await Deno.writeTextFile(`${full}/out.igvm`, "previous");
    const args = ["-kernel", `${inputs}/k`, "-rdinit", `${inputs}/rd`];
    const r = await runTask(["-o", `${full}/out.igvm`, ...args]);
    oneLineError(r, 1, `cannot write ${full}/out.igvm: no space left on device`);
    assertEquals(listDir(full), ["out.igvm"]);
    assertEquals(await Deno.readTextFile(`${full}/out.igvm`), "previous");
    // The same with -o - when the spool's folder is full: the spool is removed too.
    await Deno.remove(`${full}/out.igvm`);
    const s = await runTask(["-o", "-", ...args], { env: { TMPDIR: full } });
    oneLineError(s, 1, "no space left on device");
    assertEquals(s.stdout.length, 0);
    assertEquals(listDir(full), []);
    // A spooled initrd (standard input) on a full temporary folder.
    const p = await runTask([
      "-o",
      `${inputs}/o.igvm`,
      "-kernel",
      `${inputs}/k`,
      "-rdinit",
      "/dev/stdin",
    ], {
      env: { TMPDIR: full },
      stdin: await Deno.readFile(`${inputs}/rd`),
    });
    oneLineError(p, 1, "no space left on device");
    assertEquals(listDir(full), []);
    assertEquals(listDir(inputs), ["k", "rd"]);
  } finally {
    await unmount(mounted.dir);
    await Deno.remove(inputs, { recursive: true });
  }
});
