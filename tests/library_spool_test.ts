/** The library's stream inputs: each call removes its own spool, whatever other calls do. */
import { assertEquals } from "./assert.ts";
import { makeBzImage } from "../scripts/fixtures.ts";

const MOD = new URL("../mod.ts", import.meta.url).href;

Deno.test("stream inputs: each call removes its own spool, even after another call was abandoned", async () => {
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-spool-test-" });
  try {
    await Deno.writeFile(`${dir}/k`, makeBzImage());
    await Deno.mkdir(`${dir}/tmp`);
    const image = JSON.stringify(`${dir}/o.igvm`);
    await Deno.writeTextFile(
      `${dir}/p.ts`,
      `import { generate, measure, measureLog } from ${JSON.stringify(MOD)};
await generate({ output: ${image}, kernel: ${JSON.stringify(`${dir}/k`)} });
const stream = async () => (await Deno.open(${image})).readable;
const spools = () => [...Deno.readDirSync(${JSON.stringify(`${dir}/tmp`)})].length;
const abandoned = measureLog({ file: await stream() })[Symbol.asyncIterator]();
await abandoned.next(); // neither finished nor returned: its spool stays while the process runs
const before = spools();
await measure({ file: await stream() });
for await (const _ of measureLog({ file: await stream() })) break;
console.log(before, spools());
`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--allow-write", "--allow-env", `${dir}/p.ts`],
      env: { TMPDIR: `${dir}/tmp` },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    // Later calls leave nothing behind, although the abandoned one still holds its spool.
    assertEquals(new TextDecoder().decode(out.stdout).trim(), "1 1");
    // At exit the abandoned spool is removed too.
    assertEquals([...Deno.readDirSync(`${dir}/tmp`)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
