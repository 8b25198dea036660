/** `verify`, `inspect` and `measure` on golden files, our own outputs, and corrupted files. */
import { crc32 } from "node:zlib";
import { assert, assertEquals } from "./assert.ts";
import { FIXTURES, generateImage, HAVE_SHARED, runCli, SHARED, tempDir } from "./helpers.ts";
import { makeBzImage, makeElf } from "../scripts/fixtures.ts";
import { readIgvmFile } from "../lib/igvm/reader.ts";
import type { FileAccess } from "../lib/io/file_reader.ts";
import { verifyIgvm } from "../lib/ops/verify.ts";
import { IgvmFormatError } from "../lib/igvm/dump.ts";
import { assertRejects } from "./assert.ts";

const golden = HAVE_SHARED
  ? (JSON.parse(Deno.readTextFileSync(`${SHARED}golden/cases.json`)).cases as {
    name: string;
    expected: { igvm: string | null; launch_measurement: string };
  }[]).filter((c) => c.expected.igvm)
  : [];

/** An in-memory file for the verifier. */
function memoryFile(bytes: Uint8Array): FileAccess {
  return {
    size: bytes.length,
    readAt: (o, n) => Promise.resolve(bytes.slice(o, Math.min(bytes.length, o + n))),
  };
}

for (const c of golden) {
  Deno.test(`verify and measure accept golden ${c.name} and recompute its measurement`, async () => {
    const path = `${SHARED}golden/${c.expected.igvm}`;
    const v = await runCli(["verify", path]);
    assertEquals(v.code, 0, v.stdout + v.stderr);
    assert(v.stdout.includes("OK (launch digest"), v.stdout);
    const m = await runCli(["measure", path]);
    assertEquals(m.stdout.trim(), c.expected.launch_measurement);
  });
}

const generated = generateImage;

const FLOWS: [string, string[], Uint8Array?][] = [
  ["default x86", []],
  ["x64 clh, no pvalidate_opt", [
    "-boot_mode",
    "x64",
    "-acpi_profile",
    "clh",
    "-pvalidate_opt",
    "0",
    "-vcpus",
    "4",
  ]],
  ["bzImage2", ["-inform", "bzImage2", "-shared_payload", "/dev/null"]],
  ["elf x64 4-level", ["-inform", "elf", "-boot_mode", "x64", "-pgtable_level", "4"], makeElf()],
];
for (const [name, args, kernel] of FLOWS) {
  Deno.test(`verify accepts what igvmgen writes: ${name}`, async () => {
    const bytes = await generated(args, kernel);
    const report = await verifyIgvm(memoryFile(bytes));
    assertEquals(report.problems, []);
    assertEquals(report.warnings, []);
    assert(report.idBlock?.signatureValid);
    assertEquals(report.idBlock?.ld, report.launchDigest);
    assert(report.acpiTables.some((t) => t.startsWith("DSDT")));
  });
}

/** Recomputes the header checksum after a deliberate change. */
function fixChecksum(bytes: Uint8Array): Uint8Array {
  const v = new DataView(bytes.buffer);
  const end = v.getUint32(8, true) + v.getUint32(12, true);
  v.setUint32(20, 0, true);
  v.setUint32(20, crc32(bytes.subarray(0, end)) >>> 0, true);
  return bytes;
}

