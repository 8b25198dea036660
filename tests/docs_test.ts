/**
 * The docs run as written. Every fenced block whose info string is `sh` in README.md and
 * docs/*.md is run with `bash -e -o pipefail`, in order, each page in its own copy of the
 * repository (the files git tracks, as a clone has them) holding a Linux kernel as `bzImage`
 * and an initrd as `initrd.img`, with `igvmgen` installed by the README's `deno install`
 * command and on PATH. Blocks marked `sh needs-hardware` need an SEV-SNP host and are not
 * run; blocks marked `sh clean-machine` are the README's set-up commands, which
 * tests/install_test.ts runs on a machine without Deno.
 *
 * Also: every fenced block has a known info string, every link between the pages leads to a
 * file and a heading that exist, and nothing a user reads (the pages other than
 * docs/development.md, and the messages in the code) points to files outside the project or
 * to issues.
 */
import { assert, assertEquals } from "./assert.ts";
import { FIXTURES, HAVE_SHARED, ROOT, SHARED } from "./helpers.ts";
import { copyTree, docPages, fencedBlocks } from "./docs_helpers.ts";

/** The info strings a block may have: shell blocks are run unless marked. */
const KNOWN_INFO = ["sh", "sh needs-hardware", "sh clean-machine", "ts", "json", "text"];

function read(page: string): string {
  return Deno.readTextFileSync(`${ROOT}${page}`);
}

Deno.test("fencedBlocks() finds blocks, indented ones in lists too, with their info strings", () => {
  const md =
    "a\n```sh\necho 1\n```\n- item\n\n  ```sh needs-hardware\n  qemu\n  ```\n```ts\nx\n```\n";
  assertEquals(fencedBlocks("p.md", md), [
    { page: "p.md", line: 2, info: "sh", text: "echo 1\n" },
    { page: "p.md", line: 7, info: "sh needs-hardware", text: "qemu\n" },
    { page: "p.md", line: 10, info: "ts", text: "x\n" },
  ]);
});

Deno.test("every fenced block in README.md and docs/ has a known info string; clean-machine is README's", () => {
  const pages = docPages();
  for (
    const name of [
      "generating.md",
      "loaders.md",
      "signing-and-attestation.md",
      "library.md",
      "errors.md",
      "development.md",
    ]
  ) {
    assert(pages.includes(`docs/${name}`), `docs/${name} is missing`);
  }
  for (const page of pages) {
    for (const b of fencedBlocks(page, read(page))) {
      assert(KNOWN_INFO.includes(b.info), `${page}:${b.line}: info string "${b.info}"`);
      if (b.info === "sh clean-machine") assertEquals(page, "README.md", `${page}:${b.line}`);
    }
  }
  assert(read("README.md").split("\n").length <= 300, "README.md has more than 300 lines");
});

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
export function slug(heading: string): string {
  return heading.trim().toLowerCase().replace(/`/g, "").replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

Deno.test("slug() makes GitHub's heading anchors", () => {
  assertEquals(slug("Launching on QEMU/KVM"), "launching-on-qemukvm");
  assertEquals(
    slug("Explain a measurement: measure --log and diff"),
    "explain-a-measurement-measure---log-and-diff",
  );
  assertEquals(slug("Images for QEMU (`-target`)"), "images-for-qemu--target");
});

Deno.test("every link between the pages leads to a file and a heading that exist", () => {
  for (const page of docPages()) {
    const text = read(page).replace(/```[\s\S]*?```/g, "");
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1];
      if (/^[a-z]+:/.test(target)) continue; // https:, mailto:
      const [path, anchor] = target.split("#");
      const file = path === ""
        ? page
        : new URL(path, new URL(page, "file:///r/")).pathname.slice(3);
      let content: string;
      try {
        content = read(file);
      } catch {
        throw new Error(`${page}: link ${target}: no file ${file}`);
      }
      if (anchor === undefined) continue;
      const anchors = [...content.matchAll(/^#+ (.*)$/gm)].map((h) => slug(h[1]));
      assert(
        anchors.includes(anchor),
        `${page}: link ${target}: no heading "${anchor}" in ${file}`,
      );
    }
  }
});

/** What a user must not be sent to: the project's private notes, the shared folder, issues. */
const OUTSIDE = /LOADERS\.md|\.\.\/shared|§|\bissues? #?\d+|\b[a-z-]+#\d{2,}\b|UNCONFIRMED/;

Deno.test("no page a user reads points to files outside the project or to issues", () => {
  for (const page of docPages().filter((p) => p !== "docs/development.md")) {
    const lines = read(page).split("\n");
    lines.forEach((line, i) => assert(!OUTSIDE.test(line), `${page}:${i + 1}: ${line}`));
  }
  // docs/development.md names the shared folder the tests use, and nothing else outside.
  const dev = read("docs/development.md");
  assert(!/LOADERS\.md|§|\bissues? #?\d+|UNCONFIRMED/.test(dev));
});

/** Every `.ts` file under `dir`. */
function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(`${ROOT}${dir}`)) {
    if (e.isDirectory) out.push(...tsFiles(`${dir}/${e.name}`));
    else if (e.name.endsWith(".ts")) out.push(`${dir}/${e.name}`);
  }
  return out;
}

Deno.test("no message in the code points to files outside the project or to issues", () => {
  const bad: string[] = [];
  for (const file of [...tsFiles("lib"), ...tsFiles("acpi"), "main.ts", "mod.ts"]) {
    const code = read(file).replace(/\/\*[\s\S]*?\*\//g, "").replace(
      /(^|[^:"'`\\])\/\/.*$/gm,
      "$1",
    );
    for (const m of code.matchAll(/(["'`])((?:\\.|(?!\1)[^\\])*)\1/g)) {
      if (OUTSIDE.test(m[2])) bad.push(`${file}: ${m[2].slice(0, 100)}`);
    }
  }
  assertEquals(bad, []);
});

