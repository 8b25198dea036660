/** readZipEntries(): archives made with fflate (an independent writer), honest and hostile. */
import { zipSync } from "fflate";
import { assertEquals, assertRejects } from "./assert.ts";
import { readZipEntries, ZipError } from "../acpi/zip_reader.ts";

const all = () => true;

Deno.test("readZipEntries() reads stored and deflated entries, with UTF-8 names, as written", async () => {
  const text = new TextEncoder().encode("DefinitionBlock (...) ".repeat(5000));
  const random = crypto.getRandomValues(new Uint8Array(50_000));
  const zip = zipSync({
    "dir/DSDT.dsl": text,
    "stored.aml": [random, { level: 0 }],
    "tables/äöü.aml": new Uint8Array([1, 2, 3]),
    "empty.aml": new Uint8Array(0),
  });
  const entries = await readZipEntries(zip, all);
  assertEquals(entries.map((e) => e.name), [
    "dir/DSDT.dsl",
    "stored.aml",
    "tables/äöü.aml",
    "empty.aml",
  ]);
  assertEquals(entries[0].bytes, text);
  assertEquals(entries[1].bytes, random);
  assertEquals([...entries[2].bytes], [1, 2, 3]);
  assertEquals(entries[3].bytes.length, 0);
});

Deno.test("readZipEntries() inflates only the wanted entries: a lying unwanted one costs nothing", async () => {
  const zip = zipSync({ "README.txt": new Uint8Array(1 << 20), "T.aml": new Uint8Array([7]) });
  // Make README.txt lie: 1 MiB declared as 10 bytes.
  const v = new DataView(zip.buffer);
  const dir = v.getUint32(zip.length - 22 + 16, true);
  v.setUint32(dir + 24, 10, true);
  const entries = await readZipEntries(zip, (name) => name.endsWith(".aml"));
  assertEquals(entries.map((e) => [e.name, [...e.bytes]]), [["T.aml", [7]]]);
  await assertRejects(
    () => readZipEntries(zip, all),
    ZipError,
    "README.txt inflates to more than its declared 10 bytes",
  );
});

Deno.test("readZipEntries() refuses damaged archives, each for its reason", async () => {
  const good = zipSync({ "T.aml": new Uint8Array(1000).fill(65) });
  const changed = (f: (v: DataView, b: Uint8Array) => void) => {
    const b = good.slice();
    f(new DataView(b.buffer), b);
    return b;
  };
  const dir = new DataView(good.buffer).getUint32(good.length - 22 + 16, true);
  const cases: [string, Uint8Array, string][] = [
    ["no end record", good.slice(0, good.length - 22), "no end of central directory record"],
    ["a damaged directory", changed((v) => v.setUint32(dir, 0, true)), "entry 0 is damaged"],
    ["no local header", changed((v) => v.setUint32(0, 0, true)), "T.aml: no local header at 0"],
    ["method 12", changed((v) => v.setUint16(dir + 10, 12, true)), "compression method 12"],
    ["encrypted", changed((v) => v.setUint16(dir + 8, 1, true)), "T.aml is encrypted"],
    [
      "a short entry",
      changed((v) => v.setUint32(dir + 24, 2000, true)),
      "T.aml: 1000 bytes, the directory says 2000",
    ],
    [
      "bad compressed data",
      changed((_, b) => b.fill(0xff, 30 + 5, 30 + 12)),
      "T.aml: bad compressed data",
    ],
  ];
  for (const [what, bytes, message] of cases) {
    const e = await assertRejects(() => readZipEntries(bytes, all), ZipError, message);
    assertEquals(e instanceof ZipError, true, what);
  }
});
