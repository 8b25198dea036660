/**
 * AtomicFile flushes a large output to disk in the background while it is written, each time
 * through a handle of its own: the committed file holds every byte, a background flush leaves
 * no descriptor behind (an output waiting for its commit holds one), and committing or
 * aborting waits for the flush under way (descriptors counted in /proc on Linux).
 */
import { assertEquals } from "./assert.ts";
import { listDir } from "./helpers.ts";
import { pseudoRandomBytes } from "../scripts/fixtures.ts";
import { AtomicFile } from "../lib/io/atomic_file.ts";

const MIB = 1 << 20;

/** How many of this process's file descriptors name files in `dir` (Linux), or undefined. */
async function fdsInto(dir: string): Promise<number | undefined> {
  if (Deno.build.os !== "linux") return undefined;
  const out = await new Deno.Command("ls", { args: ["-l", `/proc/${Deno.pid}/fd`] }).output();
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.includes(`${dir}/`))
    .length;
}

/** Waits until `fdsInto(dir)` is `n` (up to 5 s); returns the last count. */
async function waitForFds(dir: string, n: number): Promise<number | undefined> {
  let now = await fdsInto(dir);
  for (let i = 0; i < 250 && now !== undefined && now !== n; i++) {
    await new Promise((r) => setTimeout(r, 20));
    now = await fdsInto(dir);
  }
  return now;
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("AtomicFile: an output flushed in the background as it is written commits every byte", async () => {
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-atomic-" });
  try {
    const path = `${dir}/out.igvm`;
    await Deno.writeFile(path, new Uint8Array(100).fill(7)); // the output it replaces
    const data = pseudoRandomBytes(21 * MIB + 123, 3);
    const out = await AtomicFile.create(path);
    // As the writer does: the data from an offset on, in pieces, then the headers at 0.
    const headers = 4096;
    for (let at = headers; at < data.length; at += MIB) {
      await out.writeAt(at, data.subarray(at, Math.min(at + MIB, data.length)));
    }
    await out.writeAt(0, data.subarray(0, headers));
    const open = await waitForFds(dir, 1);
    if (open !== undefined) assertEquals(open, 1, "the file's own handle, no flushing handle");
    await out.commit();
    assertEquals(await fdsInto(dir), open === undefined ? undefined : 0, "closed");
    assertEquals(await sha256(await Deno.readFile(path)), await sha256(data));
    assertEquals(listDir(dir), ["out.igvm"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("AtomicFile.abort() while a background flush runs leaves the old output and no file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-atomic-" });
  try {
    const path = `${dir}/out.igvm`;
    await Deno.writeFile(path, new Uint8Array(100).fill(7));
    const out = await AtomicFile.create(path);
    await out.writeAt(0, pseudoRandomBytes(9 * MIB, 4)); // past the background flush's mark
    await out.abort();
    const linux = Deno.build.os === "linux";
    assertEquals(await fdsInto(dir), linux ? 0 : undefined, "the file's handles are closed");
    assertEquals(listDir(dir), ["out.igvm"]);
    assertEquals(await Deno.readFile(path), new Uint8Array(100).fill(7));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("AtomicFile spool for -o -: found and removed when its folder (TMPDIR) was moved; the error names the spool", async () => {
  const base = await Deno.makeTempDir({ prefix: "igvmgen-atomic-" });
  const before = Deno.env.get("TMPDIR");
  try {
    await Deno.mkdir(`${base}/tmp`);
    Deno.env.set("TMPDIR", `${base}/tmp`);
    const spool = await AtomicFile.createSpool();
    await spool.writeAt(0, new Uint8Array(4096).fill(1));
    await Deno.rename(`${base}/tmp`, `${base}/moved`);
    const error = await spool.readBack(0, 16).then(() => undefined, (e: Error) => e.message);
    assertEquals(
      error,
      `cannot write the spool of standard output ${spool.tempPath} (in TMPDIR): its folder ` +
        `${base}/tmp was moved or removed while igvmgen wrote it`,
    );
    await spool.abort();
    assertEquals(listDir(`${base}/moved`), [], "the moved spool is removed");
  } finally {
    if (before === undefined) Deno.env.delete("TMPDIR");
    else Deno.env.set("TMPDIR", before);
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("AtomicFile: writes in sequence, out of order, over earlier bytes and after a gap land where they are put", async () => {
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-atomic-" });
  try {
    const path = `${dir}/out.bin`;
    const size = 64 * 1024;
    const expected = new Uint8Array(size);
    const out = await AtomicFile.create(path);
    // A fixed mix: runs of writes that follow each other (no seek needed), jumps back and
    // forward, a rewrite of bytes already written, and a write at 0 like the headers'.
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    let at = 4096;
    let end = 0;
    for (let i = 0; i < 200; i++) {
      const roll = next();
      if (roll < 0.25) at = Math.floor(next() * (size - 2048)); // jump anywhere
      else if (roll < 0.3) at = 0;
      const length = Math.min(1 + Math.floor(next() * 2048), size - at);
      const bytes = pseudoRandomBytes(length, i + 1);
      await out.writeAt(at, bytes);
      expected.set(bytes, at);
      at += length;
      end = Math.max(end, at);
      if (at >= size) at = 0;
    }
    await out.commit();
    const written = await Deno.readFile(path);
    // The file ends at the last byte written; bytes never written read as zero.
    assertEquals(written.length, end);
    assertEquals(await sha256(written), await sha256(expected.subarray(0, end)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("AtomicFile: a temporary file removed by hand is named as such, not as a moved folder", async () => {
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-atomic-" });
  try {
    const path = `${dir}/out.igvm`;
    const out = await AtomicFile.create(path);
    await out.writeAt(0, new Uint8Array(4096).fill(1));
    await Deno.remove(out.tempPath);
    const error = await out.commit().then(() => undefined, (e: Error) => e.message);
    assertEquals(
      error,
      `cannot write ${path}: its temporary file ${out.tempPath} was removed while igvmgen wrote it`,
    );
    await out.abort();
    assertEquals(listDir(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("outputs: a measurement file whose folder is moved before the commit gets one 'cannot write'", async () => {
  const { commitOutputs, openImageOutput, planOutputs } = await import(
    "../lib/io/output_target.ts"
  );
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-atomic-" });
  const cwd = Deno.cwd();
  try {
    await Deno.mkdir(`${dir}/json`);
    Deno.chdir(dir);
    const plan = await planOutputs({
      output: "o.igvm",
      measurementFile: "json/o.json",
      inputs: [],
    });
    const image = await openImageOutput(plan.image);
    await image.writeAt(0, new Uint8Array(4096).fill(2));
    await Deno.rename(`${dir}/json`, `${dir}/moved`);
    const error = await commitOutputs(plan, image, "{}").then(() => undefined, (e) => e.message);
    assertEquals(
      error,
      "cannot write json/o.json: the folder json does not exist",
    );
    assertEquals(listDir(dir), ["moved"], "no image without its JSON, no temporary file");
    assertEquals(listDir(`${dir}/moved`), []);
  } finally {
    Deno.chdir(cwd);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("AtomicFile: a folder moved and made anew at its path is a moved folder; errors name the output as given", async () => {
  const { commitOutputs, openImageOutput, planOutputs } = await import(
    "../lib/io/output_target.ts"
  );
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-atomic-" });
  try {
    await Deno.mkdir(`${dir}/real`);
    await Deno.symlink(`${dir}/real/out.igvm`, `${dir}/link.igvm`);
    const plan = await planOutputs({ output: `${dir}/link.igvm`, inputs: [] });
    const image = await openImageOutput(plan.image);
    await image.writeAt(0, new Uint8Array(4096).fill(3));
    await Deno.rename(`${dir}/real`, `${dir}/moved`);
    await Deno.mkdir(`${dir}/real`);
    const error = await commitOutputs(plan, image, undefined).then(() => undefined, (e) => e);
    assertEquals(
      error?.message,
      `cannot write ${dir}/link.igvm: its folder ${dir}/real was moved or removed while ` +
        "igvmgen wrote it",
    );
    assertEquals(listDir(`${dir}/moved`), [], "the moved temporary file is removed");
    assertEquals(listDir(`${dir}/real`), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
