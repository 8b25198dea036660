import { deflateSync } from "node:zlib";
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import {
  decodeLegacySnapshot,
  parsePagePickle,
  SNAPSHOT_PICKLE_MAX,
  SnapshotError,
} from "../acpi/legacy_snapshot.ts";
import {
  AcpiError,
  acpiFromLegacySnapshot,
  type AcpiImage,
  layoutAcpiTables,
  loadAcpi,
} from "../acpi/acpi_image.ts";
import { acpiChecksum, tableSignature } from "../acpi/tables.ts";
import { walkAcpiTables } from "../acpi/walk.ts";
import { HAVE_IASL, HAVE_SHARED, listDir, REFERENCE, tempDir } from "./helpers.ts";

/** A pickle (protocol 4 opcodes) of {gpa: bytearray(page)} built by hand. */
function pickleOf(pages: [number, Uint8Array][]): Uint8Array {
  const out: number[] = [0x80, 4, 0x7d, 0x94, 0x28];
  const str = (s: string) => [0x8c, s.length, ...new TextEncoder().encode(s), 0x94];
  let first = true;
  for (const [gpa, page] of pages) {
    out.push(0x4a, gpa & 0xff, (gpa >> 8) & 0xff, (gpa >> 16) & 0xff, (gpa >>> 24) & 0xff);
    if (first) out.push(...str("builtins"), ...str("bytearray"), 0x93, 0x94);
    else out.push(0x68, 3);
    first = false;
    out.push(
      0x42,
      page.length & 0xff,
      (page.length >> 8) & 0xff,
      0,
      0,
      ...page,
      0x94,
      0x85,
      0x94,
      0x52,
      0x94,
    );
  }
  out.push(0x75, 0x2e);
  return new Uint8Array(out);
}

function snapshotOf(pages: [number, Uint8Array][]): Uint8Array {
  const z = deflateSync(pickleOf(pages));
  return new TextEncoder().encode(btoa(String.fromCharCode(...new Uint8Array(z))));
}

Deno.test("parsePagePickle() reads a hand-built pickle of pages", () => {
  const a = new Uint8Array(4096).fill(1);
  const b = new Uint8Array(4096).fill(2);
  const pages = parsePagePickle(pickleOf([[0xe0000, a], [0x100000, b]]));
  assertEquals([...pages.keys()], [0xe0000, 0x100000]);
  assertEquals(pages.get(0x100000)![5], 2);
});

Deno.test("decodeLegacySnapshot() rejects bad layers with a reason", async () => {
  await assertRejects(
    () => decodeLegacySnapshot(new TextEncoder().encode("not base64!")),
    SnapshotError,
    "base64",
  );
  await assertRejects(
    () => decodeLegacySnapshot(new TextEncoder().encode(btoa("hello world!"))),
    SnapshotError,
    "zlib",
  );
  const evil = deflateSync(new Uint8Array([0x80, 4, 0x63, 0x2e])); // GLOBAL opcode
  await assertRejects(
    () =>
      decodeLegacySnapshot(
        new TextEncoder().encode(btoa(String.fromCharCode(...new Uint8Array(evil)))),
      ),
    SnapshotError,
    "unsupported pickle opcode",
  );
  await assertRejects(
    () => decodeLegacySnapshot(snapshotOf([[0xe0000, new Uint8Array(100)]])),
    SnapshotError,
    "one aligned page",
  );
});

Deno.test("decodeLegacySnapshot() refuses zlib data cut short, even by its checksum alone", async () => {
  const pages: [number, Uint8Array][] = [[0xe0000, new Uint8Array(4096).fill(3)]];
  const whole = Uint8Array.fromBase64(new TextDecoder().decode(snapshotOf(pages)));
  assertEquals((await decodeLegacySnapshot(snapshotOf(pages))).size, 1);
  for (const cut of [1, 4]) {
    const text = new TextEncoder().encode(whole.subarray(0, whole.length - cut).toBase64());
    await assertRejects(() => decodeLegacySnapshot(text), SnapshotError, "not zlib data");
  }
});

