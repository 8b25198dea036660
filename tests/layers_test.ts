/**
 * The import graph keeps the layers. From the ground up:
 *
 * | rank | folders | what they hold |
 * |---|---|---|
 * | 0 | lib/bytes/, lib/errors.ts | little-endian helpers, layouts, crc32; the error types |
 * | 1 | lib/io/, lib/hash/ | inputs, random-access reading, atomic output; the SHA-384 engine |
 * | 2 | lib/x86/, lib/bzimage/, lib/elf/, acpi/ | CPU, kernel and ACPI structures |
 * | 3 | lib/igvm/ | the IGVM format: defs, headers, reader, structure, dump; no loader |
 * | 4 | lib/layout/, lib/measure/, lib/boot/ | guest planning; loader models and digests; boot harness |
 * | 5 | lib/guest/, lib/write/ | guest images built from a plan; generation's streaming writer |
 * | 6 | lib/ops/ | the operations, one file each, each taking its typed request |
 * | 7 | lib/cli/ | the command line; then mod.ts and main.ts on top |
 *
 * A module imports only modules of its own folder or of a lower rank; folders of one rank
 * do not import each other. Each rule is checked on the import statements of every module
 * under lib/ and acpi/, and the checker itself is tried on planted violations.
 */
import { assert, assertEquals } from "./assert.ts";
import { ROOT } from "./helpers.ts";

/** Every `.ts` file under `dir`, as paths relative to the repository root. */
function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(`${ROOT}${dir}`)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...tsFiles(path));
    else if (e.isFile && e.name.endsWith(".ts")) out.push(path);
  }
  return out.sort();
}

/**
 * The specifiers a module imports: static `import ... from`, `export ... from`, bare
 * `import "x"` and dynamic `import("x")`. Comments are removed first.
 */
export function importSpecifiers(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`])\/\/.*$/gm, "$1");
  const found: string[] = [];
  const patterns = [
    /\b(?:import|export)\s+(?:type\s+)?[^"'`;]*?\bfrom\s*["']([^"']+)["']/g,
    /\bimport\s*["']([^"']+)["']/g,
    /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
  ];
  for (const p of patterns) for (const m of code.matchAll(p)) found.push(m[1]);
  return found;
}

