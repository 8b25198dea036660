/**
 * Loader models, `measure --loader/--all-loaders/--log`, `diff` and generation with
 * `--loader`. Digests are checked against the golden measurements and against a small
 * independent recomputation from the recipes of ../shared/LOADERS.md §10.
 */
import { assert, assertEquals } from "./assert.ts";
import { FIXTURES, generateImage, HAVE_SHARED, runCli, SHARED, tempDir } from "./helpers.ts";
import { readIgvmFile } from "../lib/igvm/reader.ts";
import { crc32 } from "node:zlib";
import { sha384 } from "../lib/hash/wasm_sha384.ts";
import { SnpLaunchDigest } from "../lib/measure/snp_digest.ts";
import { toHex } from "../lib/bytes/le.ts";

interface GoldenCase {
  name: string;
  expected: { launch_measurement: string; igvm: string | null };
}
const golden = HAVE_SHARED
  ? (JSON.parse(Deno.readTextFileSync(`${SHARED}golden/cases.json`)) as { cases: GoldenCase[] })
    .cases.filter((c) => c.expected.igvm)
  : [];
const TB2 = `${SHARED}golden/tb2_payload.igvm`;

/**
 * An independent model of a file under the LOADERS.md recipes: every page directive as
 * (type, gpa, contents), shared pages kept or dropped, empty pages NORMAL or ZERO, and an
 * optional sort by GPA.
 */
function recipeDigest(
  bytes: Uint8Array,
  o: { shared: boolean; nativeZero: boolean; sort: boolean },
): string {
  const f = readIgvmFile(bytes);
  const list: { type: number; gpa: number; contents: Uint8Array }[] = [];
  const zero48 = new Uint8Array(48);
  for (const d of f.directives) {
    const gpa = Number(d.fields.GPA ?? 0n);
    if (d.type === 0x304) list.push({ type: 2, gpa, contents: sha384(f.pages.get(gpa)!) });
    else if (d.type === 0x303) list.push({ type: 4, gpa, contents: zero48 });
    else if (d.type === 0x302) {
      const flags = Number(d.fields.Flags);
      const dataType = Number(d.fields.DataType);
      if ((flags & 4) && !o.shared) continue;
      if (dataType === 1) list.push({ type: 5, gpa, contents: zero48 });
      else if (dataType === 2) list.push({ type: 6, gpa, contents: zero48 });
      else if (flags & 2) list.push({ type: 4, gpa, contents: zero48 });
      else if (Number(d.fields.FileOffset) === 0 && o.nativeZero) {
        list.push({ type: 3, gpa, contents: zero48 });
      } else list.push({ type: 1, gpa, contents: sha384(f.pages.get(gpa)!) });
    }
  }
  if (o.sort) list.sort((a, b) => a.gpa - b.gpa);
  const digest = new SnpLaunchDigest();
  for (const u of list) digest.extend(u.gpa, u.type, undefined, u.contents);
  return toHex(digest.value);
}

Deno.test({
  name:
    "measure --all-loaders --json: every model on every golden file, checked against the recipes",
  ignore: !HAVE_SHARED,
  async fn() {
    for (const c of golden) {
      const path = `${SHARED}golden/${c.expected.igvm}`;
      const bytes = Deno.readFileSync(path);
      const r = await runCli(["measure", path, "--all-loaders", "--json"]);
      assertEquals(r.code, 0, r.stderr);
      const doc = JSON.parse(r.stdout);
      assertEquals(doc.schema, "igvmgen-measure-loaders/1");
      const by = Object.fromEntries(
        doc.loaders.map((
          l: { loader: string; launchDigest: string },
        ) => [l.loader, l.launchDigest]),
      );
      assertEquals(by.hyperv, c.expected.launch_measurement, c.name);
      assertEquals(
        by["ch-mshv"],
        recipeDigest(bytes, { shared: true, nativeZero: false, sort: true }),
      );
      assertEquals(
        by.igvmmeasure,
        recipeDigest(bytes, { shared: true, nativeZero: false, sort: false }),
      );
      assertEquals(
        by["igvmmeasure-native-zero"],
        recipeDigest(bytes, { shared: true, nativeZero: true, sort: false }),
      );
      // The original's files are in GPA order: without shared pages every model but
      // native-zero gives the original's digest (LOADERS.md §5, §8).
      const shared = c.name === "tb2_payload";
      assertEquals(by["ch-mshv"] === c.expected.launch_measurement, !shared, c.name);
      assertEquals(by.igvmmeasure === c.expected.launch_measurement, !shared, c.name);
      assert(by["igvmmeasure-native-zero"] !== c.expected.launch_measurement);
    }
  },
});