Deno.test("adler32() gives zlib's checksum (node:zlib's trailer), over more than one 5552-byte run", async () => {
  const { adler32 } = await import("../acpi/inflate.ts");
  for (const size of [0, 1, 5552, 5553, 100_000]) {
    const bytes = Uint8Array.from({ length: size }, (_, i) => (i * 131 + 7) & 0xff);
    const z = new Uint8Array(deflateSync(bytes));
    const trailer = new DataView(z.buffer, z.byteOffset + z.length - 4).getUint32(0);
    assertEquals(adler32(bytes), trailer, `${size} bytes`);
  }
});

Deno.test("decodeLegacySnapshot() stops a zlib bomb at SNAPSHOT_PICKLE_MAX, before it fills memory", async () => {
  // 64 MiB of zeros deflate to 64 KiB: as a snapshot, more than 288 pages could ever need.
  const bomb = new Uint8Array(deflateSync(new Uint8Array(64 << 20)));
  const text = new TextEncoder().encode(bomb.toBase64());
  await assertRejects(
    () => decodeLegacySnapshot(text),
    SnapshotError,
    `the payload inflates to more than ${SNAPSHOT_PICKLE_MAX} bytes`,
  );
  // A pickle just under the cap is inflated and read: the cap is no lower than it says.
  const pages: [number, Uint8Array][] = [];
  for (let gpa = 0xe0000; gpa < 0x200000; gpa += 4096) pages.push([gpa, new Uint8Array(4096)]);
  assertEquals((await decodeLegacySnapshot(snapshotOf(pages))).size, 288);
});

Deno.test({
  name: "decodeLegacySnapshot() reads the original's acpi.zip: RSDP at 0xe0000 and 33 more pages",
  ignore: !HAVE_SHARED,
  async fn() {
    const pages = await decodeLegacySnapshot(Deno.readFileSync(`${REFERENCE}acpi/acpi.zip`));
    assertEquals(pages.size, 34);
    const rsdp = pages.get(0xe0000)!;
    assertEquals(new TextDecoder().decode(rsdp.subarray(0, 8)), "RSD PTR ");
    assertEquals(acpiChecksum(rsdp, 0, 20), 0);
    assertEquals(acpiChecksum(rsdp, 0, 36), 0);
    assert(pages.has(0x1ff000));
  },
});

Deno.test({
  name: "acpiFromLegacySnapshot() refuses a snapshot whose tables a guest could not follow",
  ignore: !HAVE_SHARED,
  async fn() {
    const pages = await decodeLegacySnapshot(Deno.readFileSync(`${REFERENCE}acpi/acpi.zip`));
    const good = await acpiFromLegacySnapshot(snapshotOf([...pages]));
    assertEquals(good.writes.length, 34);
    const rsdp = pages.get(0xe0000)!.slice();
    rsdp[8] ^= 1; // the RSDP checksum
    pages.set(0xe0000, rsdp);
    await assertRejects(
      () => acpiFromLegacySnapshot(snapshotOf([...pages])),
      AcpiError,
      "the snapshot would not form valid ACPI in the guest: RSDP: bad checksum",
    );
  },
});

/** A minimal SDT with a signature and some payload. */
function sdt(signature: string, length: number, revision = 1): Uint8Array {
  const t = new Uint8Array(length);
  t.set(new TextEncoder().encode(signature));
  new DataView(t.buffer).setUint32(4, length, true);
  t[8] = revision;
  t[9] = acpiChecksum(t, 0, length, 9);
  return t;
}

function rsdp(xsdt: number): Uint8Array {
  const t = new Uint8Array(36);
  t.set(new TextEncoder().encode("RSD PTR "));
  t[15] = 2;
  new DataView(t.buffer).setUint32(20, 36, true);
  new DataView(t.buffer).setBigUint64(24, BigInt(xsdt), true);
  return t;
}

