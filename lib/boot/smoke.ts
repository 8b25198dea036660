/**
 * The boot smoke test: a busybox initramfs whose /init writes a marker to /dev/kmsg and
 * reboots; QEMU (TCG, no SEV) started on the image with a timeout; the marker looked for in
 * the serial log. Two ways in: an IGVM image converted to a PVH ELF (any layout, any QEMU),
 * or a `-native` image loaded by QEMU's own IGVM loader (QEMU 10.2 or later built with IGVM).
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

/**
 * An /init step that prints the first bytes of guest-physical pages on the console, read
 * through /dev/mem, each after a line `IGVMGEN-PAGE <gpa>`: what the guest finds there.
 * Pages the e820 does not list as RAM can be read with Linux's STRICT_DEVMEM.
 */
export function dumpPagesStep(gpas: readonly number[]): string {
  return gpas.map((gpa) =>
    `echo IGVMGEN-PAGE 0x${gpa.toString(16)}\n` +
    `/bin/busybox dd if=/dev/mem bs=4096 skip=${gpa / 4096} count=1 2>/dev/null | ` +
    `/bin/busybox od -A x -t x4 -v | /bin/busybox head -16\n`
  ).join("");
}

/**
 * Reads back what `dumpPagesStep` printed: the first 256 bytes of each page by GPA (absent
 * when the log does not have all 16 rows). Rows are taken by their offsets, so a kernel
 * message printed between them on the same console is skipped.
 */
export function parsePageDumps(log: string): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>();
  const lines = log.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const head = /IGVMGEN-PAGE 0x([0-9a-f]+)/.exec(lines[i]);
    if (!head) continue;
    const bytes = new Uint8Array(256);
    const view = new DataView(bytes.buffer);
    const rows = new Set<number>();
    for (let j = i + 1; j < lines.length && j <= i + 64 && rows.size < 16; j++) {
      if (/IGVMGEN-PAGE/.test(lines[j])) break;
      const row = /^([0-9a-f]{6}) ((?:[0-9a-f]{8} ?){4})$/.exec(lines[j].trim());
      const at = row ? parseInt(row[1], 16) : -1;
      if (!row || at % 16 !== 0 || at >= 256) continue;
      row[2].trim().split(" ").forEach((w, k) => view.setUint32(at + 4 * k, parseInt(w, 16), true));
      rows.add(at);
    }
    if (rows.size === 16) out.set(parseInt(head[1], 16), bytes);
  }
  return out;
}

/**
 * Builds the busybox initramfs (newc cpio) into `dir`; returns its path. Its /init mounts
 * devtmpfs, runs `step` (shell lines, none by default), writes the marker and reboots.
 */
