/**
 * The boot smoke test: a busybox initramfs whose /init writes a marker to /dev/kmsg and
 * reboots; an IGVM image converted to a PVH ELF; QEMU (TCG, no SEV) started on it with a
 * timeout; the marker looked for in the serial log.
 */
import { join } from "node:path";
import { igvmToPvhElf } from "./pvh_elf.ts";

export const SMOKE_MARKER = "IGVMGEN-BOOT-SMOKE-OK";
/**
 * The kernel command line of the standard cases. `tsc_early_khz` spares the kernel the
 * PIT-based TSC calibration, which under TCG fails when the host is busy; the tables declare
 * no HPET or PM timer to fall back on, and the boot then stalls (an emulator artefact).
 */
export const SMOKE_CMDLINE = "console=ttyS0 panic=-1 rdinit=/init tsc_early_khz=2000000";
const QEMU = "qemu-system-x86_64";
const BUSYBOX = "/bin/busybox";
const MEMORY = 1 << 30;
/** Terminal escape sequences in the serial log (SeaBIOS clears the screen). */
const ANSI_ESCAPE = new RegExp(`${String.fromCharCode(27)}\\[[0-9;?]*[a-zA-Z]`, "g");

/** What the smoke test needs on the machine, or why it cannot run. */
export function smokePrerequisites(): string | undefined {
  const has = (cmd: string, args: string[]) => {
    try {
      return new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).outputSync().success;
    } catch {
      return false;
    }
  };
  const missing = [];
  if (!has(QEMU, ["--version"])) missing.push("qemu-system-x86_64 (qemu-system-x86)");
  try {
    Deno.statSync(BUSYBOX);
  } catch {
    missing.push("/bin/busybox (busybox-static)");
  }
  if (!has("cpio", ["--version"])) missing.push("cpio");
  return missing.length ? `missing ${missing.join(", ")}` : undefined;
}

/** Builds the busybox initramfs (newc cpio) into `dir`; returns its path. */
export async function buildInitramfs(dir: string): Promise<string> {
  const root = join(dir, "initramfs-root");
  for (const d of ["bin", "dev", "proc", "sys"]) {
    await Deno.mkdir(join(root, d), { recursive: true });
  }
  await Deno.copyFile(BUSYBOX, join(root, "bin/busybox"));
  await Deno.writeTextFile(
    join(root, "init"),
    `#!/bin/busybox sh\n/bin/busybox mount -t devtmpfs devtmpfs /dev\necho ${SMOKE_MARKER} > /dev/kmsg\n/bin/busybox reboot -f\n`,
    { mode: 0o755 },
  );
  const names = ["."];
  for await (const e of Deno.readDir(root)) {
    names.push(`./${e.name}`);
    if (e.isDirectory) {
      for await (const f of Deno.readDir(join(root, e.name))) names.push(`./${e.name}/${f.name}`);
    }
  }
  const out = join(dir, "initramfs.cpio");
  const cpio = new Deno.Command("cpio", {
    args: ["-o", "-H", "newc", "-O", out],
    cwd: root,
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const w = cpio.stdin.getWriter();
  await w.write(new TextEncoder().encode(names.join("\n") + "\n"));
  await w.close();
  const r = await cpio.output();
  if (!r.success) throw new Error(`cpio failed: ${new TextDecoder().decode(r.stderr)}`);
  return out;
}

/** The outcome of one boot. */
export interface SmokeResult {
  booted: boolean;
  seconds: number;
  notes: string[];
  /** The last lines of the serial log. */
  tail: string[];
  log: string;
}

/** Boots an IGVM image in QEMU and looks for `marker` in the serial log. */
export async function bootSmoke(
  igvm: Uint8Array,
  options: { timeoutSeconds?: number; marker?: string } = {},
): Promise<SmokeResult> {
  const marker = options.marker ?? SMOKE_MARKER;
  const converted = igvmToPvhElf(igvm, { memoryBytes: MEMORY });
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-smoke-" });
  try {
    const elf = join(dir, "image.elf");
    await Deno.writeFile(elf, converted.elf);
    const start = performance.now();
    const child = new Deno.Command(QEMU, {
      args: [
        "-machine",
        "pc",
        "-cpu",
        "qemu64",
        "-m",
        `${MEMORY >> 20}M`,
        "-nographic",
        "-no-reboot",
        // No NIC: the test needs none, and it spares the iPXE option ROM and its prompt.
        "-nic",
        "none",
        "-kernel",
        elf,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => child.kill("SIGKILL"), (options.timeoutSeconds ?? 60) * 1000);
    let log = "";
    const decoder = new TextDecoder();
    for await (const chunk of child.stdout) {
      log += decoder.decode(chunk, { stream: true });
      if (log.includes(marker)) {
        child.kill("SIGKILL");
        break;
      }
    }
    clearTimeout(timer);
    const status = await child.status;
    const stderr = decoder.decode(await new Response(child.stderr).arrayBuffer());
    if (stderr.trim()) log += `\n[qemu stderr] ${stderr.trim()}`;
    const lines = log.replace(ANSI_ESCAPE, "").split(/\r?\n/).map((l) => l.trimEnd())
      .filter((l) => l.trim());
    return {
      booted: log.includes(marker),
      seconds: (performance.now() - start) / 1000,
      notes: [...converted.notes, `qemu exit ${status.signal ?? status.code}`],
      tail: lines.slice(-8),
      log,
    };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
