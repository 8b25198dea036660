/** The page hash pool (Workers) and the writer's ways of hashing give the same bytes. */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { PageHashPool } from "../lib/hash/hash_pool.ts";
import type { ByteSink } from "../lib/io/byte_stream.ts";
import { writeIgvm } from "../lib/write/igvm_writer.ts";
import type { GuestImage } from "../lib/layout/guest_image.ts";
import { SparseMemory } from "../lib/layout/sparse_memory.ts";
import { bytesReader } from "../lib/io/file_reader.ts";
import { toHex } from "../lib/bytes/le.ts";
import { pseudoRandomBytes } from "../scripts/fixtures.ts";

const PAGE = 4096;

Deno.test("PageHashPool.hash() gives WebCrypto's SHA-384 of measured pages and zero flags", async () => {
  const pool = new PageHashPool(2);
  try {
    await pool.ready;
    const pages = 40;
    const bytes = pseudoRandomBytes(pages * PAGE, 7);
    bytes.fill(0, 3 * PAGE, 4 * PAGE); // page 3 is all zero
    const measured = new Uint8Array(pages).fill(1);
    measured[5] = 0; // page 5 is not measured: no digest
    const copy = bytes.slice();
    const reply = await pool.hash(bytes.buffer as ArrayBuffer, pages, measured);
    assertEquals(bytes.byteLength, 0, "the buffer was transferred, not copied");
    assertEquals(toHex(new Uint8Array(reply.buffer)), toHex(copy), "the buffer comes back intact");
    for (let i = 0; i < pages; i++) {
      const page = copy.subarray(i * PAGE, (i + 1) * PAGE);
      assertEquals(reply.zero[i], i === 3 ? 1 : 0, `zero flag of page ${i}`);
      const want = i === 3 || i === 5
        ? "00".repeat(48)
        : toHex(new Uint8Array(await crypto.subtle.digest("SHA-384", page)));
      assertEquals(toHex(reply.digests.subarray(i * 48, (i + 1) * 48)), want, `page ${i}`);
    }
  } finally {
    pool.close();
  }
});

Deno.test("PageHashPool.close() terminates the workers and fails later and pending work", async () => {
  const pool = new PageHashPool(1);
  const pending = pool.hash(new ArrayBuffer(64 * PAGE), 64, new Uint8Array(64).fill(1));
  pool.close();
  await assertRejects(() => pending, Error, "closed");
  await assertRejects(
    () => pool.hash(new ArrayBuffer(PAGE), 1, new Uint8Array(1)),
    Error,
    "closed",
  );
  pool.close(); // twice is fine
});

Deno.test("PageHashPool.saturated() counts the batches each worker holds", async () => {
  const pool = new PageHashPool(2);
  try {
    await pool.ready;
    const batch = () => pool.hash(new ArrayBuffer(8 * PAGE), 8, new Uint8Array(8).fill(1));
    assert(!pool.saturated(1), "idle workers");
    const first = [batch(), batch()]; // one each: the least loaded worker takes the next
    assert(pool.saturated(1) && !pool.saturated(2));
    const second = [batch(), batch()];
    assert(pool.saturated(2));
    await Promise.all([...first, ...second]);
    assert(!pool.saturated(1), "every batch came back");
  } finally {
    pool.close();
  }
});

/** A sink that keeps the file in memory. */
function memorySink(): ByteSink & { bytes(): Uint8Array } {
  const parts: { offset: number; bytes: Uint8Array }[] = [];
  return {
    writeAt(offset, bytes) {
      parts.push({ offset, bytes: bytes.slice() });
      return Promise.resolve();
    },
    bytes() {
      const size = Math.max(...parts.map((p) => p.offset + p.bytes.length));
      const out = new Uint8Array(size);
      for (const p of parts) out.set(p.bytes, p.offset);
      return out;
    },
  };
}

/**
 * A guest of 6 MiB: generated pages (some inside the streamed range's neighbourhood), a
 * streamed range of 3 MiB + 100 bytes with zero pages in it (so batches of 128 and 512 pages
 * both cross it, and its last page is partial), a guest-invalid range and a hole.
 */
function testImage(initrd: Uint8Array): GuestImage {
  const memory = new SparseMemory();
  memory.write(0x1000, new Uint8Array([1, 2, 3]));
  memory.write(0x3000, new Uint8Array([9])); // VMSA
  memory.write(0x4000, new Uint8Array([7])); // CPUID
  memory.write(0x5ff000, new Uint8Array([5]));
  return {
    top: 6 << 20,
    holes: [{ start: 0x80000, end: 0x90000 }],
    vmsaPage: 0x3000,
    cpuidPage: 0x4000,
    secretsPage: 0x5000,
    paramPage: 0x6000,
    guestInvalid: [{ start: 0x500000, end: 0x520000 }],
    regions: [{
      name: "test initrd",
      gpa: 0x100000,
      length: initrd.length,
      open: () => Promise.resolve(bytesReader(initrd)),
    }],
    memory,
    highestVtl: 2,
  };
}