function facs(): Uint8Array {
  const t = new Uint8Array(64);
  t.set(new TextEncoder().encode("FACS"));
  new DataView(t.buffer).setUint32(4, 64, true);
  return t;
}

/** Checks the image's tables as a guest would: RSDP -> XSDT -> tables, checksums, FADT links. */
function walkTables(image: AcpiImage): Map<string, { gpa: number; bytes: Uint8Array }> {
  const at = new Map(image.writes.map((w) => [w.gpa, w.bytes]));
  const rsdpBytes = at.get(0xe0000)!;
  const xsdtAddr = Number(
    new DataView(rsdpBytes.buffer, rsdpBytes.byteOffset).getBigUint64(24, true),
  );
  const xsdt = at.get(xsdtAddr)!;
  const found = new Map<string, { gpa: number; bytes: Uint8Array }>();
  assertEquals(acpiChecksum(xsdt, 0, xsdt.length), 0, "XSDT checksum");
  const xv = new DataView(xsdt.buffer, xsdt.byteOffset);
  for (let i = 36; i < xsdt.length; i += 8) {
    const gpa = Number(xv.getBigUint64(i, true));
    const t = at.get(gpa);
    assert(t, `XSDT entry 0x${gpa.toString(16)} points at no table`);
    assertEquals(acpiChecksum(t, 0, t.length), 0, `${tableSignature(t)} checksum`);
    found.set(tableSignature(t), { gpa, bytes: t });
  }
  const fadt = found.get("FACP")!.bytes;
  const fv = new DataView(fadt.buffer, fadt.byteOffset);
  for (const [name, off] of [["FACS", 36], ["DSDT", 40]] as const) {
    const t = at.get(fv.getUint32(off, true));
    assert(t && tableSignature(t) === name, `FADT ${name} link`);
    found.set(name, { gpa: fv.getUint32(off, true), bytes: t });
  }
  return found;
}

Deno.test("layoutAcpiTables() puts the XSDT at 1 MiB when the RSDP names none, and the RSDP says so", () => {
  const image = layoutAcpiTables([
    { file: "r", bytes: rsdp(0) },
    { file: "x", bytes: sdt("XSDT", 36) },
    { file: "f", bytes: sdt("FACP", 276, 6) },
    { file: "d", bytes: sdt("DSDT", 40) },
    { file: "s", bytes: facs() },
  ]);
  assertEquals(image.writes.map((w) => w.gpa).slice(0, 2), [0xe0000, 0x100000]);
  assertEquals(tableSignature(image.writes[1].bytes), "XSDT");
  const r = image.writes[0].bytes;
  assertEquals(new DataView(r.buffer, r.byteOffset).getBigUint64(24, true), 0x100000n);
  assertEquals([acpiChecksum(r, 0, 20), acpiChecksum(r, 0, 36)], [0, 0]);
  assertEquals(walkAcpiTables(readerOf(image)).problems.filter((p) => !/aligned/.test(p)), []);
});

/** Guest memory holding only `image`'s tables. */
function readerOf(image: AcpiImage): (gpa: number, length: number) => Uint8Array {
  return (gpa, length) => {
    const out = new Uint8Array(length);
    for (const w of image.writes) {
      for (let i = 0; i < w.bytes.length; i++) {
        const at = w.gpa + i - gpa;
        if (at >= 0 && at < length) out[at] = w.bytes[i];
      }
    }
    return out;
  };
}

