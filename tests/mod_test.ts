/**
 * The library as another program uses it: only `mod.ts` is imported. Every golden case of
 * ../shared/golden/cases.json is rebuilt through `generate()` with the kernel given as a
 * `ReadableStream`, and must equal the original's bytes; the file operations are checked on
 * the original's files.
 */
import {
  CPU_SIGNATURES,
  diff,
  dump,
  generate,
  type GenerateRequest,
  InputError,
  inspect,
  LOADER_NAMES,
  measure,
  measureLog,
  sign,
  UsageError,
  verify,
} from "../mod.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";
import {
  FIXTURES,
  GOLDEN,
  goldenArgs,
  type GoldenCase,
  goldenNeedsIasl,
  HAVE_IASL,
  HAVE_SHARED,
  sha256Hex,
  SHARED,
} from "./helpers.ts";

const SKIP = "../shared is absent: skipped";

/** A file's bytes as a stream, the way a `fetch()` body arrives. */
async function streamOf(path: string): Promise<ReadableStream<Uint8Array>> {
  return (await Deno.open(path, { read: true })).readable;
}

const BOOLEAN: Record<string, boolean> = { true: true, "1": true, false: false, "0": false };

/**
 * A golden case's command line written as a library request, independently of the CLI's
 * translator; the kernel is a stream. An option this test does not know fails the test.
 */
async function requestFor(c: GoldenCase, output: string): Promise<GenerateRequest> {
  const args = goldenArgs(c, output);
  const r: Record<string, unknown> = { output };
  for (let i = 0; i < args.length; i += 2) {
    const [name, value] = [args[i], args[i + 1]];
    switch (name) {
      case "-kernel":
        r.kernel = await streamOf(value);
        break;
      case "-append":
        r.cmdline = value;
        break;
      case "-boot_mode":
        r.bootMode = value;
        break;
      case "-inform":
        r.kernelFormat = value;
        break;
      case "-vtl":
      case "-pgtable_level":
        r[name === "-vtl" ? "vtl" : "pgtableLevel"] = Number(value);
        break;
      case "-pvalidate_opt":
      case "-encrypted_page":
      case "-svme":
      case "-sign_deterministic": {
        const field = { "-pvalidate_opt": "pvalidateOpt", "-encrypted_page": "encryptedPage" }[
          name as "-pvalidate_opt"
        ] ?? (name === "-svme" ? "svme" : "signDeterministic");
        assert(value in BOOLEAN, `${name} ${value}`);
        r[field] = BOOLEAN[value];
        break;
      }
      case "-acpi_dir":
        r.acpi = value;
        break;
      case "-rdinit":
        r.initrd = value;
        break;
      case "-shared_payload":
        r.sharedPayload = value;
        break;
      case "-sign_key":
        r.signKey = value;
        break;
      case "-measurement_file":
        r.measurementFile = value;
        break;
      case "-svn":
        r.svn = value;
        break;
      default:
        throw new Error(`the test does not know ${name}`);
    }
  }
  return r as unknown as GenerateRequest;
}

if (!HAVE_SHARED) Deno.test({ name: `mod.ts golden cases (${SKIP})`, ignore: true, fn() {} });

