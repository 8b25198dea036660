/**
 * The read side on bad days, run as a user runs it (`deno task igvmgen`'s permissions):
 * hostile and broken IGVM files give one line, fast, in bounded memory; measure and inspect
 * never give a digest from a broken file; `-d` streams and ends quietly on a closed pipe;
 * subcommand options are checked; TEI configs and ACPI zips from hostile hands.
 * The hostile files are made here (sparse ones with Deno.truncate), never committed.
 */
import { crc32, deflateSync } from "node:zlib";
import { zipSync } from "fflate";
import { assert, assertEquals } from "./assert.ts";
import { generateImage } from "./helpers.ts";
import { makeBzImage } from "../scripts/fixtures.ts";
import { HAVE_PEAK_RSS, runTask, type TaskRunOptions } from "./task_cli.ts";

/** A finished run, its standard output as text. */
interface UserRun {
  code: number;
  stdout: string;
  stderr: string;
  seconds: number;
  peakRssMiB?: number;
}

/** Runs `igvmgen ARGS` as a user does, timed and with its peak RSS where measurable. */
async function runUserCli(args: string[], options: TaskRunOptions = {}): Promise<UserRun> {
  const r = await runTask(args, { ...options, peakRss: true });
  return { ...r, stdout: new TextDecoder().decode(r.stdout) };
}

/** Runs `fn` with a fresh temporary folder, removed afterwards whatever happens. */
async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Asserts a run failed with `code` and exactly `line` on stderr, nothing else. */
function assertError(r: UserRun, code: number, line: string) {
  assertEquals(r.stderr, `${line}\n`, r.stderr);
  assertEquals(r.code, code);
}

/** Asserts a run took at most `seconds` and, where measurable, at most `mib` of memory. */
function assertBounded(r: UserRun, seconds: number, mib: number, what: string) {
  assert(r.seconds < seconds, `${what}: ${r.seconds.toFixed(1)} s`);
  if (HAVE_PEAK_RSS) {
    assert(r.peakRssMiB! < mib, `${what}: peak RSS ${r.peakRssMiB!.toFixed(0)} MiB`);
  }
}

/** An IGVM fixed header claiming a header section of `sectionSize` bytes after it. */
function fixedHeader(sectionSize: number, totalSize: number): Uint8Array {
  const head = new Uint8Array(24);
  const v = new DataView(head.buffer);
  v.setUint32(0, 0x4d564749, true); // "IGVM"
  v.setUint32(4, 1, true);
  v.setUint32(8, 24, true);
  v.setUint32(12, sectionSize, true);
  v.setUint32(16, totalSize, true);
  return head;
}

/** Sets the fixed header's CRC-32 over the header section. */
function withChecksum(bytes: Uint8Array): Uint8Array {
  const v = new DataView(bytes.buffer, bytes.byteOffset);
  const end = v.getUint32(8, true) + v.getUint32(12, true);
  v.setUint32(20, 0, true);
  v.setUint32(20, crc32(bytes.subarray(0, end)) >>> 0, true);
  return bytes;
}

/** A file of `count` PAGE_DATA headers for zero pages: at `gpa(i)`, no data, valid CRC. */
function pageHeaders(count: number, gpa: (i: number) => number): Uint8Array {
  const size = 24 + count * 32;
  const bytes = new Uint8Array(size);
  bytes.set(fixedHeader(count * 32, size));
  const v = new DataView(bytes.buffer);
  for (let i = 0; i < count; i++) {
    v.setUint32(24 + i * 32, 0x302, true); // IGVM_VHT_PAGE_DATA
    v.setUint32(28 + i * 32, 24, true);
    v.setBigUint64(32 + i * 32, BigInt(gpa(i)), true);
  }
  return withChecksum(bytes);
}

const ZEROED = "header at 0x18: type 0x0 is not an IGVM header type; " +
  "the header section cannot be read past it";