Deno.test("layoutAcpiTables() recomputes wrong table and RSDP checksums: the image passes the walk", () => {
  const broken = (t: Uint8Array, at: number) => {
    t[at] ^= 0x5a;
    return t;
  };
  const image = layoutAcpiTables([
    { file: "r", bytes: broken(rsdp(0x100000), 8) },
    { file: "x", bytes: sdt("XSDT", 36) },
    { file: "f", bytes: sdt("FACP", 276, 6) },
    { file: "d", bytes: broken(sdt("DSDT", 40), 9) },
    { file: "a", bytes: broken(sdt("APIC", 44), 39) },
    { file: "t", bytes: broken(sdt("TPM2", 52), 9) },
    { file: "s", bytes: facs() },
  ]);
  const walk = walkAcpiTables(readerOf(image));
  assertEquals(walk.problems.filter((p) => !/aligned/.test(p)), []);
  assertEquals(walk.tables.map((t) => t.signature).sort(), [
    "APIC",
    "DSDT",
    "FACP",
    "FACS",
    "RSDP",
    "TPM2",
    "XSDT",
  ]);
});

Deno.test("layoutAcpiTables() refuses an RSDP or FADT a guest could not follow, naming the file", () => {
  const rest = [
    { file: "x.aml", bytes: sdt("XSDT", 36) },
    { file: "d.aml", bytes: sdt("DSDT", 40) },
    { file: "s.aml", bytes: facs() },
  ];
  const fadt = sdt("FACP", 276, 6);
  const withRsdp = (r: Uint8Array, f = fadt) =>
    layoutAcpiTables([{ file: "r.aml", bytes: r }, { file: "f.aml", bytes: f }, ...rest]);
  const rev0 = rsdp(0x100000);
  rev0[15] = 0;
  assertThrows(() => withRsdp(rev0), AcpiError, "r.aml: RSDP revision 0");
  const badLength = rsdp(0x100000);
  new DataView(badLength.buffer).setUint32(20, 20, true);
  assertThrows(() => withRsdp(badLength), AcpiError, "r.aml: the RSDP's length field is 20");
  const badSignature = rsdp(0x100000);
  badSignature[5] = 0x58; // "RSD XTR "
  assertThrows(() => withRsdp(badSignature), AcpiError, "r.aml: the RSDP's signature");
  // An FADT whose DSDT field already points elsewhere: the guest would find no DSDT.
  const elsewhere = sdt("FACP", 276, 6);
  new DataView(elsewhere.buffer).setBigUint64(0x8c, 0x300000n, true); // X_DSDT
  assertThrows(() => withRsdp(rsdp(0x100000), elsewhere), AcpiError, "DSDT expected at 0x300000");
  assertThrows(
    () => withRsdp(rsdp(0x100000), sdt("FACP", 100, 1)),
    AcpiError,
    "f.aml: FACP table is truncated",
  );
  const shortFacs = layoutAcpiTables.bind(null, [
    { file: "r.aml", bytes: rsdp(0x100000) },
    { file: "f.aml", bytes: fadt },
    { file: "x.aml", bytes: sdt("XSDT", 36) },
    { file: "d.aml", bytes: sdt("DSDT", 40) },
    { file: "s.aml", bytes: sdt("FACS", 40) },
  ]);
  assertThrows(shortFacs, AcpiError, "s.aml: FACS table is truncated");
});

Deno.test("layoutAcpiTables() packs tables after the XSDT in signature order and links them", () => {
  const image = layoutAcpiTables([
    { file: "rsdp.aml", bytes: rsdp(0x100000) },
    { file: "xsdt.aml", bytes: sdt("XSDT", 36) },
    { file: "facp.aml", bytes: sdt("FACP", 276, 6) },
    { file: "dsdt.aml", bytes: sdt("DSDT", 100, 2) },
    { file: "facs.aml", bytes: facs() },
    { file: "apic.aml", bytes: sdt("APIC", 80, 4) },
  ]);
  const t = walkTables(image);
  // Sorted: APIC, DSDT, FACP, FACS from 0x101000, back to back.
  assertEquals(t.get("APIC")!.gpa, 0x101000);
  assertEquals(t.get("DSDT")!.gpa, 0x101000 + 80);
  assertEquals(t.get("FACP")!.gpa, 0x101000 + 180);
  assertEquals(t.get("FACS")!.gpa, 0x101000 + 456);
  assertEquals(image.endAddr, 0x102000);
  const fadt = t.get("FACP")!.bytes;
  assertEquals(
    new DataView(fadt.buffer, fadt.byteOffset).getBigUint64(140, true),
    BigInt(0x101000 + 80),
  );
});

