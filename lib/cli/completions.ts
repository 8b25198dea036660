/**
 * `igvmgen completions bash|zsh`: a shell completion script. It completes the subcommands,
 * the options of generation and of each subcommand, the fixed choices of an option's value
 * (`-boot_mode x64`, `--loader ch-mshv`), and file names everywhere else.
 */
import { UsageError } from "../errors.ts";
import { FILE_LOADER_NAMES, KVM_LOADER_NAMES } from "../measure/loader_names.ts";
import { CPU_SIGNATURES } from "../x86/kvm_vmsa.ts";
import { optionWords } from "./options.ts";
import type { SubOptionSpec } from "./sub_args.ts";
import { optionWord, SUB_OPTIONS } from "./sub_options.ts";

/** The shells a script is written for. */
const COMPLETION_SHELLS = ["bash", "zsh"] as const;

/** The subcommands, as `igvmgen SUBCOMMAND` takes them. */
const SUBCOMMAND_NAMES = Object.keys(SUB_OPTIONS);

/** Each subcommand's options, from the specs its parser reads, and `--help`. */
export const SUBCOMMAND_OPTIONS: Record<string, readonly string[]> = Object.fromEntries(
  Object.entries(SUB_OPTIONS).map((
    [command, specs],
  ) => [command, [...(specs as readonly SubOptionSpec[]).map(optionWord), "--help"]]),
);

/** Option words whose value is one of a fixed list. */
function valueChoices(): Map<string, readonly string[]> {
  const choices = new Map<string, readonly string[]>();
  const LOADER_NAMES = [...FILE_LOADER_NAMES, ...KVM_LOADER_NAMES];
  for (const o of optionWords()) if (o.choices) choices.set(o.word, o.choices);
  choices.set("--loader", LOADER_NAMES);
  choices.set("--loader-b", LOADER_NAMES);
  choices.set("--cpu", Object.keys(CPU_SIGNATURES));
  choices.set("-cpu", Object.keys(CPU_SIGNATURES));
  choices.set("-sign_deterministic", ["true", "false"]);
  return choices;
}

/** Each subcommand's options, then generation's (`*`: any other first word), as shell words. */
function optionLists(): [pattern: string, words: string][] {
  return [
    ...Object.entries(SUBCOMMAND_OPTIONS).map(([c, w]) => [c, w.join(" ")] as [string, string]),
    ["*", optionWords().map((o) => o.word).join(" ")],
  ];
}

/** `igvmgen completions bash`. */
function bashScript(): string {
  const cases = [...valueChoices()].map(([word, values]) =>
    `    ${word}) COMPREPLY=($(compgen -W "${values.join(" ")}" -- "$cur")); return ;;`
  );
  const lists = optionLists().map(([name, words]) => `    ${name}) opts="${words}" ;;`);
  return `# bash completion for igvmgen: source this file (igvmgen completions bash > FILE).
_igvmgen() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}" opts
  if [[ $COMP_CWORD -eq 1 && "$cur" != -* ]]; then
    COMPREPLY=($(compgen -W "${SUBCOMMAND_NAMES.join(" ")}" -- "$cur") $(compgen -f -- "$cur"))
    return
  fi
  if [[ "\${COMP_WORDS[1]}" == completions ]]; then
    COMPREPLY=($(compgen -W "${COMPLETION_SHELLS.join(" ")}" -- "$cur"))
    return
  fi
  case "$prev" in
${cases.join("\n")}
  esac
  case "\${COMP_WORDS[1]}" in
${lists.join("\n")}
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}
complete -o filenames -o bashdefault -F _igvmgen igvmgen
`;
}

/** `igvmgen completions zsh`. */
function zshScript(): string {
  const cases = [...valueChoices()].map(([word, values]) =>
    `    ${word}) compadd -- ${values.join(" ")}; return ;;`
  );
  const lists = optionLists().map(([name, words]) => `    ${name}) opts=(${words}) ;;`);
  return `#compdef igvmgen
# zsh completion for igvmgen: save as _igvmgen in a folder on $fpath, or source it after
# compinit (igvmgen completions zsh > _igvmgen).
_igvmgen() {
  local -a opts
  if (( CURRENT == 2 )) && [[ $PREFIX != -* ]]; then
    compadd -- ${SUBCOMMAND_NAMES.join(" ")}
    _files
    return
  fi
  if [[ $words[2] == completions ]]; then
    compadd -- ${COMPLETION_SHELLS.join(" ")}
    return
  fi
  case $words[CURRENT-1] in
${cases.join("\n")}
  esac
  case $words[2] in
${lists.join("\n")}
  esac
  if [[ $PREFIX == -* ]]; then
    compadd -- $opts
  else
    _files
  fi
}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  _igvmgen "$@"
else
  compdef _igvmgen igvmgen
fi
`;
}

/** `igvmgen completions --help`. */
export const COMPLETIONS_HELP = `usage: igvmgen completions bash|zsh

Prints a shell completion script for igvmgen on standard output.
  bash   source it: igvmgen completions bash > ~/.igvmgen.bash, then in ~/.bashrc:
         source ~/.igvmgen.bash
  zsh    save it as _igvmgen in a folder on $fpath (before compinit runs), or source it
         after compinit`;

/** The completion script for the shell named in `args`. */
export function completionScript(args: readonly string[]): string {
  if (args.length !== 1 || !(COMPLETION_SHELLS as readonly string[]).includes(args[0])) {
    throw new UsageError(
      `completions: expected one shell, ${COMPLETION_SHELLS.join(" or ")}, got ${
        args.length ? `"${args.join(" ")}"` : "none"
      }`,
    );
  }
  return args[0] === "bash" ? bashScript() : zshScript();
}
