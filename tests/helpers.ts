/** Shared test helpers: where ../shared is, running the CLI, hashing files. */
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";

/** The repository root. */
export const ROOT = fileURLToPath(new URL("../", import.meta.url));
/** ../shared beside the repository (absent on a user's machine). */
export const SHARED = fileURLToPath(new URL("../../shared/", import.meta.url));
export const FIXTURES = `${SHARED}fixtures/`;
export const REFERENCE = `${SHARED}reference/igvm-tooling/`;

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** True when ../shared is there; otherwise prints why tests that need it are skipped. */
export const HAVE_SHARED = exists(`${SHARED}golden/cases.json`);
if (!HAVE_SHARED) console.log(`note: ${SHARED} is absent; golden and fixture tests are skipped`);

/** True when iasl is on PATH. */
export const HAVE_IASL = (() => {
  try {
    new Deno.Command("iasl", { args: ["-v"], stdout: "null", stderr: "null" }).outputSync();
    return true;
  } catch {
    return false;
  }
})();

/** A case of ../shared/golden/cases.json: the original's command line and its outputs. */
export interface GoldenCase {
  name: string;
  args: string[];
  expected: {
    sha256: string;
    size: number;
    launch_measurement: string;
    guest_svn: string;
    dump_sha256: string;
    /** The original's output file in ../shared/golden, when stored whole (under 1 MB). */
    igvm: string | null;
    /** The original's `-d` dump, gzipped, in ../shared/golden. */
    dump: string;
  };
}

/** The golden cases (none when ../shared is absent). */
export const GOLDEN: { common_args: string[]; cases: GoldenCase[] } = HAVE_SHARED
  ? JSON.parse(Deno.readTextFileSync(`${SHARED}golden/cases.json`))
  : { common_args: [], cases: [] };

/** A golden case's arguments with {fx}, {acpi} and <out> filled in. */
export function goldenArgs(c: GoldenCase, out: string): string[] {
  return [...c.args, ...GOLDEN.common_args].map((a) =>
    a.replaceAll("{fx}", `${SHARED}fixtures`)
      .replaceAll("{acpi}", `${REFERENCE}acpi`)
      .replaceAll("<out>", out)
  );
}

/** True when a golden case compiles `.dsl` tables (it then needs iasl). */
export function goldenNeedsIasl(c: GoldenCase): boolean {
  return c.args.some((a) => a.includes("acpi-test") || a.includes("acpi-clh"));
}

/** The result of a CLI run. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  stdoutBytes: Uint8Array;
}

/**
 * The permission flags of a deno.json task (the `--allow-` words). CLI tests run with those of
 * `deno task igvmgen` (which the compiled binary gets too), so they fail when the code needs
 * more than users grant.
 */
export function taskPermissionFlags(task: string): string[] {
  const json = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  return (json.tasks[task] as string).split(/\s+/).filter((w) => w.startsWith("--allow-"));
}
const TASK_FLAGS = taskPermissionFlags("igvmgen");

/** Runs `deno task igvmgen ARGS` (main.ts, the task's permissions) in a subprocess. */
export async function runCli(args: string[], stdin?: Uint8Array, cwd = ROOT): Promise<CliResult> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...TASK_FLAGS, `${ROOT}main.ts`, ...args],
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
    cwd,
    env: { NO_COLOR: "1" },
  });
  const child = cmd.spawn();
  if (stdin) {
    const w = child.stdin.getWriter();
    await w.write(stdin);
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
    stdoutBytes: out.stdout,
  };
}

/** SHA-256 hex of bytes. */
export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Folders made by tempDir(), removed when the test file is done. */
const tempDirs: string[] = [];
globalThis.addEventListener("unload", () => {
  for (const dir of tempDirs) {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch {
      // removed by its test already
    }
  }
});

/**
 * A fresh temporary folder. It is removed when the test file ends, whether its test passed
 * or not; a test may remove it sooner.
 */
export function tempDir(): string {
  const dir = Deno.makeTempDirSync({ prefix: "igvmgen-test-" });
  tempDirs.push(dir);
  return dir;
}

/** The names in a folder, sorted. */
export function listDir(path: string): string[] {
  return [...Deno.readDirSync(path)].map((e) => e.name).sort();
}

/** Every entry of a folder with its file's SHA-256 (or folder, link, other): to assert nothing changed. */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of Deno.readDirSync(dir)) {
    if (e.isFile) out[e.name] = sha256Hex(Deno.readFileSync(`${dir}/${e.name}`));
    else out[e.name] = e.isDirectory ? "folder" : e.isSymlink ? "link" : "other";
  }
  return out;
}

/** Makes a FIFO at `path` (mkfifo(1)). */
export function mkfifo(path: string): void {
  const r = new Deno.Command("mkfifo", { args: [path] }).outputSync();
  if (!r.success) throw new Error(`mkfifo ${path} failed`);
}

/** Reads a FIFO to its end while `run` writes it; returns the bytes and the run's result. */
export async function readFifo<T>(fifo: string, run: Promise<T>): Promise<[Uint8Array, T]> {
  const reader = await Deno.open(fifo, { read: true });
  const bytes = new Uint8Array(await new Response(reader.readable).arrayBuffer());
  return [bytes, await run];
}

/** Runs igvmgen on `kernel` (a synthetic bzImage by default) with `args`; returns the image. */
export async function generateImage(args: string[], kernel?: Uint8Array): Promise<Uint8Array> {
  const { makeBzImage } = await import("../scripts/fixtures.ts");
  const dir = tempDir();
  Deno.writeFileSync(`${dir}/k`, kernel ?? makeBzImage());
  const r = await runCli(["-o", `${dir}/o.igvm`, "-kernel", `${dir}/k`, ...args]);
  if (r.code !== 0) throw new Error(`igvmgen failed: ${r.stderr}`);
  const bytes = Deno.readFileSync(`${dir}/o.igvm`);
  Deno.removeSync(dir, { recursive: true });
  return bytes;
}
