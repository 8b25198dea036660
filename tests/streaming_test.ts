/** Streaming inputs and outputs: pipes, spools, standard output, progress. */
import { assert, assertEquals } from "./assert.ts";
import { progressLine } from "../lib/cli/progress.ts";
import { makeBzImage, pseudoRandomBytes } from "../scripts/fixtures.ts";
import { listDir, runCli, sha256Hex, tempDir } from "./helpers.ts";

Deno.test("progressLine() shows MiB done, rate and time left", () => {
  assertEquals(progressLine(0, 100 << 20, 0, 10), "[..........] 0/100 MiB  0 MiB/s  0s left");
  assertEquals(
    progressLine(50 << 20, 100 << 20, 1, 10),
    "[#####.....] 50/100 MiB  50 MiB/s  1s left",
  );
  assertEquals(
    progressLine(100 << 20, 100 << 20, 2, 10),
    "[##########] 100/100 MiB  50 MiB/s  done",
  );
});

Deno.test("igvmgen -rdinit /dev/stdin (a pipe) gives the same file as the initrd on disk", async () => {
  const dir = tempDir();
  const initrd = pseudoRandomBytes(3 * 1024 * 1024 + 123, 42);
  Deno.writeFileSync(`${dir}/k`, makeBzImage());
  Deno.writeFileSync(`${dir}/initrd`, initrd);
  const key = `${dir}/key.pem`;
  const { generateKeyPairSync } = await import("node:crypto");
  Deno.writeTextFileSync(
    key,
    generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey.export({
      format: "pem",
      type: "pkcs8",
    }).toString(),
  );
  const common = [
    "-kernel",
    `${dir}/k`,
    "-sign_key",
    key,
    "-sign_deterministic",
    "1",
    "-append",
    "x",
  ];
  const a = await runCli(["-o", `${dir}/a.igvm`, ...common, "-rdinit", `${dir}/initrd`]);
  const b = await runCli(["-o", `${dir}/b.igvm`, ...common, "-rdinit", "/dev/stdin"], initrd);
  assertEquals([a.code, b.code], [0, 0], a.stderr + b.stderr);
  assertEquals(
    sha256Hex(Deno.readFileSync(`${dir}/b.igvm`)),
    sha256Hex(Deno.readFileSync(`${dir}/a.igvm`)),
  );
  const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
  assert(!listDir(tmp).some((n) => n.startsWith("igvmgen-spool-")), "spool files are removed");
});

Deno.test("igvmgen -o - writes the image to standard output and nothing else there", async () => {
  const dir = tempDir();
  Deno.writeFileSync(`${dir}/k`, makeBzImage());
  const r = await runCli(["-o", "-", "-kernel", `${dir}/k`, "-measurement_file", `${dir}/m.json`]);
  assertEquals(r.code, 0, r.stderr);
  const magic = new DataView(r.stdoutBytes.buffer, r.stdoutBytes.byteOffset).getUint32(0, true);
  assertEquals(magic, 0x4d564749);
  assertEquals(
    new DataView(r.stdoutBytes.buffer, r.stdoutBytes.byteOffset).getUint32(16, true),
    r.stdoutBytes.length,
  );
  assert(Deno.statSync(`${dir}/m.json`).isFile);
});

Deno.test("igvmgen -o - failing writes nothing to standard output", async () => {
  const dir = tempDir();
  Deno.writeFileSync(`${dir}/k`, makeBzImage().slice(0, 100));
  const r = await runCli(["-o", "-", "-kernel", `${dir}/k`]);
  assertEquals(r.code, 1);
  assertEquals(r.stdoutBytes.length, 0);
});
