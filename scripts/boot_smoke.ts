/**
 * `deno task boot-smoke [FILE.igvm ...]`: boots IGVM images in QEMU (no SEV) and checks that
 * Linux reaches /init. With no files, it builds the standard cases from ../shared's Debian
 * kernel and a busybox initramfs: converted to PVH ELFs for Debian's QEMU, and `-native`
 * images loaded by ../shared/qemu-igvm's QEMU 10.2 IGVM loader. With files (PVH only), the
 * images must carry an initramfs whose init prints the marker (`--marker TEXT` for another).
 */
import { join } from "node:path";
import { parseOptions } from "../lib/cli/options.ts";
import { generateIgvm } from "../lib/ops/generate.ts";
import { generateRequestFrom } from "../lib/cli/request.ts";
import {
  bootIgvmQemu,
  bootSmoke,
  buildInitramfs,
  dumpPagesStep,
  SMOKE_CMDLINE,
  smokePrerequisites,
} from "../lib/boot/smoke.ts";

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

/** QEMU 10.2.2 built with IGVM support (a test tool in ../shared). */
export const QEMU_IGVM = `${SHARED}qemu-igvm/qemu-system-x86_64`;
/** Option ROMs of Debian's qemu-system-data, for QEMU_IGVM's q35 devices. */
export const QEMU_ROMS = "/usr/share/qemu";

/** Why QEMU_IGVM cannot run here, or undefined. */
export function qemuIgvmPrerequisites(): string | undefined {
  try {
    const r = new Deno.Command(QEMU_IGVM, { args: ["--version"], stdout: "piped", stderr: "null" })
      .outputSync();
    if (r.success && new TextDecoder().decode(r.stdout).includes("version")) return undefined;
    return `${QEMU_IGVM} does not run`;
  } catch {
    return `${QEMU_IGVM} is absent`;
  }
}

/** The KVM layout's parameter pages: the VP count's, and the memory map's. */
export const PARAMETER_PAGES = [0x802000, 0x803000] as const;

/** `-native` cases, booted through QEMU's own IGVM loader: name, igvmgen options, vCPUs. */
export const NATIVE_CASES: { name: string; args: string[]; vcpus: number }[] = [
  {
    name: "-target qemu-kvm -native x64",
    args: ["-target", "qemu-kvm", "-boot_mode", "x64"],
    vcpus: 1,
  },
  {
    name: "-target qemu-kvm -native x86",
    args: ["-target", "qemu-kvm", "-boot_mode", "x86"],
    vcpus: 1,
  },
  {
    name: "-target qemu-kvm -native x64, 2 vCPUs",
    args: ["-target", "qemu-kvm", "-boot_mode", "x64", "-vcpus", "2", "-cpu", "milan"],
    vcpus: 2,
  },
  {
    name: "-target ch-kvm -native x64",
    args: ["-target", "ch-kvm", "-boot_mode", "x64"],
    vcpus: 1,
  },
].map((c) => ({ ...c, args: [...c.args, "-native"] }));

/** Builds one standard case's image. */
export async function buildSmokeImage(
  dir: string,
  initramfs: string,
  args: string[],
): Promise<Uint8Array> {
  return (await buildSmokeImageWithResult(dir, initramfs, args)).bytes;
}

/** Builds one case's image; returns it with what generation reported. */
export async function buildSmokeImageWithResult(
  dir: string,
  initramfs: string,
  args: string[],
): Promise<{ bytes: Uint8Array; result: Awaited<ReturnType<typeof generateIgvm>> }> {
  const out = join(dir, "smoke.igvm");
  const result = await generateIgvm(generateRequestFrom(
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
  return { bytes: await Deno.readFile(out), result };
}

/** The initramfs of the native cases: /init also prints the parameter pages it finds. */
export function buildNativeInitramfs(dir: string): Promise<string> {
  return buildInitramfs(dir, dumpPagesStep(PARAMETER_PAGES));
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
  type Boot = ReturnType<typeof bootSmoke>;
  const images: { name: string; boot: () => Boot }[] = [];
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-smoke-" });
  if (files.length) {
    for (const f of files) {
      images.push({ name: f, boot: async () => bootSmoke(await Deno.readFile(f), { marker }) });
    }
  } else {
    const initramfs = await buildInitramfs(dir);
    for (const c of SMOKE_CASES) {
      images.push({
        name: c.name,
        boot: async () => bootSmoke(await buildSmokeImage(dir, initramfs, c.args)),
      });
    }
    const noIgvmQemu = qemuIgvmPrerequisites();
    if (noIgvmQemu) console.log(`SKIP  -native cases: ${noIgvmQemu}`);
    const native = noIgvmQemu ? "" : await buildNativeInitramfs(join(dir, "native"));
    for (const c of noIgvmQemu ? [] : NATIVE_CASES) {
      images.push({
        name: `${c.name} (QEMU's IGVM loader)`,
        boot: async () => {
          const { bytes, result } = await buildSmokeImageWithResult(dir, native, c.args);
          return bootIgvmQemu(bytes, {
            qemu: QEMU_IGVM,
            romPath: QEMU_ROMS,
            memoryBytes: result.nativeMemory!,
            vcpus: c.vcpus,
          });
        },
      });
    }
  }
  let failed = 0;
  for (const image of images) {
    const r = await image.boot();
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
