/**
 * The arbiter: every case of ../shared/golden/cases.json run through the CLI, compared with
 * the original's output (sha256 and size), measurement JSON and `-d` dump.
 */
import { gunzipSync } from "node:zlib";
import { assert, assertEquals } from "./assert.ts";
import {
  GOLDEN,
  goldenArgs,
  goldenNeedsIasl,
  HAVE_IASL,
  HAVE_SHARED,
  runCli,
  sha256Hex,
  SHARED,
  tempDir,
} from "./helpers.ts";

if (!HAVE_SHARED) {
  Deno.test({ name: "golden cases (../shared is absent: skipped)", ignore: true, fn() {} });
}

for (const c of GOLDEN.cases) {
  const needsIasl = goldenNeedsIasl(c);
  Deno.test({
    name: `golden ${c.name}: bytes, measurement JSON and -d dump equal the original's`,
    ignore: needsIasl && !HAVE_IASL,
    async fn() {
      const dir = tempDir();
      const out = `${dir}/${c.name}.igvm`;
      const r = await runCli(["-o", out, ...goldenArgs(c, out)]);
      assertEquals(r.code, 0, r.stderr);
      const bytes = Deno.readFileSync(out);
      assertEquals(bytes.length, c.expected.size);
      assertEquals(sha256Hex(bytes), c.expected.sha256, "output sha256");
      if (c.expected.igvm) {
        const whole = Deno.readFileSync(`${SHARED}golden/${c.expected.igvm}`);
        const first = bytes.findIndex((b, i) => b !== whole[i]);
        assertEquals(first, -1, `first differing byte at 0x${first.toString(16)}`);
      }
      const json = JSON.parse(Deno.readTextFileSync(`${out}.json`));
      assertEquals(json, {
        "x-ms-sevsnpvm-guestsvn": c.expected.guest_svn,
        "x-ms-sevsnpvm-launchmeasurement": c.expected.launch_measurement,
      });
      assert(
        !Deno.readTextFileSync(`${out}.json`).endsWith("\n"),
        "the JSON has no trailing newline",
      );
      const dump = await runCli(["-d", out]);
      assertEquals(dump.code, 0, dump.stderr);
      if (sha256Hex(dump.stdoutBytes) !== c.expected.dump_sha256) {
        const expected = new TextDecoder().decode(
          gunzipSync(Deno.readFileSync(`${SHARED}golden/${c.expected.dump}`)),
        );
        const a = dump.stdout.split("\n");
        const b = expected.split("\n");
        // The first differing line; a dump cut short differs in its length only.
        const line = a.findIndex((l, i) => l !== b[i]);
        if (line >= 0) assertEquals(a[line], b[line], `dump differs at line ${line + 1}`);
        assertEquals(a.length, b.length, "the dump's line count");
        assert(false, "the dump's sha256 differs from the original's");
      }
      Deno.removeSync(dir, { recursive: true });
    },
  });

  Deno.test({
    name: `golden ${c.name}: the kernel from standard input and -o - give the same bytes`,
    ignore: needsIasl && !HAVE_IASL,
    async fn() {
      const dir = tempDir();
      const args = goldenArgs(c, `${dir}/m`);
      const at = args.indexOf("-kernel");
      const kernel = Deno.readFileSync(args[at + 1]);
      const streamed = [...args.slice(0, at), ...args.slice(at + 2)];
      const r = await runCli(["-", "-o", "-", ...streamed], kernel);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdoutBytes.length, c.expected.size);
      assertEquals(sha256Hex(r.stdoutBytes), c.expected.sha256);
      assertEquals(
        JSON.parse(Deno.readTextFileSync(`${dir}/m.json`))["x-ms-sevsnpvm-launchmeasurement"],
        c.expected.launch_measurement,
      );
      Deno.removeSync(dir, { recursive: true });
    },
  });
}
