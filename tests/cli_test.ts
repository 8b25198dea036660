/** The command line as a user runs it: exit codes, one-line errors, no partial output. */
import { generateKeyPairSync } from "node:crypto";
import { assert, assertEquals } from "./assert.ts";
import {
  FIXTURES,
  HAVE_SHARED,
  listDir,
  REFERENCE,
  runCli,
  sha256Hex,
  tempDir,
} from "./helpers.ts";
import { makeBzImage } from "../scripts/fixtures.ts";
import { verifyIdBlock } from "../lib/measure/id_block.ts";
import { fromLittleEndian72 } from "../lib/measure/id_block.ts";

const ACPI_ZIP = `${REFERENCE}acpi/acpi.zip`;
const KEY = `${FIXTURES}test-key.pem`;
const withShared = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, ignore: !HAVE_SHARED, fn });

/** Asserts a failed run: the exit code and exactly one line on stderr starting "error:". */
function assertOneLineError(r: { code: number; stderr: string }, code: number, includes: string) {
  assertEquals(r.code, code, r.stderr);
  const lines = r.stderr.trim().split("\n").filter((l) => !l.startsWith("igvmgen: warning"));
  assertEquals(lines.length, 1, `one line expected: ${r.stderr}`);
  assert(lines[0].startsWith("error: "), lines[0]);
  assert(lines[0].includes(includes), `"${lines[0]}" lacks "${includes}"`);
  assert(!/\bat .*\.ts:\d+/.test(r.stderr), "no stack trace");
}

/** Reads the ID block and policy of an IGVM file we wrote: the last header. */
function readIdBlock(file: Uint8Array) {
  const v = new DataView(file.buffer, file.byteOffset);
  const end = 0x18 + v.getUint32(12, true);
  const at = end - 704;
  assertEquals(v.getUint32(at, true), 0x30b);
  const b = file.subarray(at + 8, end);
  const policy = new DataView(file.buffer).getBigUint64(0x30 + 8, true); // SNP_POLICY body
  const block = new Uint8Array(96);
  block.set(b.subarray(8, 96));
  new DataView(block.buffer).setBigUint64(88, policy, true);
  return {
    block,
    familyId: b.subarray(0x38, 0x48),
    guestSvn: new DataView(b.buffer, b.byteOffset).getUint32(0x5c, true),
    policy,
    r: fromLittleEndian72(b.subarray(0x68, 0x68 + 72)),
    s: fromLittleEndian72(b.subarray(0xb0, 0xb0 + 72)),
    x: fromLittleEndian72(b.subarray(0x100, 0x100 + 72)),
    y: fromLittleEndian72(b.subarray(0x148, 0x148 + 72)),
  };
}

Deno.test("igvmgen --help prints the options and exits 0", async () => {
  for (const flag of ["--help", "-h", "-help"]) {
    const r = await runCli([flag]);
    assertEquals(r.code, 0);
    for (
      const opt of [
        "-kernel",
        "-append",
        "-boot_mode",
        "-vtl",
        "-inform",
        "-acpi_dir",
        "-pvalidate_opt",
        "-d",
      ]
    ) {
      assert(r.stdout.includes(opt), `help lacks ${opt}`);
    }
  }
});

Deno.test("igvmgen with bad options exits 2 with one line naming the option", async () => {
  const cases: [string[], string][] = [
    [["-o", "x", "-frobnicate", "1"], "unknown option -frobnicate"],
    [["-o", "x", "-svme", "maybe"], "-svme"],
    [["-o", "x", "-pvalidate_opt", "yes please"], "-pvalidate_opt"],
    [["-o", "x", "-encrypted_page", "2"], "-encrypted_page"],
    [["-o", "x", "-sign_deterministic", "on"], "-sign_deterministic"],
    [["-o", "x", "-vtl", "3"], "-vtl"],
    [["-o", "x", "-vtl", "two"], "-vtl"],
    [["-o", "x", "-boot_mode", "x32"], "-boot_mode"],
    [["-o", "x", "-inform", "pe"], "-inform"],
    [["-o", "x", "-arch", "ARM"], "-arch"],
    [["-o", "x", "-pgtable_level", "3"], "-pgtable_level"],
    [["-o", "x", "-svn", "-1"], "-svn"],
    [["-o", "x", "-l", "LOUD"], "-log-level"],
    [["-o"], "-o needs a value"],
    [["-o", "x", "-s", "1"], "ambiguous option -s"],
    [["-o", "x", "-append", "-quiet"], "-append needs a value"],
    [["-o", "x"], "no kernel"],
    [["-kernel", "k"], "no output"],
  ];
  for (const [args, message] of cases) assertOneLineError(await runCli(args), 2, message);
});

