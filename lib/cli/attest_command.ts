/** `igvmgen attest`: the command line of lib/ops/attest.ts. */
import { UsageError } from "../errors.ts";
import type { Input } from "../io/input_source.ts";
import { attest, formatAttest } from "../ops/attest.ts";
import { parseSubArgs } from "./sub_args.ts";
import { SUB_OPTIONS } from "./sub_options.ts";

/** Help for `igvmgen attest`. */
function attestHelp(): string {
  return `usage: igvmgen attest REPORT [--image FILE]... [--vcek CERT] [--ask CERT] [--ark CERT]
                      [--report-data HEX] [--host-data HEX] [--min-tcb TCB] [--vmpl N] [--json]

Checks an SEV-SNP attestation report (versions 2, 3 and 5) and traces it back to its image.
REPORT is the raw 1184-byte report (from /dev/sev-guest or snpguest report) or its hex text;
- reads standard input. Prints one line per check, ✔ or ✘; exit 0 only when the signature
and the chain verify, no check fails and, with --image, an image matches; 1 otherwise.

  --vcek CERT          the VCEK (or VLEK) that signed the report, PEM or DER. Without it
                       the signature is not checked; the output names where AMD serves it
  --ask CERT           the ASK (ASVK for a VLEK), or AMD's cert_chain file (ASK and ARK)
  --ark CERT           the ARK. Default for both: AMD's Milan, Genoa and Turin certificates,
                       built in. The chain ARK -> ASK -> VCEK is RSA-PSS/SHA-384; the
                       VCEK's TCB and chip ID must be the report's
  --image FILE         an IGVM image to match the report's MEASUREMENT against (repeatable):
                       every loader model, and for KVM loaders 1-64 vCPUs with the CPU
                       models milan, genoa, rome, turin and the report's own CPU (v3+).
                       The match's policy, ID key and author key digests, family ID,
                       image ID and guest SVN are then compared with the report's
  --report-data HEX    the expected REPORT_DATA (up to 64 bytes, zero-extended)
  --host-data HEX      the expected HOST_DATA (up to 32 bytes, zero-extended)
  --min-tcb TCB        the lowest acceptable TCB: bl=N,tee=N,snp=N,ucode=N[,fmc=N] or a
                       TCB_VERSION as 0x hex; checked on the reported, current and committed TCB
  --vmpl N             the VMPL the report must have been requested at (0-3)
  --json               print a JSON object (schema igvmgen-attest/1): signatureValid,
                       chainValid, match {image, loader, vcpus, cpu, cpuSignature} or null,
                       checks, problems, ok
Certificate revocation lists are not checked: that needs AMD's servers.`;
}

/** The `--image` values (the option repeats), and the other arguments. */
function takeImages(args: readonly string[]): { images: string[]; rest: string[] } {
  const images: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const m = /^--?image(?:=(.*))?$/s.exec(args[i]);
    if (!m) {
      rest.push(args[i]);
      continue;
    }
    const value = m[1] ?? args[++i];
    if (value === undefined || value === "") throw new UsageError("attest: --image needs a file");
    images.push(value);
  }
  return { images, rest };
}

/** Runs `igvmgen attest`; returns the exit code. */
export async function runAttestCommand(
  args: readonly string[],
  print: (line: string) => void,
): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    print(attestHelp());
    return 0;
  }
  const { images, rest } = takeImages(args);
  const { values, positional } = parseSubArgs("attest", rest, SUB_OPTIONS.attest);
  if (positional.length !== 1) {
    throw new UsageError(
      positional.length
        ? `attest: one report, got ${positional.length}`
        : "attest: no report given",
    );
  }
  const str = (n: string) => values.get(n) as string | undefined;
  const vmplText = str("vmpl");
  if (vmplText !== undefined && !/^[0-3]$/.test(vmplText)) {
    throw new UsageError(`attest: --vmpl: expected 0 to 3, got "${vmplText}"`);
  }
  const report: Input = positional[0] === "-"
    ? { stream: Deno.stdin.readable, name: "standard input" }
    : positional[0];
  const result = await attest({
    report,
    images,
    vcek: str("vcek"),
    ask: str("ask"),
    ark: str("ark"),
    reportData: str("report_data"),
    hostData: str("host_data"),
    minTcb: str("min_tcb"),
    vmpl: vmplText === undefined ? undefined : Number(vmplText),
  });
  print(values.has("json") ? JSON.stringify(result, null, 2) : formatAttest(result));
  return result.ok ? 0 : 1;
}
