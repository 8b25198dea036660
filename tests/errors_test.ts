/** The error sink's one line: the runtime's OS and permission wording made plain. */
import { assert, assertEquals } from "./assert.ts";
import { describeError } from "../lib/cli/errors.ts";

Deno.test("describeError() drops the runtime's (os error N) tail and keeps a path not yet said", () => {
  let raw: Error | undefined;
  try {
    Deno.statSync("/nonexistent/igvmgen-file");
  } catch (e) {
    raw = e as Error;
  }
  assert(raw && /\(os error 2\)/.test(raw.message), `the runtime's own wording: ${raw?.message}`);
  assertEquals(
    describeError(new Error("cannot read the key", { cause: raw })),
    "cannot read the key: No such file or directory: /nonexistent/igvmgen-file",
  );
  assertEquals(
    describeError(new Error("cannot read /nonexistent/igvmgen-file", { cause: raw })),
    "cannot read /nonexistent/igvmgen-file: No such file or directory",
  );
});

Deno.test("describeError() turns Deno's 'run again with --allow-all' into what to give instead", () => {
  const denied = new Error(
    'Requires all access to "/dev/stdin", run again with the --allow-all flag',
  );
  const line = describeError(new Error("signing key /dev/stdin", { cause: denied }));
  assert(!line.includes("--allow-all"), line);
  assert(line.includes("give a regular file"), line);
});
