/**
 * `measure --log` writes its lines as bytes straight from batches of the log
 * (lib/measure/launch_log_writer.ts). Its output is pinned to the lines the log printed
 * before, one string per entry: formatLogEntry and JSON.stringify(logEntryJson(e)), with
 * every field at its edges (parts with quotes, control and non-ASCII characters, unknown page
 * types, the host's directive -1, GPAs past 2^53, indexes wider than the column), and through
 * the CLI on golden images under several loaders.
 */
import { assert, assertEquals } from "./assert.ts";
import { HAVE_SHARED, runCli, SHARED, tempDir } from "./helpers.ts";
import {
  formatLogEntry,
  launchLog,
  type LaunchLogBatch,
  type LaunchLogEntry,
  LOG_HEADER,
  logEntryJson,
} from "../lib/measure/launch_log.ts";
import { LaunchLogWriter } from "../lib/measure/launch_log_writer.ts";
import { printable } from "../lib/cli/errors.ts";
import { toHex } from "../lib/bytes/le.ts";
import { openFileAccess } from "../lib/io/file_reader.ts";
import { readHeaders } from "../lib/igvm/structure.ts";
import { headerSectionChecksum, readIgvmFile } from "../lib/igvm/reader.ts";
import { layoutLoader } from "../lib/measure/host_search.ts";

const PARTS = [
  "kernel",
  "page tables + initrd",
  'ACPI "Q\\"',
  "ACPI \x1b[31m\x7f\x00",
  "ACPI \u00e9\u2603\u{1f600}",
  "x".repeat(3000), // longer than a line's room
  "y".repeat(80_000), // longer than a chunk
  "",
];
const GPAS = [0, 0x1000, 0xffff_ffff_f000, 2 ** 53 + 2 ** 12, 2 ** 63, 0xffff_ffff_ffff_f000];
const TYPES = [1, 2, 3, 4, 5, 6, 0, 9, 255];

/** Batches of synthetic entries whose fields run through the values above. */
function batches(count: number, first: number): LaunchLogBatch[] {
  const out: LaunchLogBatch[] = [];
  for (let start = 0; start < count; start += 256) {
    const n = Math.min(256, count - start);
    const contents = new Uint8Array(n * 48);
    const digests = new Uint8Array(n * 48);
    crypto.getRandomValues(contents);
    crypto.getRandomValues(digests);
    const updates = [];
    const parts = [];
    for (let k = 0; k < n; k++) {
      const i = start + k;
      updates.push({
        pageType: TYPES[i % TYPES.length],
        gpa: i % 7 === 0 ? GPAS[(i / 7) % GPAS.length] : 0x10_0000 + i * 0x1000,
        directive: i % 5 === 0 ? -1 : i * 3,
      });
      parts.push(PARTS[i % PARTS.length]);
    }
    out.push({ first: first + start, updates, contents, digests, parts });
  }
  return out;
}

/** The entries of batches, one object each, as launchLog yields them. */
function entriesOf(bs: LaunchLogBatch[]): LaunchLogEntry[] {
  return bs.flatMap((b) =>
    b.updates.map((u, k) => ({
      index: b.first + k,
      ...u,
      part: b.parts[k],
      contents: b.contents.slice(k * 48, k * 48 + 48),
      digest: b.digests.slice(k * 48, k * 48 + 48),
    }))
  );
}

/** The writer's chunks, decoded. */
function written(json: boolean, bs: LaunchLogBatch[], stop?: "dropLast"): string[] {
  const chunks: string[] = [];
  const writer = new LaunchLogWriter(json, (c) => chunks.push(new TextDecoder().decode(c)));
  for (const b of bs) writer.add(b);
  if (stop) writer.dropLast();
  writer.flush();
  return chunks;
}

Deno.test("LaunchLogWriter writes formatLogEntry's lines, byte for byte, in chunks of whole lines", () => {
  const bs = batches(1500, 9_999_000);
  const chunks = written(false, bs);
  assert(chunks.length > 5, `${chunks.length} chunks`);
  const expected = entriesOf(bs).map(formatLogEntry);
  assertEquals(chunks.join("\n"), expected.join("\n"));
  for (const c of chunks) {
    assert(!c.endsWith("\n") && (c.length <= 70_000 || !c.includes("\n")), c.slice(-20));
  }
});

Deno.test("LaunchLogWriter writes JSON.stringify(logEntryJson(e)) after 4 spaces, each but the last with its comma", () => {
  const bs = batches(1500, 0);
  const chunks = written(true, bs);
  assert(chunks.length > 5, `${chunks.length} chunks`);
  const expected = entriesOf(bs).map((e) => `    ${JSON.stringify(logEntryJson(e))}`);
  assertEquals(chunks.join("\n"), expected.join(",\n"));
  for (const c of chunks.slice(0, -1)) assert(c.endsWith("},"), c.slice(-20));
  // Printed as lines, the control characters are escaped as in the line printed whole.
  assertEquals(chunks.map(printable).join("\n"), printable(expected.join(",\n")));
});

