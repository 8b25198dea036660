/**
 * Long fuzz runs: `deno run -A scripts/fuzz.ts [TARGET|all] [ITERATIONS] [SEED]`, TARGET one
 * of bzimage, elf, igvm, snapshot, pickle, pem, tei. It runs tests/fuzz_test.ts (same seeds and
 * mutations) with IGVMGEN_FUZZ_ITERATIONS and IGVMGEN_FUZZ_SEED set.
 */
import { FUZZ_TARGETS } from "../tests/fuzz_targets.ts";

const [target = "all", iterations = "20000", seed = String(Date.now() % 1e9)] = Deno.args;
if (target !== "all" && !(target in FUZZ_TARGETS)) {
  console.error(`unknown target ${target}: one of all, ${Object.keys(FUZZ_TARGETS).join(", ")}`);
  Deno.exit(2);
}
const filter = target === "all" ? "fuzz " : `fuzz ${FUZZ_TARGETS[target].name}:`;
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
