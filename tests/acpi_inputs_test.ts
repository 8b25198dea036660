/**
 * `-acpi_dir` inputs that used to be dropped, mangled or run without bound: symbolic links,
 * tables with wrong checksums, names with dots, and `.dsl` sources that include devices.
 */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { AcpiError, type AcpiImage, loadAcpi } from "../acpi/acpi_image.ts";
import { walkAcpiTables } from "../acpi/walk.ts";
import { HAVE_IASL, HAVE_SHARED, listDir, mkfifo, REFERENCE, runCli, tempDir } from "./helpers.ts";
import { makeBzImage } from "../scripts/fixtures.ts";
import { oneLineError } from "./task_cli.ts";

const TABLES = `${REFERENCE}acpi/acpi-test`;
const NEEDS = { ignore: !HAVE_SHARED || !HAVE_IASL };

/** The image's bytes by GPA, for comparing two loads. */
function bytesOf(image: AcpiImage): string[] {
  return image.writes.map((w) => `${w.gpa.toString(16)}:${[...w.bytes].join(",")}`);
}

/** Compiles the reference `.dsl` tables into `.aml` files in a new folder. */
async function amlFolder(): Promise<string> {
  const dir = tempDir();
  for (const name of listDir(TABLES)) {
    const out = await new Deno.Command("iasl", {
      args: ["-f", "-p", `${dir}/${name.replace(".dsl", "")}`, `${TABLES}/${name}`],
      stdout: "null",
      stderr: "null",
    }).output();
    assert(out.success, `iasl ${name}`);
  }
  return dir;
}

/** A copy of the reference `.dsl` folder at `dir`, each table renamed by `rename`. */
function copyTables(dir: string, rename = (n: string) => n): string {
  Deno.mkdirSync(dir, { recursive: true });
  for (const name of listDir(TABLES)) {
    Deno.copyFileSync(`${TABLES}/${name}`, `${dir}/${rename(name)}`);
  }
  return dir;
}

Deno.test({
  name: "loadAcpi() follows symbolic links to tables: the image has every table",
  ...NEEDS,
  async fn() {
    const expected = await loadAcpi(TABLES);
    const dir = tempDir();
    for (const name of listDir(TABLES)) Deno.symlinkSync(`${TABLES}/${name}`, `${dir}/${name}`);
    assertEquals(bytesOf(await loadAcpi(dir)), bytesOf(expected));
    const aml = await amlFolder();
    const links = tempDir();
    for (const name of listDir(aml)) Deno.symlinkSync(`${aml}/${name}`, `${links}/${name}`);
    assertEquals(bytesOf(await loadAcpi(links)), bytesOf(expected));
  },
});

Deno.test({
  name: "loadAcpi() refuses, by name, a table entry that is not a regular file",
  ...NEEDS,
  async fn() {
    const cases: [string, (path: string) => void, string][] = [
      [
        "DANGLING.aml",
        (p) => Deno.symlinkSync("/nonexistent/t.aml", p),
        "symbolic link to nothing",
      ],
      ["ZERO.aml", (p) => Deno.symlinkSync("/dev/zero", p), "character device"],
      ["FOLDER.dsl", (p) => Deno.mkdirSync(p), "a folder"],
      ["PIPE.dsl", (p) => mkfifo(p), "a FIFO"],
      ["SSDT.asl", (p) => Deno.writeTextFileSync(p, ""), "does not read"],
      ["apic.dat", (p) => Deno.writeTextFileSync(p, ""), "does not read"],
    ];
    for (const [name, make, why] of cases) {
      const dir = copyTables(`${tempDir()}/t`);
      make(`${dir}/${name}`);
      const e = await assertRejects(() => loadAcpi(dir), AcpiError, why);
      assert(e.message.includes(`${dir}/${name}`), e.message);
    }
    // A link to a file too large for a table is bounded like any input.
    const dir = copyTables(`${tempDir()}/t`);
    const big = `${tempDir()}/big.aml`;
    using f = Deno.openSync(big, { write: true, create: true });
    f.truncateSync(64 << 20);
    Deno.symlinkSync(big, `${dir}/BIG.aml`);
    await assertRejects(() => loadAcpi(dir), Error, "larger than");
  },
});

