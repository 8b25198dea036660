/**
 * `deno task demo [OUT_DIR]`: the main job on an embedded default, with no user files. It
 * builds a small synthetic bzImage, generates an IGVM file with the built-in ACPI tables,
 * writes it and its measurement JSON (default folder: out/demo), and prints a summary.
 */
import { generate } from "../mod.ts";
import { readIgvmFile } from "../lib/igvm/reader.ts";
import { makeBzImage } from "./fixtures.ts";

const outDir = Deno.args[0] ?? "out/demo";
await Deno.mkdir(outDir, { recursive: true });
const kernelPath = `${outDir}/synthetic-bzImage`;
await Deno.writeFile(kernelPath, makeBzImage({ payloadLength: 256 * 1024 }));

const output = `${outDir}/demo.igvm`;
const result = await generate({
  output,
  kernel: kernelPath,
  cmdline: "console=ttyS0 panic=-1",
  bootMode: "x64",
  vcpus: 2,
  measurementFile: `${outDir}/demo.json`,
});
const file = readIgvmFile(await Deno.readFile(output));
const counts = new Map<string, number>();
for (const d of file.directives) counts.set(d.name, (counts.get(d.name) ?? 0) + 1);

console.log(
  `igvmgen demo: a synthetic 256 KiB bzImage, built-in ACPI tables (default profile, 2 vCPUs)`,
);
console.log(`  kernel:       ${kernelPath}`);
console.log(
  `  IGVM file:    ${output} (${result.totalSize} bytes, ${result.pageCount} guest pages, ${result.dataPages} with data)`,
);
console.log(`  measurement:  ${outDir}/demo.json`);
console.log(`  launch digest ${result.launchMeasurement}`);
console.log(
  `  headers:      ${
    [...counts].map(([n, c]) => `${n.replace("IGVM_VHT_", "")} x${c}`).join(", ")
  }`,
);
console.log(`  ID block signed with a fresh P-384 key (pass -sign_key for a fixed one)`);