Deno.test("layoutAcpiTables() adds a page when the last table ends on a page boundary", () => {
  const image = layoutAcpiTables([
    { file: "r", bytes: rsdp(0x100000) },
    { file: "x", bytes: sdt("XSDT", 36) },
    { file: "f", bytes: sdt("FACP", 276, 6) },
    { file: "d", bytes: sdt("DSDT", 4096 - 276 - 64) },
    { file: "s", bytes: facs() },
  ]);
  assertEquals(image.endAddr, 0x103000);
});

Deno.test("layoutAcpiTables() rejects missing, duplicate, unknown and inconsistent tables", () => {
  const base = [
    { file: "r", bytes: rsdp(0) },
    { file: "x", bytes: sdt("XSDT", 36) },
    { file: "f", bytes: sdt("FACP", 276, 6) },
    { file: "d", bytes: sdt("DSDT", 40) },
    { file: "s", bytes: facs() },
  ];
  assertThrows(() => layoutAcpiTables(base.slice(1)), AcpiError, "no RSDP");
  assertThrows(() => layoutAcpiTables(base.filter((t) => t.file !== "d")), AcpiError, "no DSDT");
  assertThrows(
    () => layoutAcpiTables([...base, { file: "d2", bytes: sdt("DSDT", 40) }]),
    AcpiError,
    "both DSDT",
  );
  assertThrows(
    () => layoutAcpiTables([...base, { file: "q", bytes: sdt("QQQQ", 40) }]),
    AcpiError,
    "unsupported",
  );
  const lying = sdt("APIC", 80);
  assertThrows(
    () => layoutAcpiTables([...base, { file: "a", bytes: lying.slice(0, 60) }]),
    AcpiError,
    "header length",
  );
});

Deno.test({
  name: "loadAcpi() compiles a .dsl folder with iasl outside the folder and links the tables",
  ignore: !HAVE_SHARED || !HAVE_IASL,
  async fn() {
    const dir = `${REFERENCE}acpi/acpi-clh`;
    const before = listDir(dir);
    const image = await loadAcpi(dir);
    assertEquals(listDir(dir), before, "nothing is written into the input folder");
    const t = walkTables(image);
    assertEquals([...t.keys()].sort(), ["APIC", "DSDT", "FACP", "FACS", "MCFG", "TPM2"]);
  },
});

Deno.test({
  name: "loadAcpi() takes .aml files as they are, with no iasl needed",
  ignore: !HAVE_SHARED || !HAVE_IASL,
  async fn() {
    const fromDsl = await loadAcpi(`${REFERENCE}acpi/acpi-test`);
    // Compile the same folder into .aml files, then load them with iasl unavailable.
    const dir = tempDir();
    for (const name of listDir(`${REFERENCE}acpi/acpi-test`)) {
      await new Deno.Command("iasl", {
        args: [
          "-f",
          "-p",
          `${dir}/${name.replace(".dsl", "")}`,
          `${REFERENCE}acpi/acpi-test/${name}`,
        ],
        stdout: "null",
        stderr: "null",
      }).output();
    }
    const fromAml = await loadAcpi(dir, { iasl: "/nonexistent/iasl" });
    assertEquals(fromAml.endAddr, fromDsl.endAddr);
    assertEquals(
      fromAml.writes.map((w) => [w.gpa, [...w.bytes].join()]),
      fromDsl.writes.map((w) => [w.gpa, [...w.bytes].join()]),
    );
    Deno.removeSync(dir, { recursive: true });
  },
});