/** The repository-relative path an import of `file` resolves to, or the bare specifier. */
function resolve(file: string, specifier: string): string {
  if (!specifier.startsWith(".")) return specifier;
  const url = new URL(specifier, new URL(file, "file:///repo/"));
  return url.pathname.replace(/^\/repo\//, "");
}

/** Every module of the library with what it imports (resolved). */
export function graph(): Map<string, string[]> {
  const g = new Map<string, string[]>();
  for (const file of [...tsFiles("lib"), ...tsFiles("acpi")]) {
    const text = Deno.readTextFileSync(`${ROOT}${file}`);
    g.set(file, importSpecifiers(text).map((s) => resolve(file, s)));
  }
  return g;
}

/** The `from -> to` edges of `g` (default: the real graph) that break `allowed`. */
function violations(
  allowed: (from: string, to: string) => boolean,
  g: Map<string, string[]> = graph(),
): string[] {
  const bad: string[] = [];
  for (const [from, imports] of g) {
    for (const to of imports) if (!allowed(from, to)) bad.push(`${from} -> ${to}`);
  }
  return bad;
}

Deno.test("importSpecifiers() finds static, re-export, bare and dynamic imports, not comments", () => {
  const source = [
    'import { a } from "./a.ts";',
    'import type { B } from "../b.ts";',
    "import {\n  c,\n  type D,\n} from './c.ts';",
    'export { e } from "./e.ts";',
    'export type { F } from "./f.ts";',
    'import "./side.ts";',
    'const m = await import("./lazy.ts");',
    '// import { x } from "./commented.ts";',
    '/* import { y } from "./block.ts"; */',
    'const url = "https://example.com/x.ts"; // from "./not.ts"',
  ].join("\n");
  assertEquals(importSpecifiers(source).sort(), [
    "../b.ts",
    "./a.ts",
    "./c.ts",
    "./e.ts",
    "./f.ts",
    "./lazy.ts",
    "./side.ts",
  ]);
});

/** The layers, from the ground up: a module's layer is the first prefix its path starts with. */
export const LAYERS: readonly (readonly [prefix: string, rank: number])[] = [
  ["lib/bytes/", 0],
  ["lib/errors.ts", 0],
  ["lib/io/", 1],
  ["lib/hash/", 1],
  ["lib/x86/", 2],
  ["lib/bzimage/", 2],
  ["lib/elf/", 2],
  ["acpi/", 2],
  ["lib/igvm/", 3],
  ["lib/layout/", 4],
  ["lib/measure/", 4],
  ["lib/boot/", 4],
  ["lib/guest/", 5],
  ["lib/write/", 5],
  ["lib/ops/", 6],
  ["lib/cli/", 7],
];

/** The layer (prefix and rank) of a repository path, or undefined outside every layer. */
function layerOf(path: string): readonly [string, number] | undefined {
  return LAYERS.find(([prefix]) => path.startsWith(prefix));
}

/**
 * Whether `from` may import `to`: npm and other bare specifiers are allowed; a module of the
 * library may import its own folder or a folder of a lower rank, and nothing else (not
 * main.ts, mod.ts, tests/ or scripts/).
 */
function importAllowed(from: string, to: string): boolean {
  if (
    !to.startsWith("lib/") && !to.startsWith("acpi/") &&
    !/^(main|mod)\.ts$|^(tests|scripts)\//.test(to)
  ) {
    return true;
  }
  const [a, b] = [layerOf(from), layerOf(to)];
  if (!a || !b) return false;
  return a[0] === b[0] || b[1] < a[1];
}

Deno.test("the import graph is read: every lib/ module is parsed and lib/ops/generate.ts has its imports", () => {
  const g = graph();
  assert(g.size > 40, `only ${g.size} modules found`);
  const generate = g.get("lib/ops/generate.ts") ?? [];
  assert(generate.includes("lib/ops/generate_request.ts"), generate.join(", "));
  assert(generate.includes("acpi/acpi_image.ts"), generate.join(", "));
});

Deno.test("every module under lib/ and acpi/ belongs to a layer (no loose files in lib/)", () => {
  const loose = [...graph().keys()].filter((f) => !layerOf(f));
  assertEquals(loose, []);
  const atTop = [...Deno.readDirSync(`${ROOT}lib`)].filter((e) => e.isFile).map((e) => e.name);
  assertEquals(atTop, ["errors.ts"]);
});

Deno.test("no import runs up or sideways: a module imports its own folder or a lower rank", () => {
  assertEquals(violations(importAllowed), []);
});

Deno.test("the layer check catches planted violations", () => {
  const planted = new Map<string, string[]>([
    // the format reaching a loader model (the old lib/igvm/verify.ts -> lib/measure/)
    ["lib/igvm/verify.ts", ["lib/measure/loaders.ts", "lib/igvm/defs.ts"]],
    // a loader model reaching an operation
    ["lib/measure/parts.ts", ["lib/ops/verify.ts"]],
    // two folders of one rank
    ["lib/measure/x.ts", ["lib/layout/guest_image.ts"]],
    // the bottom reaching io
    ["lib/bytes/le.ts", ["lib/io/path.ts"]],
    // the library reaching the CLI, the entry points, tests
    ["lib/ops/generate.ts", ["lib/cli/options.ts", "mod.ts", "tests/helpers.ts"]],
    // a loose file
    ["lib/sign_file.ts", ["lib/bytes/le.ts"]],
    // allowed: same folder, lower rank, npm
    ["lib/ops/inspect.ts", ["lib/ops/verify.ts", "lib/igvm/reader.ts", "npm:fflate@0.8.2"]],
  ]);
  assertEquals(violations(importAllowed, planted), [
    "lib/igvm/verify.ts -> lib/measure/loaders.ts",
    "lib/measure/parts.ts -> lib/ops/verify.ts",
    "lib/measure/x.ts -> lib/layout/guest_image.ts",
    "lib/bytes/le.ts -> lib/io/path.ts",
    "lib/ops/generate.ts -> lib/cli/options.ts",
    "lib/ops/generate.ts -> mod.ts",
    "lib/ops/generate.ts -> tests/helpers.ts",
    "lib/sign_file.ts -> lib/bytes/le.ts",
  ]);
});

Deno.test("acpi/ is the only ACPI folder", () => {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(`${ROOT}${dir}`)) {
      if (!e.isDirectory || e.name.startsWith(".") || e.name === "node_modules") continue;
      const path = dir ? `${dir}/${e.name}` : e.name;
      if (["coverage", "out", "dist"].includes(path)) continue;
      if (/acpi/i.test(e.name)) found.push(path);
      walk(path);
    }
  };
  walk("");
  assertEquals(found, ["acpi"]);
});