/** The README's `deno install` command line (in its clean-machine set-up block). */
export function readmeInstallCommand(): string {
  const blocks = fencedBlocks("README.md", read("README.md"));
  const line = blocks.filter((b) => b.info === "sh clean-machine")
    .flatMap((b) => b.text.split("\n"))
    .find((l) => l.startsWith("deno install "));
  if (!line) throw new Error("README.md has no deno install command in a clean-machine block");
  return line;
}

const HAVE_GIT = (() => {
  try {
    return new Deno.Command("git", { args: ["--version"], stdout: "null" }).outputSync().success;
  } catch {
    return false;
  }
})();

const HAVE_OPENSSL = (() => {
  try {
    return new Deno.Command("openssl", { args: ["version"], stdout: "null" }).outputSync().success;
  } catch {
    return false;
  }
})();

const skipWhy = !HAVE_SHARED
  ? `${SHARED} is absent (the docs' examples need its Linux kernel and initrd)`
  : !HAVE_GIT
  ? "git is not installed (the test copies the files git tracks)"
  : !HAVE_OPENSSL
  ? "openssl is not installed (the docs' examples make their keys with it)"
  : "";
if (skipWhy) console.log(`note: the docs' shell blocks are not run: ${skipWhy}`);

/** Runs every `sh` block of every page; returns how many ran and were skipped. */
Deno.test({
  name:
    "every sh block of README.md and docs/ runs as written, with igvmgen installed by the README",
  ignore: skipWhy !== "",
  async fn() {
    const tmp = Deno.makeTempDirSync({ prefix: "igvmgen-docs-" });
    try {
      // One copy of the tree, and igvmgen installed from it by the README's command.
      const base = `${tmp}/base/igvmgen`;
      await copyTree(base);
      const installRoot = `${tmp}/install`;
      const install = await new Deno.Command("bash", {
        args: ["-e", "-c", readmeInstallCommand()],
        cwd: base,
        env: { DENO_INSTALL_ROOT: installRoot, NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assertEquals(install.code, 0, new TextDecoder().decode(install.stderr));
      const env = { PATH: `${installRoot}/bin:${Deno.env.get("PATH")}`, NO_COLOR: "1" };
      let ran = 0;
      const skipped: string[] = [];
      for (const page of docPages()) {
        const blocks = fencedBlocks(page, read(page)).filter((b) => b.info.startsWith("sh"));
        const run = blocks.filter((b) => b.info === "sh");
        skipped.push(...blocks.filter((b) => b.info !== "sh").map((b) => `${page}:${b.line}`));
        if (!run.length) continue;
        // The page's own copy, beside a link to the shared folder (as ../shared), with the
        // kernel and initrd the examples name.
        const top = `${tmp}/${page.replace(/\W/g, "_")}`;
        const work = `${top}/igvmgen`;
        await copyTree(work);
        Deno.symlinkSync(SHARED, `${top}/shared`);
        Deno.copyFileSync(`${FIXTURES}vmlinuz-6.1.0-56-amd64`, `${work}/bzImage`);
        Deno.copyFileSync(`${FIXTURES}initrd-3m.bin`, `${work}/initrd.img`);
        for (const b of run) {
          const out = await new Deno.Command("bash", {
            args: ["--norc", "--noprofile", "-e", "-o", "pipefail", "-c", b.text],
            cwd: work,
            env,
            stdin: "null",
            stdout: "piped",
            stderr: "piped",
            signal: AbortSignal.timeout(180_000),
          }).output();
          const stderr = new TextDecoder().decode(out.stderr);
          const where = `${page}:${b.line}:\n${b.text}\nstderr:\n${stderr}`;
          assertEquals(out.code, 0, where);
          assert(!/Uncaught|\bat .*\.ts:\d+:\d+/.test(stderr), `a stack trace: ${where}`);
          ran++;
        }
      }
      console.log(`ran ${ran} shell blocks; not run here: ${skipped.join(", ")}`);
      assert(ran >= 20, `only ${ran} blocks ran`);
    } finally {
      Deno.removeSync(tmp, { recursive: true });
    }
  },
});
