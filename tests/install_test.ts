/**
 * The README's set-up on a fresh machine with Node.js and npm but no Deno. The README's
 * `sh clean-machine` blocks (build the demo, run the tests, install igvmgen) run as written,
 * in order, in a copy of the files git tracks, with:
 *
 * - a PATH that holds every tool of this machine but `deno`;
 * - an empty Deno cache (DENO_DIR), an empty npm cache and global folder, an empty
 *   DENO_INSTALL_ROOT and an empty HOME.
 *
 * The test command runs the whole suite, this test included, so in the copy `tests/` holds one
 * small test file: the run shows that the command sets everything up and runs the tests, not
 * that the suite passes. The installed `igvmgen` is then run from another folder with
 * relative paths. The npm registry must be reachable; otherwise the test is skipped.
 */
import { assert, assertEquals } from "./assert.ts";
import { copyTree, fencedBlocks } from "./docs_helpers.ts";
import { ROOT } from "./helpers.ts";
import { makeBzImage } from "../scripts/fixtures.ts";

const DENO_VERSION: string = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).version;

/** Runs `command` (a program and its arguments); undefined when it cannot start. */
async function tryRun(command: string, args: string[], timeoutMs = 30_000) {
  try {
    return await new Deno.Command(command, {
      args,
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(timeoutMs),
    }).output();
  } catch {
    return undefined;
  }
}

/** Why the test cannot run here, or "" when it can. */
async function skipReason(): Promise<string> {
  for (const tool of ["git", "node", "npm", "npx", "bash"]) {
    if (!(await tryRun(tool, ["--version"]))?.success) return `${tool} is not installed`;
  }
  // One look-up of the package the README installs.
  const view = await tryRun("npm", ["view", `deno@2.9.6`, "version"]);
  if (!view?.success) return "the npm registry is not reachable";
  return "";
}

const SKIP = await skipReason();
if (SKIP) console.log(`note: the clean-machine install test is skipped: ${SKIP}`);

/** A folder of links to every program on PATH except `deno`: this machine without Deno. */
function pathWithoutDeno(bin: string): void {
  Deno.mkdirSync(bin, { recursive: true });
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(dir)];
    } catch {
      continue;
    }
    for (const e of entries) {
      if (e.name === "deno" || e.name.startsWith("deno-")) continue;
      try {
        Deno.symlinkSync(`${dir}/${e.name}`, `${bin}/${e.name}`);
      } catch {
        // an earlier PATH folder has this name: it wins, as on PATH
      }
    }
  }
}

Deno.test({
  name:
    "README's clean-machine commands (npx demo, npx test, npm + deno install) set everything up on a machine without deno",
  ignore: SKIP !== "",
  async fn() {
    const tmp = Deno.makeTempDirSync({ prefix: "igvmgen-install-" });
    try {
      const clone = `${tmp}/clone/igvmgen`;
      await copyTree(clone);
      // The suite would run this test again: one small test file stands for it.
      for (const e of Deno.readDirSync(`${clone}/tests`)) {
        if (!["crc32_test.ts", "assert.ts"].includes(e.name)) {
          Deno.removeSync(`${clone}/tests/${e.name}`, { recursive: true });
        }
      }
      const dirs = [
        "bin",
        "home",
        "deno-dir",
        "npm-cache",
        "npm-global",
        "deno-install",
        "elsewhere",
      ];
      for (const d of dirs) Deno.mkdirSync(`${tmp}/${d}`, { recursive: true });
      pathWithoutDeno(`${tmp}/bin`);
      // npm's global folder first (npm install -g puts deno there), then the machine's tools.
      const env = {
        PATH: `${tmp}/npm-global/bin:${tmp}/bin`,
        HOME: `${tmp}/home`,
        DENO_DIR: `${tmp}/deno-dir`,
        DENO_INSTALL_ROOT: `${tmp}/deno-install`,
        npm_config_cache: `${tmp}/npm-cache`,
        npm_config_prefix: `${tmp}/npm-global`,
        NO_COLOR: "1",
      };
      const bash = async (script: string, cwd: string, extraPath = "") => {
        const out = await new Deno.Command("bash", {
          args: ["--norc", "--noprofile", "-e", "-o", "pipefail", "-c", script],
          cwd,
          env: { ...env, PATH: `${extraPath}${env.PATH}` },
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
          signal: AbortSignal.timeout(300_000),
        }).output();
        const dec = new TextDecoder();
        return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
      };

      const none = await bash("command -v deno", clone);
      assert(none.code !== 0, `deno is still on PATH: ${none.stdout}`);

      const blocks = fencedBlocks("README.md", Deno.readTextFileSync(`${ROOT}README.md`))
        .filter((b) => b.info === "sh clean-machine");
      assertEquals(blocks.length, 3, "README: demo, test and install blocks");
      const [demo, test, install] = blocks;
      assert(demo.text.includes("task demo") && test.text.includes("task test"));
      assert(install.text.includes("deno install"));

      const d = await bash(demo.text, clone);
      assertEquals(d.code, 0, d.stderr);
      assert(d.stdout.includes("launch digest"), d.stdout);
      assert(Deno.statSync(`${clone}/out/demo/demo.igvm`).size > 0);

      const t = await bash(test.text, clone);
      assertEquals(t.code, 0, t.stdout + t.stderr);
      assert(/ok \| [1-9]\d* passed \| 0 failed/.test(t.stdout), t.stdout);
      assert(t.stdout.includes("crc32"), t.stdout);

      // Deno filled the empty cache itself: igvmgen's npm dependencies are there.
      const cached = await bash(`ls "$DENO_DIR"/npm/registry.npmjs.org`, clone);
      assert(cached.stdout.includes("@noble"), cached.stdout + cached.stderr);

      const i = await bash(install.text, clone);
      assertEquals(i.code, 0, i.stdout + i.stderr);
      assert(Deno.statSync(`${tmp}/deno-install/bin/igvmgen`).isFile);

      // The installed command, from another folder, with relative paths.
      const elsewhere = `${tmp}/elsewhere`;
      Deno.writeFileSync(`${elsewhere}/bzImage`, makeBzImage());
      const installed = `${tmp}/deno-install/bin:`;
      const v = await bash("igvmgen --version", elsewhere, installed);
      assertEquals([v.code, v.stdout], [0, `igvmgen ${DENO_VERSION}\n`], v.stderr);
      const g = await bash(
        "igvmgen -o out.igvm -kernel bzImage -append console=ttyS0 -measurement_file m.json && " +
          "igvmgen verify out.igvm",
        elsewhere,
        installed,
      );
      assertEquals(g.code, 0, g.stderr);
      assert(g.stdout.startsWith("out.igvm: OK (launch digest "), g.stdout);
      const digest = JSON.parse(Deno.readTextFileSync(`${elsewhere}/m.json`))[
        "x-ms-sevsnpvm-launchmeasurement"
      ];
      assert(g.stdout.includes(digest), g.stdout);
      // Permissions as documented: read, write and iasl; nothing else (no -A).
      const shim = Deno.readTextFileSync(`${tmp}/deno-install/bin/igvmgen`);
      assert(shim.includes("--allow-read --allow-write --allow-run=iasl"), shim);
      assert(!/--allow-all|\s-A\s/.test(shim), shim);
    } finally {
      Deno.removeSync(tmp, { recursive: true });
    }
  },
});
