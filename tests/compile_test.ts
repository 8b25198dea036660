/**
 * `deno task compile` builds one executable that writes the same bytes as `deno run`. The
 * build needs Deno's `denort` runtime, which cannot be downloaded here: the test runs when
 * DENORT_BIN points at one, and says why it is skipped otherwise.
 */
import { assertEquals } from "./assert.ts";
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
    const tasks = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).tasks;
    // The task's own command line, with the output redirected into the test folder.
    const args = (tasks.compile as string).split(" ").slice(1).map((a) =>
      a === "igvmgen" ? `${dir}/igvmgen` : a
    );
    const build = await new Deno.Command(Deno.execPath(), {
      args,
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