export async function buildInitramfs(dir: string, step = ""): Promise<string> {
  const root = join(dir, "initramfs-root");
  for (const d of ["bin", "dev", "proc", "sys"]) {
    await Deno.mkdir(join(root, d), { recursive: true });
  }
  await Deno.copyFile(BUSYBOX, join(root, "bin/busybox"));
  await Deno.writeTextFile(
    join(root, "init"),
    `#!/bin/busybox sh\n/bin/busybox mount -t devtmpfs devtmpfs /dev\n${step}echo ${SMOKE_MARKER} > /dev/kmsg\n/bin/busybox reboot -f\n`,
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

/** Options of one boot. */
export interface BootOptions {
  /** Seconds before QEMU is killed. Default 60. */
  timeoutSeconds?: number;
  /** The line that means the boot reached /init. Default SMOKE_MARKER. */
  marker?: string;
}

/** Boots an IGVM image, converted to a PVH ELF, in QEMU and looks for the marker. */
export async function bootSmoke(igvm: Uint8Array, options: BootOptions = {}): Promise<SmokeResult> {
  const converted = igvmToPvhElf(igvm, { memoryBytes: MEMORY });
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-smoke-" });
  try {
    const elf = join(dir, "image.elf");
    await Deno.writeFile(elf, converted.elf);
    const r = await runQemu(QEMU, [
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
    ], options);
    return { ...r, notes: [...converted.notes, ...r.notes] };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** What a boot through QEMU's IGVM loader needs besides the image. */
export interface IgvmBootOptions extends BootOptions {
  /** A QEMU 10.2 or later built with IGVM support. */
  qemu: string;
  /** `-m` in bytes: at least what generation reported (GenerateResult.nativeMemory). */
  memoryBytes: number;
  /** `-smp`. Default 1. */
  vcpus?: number;
  /** Option ROM folder (`-L`), e.g. Debian's /usr/share/qemu. */
  romPath?: string;
}

/**
 * Boots an IGVM file with QEMU's own IGVM loader, as the file's NATIVE platform (no
 * confidential-guest object: TCG), and looks for the marker. QEMU's refusal of a file shows
 * in the log as `[qemu stderr] ...`. QEMU does not exit after the guest reboots (there is no
 * firmware at the reset vector): it is stopped once the marker is seen.
 */
export async function bootIgvmQemu(
  igvm: Uint8Array,
  options: IgvmBootOptions,
): Promise<SmokeResult> {
  return await withIgvmFile(
    igvm,
    (file) =>
      runQemu(options.qemu, [...igvmMachine(file, options), "-nographic", "-no-reboot"], options),
  );
}

/**
 * Whether QEMU's IGVM loader takes a file: QEMU is started paused (`-S`), so it parses the
 * whole file with libigvm and runs every directive the NATIVE platform selects, then the
 * monitor asks for its status and quits. Nothing runs in the guest. `message` is what QEMU
 * printed on standard error (its reason when it refused).
 */
export async function igvmQemuAccepts(
  igvm: Uint8Array,
  options: IgvmBootOptions,
): Promise<{ accepted: boolean; message: string }> {
  return await withIgvmFile(igvm, async (file) => {
    const child = new Deno.Command(options.qemu, {
      args: [...igvmMachine(file, options), "-S", "-display", "none", "-monitor", "stdio"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => child.kill("SIGKILL"), (options.timeoutSeconds ?? 60) * 1000);
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("info status\nquit\n")).catch(() => {});
    await writer.close().catch(() => {});
    const out = await child.output();
    clearTimeout(timer);
    const decoder = new TextDecoder();
    return {
      accepted: decoder.decode(out.stdout).includes("VM status: paused (prelaunch)"),
      message: decoder.decode(out.stderr).trim(),
    };
  });
}

/** QEMU's options for a q35 machine whose firmware is the IGVM file at `file`, under TCG. */
function igvmMachine(file: string, options: IgvmBootOptions): string[] {
  return [
    ...(options.romPath ? ["-L", options.romPath] : []),
    "-machine",
    "q35,igvm-cfg=igvm0",
    "-object",
    `igvm-cfg,id=igvm0,file=${file}`,
    "-accel",
    "tcg",
    "-cpu",
    "max",
    "-m",
    `${Math.ceil(options.memoryBytes / (1 << 20))}M`,
    "-smp",
    String(options.vcpus ?? 1),
    // The default VGA stays: it is what maps 0xA0000-0xBFFFF, as on users' machines. No NIC:
    // no iPXE option ROM or prompt.
    "-nic",
    "none",
  ];
}

/** Runs `f` on the bytes written to a temporary file, removed afterwards. */
async function withIgvmFile<T>(igvm: Uint8Array, f: (file: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-igvm-boot-" });
  try {
    const file = join(dir, "image.igvm");
    await Deno.writeFile(file, igvm);
    return await f(file);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Runs QEMU until the marker shows in its serial output, it exits, or the timeout. */
async function runQemu(qemu: string, args: string[], options: BootOptions): Promise<SmokeResult> {
  const marker = options.marker ?? SMOKE_MARKER;
  const start = performance.now();
  const child = new Deno.Command(qemu, {
    args,
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
    notes: [`qemu exit ${status.signal ?? status.code}`],
    tail: lines.slice(-8),
    log,
  };
}