for (const c of GOLDEN.cases) {
  Deno.test({
    name: `generate() with the kernel as a stream reproduces golden ${c.name} byte for byte`,
    ignore: goldenNeedsIasl(c) && !HAVE_IASL,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "igvmgen-mod-" });
      try {
        const output = `${dir}/${c.name}.igvm`;
        const result = await generate(await requestFor(c, output));
        const bytes = await Deno.readFile(output);
        assertEquals(bytes.length, c.expected.size);
        assertEquals(sha256Hex(bytes), c.expected.sha256, "output sha256");
        assertEquals(result.output, output);
        assertEquals(result.totalSize, c.expected.size);
        assertEquals(result.launchMeasurement, c.expected.launch_measurement);
        assertEquals(result.generatedKey, false);
        assertEquals(JSON.parse(result.measurementJson), {
          "x-ms-sevsnpvm-guestsvn": c.expected.guest_svn,
          "x-ms-sevsnpvm-launchmeasurement": c.expected.launch_measurement,
        });
        assertEquals(await Deno.readTextFile(`${output}.json`), result.measurementJson);
        const written = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
        assertEquals(written, [`${c.name}.igvm`, `${c.name}.igvm.json`], "no temporary file left");
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

/** The smallest case that needs no iasl, for the tests below. */
const SNAPSHOT = GOLDEN.cases.find((c) => c.name === "tb_x64_snapshot");

Deno.test({
  name: "generate() writes to a WritableStream the same bytes, with notices and progress",
  ignore: !SNAPSHOT,
  async fn() {
    const chunks: Uint8Array[] = [];
    const sink = new WritableStream<Uint8Array>({ write: (chunk) => void chunks.push(chunk) });
    const dir = await Deno.makeTempDir({ prefix: "igvmgen-mod-" });
    try {
      const request = await requestFor(SNAPSHOT!, `${dir}/unused.igvm`);
      const notices: string[] = [];
      let last = [0, -1];
      const result = await generate({ ...request, output: sink, measurementFile: undefined }, {
        onNotice: (m) => notices.push(m),
        onProgress: (done, total) => last = [done, total],
      });
      assertEquals(last, [result.pageCount, result.pageCount], "progress ends at the page count");
      assertEquals(notices.length, 1); // the test kernel is a stub shorter than its header says
      assert(notices[0].includes("the kernel looks truncated"), notices[0]);
      const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      chunks.reduce((at, c) => (bytes.set(c, at), at + c.length), 0);
      assertEquals(sha256Hex(bytes), SNAPSHOT!.expected.sha256);
      assertEquals(result.output, undefined);
      assertEquals([...Deno.readDirSync(dir)], [], "nothing written beside the unused path");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "generate() calls overlap safely: one run's end does not remove another run's spool",
  ignore: !SNAPSHOT,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "igvmgen-mod-" });
    try {
      // Run B spools its kernel, then waits for its initrd until run A has finished.
      let asked!: () => void;
      let release!: () => void;
      const initrdAsked = new Promise<void>((r) => asked = r);
      const released = new Promise<void>((r) => release = r);
      const initrd = new ReadableStream<Uint8Array>({
        async pull(c) {
          asked();
          await released;
          c.enqueue(new Uint8Array(8192).fill(0x5a));
          c.close();
        },
      });
      const requestB = await requestFor(SNAPSHOT!, `${dir}/b.igvm`);
      const b = generate({ ...requestB, initrd, measurementFile: undefined });
      await initrdAsked;
      const requestA = await requestFor(SNAPSHOT!, `${dir}/a.igvm`);
      await generate({ ...requestA, measurementFile: undefined });
      release();
      const resultB = await b;
      assertEquals(sha256Hex(await Deno.readFile(`${dir}/a.igvm`)), SNAPSHOT!.expected.sha256);
      const report = await verify({ file: `${dir}/b.igvm` });
      assertEquals(report.problems, []);
      assertEquals(report.launchDigest, resultB.launchMeasurement);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "measure(), verify(), inspect() and dump() read the original's files, by path or stream",
  ignore: !HAVE_SHARED,
  async fn() {
    for (const c of GOLDEN.cases.filter((c) => c.expected.igvm)) {
      const path = `${SHARED}golden/${c.expected.igvm}`;
      const byPath = await measure({ file: path, svn: 7 });
      assertEquals(byPath.launchDigest, c.expected.launch_measurement, c.name);
      assertEquals(JSON.parse(byPath.measurementJson)["x-ms-sevsnpvm-guestsvn"], "7");
      const byStream = await measure({ file: await streamOf(path) });
      assertEquals(byStream.launchDigest, c.expected.launch_measurement, c.name);

      const report = await verify({ file: path });
      assertEquals(report.problems, [], c.name);
      assertEquals(report.ok, true);
      assertEquals(report.launchDigest, c.expected.launch_measurement);
      assertEquals(report.idBlock?.signatureValid, true);

      const summary = await inspect({ file: { stream: await streamOf(path), name: c.name } });
      assertEquals(summary.schema, "igvmgen-inspect/1");
      assertEquals(summary.file, c.name);
      assertEquals(summary.size, c.expected.size);
      assertEquals(summary.launchDigest, c.expected.launch_measurement);

      const text = await dump({ file: path });
      assertEquals(sha256Hex(new TextEncoder().encode(text)), c.expected.dump_sha256);
    }
  },
});

Deno.test("generate() rejects bad fields with UsageError and bad inputs with InputError", async () => {
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-mod-" });
  try {
    const output = `${dir}/out.igvm`;
    const base: GenerateRequest = { output, kernel: `${dir}/nope` };
    await assertRejects(() => generate({ ...base, vtl: 5 }), UsageError, "vtl");
    await assertRejects(
      () => generate({ ...base, bootMode: "x32" as "x64" }),
      UsageError,
      "bootMode: expected one of x86, x64",
    );
    await assertRejects(() => generate({ ...base, vcpus: 0 }), UsageError, "vcpus");
    await assertRejects(() => generate({ ...base, svn: "-1" }), UsageError, "svn");
    await assertRejects(
      () => generate({ ...base, acpi: dir, vcpus: 2 }),
      UsageError,
      "do not go with acpi",
    );
    await assertRejects(() => generate(base), InputError, `kernel ${dir}/nope does not exist`);
    const empty = new ReadableStream<Uint8Array>({ start: (c) => c.close() });
    await assertRejects(
      () => generate({ ...base, kernel: { stream: empty, name: "https://example.com/bzImage" } }),
      InputError,
      "the kernel from https://example.com/bzImage delivered no bytes",
    );
    await assertRejects(() => measure({ file: `${dir}/nope` }), InputError, "cannot read");
    await Deno.writeTextFile(`${dir}/not.igvm`, "hello");
    await assertRejects(() => verify({ file: `${dir}/not.igvm` }), InputError, "no IGVM magic");
    await assertRejects(() => dump({ file: `${dir}/not.igvm` }), InputError, "cannot dump");
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["not.igvm"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "scripts/example_library.ts measures the golden image and rebuilds it from a stream",
  ignore: !HAVE_SHARED,
  async fn() {
    const script = new URL("../scripts/example_library.ts", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "--allow-read", "--allow-write", script],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    const expected = SNAPSHOT!.expected.launch_measurement;
    assertEquals(stdout.split(expected).length, 3, stdout); // measured and generated
    assert(stdout.includes("equal to the original's image"), stdout);
  },
});

/** The golden cases whose original file is stored in ../shared/golden. */
const STORED = GOLDEN.cases.filter((c) => c.expected.igvm !== null);
const GOLDEN_KEY = `${FIXTURES}test-key.pem`;

Deno.test({
  name: "sign() re-signs each stored golden file, given as a stream, with its key: the same bytes",
  ignore: !HAVE_SHARED,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "igvmgen-mod-" });
    try {
      for (const c of STORED) {
        const output = `${dir}/${c.name}.igvm`;
        const result = await sign({
          file: { stream: await streamOf(`${SHARED}golden/${c.expected.igvm}`), name: c.name },
          output,
          signKey: await streamOf(GOLDEN_KEY),
          signDeterministic: true,
        });
        assertEquals(result.launchMeasurement, c.expected.launch_measurement, c.name);
        assertEquals(result.added, false);
        assertEquals(sha256Hex(await Deno.readFile(output)), c.expected.sha256, c.name);
      }
      // To a stream: the same bytes again, and the stream is left open for the caller.
      const c = STORED[0];
      const chunks: Uint8Array[] = [];
      const sink = new WritableStream<Uint8Array>({ write: (chunk) => void chunks.push(chunk) });
      await sign({
        file: `${SHARED}golden/${c.expected.igvm}`,
        output: sink,
        signKey: GOLDEN_KEY,
        signDeterministic: true,
      });
      assertEquals(
        sha256Hex(
          new Uint8Array(await new Blob(chunks as Uint8Array<ArrayBuffer>[]).arrayBuffer()),
        ),
        c.expected.sha256,
      );
      assertEquals(sink.locked, false);
      assertEquals([...Deno.readDirSync(dir)].length, STORED.length, "no temporary file left");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const HAVE_OPENSSL = (() => {
  try {
    new Deno.Command("openssl", { args: ["version"], stdout: "null", stderr: "null" }).outputSync();
    return true;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "sign() offline: the payload to a stream, signed by openssl, attached: verify() accepts it",
  ignore: !HAVE_SHARED || !HAVE_OPENSSL,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "igvmgen-mod-" });
    try {
      const c = STORED[0];
      const file = `${SHARED}golden/${c.expected.igvm}`;
      const chunks: Uint8Array[] = [];
      const payloadOut = new WritableStream<Uint8Array>({ write: (b) => void chunks.push(b) });
      const first = await sign({ file, payloadOut });
      const payload = new Uint8Array(
        await new Blob(chunks as Uint8Array<ArrayBuffer>[]).arrayBuffer(),
      );
      assertEquals(payload.length, 96);
      const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
      assertEquals(hex(payload.subarray(0, 48)), c.expected.launch_measurement);
      assertEquals(first.launchMeasurement, c.expected.launch_measurement);
      await Deno.writeFile(`${dir}/payload.bin`, payload);
      const openssl = (...args: string[]) => {
        const r = new Deno.Command("openssl", { args, stderr: "piped" }).outputSync();
        assert(r.success, new TextDecoder().decode(r.stderr));
      };
      openssl("pkey", "-in", GOLDEN_KEY, "-pubout", "-out", `${dir}/pub.pem`);
      openssl(
        "dgst",
        "-sha384",
        "-sign",
        GOLDEN_KEY,
        "-out",
        `${dir}/sig.der`,
        `${dir}/payload.bin`,
      );
      const result = await sign({
        file,
        output: `${dir}/signed.igvm`,
        idSignature: await streamOf(`${dir}/sig.der`),
        idPublicKey: `${dir}/pub.pem`,
        payload: `${dir}/payload.bin`,
      });
      assertEquals(result.launchMeasurement, c.expected.launch_measurement);
      const report = await verify({ file: `${dir}/signed.igvm` });
      assertEquals(report.problems, []);
      assertEquals(report.idBlock?.signatureValid, true);
      assertEquals(report.idBlock?.ld, c.expected.launch_measurement);
      // A signature over another payload is refused, and nothing is written.
      const other = payload.slice();
      other[95] ^= 1; // the policy's top byte
      await Deno.writeFile(`${dir}/other.bin`, other);
      openssl("dgst", "-sha384", "-sign", GOLDEN_KEY, "-out", `${dir}/bad.der`, `${dir}/other.bin`);
      await assertRejects(
        async () =>
          sign({
            file,
            output: `${dir}/bad.igvm`,
            idSignature: { stream: await streamOf(`${dir}/bad.der`), name: "the HSM's answer" },
            idPublicKey: `${dir}/pub.pem`,
          }),
        InputError,
        "--id-signature the HSM's answer: does not verify",
      );
      assertEquals(await Deno.stat(`${dir}/bad.igvm`).then(() => true, () => false), false);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("sign() refuses a request that does not say what to do, with UsageError", async () => {
  await assertRejects(() => sign({ file: "" }), UsageError, "file: expected a path");
  await assertRejects(() => sign({ file: "x.igvm" }), UsageError, "sign: no output");
  await assertRejects(
    () => sign({ file: "x.igvm", output: "y.igvm", loader: "kvm" }),
    UsageError,
    `loader: expected one of ${LOADER_NAMES.join(", ")}, got "kvm"`,
  );
});

Deno.test({
  name: "measureLog()'s last digest is measure()'s, under hyperv and under qemu-kvm with 2 vCPUs",
  ignore: !HAVE_SHARED,
  async fn() {
    const c = STORED[0];
    const file = `${SHARED}golden/${c.expected.igvm}`;
    const entries = [];
    for await (const e of measureLog({ file: await streamOf(file) })) entries.push(e);
    assertEquals(entries.map((e) => e.index), entries.map((_, i) => i));
    assertEquals(entries.at(-1)!.digest, c.expected.launch_measurement);
    assertEquals((await measure({ file })).launchDigest, c.expected.launch_measurement);
    assert(entries.some((e) => e.pageType === "VMSA" && e.part === "VMSA"));
    assert(entries.every((e) => /^[0-9a-f]{96}$/.test(e.contents) && e.gpa % 4096 === 0));

    const host = { vcpus: 2, cpuSignature: CPU_SIGNATURES.milan };
    const kvm = [];
    for await (const e of measureLog({ file, loader: "qemu-kvm", host })) kvm.push(e);
    const measured = await measure({ file, loader: "qemu-kvm", host });
    assertEquals(measured.loader, "qemu-kvm");
    assertEquals(kvm.at(-1)!.digest, measured.launchDigest);
    assert(measured.launchDigest !== c.expected.launch_measurement);
    // KVM measures one VMSA per vCPU after every page of the file, at 0xFFFFFFFFF000.
    assertEquals(
      kvm.slice(-2).map((e) => [e.pageType, e.gpa, e.directive]),
      [["VMSA", 0xffff_ffff_f000, -1], ["VMSA", 0xffff_ffff_f000, -1]],
    );
    const one = await measure({ file, loader: "qemu-kvm", host: { ...host, vcpus: 1 } });
    assertEquals(one.launchDigest, kvm.at(-2)!.digest);

    await assertRejects(() => measure({ file, loader: "nope" }), UsageError, "loader: expected");
    await assertRejects(() => measure({ file, host }), UsageError, "host: goes with a KVM loader");
    await assertRejects(
      () => measure({ file, loader: "ch-kvm", host: { vcpus: 0, cpuSignature: 0 } }),
      UsageError,
      "host.vcpus",
    );
    const log = measureLog({ file: `${file}.nope` });
    await assertRejects(() => log.next(), InputError, "cannot read");
  },
});

Deno.test({
  name: "diff() of two golden images: their digests, the first difference, pages per part",
  ignore: !HAVE_SHARED || !GOLDEN.cases.some((c) => c.name === "tb_noopt_acpitest"),
  async fn() {
    const [a, b] = ["tb_x86_acpitest", "tb_noopt_acpitest"].map((n) =>
      GOLDEN.cases.find((c) => c.name === n)!
    );
    const pathOf = (c: GoldenCase) => `${SHARED}golden/${c.expected.igvm}`;
    const d = await diff({ a: pathOf(a), b: await streamOf(pathOf(b)) });
    assertEquals(d.equal, false);
    assertEquals([d.digestA, d.digestB], [
      a.expected.launch_measurement,
      b.expected.launch_measurement,
    ]);
    let countA = 0;
    for await (const _ of measureLog({ file: pathOf(a) })) countA++;
    let countB = 0;
    for await (const _ of measureLog({ file: pathOf(b) })) countB++;
    assertEquals([d.updatesA, d.updatesB], [countA, countB]);
    assert(d.firstDifference !== undefined);
    // Every GPA is measured once in each file: pages added less pages removed is the growth.
    const net = d.parts.reduce((n, p) => n + p.added - p.removed, 0);
    assertEquals(net, countB - countA);
    assert(d.parts.some((p) => p.added > 0));

    const same = await diff({ a: pathOf(a), b: pathOf(a) });
    assertEquals([same.equal, same.firstDifference, same.parts], [true, undefined, []]);
    const loaders = await diff({ a: pathOf(a), b: pathOf(a), loaderB: "qemu-kvm" });
    assertEquals(loaders.equal, false);
  },
});
