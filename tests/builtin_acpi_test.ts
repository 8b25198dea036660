/**
 * The built-in ACPI tables, read back from generated images: checksums, lengths, pointers,
 * FACS alignment and the MADT's CPUs; then `iasl -d` and `acpiexec` on every table.
 */
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { builtinAcpi } from "../acpi/builtin.ts";
import * as aml from "../acpi/aml.ts";
import { acpiProfile, type ProfileName } from "../acpi/profiles.ts";
import { madtEnabledCpus, walkAcpiTables } from "../acpi/walk.ts";
import { readGuest, readIgvmFile } from "../lib/igvm/reader.ts";
import { makeBzImage } from "../scripts/fixtures.ts";
import { generateImage, HAVE_IASL, tempDir } from "./helpers.ts";

Deno.test("aml.pkgLength() encodes 1 to 4 bytes at the boundaries", () => {
  assertEquals([...aml.pkgLength(0)], [1]);
  assertEquals([...aml.pkgLength(62)], [63]);
  assertEquals([...aml.pkgLength(63)], [0x40 | ((63 + 2) & 0xf), (63 + 2) >> 4]);
  assertEquals([...aml.pkgLength(0xfff - 2)], [0x4f, 0xff]);
  assertEquals(aml.pkgLength(0xfff - 1).length, 3);
  assertEquals(aml.pkgLength(0x100000).length, 4);
});

Deno.test("aml.eisaId() compresses PNP0A03 to 41 D0 0A 03", () => {
  assertEquals([...aml.eisaId("PNP0A03")], [0x0c, 0x41, 0xd0, 0x0a, 0x03]);
  assertEquals([...aml.eisaId("PNP0501")], [0x0c, 0x41, 0xd0, 0x05, 0x01]);
});

Deno.test("aml.integer() picks the shortest encoding", () => {
  assertEquals([...aml.integer(0)], [0]);
  assertEquals([...aml.integer(1)], [1]);
  assertEquals([...aml.integer(0x0f)], [0x0a, 0x0f]);
  assertEquals([...aml.integer(0x3f8)], [0x0b, 0xf8, 0x03]);
  assertEquals([...aml.integer(0xfec00000)], [0x0c, 0, 0, 0xc0, 0xfe]);
  assertEquals(aml.integer(0x1_0000_0000n).length, 9);
  assertThrows(() => aml.nameString("_SB.bad"), Error, "invalid AML name");
});

Deno.test("acpiProfile() accepts 1 to 255 vCPUs", () => {
  assertThrows(() => acpiProfile("default", 0), RangeError);
  assertThrows(() => acpiProfile("clh", 256), RangeError);
});

/** Generates an image with the built-in tables and returns it parsed. */
async function generate(profile: ProfileName, vcpus: number) {
  return readIgvmFile(await generateImage(["-acpi_profile", profile, "-vcpus", String(vcpus)]));
}

for (const profile of ["default", "clh"] as const) {
  for (const vcpus of [1, 8, 255]) {
    Deno.test(`built-in ${profile} tables with ${vcpus} vCPUs: walk, checksums, FACS alignment, MADT`, async () => {
      const file = await generate(profile, vcpus);
      assertEquals(file.problems, []);
      const walk = walkAcpiTables((gpa, n) => readGuest(file.pages, gpa, n));
      assertEquals(walk.problems, []);
      const names = walk.tables.map((t) => t.signature).sort();
      const expected = [
        "APIC",
        "DSDT",
        "FACP",
        "FACS",
        "RSDP",
        "XSDT",
        ...(profile === "clh" ? ["MCFG"] : []),
      ].sort();
      assertEquals(names, expected);
      const facs = walk.tables.find((t) => t.signature === "FACS")!;
      assertEquals(facs.gpa % 64, 0);
      const madt = walk.tables.find((t) => t.signature === "APIC")!;
      assertEquals(madtEnabledCpus(madt.bytes), Array.from({ length: vcpus }, (_, i) => i));
      for (const t of walk.tables) {
        assert(
          t.gpa >= 0xe0000 && t.gpa + t.bytes.length <= 0x800000,
          `${t.signature} placed in the ACPI area`,
        );
      }
    });
  }
}

