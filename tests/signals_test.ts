/**
 * Ctrl-C, SIGTERM and SIGHUP in the middle of a big run: the CLI (under `deno task
 * igvmgen`'s permissions, with a private TMPDIR) removes its temporary and spool files,
 * leaves an existing output untouched, and exits 130, 143 or 129 with one line.
 */
import { assert, assertEquals } from "./assert.ts";
import { listDir } from "./helpers.ts";
import { makeBzImage, pseudoRandomBytes } from "../scripts/fixtures.ts";
import { oneLineError, taskCommand } from "./task_cli.ts";

const BIG = 512 << 20;

/** Waits until `test()` holds (polling), up to `ms`; returns whether it did. */
async function waitFor(test: () => boolean, ms = 30_000): Promise<boolean> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (test()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

async function withBigRun(fn: (dir: string, tmp: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-signal-" });
  try {
    Deno.mkdirSync(`${dir}/tmp`);
    Deno.mkdirSync(`${dir}/out`);
    await Deno.writeFile(`${dir}/k`, makeBzImage());
    // A 512 MiB initrd: 16 MiB of data, then sparse (no disk used).
    const f = await Deno.open(`${dir}/rd`, { write: true, create: true });
    await f.write(pseudoRandomBytes(16 << 20, 11));
    await f.truncate(BIG);
    f.close();
    await fn(dir, `${dir}/tmp`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const EXIT = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;

for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  Deno.test(`igvmgen -o FILE interrupted by ${signal}: no temp file, the old output kept`, async () => {
    if (Deno.build.os === "windows") return;
    await withBigRun(async (dir, tmp) => {
      await Deno.writeTextFile(`${dir}/out/o.igvm`, "previous");
      const child = taskCommand(
        ["-o", `${dir}/out/o.igvm`, "-kernel", `${dir}/k`, "-rdinit", `${dir}/rd`],
        { env: { TMPDIR: tmp }, stdout: "null" },
      ).spawn();
      const started = await waitFor(() => listDir(`${dir}/out`).length > 1);
      assert(started, "the temporary output appeared");
      await new Promise((r) => setTimeout(r, 100));
      child.kill(signal);
      const out = await child.output();
      const stderr = new TextDecoder().decode(out.stderr);
      oneLineError({ code: out.code, stderr }, EXIT[signal], `interrupted by ${signal}`);
      assertEquals(listDir(`${dir}/out`), ["o.igvm"]);
      assertEquals(await Deno.readTextFile(`${dir}/out/o.igvm`), "previous");
      assertEquals(listDir(tmp), []);
    });
  });
}

Deno.test("igvmgen -o - interrupted by SIGTERM: the spool of standard output is removed", async () => {
  if (Deno.build.os === "windows") return;
  await withBigRun(async (dir, tmp) => {
    const child = taskCommand(["-o", "-", "-kernel", `${dir}/k`, "-rdinit", `${dir}/rd`], {
      env: { TMPDIR: tmp },
    }).spawn();
    const drained = child.stdout.pipeTo(new WritableStream());
    assert(await waitFor(() => listDir(tmp).some((n) => n.startsWith("igvmgen-out-"))));
    await new Promise((r) => setTimeout(r, 100));
    child.kill("SIGTERM");
    const stderr = await new Response(child.stderr).text();
    const { code } = await child.status;
    await drained;
    oneLineError({ code, stderr }, 143, "interrupted by SIGTERM");
    assertEquals(listDir(tmp), []);
  });
});

Deno.test("igvmgen -rdinit from a pipe interrupted by SIGINT: the spool is removed", async () => {
  if (Deno.build.os === "windows") return;
  await withBigRun(async (dir, tmp) => {
    const child = taskCommand(
      ["-o", `${dir}/out/o.igvm`, "-kernel", `${dir}/k`, "-rdinit", "/dev/stdin"],
      { env: { TMPDIR: tmp }, stdin: "piped", stdout: "null" },
    ).spawn();
    const w = child.stdin.getWriter();
    await w.write(pseudoRandomBytes(8 << 20, 12)); // the pipe stays open: spooling goes on
    assert(await waitFor(() => listDir(tmp).some((n) => n.startsWith("igvmgen-spool-"))));
    await new Promise((r) => setTimeout(r, 100));
    child.kill("SIGINT");
    const stderr = await new Response(child.stderr).text();
    const { code } = await child.status;
    await w.close().catch(() => {});
    oneLineError({ code, stderr }, 130, "interrupted by SIGINT");
    assertEquals(listDir(tmp), []);
    assertEquals(listDir(`${dir}/out`), []);
  });
});

/** True while process `pid` runs (not a zombie), as ps(1) tells. */
function running(pid: number): boolean {
  const out = new Deno.Command("ps", { args: ["-o", "stat=", "-p", String(pid)] }).outputSync();
  const state = new TextDecoder().decode(out.stdout).trim();
  return out.success && state !== "" && !state.startsWith("Z");
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.test(`igvmgen -acpi_dir with .dsl interrupted by ${signal} during iasl: no iasl is left`, async () => {
    if (Deno.build.os !== "linux") return;
    const dir = await Deno.makeTempDir({ prefix: "igvmgen-signal-" });
    let pid: number | undefined;
    try {
      Deno.mkdirSync(`${dir}/tmp`);
      Deno.mkdirSync(`${dir}/bin`);
      Deno.mkdirSync(`${dir}/acpi`);
      await Deno.writeFile(`${dir}/k`, makeBzImage());
      Deno.writeTextFileSync(`${dir}/acpi/DSDT.dsl`, "DefinitionBlock () {}\n");
      // An iasl that works long: it records its process id, then sleeps as that process.
      Deno.writeTextFileSync(
        `${dir}/bin/iasl`,
        `#!/bin/sh\necho $$ > '${dir}/iasl.pid'\nexec sleep 60\n`,
      );
      Deno.chmodSync(`${dir}/bin/iasl`, 0o755);
      const child = taskCommand(
        ["-o", `${dir}/o.igvm`, "-kernel", `${dir}/k`, "-acpi_dir", `${dir}/acpi`],
        {
          env: { TMPDIR: `${dir}/tmp`, PATH: `${dir}/bin:${Deno.env.get("PATH")}` },
          stdout: "null",
        },
      ).spawn();
      const started = await waitFor(() => {
        try {
          return /^\d+\n$/.test(Deno.readTextFileSync(`${dir}/iasl.pid`));
        } catch {
          return false;
        }
      });
      assert(started, "the fake iasl started");
      pid = Number(Deno.readTextFileSync(`${dir}/iasl.pid`));
      assert(running(pid));
      child.kill(signal);
      const out = await child.output();
      const stderr = new TextDecoder().decode(out.stderr);
      oneLineError({ code: out.code, stderr }, EXIT[signal], `interrupted by ${signal}`);
      assert(!running(pid), `iasl (process ${pid}) still runs after igvmgen ended`);
      assertEquals(listDir(`${dir}/tmp`), []);
      assertEquals(listDir(dir).includes("o.igvm"), false);
    } finally {
      if (pid !== undefined && running(pid)) Deno.kill(pid, "SIGKILL");
      await Deno.remove(dir, { recursive: true });
    }
  });
}