Deno.test("igvmgen -o OUT -kernel MISSING fails with one line and writes nothing", async () => {
  const dir = tempDir();
  const r = await runCli(["-o", `${dir}/out.igvm`, "-kernel", `${dir}/nope`]);
  assertOneLineError(r, 1, "does not exist");
  assertEquals(listDir(dir), []);
});

Deno.test("igvmgen rejects bad kernels, each for its reason, leaving no output", async () => {
  const dir = tempDir();
  const good = makeBzImage();
  const write = (
    name: string,
    bytes: Uint8Array,
  ) => (Deno.writeFileSync(`${dir}/${name}`, bytes), `${dir}/${name}`);
  const mutate = (f: (v: DataView) => void) => {
    const b = good.slice();
    f(new DataView(b.buffer));
    return b;
  };
  Deno.mkdirSync(`${dir}/folder`);
  const cases: [string, string][] = [
    [`${dir}/folder`, "is a folder"],
    [write("empty", new Uint8Array(0)), "too short for a setup header"],
    [write("short", good.slice(0, 0x200)), "too short for a setup header"],
    [write("magic", mutate((v) => v.setUint32(0x202, 0, true))), '"HdrS"'],
    [write("no64", mutate((v) => v.setUint16(0x236, 0, true))), "64-bit entry point"],
    [write("low", mutate((v) => v.setBigUint64(0x258, 0x100000n, true))), "not above 3 MiB"],
    [write("init", mutate((v) => v.setUint32(0x260, 0x1234567, true))), "init_size"],
  ];
  const out = `${dir}/out/o.igvm`;
  Deno.mkdirSync(`${dir}/out`);
  for (const [kernel, message] of cases) {
    const r = await runCli(["-o", out, "-kernel", kernel, "-acpi_dir", `${dir}/none`]);
    assertOneLineError(r, 1, message);
    assertEquals(listDir(`${dir}/out`), []);
  }
});

withShared(
  "igvmgen: a failure leaves an existing output untouched and no temporary file",
  async () => {
    const dir = tempDir();
    const out = `${dir}/out.igvm`;
    Deno.writeTextFileSync(out, "previous");
    const r = await runCli([
      "-o",
      out,
      "-kernel",
      `${FIXTURES}test_bzImage`,
      "-acpi_dir",
      ACPI_ZIP,
      "-sign_key",
      `${FIXTURES}payload8.bin`,
    ]);
    assertOneLineError(r, 1, "signing key");
    assertEquals(Deno.readTextFileSync(out), "previous");
    assertEquals(listDir(dir), ["out.igvm"]);
  },
);

withShared("igvmgen reports bad side inputs with one line naming the file", async () => {
  const dir = tempDir();
  Deno.writeTextFileSync(`${dir}/bad.json`, '{"tei_config_data": {"family_id": "xyz"}}');
  const p256 = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({
    format: "pem",
    type: "sec1",
  });
  Deno.writeTextFileSync(`${dir}/p256.pem`, p256.toString());
  Deno.mkdirSync(`${dir}/emptyacpi`);
  const base = ["-o", `${dir}/o.igvm`, "-kernel", `${FIXTURES}test_bzImage`];
  const cases: [string[], number, string][] = [
    [["-acpi_dir", ACPI_ZIP, "-rdinit", `${dir}/missing-initrd`], 1, "initrd"],
    [
      ["-acpi_dir", ACPI_ZIP, "-sign_key", `${FIXTURES}tei-config.json`],
      1,
      "not a PEM private key",
    ],
    [["-acpi_dir", ACPI_ZIP, "-sign_key", `${dir}/p256.pem`], 1, "P-256"],
    [["-acpi_dir", ACPI_ZIP, "-config_file", `${dir}/bad.json`], 1, "family_id"],
    [["-acpi_dir", `${dir}/emptyacpi`], 1, "no .dsl or .aml"],
    [["-acpi_dir", `${dir}/nowhere`], 1, "cannot read ACPI source"],
    [["-acpi_dir", ACPI_ZIP, "-inform", "bzImage2"], 2, "-shared_payload"],
    [["-acpi_dir", ACPI_ZIP, "-inform", "elf"], 1, "not an ELF"],
  ];
  for (const [extra, code, message] of cases) {
    assertOneLineError(await runCli([...base, ...extra]), code, message);
  }
  assertOneLineError(
    await runCli([
      "-o",
      `${dir}/no/such/folder/o.igvm`,
      "-kernel",
      `${FIXTURES}test_bzImage`,
      "-acpi_dir",
      ACPI_ZIP,
    ]),
    1,
    "does not exist",
  );
  assertEquals(listDir(dir).includes("o.igvm"), false);
});