Deno.test("igvmgen verify, measure, inspect and -d on a 1 GiB sparse file with a zeroed header section: one line, fast, bounded memory", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/zeroed.igvm`;
    const size = 1 << 30;
    Deno.writeFileSync(path, fixedHeader(size - 24, size));
    Deno.truncateSync(path, size); // sparse: no disk used
    for (const command of ["verify", "measure", "inspect"]) {
      const r = await runUserCli([command, path]);
      assertError(r, 1, `error: ${path}: ${ZEROED}`);
      assertEquals(r.stdout, "", `${command} prints no digest or report`);
      assertBounded(r, 10, 200, command);
    }
    const d = await runUserCli(["-d", path]);
    assertError(d, 1, `error: cannot dump ${path}: ${ZEROED}`);
    assertEquals(
      d.stdout,
      "{ Magic:0x4d564749 FormatVersion:0x1 VariableHeaderOffset:0x18 " +
        "VariableHeaderSize:0x3fffffe8 TotalFileSize:0x40000000 Checksum:0x0 }\n",
    );
    assertBounded(d, 10, 200, "-d");
    // A truncated copy: the header section the fixed header claims is not there.
    Deno.truncateSync(path, size / 2);
    for (const command of ["verify", "measure", "inspect"]) {
      const r = await runUserCli([command, path]);
      assertError(
        r,
        1,
        `error: ${path}: truncated: the header section ends at 0x40000000, past the end of the file`,
      );
      assertEquals(r.stdout, "", `${command} prints no digest or report`);
    }
  });
});

Deno.test("igvmgen verify caps its problem list: 100 problems, then how many more", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/same-gpa.igvm`;
    Deno.writeFileSync(path, pageHeaders(4096, () => 0)); // every page at GPA 0
    const r = await runUserCli(["verify", path]);
    assertEquals(r.code, 1, r.stderr);
    // Warnings follow the problems (no RSDP to walk): not counted here.
    const lines = r.stdout.trimEnd().split("\n").filter((l) => !l.includes(": warning: "));
    assertEquals(lines.length, 101);
    assertEquals(lines[0], `${path}: header at 0x38: GPA 0x0 is loaded twice`);
    assertEquals(lines[99], `${path}: header at 0xc98: GPA 0x0 is loaded twice`);
    // 4095 pages loaded twice, no SNP_POLICY, no SNP_ID_BLOCK: 4097 problems.
    assertEquals(lines[100], `${path}: … and 3,997 more`);
    const json = await runUserCli(["verify", path, "--json"]);
    const report = JSON.parse(json.stdout);
    assertEquals(report.problems.length, 101);
    assertEquals(report.problems[100], "… and 3,997 more");
    assertEquals(report.launchDigest, "", "no digest of a broken file");
  });
});

Deno.test("igvmgen measure and inspect refuse structurally broken files: exit 1, the first problem, no digest", async () => {
  await withTempDir(async (dir) => {
    const good = await generateImage([]);
    const cases: [string, Uint8Array, string | RegExp][] = [
      [
        "truncated.igvm",
        good.slice(0, good.length - 8192),
        new RegExp(
          `^TotalFileSize ${good.length}, the file has ${good.length - 8192} bytes ` +
            `\\(and \\d+ more problems; igvmgen verify lists them\\)$`,
        ),
      ],
      [
        "no-headers.igvm",
        withChecksum(fixedHeader(0, 24)),
        "no PAGE_DATA or VP_CONTEXT header: the file loads nothing",
      ],
      [
        "flipped.igvm",
        (() => {
          const b = good.slice();
          b[0x40] ^= 1; // inside the header section, checksum left stale
          return b;
        })(),
        // 0x40 is the policy header's mask: the stale checksum comes first.
        /^checksum 0x[0-9a-f]+, computed 0x[0-9a-f]+( \(and \d+ more problems; igvmgen verify lists them\))?$/,
      ],
    ];
    for (const [name, bytes, problem] of cases) {
      const path = `${dir}/${name}`;
      Deno.writeFileSync(path, bytes);
      for (const command of ["measure", "inspect"]) {
        const r = await runUserCli([command, path]);
        assertEquals([r.code, r.stdout], [1, ""], `${command} ${name}: ${r.stdout}${r.stderr}`);
        const lines = r.stderr.trimEnd().split("\n");
        assertEquals(lines.length, 1, r.stderr);
        const prefix = `error: ${path}: `;
        assert(lines[0].startsWith(prefix), lines[0]);
        const rest = lines[0].slice(prefix.length);
        if (typeof problem === "string") assertEquals(rest, problem);
        else assert(problem.test(rest), `${command} ${name}: "${rest}"`);
      }
    }
    // The sound file still measures.
    Deno.writeFileSync(`${dir}/good.igvm`, good);
    const m = await runUserCli(["measure", `${dir}/good.igvm`]);
    assertEquals(m.code, 0, m.stderr);
    assert(/^[0-9a-f]{96}\n$/.test(m.stdout) && !/^0{96}/.test(m.stdout), m.stdout);
  });
});