Deno.test({
  name:
    "measure --loader ch-mshv on tb2_payload differs from hyperv exactly by the shared pages (diff --loader-b)",
  ignore: !HAVE_SHARED,
  async fn() {
    const h = await runCli(["measure", TB2]);
    const c = await runCli(["measure", TB2, "--loader", "ch-mshv"]);
    assertEquals(h.code + c.code, 0, h.stderr + c.stderr);
    assertEquals(
      h.stdout.trim(),
      golden.find((x) => x.name === "tb2_payload")!.expected.launch_measurement,
    );
    assert(h.stdout !== c.stdout);
    const r = await runCli([
      "diff",
      TB2,
      TB2,
      "--loader",
      "hyperv",
      "--loader-b",
      "ch-mshv",
      "--json",
    ]);
    assertEquals(r.code, 1, r.stderr);
    const d = JSON.parse(r.stdout);
    assertEquals(d.digestA, h.stdout.trim());
    assertEquals(d.digestB, c.stdout.trim());
    // The shared pages, counted by inspect (another reader): exactly those were added.
    const inspect = JSON.parse((await runCli(["inspect", TB2, "--json"])).stdout);
    const shared = inspect.pages.byKind["guest-invalid"];
    assert(shared > 0);
    assertEquals(d.parts, [{ part: "shared payload", changed: 0, added: shared, removed: 0 }]);
    assertEquals(d.updatesB - d.updatesA, shared);
    assertEquals(d.firstDifference.b.part, "shared payload");
    // The text report says the same.
    const text = await runCli(["diff", TB2, TB2, "--loader-b", "ch-mshv"]);
    assertEquals(text.code, 1);
    assert(
      text.stdout.includes(`shared payload: 0 changed, ${shared} added, 0 removed`),
      text.stdout,
    );
    const same = await runCli(["diff", TB2, TB2]);
    assertEquals(same.code, 0, same.stdout);
    assert(same.stdout.includes("the launch digests are equal"));
  },
});

Deno.test({
  name:
    "measure --log names every page of golden images; the last running digest is the measurement",
  ignore: !HAVE_SHARED,
  async fn() {
    const want: Record<string, string[]> = {
      tb_x86_acpitest: [
        "kernel",
        "command line",
        "boot_params",
        "GDT",
        "ACPI RSDP",
        "ACPI XSDT",
        "ACPI DSDT",
        "ACPI FACP",
        "ACPI FACS",
        "ACPI APIC",
        "CPUID",
        "secrets",
        "parameter area",
        "VMSA",
        "boot stack",
        "ACPI area",
      ],
      tb_x64_snapshot: ["kernel", "page tables", "command line", "boot_params", "GDT", "ACPI DSDT"],
      elf_x86: ["monitor image", "monitor parameters", "command line", "boot_params", "GDT"],
    };
    for (const c of golden) {
      const path = `${SHARED}golden/${c.expected.igvm}`;
      const r = await runCli(["measure", path, "--log", "--json"]);
      assertEquals(r.code, 0, r.stderr);
      const doc = JSON.parse(r.stdout);
      assertEquals(doc.schema, "igvmgen-measure-log/1");
      assertEquals(doc.launchDigest, c.expected.launch_measurement);
      const updates = doc.updates as { index: number; part: string; digest: string; gpa: string }[];
      assertEquals(updates.at(-1)!.digest, c.expected.launch_measurement);
      updates.forEach((u, i) => assertEquals(u.index, i));
      const parts = new Set(updates.flatMap((u) => u.part.split(" + ")));
      assert(!parts.has("other") && !parts.has("page data"), `${c.name}: ${[...parts]}`);
      for (const p of want[c.name] ?? []) {
        assert(parts.has(p), `${c.name} lacks ${p}: ${[...parts]}`);
      }
      const text = await runCli(["measure", path, "--log"]);
      const lines = text.stdout.trim().split("\n");
      assertEquals(lines.length, updates.length + 2); // header and the digest line
      assertEquals(lines.at(-1), `launch digest (hyperv): ${c.expected.launch_measurement}`);
    }
  },
});