Deno.test("verify rejects corrupted files, each for its reason", async () => {
  const good = await generated(["-acpi_profile", "default"]);
  const file = readIgvmFile(good);
  const pages = file.directives.filter((d) => d.name === "IGVM_VHT_PAGE_DATA");
  const withData = pages.filter((d) => d.fields.FileOffset !== 0n);
  const acpiXsdt = withData.find((d) => d.fields.GPA === 0x100000n)!;
  const normal = withData.find((d) => d.fields.GPA > 0x1000000n)!;
  const body = (d: { offset: number }) => d.offset + 8;
  const mutate = (f: (b: Uint8Array, v: DataView) => void, fix = true) => {
    const b = good.slice();
    f(b, new DataView(b.buffer));
    return fix ? fixChecksum(b) : b;
  };
  const cases: [string, Uint8Array, string][] = [
    ["a flipped header byte", mutate((b) => b[pages[3].offset + 12] ^= 1, false), "checksum"],
    [
      "an unaligned GPA",
      mutate((_, v) => v.setUint32(body(pages[2]), 0xa0010, true)),
      "not page aligned",
    ],
    [
      "a GPA loaded twice",
      mutate((_, v) => v.setUint32(body(pages[2]), Number(pages[1].fields.GPA), true)),
      "loaded twice",
    ],
    [
      "a reserved field",
      mutate((_, v) => v.setUint16(body(pages[2]) + 0x16, 1, true)),
      "reserved field",
    ],
    [
      "overlapping file data",
      mutate((_, v) =>
        v.setUint32(body(withData[1]) + 12, Number(withData[0].fields.FileOffset) + 8, true)
      ),
      "overlaps",
    ],
    [
      "file data inside the headers",
      mutate((_, v) => v.setUint32(body(withData[1]) + 12, 64, true)),
      "inside the headers",
    ],
    [
      "a changed measured page",
      mutate((b) => b[Number(normal.fields.FileOffset) + 100] ^= 0xff),
      "launch digest",
    ],
    [
      "a tampered signature",
      mutate((b) => b[file.directives.at(-1)!.offset + 8 + 0x68 + 5] ^= 1),
      "signature does not verify",
    ],
    [
      "a broken ACPI table",
      mutate((b) => b[Number(acpiXsdt.fields.FileOffset) + 20] ^= 1),
      "ACPI: XSDT",
    ],
    [
      "a wrong total size",
      mutate((_, v) => v.setUint32(16, good.length + 4096, true)),
      "TotalFileSize",
    ],
  ];
  for (const [what, bytes, reason] of cases) {
    const report = await verifyIgvm(memoryFile(bytes));
    assert(!report.ok, `${what}: accepted`);
    assert(
      report.problems.some((p) => p.includes(reason)),
      `${what}: ${JSON.stringify(report.problems)} lacks "${reason}"`,
    );
  }
});

Deno.test("verify refuses non-IGVM, truncated and overrunning files with an error", async () => {
  const good = await generated([]);
  await assertRejects(
    () => verifyIgvm(memoryFile(new TextEncoder().encode("not an igvm file at all, no"))),
    IgvmFormatError,
    "not an IGVM file",
  );
  await assertRejects(
    () => verifyIgvm(memoryFile(good.slice(0, 1000))),
    IgvmFormatError,
    "truncated",
  );
  const overrun = good.slice();
  const v = new DataView(overrun.buffer);
  const last = readIgvmFile(good).directives.at(-1)!;
  v.setUint32(last.offset, 0x310, true); // a type the reader does not know, in the spec's range
  v.setUint32(last.offset + 4, 0x1000, true);
  await assertRejects(
    () => verifyIgvm(memoryFile(fixChecksum(overrun))),
    IgvmFormatError,
    "runs past the header section",
  );
  // A header that cannot be valid stops the reader: its successor cannot be found.
  const pages = readIgvmFile(good).directives.filter((d) => d.name === "IGVM_VHT_PAGE_DATA");
  const cases: [string, (v: DataView) => void, string][] = [
    [
      "a wrong length",
      (v) => v.setUint32(pages[4].offset + 4, 16, true),
      "IGVM_VHT_PAGE_DATA with length 16, expected 24",
    ],
    ["type 0", (v) => v.setUint32(pages[4].offset, 0, true), "type 0x0 is not an IGVM header type"],
    [
      "an unknown type of length 0",
      (v) => (v.setUint32(pages[4].offset, 0x310, true), v.setUint32(pages[4].offset + 4, 0, true)),
      "unknown type 0x310 with length 0",
    ],
  ];
  for (const [what, change, message] of cases) {
    const bad = good.slice();
    change(new DataView(bad.buffer));
    const e = await assertRejects(() => verifyIgvm(memoryFile(fixChecksum(bad))), IgvmFormatError);
    const at = `header at 0x${pages[4].offset.toString(16)}`;
    assertEquals(e.message, `${at}: ${message}; the header section cannot be read past it`, what);
  }
});

