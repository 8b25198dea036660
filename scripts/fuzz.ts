/**
 * Long fuzz runs: `deno run -A scripts/fuzz.ts [TARGET|all] [ITERATIONS] [SEED]`. Seeds come
 * from tests/fuzz_test.ts's sources via IGVMGEN_FUZZ_ITERATIONS; this script runs the test file
 * with a large iteration count and prints any failing input as hex.
 */
const [target = "all", iterations = "20000", seed = String(Date.now() % 1e9)] = Deno.args;
const filter = target === "all" ? "fuzz " : `fuzz ${target}`;
console.log(`fuzzing ${target} with ${iterations} iterations per target (seed ${seed})`);
const r = await new Deno.Command(Deno.execPath(), {
  args: [
    "test",
    "-A",
    "--filter",
    filter,
    new URL("../tests/fuzz_test.ts", import.meta.url).pathname,
  ],
  env: { IGVMGEN_FUZZ_ITERATIONS: iterations, IGVMGEN_FUZZ_SEED: seed },
  stdout: "inherit",
  stderr: "inherit",
}).output();
Deno.exit(r.code);
