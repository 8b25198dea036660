/**
 * AMD's certificate chain for an attestation report: ARK (self-signed) -> ASK (or ASVK) ->
 * VCEK (or VLEK), each RSASSA-PSS/SHA-384 (AMD's key distribution service specification), and
 * the VCEK's AMD extensions (OIDs 1.3.6.1.4.1.3704.1.x) against the report: its TCB and, for a
 * VCEK, the hardware ID. The built-in ARK/ASK/ASVK of Milan, Genoa and Turin are in
 * amd_roots.ts; certificates given by the user replace them. Revocation lists are not checked:
 * that needs AMD's servers.
 */
import { toHex } from "../bytes/le.ts";
import {
  type AttestationReport,
  decodeTcb,
  formatTcb,
  productOfCpuid,
  type SevProduct,
  SIGNING_KEY_VCEK,
  SIGNING_KEY_VLEK,
  signingKeyName,
  type TcbParts,
} from "./attestation_report.ts";
import { AMD_ROOT_CERTIFICATES } from "./amd_roots.ts";
import { readDer } from "./der.ts";
import { base64ToBytes } from "./signing_key.ts";
import {
  type Certificate,
  parseCertificate,
  parseCertificates,
  sameBytes,
  verifyCertificateSignature,
} from "./x509.ts";

/** The AMD extensions of a VCEK or VLEK (AMD KDS specification, "VCEK certificate"). */
export const AMD_OID = {
  productName: "1.3.6.1.4.1.3704.1.2",
  blSpl: "1.3.6.1.4.1.3704.1.3.1",
  teeSpl: "1.3.6.1.4.1.3704.1.3.2",
  snpSpl: "1.3.6.1.4.1.3704.1.3.3",
  ucodeSpl: "1.3.6.1.4.1.3704.1.3.8",
  fmcSpl: "1.3.6.1.4.1.3704.1.3.9",
  hwId: "1.3.6.1.4.1.3704.1.4",
  cspId: "1.3.6.1.4.1.3704.1.5",
} as const;

/** One line of the checklist. */
export interface Check {
  /** What is checked ("report signature", "VCEK TCB = REPORTED_TCB", ...). */
  name: string;
  /** Whether it holds. */
  ok: boolean;
  /** What was found, or why it fails. */
  detail: string;
}

/** The certificates a user gives, as file bytes with the name to show. */
export interface ChainInputs {
  /** The VCEK or VLEK (PEM or DER). */
  vek: { name: string; bytes: Uint8Array };
  /** The ASK or ASVK, or AMD's cert_chain bundle (ASK then ARK). Default: built in. */
  ask?: { name: string; bytes: Uint8Array };
  /** The ARK. Default: from the `ask` bundle, else built in. */
  ark?: { name: string; bytes: Uint8Array };
  /** The time the certificates must be valid at. */
  now: Date;
}

/** What the chain check found. */
export interface ChainResult {
  /** Every signature verifies, names chain, and each certificate is within its validity. */
  valid: boolean;
  vek?: Certificate;
  keyKind?: "VCEK" | "VLEK";
  product?: SevProduct;
  checks: Check[];
}

interface Candidate {
  cert: Certificate;
  from: string;
  product?: SevProduct;
}

let builtins: { arks: Candidate[]; intermediates: Candidate[] } | undefined;

/** The built-in certificates, parsed once. */
function builtinCandidates() {
  if (!builtins) {
    builtins = { arks: [], intermediates: [] };
    for (const root of AMD_ROOT_CERTIFICATES) {
      const from = `AMD's ${root.product} certificates (built in)`;
      builtins.arks.push({
        cert: parseCertificate(base64ToBytes(root.ark)),
        from,
        product: root.product,
      });
      for (const c of [root.ask, root.asvk]) {
        builtins.intermediates.push({
          cert: parseCertificate(base64ToBytes(c)),
          from,
          product: root.product,
        });
      }
    }
  }
  return builtins;
}

/** The certificates of a user's file; an unreadable one names the file. */
function certificatesOf(input: { name: string; bytes: Uint8Array }): Certificate[] {
  try {
    return parseCertificates(input.bytes);
  } catch (e) {
    throw new Error(`${input.name}: ${(e as Error).message}`, { cause: e });
  }
}

/** The generation named by a VCEK's productName ("Milan-B0") or its issuer ("SEV-VLEK-Genoa"). */
function productOfCertificate(cert: Certificate): SevProduct | undefined {
  const ext = cert.extensions.get(AMD_OID.productName);
  const text = ext ? new TextDecoder("latin1").decode(ext) : cert.issuerName;
  for (const p of ["Milan", "Genoa", "Turin"] as const) if (text.includes(p)) return p;
  return undefined;
}