/** Writes each table of a built-in set to `dir` as NAME.dat. */
function writeTables(profile: ProfileName, vcpus: number, dir: string): string[] {
  const files: string[] = [];
  for (const w of builtinAcpi(profile, vcpus).writes) {
    const sig = new TextDecoder().decode(w.bytes.subarray(0, 4)).trim();
    if (sig === "RSD") continue; // iasl cannot disassemble an RSDP from a file; checked above
    const f = `${dir}/${sig.toLowerCase()}.dat`;
    Deno.writeFileSync(f, w.bytes);
    files.push(f);
  }
  return files;
}

for (const profile of ["default", "clh"] as const) {
  for (const vcpus of [1, 8, 255]) {
    Deno.test({
      name: `built-in ${profile} tables with ${vcpus} vCPUs pass iasl -d and load in acpiexec`,
      ignore: !HAVE_IASL,
      async fn() {
        const dir = tempDir();
        const files = writeTables(profile, vcpus, dir);
        for (const f of files) {
          const r = await new Deno.Command("iasl", {
            args: ["-d", f],
            cwd: dir,
            stdout: "piped",
            stderr: "piped",
          }).output();
          const text = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
          assertEquals(r.code, 0, `iasl -d ${f}: ${text}`);
          assert(!/\bError\b/.test(text), text);
        }
        const dsl = Deno.readTextFileSync(`${dir}/dsdt.dsl`);
        assert(dsl.includes('EisaId ("PNP0501")') && dsl.includes("0x03F8"), "COM1 in the DSDT");
        const madt = Deno.readTextFileSync(`${dir}/apic.dsl`);
        assertEquals((madt.match(/Processor Enabled : 1/g) ?? []).length, vcpus);
        const r = await new Deno.Command("acpiexec", {
          args: ["-b", "Evaluate \\_SB.COM1._STA; Evaluate \\_SB.COM1._CRS", ...files],
          cwd: dir,
          stdout: "piped",
          stderr: "piped",
        }).output();
        const out = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
        assertEquals(r.code, 0, out);
        assert(out.includes("[Integer] = 000000000000000F"), out);
        assert(!/ACPI Error|AE_[A-Z_]+ /.test(out.replace(/AE_OK/g, "")), out);
        Deno.removeSync(dir, { recursive: true });
      },
    });
  }
}

Deno.test("igvmgen with no -acpi_dir works with iasl absent from PATH", async () => {
  const dir = tempDir();
  Deno.writeFileSync(`${dir}/k`, makeBzImage());
  const cmd = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${new URL("../main.ts", import.meta.url).pathname}`,
      "-o",
      `${dir}/o.igvm`,
      "-kernel",
      `${dir}/k`,
    ],
    env: { PATH: dir },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  });
  const r = await cmd.output();
  assertEquals(r.code, 0, new TextDecoder().decode(r.stderr));
  assert(Deno.statSync(`${dir}/o.igvm`).size > 0);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("deno task demo writes an IGVM file and its measurement on a fresh folder", async () => {
  const dir = tempDir();
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../scripts/demo.ts", import.meta.url).pathname, `${dir}/demo`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(r.code, 0, new TextDecoder().decode(r.stderr));
  const file = readIgvmFile(Deno.readFileSync(`${dir}/demo/demo.igvm`));
  assertEquals(file.problems, []);
  const json = JSON.parse(Deno.readTextFileSync(`${dir}/demo/demo.json`));
  assert(/^[0-9a-f]{96}$/.test(json["x-ms-sevsnpvm-launchmeasurement"]));
  assert(new TextDecoder().decode(r.stdout).includes(json["x-ms-sevsnpvm-launchmeasurement"]));
  Deno.removeSync(dir, { recursive: true });
});
