/**
 * Words a new user gets wrong: a mistyped command, an ELF kernel without `-inform elf`, a
 * hex `--vcpus`, a TMPDIR that is not a folder. Each gets an answer that names the problem.
 */
import { assert, assertEquals } from "./assert.ts";
import { makeBzImage, makeElf } from "../scripts/fixtures.ts";
import { generateImage, listDir, ROOT, runCli, tempDir } from "./helpers.ts";
import { taskPermissionFlags } from "./helpers.ts";

/** Exit 2 (or `code`) with one line on stderr that matches `pattern`. */
function assertOneLine(r: { code: number; stderr: string }, code: number, pattern: RegExp) {
  assertEquals(r.code, code, r.stderr);
  assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert(pattern.test(r.stderr), r.stderr);
}

Deno.test("igvmgen verfy x.igvm says unknown command verfy and suggests verify", async () => {
  const dir = tempDir();
  Deno.writeFileSync(`${dir}/x.igvm`, await generateImage([]));
  for (
    const [args, pattern] of [
      [["verfy", `${dir}/x.igvm`], /^error: unknown command verfy \(did you mean verify\?\)/],
      [
        ["inspekt", `${dir}/x.igvm`, "--json"],
        /unknown command inspekt \(did you mean inspect\?\)/,
      ],
      [
        ["sing", `${dir}/x.igvm`, "-o", `${dir}/y.igvm`],
        /unknown command sing \(did you mean sign\?\)/,
      ],
      [["mesure"], /unknown command mesure \(did you mean measure\?\)/],
      [["check", `${dir}/x.igvm`], /^error: unknown command check; commands: inspect, verify/],
    ] as const
  ) {
    assertOneLine(await runCli([...args], undefined, dir), 2, pattern);
  }
  assertEquals(listDir(dir), ["x.igvm"]);
});

Deno.test("igvmgen KERNEL -o OUT: a kernel file named like a word is still the kernel", async () => {
  const dir = tempDir();
  Deno.writeFileSync(`${dir}/verfy`, makeBzImage());
  const r = await runCli(["verfy", "-o", "out.igvm"], undefined, dir);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(listDir(dir), ["out.igvm", "verfy"]);
  // A missing kernel with a name unlike any command is reported as a missing kernel.
  const missing = await runCli(["vmlinuz", "-o", "out.igvm", "-append", "quiet"], undefined, dir);
  assertOneLine(missing, 1, /kernel vmlinuz does not exist/);
});

Deno.test("igvmgen -kernel ELF without -inform elf suggests -inform elf", async () => {
  const dir = tempDir();
  Deno.writeFileSync(`${dir}/monitor.elf`, makeElf());
  const r = await runCli(["-o", `${dir}/o.igvm`, "-kernel", `${dir}/monitor.elf`]);
  assertOneLine(r, 1, /monitor\.elf: it is an ELF file, not a bzImage; give -inform elf/);
  assertEquals(listDir(dir), ["monitor.elf"]);
});

Deno.test("measure --vcpus 0x2 and --matrix --vcpus 0x1,0x2 read hex as generation's -vcpus does", async () => {
  const dir = tempDir();
  Deno.writeFileSync(`${dir}/x.igvm`, await generateImage(["-target", "qemu-kvm"]));
  const host = ["--loader", "qemu-kvm", "--cpu", "milan"];
  const hex = await runCli(["measure", `${dir}/x.igvm`, ...host, "--vcpus", "0x2"]);
  const dec = await runCli(["measure", `${dir}/x.igvm`, ...host, "--vcpus", "2"]);
  assertEquals(hex.code, 0, hex.stderr);
  assertEquals(hex.stdout, dec.stdout);
  const matrix = await runCli([
    "measure",
    `${dir}/x.igvm`,
    "--matrix",
    "--vcpus",
    "0x1,0x2",
    "--cpu",
    "milan",
  ]);
  assertEquals(matrix.code, 0, matrix.stderr);
  assert(matrix.stdout.includes(dec.stdout.trim()), matrix.stdout);
  const bad = await runCli(["measure", `${dir}/x.igvm`, ...host, "--vcpus", "0xg"]);
  assertOneLine(bad, 2, /--vcpus: expected counts from 1 to 512, got "0xg"/);
});

