/**
 * mod.ts imported from another project, by path, with no igvmgen deno.json in effect: every
 * dependency must be reachable without the repository's import map.
 */
import { assertEquals } from "./assert.ts";
import { makeBzImage } from "../scripts/fixtures.ts";

const MOD = new URL("../mod.ts", import.meta.url).href;

Deno.test("mod.ts imported by path from outside the repository (no config) generates and measures", async () => {
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-libimport-" });
  try {
    await Deno.writeFile(`${dir}/bzImage`, makeBzImage());
    await Deno.writeTextFile(
      `${dir}/use.ts`,
      `import { generate, measure } from ${JSON.stringify(MOD)};
const kernel = (await Deno.open("bzImage")).readable;
const r = await generate({ output: "o.igvm", kernel, cmdline: "console=ttyS0" });
const m = await measure({ file: "o.igvm" });
console.log(r.launchMeasurement === m.launchDigest ? "same" : "different");
`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-config", "--allow-read", "--allow-write", "use.ts"],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, stderr);
    assertEquals(new TextDecoder().decode(out.stdout).trim(), "same");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