Deno.test({
  name:
    "measure --log names the initrd of a generated image, and says 'page data' for a file not laid out by igvmgen",
  ignore: !HAVE_SHARED,
  async fn() {
    const dir = tempDir();
    try {
      Deno.writeFileSync(`${dir}/initrd`, new Uint8Array(3 * 4096 + 5).fill(0x5a));
      const img = await generateImage(["-rdinit", `${dir}/initrd`, "-append", "console=ttyS0"]);
      Deno.writeFileSync(`${dir}/a.igvm`, img);
      const r = await runCli(["measure", `${dir}/a.igvm`, "--log", "--json"]);
      assertEquals(r.code, 0, r.stderr);
      const parts = (JSON.parse(r.stdout).updates as { part: string }[]).map((u) => u.part);
      // 3 pages and 5 bytes: 4 pages hold initrd bytes; the stack follows in the last one.
      const initrd = parts.filter((p) => p.split(" + ").includes("initrd"));
      assertEquals(initrd, ["initrd", "initrd", "initrd", "initrd + boot stack"]);
      // Move the VMSA to another GPA (and fix the CRC): no longer igvmgen's layout.
      const bytes = Deno.readFileSync(`${SHARED}golden/elf_x86.igvm`);
      const v = new DataView(bytes.buffer);
      const end = v.getUint32(8, true) + v.getUint32(12, true);
      for (let at = v.getUint32(8, true); at < end;) {
        if (v.getUint32(at, true) === 0x304) v.setUint32(at + 8, 0x900000, true);
        at += Math.ceil((8 + v.getUint32(at + 4, true)) / 8) * 8;
      }
      v.setUint32(20, 0, true);
      v.setUint32(20, crc32(bytes.subarray(0, end)) >>> 0, true);
      Deno.writeFileSync(`${dir}/other.igvm`, bytes);
      const o = await runCli(["measure", `${dir}/other.igvm`, "--log", "--json"]);
      assertEquals(o.code, 0, o.stderr);
      const names = new Set(
        (JSON.parse(o.stdout).updates as { part: string }[]).map((u) => u.part),
      );
      assertEquals([...names].sort(), ["CPUID", "VMSA", "page data", "parameter area", "secrets"]);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "diff of two images that differ only in -append points at the command-line page and nothing else",
  ignore: !HAVE_SHARED,
  async fn() {
    const dir = tempDir();
    try {
      const common = ["-sign_key", `${FIXTURES}test-key.pem`, "-sign_deterministic", "true"];
      Deno.writeFileSync(
        `${dir}/a.igvm`,
        await generateImage(["-append", "console=ttyS0 quiet", ...common]),
      );
      Deno.writeFileSync(
        `${dir}/b.igvm`,
        await generateImage(["-append", "console=ttyS1 quiet", ...common]),
      );
      const r = await runCli(["diff", `${dir}/a.igvm`, `${dir}/b.igvm`, "--json"]);
      assertEquals(r.code, 1, r.stderr);
      const d = JSON.parse(r.stdout);
      assertEquals(d.parts.length, 1, JSON.stringify(d.parts));
      assert(d.parts[0].part.split(" + ").includes("command line"), d.parts[0].part);
      assertEquals([d.parts[0].changed, d.parts[0].added, d.parts[0].removed], [1, 0, 0]);
      assertEquals(d.firstDifference.a.part, d.parts[0].part);
      assertEquals(d.firstDifference.a.gpa, d.firstDifference.b.gpa);
      assertEquals(d.updatesA, d.updatesB);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "igvmgen --loader ch-mshv on bzImage2 signs the ch-mshv digest, writes it to -measurement_file, and notes both digests",
  ignore: !HAVE_SHARED,
  async fn() {
    const dir = tempDir();
    try {
      const args = [
        "-kernel",
        `${FIXTURES}test_bzImage`,
        "-inform",
        "bzImage2",
        "-shared_payload",
        `${FIXTURES}payload8.bin`,
        "-sign_key",
        `${FIXTURES}test-key.pem`,
        "-sign_deterministic",
        "true",
      ];
      const h = await runCli([
        "-o",
        `${dir}/h.igvm`,
        ...args,
        "-measurement_file",
        `${dir}/h.json`,
      ]);
      const c = await runCli([
        "-o",
        `${dir}/c.igvm`,
        ...args,
        "--loader",
        "ch-mshv",
        "-measurement_file",
        `${dir}/c.json`,
      ]);
      assertEquals(h.code + c.code, 0, h.stderr + c.stderr);
      const digest = (p: string) =>
        JSON.parse(Deno.readTextFileSync(p))["x-ms-sevsnpvm-launchmeasurement"];
      const hd = digest(`${dir}/h.json`);
      const cd = digest(`${dir}/c.json`);
      assert(hd !== cd);
      for (const r of [h, c]) {
        const notes = r.stderr.split("\n").filter((l) => l.includes("depends on the loader"));
        assertEquals(notes.length, 1, r.stderr);
        assert(notes[0].includes(`hyperv ${hd}`) && notes[0].includes(`ch-mshv ${cd}`), notes[0]);
      }
      const m = await runCli(["measure", `${dir}/c.igvm`, "--loader", "ch-mshv"]);
      assertEquals(m.stdout.trim(), cd);
      // verify accepts it, and says whose digest the ID block carries.
      const v = await runCli(["verify", `${dir}/c.igvm`]);
      assertEquals(v.code, 0, v.stdout);
      assert(
        v.stdout.includes("the ID block carries the ch-mshv loader's launch digest"),
        v.stdout,
      );
      const inspect = JSON.parse((await runCli(["inspect", `${dir}/c.igvm`, "--json"])).stdout);
      assertEquals(inspect.idBlock.launchDigest, cd);
      assertEquals(inspect.idBlock.signatureValid, true);
      // Signing the hyperv image for ch-mshv gives the same file.
      const s = await runCli([
        "sign",
        `${dir}/h.igvm`,
        "-o",
        `${dir}/s.igvm`,
        "--loader",
        "ch-mshv",
        "-sign_key",
        `${FIXTURES}test-key.pem`,
        "-sign_deterministic",
        "true",
      ]);
      assertEquals(s.code, 0, s.stderr);
      assertEquals(Deno.readFileSync(`${dir}/s.igvm`), Deno.readFileSync(`${dir}/c.igvm`));
      // Images without shared pages print no such notice.
      const plain = await runCli(["-o", `${dir}/p.igvm`, ...args.slice(0, 2), ...args.slice(6)]);
      assertEquals(plain.code, 0, plain.stderr);
      assert(!plain.stderr.includes("depends on the loader"), plain.stderr);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test("measure and diff refuse an unknown loader with exit 2", async () => {
  const r = await runCli(["measure", "x.igvm", "--loader", "nope"]);
  assertEquals(r.code, 2);
  assert(r.stderr.startsWith("error: --loader: expected one of hyperv, ch-mshv"), r.stderr);
  const d = await runCli(["diff", "a", "b", "--loader-b", "nope"]);
  assertEquals(d.code, 2);
});

Deno.test({
  name:
    "sign --loader ch-mshv warns when the ID block policy is not the 0x3001f MSHV launches with",
  ignore: !HAVE_SHARED,
  async fn() {
    const dir = tempDir();
    try {
      const config = JSON.parse(Deno.readTextFileSync(`${FIXTURES}tei-config.json`));
      config.tei_config_data.policy.debug_allowed = true;
      Deno.writeTextFileSync(`${dir}/debug.json`, JSON.stringify(config));
      const args = ["sign", TB2, "-o", `${dir}/o.igvm`, "-sign_key", `${FIXTURES}test-key.pem`];
      const r = await runCli([...args, "--loader", "ch-mshv", "-config_file", `${dir}/debug.json`]);
      assertEquals(r.code, 0, r.stderr);
      assert(
        r.stderr.includes("ch-mshv launches with the ID block policy 0x3001f") &&
          r.stderr.includes("policy 0xb001f"),
        r.stderr,
      );
      const quiet = await runCli([...args, "--loader", "ch-mshv"]);
      assertEquals(quiet.code, 0, quiet.stderr);
      assert(!quiet.stderr.includes("warning"), quiet.stderr);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "ch-mshv sorts by GPA: two page headers swapped in the file change the hyperv digest, not ch-mshv's; diff says order only",
  ignore: !HAVE_SHARED,
  async fn() {
    const dir = tempDir();
    try {
      const c = golden.find((x) => x.name === "elf_x86")!;
      const bytes = Deno.readFileSync(`${SHARED}golden/elf_x86.igvm`);
      const v = new DataView(bytes.buffer);
      const end = v.getUint32(8, true) + v.getUint32(12, true);
      // The first two adjacent PAGE_DATA headers that both carry data: swap them (32 bytes each).
      const withData: number[] = [];
      for (let at = v.getUint32(8, true); at < end && withData.length < 2;) {
        const data = v.getUint32(at, true) === 0x302 && v.getUint32(at + 8 + 12, true) !== 0;
        if (!data) withData.length = 0;
        else withData.push(at);
        at += Math.ceil((8 + v.getUint32(at + 4, true)) / 8) * 8;
      }
      const [a, b] = withData;
      assertEquals(b - a, 32);
      const first = bytes.slice(a, a + 32);
      bytes.copyWithin(a, b, b + 32);
      bytes.set(first, b);
      v.setUint32(20, 0, true);
      v.setUint32(20, crc32(bytes.subarray(0, end)) >>> 0, true);
      Deno.writeFileSync(`${dir}/swapped.igvm`, bytes);
      const h = await runCli(["measure", `${dir}/swapped.igvm`]);
      const m = await runCli(["measure", `${dir}/swapped.igvm`, "--loader", "ch-mshv"]);
      assert(h.stdout.trim() !== c.expected.launch_measurement);
      assertEquals(m.stdout.trim(), c.expected.launch_measurement);
      const d = await runCli([
        "diff",
        `${dir}/swapped.igvm`,
        `${dir}/swapped.igvm`,
        "--loader-b",
        "ch-mshv",
        "--json",
      ]);
      assertEquals(d.code, 1, d.stderr);
      const doc = JSON.parse(d.stdout);
      assertEquals(doc.orderOnly, true);
      assertEquals(doc.parts, []);
      // The first difference: A (file order) issues the higher GPA first.
      assert(parseInt(doc.firstDifference.a.gpa, 16) > parseInt(doc.firstDifference.b.gpa, 16));
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "a 2-page parameter area: hyperv measures both pages, ch-mshv and igvmmeasure the first only",
  ignore: !HAVE_SHARED,
  async fn() {
    const dir = tempDir();
    try {
      const bytes = Deno.readFileSync(`${SHARED}golden/elf_x86.igvm`);
      const v = new DataView(bytes.buffer);
      const end = v.getUint32(8, true) + v.getUint32(12, true);
      for (let at = v.getUint32(8, true); at < end;) {
        if (v.getUint32(at, true) === 0x301) v.setUint32(at + 8, 0x2000, true); // NumberOfBytes
        // Inserted at 4 GiB: at 0x802000 its second page would cover the page after it.
        if (v.getUint32(at, true) === 0x303) v.setBigUint64(at + 8, 0x1_0000_0000n, true);
        at += Math.ceil((8 + v.getUint32(at + 4, true)) / 8) * 8;
      }
      v.setUint32(20, 0, true);
      v.setUint32(20, crc32(bytes.subarray(0, end)) >>> 0, true);
      Deno.writeFileSync(`${dir}/p.igvm`, bytes);
      const inserts = async (loader: string) => {
        const r = await runCli(["measure", `${dir}/p.igvm`, "--log", "--json", "--loader", loader]);
        assertEquals(r.code, 0, r.stderr);
        return (JSON.parse(r.stdout).updates as { part: string; pageType: string; gpa: string }[])
          .filter((u) => u.part === "parameter area").map((u) => `${u.pageType}@${u.gpa}`);
      };
      assertEquals(await inserts("hyperv"), [
        "UNMEASURED@0x100000000",
        "UNMEASURED@0x100001000",
      ]);
      assertEquals(await inserts("ch-mshv"), ["UNMEASURED@0x100000000"]);
      assertEquals(await inserts("igvmmeasure"), ["UNMEASURED@0x100000000"]);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test("loader_names.ts lists the registry's loaders: file-order ones, then the host-dependent", async () => {
  const { LOADERS } = await import("../lib/measure/loaders.ts");
  const { FILE_LOADER_NAMES, KVM_LOADER_NAMES } = await import("../lib/measure/loader_names.ts");
  assertEquals(LOADERS.filter((l) => !l.hostDependent).map((l) => l.name), FILE_LOADER_NAMES);
  assertEquals(LOADERS.filter((l) => l.hostDependent).map((l) => l.name), KVM_LOADER_NAMES);
});

Deno.test("policyWarning() never warns for the default loader, whose digest generation writes (a default run skips the loader pass)", async () => {
  const { DEFAULT_LOADER, LOADERS, policyWarning } = await import("../lib/measure/loaders.ts");
  const { DEFAULT_LOADER: NAME } = await import("../lib/measure/loader_names.ts");
  assertEquals(DEFAULT_LOADER, NAME);
  assertEquals(LOADERS[0].name, DEFAULT_LOADER);
  for (const policy of [0n, 0x30000n, 0x3001fn, 0xffff_ffff_ffff_ffffn]) {
    assertEquals(policyWarning(DEFAULT_LOADER, policy), undefined);
  }
  assert(policyWarning("ch-mshv", 0x30000n) !== undefined, "another loader's forced policy warns");
});