withShared("igvmgen - reads the kernel from standard input and writes the same bytes", async () => {
  const dir = tempDir();
  const args = [
    "-acpi_dir",
    ACPI_ZIP,
    "-sign_key",
    KEY,
    "-sign_deterministic",
    "1",
    "-append",
    "console=ttyS0",
  ];
  const a = await runCli(["-o", `${dir}/a.igvm`, "-kernel", `${FIXTURES}test_bzImage`, ...args]);
  const b = await runCli(
    ["-", "-o", `${dir}/b.igvm`, ...args],
    Deno.readFileSync(`${FIXTURES}test_bzImage`),
  );
  const c = await runCli(
    ["-o", `${dir}/c.igvm`, "-kernel", "-", ...args],
    Deno.readFileSync(`${FIXTURES}test_bzImage`),
  );
  assertEquals([a.code, b.code, c.code], [0, 0, 0], a.stderr + b.stderr + c.stderr);
  const h = sha256Hex(Deno.readFileSync(`${dir}/a.igvm`));
  assertEquals(sha256Hex(Deno.readFileSync(`${dir}/b.igvm`)), h);
  assertEquals(sha256Hex(Deno.readFileSync(`${dir}/c.igvm`)), h);
});

withShared("igvmgen accepts --long, --long=value and -name=value forms alike", async () => {
  const dir = tempDir();
  const forms = [
    [
      "-o",
      `${dir}/1.igvm`,
      "-kernel",
      `${FIXTURES}test_bzImage`,
      "-boot_mode",
      "x64",
      "-acpi_dir",
      ACPI_ZIP,
    ],
    [
      `--o=${dir}/2.igvm`,
      `--kernel=${FIXTURES}test_bzImage`,
      "--boot_mode",
      "x64",
      `--acpi_dir=${ACPI_ZIP}`,
    ],
    [`-o=${dir}/3.igvm`, `-kernel=${FIXTURES}test_bzImage`, "-boot_mode=x64", "-acpi_d", ACPI_ZIP],
  ];
  const hashes = [];
  for (const [i, f] of forms.entries()) {
    const r = await runCli([...f, "-sign_key", KEY, "-sign_deterministic", "true"]);
    assertEquals(r.code, 0, r.stderr);
    hashes.push(sha256Hex(Deno.readFileSync(`${dir}/${i + 1}.igvm`)));
  }
  assertEquals(new Set(hashes).size, 1);
});

withShared(
  "igvmgen -config_file sets family id, SVN and policy; the signature verifies",
  async () => {
    const dir = tempDir();
    const config = JSON.parse(Deno.readTextFileSync(`${FIXTURES}tei-config.json`));
    config.tei_config_data.policy.debug_allowed = true;
    Deno.writeTextFileSync(`${dir}/c.json`, JSON.stringify(config));
    const common = [
      "-kernel",
      `${FIXTURES}test_bzImage`,
      "-acpi_dir",
      ACPI_ZIP,
      "-sign_key",
      KEY,
      "-sign_deterministic",
      "true",
    ];
    assertEquals((await runCli(["-o", `${dir}/plain.igvm`, ...common])).code, 0);
    const r = await runCli(["-o", `${dir}/conf.igvm`, ...common, "-config_file", `${dir}/c.json`]);
    assertEquals(r.code, 0, r.stderr);
    const plain = readIdBlock(Deno.readFileSync(`${dir}/plain.igvm`));
    const conf = readIdBlock(Deno.readFileSync(`${dir}/conf.igvm`));
    assertEquals(plain.familyId[0], 1);
    assertEquals([...conf.familyId.subarray(0, 4)], [0x12, 0x16, 0x1a, 0x1b]);
    assertEquals([plain.guestSvn, conf.guestSvn], [2, 9]);
    assertEquals([plain.policy, conf.policy], [0x3001fn, 0xb001fn]);
    assert(
      await verifyIdBlock(conf.block, conf.r, conf.s, conf.x, conf.y),
      "config signature verifies",
    );
    assert(
      await verifyIdBlock(plain.block, plain.r, plain.s, plain.x, plain.y),
      "default signature verifies",
    );
  },
);