Deno.test({
  name: "loadAcpi() takes any table name: x.v2.dsl, a dotted folder, a zip with tables at its root",
  ...NEEDS,
  async fn() {
    const expected = bytesOf(await loadAcpi(TABLES));
    const dotted = copyTables(`${tempDir()}/tables.d/v1.2`, (n) => n.replace(".dsl", ".v2.dsl"));
    assertEquals(bytesOf(await loadAcpi(dotted)), expected);
    const zip = `${tempDir()}/tables.v2.zip`;
    const made = await new Deno.Command("zip", {
      args: ["-q", "-j", zip, ...listDir(dotted).map((n) => `${dotted}/${n}`)],
    }).output().catch(() => undefined);
    if (made?.success) assertEquals(bytesOf(await loadAcpi(zip)), expected);
  },
});

Deno.test({
  name: "loadAcpi() refuses a .dsl that includes a device or a FIFO, naming the table, at once",
  ...NEEDS,
  async fn() {
    for (const target of ["/dev/zero", "fifo"]) {
      const dir = copyTables(`${tempDir()}/t`);
      if (target === "fifo") mkfifo(`${dir}/fifo`);
      Deno.writeTextFileSync(
        `${dir}/SSDT.dsl`,
        `DefinitionBlock ("", "SSDT", 2, "TEST", "TEST", 1)\n{\n    Include ("${target}")\n}\n`,
      );
      const started = Date.now();
      const e = await assertRejects(() => loadAcpi(dir), AcpiError, "includes");
      assert(e.message.includes(`${dir}/SSDT.dsl`), e.message);
      assert(Date.now() - started < 10_000, "no iasl ran without bound");
    }
  },
});

Deno.test("loadAcpi() stops an iasl that runs too long or prints without end, naming the table", async () => {
  const dir = tempDir();
  const tables = `${dir}/t`;
  Deno.mkdirSync(tables);
  Deno.writeTextFileSync(`${tables}/DSDT.dsl`, "DefinitionBlock () {}\n");
  for (const [body, why] of [["exec sleep 60", "took more than"], ["exec yes", "printed more"]]) {
    const fake = `${dir}/fake-iasl`;
    Deno.writeTextFileSync(fake, `#!/bin/sh\n${body}\n`);
    Deno.chmodSync(fake, 0o755);
    const started = Date.now();
    const e = await assertRejects(
      () => loadAcpi(tables, { iasl: fake, iaslTimeLimitMs: 1000 }),
      AcpiError,
      why,
    );
    assert(e.message.includes(`${tables}/DSDT.dsl`), e.message);
    assert(Date.now() - started < 20_000);
  }
});

Deno.test({
  name: "igvmgen -acpi_dir with .aml tables of wrong checksums writes an image verify accepts",
  ...NEEDS,
  async fn() {
    const aml = await amlFolder();
    for (const [file, at] of [["APIC_sample.aml", 9], ["rsdp.aml", 8], ["tpm2.aml", 20]] as const) {
      const bytes = Deno.readFileSync(`${aml}/${file}`);
      bytes[at] ^= 0x11;
      Deno.writeFileSync(`${aml}/${file}`, bytes);
    }
    const dir = tempDir();
    Deno.writeFileSync(`${dir}/k`, makeBzImage());
    const gen = await runCli(["-o", `${dir}/o.igvm`, "-kernel", `${dir}/k`, "-acpi_dir", aml]);
    assertEquals(gen.code, 0, gen.stderr);
    const verify = await runCli(["verify", `${dir}/o.igvm`]);
    assertEquals(verify.code, 0, verify.stdout + verify.stderr);
    assert(/OK .*ACPI RSDP XSDT APIC/.test(verify.stdout), verify.stdout);
  },
});

Deno.test({
  name: "walkAcpiTables() of a loaded folder finds no problem but the FACS alignment",
  ...NEEDS,
  async fn() {
    const image = await loadAcpi(copyTables(`${tempDir()}/a.b`, (n) => `x.${n}`));
    const read = (gpa: number, n: number) => {
      const out = new Uint8Array(n);
      for (const w of image.writes) {
        for (let i = 0; i < w.bytes.length; i++) {
          if (w.gpa + i >= gpa && w.gpa + i < gpa + n) out[w.gpa + i - gpa] = w.bytes[i];
        }
      }
      return out;
    };
    assertEquals(walkAcpiTables(read).problems.filter((p) => !/aligned/.test(p)), []);
  },
});