Deno.test("loadAcpi() says to install acpica-tools when .dsl input meets no iasl", async () => {
  const dir = tempDir();
  Deno.writeTextFileSync(`${dir}/x.dsl`, '[0004] Signature : "XSDT"\n');
  await assertRejects(
    () => loadAcpi(dir, { iasl: "/nonexistent/iasl" }),
    AcpiError,
    "install acpica-tools",
  );
  Deno.removeSync(dir, { recursive: true });
});

Deno.test({
  name: "loadAcpi() shows iasl's first error for a .dsl it rejects",
  ignore: !HAVE_IASL,
  async fn() {
    const dir = tempDir();
    Deno.writeTextFileSync(
      `${dir}/bad.dsl`,
      'DefinitionBlock ("", "DSDT", 2, "X", "Y", 1) { Name (\n',
    );
    const e = await assertRejects(() => loadAcpi(dir), AcpiError, "iasl rejected");
    assert(/error/i.test(e.message), e.message);
    assert(!e.message.includes("\n"));
    Deno.removeSync(dir, { recursive: true });
  },
});

Deno.test("loadAcpi() rejects an empty folder, a missing path and a non-snapshot file", async () => {
  const dir = tempDir();
  await assertRejects(() => loadAcpi(dir), AcpiError, "no .dsl or .aml tables");
  await assertRejects(() => loadAcpi(`${dir}/missing`), AcpiError, "cannot read");
  Deno.writeFileSync(`${dir}/f.zip`, new Uint8Array([0x50, 0x4b, 3, 4, 0, 0xff]));
  await assertRejects(() => loadAcpi(`${dir}/f.zip`), AcpiError, "not a readable zip archive");
  Deno.writeFileSync(`${dir}/f.bin`, new Uint8Array([0, 1, 2, 0xff]));
  await assertRejects(() => loadAcpi(`${dir}/f.bin`), AcpiError, "not an ACPI folder");
  Deno.removeSync(dir, { recursive: true });
});

Deno.test({
  name: "loadAcpi() takes a zip archive of .dsl tables and gives what the folder gives",
  ignore: !HAVE_SHARED || !HAVE_IASL,
  async fn() {
    const { zipSync } = await import("fflate");
    const src = `${REFERENCE}acpi/acpi-test`;
    const files: Record<string, Uint8Array> = {};
    for (const name of listDir(src)) files[`tables/${name}`] = Deno.readFileSync(`${src}/${name}`);
    const dir = tempDir();
    Deno.writeFileSync(`${dir}/tables.zip`, zipSync(files));
    const fromZip = await loadAcpi(`${dir}/tables.zip`);
    const fromDir = await loadAcpi(src);
    assertEquals(fromZip.endAddr, fromDir.endAddr);
    assertEquals(
      fromZip.writes.map((w) => [w.gpa, [...w.bytes].join()]),
      fromDir.writes.map((w) => [w.gpa, [...w.bytes].join()]),
    );
    assertEquals(listDir(dir), ["tables.zip"]);
    Deno.writeFileSync(`${dir}/empty.zip`, zipSync({ "readme.txt": new Uint8Array([1]) }));
    await assertRejects(
      () => loadAcpi(`${dir}/empty.zip`),
      AcpiError,
      "no .dsl or .aml tables in the archive",
    );
    Deno.removeSync(dir, { recursive: true });
  },
});

Deno.test("walkAcpiTables() handles a hostile RSDP length quickly (found by fuzzing)", async () => {
  const { walkAcpiTables } = await import("../acpi/walk.ts");
  const r = rsdp(0x100000);
  new DataView(r.buffer).setUint32(20, 0xffff_ffff, true);
  const start = performance.now();
  const walk = walkAcpiTables((gpa, n) => gpa === 0xe0000 ? r.slice(0, n) : new Uint8Array(n));
  assert(performance.now() - start < 1000, "the walk is bounded");
  assert(
    walk.problems.some((p) => p.includes("RSDP: length 4294967295")),
    JSON.stringify(walk.problems),
  );
});