withShared(
  "igvmgen without -sign_key signs with a fresh key, says so, and keeps the measurement",
  async () => {
    const dir = tempDir();
    const common = ["-kernel", `${FIXTURES}test_bzImage`, "-acpi_dir", ACPI_ZIP];
    const a = await runCli([
      "-o",
      `${dir}/a.igvm`,
      "-measurement_file",
      `${dir}/a.json`,
      ...common,
    ]);
    const b = await runCli([
      "-o",
      `${dir}/b.igvm`,
      "-measurement_file",
      `${dir}/b.json`,
      ...common,
    ]);
    assertEquals([a.code, b.code], [0, 0]);
    assert(a.stderr.includes("fresh random P-384 key"), a.stderr);
    assertEquals(Deno.readTextFileSync(`${dir}/a.json`), Deno.readTextFileSync(`${dir}/b.json`));
    const ia = readIdBlock(Deno.readFileSync(`${dir}/a.igvm`));
    const ib = readIdBlock(Deno.readFileSync(`${dir}/b.igvm`));
    assert(sha256Hex(ia.x) !== sha256Hex(ib.x), "two fresh keys");
    assert(await verifyIdBlock(ia.block, ia.r, ia.s, ia.x, ia.y));
  },
);

Deno.test("igvmgen -d on a non-IGVM, truncated or missing file fails with one line", async () => {
  const dir = tempDir();
  Deno.writeTextFileSync(`${dir}/text`, "hello, this is not an IGVM file at all");
  const fake = new Uint8Array(64);
  new DataView(fake.buffer).setUint32(0, 0x4d564749, true);
  new DataView(fake.buffer).setUint32(8, 0x18, true);
  new DataView(fake.buffer).setUint32(12, 0x1000, true);
  Deno.writeFileSync(`${dir}/trunc`, fake);
  assertOneLineError(await runCli(["-d", `${dir}/text`]), 1, "not an IGVM file");
  assertOneLineError(await runCli(["-d", `${dir}/trunc`]), 1, "truncated");
  assertOneLineError(await runCli(["-d", `${dir}/missing`]), 1, "cannot dump");
});

Deno.test("igvmgen reports bad ELF input, bad profiles and bad ACPI folders in one line", async () => {
  const { makeElf } = await import("../scripts/fixtures.ts");
  const dir = tempDir();
  const elf = makeElf();
  Deno.writeFileSync(`${dir}/trunc.elf`, elf.slice(0, 100));
  const wrong = elf.slice();
  new DataView(wrong.buffer).setUint16(0x12, 40, true);
  Deno.writeFileSync(`${dir}/arm.elf`, wrong);
  Deno.writeFileSync(`${dir}/good.elf`, elf);
  Deno.mkdirSync(`${dir}/acpi`);
  Deno.writeFileSync(
    `${dir}/acpi/junk.aml`,
    new TextEncoder().encode("JUNKJUNKJUNKJUNKJUNKJUNKJUNKJUNKJUNKJUNK"),
  );
  const base = ["-o", `${dir}/o.igvm`];
  const cases: [string[], number, string][] = [
    [["-kernel", `${dir}/trunc.elf`, "-inform", "elf"], 1, "truncated"],
    [["-kernel", `${dir}/arm.elf`, "-inform", "elf"], 1, "not x86-64"],
    [["-kernel", `${dir}/arm.elf`, "-acpi_profile", "hyperv"], 2, "-acpi_profile"],
    [["-kernel", `${dir}/arm.elf`, "-vcpus", "0"], 2, "-vcpus"],
    [["-kernel", `${dir}/arm.elf`, "-vcpus", "256"], 2, "-vcpus"],
    [
      ["-kernel", `${dir}/good.elf`, "-inform", "elf", "-acpi_dir", `${dir}/acpi`],
      1,
      "unsupported table signature",
    ],
  ];
  for (const [extra, code, message] of cases) {
    assertOneLineError(await runCli([...base, ...extra]), code, message);
  }
  assertEquals(listDir(dir).includes("o.igvm"), false);
});