Deno.test("igvmgen with TMPDIR that is not a folder names TMPDIR", async () => {
  const dir = tempDir();
  Deno.writeFileSync(`${dir}/k`, makeBzImage());
  Deno.writeTextFileSync(`${dir}/not-a-folder`, "");
  for (const tmpdir of [`${dir}/missing`, `${dir}/not-a-folder`]) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        ...taskPermissionFlags("igvmgen"),
        `${ROOT}main.ts`,
        "-kernel",
        "-",
        "-o",
        `${dir}/o.igvm`,
      ],
      env: { TMPDIR: tmpdir, NO_COLOR: "1" },
      stdin: "piped",
      stderr: "piped",
      stdout: "null",
    }).spawn();
    const w = out.stdin.getWriter();
    // igvmgen may fail before it reads: a broken pipe here is expected then.
    await w.write(makeBzImage()).then(() => w.close()).catch(() => {});
    const r = await out.output();
    const stderr = new TextDecoder().decode(r.stderr);
    assertOneLine(
      { code: r.code, stderr },
      1,
      /temporary file in TMPDIR .*set TMPDIR to a writable folder/,
    );
    assert(!stderr.includes("tmpfile"), stderr);
  }
  assertEquals(listDir(dir), ["k", "not-a-folder"]);
});

Deno.test("subcommand errors name an option as it was typed, never a mixed spelling", async () => {
  const dir = tempDir();
  Deno.writeFileSync(`${dir}/x.igvm`, await generateImage([]));
  for (
    const [args, line] of [
      [
        ["measure", `${dir}/x.igvm`, "--measurement-file"],
        "measure: --measurement-file needs a value",
      ],
      [
        ["measure", `${dir}/x.igvm`, "-measurement_file"],
        "measure: -measurement_file needs a value",
      ],
      [
        ["measure", `${dir}/x.igvm`, "--measurement-file="],
        "measure: --measurement-file: expected a value",
      ],
      [
        ["sign", `${dir}/x.igvm`, "--sign-deterministic=maybe"],
        "sign: --sign-deterministic: expected true",
      ],
      [["inspect", `${dir}/x.igvm`, "--json", "--json"], "--json is given twice"],
    ] as const
  ) {
    const r = await runCli([...args]);
    assertOneLine(r, 2, new RegExp(`^error: ${line.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
  }
});

Deno.test("igvmgen with a full TMPDIR says the spool in TMPDIR ran out of room", async () => {
  if (Deno.build.os !== "linux") return;
  const tmp = tempDir();
  const mounted = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", tmp],
    stdout: "null",
    stderr: "null",
  }).output().catch(() => undefined);
  if (!mounted?.success) return; // needs root: nothing to check here
  try {
    const dir = tempDir();
    Deno.writeFileSync(`${dir}/k`, makeBzImage());
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        ...taskPermissionFlags("igvmgen"),
        `${ROOT}main.ts`,
        "-kernel",
        `${dir}/k`,
        "-rdinit",
        "/dev/stdin",
        "-o",
        `${dir}/o.igvm`,
      ],
      env: { TMPDIR: tmp, NO_COLOR: "1" },
      stdin: "piped",
      stderr: "piped",
      stdout: "null",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new Uint8Array(4 << 20).fill(7)).then(() => w.close()).catch(() => {});
    const r = await child.output();
    const stderr = new TextDecoder().decode(r.stderr);
    assertOneLine(
      { code: r.code, stderr },
      1,
      /spool of -rdinit \/dev\/stdin .*\(in TMPDIR\): no space/,
    );
    assertEquals(listDir(tmp), []);
    assertEquals(listDir(dir), ["k"]);
  } finally {
    await new Deno.Command("umount", { args: [tmp], stdout: "null", stderr: "null" }).output();
  }
});
