/**
 * The parsed directives: PAGE_DATA headers live in a typed-array table and `h.directives`
 * reads as an array of plain directives. Checked against a header walk written here with a
 * DataView, for array behaviour, and for the memory a page header costs.
 */
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { generateImage, ROOT, tempDir } from "./helpers.ts";
import { type Directive, readIgvmFile } from "../lib/igvm/reader.ts";
import { makePageHeavyIgvm } from "../scripts/fixtures.ts";
import { PageDataTable } from "../lib/igvm/page_table.ts";

/** Every variable header of a file as [type, offset, body], walked independently. */
function walk(bytes: Uint8Array): [number, number, Uint8Array][] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const start = v.getUint32(8, true);
  const end = start + v.getUint32(12, true);
  const out: [number, number, Uint8Array][] = [];
  for (let at = start; at < end;) {
    const length = v.getUint32(at + 4, true);
    out.push([v.getUint32(at, true), at, bytes.subarray(at + 8, at + 8 + length)]);
    at += Math.ceil((8 + length) / 8) * 8;
  }
  return out;
}

const image = await generateImage(["-vcpus", "2"]);

Deno.test("readIgvmFile(): every directive, page or not, has the type, offset, body and fields of its header", () => {
  const ds = readIgvmFile(image).directives;
  const headers = walk(image);
  assertEquals(ds.length, headers.length);
  assert(headers.filter(([t]) => t === 0x302).length > 100);
  headers.forEach(([type, offset, body], i) => {
    const d = ds[i];
    assertEquals([d.type, d.offset, d.length, [...d.body]], [type, offset, body.length, [
      ...body,
    ]]);
    if (type !== 0x302) return;
    const v = new DataView(body.buffer, body.byteOffset, 24);
    assertEquals(d.name, "IGVM_VHT_PAGE_DATA");
    assertEquals(d.fields, {
      GPA: v.getBigUint64(0, true),
      CompatibilityMask: BigInt(v.getUint32(8, true)),
      FileOffset: BigInt(v.getUint32(12, true)),
      Flags: BigInt(v.getUint32(16, true)),
      DataType: BigInt(v.getUint16(20, true)),
      Reserved: BigInt(v.getUint16(22, true)),
    });
  });
});

Deno.test("h.directives behaves as a read-only array: indexing, iteration, spreading, array methods", () => {
  const ds = readIgvmFile(image).directives;
  const copy: Directive[] = [...ds];
  const key = (d: Directive | undefined) => d && `${d.type}@${d.offset}`;
  assert(Array.isArray(ds));
  assertEquals(copy.length, ds.length);
  assertEquals(copy.map(key), ds.map(key));
  assertEquals(ds.slice(2, 5).map(key), copy.slice(2, 5).map(key));
  assertEquals([...ds.entries()].length, ds.length);
  assertEquals(Object.keys(ds).length, ds.length);
  assertEquals([ds[-1], ds[ds.length], ds.at(ds.length)], [undefined, undefined, undefined]);
  assertEquals(key(ds.at(-1)), key(copy[copy.length - 1]));
  assertEquals(key([...ds].reverse()[0]), key(copy.at(-1)));
  const isVp = (d: Directive) => d.type === 0x304;
  assertEquals(ds.filter(isVp).map(key), copy.filter(isVp).map(key));
  assertEquals(ds.findIndex(isVp), copy.findIndex(isVp));
  assertEquals(ds.findLastIndex(isVp), copy.findLastIndex(isVp));
  assertEquals(key(ds.find((d) => d.type === 0x302)), key(copy.find((d) => d.type === 0x302)));
  assertEquals([ds.some(isVp), ds.every(isVp)], [true, false]);
  let seen = 0;
  for (const d of ds) seen += d.offset > 0 ? 1 : 0;
  ds.forEach((_, i) => assertEquals(i < ds.length, true));
  assertEquals(seen, ds.length);
  assertEquals("3" in ds, true);
  assertEquals(String(ds.length) in ds, false);
  assertThrows(() => ds.push(copy[0]), TypeError);
  assertThrows(() => (ds as Directive[])[0] = copy[1], TypeError);
  assertThrows(() => ds.sort(), TypeError);
  assertEquals(key(ds[0]), key(copy[0]));
});

