/**
 * The options of each subcommand, declared once: the parsers read them (lib/cli/sub_args.ts),
 * and the completion scripts offer them (lib/cli/completions.ts), so the two cannot drift.
 */
import type { SubOptionSpec } from "./sub_args.ts";

/** Each subcommand's options; `inspect` and `verify` are parsed in commands.ts. */
export const SUB_OPTIONS = {
  inspect: [{ name: "json", kind: "flag" }],
  verify: [
    { name: "json", kind: "flag" },
    { name: "quiet", kind: "flag" },
    { name: "loader", kind: "value" },
    { name: "vcpus", kind: "value" },
    { name: "cpu", kind: "value" },
  ],
  measure: [
    { name: "loader", kind: "value" },
    { name: "all_loaders", kind: "flag" },
    { name: "log", kind: "flag" },
    { name: "json", kind: "flag" },
    { name: "measurement_file", kind: "value", word: "-measurement_file" },
    { name: "svn", kind: "value", word: "-svn" },
    { name: "vcpus", kind: "value" },
    { name: "cpu", kind: "value" },
    { name: "matrix", kind: "flag" },
    { name: "quiet", kind: "flag" },
  ],
  sign: [
    { name: "o", kind: "value", word: "-o" },
    { name: "sign_key", kind: "value", word: "-sign_key" },
    { name: "sign_deterministic", kind: "bool", word: "-sign_deterministic" },
    { name: "config_file", kind: "value", word: "-config_file" },
    { name: "svn", kind: "value", word: "-svn" },
    { name: "measurement_file", kind: "value", word: "-measurement_file" },
    { name: "loader", kind: "value" },
    { name: "payload_out", kind: "value" },
    { name: "id_signature", kind: "value" },
    { name: "id_public_key", kind: "value" },
    { name: "payload", kind: "value" },
    { name: "vcpus", kind: "value" },
    { name: "cpu", kind: "value" },
    { name: "matrix", kind: "flag" },
    { name: "id_blocks_out", kind: "value" },
    { name: "author_key", kind: "value", word: "-author_key" },
    { name: "author_signature", kind: "value" },
    { name: "author_public_key", kind: "value" },
    { name: "author_payload_out", kind: "value" },
    { name: "force", kind: "flag" },
    { name: "quiet", kind: "flag" },
  ],
  diff: [
    { name: "loader", kind: "value" },
    { name: "loader_b", kind: "value" },
    { name: "json", kind: "flag" },
  ],
  attest: [
    { name: "vcek", kind: "value" },
    { name: "ask", kind: "value" },
    { name: "ark", kind: "value" },
    { name: "report_data", kind: "value" },
    { name: "host_data", kind: "value" },
    { name: "min_tcb", kind: "value" },
    { name: "vmpl", kind: "value" },
    { name: "json", kind: "flag" },
  ],
  completions: [],
} as const satisfies Record<string, readonly SubOptionSpec[]>;

/** An option as the help spells it: `word`, else `--name` with dashes for underscores. */
export function optionWord(spec: SubOptionSpec): string {
  return spec.word ?? `--${spec.name.replaceAll("_", "-")}`;
}
