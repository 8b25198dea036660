/**
 * Bounded fuzzing of every parser: mutated valid inputs must give success or the parser's own
 * error, never an uncaught exception or a hang. `deno run scripts/fuzz.ts` runs longer.
 */
import { assert, assertEquals } from "./assert.ts";
import { fuzz, FUZZ_TARGETS, mutate, prng } from "./fuzz_targets.ts";
import { makeBzImage, makeElf } from "../scripts/fixtures.ts";
import { FIXTURES, HAVE_SHARED, REFERENCE, runCli, SHARED, tempDir } from "./helpers.ts";
import { generateKeyPairSync } from "node:crypto";
import { deflateSync } from "node:zlib";

const ITERATIONS = Number(Deno.env.get("IGVMGEN_FUZZ_ITERATIONS") ?? 300);

/** Valid inputs to start from, per target. */
async function seedsFor(target: string): Promise<Uint8Array[]> {
  const enc = (s: string) => new TextEncoder().encode(s);
  switch (target) {
    case "bzimage":
      return [
        makeBzImage({ payloadLength: 4096 }).slice(0, 2048),
        ...(HAVE_SHARED ? [Deno.readFileSync(`${FIXTURES}test_bzImage`)] : []),
      ];
    case "elf":
      return [makeElf(), ...(HAVE_SHARED ? [Deno.readFileSync(`${FIXTURES}test_elf`)] : [])];
    case "igvm": {
      const dir = tempDir();
      Deno.writeFileSync(`${dir}/k`, makeBzImage({ payloadLength: 8192 }));
      const r = await runCli(["-o", `${dir}/o.igvm`, "-kernel", `${dir}/k`, "--quiet"]);
      assertEquals(r.code, 0, r.stderr);
      const seeds = [Deno.readFileSync(`${dir}/o.igvm`)];
      Deno.removeSync(dir, { recursive: true });
      if (HAVE_SHARED) seeds.push(Deno.readFileSync(`${SHARED}golden/tb_x86_acpitest.igvm`));
      return seeds;
    }
    case "snapshot": {
      // A snapshot made here (base64 of zlib of the pickle seed: one page at 0xe0000), and
      // the original's own when ../shared is there.
      const [pickle] = await seedsFor("pickle");
      const made = enc(btoa(String.fromCharCode(...deflateSync(pickle))));
      return HAVE_SHARED ? [made, Deno.readFileSync(`${REFERENCE}acpi/acpi.zip`)] : [made];
    }
    case "pickle": {
      // A two-page pickle built from the opcodes the snapshot uses.
      const page = new Uint8Array(4096).fill(1);
      const out = [
        0x80,
        4,
        0x7d,
        0x94,
        0x28,
        0x4a,
        0,
        0,
        0x0e,
        0,
        0x8c,
        8,
        ...enc("builtins"),
        0x94,
        0x8c,
        9,
        ...enc("bytearray"),
        0x94,
        0x93,
        0x94,
        0x42,
        0,
        0x10,
        0,
        0,
        ...page,
        0x94,
        0x85,
        0x94,
        0x52,
        0x94,
        0x75,
        0x2e,
      ];
      return [new Uint8Array(out)];
    }
    case "pem": {
      const sec1 = generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey.export({
        format: "pem",
        type: "sec1",
      }).toString();
      const pkcs8 = generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey.export({
        format: "pem",
        type: "pkcs8",
      }).toString();
      return [enc(sec1), enc(pkcs8)];
    }
    default:
      return [
        HAVE_SHARED
          ? Deno.readFileSync(`${FIXTURES}tei-config.json`)
          : enc('{"tei_config_data":{"version":1,"guest_svn":2,"policy":{"smt_allowed":true}}}'),
      ];
  }
}

Deno.test("mutate() is deterministic for a seed and changes its input", () => {
  const input = new Uint8Array(64).map((_, i) => i);
  const a = mutate(input, prng(7));
  const b = mutate(input, prng(7));
  assertEquals([...a], [...b]);
  let changed = 0;
  const r = prng(9);
  for (let i = 0; i < 50; i++) if (mutate(input, r).join() !== input.join()) changed++;
  assert(changed > 40, `only ${changed} of 50 mutations changed the input`);
});

for (const [key, target] of Object.entries(FUZZ_TARGETS)) {
  Deno.test(`fuzz ${target.name}: ${ITERATIONS} mutated inputs, clean errors only`, async () => {
    const seeds = await seedsFor(key);
    for (const s of seeds) await target.run(s); // the seeds themselves are valid
    const r = await fuzz(
      target,
      seeds,
      ITERATIONS,
      Number(Deno.env.get("IGVMGEN_FUZZ_SEED") ?? 20261126),
    );
    const shown = r.failures.slice(0, 3).map((f) => f.error).join("; ");
    assertEquals(r.failures.length, 0, `${r.failures.length} uncaught: ${shown}`);
    assert(r.rejected > 0, "some mutations are rejected");
    let kept = "";
    if (r.slowestMs >= 5000 && r.slowest) {
      // Kept for the person reading the failure (outside the folders the tests remove).
      kept = Deno.makeTempFileSync({ prefix: `igvmgen-fuzz-slowest-${key}-`, suffix: ".bin" });
      Deno.writeFileSync(kept, r.slowest);
    }
    assert(r.slowestMs < 5000, `an input took ${r.slowestMs.toFixed(0)} ms (kept in ${kept})`);
  });
}
