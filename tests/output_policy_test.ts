/**
 * One output policy for every command: `sign` and `measure` check and write their outputs as
 * generation does (lib/io/output_target.ts), and standard input or output that is a regular
 * file is compared with the outputs and inputs. Run as a user runs the CLI (`deno task
 * igvmgen`'s permissions), except where a case needs what only all permissions can tell.
 */
import { assert, assertEquals } from "./assert.ts";
import { listDir, mkfifo, readFifo, sha256Hex, snapshot, taskPermissionFlags } from "./helpers.ts";
import { makeBzImage, pseudoRandomBytes } from "../scripts/fixtures.ts";
import {
  haveScript,
  oneLineError,
  referenceMeasurement,
  runOnTerminal,
  runTask,
} from "./task_cli.ts";
import { generate, InputError, measure, sign, UsageError } from "../mod.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/**
 * A temporary folder with a kernel `k`, an initrd `rd`, a key `key.pem`, its public key
 * `pub.pem`, a TEI config `tei.json`, a signature `sig.der`, a payload `pay.bin` and an IGVM
 * file `in.igvm` made from them.
 */
async function withFiles(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-policy-" });
  try {
    Deno.writeFileSync(`${dir}/k`, makeBzImage());
    Deno.writeFileSync(`${dir}/rd`, pseudoRandomBytes(200 * 1024 + 5, 11));
    const { generateKeyPairSync, sign } = await import("node:crypto");
    const pair = generateKeyPairSync("ec", { namedCurve: "P-384" });
    Deno.writeTextFileSync(
      `${dir}/key.pem`,
      pair.privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
    );
    Deno.writeTextFileSync(
      `${dir}/pub.pem`,
      pair.publicKey.export({ format: "pem", type: "spki" }).toString(),
    );
    Deno.writeTextFileSync(`${dir}/tei.json`, "{}\n");
    Deno.writeFileSync(`${dir}/sig.der`, sign("sha384", new Uint8Array(96), pair.privateKey));
    Deno.writeFileSync(`${dir}/pay.bin`, pseudoRandomBytes(96, 2));
    const r = await runTask([
      "-o",
      `${dir}/in.igvm`,
      "-kernel",
      `${dir}/k`,
      "-rdinit",
      `${dir}/rd`,
    ]);
    assertEquals(r.code, 0, r.stderr);
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs a shell line in which `IGVMGEN` is igvmgen under the task's permissions (or `flags`). */
async function runShell(line: string, flags = taskPermissionFlags("igvmgen")) {
  const igvmgen = [Deno.execPath(), "run", "--quiet", ...flags, `${ROOT}main.ts`].join(" ");
  const r = await new Deno.Command("bash", {
    args: ["-c", line.replaceAll("IGVMGEN", igvmgen)],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  return { code: r.code, stdout: r.stdout, stderr: new TextDecoder().decode(r.stderr) };
}

Deno.test("sign refuses an output that is any of its inputs; nothing changes", async () => {
  await withFiles(async (dir) => {
    Deno.linkSync(`${dir}/key.pem`, `${dir}/key-hard.pem`);
    Deno.symlinkSync(`${dir}/tei.json`, `${dir}/tei-link.json`);
    const before = snapshot(dir);
    const d = (name: string) => `${dir}/${name}`;
    const key = ["-sign_key", d("key.pem")];
    const offline = ["--id-signature", d("sig.der"), "--id-public-key", d("pub.pem")];
    const cases: [string[], string[]][] = [
      [["-o", d("key.pem"), ...key], ["-o", "-sign_key"]],
      [["-o", d("key-hard.pem"), ...key], ["-o", "-sign_key"]],
      [["-o", d("out.igvm"), ...key, "-measurement_file", d("key.pem")], [
        "-measurement_file",
        "-sign_key",
      ]],
      [["-o", d("tei.json"), ...key, "-config_file", d("tei.json")], ["-o", "-config_file"]],
      [["-o", d("tei-link.json"), ...key, "-config_file", d("tei.json")], ["-o", "-config_file"]],
      [[
        "-o",
        d("out.igvm"),
        ...key,
        "-config_file",
        d("tei.json"),
        "-measurement_file",
        d(
          "tei.json",
        ),
      ], ["-measurement_file", "-config_file"]],
      [["--payload-out", d("tei.json"), "-config_file", d("tei.json")], [
        "--payload-out",
        "-config_file",
      ]],
      [["-o", d("sig.der"), ...offline], ["-o", "--id-signature"]],
      [["-o", d("pub.pem"), ...offline], ["-o", "--id-public-key"]],
      [["-o", d("pay.bin"), ...offline, "--payload", d("pay.bin")], ["-o", "--payload"]],
      [["-o", d("out.igvm"), ...offline, "-measurement_file", d("sig.der")], [
        "-measurement_file",
        "--id-signature",
      ]],
      [["-o", d("in.igvm"), ...key], ["-o", "the input"]],
      [["-o", d("x.igvm"), ...key, "-measurement_file", d("x.igvm")], [
        "-o",
        "-measurement_file",
        "same file",
      ]],
      [["--matrix", "--vcpus", "1,2", "--cpu", "milan", ...key, "--id-blocks-out", d("key.pem")], [
        "--id-blocks-out",
        "-sign_key",
      ]],
      [[
        "--matrix",
        "--vcpus",
        "1",
        "--cpu",
        "milan",
        "--id-signature",
        d("sig.der"),
        "--id-public-key",
        d("pub.pem"),
        "-o",
        d("sig.der"),
      ], ["-o", "--id-signature"]],
    ];
    for (const [args, names] of cases) {
      oneLineError(await runTask(["sign", d("in.igvm"), ...args]), 2, ...names);
      assertEquals(snapshot(dir), before, args.join(" "));
    }
  });
});

Deno.test("measure -measurement_file naming its input is refused (CLI and library)", async () => {
  await withFiles(async (dir) => {
    Deno.symlinkSync(`${dir}/in.igvm`, `${dir}/in-link.igvm`);
    const before = snapshot(dir);
    for (const out of [`${dir}/in.igvm`, `${dir}/in-link.igvm`, `${dir}/./in.igvm`]) {
      const r = await runTask(["measure", `${dir}/in.igvm`, "-measurement_file", out]);
      oneLineError(r, 2, "-measurement_file", "the input", "same file");
      assertEquals(snapshot(dir), before);
    }
    let refused: Error | undefined;
    try {
      await measure({ file: `${dir}/in.igvm`, measurementFile: `${dir}/in-link.igvm` });
    } catch (e) {
      refused = e as Error;
    }
    assert(refused?.message.includes("same file"), String(refused));
    assertEquals(snapshot(dir), before);
    // The measurement file's folder is checked first too.
    oneLineError(
      await runTask(["measure", `${dir}/in.igvm`, "-measurement_file", `${dir}/no/m.json`]),
      1,
      "does not exist",
    );
  });
});

Deno.test("generation refuses an output that is the file on standard input (task permissions)", async () => {
  await withFiles(async (dir) => {
    Deno.linkSync(`${dir}/k`, `${dir}/k-hard`);
    const before = snapshot(dir);
    const cases: [string, string[]][] = [
      [`IGVMGEN -o ${dir}/k - < ${dir}/k`, ["-o", "-kernel"]],
      [`IGVMGEN -o ${dir}/k-hard - < ${dir}/k`, ["-o", "-kernel"]],
      [`IGVMGEN -o ${dir}/o.igvm -kernel - -measurement_file ${dir}/k < ${dir}/k`, [
        "-measurement_file",
        "-kernel",
      ]],
      [`IGVMGEN -o ${dir}/rd -kernel ${dir}/k -rdinit /dev/stdin < ${dir}/rd`, ["-o", "-rdinit"]],
      [`IGVMGEN -o ${dir}/rd -kernel ${dir}/k -rdinit /proc/self/fd/0 < ${dir}/rd`, [
        "-o",
        "-rdinit",
      ]],
    ];
    for (const [line, names] of cases) {
      oneLineError(await runShell(line), 2, ...names, "standard input");
      assertEquals(snapshot(dir), before, line);
    }
    // Another output is fine.
    const ok = await runShell(`IGVMGEN -o ${dir}/new.igvm - < ${dir}/k`);
    assertEquals(ok.code, 0, ok.stderr);
  });
});

Deno.test("with all permissions, standard input and output are compared by device and inode", async () => {
  if (Deno.build.os !== "linux") return;
  await withFiles(async (dir) => {
    const before = snapshot(dir);
    const all = ["-A"];
    oneLineError(
      await runShell(`IGVMGEN -o ${dir}/k - < ${dir}/k`, all),
      2,
      "-o",
      "-kernel",
      "same file",
    );
    // Standard output opened read-write on the kernel, without truncating it.
    oneLineError(
      await runShell(`IGVMGEN -o - -kernel ${dir}/k 1<>${dir}/k`, all),
      2,
      "-o -",
      "-kernel",
      "same file",
    );
    oneLineError(
      await runShell(
        `IGVMGEN sign ${dir}/in.igvm -o - -sign_key ${dir}/key.pem 1<>${dir}/in.igvm`,
        all,
      ),
      2,
      "-o -",
      "the input",
    );
    assertEquals(snapshot(dir), before);
  });
});

Deno.test("sign side inputs are small regular files: /dev/zero fails at once", async () => {
  await withFiles(async (dir) => {
    const d = (name: string) => `${dir}/${name}`;
    const offline = (sig: string, pub: string, more: string[] = []) => [
      "sign",
      d("in.igvm"),
      "-o",
      d("out.igvm"),
      "--id-signature",
      sig,
      "--id-public-key",
      pub,
      ...more,
    ];
    Deno.writeFileSync(d("big.der"), new Uint8Array((1 << 20) + 1));
    const cases: [string[], string][] = [
      [offline("/dev/zero", d("pub.pem")), "signature /dev/zero is not a regular file"],
      [offline(d("sig.der"), "/dev/zero"), "public key /dev/zero is not a regular file"],
      [offline(d("sig.der"), d("pub.pem"), ["--payload", "/dev/zero"]), "payload /dev/zero"],
      [offline(d("big.der"), d("pub.pem")), "larger than 1048576 bytes"],
    ];
    for (const [args, message] of cases) {
      const started = performance.now();
      oneLineError(await runTask(args), 1, message);
      assert(performance.now() - started < 20_000, `${args.join(" ")} took too long`);
    }
    assertEquals(listDir(dir).includes("out.igvm"), false);
  });
});

Deno.test("sign and measure write FIFOs, devices, - and symlinks as generation does", async () => {
  await withFiles(async (dir) => {
    const d = (name: string) => `${dir}/${name}`;
    const sign = ["sign", d("in.igvm"), "-sign_key", d("key.pem"), "-sign_deterministic", "1"];
    const file = await runTask([...sign, "-o", d("a.igvm"), "-measurement_file", d("a.json")]);
    assertEquals(file.code, 0, file.stderr);
    const image = sha256Hex(Deno.readFileSync(d("a.igvm")));
    const json = Deno.readTextFileSync(d("a.json"));
    const payload = await runTask(["sign", d("in.igvm"), "--payload-out", d("a.bin")]);
    assertEquals(payload.code, 0, payload.stderr);

    // Standard output and /dev/null.
    const out = await runTask([...sign, "-o", "/dev/stdout"]);
    assertEquals(out.code, 0, out.stderr);
    assertEquals(sha256Hex(out.stdout), image);
    const nul = await runTask([...sign, "-o", "/dev/null", "-measurement_file", "-"]);
    assertEquals(nul.code, 0, nul.stderr);
    assertEquals(new TextDecoder().decode(nul.stdout), json);
    const pay = await runTask(["sign", d("in.igvm"), "--payload-out", "/dev/stdout"]);
    assertEquals(pay.code, 0, pay.stderr);
    assertEquals(sha256Hex(pay.stdout), sha256Hex(Deno.readFileSync(d("a.bin"))));
    const m = await runTask(["measure", d("in.igvm"), "-measurement_file", "/dev/null"]);
    assertEquals(m.code, 0, m.stderr);
    assert(Deno.statSync("/dev/null").isCharDevice, "/dev/null is still a device");
    assertEquals(listDir(dir).includes("-"), false);

    // FIFOs, in a folder of their own: no temporary file appears beside them.
    Deno.mkdirSync(d("fifo"));
    const fifo = d("fifo/f");
    mkfifo(fifo);
    const cases: [string[], string][] = [
      [[...sign, "-o", fifo], image],
      [["sign", d("in.igvm"), "--payload-out", fifo], sha256Hex(Deno.readFileSync(d("a.bin")))],
      [
        [...sign, "-o", d("b.igvm"), "-measurement_file", fifo],
        sha256Hex(
          new TextEncoder().encode(json),
        ),
      ],
      [
        ["measure", d("in.igvm"), "-measurement_file", fifo],
        sha256Hex(
          new TextEncoder().encode(json),
        ),
      ],
    ];
    for (const [args, want] of cases) {
      const [bytes, r] = await readFifo(fifo, runTask(args));
      assertEquals(r.code, 0, r.stderr);
      assertEquals(sha256Hex(bytes), want, args.join(" "));
      assert(Deno.statSync(fifo).isFifo, "the FIFO stays a FIFO");
      assertEquals(listDir(d("fifo")), ["f"]);
    }

    // A symlinked output: its target is written, the link and the mode stay.
    if (Deno.build.os === "windows") return;
    for (const args of [["-o"], ["-o", d("c.igvm"), "-measurement_file"]]) {
      Deno.mkdirSync(d("real"));
      Deno.writeTextFileSync(d("real/t"), "previous");
      Deno.chmodSync(d("real/t"), 0o600);
      Deno.symlinkSync("real/t", d("link"));
      const r = await runTask([...sign, ...args, d("link")]);
      assertEquals(r.code, 0, r.stderr);
      assert(Deno.lstatSync(d("link")).isSymlink, "the link stays a link");
      assertEquals(Deno.statSync(d("real/t")).mode! & 0o777, 0o600);
      const got = Deno.readFileSync(d("real/t"));
      if (args.length === 1) assertEquals(sha256Hex(got), image);
      else assertEquals(new TextDecoder().decode(got), json);
      assertEquals(listDir(d("real")), ["t"]);
      Deno.removeSync(d("real"), { recursive: true });
      Deno.removeSync(d("link"));
    }
    const ml = d("m-link");
    Deno.writeTextFileSync(d("m-target"), "previous");
    Deno.symlinkSync("m-target", ml);
    const r = await runTask(["measure", d("in.igvm"), "-measurement_file", ml]);
    assertEquals(r.code, 0, r.stderr);
    assert(Deno.lstatSync(ml).isSymlink, "the link stays a link");
    assertEquals(Deno.readTextFileSync(d("m-target")), json);
  });
});

Deno.test("igvmgen -measurement_file on a FIFO delivers the JSON", async () => {
  await withFiles(async (dir) => {
    const json = await referenceMeasurement(dir);
    Deno.mkdirSync(`${dir}/fifo`);
    const fifo = `${dir}/fifo/m`;
    mkfifo(fifo);
    const [bytes, r] = await readFifo(
      fifo,
      runTask(["-o", `${dir}/b.igvm`, "-kernel", `${dir}/k`, "-measurement_file", fifo]),
    );
    assertEquals(r.code, 0, r.stderr);
    assertEquals(new TextDecoder().decode(bytes), json);
    assertEquals(listDir(`${dir}/fifo`), ["m"]);
  });
});

Deno.test("library: a failing output stream is a plain Error naming the output stream", async () => {
  await withFiles(async (dir) => {
    const failing = () =>
      new WritableStream<Uint8Array>({
        write: () => Promise.reject(new Error("the receiver went away")),
      });
    const check = (e: unknown) => {
      assert(e instanceof Error, String(e));
      assert(!(e instanceof InputError) && !(e instanceof UsageError), `${e}: not a plain Error`);
      assert(e.message.startsWith("cannot write the output stream:"), e.message);
      assert(e.message.includes("the receiver went away"), e.message);
    };
    const attempts: (() => Promise<unknown>)[] = [
      () => generate({ output: failing(), kernel: `${dir}/k` }),
      () => sign({ file: `${dir}/in.igvm`, output: failing(), signKey: `${dir}/key.pem` }),
      () => sign({ file: `${dir}/in.igvm`, payloadOut: failing() }),
    ];
    for (const attempt of attempts) {
      let error: unknown;
      try {
        await attempt();
      } catch (e) {
        error = e;
      }
      check(error);
    }
  });
});

Deno.test("sign -o - and --payload-out - on a terminal are refused unless --force", async () => {
  if (!haveScript()) return;
  await withFiles(async (dir) => {
    const run = (args: string) => runOnTerminal(`sign ${dir}/in.igvm ${args}`, dir);
    oneLineError(await run(`-o - -sign_key ${dir}/key.pem`), 2, "terminal", "--force");
    oneLineError(await run("--payload-out -"), 2, "terminal", "--force");
    const forced = await run(`-o - -sign_key ${dir}/key.pem --force`);
    assertEquals(forced.code, 0, forced.stderr);
    assert(forced.out.length > 4096, "the image went to the terminal");
  });
});

Deno.test("library: an output that is an input is refused naming the request's fields", async () => {
  await withFiles(async (dir) => {
    const before = snapshot(dir);
    const refusal = async (attempt: () => Promise<unknown>) => {
      try {
        await attempt();
      } catch (e) {
        assert(e instanceof UsageError, String(e));
        return e.message;
      }
      throw new Error("not refused");
    };
    assertEquals(
      await refusal(() => generate({ output: `${dir}/k`, kernel: `${dir}/k` })),
      `output ${dir}/k is the same file as kernel ${dir}/k: refusing to overwrite an input`,
    );
    assertEquals(
      await refusal(() =>
        generate({
          output: `${dir}/o.igvm`,
          kernel: `${dir}/k`,
          measurementFile: `${dir}/rd`,
          initrd: `${dir}/rd`,
        })
      ),
      `measurementFile ${dir}/rd is the same file as initrd ${dir}/rd: refusing to overwrite an input`,
    );
    assertEquals(
      await refusal(() =>
        sign({ file: `${dir}/in.igvm`, output: `${dir}/key.pem`, signKey: `${dir}/key.pem` })
      ),
      `output ${dir}/key.pem is the same file as signKey ${dir}/key.pem: refusing to overwrite an input`,
    );
    assertEquals(
      await refusal(() => sign({ file: `${dir}/in.igvm`, payloadOut: `${dir}/in.igvm` })),
      `payloadOut ${dir}/in.igvm is the same file as file ${dir}/in.igvm: refusing to overwrite an input`,
    );
    assertEquals(snapshot(dir), before);
  });
});