Deno.test("igvmgen verify prints each problem on its own line and exits 1", async () => {
  const dir = tempDir();
  const bad = (await generated([])).slice();
  bad[100] ^= 0xff;
  Deno.writeFileSync(`${dir}/bad.igvm`, bad);
  const r = await runCli(["verify", `${dir}/bad.igvm`]);
  assertEquals(r.code, 1);
  const lines = r.stdout.trim().split("\n");
  assert(lines.length >= 1 && lines.every((l) => l.startsWith(`${dir}/bad.igvm: `)), r.stdout);
  const json = await runCli(["verify", `${dir}/bad.igvm`, "--json"]);
  assertEquals(json.code, 1);
  assertEquals(JSON.parse(json.stdout).ok, false);
  Deno.writeTextFileSync(`${dir}/text`, "plain text");
  const e = await runCli(["verify", `${dir}/text`]);
  assertEquals(e.code, 1);
  assert(e.stderr.startsWith("error: ") && e.stderr.includes("not an IGVM file"), e.stderr);
  const u = await runCli(["verify"]);
  assertEquals(u.code, 2);
});

Deno.test("igvmgen inspect --json has the stable schema and the VMSA registers", async () => {
  const dir = tempDir();
  Deno.writeFileSync(`${dir}/o.igvm`, await generated(["-boot_mode", "x64"]));
  const r = await runCli(["inspect", `${dir}/o.igvm`, "--json"]);
  assertEquals(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assertEquals(j.schema, "igvmgen-inspect/1");
  assertEquals(Object.keys(j).sort(), [
    "file",
    "formatVersion",
    "idBlock",
    "launchDigest",
    "pages",
    "parameterAreas",
    "platforms",
    "policy",
    "ranges",
    "schema",
    "size",
    "vmsa",
  ]);
  assertEquals(j.platforms, [{ type: "SEV-SNP", highestVtl: 2, version: 1 }]);
  assertEquals(j.policy, "0x3001f");
  assertEquals(j.vmsa[0].registers.rip, "0x1000200");
  assertEquals(j.vmsa[0].registers.cr0, "0x80000001");
  assertEquals(
    j.pages.byKind.vmsa + j.pages.byKind.cpuid + j.pages.byKind.secrets + j.pages.byKind.parameter,
    4,
  );
  assertEquals(j.ranges.reduce((n: number, x: { pages: number }) => n + x.pages, 0), j.pages.total);
  assert(j.idBlock.signatureValid);
  const text = await runCli(["inspect", `${dir}/o.igvm`]);
  assert(
    text.stdout.includes("signature valid") && text.stdout.includes("rip=0x1000200"),
    text.stdout,
  );
});

Deno.test("igvmgen measure -measurement_file writes the JSON with -svn", async () => {
  const dir = tempDir();
  Deno.writeFileSync(`${dir}/o.igvm`, await generated([]));
  const r = await runCli([
    "measure",
    `${dir}/o.igvm`,
    "-measurement_file",
    `${dir}/m.json`,
    "-svn",
    "5",
  ]);
  assertEquals(r.code, 0, r.stderr);
  const j = JSON.parse(Deno.readTextFileSync(`${dir}/m.json`));
  assertEquals(j, {
    "x-ms-sevsnpvm-guestsvn": "5",
    "x-ms-sevsnpvm-launchmeasurement": r.stdout.trim(),
  });
});

Deno.test("checkHeaderSection() passes igvmgen's output and catches a bad checksum, length and size", async () => {
  const { checkHeaderSection } = await import("../lib/igvm/reader.ts");
  const good = await generated([]);
  const pages = readIgvmFile(good).directives.filter((d) =>
    ["IGVM_VHT_PAGE_DATA", "IGVM_VHT_VP_CONTEXT", "IGVM_VHT_PARAMETER_INSERT"].includes(d.name)
  );
  assertEquals(checkHeaderSection(good, good.length), { problems: [], pageHeaders: pages.length });
  const flipped = good.slice();
  flipped[200] ^= 1;
  assert(checkHeaderSection(flipped, good.length).problems.includes("header checksum mismatch"));
  assert(
    checkHeaderSection(good, good.length + 1).problems.includes(
      "TotalFileSize differs from the file size",
    ),
  );
  const badLength = good.slice();
  new DataView(badLength.buffer).setUint32(pages[0].offset + 4, 20, true);
  assert(
    checkHeaderSection(fixChecksum(badLength), good.length).problems.some((p) =>
      p.includes("length 20")
    ),
  );
});

Deno.test("igvmgen --verify checks the written image before committing it", async () => {
  const dir = tempDir();
  Deno.writeFileSync(`${dir}/k`, makeBzImage());
  const r = await runCli([
    "-o",
    `${dir}/o.igvm`,
    "-kernel",
    `${dir}/k`,
    "-boot_mode",
    "x64",
    "--verify",
  ]);
  assertEquals(r.code, 0, r.stderr);
  assert(r.stderr.includes(", verified)"), r.stderr);
  assertEquals((await verifyIgvm(memoryFile(Deno.readFileSync(`${dir}/o.igvm`)))).problems, []);
});

Deno.test("-inform elf -vmpl2_kernel loads the bzImage at 0x3d00000; -symbol_elf moves the early areas", async () => {
  const dir = tempDir();
  const bz = makeBzImage({ payloadLength: 20000 });
  Deno.writeFileSync(`${dir}/bz`, bz);
  Deno.writeFileSync(`${dir}/sym.elf`, makeElf()); // boot_stack 0x14000/0x4000, pgtable 0x19000/0x7000, _end 0x20000
  const monitor = readIgvmFile(
    await generated(["-inform", "elf", "-vmpl2_kernel", `${dir}/bz`], makeElf()),
  );
  const at = monitor.pages.get(0x3d00000)!;
  assertEquals([...at.subarray(0x1f1, 0x1f1 + 16)], [...bz.subarray(0x1f1, 0x1f1 + 16)]);
  assertEquals(monitor.problems, []);
  const withSymbols = readIgvmFile(await generated(["-symbol_elf", `${dir}/sym.elf`]));
  const gpas = new Set(withSymbols.directives.map((d) => Number(d.fields.GPA ?? -1)));
  // The boot stack symbol puts pages at pref + 0x14000 .. + 0x18000.
  for (let p = 0x1014000; p < 0x1018000; p += 0x1000) {
    assert(gpas.has(p), `page 0x${p.toString(16)}`);
  }
  assert(!gpas.has(0x1018000), "no page after the symbol's stack");
});

Deno.test("verify: a SEV-SNP VMSA (VP_CONTEXT) placed on a page the file also loads is a problem; a NATIVE register context there is not", async () => {
  const { editBody, bodyAt } = await import("./igvm_edit.ts");
  const { IGVM_VHT_PAGE_DATA, IGVM_VHT_VP_CONTEXT } = await import("../lib/igvm/defs.ts");
  const pageGpa = (bytes: Uint8Array) =>
    new DataView(bytes.buffer).getBigUint64(bodyAt(bytes, IGVM_VHT_PAGE_DATA, 5), true);
  const dir = tempDir();
  try {
    const image = await generateImage(["-sign_deterministic", "true"]);
    const gpa = pageGpa(image);
    const moved = editBody(image, IGVM_VHT_VP_CONTEXT, (v, at) => v.setBigUint64(at, gpa, true));
    Deno.writeFileSync(`${dir}/moved.igvm`, moved);
    const r = await runCli(["verify", `${dir}/moved.igvm`]);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assert(r.stdout.includes(`GPA 0x${gpa.toString(16)} is loaded twice`), r.stdout);
    // -native's second VP_CONTEXT is the NATIVE platform's registers (mask 0x2): its GPA
    // names no page, so moving it onto a loaded page changes nothing SEV-SNP measures.
    const native = await generateImage([
      "-target",
      "qemu-kvm",
      "-native",
      "-sign_deterministic",
      "true",
    ]);
    const nativeGpa = pageGpa(native);
    const onPage = editBody(
      native,
      IGVM_VHT_VP_CONTEXT,
      (v, at) => v.setBigUint64(at, nativeGpa, true),
      1,
    );
    Deno.writeFileSync(`${dir}/native.igvm`, onPage);
    const n = await runCli(["verify", `${dir}/native.igvm`]);
    assertEquals(n.code, 0, n.stdout + n.stderr);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("igvmgen verify and measure refuse a page no loader loads: PAGE_DATA of mask 0, or of bits no platform declares", async () => {
  const { editBody, headerIndex, insertHeader, zeroPageBody } = await import("./igvm_edit.ts");
  const PAGE = 0x302;
  const dir = tempDir();
  try {
    // Pages no loader selects leave the launch digest as it was: the ID block still matches.
    const image = await generateImage(["-sign_deterministic", "true"]);
    const at = headerIndex(image, PAGE);
    const cases: [string, Uint8Array, string][] = [
      [
        "mask0",
        insertHeader(image, PAGE, zeroPageBody(0x7f0_0000n, 0), at),
        "PAGE_DATA mask 0x0 names no platform of the file, so no loader loads its page at " +
        "GPA 0x7f00000",
      ],
      [
        "mask2",
        insertHeader(image, PAGE, zeroPageBody(0x7f0_0000n, 0x2), at),
        "PAGE_DATA mask 0x2 names no platform of the file, so no loader loads its page at " +
        "GPA 0x7f00000",
      ],
      [
        "mask5",
        editBody(image, PAGE, (v, body) => v.setUint32(body + 8, 0x5, true), 3),
        "names bits 0x4 of no declared platform",
      ],
    ];
    for (const [name, bytes, problem] of cases) {
      const path = `${dir}/${name}.igvm`;
      Deno.writeFileSync(path, bytes);
      const v = await runCli(["verify", path]);
      assertEquals(v.code, 1, `${name}: ${v.stdout}${v.stderr}`);
      assert(v.stdout.includes(problem), v.stdout);
      assert(!v.stdout.includes("OK"), v.stdout);
      const m = await runCli(["measure", path]);
      assertEquals([m.code, m.stdout], [1, ""], m.stderr);
      assert(m.stderr.includes(problem), m.stderr);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("igvmgen verify, measure and sign refuse pages at 2^62 and 0xfffffffffffff000 (beyond 2^52)", async () => {
  const { headerIndex, insertHeader, zeroPageBody } = await import("./igvm_edit.ts");
  const PAGE = 0x302;
  const dir = tempDir();
  try {
    const image = await generateImage(["-sign_deterministic", "true"]);
    const native = await generateImage([
      "-target",
      "qemu-kvm",
      "-native",
      "-sign_deterministic",
      "true",
    ]);
    const GUEST_INVALID = 0x4;
    for (const gpa of [1n << 62n, 0xffff_ffff_ffff_f000n]) {
      const problem = `page at GPA 0x${gpa.toString(16)} ends beyond 2^52, where no x86 guest ` +
        `has memory (physical addresses have at most 52 bits): KVM refuses it (predicted)`;
      // Pages the signed digest leaves out: a shared page (Hyper-V does not measure it) and a
      // NATIVE page of a -native image; and a measured SEV-SNP page, for sign.
      const files: [string, Uint8Array][] = [
        [
          "shared",
          insertHeader(image, PAGE, zeroPageBody(gpa, 1, GUEST_INVALID), headerIndex(image, PAGE)),
        ],
        ["native", insertHeader(native, PAGE, zeroPageBody(gpa, 0x2), headerIndex(native, PAGE))],
        ["measured", insertHeader(image, PAGE, zeroPageBody(gpa, 1), headerIndex(image, PAGE))],
      ];
      for (const [name, bytes] of files) {
        const path = `${dir}/${name}.igvm`;
        Deno.writeFileSync(path, bytes);
        const v = await runCli(["verify", path]);
        assertEquals(v.code, 1, `${name}: ${v.stdout}${v.stderr}`);
        assert(v.stdout.includes(`${path}: header at 0x`) && v.stdout.includes(problem), v.stdout);
        const m = await runCli(["measure", "--all-loaders", path]);
        assertEquals([m.code, m.stdout], [1, ""], m.stderr);
        assert(m.stderr.includes(problem), m.stderr);
      }
      if (!HAVE_SHARED) continue; // the signing key is in ../shared
      const signed = `${dir}/signed.igvm`;
      const s = await runCli([
        "sign",
        `${dir}/measured.igvm`,
        "-sign_key",
        `${FIXTURES}test-key.pem`,
        "-o",
        signed,
      ]);
      assertEquals(s.code, 1, s.stdout + s.stderr);
      assert(s.stderr.includes(problem), s.stderr);
      assert(!listNames(dir).includes("signed.igvm"));
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

/** The names in a directory. */
function listNames(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name);
}
