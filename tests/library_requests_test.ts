/** The library from a caller's side: spools of stream inputs, unknown request fields, sign for a host. */
import { assert, assertEquals, assertRejects } from "./assert.ts";
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

Deno.test("library requests: an unknown field is a UsageError in every operation; sign honours host", async () => {
  const mod = await import("../mod.ts");
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-fields-test-" });
  try {
    await Deno.writeFile(`${dir}/k`, makeBzImage());
    await mod.generate({ output: `${dir}/o.igvm`, kernel: `${dir}/k`, target: "qemu-kvm" });
    const file = `${dir}/o.igvm`;
    const refused: [string, () => Promise<unknown>][] = [
      ["measure", () => mod.measure({ file, measurement_file: "m.json" } as never)],
      ["verify", () => mod.verify({ file, loader: "qemu-kvm" } as never)],
      ["inspect", () => mod.inspect({ file, json: true } as never)],
      ["dump", () => mod.dump({ file, out: "x" } as never)],
      ["diff", () => mod.diff({ a: file, b: file, loaderb: "ch-mshv" } as never)],
      ["measureLog", () => mod.measureLog({ file, measurementFile: "x" } as never).next()],
      ["sign", () => mod.sign({ file, output: `${dir}/s.igvm`, signkey: "k" } as never)],
    ];
    for (const [what, call] of refused) {
      await assertRejects(call, mod.UsageError, `${what}: unknown request field`);
    }
    // sign with a KVM loader and a host signs that host's digest.
    const host = { vcpus: 4, cpuSignature: 0x00a00f11 };
    const key = `${dir}/key.pem`;
    const pkcs8 = await crypto.subtle.exportKey(
      "pkcs8",
      (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, ["sign"]))
        .privateKey,
    );
    const b64 = btoa(String.fromCharCode(...new Uint8Array(pkcs8)));
    await Deno.writeTextFile(
      key,
      `-----BEGIN PRIVATE KEY-----\n${b64}\n-----END PRIVATE KEY-----\n`,
    );
    const signed = await mod.sign({
      file,
      output: `${dir}/s.igvm`,
      signKey: key,
      loader: "qemu-kvm",
      host,
    });
    const expected = await mod.measure({ file, loader: "qemu-kvm", host });
    const oneVcpu = await mod.measure({ file, loader: "qemu-kvm" });
    assertEquals(signed.launchMeasurement, expected.launchDigest);
    assert(expected.launchDigest !== oneVcpu.launchDigest, "the host changes the digest");
    await assertRejects(
      () => mod.sign({ file, output: `${dir}/t.igvm`, signKey: key, host } as never),
      mod.UsageError,
      "host",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
