/**
 * The import graph keeps the layers: the CLI sits on the library, the library never reaches
 * up. Each rule is checked on the import statements of every module under lib/ and acpi/.
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
function graph(): Map<string, string[]> {
  const g = new Map<string, string[]>();
  for (const file of [...tsFiles("lib"), ...tsFiles("acpi")]) {
    const text = Deno.readTextFileSync(`${ROOT}${file}`);
    g.set(file, importSpecifiers(text).map((s) => resolve(file, s)));
  }
  return g;
}

/** The `from -> to` edges of the graph that break `allowed`. */
function violations(allowed: (from: string, to: string) => boolean): string[] {
  const bad: string[] = [];
  for (const [from, imports] of graph()) {
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

Deno.test("the import graph is read: every lib/ module is parsed and lib/generate.ts has its imports", () => {
  const g = graph();
  assert(g.size > 40, `only ${g.size} modules found`);
  const generate = g.get("lib/generate.ts") ?? [];
  assert(generate.includes("lib/generate_request.ts"), generate.join(", "));
  assert(generate.includes("acpi/acpi_image.ts"), generate.join(", "));
});

Deno.test("no module under lib/ outside lib/cli/ imports lib/cli/", () => {
  assertEquals(
    violations((from, to) => from.startsWith("lib/cli/") || !to.startsWith("lib/cli/")),
    [],
  );
});

Deno.test("no lib/ or acpi/ module imports main.ts, mod.ts, tests/ or scripts/", () => {
  const entry = ["main.ts", "mod.ts"];
  assertEquals(
    violations((_, to) => !entry.includes(to) && !/^(tests|scripts)\//.test(to)),
    [],
  );
});

Deno.test("only the CLI imports the orchestrators (lib/generate.ts, lib/file_operations.ts)", () => {
  const orchestrators = ["lib/generate.ts", "lib/file_operations.ts"];
  assertEquals(
    violations((from, to) => !orchestrators.includes(to) || from.startsWith("lib/cli/")),
    [],
  );
});

Deno.test("acpi/ and the pipeline stages never import the orchestrators' request types", () => {
  // generate_request.ts describes the top-level request; only the top layer reads it.
  const top = ["lib/generate.ts", "lib/file_operations.ts"];
  assertEquals(
    violations((from, to) =>
      to !== "lib/generate_request.ts" || top.includes(from) || from.startsWith("lib/cli/")
    ),
    [],
  );
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

Deno.test("lib/bytes/ imports nothing outside lib/bytes/ (the bottom layer)", () => {
  assertEquals(
    violations((from, to) => !from.startsWith("lib/bytes/") || to.startsWith("lib/bytes/")),
    [],
  );
});
