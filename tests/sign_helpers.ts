/** Helpers of the sign tests: openssl keys, and refusals that must write nothing. */
import { assert, assertEquals } from "./assert.ts";
import { runCli } from "./helpers.ts";

/** True when openssl is on PATH (the sign tests use it as the external signer). */
export const HAVE_OPENSSL = (() => {
  try {
    new Deno.Command("openssl", { args: ["version"], stdout: "null", stderr: "null" }).outputSync();
    return true;
  } catch {
    return false;
  }
})();
if (!HAVE_OPENSSL) console.log("note: openssl is absent; the sign tests that need it are skipped");

/** Runs openssl; returns its standard output, or throws with its standard error. */
export function openssl(...args: string[]): Uint8Array {
  const r = new Deno.Command("openssl", { args, stdout: "piped", stderr: "piped" }).outputSync();
  if (r.code !== 0) {
    throw new Error(`openssl ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
  }
  return r.stdout;
}

/** A fresh P-384 key from openssl (PKCS#8 PEM), written to `path`. */
export function opensslP384Key(path: string, curve = "P-384"): void {
  const r = new Deno.Command("openssl", {
    args: ["genpkey", "-algorithm", "EC", "-pkeyopt", `ec_paramgen_curve:${curve}`, "-out", path],
    stdout: "null",
    stderr: "piped",
  }).outputSync();
  if (r.code !== 0) throw new Error(new TextDecoder().decode(r.stderr));
}

/** Runs a command that must refuse: exit `code`, one `error:` line, nothing at `out`. */
export async function assertRefused(args: string[], out: string, includes: string, code = 1) {
  const r = await runCli(args);
  assertEquals(r.code, code, r.stderr);
  const lines = r.stderr.trim().split("\n");
  assertEquals(lines.length, 1, r.stderr);
  assert(lines[0].startsWith("error: "), lines[0]);
  assert(lines[0].includes(includes), `"${lines[0]}" lacks "${includes}"`);
  let exists = true;
  try {
    Deno.statSync(out);
  } catch {
    exists = false;
  }
  assert(!exists, `${out} was written`);
}