/** Runs igvmgen on a synthetic kernel in `dir` (the current folder) with `args`. */
async function generateIn(dir: string, args: string[]) {
  Deno.writeFileSync(`${dir}/k`, makeBzImage());
  return await runCli(["-kernel", "k", ...args], undefined, dir);
}

/** Asserts each file keeps its bytes and nothing else appeared in its folder. */
function assertUntouched(files: Record<string, Uint8Array>, folders: Record<string, string[]>) {
  for (const [path, bytes] of Object.entries(files)) {
    assertEquals(Deno.readFileSync(path), bytes, `${path} changed`);
  }
  for (const [dir, names] of Object.entries(folders)) assertEquals(listDir(dir), names);
}

Deno.test({
  name: "igvmgen refuses an output that is an -acpi_dir table reached through a link",
  ...NEEDS,
  async fn() {
    const dir = tempDir();
    const aml = await amlFolder();
    Deno.renameSync(aml, `${dir}/aml`);
    Deno.mkdirSync(`${dir}/lnk`);
    for (const name of listDir(`${dir}/aml`)) {
      Deno.symlinkSync(`../aml/${name}`, `${dir}/lnk/${name}`);
    }
    const tables = listDir(`${dir}/aml`);
    const tpm2 = Deno.readFileSync(`${dir}/aml/tpm2.aml`);
    const rsdp = Deno.readFileSync(`${dir}/aml/rsdp.aml`);
    const untouched = () =>
      assertUntouched({ [`${dir}/aml/tpm2.aml`]: tpm2, [`${dir}/aml/rsdp.aml`]: rsdp }, {
        [`${dir}/aml`]: tables,
      });
    // The table through a symbolic link in the -acpi_dir folder.
    let r = await generateIn(dir, ["-acpi_dir", "lnk", "-o", "aml/tpm2.aml"]);
    oneLineError(r, 2, "-o aml/tpm2.aml is the same file as lnk/tpm2.aml", "-acpi_dir lnk");
    untouched();
    // -measurement_file too.
    r = await generateIn(dir, [
      "-acpi_dir",
      "lnk",
      "-o",
      "x.igvm",
      "-measurement_file",
      "aml/rsdp.aml",
    ]);
    oneLineError(r, 2, "-measurement_file aml/rsdp.aml is the same file as lnk/rsdp.aml");
    untouched();
    assertEquals(listDir(dir).includes("x.igvm"), false);
    // A hard link to a table, outside the folder.
    Deno.linkSync(`${dir}/aml/tpm2.aml`, `${dir}/hard.aml`);
    r = await generateIn(dir, ["-acpi_dir", "aml", "-o", "hard.aml"]);
    oneLineError(r, 2, "-o hard.aml is the same file as aml/tpm2.aml", "-acpi_dir aml");
    untouched();
    // A .dsl table behind a symbolic link.
    Deno.mkdirSync(`${dir}/dsl`);
    Deno.mkdirSync(`${dir}/dsl-links`);
    for (const name of listDir(TABLES)) {
      Deno.copyFileSync(`${TABLES}/${name}`, `${dir}/dsl/${name}`);
      Deno.symlinkSync(`${dir}/dsl/${name}`, `${dir}/dsl-links/${name}`);
    }
    const source = Deno.readFileSync(`${dir}/dsl/tpm2.dsl`);
    r = await generateIn(dir, ["-acpi_dir", "dsl-links", "-o", "dsl/tpm2.dsl"]);
    oneLineError(r, 2, "-o dsl/tpm2.dsl is the same file as dsl-links/tpm2.dsl");
    assertUntouched({ [`${dir}/dsl/tpm2.dsl`]: source }, { [`${dir}/dsl`]: listDir(TABLES) });
  },
});

/** A folder of the reference tables whose DSDT includes `name` (a one-line Name()). */
function tablesIncluding(dir: string, name: string): void {
  copyTables(dir);
  const dsdt = `${dir}/DSDT_sample.dsl`;
  const text = Deno.readTextFileSync(dsdt);
  const open = text.indexOf("{", text.indexOf("DefinitionBlock"));
  Deno.writeTextFileSync(
    dsdt,
    `${text.slice(0, open + 1)}\n    Include ("${name}")\n${text.slice(open + 1)}`,
  );
}