Deno.test("LaunchLogWriter.dropLast(): a JSON log cut by an error ends with the entries followed by another", () => {
  for (const count of [1, 2, 300, 1500]) {
    const bs = batches(count, 0);
    const expected = entriesOf(bs).map((e) => `    ${JSON.stringify(logEntryJson(e))},`);
    expected.pop();
    assertEquals(written(true, bs, "dropLast").join("\n"), expected.join("\n"), `${count}`);
  }
});

/** `measure --log [--json]` as the CLI printed it with one string per entry. */
async function logAsBefore(path: string, json: boolean, loader?: string, vcpus?: number) {
  const file = await openFileAccess(path);
  try {
    const headers = await readHeaders(file);
    const name = loader ?? layoutLoader(headers);
    const host = vcpus === undefined ? undefined : { vcpus, cpuSignature: 0x00a00f11 };
    const lines: string[] = [];
    let last: Uint8Array = new Uint8Array(48);
    for await (const e of launchLog(file, headers, name, host)) {
      lines.push(json ? `    ${JSON.stringify(logEntryJson(e))}` : formatLogEntry(e));
      last = e.digest;
    }
    const digest = toHex(last);
    const out = json
      ? [
        `{\n  "schema": "igvmgen-measure-log/1",\n  "file": ${
          JSON.stringify(path)
        },\n  "loader": "${name}",\n  "updates": [`,
        lines.join(",\n"),
        `  ],\n  "launchDigest": "${digest}"\n}`,
      ]
      : [LOG_HEADER, ...lines, `launch digest (${name}): ${digest}`];
    return printable(out.join("\n")) + "\n";
  } finally {
    file.close();
  }
}

Deno.test({
  name:
    "measure --log [--json] prints what one string per entry printed, under every kind of loader",
  ignore: !HAVE_SHARED,
}, async () => {
  const runs: [string, string[], string | undefined, number | undefined][] = [
    ["tb2_payload.igvm", [], undefined, undefined],
    ["tb2_payload.igvm", ["--loader", "ch-mshv"], "ch-mshv", undefined],
    ["tb_x64_snapshot.igvm", ["--loader", "igvmmeasure-native-zero"], "igvmmeasure-native-zero", 0],
    [
      "tb_x86_acpitest.igvm",
      ["--loader", "qemu-kvm", "--vcpus", "3", "--cpu", "milan"],
      "qemu-kvm",
      3,
    ],
  ];
  for (const [name, args, loader, vcpus] of runs) {
    const path = `${SHARED}golden/${name}`;
    for (const json of [false, true]) {
      const r = await runCli(["measure", path, "--log", ...(json ? ["--json"] : []), ...args]);
      assertEquals(r.code, 0, r.stderr);
      const expected = await logAsBefore(path, json, loader, vcpus || undefined);
      assert(expected.split("\n").length > 100);
      assertEquals(r.stdout, expected, `${name} ${args.join(" ")} json=${json}`);
    }
  }
});

Deno.test({
  name:
    "measure FILE --log [--json] stopped by a page no loader knows prints the entries before it as one string per entry did",
  ignore: !HAVE_SHARED,
}, async () => {
  // A golden image whose 3000th page has an unknown data type (checksum fixed): the loader
  // model stops there, after the log has printed the batches before it.
  const bytes = await Deno.readFile(`${SHARED}golden/tb_noopt_acpitest.igvm`);
  const h = readIgvmFile(bytes);
  const page = h.directives.filter((d) => d.type === 0x302)[3000];
  const v = new DataView(bytes.buffer, bytes.byteOffset);
  v.setUint16(page.offset + 8 + 0x14, 0x99, true); // DataType
  const end = h.fixed.VariableHeaderOffset + h.fixed.VariableHeaderSize;
  v.setUint32(0x14, headerSectionChecksum(bytes, end), true);
  const path = `${tempDir()}/unknown-type.igvm`;
  await Deno.writeFile(path, bytes);
  const entries: LaunchLogEntry[] = [];
  const file = await openFileAccess(path);
  try {
    const headers = await readHeaders(file);
    for await (const e of launchLog(file, headers, "hyperv")) entries.push(e);
    throw new Error("the log did not stop");
  } catch (e) {
    assert(/unknown page data type 153/.test((e as Error).message), String(e));
  } finally {
    file.close();
  }
  assert(entries.length >= 256, `${entries.length} entries`);
  const text = await runCli(["measure", path, "--log"]);
  assertEquals(text.code, 1);
  assertEquals(text.stdout, [LOG_HEADER, ...entries.map(formatLogEntry)].join("\n") + "\n");
  assert(text.stderr.includes("unknown page data type 153"), text.stderr);
  // JSON: each entry was printed with its comma once the next one came, so the last is not.
  const json = await runCli(["measure", path, "--log", "--json"]);
  assertEquals(json.code, 1);
  const lines = entries.slice(0, -1).map((e) => `    ${JSON.stringify(logEntryJson(e))},`);
  assertEquals(
    json.stdout,
    `{\n  "schema": "igvmgen-measure-log/1",\n  "file": ${
      JSON.stringify(path)
    },\n  "loader": "hyperv",\n  "updates": [\n${lines.join("\n")}\n`,
  );
});
