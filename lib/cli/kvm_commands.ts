/**
 * The KVM side of `verify` and `measure`: `verify --loader qemu-kvm|ch-kvm|openvmm-kvm`
 * (its options are taken out of the argument list before the common subcommand parsing),
 * and the `--vcpus`/`--cpu` parsing and the `--matrix` digests `measure` uses.
 */
import { snpPlatformNote } from "../igvm/directives.ts";
import { UsageError } from "../errors.ts";
import { parseWholeNumber } from "./sub_args.ts";
import type { MatrixDigest } from "../measure/kvm_hosts.ts";
import type { FileAccess } from "../io/file_reader.ts";
import type { IgvmFile } from "../igvm/reader.ts";
import { checkLaunch, LAUNCH_CHECK_LOADERS } from "../measure/launch_checks.ts";
import type { KvmLoaderName } from "../measure/kvm_loaders.ts";
import { CPU_SIGNATURES, parseCpuSignature } from "../x86/kvm_vmsa.ts";

/** The options of `verify --loader`: the KVM loader and the host it would start the file on. */
export interface KvmOptions {
  loader: KvmLoaderName;
  vcpus: number;
  /** CPUID(1).EAX of `--cpu`; 0 when it is not given. */
  cpuSignature: number;
}

/** `--vcpus`: one count, or a comma list for `--matrix` (each count once). */
export function parseVcpus(text: string, list: boolean): number[] {
  const parts = text.split(",");
  if (!list && parts.length > 1) throw new UsageError(`--vcpus: one count, got "${text}"`);
  const counts = parts.map((p) => {
    const n = parseWholeNumber(p);
    if (!Number.isSafeInteger(n) || n < 1 || n > 512) {
      throw new UsageError(`--vcpus: expected counts from 1 to 512, got "${p}"`);
    }
    return n;
  });
  const twice = counts.find((n, i) => counts.indexOf(n) !== i);
  if (twice !== undefined) throw new UsageError(`--vcpus: "${twice}" is listed twice`);
  return counts;
}

/**
 * One host of a KVM loader from `--vcpus N` (default 1) and `--cpu C`: qemu-kvm and
 * openvmm-kvm with more than one vCPU need the CPU model (each AP's VMSA holds its signature).
 */
export function parseHost(
  loader: string,
  vcpusText?: string,
  cpuText?: string,
): { vcpus: number; cpuSignature: number; cpu?: string } {
  const vcpus = parseVcpus(vcpusText ?? "1", false)[0];
  const cpu = cpuText === undefined ? undefined : parseCpus(cpuText, false)[0];
  if ((loader === "qemu-kvm" || loader === "openvmm-kvm") && vcpus > 1 && !cpu) {
    throw new UsageError(
      `--loader ${loader} with more than one vCPU needs --cpu: each AP's VMSA holds the CPU signature`,
    );
  }
  return { vcpus, cpuSignature: cpu?.signature ?? 0, cpu: cpu?.name };
}

/** `--cpu`: one model or signature, or a comma list for `--matrix`. */
export function parseCpus(text: string, list: boolean): { name: string; signature: number }[] {
  const parts = text.split(",");
  if (!list && parts.length > 1) throw new UsageError(`--cpu: one model, got "${text}"`);
  const cpus = parts.map((name) => {
    const signature = parseCpuSignature(name);
    if (signature === undefined) {
      throw new UsageError(
        `--cpu: expected ${
          Object.keys(CPU_SIGNATURES).join(", ")
        }, a QEMU model name (EPYC-Milan...) or a hex signature, got "${name}"`,
      );
    }
    return { name, signature };
  });
  // One row per CPU: two names of one model (milan, EPYC-Milan) are the same CPU.
  for (let i = 1; i < cpus.length; i++) {
    const first = cpus.findIndex((c) => c.signature === cpus[i].signature);
    if (first < i) {
      throw new UsageError(
        `--cpu: "${cpus[i].name}" is listed twice${
          cpus[first].name === cpus[i].name ? "" : ` (as "${cpus[first].name}": the same signature)`
        }`,
      );
    }
  }
  return cpus;
}