function validity(cert: Certificate, now: Date): string | undefined {
  if (now < cert.notBefore) return `not valid before ${cert.notBefore.toISOString()}`;
  if (now > cert.notAfter) return `expired on ${cert.notAfter.toISOString()}`;
  return undefined;
}

/**
 * Checks ARK -> ASK/ASVK -> VCEK/VLEK: the chain of names, each RSA-PSS signature, and each
 * validity period at `now`. The VCEK must carry a P-384 key.
 */
export async function checkChain(inputs: ChainInputs): Promise<ChainResult> {
  const checks: Check[] = [];
  // The VCEK file may be a bundle (VCEK, ASK, ARK): the VCEK or VLEK is the one so named.
  const vekCerts = certificatesOf(inputs.vek);
  const vek = vekCerts.find((c) => /^SEV-V[CL]EK$/.test(c.subjectName)) ?? vekCerts[0];
  const bundled = vekCerts.filter((c) => c !== vek);
  const keyKind = vek.subjectName === "SEV-VCEK"
    ? "VCEK"
    : vek.subjectName === "SEV-VLEK"
    ? "VLEK"
    : undefined;
  if (!keyKind) {
    checks.push({
      name: "signing key certificate",
      ok: false,
      detail: `${inputs.vek.name} is not a VCEK or VLEK (subject CN "${vek.subjectName}")`,
    });
  }
  const kind = keyKind ?? "VCEK";
  if (vek.publicKey.kind !== "ec" || vek.publicKey.curve !== "P-384") {
    checks.push({ name: `${kind} key`, ok: false, detail: "not an ECDSA P-384 public key" });
  }
  const given = inputs.ask ? certificatesOf(inputs.ask) : bundled;
  const givenFrom = inputs.ask?.name ?? inputs.vek.name;
  const givenArks = inputs.ark ? certificatesOf(inputs.ark) : [];
  const intermediates: Candidate[] = given.length
    ? given.map((cert) => ({ cert, from: givenFrom }))
    : builtinCandidates().intermediates;
  const ask = intermediates.find((c) => sameBytes(c.cert.subject, vek.issuer));
  const askRole = kind === "VLEK" ? "ASVK" : "ASK";
  if (!ask) {
    checks.push({
      name: `${askRole} ${vek.issuerName}`,
      ok: false,
      detail: given.length
        ? `${givenFrom} holds no certificate named ${vek.issuerName}, the ${kind}'s issuer`
        : `no built-in certificate is named ${vek.issuerName} (give --ask)`,
    });
    return { valid: false, vek, keyKind, product: productOfCertificate(vek), checks };
  }
  const arks: Candidate[] = inputs.ark
    ? givenArks.map((cert) => ({ cert, from: inputs.ark!.name }))
    : given.length > 1
    ? given.map((cert) => ({ cert, from: givenFrom }))
    : builtinCandidates().arks;
  const ark = arks.find((c) =>
    sameBytes(c.cert.subject, ask.cert.issuer) && sameBytes(c.cert.issuer, c.cert.subject)
  );
  if (!ark) {
    checks.push({
      name: `ARK ${ask.cert.issuerName}`,
      ok: false,
      detail: `no self-signed certificate named ${ask.cert.issuerName}, the ${askRole}'s issuer${
        inputs.ark ? ` in ${inputs.ark.name}` : ""
      }`,
    });
    return { valid: false, vek, keyKind, product: productOfCertificate(vek), checks };
  }
  const builtinArk = builtinCandidates().arks.find((c) => sameBytes(c.cert.der, ark.cert.der));
  const rootNote = builtinArk
    ? `AMD's ${builtinArk.product} root, built in`
    : `from ${ark.from}; not one of AMD's built-in roots`;
  const links: [string, Certificate, Certificate][] = [
    [`ARK ${ark.cert.subjectName} (${rootNote})`, ark.cert, ark.cert],
    [`${askRole} ${ask.cert.subjectName} signed by the ARK`, ask.cert, ark.cert],
    [`${kind} signed by the ${askRole}`, vek, ask.cert],
  ];
  for (const [name, cert, issuer] of links) {
    const signed = await verifyCertificateSignature(cert, issuer);
    const expired = validity(cert, inputs.now);
    checks.push({
      name,
      ok: signed && !expired,
      detail: !signed
        ? `the RSA-PSS signature does not verify${cert === issuer ? " (self-signed)" : ""}`
        : expired ??
          `RSA-PSS ${cert.pss?.hash}, valid until ${cert.notAfter.toISOString().slice(0, 10)}`,
    });
  }
  const product = builtinArk?.product ?? ask.product ?? productOfCertificate(vek);
  return { valid: checks.every((c) => c.ok), vek, keyKind, product, checks };
}

