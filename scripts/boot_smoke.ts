/**
 * `deno task boot-smoke [FILE.igvm ...]`: boots IGVM images in QEMU (no SEV) and checks that
 * Linux reaches /init. With no files, it builds the standard cases from ../shared's Debian
 * kernel and a busybox initramfs. With files, the images must carry an initramfs whose init
 * prints the marker (use `--marker TEXT` for another line to wait for).
 */
import { join } from "node:path";
import { parseOptions } from "../lib/cli/options.ts";
import { generateIgvm } from "../lib/ops/generate.ts";
import { generateRequestFrom } from "../lib/cli/request.ts";
import { bootSmoke, buildInitramfs, SMOKE_CMDLINE, smokePrerequisites } from "../lib/boot/smoke.ts";

const SHARED = new URL("../../shared/", import.meta.url).pathname;
const KERNEL = `${SHARED}fixtures/vmlinuz-6.1.0-56-amd64`;

/** The standard cases: name and extra igvmgen options. */
export const SMOKE_CASES: { name: string; args: string[] }[] = [
  { name: "x86, built-in default ACPI, pvalidate_opt on", args: [] },
  {
    name: "x64, -encrypted_page 1 -pvalidate_opt 0, clh ACPI",
    args: [
      "-boot_mode",
      "x64",
      "-encrypted_page",
      "1",
      "-pvalidate_opt",
      "0",
      "-acpi_profile",
      "clh",
    ],
  },
  {
    name: "x86, Hyper-V-style ACPI (the original's acpi.zip)",
    args: ["-acpi_dir", `${SHARED}reference/igvm-tooling/acpi/acpi.zip`],
  },
  {
    name: "-target qemu-kvm x64: VMSA at 0xFFFFFFFFF000, pages from 1 MiB, RSDP via boot_params",
    args: ["-target", "qemu-kvm", "-boot_mode", "x64"],
  },
];

/** Builds one standard case's image. */
export async function buildSmokeImage(
  dir: string,
  initramfs: string,
  args: string[],
): Promise<Uint8Array> {
  const out = join(dir, "smoke.igvm");
  await generateIgvm(generateRequestFrom(
    parseOptions([
      "-o",
      out,
      "-kernel",
      KERNEL,
      "-append",
      SMOKE_CMDLINE,
      "-rdinit",
      initramfs,
      ...args,
    ]),
  ));
  return await Deno.readFile(out);
}

if (import.meta.main) {
  const why = smokePrerequisites();
  if (why) {
    console.error(
      `boot-smoke: cannot run: ${why} (apt-get install qemu-system-x86 busybox-static cpio)`,
    );
    Deno.exit(2);
  }
  const markerAt = Deno.args.indexOf("--marker");
  const marker = markerAt >= 0 ? Deno.args[markerAt + 1] : undefined;
  const files = Deno.args.filter((a, i) =>
    a !== "--marker" && i !== markerAt + 1 || markerAt < 0 && a !== "--marker"
  );
  const images: { name: string; bytes: () => Promise<Uint8Array> }[] = [];
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-smoke-" });
  if (files.length) {
    for (const f of files) {
      images.push({
        name: f,
        bytes: () => Deno.readFile(f),
      });
    }
  } else {
    const initramfs = await buildInitramfs(dir);
    for (const c of SMOKE_CASES) {
      images.push({ name: c.name, bytes: () => buildSmokeImage(dir, initramfs, c.args) });
    }
  }
  let failed = 0;
  for (const image of images) {
    const r = await bootSmoke(await image.bytes(), { marker });
    console.log(`${r.booted ? "PASS" : "FAIL"}  ${image.name}  (${r.seconds.toFixed(1)} s wall)`);
    for (const n of r.notes) {
      console.log(`      ${n}`);
    }
    if (!r.booted) {
      failed++;
      console.log("      last lines of the serial log:");
      for (const l of r.tail) console.log(`      | ${l}`);
    }
  }
  await Deno.remove(dir, { recursive: true });
  console.log(`${images.length - failed} booted, ${failed} failed`);
  Deno.exit(failed ? 1 : 0);
}
