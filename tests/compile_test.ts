/**
 * `deno task compile` builds one executable that writes the same bytes as `deno run`. The
 * build needs Deno's `denort` runtime, which cannot be downloaded here: the test runs when
 * DENORT_BIN points at one, and says why it is skipped otherwise. Without denort the task
 * fails in one line, which is tested everywhere.
 */
import { assert, assertEquals } from "./assert.ts";
import { COMPILED_LAZY_MODULES } from "../scripts/compile.ts";
import { makeBzImage } from "../scripts/fixtures.ts";
import { ROOT, runCli, sha256Hex, tempDir } from "./helpers.ts";

const DENORT_BIN = Deno.env.get("DENORT_BIN");
if (!DENORT_BIN) {
  console.log(
    "note: compile test skipped: DENORT_BIN is not set (deno compile needs a denort runtime, which cannot be downloaded here)",
  );
}

Deno.test({
  name: "deno task compile builds an igvmgen binary that writes the same bytes as deno run",
  ignore: !DENORT_BIN,
  async fn() {
    const dir = tempDir();
    // The task as users run it, with the output in the test folder.
    const build = await new Deno.Command(Deno.execPath(), {
      args: ["task", "compile", "--output", `${dir}/igvmgen`],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(build.code, 0, new TextDecoder().decode(build.stderr));
    Deno.writeFileSync(`${dir}/k`, makeBzImage());
    const { generateKeyPairSync } = await import("node:crypto");
    Deno.writeTextFileSync(
      `${dir}/key.pem`,
      generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey.export({
        format: "pem",
        type: "sec1",
      }).toString(),
    );
    const common = [
      "-kernel",
      `${dir}/k`,
      "-sign_key",
      `${dir}/key.pem`,
      "-sign_deterministic",
      "1",
      "-boot_mode",
      "x64",
    ];
    const bin = await new Deno.Command(`${dir}/igvmgen`, {
      args: ["-o", `${dir}/a.igvm`, ...common],
    }).output();
    assertEquals(bin.code, 0, new TextDecoder().decode(bin.stderr));
    const src = await runCli(["-o", `${dir}/b.igvm`, ...common]);
    assertEquals(src.code, 0, src.stderr);
    assertEquals(
      sha256Hex(Deno.readFileSync(`${dir}/a.igvm`)),
      sha256Hex(Deno.readFileSync(`${dir}/b.igvm`)),
    );
    Deno.removeSync(dir, { recursive: true });
  },
});

/**
 * Runs the compile task's command line (from deno.json) with `env` and `args`; returns its exit
 * code and the lines of its stderr. The command line is run directly rather than through
 * `deno task`, which would first fill an empty Deno cache with the project's npm packages.
 */
async function compileTask(env: Record<string, string>, args: string[]) {
  const task: string = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).tasks.compile;
  const [deno, ...words] = task.split(" ");
  assertEquals(deno, "deno");
  const out = await new Deno.Command(Deno.execPath(), {
    args: [...words, ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  return { code: out.code, lines: stderr.split("\n").filter((l) => l.trim() !== ""), stderr };
}

Deno.test("deno task compile with DENORT_BIN naming no file fails in one line that names denort and DENORT_BIN", async () => {
  const dir = tempDir();
  const r = await compileTask({ DENORT_BIN: `${dir}/no-denort` }, ["--output", `${dir}/igvmgen`]);
  assertEquals(r.code, 1, r.stderr);
  assertEquals(r.lines.length, 1, r.stderr);
  assert(r.lines[0].startsWith("error: deno compile could not get Deno's denort runtime ("));
  assert(r.lines[0].includes(`Could not find denort at '${dir}/no-denort'`), r.lines[0]);
  assert(r.lines[0].includes("set DENORT_BIN"), r.lines[0]);
  assert(!/backtrace|Caused by/.test(r.stderr), r.stderr);
  assertEquals([...Deno.readDirSync(dir)], []);
});

Deno.test("deno task compile when denort cannot be downloaded fails in one line, no backtrace", async () => {
  const dir = tempDir();
  // An empty Deno cache (no denort in it) and a proxy that refuses every connection.
  Deno.mkdirSync(`${dir}/deno-dir`);
  const r = await compileTask({
    DENO_DIR: `${dir}/deno-dir`,
    HTTPS_PROXY: "http://127.0.0.1:9",
    https_proxy: "http://127.0.0.1:9",
    NO_PROXY: "",
    no_proxy: "",
  }, ["--output", `${dir}/igvmgen`]);
  assertEquals(r.code, 1, r.stderr);
  assertEquals(r.lines.length, 1, r.stderr);
  assert(r.lines[0].startsWith("error: deno compile could not get Deno's denort runtime ("));
  assert(!/backtrace|Caused by/.test(r.stderr), r.stderr);
  assert(!Deno.readDirSync(dir).some((e) => e.name.startsWith("igvmgen")));
});

Deno.test("deno task compile with an unknown argument is a usage error (exit 2)", async () => {
  const r = await compileTask({}, ["--bogus"]);
  assertEquals(r.code, 2, r.stderr);
  assertEquals(r.lines, [
    'error: unexpected argument "--bogus" (expected --output FILE, --target TRIPLE)',
  ]);
});

Deno.test("every module main.ts loads on first use is included in the compiled binary", () => {
  const main = Deno.readTextFileSync(`${ROOT}main.ts`);
  const loaded = [...main.matchAll(/\bload<[^>]*>\(\s*"\.\/([^"]+)",?\s*\)/g)].map((m) => m[1]);
  assert(loaded.length >= 5, `found ${loaded.join(", ")}`);
  for (const m of loaded) assert(COMPILED_LAZY_MODULES.includes(m), `${m} is not included`);
  // No literal dynamic import is left in main.ts: Deno would load its graph before -h runs.
  // (`typeof import("...")` is a type, erased before the program runs.)
  assert(!/(?<!typeof )\bimport\(\s*["'`]/.test(main), "main.ts has a literal import()");
});