Deno.test("igvmgen -d FILE | head -5 ends quietly with exit 0, like inspect", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/many.igvm`;
    Deno.writeFileSync(path, pageHeaders(200_000, (i) => i * 4096));
    for (const args of [["-d", path], ["inspect", path]]) {
      const r = await runUserCli(args, { shellTail: "| head -5" });
      assertEquals([r.code, r.stderr], [0, ""], args.join(" "));
      assertEquals(r.stdout.split("\n").length, 6, r.stdout);
    }
  });
});

Deno.test("igvmgen -d streams: 1M page headers dumped in bounded memory", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/million.igvm`;
    const count = 1_000_000;
    Deno.writeFileSync(path, pageHeaders(count, (i) => i * 4096));
    const r = await runUserCli(["-d", path], { shellTail: "| wc -l" });
    assertEquals([r.code, r.stderr], [0, ""]);
    assertEquals(r.stdout.trim(), String(count + 1)); // the fixed header and each page
    // Holding the dump whole took about 800 MiB here; streaming stays under 300 MiB.
    assertBounded(r, 30, 300, "-d of 1M headers");
  });
});

Deno.test("igvmgen measure and inspect check their options as generation does (exit 2)", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/o.igvm`;
    Deno.writeFileSync(path, await generateImage([]));
    const svn =
      'error: -svn: expected a whole number from 0 to 4294967295, got "99999999999999999999"';
    const cases: [string[], string][] = [
      [["measure", path, "-svn", "99999999999999999999"], svn],
      [["measure", path, "-svn=4294967296"], svn.replace("99999999999999999999", "4294967296")],
      [["measure", path, "-svn", "-1"], svn.replace("99999999999999999999", "-1")],
      [["measure", path, "-svn", "1", "-svn", "2"], "error: measure: -svn is given twice"],
      [
        ["measure", path, "-measurement_file", ""],
        "error: measure: -measurement_file: expected a value, got an empty string",
      ],
      [["inspect", path, "--json=foo"], "error: --json takes no value"],
      [["verify", path, "--json=1"], "error: --json takes no value"],
      [["inspect", path, "--json", "--json"], "error: --json is given twice"],
      [
        ["measure", path, "--jsn"],
        "error: measure: unknown option --jsn (see igvmgen measure --help)",
      ],
    ];
    for (const [args, line] of cases) {
      const r = await runUserCli(args);
      assertError(r, 2, line);
      assertEquals(r.stdout, "", args.join(" "));
    }
    // The same -svn value is refused with the same words by generation.
    const gen = await runUserCli([
      "-o",
      `${dir}/x.igvm`,
      "-kernel",
      "k",
      "-svn",
      "99999999999999999999",
    ]);
    assertError(gen, 2, svn);
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["o.igvm"]);
  });
});

Deno.test("igvmgen -config_file: a partial policy keeps SMT and ABI 0.31; an unknown key is an error naming it", async () => {
  await withTempDir(async (dir) => {
    Deno.writeFileSync(`${dir}/k`, makeBzImage());
    const policyOf = async (policy: unknown) => {
      Deno.writeTextFileSync(`${dir}/c.json`, JSON.stringify({ tei_config_data: { policy } }));
      const out = `${dir}/o.igvm`;
      const r = await runUserCli([
        "-o",
        out,
        "-kernel",
        `${dir}/k`,
        "-config_file",
        `${dir}/c.json`,
        "--quiet",
      ]);
      assertEquals(r.code, 0, r.stderr);
      const inspect = await runUserCli(["inspect", out, "--json"]);
      assertEquals(inspect.code, 0, inspect.stderr);
      Deno.removeSync(out);
      return JSON.parse(inspect.stdout).policy;
    };
    assertEquals(await policyOf({}), "0x3001f");
    assertEquals(await policyOf({ debug_allowed: false }), "0x3001f");
    assertEquals(await policyOf({ smt_allowed: false }), "0x2001f");
    Deno.writeTextFileSync(
      `${dir}/typo.json`,
      JSON.stringify({ tei_config_data: { policy: { smt_alowed: true } } }),
    );
    const r = await runUserCli([
      "-o",
      `${dir}/o.igvm`,
      "-kernel",
      `${dir}/k`,
      "-config_file",
      `${dir}/typo.json`,
    ]);
    assertEquals(r.code, 1);
    const line = r.stderr.trimEnd();
    assert(!line.includes("\n"), r.stderr);
    assert(
      line.startsWith("error: ") && line.endsWith(
        'unknown key "smt_alowed" in tei_config_data.policy (expected debug_allowed, migrate_ma, smt_allowed, abi_major, abi_minor)',
      ) && line.includes(`${dir}/typo.json`),
      line,
    );
  });
});

/** The byte offsets of the central directory's size fields of a zip's entry `index`. */
function centralEntry(zip: Uint8Array, index: number): { compressed: number; size: number } {
  const v = new DataView(zip.buffer, zip.byteOffset);
  let at = v.getUint32(zip.length - 22 + 16, true);
  for (let i = 0; i < index; i++) {
    at += 46 + v.getUint16(at + 28, true) + v.getUint16(at + 30, true) + v.getUint16(at + 32, true);
  }
  return { compressed: at + 20, size: at + 24 };
}

Deno.test("igvmgen -acpi_dir zip bombs are refused before inflating, or as soon as an entry passes its declared size", async () => {
  await withTempDir(async (dir) => {
    Deno.writeFileSync(`${dir}/k`, makeBzImage());
    const zeros = new Uint8Array(64 << 20); // 64 MiB compresses to about 64 KiB
    const run = (zip: string) =>
      runUserCli(["-o", `${dir}/o.igvm`, "-kernel", `${dir}/k`, "-acpi_dir", zip]);
    // generate.ts names the source, and the ACPI loader names it again.
    const prefix = (zip: string) => `error: ${zip}: not a readable zip archive: `;

    // Honest sizes: one entry too big, or entries too big together.
    const big = `${dir}/big.zip`;
    Deno.writeFileSync(big, zipSync({ "DSDT.aml": zeros }));
    let r = await run(big);
    assertError(
      r,
      1,
      prefix(big) + "DSDT.aml declares 67108864 bytes, more than the 8388608 allowed per entry",
    );
    assertBounded(r, 10, 250, "a 64 MiB entry");

    // A 5 GB bomb in a few KB: many entries each declaring 4 GiB - 1.
    const bomb = zipSync(Object.fromEntries(
      Array.from({ length: 5 }, (_, i) => [`T${i}.aml`, new Uint8Array(4096)]),
    ));
    for (let i = 0; i < 5; i++) {
      new DataView(bomb.buffer).setUint32(centralEntry(bomb, i).size, 0xffff_fffe, true);
    }
    Deno.writeFileSync(`${dir}/bomb.zip`, bomb);
    r = await run(`${dir}/bomb.zip`);
    assertError(
      r,
      1,
      prefix(`${dir}/bomb.zip`) +
        "T0.aml declares 4294967294 bytes, more than the 8388608 allowed per entry",
    );

    const many = zipSync(Object.fromEntries(
      Array.from({ length: 5 }, (_, i) => [`T${i}.aml`, new Uint8Array(8 << 20)]),
    ));
    Deno.writeFileSync(`${dir}/many.zip`, many);
    r = await run(`${dir}/many.zip`);
    assertError(
      r,
      1,
      prefix(`${dir}/many.zip`) + "the entries declare more than the 33554432 bytes allowed in all",
    );

    // A lying directory: 64 MiB of data declared as 4096 bytes.
    const liar = zipSync({ "DSDT.aml": zeros });
    new DataView(liar.buffer).setUint32(centralEntry(liar, 0).size, 4096, true);
    Deno.writeFileSync(`${dir}/liar.zip`, liar);
    r = await run(`${dir}/liar.zip`);
    assertError(
      r,
      1,
      prefix(`${dir}/liar.zip`) + "DSDT.aml inflates to more than its declared 4096 bytes",
    );
    assertBounded(r, 10, 250, "a lying entry");
    assertEquals([...Deno.readDirSync(dir)].some((e) => e.name.startsWith("o.igvm")), false);
  });
});

Deno.test("igvmgen -acpi_dir a legacy snapshot that is a zlib bomb stops at 4 MiB, in bounded memory", async () => {
  await withTempDir(async (dir) => {
    Deno.writeFileSync(`${dir}/k`, makeBzImage());
    // 128 MiB of zeros in about 128 KiB of zlib data, base64 as the snapshot format has it.
    const bomb = new Uint8Array(deflateSync(new Uint8Array(128 << 20)));
    Deno.writeTextFileSync(`${dir}/acpi.zip`, bomb.toBase64());
    const r = await runUserCli([
      "-o",
      `${dir}/o.igvm`,
      "-kernel",
      `${dir}/k`,
      "-acpi_dir",
      `${dir}/acpi.zip`,
    ]);
    assertError(
      r,
      1,
      `error: ACPI source ${dir}/acpi.zip: the payload inflates to more than 4194304 bytes: too large for ACPI pages`,
    );
    assertBounded(r, 10, 120, "a snapshot bomb");
    assertEquals([...Deno.readDirSync(dir)].some((e) => e.name.startsWith("o.igvm")), false);
  });
});
