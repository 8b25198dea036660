/**
 * The write side on bad days, run as a user runs it (`deno task igvmgen`'s permissions): an
 * output that names an input, targets that are not regular files, symlinks, a full disk,
 * signals, endless and oversized inputs, a closed pipe, a terminal, long command lines and
 * arguments that were not UTF-8. Each test tries to break a README promise.
 */
import { assert, assertEquals } from "./assert.ts";
import {
  listDir,
  mkfifo,
  readFifo,
  ROOT,
  sha256Hex,
  snapshot,
  taskPermissionFlags,
} from "./helpers.ts";
import { COMPILE_FLAGS } from "../scripts/compile.ts";
import { makeBzImage, makeElf, pseudoRandomBytes } from "../scripts/fixtures.ts";
import {
  haveScript,
  oneLineError,
  referenceMeasurement,
  runOnTerminal,
  runTask,
  taskCommand,
} from "./task_cli.ts";

/** A temporary folder with a synthetic kernel `k`, an initrd `rd` and a key `key.pem`. */
async function withRun(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-safety-" });
  try {
    await Deno.writeFile(`${dir}/k`, makeBzImage());
    await Deno.writeFile(`${dir}/rd`, pseudoRandomBytes(300 * 1024 + 17, 7));
    const { generateKeyPairSync } = await import("node:crypto");
    await Deno.writeTextFile(
      `${dir}/key.pem`,
      generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey.export({
        format: "pem",
        type: "pkcs8",
      }).toString(),
    );
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Deterministic signing, so two runs give the same bytes. */
const fixed = (dir: string) => ["-sign_key", `${dir}/key.pem`, "-sign_deterministic", "1"];

Deno.test("deno.json: igvmgen and compile tasks grant the same permissions", () => {
  // The compile task runs scripts/compile.ts, which gives deno compile these flags.
  assertEquals(
    COMPILE_FLAGS.filter((f) => f.startsWith("--allow-")),
    taskPermissionFlags("igvmgen"),
  );
  assert(
    JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).tasks.compile.includes(
      "scripts/compile.ts",
    ),
  );
  assert(!taskPermissionFlags("igvmgen").includes("--allow-all"));
});

Deno.test("igvmgen -o naming an input is refused before any work; the input is untouched", async () => {
  await withRun(async (dir) => {
    Deno.symlinkSync(`${dir}/k`, `${dir}/k-link`);
    Deno.linkSync(`${dir}/rd`, `${dir}/rd-hard`);
    Deno.writeTextFileSync(`${dir}/m.json`, "old measurement");
    const before = snapshot(dir);
    const base = ["-kernel", `${dir}/k`, "-rdinit", `${dir}/rd`];
    const cases: [string[], string[]][] = [
      [["-o", `${dir}/k`, ...base], ["-o", "-kernel"]],
      [["-o", `${dir}/./k`, ...base], ["-o", "-kernel"]],
      [["-o", `${dir}/k-link`, ...base], ["-o", "-kernel"]],
      [["-o", `${dir}/rd`, ...base], ["-o", "-rdinit"]],
      [["-o", `${dir}/rd-hard`, ...base], ["-o", "-rdinit"]],
      [["-o", `${dir}/key.pem`, ...base, "-sign_key", `${dir}/key.pem`], ["-o", "-sign_key"]],
      [["-o", `${dir}/new.igvm`, ...base, "-measurement_file", `${dir}/k`], [
        "-measurement_file",
        "-kernel",
      ]],
      [["-o", `${dir}/m.json`, ...base, "-measurement_file", `${dir}/m.json`], [
        "-o",
        "-measurement_file",
      ]],
      [[
        "-o",
        `${dir}/x.igvm`,
        ...base,
        "-measurement_file",
        `${dir}/../${dir.split("/").pop()}/x.igvm`,
      ], [
        "-o",
        "-measurement_file",
      ]],
    ];
    for (const [args, names] of cases) {
      oneLineError(await runTask(args), 2, ...names, "same");
      assertEquals(snapshot(dir), before, args.join(" "));
    }
  });
});

Deno.test("igvmgen checks the folders of -o and -measurement_file first", async () => {
  await withRun(async (dir) => {
    const before = snapshot(dir);
    // The kernel is missing too: the output's folder is reported, so it was checked first.
    oneLineError(
      await runTask(["-o", `${dir}/no/o.igvm`, "-kernel", `${dir}/missing`]),
      1,
      "-o",
      "does not exist",
    );
    oneLineError(
      await runTask([
        "-o",
        `${dir}/o.igvm`,
        "-kernel",
        `${dir}/missing`,
        "-measurement_file",
        `${dir}/no/m.json`,
      ]),
      1,
      "-measurement_file",
      "does not exist",
    );
    oneLineError(await runTask(["-o", dir, "-kernel", `${dir}/k`]), 1, "is a folder");
    assertEquals(snapshot(dir), before);
  });
});

Deno.test("igvmgen -o /dev/null -measurement_file m.json gives the measurement alone", async () => {
  await withRun(async (dir) => {
    const json = await referenceMeasurement(dir);
    const before = Deno.statSync("/dev/null");
    // TMPDIR names no folder: the run succeeds only if nothing is spooled.
    const b = await runTask([
      "-o",
      "/dev/null",
      "-kernel",
      `${dir}/k`,
      "-measurement_file",
      `${dir}/b.json`,
    ], { env: { TMPDIR: `${dir}/no-such-folder` } });
    assertEquals(b.code, 0, b.stderr);
    // --verify reads every page back, so it builds the image in a spool first.
    const v = await runTask(["-o", "/dev/null", "-kernel", `${dir}/k`, "--verify"]);
    assertEquals(v.code, 0, v.stderr);
    assertEquals(Deno.readTextFileSync(`${dir}/b.json`), json);
    const after = Deno.statSync("/dev/null");
    assert(after.isCharDevice, "/dev/null is still a device");
    assertEquals([after.ino, after.rdev], [before.ino, before.rdev]);
  });
});

Deno.test("igvmgen -o /dev/stdout and -o FIFO write the same bytes as -o FILE, with no temp file", async () => {
  await withRun(async (dir) => {
    const common = ["-kernel", `${dir}/k`, "-rdinit", `${dir}/rd`, ...fixed(dir)];
    const a = await runTask(["-o", `${dir}/a.igvm`, ...common]);
    assertEquals(a.code, 0, a.stderr);
    const want = sha256Hex(Deno.readFileSync(`${dir}/a.igvm`));
    const s = await runTask(["-o", "/dev/stdout", ...common]);
    assertEquals(s.code, 0, s.stderr);
    assertEquals(sha256Hex(s.stdout), want);

    Deno.mkdirSync(`${dir}/fifo`);
    const fifo = `${dir}/fifo/out`;
    mkfifo(fifo);
    const [got, r] = await readFifo(fifo, runTask(["-o", fifo, ...common]));
    assertEquals(r.code, 0, r.stderr);
    assertEquals(sha256Hex(got), want);
    assertEquals(listDir(`${dir}/fifo`), ["out"]);
    assert(Deno.statSync(fifo).isFifo, "the FIFO stays a FIFO");
  });
});

Deno.test("igvmgen -o through a symlink writes its target, keeps the link and the mode", async () => {
  if (Deno.build.os === "windows") return;
  await withRun(async (dir) => {
    Deno.mkdirSync(`${dir}/real`);
    Deno.writeTextFileSync(`${dir}/real/out.igvm`, "previous");
    Deno.chmodSync(`${dir}/real/out.igvm`, 0o600);
    Deno.symlinkSync(`real/out.igvm`, `${dir}/link.igvm`);
    const r = await runTask(["-o", `${dir}/link.igvm`, "-kernel", `${dir}/k`]);
    assertEquals(r.code, 0, r.stderr);
    assert(Deno.lstatSync(`${dir}/link.igvm`).isSymlink, "the link stays a link");
    const target = Deno.statSync(`${dir}/real/out.igvm`);
    assertEquals(target.mode! & 0o777, 0o600);
    const magic = new DataView(Deno.readFileSync(`${dir}/real/out.igvm`).buffer).getUint32(0, true);
    assertEquals(magic, 0x4d564749);
    assertEquals(listDir(`${dir}/real`), ["out.igvm"]);
  });
});

Deno.test("igvmgen -o - -measurement_file m.json | head -c 10: exit 1 and no m.json", async () => {
  await withRun(async (dir) => {
    Deno.writeFileSync(`${dir}/big`, pseudoRandomBytes(4 << 20, 3));
    const child = taskCommand([
      "-o",
      "-",
      "-kernel",
      `${dir}/k`,
      "-rdinit",
      `${dir}/big`,
      "-measurement_file",
      `${dir}/m.json`,
    ], {}).spawn();
    const reader = child.stdout.getReader();
    let got = 0;
    while (got < 10) {
      const { value, done } = await reader.read();
      if (done) break;
      got += value.length;
    }
    await reader.cancel(); // closes the pipe, as head does
    const stderr = await new Response(child.stderr).text();
    const { code } = await child.status;
    oneLineError({ code, stderr }, 1, "standard output");
    assertEquals(listDir(dir).includes("m.json"), false);
  });
});

Deno.test("igvmgen -o - on a terminal is refused unless --force", async () => {
  if (!haveScript()) return;
  await withRun(async (dir) => {
    const run = (extra: string) => runOnTerminal(`-o - -kernel ${dir}/k ${extra}`, dir);
    const refused = await run("");
    oneLineError(refused, 2, "terminal", "--force");
    const forced = await run("--force");
    assertEquals(forced.code, 0, forced.stderr);
    assert(forced.out.length > 4096, "the image went to the terminal");
  });
});

Deno.test("igvmgen -o - with standard output closed fails (where the runtime lets it tell)", async () => {
  await withRun(async (dir) => {
    // Under -A igvmgen can read /proc/self/fdinfo/1; the task's narrow permissions cannot.
    const r = await new Deno.Command("sh", {
      args: ["-c", `"${Deno.execPath()}" run --quiet -A main.ts -o - -kernel ${dir}/k >&-`],
      cwd: new URL("../", import.meta.url).pathname,
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const stderr = new TextDecoder().decode(r.stderr);
    if (Deno.build.os !== "linux") return;
    oneLineError({ code: r.code, stderr }, 1, "standard output is closed");
  });
});

Deno.test("igvmgen -append longer than cmdline_size warns with both lengths; --strict fails", async () => {
  await withRun(async (dir) => {
    const long = "x".repeat(3000); // the synthetic kernel's cmdline_size is 2047
    const warn = await runTask(["-o", `${dir}/o.igvm`, "-kernel", `${dir}/k`, "-append", long]);
    assertEquals(warn.code, 0, warn.stderr);
    assert(
      /warning: -append is 3000 bytes, longer than .*cmdline_size 2047/.test(warn.stderr),
      warn.stderr,
    );
    const ok = await runTask([
      "-o",
      `${dir}/p.igvm`,
      "-kernel",
      `${dir}/k`,
      "-append",
      "x".repeat(2047),
    ]);
    assertEquals(ok.code, 0, ok.stderr);
    assert(!ok.stderr.includes("cmdline_size"), ok.stderr);
    Deno.removeSync(`${dir}/o.igvm`);
    const strict = await runTask([
      "-o",
      `${dir}/o.igvm`,
      "-kernel",
      `${dir}/k`,
      "-append",
      long,
      "--strict",
    ]);
    oneLineError(strict, 1, "3000", "2047");
    assertEquals(listDir(dir).includes("o.igvm"), false);
  });
});

Deno.test("igvmgen refuses -append or paths that were not UTF-8, in one line", async () => {
  await withRun(async (dir) => {
    const flags = taskPermissionFlags("igvmgen").join(" ");
    const run = async (tail: string) => {
      const r = await new Deno.Command("bash", {
        args: ["-c", `exec "${Deno.execPath()}" run --quiet ${flags} main.ts ${tail}`],
        cwd: new URL("../", import.meta.url).pathname,
        stdout: "null",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).output();
      return { code: r.code, stderr: new TextDecoder().decode(r.stderr) };
    };
    oneLineError(
      await run(`-o ${dir}/o.igvm -kernel ${dir}/k -append $'console=ttyS0 \\xff'`),
      2,
      "-append",
      "UTF-8",
    );
    oneLineError(await run(`-o ${dir}/o$'\\xfe'.igvm -kernel ${dir}/k`), 2, "-o", "UTF-8");
    oneLineError(await run(`-o=${dir}/o$'\\xfe'.igvm -kernel ${dir}/k`), 2, "-o", "UTF-8");
    assertEquals(listDir(dir).filter((n) => n.includes("igvm")), []);
  });
});

Deno.test("igvmgen side inputs must be small regular files: /dev/zero fails in seconds", async () => {
  await withRun(async (dir) => {
    Deno.writeFileSync(`${dir}/big.pem`, new Uint8Array((1 << 20) + 1));
    Deno.mkdirSync(`${dir}/acpi`);
    Deno.writeFileSync(`${dir}/acpi/DSDT.aml`, new Uint8Array((8 << 20) + 1));
    const base = ["-o", `${dir}/o.igvm`, "-kernel", `${dir}/k`];
    const cases: [string[], string[]][] = [
      [["-sign_key", "/dev/zero"], ["signing key", "/dev/zero", "not a regular file"]],
      [["-config_file", "/dev/zero"], ["config file", "/dev/zero", "not a regular file"]],
      [["-symbol_elf", "/dev/zero"], ["-symbol_elf", "not a regular file"]],
      [["-acpi_dir", "/dev/zero"], ["/dev/zero"]],
      [["-sign_key", `${dir}/big.pem`], ["signing key", "larger than 1048576 bytes"]],
      [["-acpi_dir", `${dir}/acpi`], ["DSDT.aml", "larger than 8388608 bytes"]],
    ];
    for (const [extra, includes] of cases) {
      const t0 = performance.now();
      oneLineError(await runTask([...base, ...extra]), 1, ...includes);
      assert(performance.now() - t0 < 20_000, `${extra.join(" ")} took too long`);
    }
    assertEquals(listDir(dir).includes("o.igvm"), false);
  });
});

Deno.test("igvmgen -kernel /dev/stdin and -rdinit /dev/stdin work under the task's permissions", async () => {
  await withRun(async (dir) => {
    const common = [...fixed(dir), "-append", "x"];
    const a = await runTask([
      "-o",
      `${dir}/a.igvm`,
      "-kernel",
      `${dir}/k`,
      "-rdinit",
      `${dir}/rd`,
      ...common,
    ]);
    assertEquals(a.code, 0, a.stderr);
    const want = sha256Hex(Deno.readFileSync(`${dir}/a.igvm`));
    const b = await runTask(
      ["-o", `${dir}/b.igvm`, "-kernel", `${dir}/k`, "-rdinit", "/dev/stdin", ...common],
      { stdin: Deno.readFileSync(`${dir}/rd`) },
    );
    assertEquals(b.code, 0, b.stderr);
    assertEquals(sha256Hex(Deno.readFileSync(`${dir}/b.igvm`)), want);
    const c = await runTask(
      ["-o", `${dir}/c.igvm`, "-kernel", "/dev/stdin", "-rdinit", `${dir}/rd`, ...common],
      { stdin: Deno.readFileSync(`${dir}/k`) },
    );
    assertEquals(c.code, 0, c.stderr);
    assertEquals(sha256Hex(Deno.readFileSync(`${dir}/c.igvm`)), want);
    oneLineError(
      await runTask(["-o", `${dir}/d.igvm`, "-kernel", "-", "-rdinit", "/dev/stdin"], {
        stdin: new Uint8Array(1),
      }),
      2,
      "standard input can be read once",
    );
  });
});

Deno.test("igvmgen: an initrd past the MMIO hole fails before anything is written", async () => {
  await withRun(async (dir) => {
    const f = await Deno.open(`${dir}/huge`, { write: true, create: true });
    await f.truncate(Math.round(4.1 * 2 ** 30)); // sparse: no disk used
    f.close();
    const tmp = `${dir}/tmp`;
    Deno.mkdirSync(tmp);
    const t0 = performance.now();
    const r = await runTask([
      "-o",
      `${dir}/o.igvm`,
      "-kernel",
      `${dir}/k`,
      "-rdinit",
      `${dir}/huge`,
    ], {
      env: { TMPDIR: tmp },
    });
    oneLineError(r, 1, "-rdinit", "0xc0000000");
    assert(performance.now() - t0 < 20_000, "it failed before reading the initrd");
    assertEquals(listDir(dir).includes("o.igvm"), false);
    assertEquals(listDir(tmp), []);
    // The shared payload of bzImage2 loads at 256 MiB and must end by the same limit.
    oneLineError(
      await runTask([
        "-o",
        `${dir}/o.igvm`,
        "-kernel",
        `${dir}/k`,
        "-inform",
        "bzImage2",
        "-shared_payload",
        `${dir}/huge`,
      ], { env: { TMPDIR: tmp } }),
      1,
      "-shared_payload",
      "0xc0000000",
    );
    assertEquals(listDir(dir).includes("o.igvm"), false);
  });
});

Deno.test("igvmgen: endless -kernel and -rdinit stop spooling at their limit", async () => {
  await withRun(async (dir) => {
    const tmp = `${dir}/tmp`;
    Deno.mkdirSync(tmp);
    const env = { TMPDIR: tmp };
    const o = ["-o", `${dir}/o.igvm`];
    // An ELF is read whole: the spool stops at 256 MiB.
    let t0 = performance.now();
    oneLineError(
      await runTask([...o, "-kernel", "/dev/zero", "-inform", "elf"], { env }),
      1,
      "-kernel /dev/zero",
      "more than 268435456 bytes",
    );
    assert(performance.now() - t0 < 30_000, "the ELF spool stopped early");
    assertEquals(listDir(tmp), []);
    // An initrd must end below 0xc0000000: the spool stops after about 3 GB.
    t0 = performance.now();
    oneLineError(
      await runTask([...o, "-kernel", `${dir}/k`, "-rdinit", "/dev/zero"], { env }),
      1,
      "-rdinit /dev/zero",
      "0xc0000000",
    );
    console.log(`-rdinit /dev/zero failed after ${Math.round(performance.now() - t0)} ms`);
    assertEquals(listDir(tmp), []);
    assertEquals(listDir(dir).includes("o.igvm"), false);
  });
});

Deno.test("igvmgen never writes into its input folders, on success or failure", async () => {
  await withRun(async (dir) => {
    Deno.mkdirSync(`${dir}/in`);
    Deno.mkdirSync(`${dir}/out`);
    for (const n of ["k", "rd", "key.pem"]) Deno.renameSync(`${dir}/${n}`, `${dir}/in/${n}`);
    Deno.writeFileSync(`${dir}/in/elf`, makeElf());
    const before = snapshot(`${dir}/in`);
    const runs = [
      ["-kernel", `${dir}/in/k`, "-rdinit", `${dir}/in/rd`, "-sign_key", `${dir}/in/key.pem`],
      ["-kernel", `${dir}/in/elf`, "-inform", "elf"],
      ["-kernel", `${dir}/in/rd`], // fails: not a bzImage
    ];
    for (const args of runs) {
      await runTask(["-o", `${dir}/out/o.igvm`, "-measurement_file", `${dir}/out/m.json`, ...args]);
      assertEquals(snapshot(`${dir}/in`), before);
    }
  });
});

Deno.test("igvmgen refuses an output that would add a table to the -acpi_dir folder", async () => {
  await withRun(async (dir) => {
    Deno.mkdirSync(`${dir}/acpi`);
    Deno.writeTextFileSync(`${dir}/acpi/DSDT.dsl`, "not compiled: refused before any work");
    const before = snapshot(`${dir}/acpi`);
    for (const name of ["DSDT.dsl", "NEW.aml"]) {
      oneLineError(
        await runTask([
          "-o",
          `${dir}/acpi/${name}`,
          "-kernel",
          `${dir}/k`,
          "-acpi_dir",
          `${dir}/acpi`,
        ]),
        2,
        "-o",
        "-acpi_dir",
      );
    }
    assertEquals(snapshot(`${dir}/acpi`), before);
  });
});

Deno.test("igvmgen -measurement_file - prints the JSON; with -o - it is refused", async () => {
  await withRun(async (dir) => {
    const json = await referenceMeasurement(dir);
    const b = await runTask([
      "-o",
      `${dir}/b.igvm`,
      "-kernel",
      `${dir}/k`,
      "-measurement_file",
      "-",
    ]);
    assertEquals(b.code, 0, b.stderr);
    assertEquals(new TextDecoder().decode(b.stdout), json);
    oneLineError(
      await runTask(["-o", "-", "-kernel", `${dir}/k`, "-measurement_file", "/dev/stdout"]),
      2,
      "same standard output",
    );
  });
});

Deno.test("igvmgen -rdinit <(...) (a process substitution) works under the task's permissions", async () => {
  if (Deno.build.os === "windows") return;
  await withRun(async (dir) => {
    const common = ["-kernel", `${dir}/k`, ...fixed(dir)];
    const a = await runTask(["-o", `${dir}/a.igvm`, ...common, "-rdinit", `${dir}/rd`]);
    assertEquals(a.code, 0, a.stderr);
    const flags = taskPermissionFlags("igvmgen").join(" ");
    const r = await new Deno.Command("bash", {
      args: [
        "-c",
        `"${Deno.execPath()}" run --quiet ${flags} main.ts -o ${dir}/b.igvm ${
          common.join(" ")
        } -rdinit <(cat ${dir}/rd)`,
      ],
      cwd: new URL("../", import.meta.url).pathname,
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    assertEquals(r.code, 0, new TextDecoder().decode(r.stderr));
    assertEquals(
      sha256Hex(Deno.readFileSync(`${dir}/b.igvm`)),
      sha256Hex(Deno.readFileSync(`${dir}/a.igvm`)),
    );
  });
});
