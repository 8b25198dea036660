/**
 * igvmgen used as a library, through `mod.ts` only:
 *
 * 1. `measure()` and `verify()` an existing IGVM file;
 * 2. `generate()` an image from a kernel given as a `ReadableStream` (a file's stream here;
 *    a `fetch()` body or `Deno.stdin.readable` works the same way).
 *
 * With no arguments it uses ../shared: it measures the original igvmgen's golden image
 * `tb_x64_snapshot.igvm`, rebuilds that image from the same kernel, and shows that the two
 * launch measurements are equal. With arguments it measures IGVM and builds from KERNEL
 * with the built-in ACPI tables.
 *
 *   deno run --allow-read --allow-write scripts/example_library.ts [IGVM KERNEL]
 */
import { generate, type GenerateRequest, InputError, measure, UsageError, verify } from "../mod.ts";

const shared = new URL("../../shared/", import.meta.url).pathname;
const [igvmPath, kernelPath] = Deno.args.length >= 2
  ? Deno.args
  : [`${shared}golden/tb_x64_snapshot.igvm`, `${shared}fixtures/test_bzImage`];
const ownFiles = Deno.args.length >= 2;

const dir = await Deno.makeTempDir({ prefix: "igvmgen-example-" });
try {
  // 1. Measure and verify an existing file.
  const measured = await measure({ file: igvmPath });
  const report = await verify({ file: igvmPath });
  console.log(`${igvmPath}`);
  console.log(`  launch digest  ${measured.launchDigest}`);
  console.log(`  verify         ${report.ok ? "OK" : report.problems.join("; ")}`);

  // 2. Generate from a kernel stream. These are the golden case's options; with your own
  //    files, the built-in ACPI tables and a fresh signing key.
  const kernel = (await Deno.open(kernelPath, { read: true })).readable;
  const named = { stream: kernel, name: kernelPath }; // the name is for messages
  const request: GenerateRequest = ownFiles ? { output: `${dir}/out.igvm`, kernel: named } : {
    output: `${dir}/out.igvm`,
    kernel: named,
    cmdline: "panic=-1 console=ttySEV0",
    bootMode: "x64",
    vtl: 2,
    encryptedPage: true,
    svme: true,
    acpi: `${shared}reference/igvm-tooling/acpi/acpi.zip`,
    signKey: `${shared}fixtures/test-key.pem`,
    signDeterministic: true,
  };
  const result = await generate(request, { onNotice: (m) => console.log(`  ${m}`) });
  console.log(`generated from a stream of ${kernelPath}`);
  console.log(`  ${result.totalSize} bytes, ${result.pageCount} pages`);
  console.log(`  launch digest  ${result.launchMeasurement}`);
  if (!ownFiles) {
    const same = result.launchMeasurement === measured.launchDigest;
    console.log(`  ${same ? "equal to" : "DIFFERENT from"} the original's image`);
    if (!same) Deno.exitCode = 1;
  }
} catch (e) {
  // The library's errors are typed: a bad request, or a bad input file.
  if (e instanceof UsageError || e instanceof InputError) {
    console.error(`error: ${e.message}`);
    Deno.exitCode = e instanceof UsageError ? 2 : 1;
  } else throw e;
} finally {
  await Deno.remove(dir, { recursive: true });
}