Deno.test("the reader keeps a page header in under 24 bytes (typed arrays, no object per header)", async () => {
  const dir = tempDir();
  try {
    // Measured in a child with --expose-gc: heap and typed arrays that the parsed file keeps.
    const file = `${dir}/heavy.igvm`;
    Deno.writeFileSync(file, makePageHeavyIgvm(200_000));
    const script = `${dir}/memory.ts`;
    Deno.writeTextFileSync(
      script,
      `import { parseIgvmHeaders } from ${JSON.stringify(`${ROOT}lib/igvm/reader.ts`)};
const bytes = Deno.readFileSync(${JSON.stringify(file)});
const gc = (globalThis as unknown as { gc: () => void }).gc;
const used = () => { gc(); gc(); const m = Deno.memoryUsage(); return m.heapUsed + m.external; };
const before = used();
const parsed = parseIgvmHeaders(bytes, bytes.length);
const perHeader = (used() - before) / parsed.directives.length;
const last = parsed.directives[parsed.directives.length - 2];
console.log(JSON.stringify({ count: parsed.directives.length, perHeader, gpa: String(last.fields.GPA) }));
`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "-A", "--v8-flags=--expose-gc", script],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    assertEquals(out.code, 0, dec.decode(out.stderr));
    const r = JSON.parse(dec.decode(out.stdout));
    assertEquals([r.count, r.gpa], [200_003, String(0x100000 + 199_999 * 4096)]);
    // An object per header took about 205 bytes of heap; the table takes 18.
    assert(r.perHeader < 24, `${r.perHeader.toFixed(1)} bytes per page header`);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("PageDataTable keeps every field of every row, past the 65535 kinds of mask, flags, data type and reserved it names", () => {
  const table = new PageDataTable();
  const rows = 70_000;
  const chunk = new DataView(new ArrayBuffer(24 * rows + 8));
  const fieldsOf = (i: number) => ({
    GPA: BigInt(i) * 0x1000n + (i % 3 === 0 ? 0xffff_fff0_0000_0000n : 0n) + BigInt(i % 5),
    CompatibilityMask: BigInt((i * 2654435761) >>> 0),
    FileOffset: BigInt(i % 7 === 0 ? 0 : 0x1000 + i * 0x1000),
    Flags: BigInt(i % 4),
    DataType: BigInt(i % 9),
    Reserved: BigInt(i % 11 === 0 ? 0xbeef : 0),
  });
  for (let i = 0; i < rows; i++) {
    const f = fieldsOf(i);
    const at = 8 + 24 * i;
    chunk.setBigUint64(at, f.GPA, true);
    chunk.setUint32(at + 8, Number(f.CompatibilityMask), true);
    chunk.setUint32(at + 12, Number(f.FileOffset), true);
    chunk.setUint32(at + 16, Number(f.Flags), true);
    chunk.setUint16(at + 20, Number(f.DataType), true);
    chunk.setUint16(at + 22, Number(f.Reserved), true);
    assertEquals(table.add(chunk, at, 0x1000 + 32 * i), i);
  }
  assertEquals(table.count, rows);
  for (let i = 0; i < rows; i++) {
    const f = fieldsOf(i);
    assertEquals(table.fields(i), f, `row ${i}`);
    assertEquals([...table.body(i)], [...new Uint8Array(chunk.buffer, 8 + 24 * i, 24)]);
    assertEquals(table.headerOffset(i), 0x1000 + 32 * i);
    assertEquals(table.gpaPageOffset(i), i % 5);
    assertEquals(table.gpa(i), Number(f.GPA));
  }
});
