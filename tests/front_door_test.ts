/**
 * The front door of the command line: `--version`, no arguments (a short usage, exit 2, as
 * argparse does), and `igvmgen completions bash|zsh`, whose scripts are run in real bash
 * and zsh and asked for completions.
 */
import { assert, assertEquals } from "./assert.ts";
import { ROOT, runCli, tempDir } from "./helpers.ts";
import { SUBCOMMAND_OPTIONS } from "../lib/cli/completions.ts";

const DENO_JSON_VERSION: string = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).version;

/** Whether `name` runs (`name --version`). */
function have(name: string): boolean {
  try {
    return new Deno.Command(name, { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}
const HAVE_ZSH = have("zsh");
if (!HAVE_ZSH) console.log("note: zsh is not installed; the zsh completion test is skipped");

Deno.test("igvmgen --version prints the version of deno.json and exits 0", async () => {
  assert(/^\d+\.\d+\.\d+/.test(DENO_JSON_VERSION), DENO_JSON_VERSION);
  for (const args of [["--version"], ["-version"], ["--vers"], ["-o", "x.igvm", "--version"]]) {
    const r = await runCli(args);
    assertEquals(
      [r.code, r.stdout, r.stderr],
      [0, `igvmgen ${DENO_JSON_VERSION}\n`, ""],
      args.join(" "),
    );
  }
  // --version is a flag; -h lists it.
  const bad = await runCli(["--version=1"]);
  assertEquals(bad.code, 2);
  assert(bad.stderr.startsWith("error: --version takes no value"), bad.stderr);
  assert((await runCli(["-h"])).stdout.includes("--version"));
});

Deno.test("igvmgen with no arguments prints a short usage and one error line on stderr, exit 2", async () => {
  const r = await runCli([]);
  assertEquals(r.code, 2);
  assertEquals(r.stdout, "");
  const lines = r.stderr.trim().split("\n");
  assert(lines[0].startsWith("usage: igvmgen -o OUT.igvm -kernel bzImage"), r.stderr);
  assert(lines.length <= 10, `a short usage, not the help: ${lines.length} lines`);
  assertEquals(lines.filter((l) => l.startsWith("error: ")).length, 1, r.stderr);
  assert(lines[lines.length - 1].startsWith("error: no arguments"), r.stderr);
});

Deno.test("igvmgen completions: bash or zsh, anything else is a usage error (exit 2)", async () => {
  for (const args of [[], ["fish"], ["bash", "zsh"]]) {
    const r = await runCli(["completions", ...args]);
    assertEquals(r.code, 2, args.join(" "));
    assert(r.stderr.startsWith("error: completions: expected one shell, bash or zsh"), r.stderr);
  }
  const help = await runCli(["completions", "--help"]);
  assertEquals(help.code, 0);
  assert(help.stdout.startsWith("usage: igvmgen completions bash|zsh"));
});

Deno.test("the completion scripts offer each subcommand's own options: each is in its --help", async () => {
  for (const [command, options] of Object.entries(SUBCOMMAND_OPTIONS)) {
    const help = await runCli([command, "--help"]);
    assertEquals(help.code, 0, command);
    for (const option of options) {
      if (option === "--help") continue;
      assert(
        new RegExp(`(^|[\\s\\[,(])${option}\\b`).test(help.stdout),
        `${command} --help does not list ${option}`,
      );
    }
  }
});

Deno.test("igvmgen completions bash, sourced in bash: compgen completes subcommands, options, choices and files", async () => {
  const dir = tempDir();
  try {
    const script = await runCli(["completions", "bash"]);
    assertEquals(script.code, 0, script.stderr);
    Deno.writeTextFileSync(`${dir}/igvmgen.bash`, script.stdout);
    Deno.writeTextFileSync(`${dir}/verity.igvm`, "");
    Deno.writeTextFileSync(`${dir}/out.igvm`, "");
    // Each line: the words typed so far (the last is the one being completed), then the
    // completions, as bash offers them after a Tab.
    const program = `
source ./igvmgen.bash
complete -p igvmgen
t() { COMP_WORDS=("$@"); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); COMPREPLY=(); _igvmgen
      printf '%s|%s\\n' "$*" "$(printf '%s\\n' "\${COMPREPLY[@]}" | sort | tr '\\n' ' ')"; }
t igvmgen ver
t igvmgen -boot_m
t igvmgen -boot_mode ''
t igvmgen -o out.igvm -target ''
t igvmgen sign in.igvm --id-
t igvmgen measure in.igvm --loader ch
t igvmgen verify --cpu ge
t igvmgen completions ''
t igvmgen -o ou
t igvmgen --vers
t igvmgen att
t igvmgen attest r.bin --v
t igvmgen sign in.igvm --author-
t igvmgen verify x.igvm --q
t igvmgen measure x.igvm --q
`;
    const out = await new Deno.Command("bash", {
      args: ["--norc", "--noprofile", "-c", program],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    const lines = text.split("\n").filter((l) => l).map((l) => l.trimEnd());
    assertEquals(lines[0], "complete -o bashdefault -o filenames -F _igvmgen igvmgen");
    assertEquals(lines.slice(1), [
      "igvmgen ver|verify verity.igvm",
      "igvmgen -boot_m|-boot_mode",
      "igvmgen -boot_mode |x64 x86",
      "igvmgen -o out.igvm -target |ch-kvm hyperv qemu-kvm",
      "igvmgen sign in.igvm --id-|--id-blocks-out --id-public-key --id-signature",
      "igvmgen measure in.igvm --loader ch|ch-kvm ch-mshv",
      "igvmgen verify --cpu ge|genoa",
      "igvmgen completions |bash zsh",
      "igvmgen -o ou|out.igvm",
      "igvmgen --vers|--version",
      "igvmgen att|attest",
      "igvmgen attest r.bin --v|--vcek --vmpl",
      "igvmgen sign in.igvm --author-|--author-payload-out --author-public-key --author-signature",
      "igvmgen verify x.igvm --q|--quiet",
      "igvmgen measure x.igvm --q|--quiet",
    ]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "igvmgen completions zsh: registers with compdef after compinit and completes subcommands, options and choices",
  ignore: !HAVE_ZSH,
  async fn() {
    const dir = tempDir();
    try {
      const script = await runCli(["completions", "zsh"]);
      assertEquals(script.code, 0, script.stderr);
      assert(script.stdout.startsWith("#compdef igvmgen\n"));
      Deno.writeTextFileSync(`${dir}/_igvmgen`, script.stdout);
      // compadd and _files are zsh's completion builtins; stand-ins print what they are given
      // (compadd itself keeps the words that start with $PREFIX).
      const program = `
autoload -Uz compinit && compinit -u -D
source ./_igvmgen
print -r -- "registered $_comps[igvmgen]"
compadd() { [[ $1 == -- ]] && shift; print -r -- "compadd \${(j: :)\${(@M)@:#$PREFIX*}}" }
_files() { print -r -- "_files" }
t() { words=("$@"); CURRENT=\${#words}; PREFIX=\${words[-1]}; print -rn -- "$* -> "; _igvmgen }
t igvmgen ver
t igvmgen -boot_mode ''
t igvmgen sign in.igvm --id-
t igvmgen in.igvm --verb
t igvmgen -o ''
`;
      const out = await new Deno.Command("zsh", {
        args: ["-f", "-c", program],
        cwd: dir,
        env: { HOME: dir },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
      assertEquals(text.trim().split("\n"), [
        "registered _igvmgen",
        "igvmgen ver -> compadd verify",
        "_files",
        "igvmgen -boot_mode  -> compadd x86 x64",
        "igvmgen sign in.igvm --id- -> compadd --id-signature --id-public-key --id-blocks-out",
        "igvmgen in.igvm --verb -> compadd --verbose",
        "igvmgen -o  -> _files",
      ]);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