/**
 * Takes `verify`'s `--loader`, `--vcpus` and `--cpu` out of `args`; returns them and the
 * other arguments. Returns no options when none is given, or for another command. (`measure`
 * parses its own, in measure_command.ts.)
 */
export function takeKvmOptions(
  command: string,
  args: readonly string[],
): { kvm?: KvmOptions; rest: string[] } {
  if (command !== "verify") return { rest: [...args] };
  const rest: string[] = [];
  const found: Record<string, string> = {};
  for (let i = 0; i < args.length; i++) {
    if (/^--?matrix(?:=.*)?$/s.test(args[i])) {
      throw new UsageError("verify: --matrix is a measure option");
    }
    const m = /^--?(loader|vcpus|cpu)(?:=(.*))?$/s.exec(args[i]);
    if (!m) {
      rest.push(args[i]);
      continue;
    }
    const [, name, inline] = m;
    if (found[name] !== undefined) throw new UsageError(`--${name} is given twice`);
    if (inline !== undefined) found[name] = inline;
    else if (i + 1 < args.length) found[name] = args[++i];
    else throw new UsageError(`--${name} needs a value`);
  }
  if (Object.keys(found).length === 0) return { rest };
  if (found.loader === undefined) {
    throw new UsageError("verify: --vcpus and --cpu go with --loader");
  }
  if (!(LAUNCH_CHECK_LOADERS as readonly string[]).includes(found.loader)) {
    throw new UsageError(
      `--loader: expected ${LAUNCH_CHECK_LOADERS.join(", ")}, got "${found.loader}"`,
    );
  }
  const loader = found.loader as KvmLoaderName;
  const { vcpus, cpuSignature } = parseHost(loader, found.vcpus, found.cpu);
  return { kvm: { loader, vcpus, cpuSignature }, rest };
}

/** `verify --loader`: prints the verdict; returns the exit code. */
export async function runVerifyLoader(
  path: string,
  file: FileAccess,
  headers: IgvmFile,
  kvm: KvmOptions,
  json: boolean,
  print: (line: string) => void,
): Promise<number> {
  const loader = kvm.loader;
  const check = await checkLaunch(loader, file, headers, {
    vcpus: kvm.vcpus,
    cpuSignature: kvm.cpuSignature,
  });
  const accepted = check.refusals.length === 0;
  if (json) {
    print(JSON.stringify({ file: path, accepted, ...check }, null, 2));
  } else {
    for (const r of check.refusals) print(`${path}: ${loader} refuses: ${r}`);
    const platform = snpPlatformNote(headers);
    if (platform) print(`${path}: note: ${platform}`);
    for (const w of check.warnings) print(`${path}: warning: ${w}`);
    for (const n of check.notes) print(`${path}: note: ${n}`);
    print(
      accepted
        ? `${path}: ${loader} would start this file`
        : `${path}: ${loader} would not start this file (${check.refusals.length} reason${
          check.refusals.length === 1 ? "" : "s"
        })`,
    );
  }
  return accepted ? 0 : 1;
}

/** Prints the rows of `measure --matrix` (or one digest), as text or JSON. */
export function printMatrix(
  path: string,
  loader: string,
  rows: readonly MatrixDigest[],
  json: boolean,
  matrix: boolean,
  print: (line: string) => void,
): void {
  if (json) {
    print(
      JSON.stringify(
        { schema: "igvmgen-measure-matrix/1", file: path, loader, digests: rows },
        null,
        2,
      ),
    );
  } else if (matrix) {
    print(
      `${"loader".padEnd(12)}${"vcpus".padEnd(7)}${"cpu".padEnd(8)}${
        "signature".padEnd(12)
      }launch digest`,
    );
    for (const r of rows) {
      print(
        `${loader.padEnd(12)}${String(r.vcpus).padEnd(7)}${r.cpu.padEnd(8)}${
          r.signature.padEnd(12)
        }${r.launchDigest}`,
      );
    }
  } else print(rows[0].launchDigest);
}