Deno.test({
  name: "igvmgen refuses an output that is a file a .dsl table includes (folder and zip)",
  ...NEEDS,
  async fn() {
    const dir = tempDir();
    Deno.mkdirSync(`${dir}/incf`);
    const common = new TextEncoder().encode("Name (ZZZZ, One)\n");
    Deno.writeFileSync(`${dir}/incf/common.asi`, common);
    tablesIncluding(`${dir}/dsl`, "../incf/common.asi");
    // The include compiles: the run works with another output.
    let r = await generateIn(dir, ["-acpi_dir", "dsl", "-o", "ok.igvm"]);
    assertEquals(r.code, 0, r.stderr);
    r = await generateIn(dir, ["-acpi_dir", "dsl", "-o", "incf/common.asi"]);
    oneLineError(r, 2, "-o incf/common.asi is the same file as", "common.asi", "-acpi_dir dsl");
    assertUntouched({ [`${dir}/incf/common.asi`]: common }, { [`${dir}/incf`]: ["common.asi"] });
    // A zip's tables include files found from the current folder; known once it is read,
    // and refused before anything is written.
    tablesIncluding(`${dir}/z`, "incf/common.asi");
    const zip = await new Deno.Command("zip", {
      args: ["-q", "-j", `${dir}/t.zip`, ...listDir(`${dir}/z`).map((n) => `${dir}/z/${n}`)],
    }).output();
    assert(zip.success, "zip");
    r = await generateIn(dir, ["-acpi_dir", "t.zip", "-o", "ok2.igvm"]);
    assertEquals(r.code, 0, r.stderr);
    r = await generateIn(dir, ["-acpi_dir", "t.zip", "-o", "incf/common.asi"]);
    oneLineError(r, 2, "-o incf/common.asi is the same file as", "-acpi_dir t.zip");
    assertUntouched({ [`${dir}/incf/common.asi`]: common }, { [`${dir}/incf`]: ["common.asi"] });
  },
});

Deno.test({
  name: "igvmgen -acpi_dir refuses a subfolder that holds tables, by name; others are left alone",
  ...NEEDS,
  async fn() {
    const dir = tempDir();
    const aml = await amlFolder();
    // A subfolder of files the tables include (no tables in it) is fine.
    Deno.mkdirSync(`${aml}/include`);
    Deno.writeTextFileSync(`${aml}/include/common.asi`, "Name (ZZZZ, One)\n");
    let r = await generateIn(dir, ["-acpi_dir", aml, "-o", "o.igvm"]);
    assertEquals(r.code, 0, r.stderr);
    Deno.mkdirSync(`${aml}/more`);
    Deno.renameSync(`${aml}/tpm2.aml`, `${aml}/more/tpm2.aml`);
    r = await generateIn(dir, ["-acpi_dir", aml, "-o", "o2.igvm"]);
    oneLineError(r, 1, `${aml}/more is a subfolder holding tables (tpm2.aml)`);
    assertEquals(listDir(dir).includes("o2.igvm"), false);
    // A symbolic link to such a folder too.
    Deno.renameSync(`${aml}/more`, `${dir}/more`);
    Deno.symlinkSync(`${dir}/more`, `${aml}/linked`);
    r = await generateIn(dir, ["-acpi_dir", aml, "-o", "o2.igvm"]);
    oneLineError(r, 1, `${aml}/linked is a subfolder holding tables (tpm2.aml)`);
  },
});

Deno.test({
  name: "igvmgen -acpi_dir notes an .aml not read because a .dsl of its name is (not with --quiet)",
  ...NEEDS,
  async fn() {
    const dir = tempDir();
    const aml = await amlFolder();
    Deno.copyFileSync(`${TABLES}/tpm2.dsl`, `${aml}/tpm2.dsl`);
    // The .aml's bytes are not used: the .dsl wins, as in the original.
    Deno.writeFileSync(`${aml}/tpm2.aml`, new Uint8Array([1, 2, 3]));
    const note = `igvmgen: note: ${aml}/tpm2.aml is not read: ${aml}/tpm2.dsl has the same name`;
    let r = await generateIn(dir, ["-acpi_dir", aml, "-o", "o.igvm"]);
    assertEquals(r.code, 0, r.stderr);
    assert(r.stderr.split("\n").some((l) => l.startsWith(note)), r.stderr);
    r = await generateIn(dir, ["-acpi_dir", aml, "-o", "o.igvm", "--quiet"]);
    assertEquals([r.code, r.stderr], [0, ""]);
  },
});