/** A DER INTEGER inside an extension value, as AMD encodes each SPL. */
function splOf(cert: Certificate, oid: string): number | undefined {
  const value = cert.extensions.get(oid);
  if (!value) return undefined;
  try {
    const e = readDer(value);
    if (e.tag !== 0x02 || e.contents.length > 2) return undefined;
    return e.contents.reduce((n, b) => n * 256 + b, 0);
  } catch {
    return undefined;
  }
}

/**
 * The VCEK's or VLEK's claims against the report: SIGNING_KEY names the kind of key, the
 * TCB extensions equal REPORTED_TCB (the TCB the key was derived for), and a VCEK's hwID is
 * the report's CHIP_ID (its first 8 bytes on Turin).
 */
export function checkKeyAgainstReport(
  vek: Certificate,
  keyKind: "VCEK" | "VLEK",
  product: SevProduct | undefined,
  report: AttestationReport,
): Check[] {
  const checks: Check[] = [];
  const expectedKey = keyKind === "VCEK" ? SIGNING_KEY_VCEK : SIGNING_KEY_VLEK;
  checks.push({
    name: "SIGNING_KEY",
    ok: report.signingKey === expectedKey,
    detail: report.signingKey === expectedKey
      ? `${keyKind}, as the certificate`
      : `the report says ${signingKeyName(report.signingKey)}, the certificate is a ${keyKind}`,
  });
  const reportProduct = report.cpuid ? productOfCpuid(report.cpuid) : undefined;
  if (reportProduct && product && reportProduct !== product) {
    checks.push({
      name: "processor generation",
      ok: false,
      detail: `the report's CPUID is a ${reportProduct}, the certificate is for ${product}`,
    });
  }
  const tcbProduct = product ?? reportProduct;
  if (!tcbProduct) {
    checks.push({
      name: "TCB",
      ok: false,
      detail: "the processor generation is unknown: REPORTED_TCB cannot be decoded",
    });
    return checks;
  }
  const reported = decodeTcb(report.reportedTcb, tcbProduct);
  const certified: Partial<TcbParts> = {
    bootloader: splOf(vek, AMD_OID.blSpl),
    tee: splOf(vek, AMD_OID.teeSpl),
    snp: splOf(vek, AMD_OID.snpSpl),
    microcode: splOf(vek, AMD_OID.ucodeSpl),
    ...(tcbProduct === "Turin" ? { fmc: splOf(vek, AMD_OID.fmcSpl) } : {}),
  };
  const missing = Object.entries(certified).filter(([, v]) => v === undefined).map(([k]) => k);
  const differs = (Object.keys(certified) as (keyof TcbParts)[]).filter((k) =>
    certified[k] !== reported[k]
  );
  checks.push({
    name: `${keyKind} TCB = REPORTED_TCB`,
    ok: missing.length === 0 && differs.length === 0,
    detail: missing.length
      ? `the certificate lacks the TCB extension${missing.length > 1 ? "s" : ""} ${
        missing.join(", ")
      }`
      : differs.length
      ? `the certificate is for ${formatTcb(certified as TcbParts)}, the report's REPORTED_TCB is ${
        formatTcb(reported)
      }`
      : formatTcb(reported),
  });
  if (keyKind === "VCEK") {
    const hwId = vek.extensions.get(AMD_OID.hwId);
    const chip = report.chipId.slice(0, 2 * (hwId?.length ?? 64));
    const masked = /^0*$/.test(report.chipId);
    checks.push({
      name: "VCEK hwID = CHIP_ID",
      ok: hwId !== undefined && (masked || toHex(hwId) === chip),
      detail: !hwId
        ? "the certificate has no hwID extension"
        : masked
        ? "CHIP_ID is masked by the host (all zero): the VCEK's hwID cannot be compared"
        : toHex(hwId) === chip
        ? `${chip.slice(0, 16)}...`
        : `the certificate is for chip ${toHex(hwId).slice(0, 16)}..., the report's CHIP_ID is ${
          chip.slice(0, 16)
        }...`,
    });
  }
  return checks;
}

/**
 * Where AMD's key distribution service serves the VCEK for this report (hwID and REPORTED_TCB;
 * Turin takes the first 8 bytes of CHIP_ID and the FMC level), or undefined when the
 * generation is unknown or CHIP_ID is masked.
 */
export function vcekUrl(report: AttestationReport, product?: SevProduct): string | undefined {
  const p = product ?? (report.cpuid ? productOfCpuid(report.cpuid) : undefined);
  if (!p || /^0*$/.test(report.chipId)) return undefined;
  const t = decodeTcb(report.reportedTcb, p);
  const hwid = p === "Turin" ? report.chipId.slice(0, 16) : report.chipId;
  return `https://kdsintf.amd.com/vcek/v1/${p}/${hwid}?${
    p === "Turin" ? `fmcSPL=${t.fmc}&` : ""
  }blSPL=${t.bootloader}&teeSPL=${t.tee}&snpSPL=${t.snp}&ucodeSPL=${t.microcode}`;
}