Deno.test({
  name:
    "igvmgen -acpi_dir with a .dsl iasl rejects shows iasl's first error; nothing is written into the folder",
  ignore: !HAVE_SHARED,
  async fn() {
    const { makeBzImage } = await import("../scripts/fixtures.ts");
    const dir = tempDir();
    Deno.mkdirSync(`${dir}/acpi`);
    for (const name of listDir(`${REFERENCE}acpi/acpi-test`)) {
      Deno.copyFileSync(`${REFERENCE}acpi/acpi-test/${name}`, `${dir}/acpi/${name}`);
    }
    Deno.writeFileSync(`${dir}/k`, makeBzImage());
    const before = listDir(`${dir}/acpi`);
    const ok = await runCli([
      "-o",
      `${dir}/ok.igvm`,
      "-kernel",
      `${dir}/k`,
      "-acpi_dir",
      `${dir}/acpi`,
    ]);
    assertEquals(ok.code, 0, ok.stderr);
    assertEquals(listDir(`${dir}/acpi`), before, "no .aml written into the ACPI folder");
    Deno.writeTextFileSync(
      `${dir}/acpi/DSDT_sample.dsl`,
      'DefinitionBlock ("", "DSDT", 2, "X", "Y", 1) { Name (\n',
    );
    const badRun = ["-o", `${dir}/bad.igvm`, "-kernel", `${dir}/k`, "-acpi_dir", `${dir}/acpi`];
    const r = await runCli(badRun);
    assertOneLineError(r, 1, "iasl rejected");
    assert(r.stderr.includes("Error 6126 - syntax error"), r.stderr);
    // iasl 20200925 crashes on this data-table input; the message says so.
    Deno.writeTextFileSync(
      `${dir}/acpi/APIC_sample.dsl`,
      '[0004] Signature : "APIC"\n[0004] Table Length : zz\n',
    );
    Deno.removeSync(`${dir}/acpi/DSDT_sample.dsl`);
    const crash = await runCli(badRun);
    const rejected = `error: iasl rejected ${dir}/acpi/APIC_sample.dsl: `;
    const version = new TextDecoder().decode(
      new Deno.Command("iasl", { args: ["-v"], stdout: "piped", stderr: "null" }).outputSync()
        .stdout,
    );
    if (version.includes("version 20200925")) {
      assertEquals(crash.stderr, `${rejected}iasl was killed by SIGSEGV and wrote no AML\n`);
    } else {
      // Another iasl may report an error instead of crashing: its first error line is shown.
      assertOneLineError(crash, 1, "iasl rejected");
      assert(crash.stderr.startsWith(rejected), crash.stderr);
      assert(
        /^(iasl (was killed by SIG[A-Z]+|exited with status \d+) and wrote no AML|.*\bError\b.*)$/
          .test(crash.stderr.trimEnd().slice(rejected.length)),
        crash.stderr,
      );
    }
    assertEquals(crash.code, 1);
    assertEquals(listDir(`${dir}/acpi`), before.filter((n) => n !== "DSDT_sample.dsl"));
  },
});

Deno.test("igvmgen --verbose adds the cause chain and stack after the one-line error", async () => {
  const dir = tempDir();
  Deno.writeFileSync(`${dir}/k`, new Uint8Array(10));
  const quiet = await runCli(["-o", `${dir}/o`, "-kernel", `${dir}/k`]);
  assertOneLineError(quiet, 1, "too short");
  const loud = await runCli(["-o", `${dir}/o`, "-kernel", `${dir}/k`, "--verbose"]);
  assertEquals(loud.code, 1);
  assert(loud.stderr.split("\n")[0].startsWith("error: "), loud.stderr);
  assert(/at .*\.ts:\d+/.test(loud.stderr), "a stack with --verbose");
});
