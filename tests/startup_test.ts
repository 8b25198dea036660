/**
 * Start-up cost: nothing on the default path of main.ts (generation, -h, -d, inspect, verify,
 * measure, and the hashing worker) may load Deno's Node-compatibility layer, whose first load
 * costs 10-30 ms. Two checks: the static graph from `deno info --json`, with npm packages on
 * the path scanned for Node built-ins (fflate, for one, picks its Node build under Deno and
 * pulls in worker_threads); and the scripts V8 actually loads in every isolate when the CLI
 * runs, which also catches CommonJS packages and lazy Node globals such as `Buffer`.
 */
import { builtinModules } from "node:module";
import { COMPILED_LAZY_MODULES } from "../scripts/compile.ts";
import { assert, assertEquals } from "./assert.ts";
import { makeBzImage, pseudoRandomBytes } from "../scripts/fixtures.ts";

const ROOT = new URL("../", import.meta.url);
const CONFIG = new URL("deno.json", ROOT).pathname;

interface InfoDependency {
  specifier: string;
  code?: { specifier: string };
  isDynamic?: boolean;
}
interface InfoModule {
  specifier: string;
  kind?: string;
  npmPackage?: string;
  dependencies?: InfoDependency[];
}
interface Info {
  modules: InfoModule[];
  redirects: Record<string, string>;
  npmPackages: Record<string, { dependencies: string[]; localPath?: string }>;
}

async function denoInfo(entry: string): Promise<Info> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "--config", CONFIG, entry],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

