/**
 * Reading a file with as many page headers as a 1 GiB initrd gives (263k) stays small in
 * memory for every reading command, run as a user runs it. The file's pages have no data,
 * so this measures the reader, the structural check, the loader model and the output, not
 * the hashing of page contents. With an object per header these runs took 240-260 MiB.
 */
import { assert, assertEquals } from "./assert.ts";
import { makePageHeavyIgvm } from "../scripts/fixtures.ts";
import { HAVE_PEAK_RSS, runTask } from "./task_cli.ts";

const PAGES = 263_000;
/**
 * The bound, in MiB of peak RSS; Deno itself takes about 45, a run on a small file about 65.
 * These runs took 70-80 MiB; with a string and objects per log line, 120-160.
 */
const PEAK_MIB = 100;

Deno.test({
  name:
    `verify, measure --log [--json] and inspect --json of ${PAGES} page headers peak under ${PEAK_MIB} MiB`,
  ignore: !HAVE_PEAK_RSS,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-test-" });
  try {
    const file = `${dir}/heavy.igvm`;
    await Deno.writeFile(file, makePageHeavyIgvm(PAGES));
    for (
      const [args, code] of [
        [["verify", file], 1], // no ID block
        [["measure", "--log", "--json", file], 0],
        [["measure", "--log", file], 0],
        [["measure", "--log", "--loader", "ch-mshv", file], 0],
        [["inspect", "--json", file], 0],
      ] as const
    ) {
      const r = await runTask([...args], { peakRss: true, shellTail: "| tail -c 200" });
      assertEquals(r.code, code, `${args.join(" ")}: ${r.stderr}`);
      const tail = new TextDecoder().decode(r.stdout);
      assert(
        /"launchDigest": "[0-9a-f]{96}"\n}\n$|no SNP_ID_BLOCK header\n|\): [0-9a-f]{96}\n$/
          .test(tail),
        tail,
      );
      assert(
        r.peakRssMiB! < PEAK_MIB,
        `${args.join(" ")}: peak RSS ${r.peakRssMiB!.toFixed(0)} MiB`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
