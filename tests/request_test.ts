/**
 * The CLI's translation of argv into the library's request (lib/cli/request.ts), and the
 * request's own checks (lib/ops/generate_request.ts).
 */
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { OPTION_SPECS, parseOptions } from "../lib/cli/options.ts";
import { generateRequestFrom, mayNameStandardStream } from "../lib/cli/request.ts";
import { STDIN_PATHS } from "../lib/io/inputs.ts";
import { STDOUT_PATHS } from "../lib/io/output_target.ts";
import { type GenerateRequest, resolveGenerateRequest } from "../lib/ops/generate_request.ts";
import { UsageError } from "../lib/errors.ts";

const resolved = (args: string[]) =>
  resolveGenerateRequest(generateRequestFrom(parseOptions(["-o", "out", "-kernel", "k", ...args])));

/** Options of the command line that are not part of a generation request. */
// --force is how the CLI treats a terminal, not part of what is built.
const NOT_REQUEST = [
  "o",
  "kernel",
  "d",
  "log-level",
  "verbose",
  "quiet",
  "help",
  "version",
  "start_addr",
  "force",
];

/** A value different from the option's default. */
function otherValue(name: string): string[] {
  const spec = OPTION_SPECS.find((s) => s.name === name)!;
  switch (spec.kind) {
    case "flag":
      return [];
    case "bool":
      return [spec.default ? "false" : "true"];
    case "enum":
      return [spec.choices!.find((c) => c !== spec.default)!];
    case "int":
      return [{ vtl: "0", vcpus: "3", pgtable_level: "4" }[name] ?? "7"];
    case "string":
      return [name === "svn" ? "5" : "text"];
    default:
      return ["some/path"];
  }
}

Deno.test("generateRequestFrom() of a bare command line gives the library's defaults", () => {
  assertEquals(resolved([]), resolveGenerateRequest({ output: "out", kernel: "k" }));
});

Deno.test("generateRequestFrom() passes on every generation option, each to one field", () => {
  const base = resolved([]) as unknown as Record<string, unknown>;
  const seen = new Set<string>();
  for (const spec of OPTION_SPECS) {
    if (NOT_REQUEST.includes(spec.name)) continue;
    const r = resolved([`-${spec.name}`, ...otherValue(spec.name)]) as unknown as Record<
      string,
      unknown
    >;
    const changed = Object.keys({ ...base, ...r }).filter((k) => r[k] !== base[k]);
    assertEquals(changed.length, 1, `-${spec.name} changed ${changed.join(", ") || "nothing"}`);
    assert(!seen.has(changed[0]), `-${spec.name} maps to ${changed[0]} too`);
    seen.add(changed[0]);
  }
  assertEquals(seen.size, OPTION_SPECS.length - NOT_REQUEST.length);
});

Deno.test("generateRequestFrom() maps - to the standard streams, and needs them", () => {
  const stdin = new ReadableStream<Uint8Array>();
  const stdout = new WritableStream<Uint8Array>();
  const r = generateRequestFrom(parseOptions(["-", "-o", "-"]), { stdin, stdout });
  assertEquals(r.kernel, { stream: stdin, name: "standard input" });
  assert(r.output === stdout);
  assertThrows(
    () => generateRequestFrom(parseOptions(["-", "-o", "x"]), { stdout }),
    UsageError,
    "the kernel is - but there is no standard input",
  );
  assertThrows(
    () => generateRequestFrom(parseOptions(["k", "-o", "-"]), { stdin }),
    UsageError,
    "-o - needs a standard output",
  );
  assertThrows(() => generateRequestFrom(parseOptions(["k"])), UsageError, "no output");
});

Deno.test("resolveGenerateRequest() rejects bad values, naming the field", () => {
  const base: GenerateRequest = { output: "out", kernel: "k" };
  const bad: [Record<string, unknown>, string][] = [
    [{ output: "" }, "output"],
    [{ output: 3 }, "output"],
    [{ kernel: "" }, "kernel"],
    [{ initrd: 42 }, "initrd"],
    [{ signKey: { name: "x" } }, "signKey"],
    [{ kernelFormat: "pe" }, "kernelFormat"],
    [{ bootMode: "x32" }, "bootMode"],
    [{ arch: "ARM" }, "arch"],
    [{ acpiProfile: "hyperv" }, "acpiProfile"],
    [{ vtl: 3 }, "vtl"],
    [{ vtl: 1.5 }, "vtl"],
    [{ vcpus: 256 }, "vcpus"],
    [{ pgtableLevel: 3 }, "pgtableLevel"],
    [{ svme: "yes" }, "svme"],
    [{ svn: "0x10" }, "svn"],
    [{ svn: 2 ** 32 }, "svn"],
    [{ cmdline: 5 }, "cmdline"],
    [{ acpi: "" }, "acpi"],
    [{ acpi: "dir", acpiProfile: "clh" }, "do not go with acpi"],
  ];
  for (const [fields, message] of bad) {
    assertThrows(
      () => resolveGenerateRequest({ ...base, ...fields } as GenerateRequest),
      UsageError,
      message,
    );
  }
  assertEquals(resolveGenerateRequest({ ...base, svn: 7 }).svn, "7");
  assertEquals(resolveGenerateRequest({ ...base, vtl: undefined }).vtl, 2, "undefined is default");
});

Deno.test("resolveGenerateRequest() refuses a field it does not know (a misspelling is never ignored)", () => {
  const base = { output: "o.igvm", kernel: "bzImage" };
  assertEquals(resolveGenerateRequest(base).signDeterministic, false);
  for (const field of ["signkey", "measurement_file", "sign_key"]) {
    assertThrows(
      () => resolveGenerateRequest({ ...base, [field]: "x" } as GenerateRequest),
      UsageError,
      `unknown request field ${field}`,
    );
  }
});

Deno.test("request: every name the library reads as standard input or output makes the CLI pass the streams", () => {
  // The CLI makes the streams only when mayNameStandardStream says a value could name one;
  // a name it missed would fail as "there is no standard input" or "needs a standard output".
  const names = [...STDIN_PATHS, ...STDOUT_PATHS, `/proc/${Deno.pid}/fd/1`, "/dev/stderr", "-"];
  for (const name of names) {
    for (const option of ["-o", "-kernel", "-rdinit", "-measurement_file", "-sign_key"]) {
      const args = ["-o", "out.igvm", "-kernel", "bzImage", option, name];
      assert(mayNameStandardStream(parseOptions(args)), `${option} ${name}`);
    }
  }
  const plain = ["-o", "out.igvm", "-kernel", "bzImage", "-rdinit", "dev/stdin", "-append", "a"];
  assertEquals(mayNameStandardStream(parseOptions(plain)), false);
});