const BUILTINS = new Set(builtinModules.map((m) => m.replace(/^node:/, "")));
const REQUIRE_OR_IMPORT =
  /(?:require\s*\(\s*|\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["']((?:node:)?[a-z_]+(?:\/[a-z_]+)?)["']/g;

/** Node built-ins named by `require`/`import` anywhere in an npm package's JavaScript. */
async function nodeBuiltinsIn(dir: string): Promise<string[]> {
  const found = new Set<string>();
  const walk = async (path: string) => {
    for await (const e of Deno.readDir(path)) {
      const p = `${path}/${e.name}`;
      if (e.isDirectory && e.name !== "node_modules") await walk(p);
      else if (e.isFile && /\.(c|m)?js$/.test(e.name)) {
        for (const m of (await Deno.readTextFile(p)).matchAll(REQUIRE_OR_IMPORT)) {
          const name = m[1].replace(/^node:/, "");
          if (m[1].startsWith("node:") || BUILTINS.has(name)) found.add(m[1]);
        }
      }
    }
  };
  await walk(dir);
  return [...found].sort();
}

/**
 * What loads the Node-compatibility layer from `entries`, following static imports and the
 * dynamic imports of the entries themselves (main.ts loads each mode that way); other dynamic
 * imports are first-use loads (the zip reader, the legacy snapshot) and are skipped.
 */
async function nodeLoadsFrom(entries: string[]): Promise<string[]> {
  const problems: string[] = [];
  for (const entry of entries) {
    const info = await denoInfo(entry);
    const bySpecifier = new Map(info.modules.map((m) => [m.specifier, m]));
    const root = new URL(entry, ROOT).href;
    const seen = new Set<string>();
    const npm = new Set<string>();
    const visit = (specifier: string, from: string) => {
      specifier = info.redirects[specifier] ?? specifier;
      if (seen.has(specifier)) return;
      seen.add(specifier);
      if (specifier.startsWith("node:")) {
        problems.push(`${from} imports ${specifier}`);
        return;
      }
      const m = bySpecifier.get(specifier);
      if (m?.npmPackage) npm.add(m.npmPackage);
      for (const d of m?.dependencies ?? []) {
        if (d.code && (!d.isDynamic || specifier === root)) visit(d.code.specifier, specifier);
      }
    };
    visit(root, root);
    const packages = [...npm];
    for (let i = 0; i < packages.length; i++) {
      const pkg = info.npmPackages[packages[i]];
      for (const dep of pkg?.dependencies ?? []) if (!packages.includes(dep)) packages.push(dep);
      if (!pkg?.localPath) {
        problems.push(`npm package ${packages[i]} is not in the cache to scan`);
        continue;
      }
      for (const b of await nodeBuiltinsIn(pkg.localPath)) {
        problems.push(`npm package ${packages[i]} (from ${entry}) uses ${b}`);
      }
    }
  }
  return problems;
}

Deno.test("main.ts's default path, the modes it loads on first use, and the hashing worker load no Node-compatibility module", async () => {
  const problems = await nodeLoadsFrom(["main.ts", ...COMPILED_LAZY_MODULES]);
  assertEquals(problems, []);
});

Deno.test("the start-up check finds a node: import and an npm package that uses Node", async () => {
  const dir = await Deno.makeTempDir({ dir: ROOT.pathname, prefix: ".startup-test-" });
  try {
    const name = dir.slice(ROOT.pathname.length);
    await Deno.writeTextFile(`${dir}/a.ts`, 'import "./b.ts";\nexport const x = 1;\n');
    await Deno.writeTextFile(
      `${dir}/b.ts`,
      'import { join } from "node:path";\nexport { join };\n',
    );
    await Deno.writeTextFile(
      `${dir}/c.ts`,
      'import { unzipSync } from "fflate";\nexport { unzipSync };\n',
    );
    await Deno.writeTextFile(`${dir}/d.ts`, 'export const f = () => import("fflate");\n');
    await Deno.writeTextFile(`${dir}/e.ts`, 'import { f } from "./d.ts";\nexport { f };\n');
    const direct = await nodeLoadsFrom([`${name}/a.ts`]);
    assert(direct.some((p) => p.includes("imports node:path")), direct.join("\n"));
    const viaNpm = await nodeLoadsFrom([`${name}/c.ts`]);
    assert(
      viaNpm.some((p) => p.includes("fflate") && p.includes("worker_threads")),
      viaNpm.join("\n"),
    );
    assertEquals(await nodeLoadsFrom([`${name}/e.ts`]), [], "a first-use import is allowed");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Scripts of Deno's Node layer that every Deno process loads, even a one-line script. */
const ALWAYS_LOADED = new Set(["ext:deno_node/02_register_cloneable.js"]);

/**
 * Runs igvmgen with `args` in `dir` (with `deno task igvmgen`'s permissions) while V8 logs
 * each isolate's scripts; returns the Node-layer scripts each isolate loaded, and how many
 * isolates ran (workers have their own).
 */
async function nodeScriptsLoadedBy(dir: string, args: string[]) {
  for (const e of Deno.readDirSync(dir)) {
    if (e.name.endsWith("-v8.log")) Deno.removeSync(`${dir}/${e.name}`);
  }
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      "--allow-run=iasl",
      "--v8-flags=--log-function-events,--logfile=v8.log",
      new URL("main.ts", ROOT).pathname,
      ...args,
    ],
    cwd: dir,
    stdout: "null",
    stderr: "piped",
  }).output();
  assert(out.success, `igvmgen ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  const loaded: string[] = [];
  const project: string[] = [];
  let isolates = 0;
  for (const e of Deno.readDirSync(dir)) {
    if (!e.name.endsWith("-v8.log")) continue;
    isolates++;
    for (const line of Deno.readTextFileSync(`${dir}/${e.name}`).split("\n")) {
      const m = line.match(/^script-details,\d+,([^,]*),/);
      if (!m || ALWAYS_LOADED.has(m[1])) continue;
      if (m[1].startsWith("node:") || m[1].startsWith("ext:deno_node/")) loaded.push(m[1]);
      if (m[1].startsWith(ROOT.href)) project.push(m[1].slice(ROOT.href.length));
    }
  }
  return { loaded: [...new Set(loaded)], isolates, project: [...new Set(project)] };
}

Deno.test("igvmgen -h, a generation with hashing workers, -d, inspect, verify and measure load no Node module", async () => {
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-startup-test-" });
  try {
    Deno.writeFileSync(`${dir}/k`, makeBzImage());
    // 50 MiB of initrd: above the size from which pages are hashed in workers.
    Deno.writeFileSync(`${dir}/initrd`, pseudoRandomBytes(50 << 20, 5));
    const runs: [string, string[]][] = [
      ["-h", ["-h"]],
      ["generation", ["-o", "o.igvm", "-kernel", "k", "-rdinit", "initrd", "--quiet"]],
      ["-d", ["-d", "o.igvm"]],
      ["inspect", ["inspect", "o.igvm"]],
      ["verify", ["verify", "o.igvm"]],
      ["measure", ["measure", "o.igvm"]],
    ];
    for (const [name, args] of runs) {
      const { loaded, isolates } = await nodeScriptsLoadedBy(dir, args);
      assertEquals(loaded, [], `${name} loaded Node-layer scripts`);
      if (name === "generation") assert(isolates >= 2, `${isolates} isolate(s): no worker ran`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the loaded-scripts check sees the Node layer when a script loads it", async () => {
  // The same log reading, on a run that loads node:path: guards against a check that passes
  // because V8 logged nothing.
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-startup-test-" });
  try {
    Deno.writeTextFileSync(
      `${dir}/p.ts`,
      'import { join } from "node:path";\nconsole.log(join("a", "b"));\n',
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--v8-flags=--log-function-events,--logfile=v8.log", "p.ts"],
      cwd: dir,
      stdout: "null",
    }).output();
    assert(out.success);
    const logs = [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith("-v8.log"));
    const text = logs.map((e) => Deno.readTextFileSync(`${dir}/${e.name}`)).join("\n");
    assert(/^script-details,\d+,node:path,/m.test(text), "node:path appears in the log");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("igvmgen -h loads the option table only: no loader model, generator, ACPI or IGVM code", async () => {
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-startup-test-" });
  try {
    const { project } = await nodeScriptsLoadedBy(dir, ["-h"]);
    assert(
      project.includes("lib/cli/options.ts"),
      `the log names the project's modules: ${project}`,
    );
    const heavy = project.filter((m) =>
      /^(acpi\/|lib\/(igvm|write|layout|x86|guest|bzimage|elf)\/|lib\/generate)/.test(m) ||
      (m.startsWith("lib/measure/") &&
        !["lib/measure/loader_names.ts", "lib/measure/measurement_json.ts"].includes(m))
    );
    assertEquals(heavy, [], "-h loaded modules it does not need");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * Modules a default generation (a bzImage for Hyper-V, built-in ACPI tables, no --verify)
 * never runs: the whole `verify` and the validating reader (its self-check needs only
 * lib/igvm/header_check.ts), the KVM targets, ELF kernels, ACPI folders and zips, and the
 * loader models. Each costs start-up time when loaded (about 0.2 ms a module).
 */
const NOT_FOR_A_DEFAULT_RUN =
  /^(lib\/ops\/(verify|target)\.ts|lib\/elf\/|lib\/(layout|guest)\/elf_|lib\/layout\/early_areas\.ts|acpi\/(acpi_image|zip_reader|walk|iasl|legacy_snapshot)\.ts|lib\/x86\/(kvm_vmsa|native_context)\.ts|lib\/igvm\/(reader|structure|header_stream)\.ts|lib\/measure\/(launch_checks|kvm_\w+|loaders|file_loaders|generate_loader|launch_update|host_search|id_block_file|id_block_checks|attestation_report|x509|amd_\w+)\.ts)$/;

Deno.test("a default generation loads no verify, KVM, ELF, ACPI-folder or loader-model module; the options that need them load them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-startup-test-" });
  try {
    Deno.writeFileSync(`${dir}/k`, makeBzImage());
    const base = ["-o", "o.igvm", "-kernel", "k", "--quiet"];
    const { project } = await nodeScriptsLoadedBy(dir, base);
    assert(
      project.includes("lib/ops/generate.ts") && project.includes("lib/write/igvm_writer.ts"),
      `the log names the generator's modules: ${project}`,
    );
    assertEquals(project.filter((m) => NOT_FOR_A_DEFAULT_RUN.test(m)), []);
    // The same modules load when an option needs them: the check above is not vacuous.
    const needs: [string[], string[]][] = [
      [["--verify"], ["lib/ops/verify.ts"]],
      [["-target", "qemu-kvm"], ["lib/ops/target.ts", "lib/measure/launch_checks.ts"]],
      [["--loader", "ch-mshv"], ["lib/measure/generate_loader.ts", "lib/measure/loaders.ts"]],
    ];
    for (const [options, modules] of needs) {
      const loaded = (await nodeScriptsLoadedBy(dir, [...base, ...options])).project;
      for (const m of modules) {
        assert(loaded.includes(m), `${options.join(" ")} did not load ${m}`);
        assert(NOT_FOR_A_DEFAULT_RUN.test(m), `${m} is in the list`);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