Deno.test("writeIgvm() writes the same file hashing on this thread, in Workers, and in both", async () => {
  const initrd = pseudoRandomBytes(3 * 1024 * 1024 + 100, 11);
  initrd.fill(0, 0x20000, 0x23000); // three zero pages in the stream
  const sign = (d: Uint8Array) => Promise.resolve(d.slice()); // the digest stands for the block
  const outs = [];
  for (const hashing of ["thread", "workers", "shared"] as const) {
    const sink = memorySink();
    const w = await writeIgvm(testImage(initrd), sink, sign, 0x30000n, undefined, { hashing });
    outs.push({ digest: toHex(w.launchDigest), file: await sha256(sink.bytes()), w });
  }
  for (const o of outs.slice(1)) {
    assertEquals(o.digest, outs[0].digest);
    assertEquals(o.file, outs[0].file);
    assertEquals(o.w.dataPages, outs[0].w.dataPages);
  }
  assert(outs[0].w.dataPages < outs[0].w.pageCount, "zero pages carry no data");
});

Deno.test("writeIgvm() shares a large input's hashing between Workers and this thread in order", async () => {
  // 40 MiB: this thread hashes while the workers start and whenever they are saturated, so
  // batches hashed here and there interleave; the file must be byte for byte the same.
  const initrd = pseudoRandomBytes(40 << 20, 12);
  initrd.fill(0, 0x20000, 0x23000);
  const small = testImage(initrd);
  const image = { ...small, top: 50 << 20, regions: [{ ...small.regions[0], gpa: 8 << 20 }] };
  const sign = (d: Uint8Array) => Promise.resolve(d.slice());
  const files = [];
  for (const hashing of ["thread", "shared"] as const) {
    const sink = memorySink();
    const w = await writeIgvm(image, sink, sign, 0x30000n, undefined, { hashing });
    files.push(`${toHex(w.launchDigest)} ${await sha256(sink.bytes())}`);
  }
  assertEquals(files[1], files[0]);
});

Deno.test("writeIgvm() with Workers stops them when the input fails", async () => {
  const image = testImage(new Uint8Array(3 << 20));
  const short = { ...image.regions[0], length: 4 << 20 }; // claims more than it has
  await assertRejects(
    () =>
      writeIgvm(
        { ...image, regions: [short] },
        memorySink(),
        (d) => Promise.resolve(d),
        0n,
        undefined,
        { hashing: "workers" },
      ),
    Error,
    "ended early",
  );
});

Deno.test("writeIgvm() leaves no worker running, after success or failure (the process ends)", async () => {
  // A live worker keeps a Deno process running, so a script that writes with Workers must end
  // by itself. Deno's test sanitizers do not see workers; a subprocess does.
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-pool-test-" });
  try {
    const script = `${dir}/run.ts`;
    const lib = new URL("../lib/", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { writeIgvm } from "${lib}write/igvm_writer.ts";
import { SparseMemory } from "${lib}layout/sparse_memory.ts";
import { bytesReader } from "${lib}io/file_reader.ts";
const image = (length: number) => ({
  top: 4 << 20, holes: [], vmsaPage: 0x3000, cpuidPage: 0x4000, secretsPage: 0x5000,
  paramPage: 0x6000, guestInvalid: [], memory: new SparseMemory(), highestVtl: 2,
  regions: [{ name: "r", gpa: 0x100000, length,
    open: () => Promise.resolve(bytesReader(new Uint8Array(1 << 20).fill(1))) }],
});
const sink = { writeAt: () => Promise.resolve() };
const sign = (d: Uint8Array) => Promise.resolve(d);
await writeIgvm(image(1 << 20), sink, sign, 0n, undefined, { hashing: "workers" });
await writeIgvm(image(2 << 20), sink, sign, 0n, undefined, { hashing: "workers" })
  .catch((e) => console.log("failed:", e.message));
console.log("end");
`,
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-read",
        "--config",
        new URL("../deno.json", import.meta.url).pathname,
        script,
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => child.kill(), 20_000);
    const out = await child.output();
    clearTimeout(timer);
    const text = new TextDecoder().decode(out.stdout);
    const err = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, `the process did not end by itself: ${text} ${err}`);
    assert(text.includes("failed: r ended early"), text);
    assert(text.includes("end"), text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function sha256(bytes: Uint8Array): Promise<string> {
  return toHex(
    new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>)),
  );
}
