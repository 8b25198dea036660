/**
 * Standard output and descriptor paths as outputs: a closed standard output is an error for
 * every command that writes there, a file that merely shares /dev/null's inode number is
 * not "closed", and `/dev/fd/N` or `>(...)` outputs are written through, never renamed over.
 */
import { assert, assertEquals } from "./assert.ts";
import {
  FIXTURES,
  generateImage,
  HAVE_SHARED,
  ROOT,
  taskPermissionFlags,
  tempDir,
} from "./helpers.ts";

const KEY = `${FIXTURES}test-key.pem`;
const TASK = taskPermissionFlags("igvmgen").join(" ");

/** Runs `igvmgen ARGS` through sh, so that the shell can close or redirect descriptors. */
async function sh(
  igvmgenArgs: string,
  redirections: string,
  permissions = TASK,
): Promise<{ code: number; stderr: string; stdout: string }> {
  const out = await new Deno.Command("bash", {
    args: [
      "-c",
      `"${Deno.execPath()}" run --quiet ${permissions} main.ts ${igvmgenArgs} ${redirections}`,
    ],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stderr: dec.decode(out.stderr), stdout: dec.decode(out.stdout) };
}

/** A signed-able IGVM file in a fresh folder. */
async function withImage(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = tempDir();
  Deno.writeFileSync(`${dir}/in.igvm`, await generateImage([]));
  Deno.writeFileSync(`${dir}/k`, (await import("../scripts/fixtures.ts")).makeBzImage());
  await f(dir);
}

const LINUX = Deno.build.os === "linux";

Deno.test({
  name:
    "igvmgen sign -o -, sign --payload-out -, -measurement_file - with standard output closed fail",
  ignore: !HAVE_SHARED || !LINUX,
  async fn() {
    await withImage(async (dir) => {
      const runs = [
        `sign ${dir}/in.igvm -o - -sign_key ${KEY}`,
        `sign ${dir}/in.igvm --payload-out -`,
        `sign ${dir}/in.igvm -o ${dir}/s.igvm -sign_key ${KEY} -measurement_file -`,
        `-o ${dir}/g.igvm -kernel ${dir}/k -measurement_file -`,
        `measure ${dir}/in.igvm -measurement_file -`,
      ];
      for (const permissions of [TASK, "-A"]) {
        for (const args of runs) {
          const r = await sh(args, ">&-", permissions);
          assertEquals(r.code, 1, `${permissions} ${args}: ${r.stderr}`);
          assert(/standard output is closed/.test(r.stderr), `${args}: ${r.stderr}`);
          assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
        }
      }
      assertEquals(Deno.readDirSync(dir).toArray().map((e) => e.name).sort(), ["in.igvm", "k"]);
    });
  },
});

Deno.test({
  name: "igvmgen verify, inspect and -d with standard output closed fail (where the runtime tells)",
  ignore: !LINUX,
  async fn() {
    await withImage(async (dir) => {
      for (const args of [`verify ${dir}/in.igvm`, `inspect ${dir}/in.igvm`, `-d ${dir}/in.igvm`]) {
        const r = await sh(args, ">&-", "-A");
        assertEquals(r.code, 1, `${args}: ${r.stderr}`);
        assert(/standard output is closed/.test(r.stderr), r.stderr);
        // Redirected to /dev/null on purpose, it is no error.
        assertEquals((await sh(args, ">/dev/null", "-A")).code, 0);
        assertEquals((await sh(args, ">/dev/null")).code, 0);
      }
    });
  },
});

Deno.test({
  name: "igvmgen -o - into a file with /dev/null's inode number on another device succeeds",
  ignore: !LINUX || !HAVE_SHARED,
  async fn() {
    const mnt = tempDir();
    const mounted = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt],
      stdout: "null",
      stderr: "null",
    }).output().catch(() => undefined);
    if (!mounted?.success) return; // needs root: nothing to check here
    try {
      const ino = Deno.statSync("/dev/null").ino!;
      let twin: string | undefined;
      for (let i = 0; i < 64 && !twin; i++) {
        Deno.writeFileSync(`${mnt}/f${i}`, new Uint8Array());
        if (Deno.statSync(`${mnt}/f${i}`).ino === ino) twin = `${mnt}/f${i}`;
      }
      if (!twin) return; // this file system numbers its inodes otherwise
      await withImage(async (dir) => {
        for (const permissions of [TASK, "-A"]) {
          // Read-write, as the runtime opens a closed standard output.
          for (
            const args of [`sign ${dir}/in.igvm -o - -sign_key ${KEY}`, `-o - -kernel ${dir}/k`]
          ) {
            const r = await sh(args, `1<>${twin}`, permissions);
            assertEquals(r.code, 0, r.stderr);
            assert(Deno.statSync(twin!).size > 4096);
            Deno.truncateSync(twin!);
          }
        }
      });
    } finally {
      await new Deno.Command("umount", { args: [mnt], stdout: "null", stderr: "null" }).output();
    }
  },
});

Deno.test({
  name: "igvmgen sign -o /dev/fd/3 3>>log appends through the descriptor: no rename, no temp file",
  ignore: !HAVE_SHARED || !LINUX,
  async fn() {
    await withImage(async (dir) => {
      Deno.writeTextFileSync(`${dir}/log`, "kept\n");
      const before = Deno.statSync(`${dir}/log`).ino;
      const r = await sh(
        `sign ${dir}/in.igvm -o /dev/fd/3 -sign_key ${KEY}`,
        `3>>${dir}/log`,
        "-A",
      );
      assertEquals(r.code, 0, r.stderr);
      const log = Deno.readFileSync(`${dir}/log`);
      assertEquals(new TextDecoder().decode(log.subarray(0, 5)), "kept\n");
      assertEquals(log.length, 5 + Deno.statSync(`${dir}/in.igvm`).size);
      assertEquals(Deno.statSync(`${dir}/log`).ino, before, "the log was not replaced");
      assertEquals(Deno.readDirSync(dir).toArray().map((e) => e.name).sort(), [
        "in.igvm",
        "k",
        "log",
      ]);
      // With the task's permissions the runtime refuses the path: an error, the log untouched.
      const narrow = await sh(`sign ${dir}/in.igvm -o /dev/fd/3 -sign_key ${KEY}`, `3>>${dir}/log`);
      assertEquals(narrow.code, 1, narrow.stderr);
      assert(/cannot write -o \/dev\/fd\/3: .*-o -/.test(narrow.stderr), narrow.stderr);
      assertEquals(Deno.readFileSync(`${dir}/log`).length, log.length);
    });
  },
});

Deno.test({
  name: "igvmgen -o >(cat > FILE) and -measurement_file >(...) write through the pipe",
  ignore: !HAVE_SHARED || !LINUX,
  async fn() {
    await withImage(async (dir) => {
      for (const permissions of [TASK, "-A"]) {
        const r = await sh(
          `-o >(cat > ${dir}/o.igvm) -kernel ${dir}/k -sign_key ${KEY} -sign_deterministic true -measurement_file >(cat > ${dir}/m.json)`,
          "; sleep 0.5",
          permissions,
        );
        assertEquals(r.code, 0, r.stderr);
        assert(Deno.statSync(`${dir}/o.igvm`).size > 4096);
        assert(
          JSON.parse(Deno.readTextFileSync(`${dir}/m.json`))["x-ms-sevsnpvm-launchmeasurement"],
        );
        assert(!/\/proc\/|pipe:/.test(r.stderr), r.stderr);
      }
    });
  },
});
