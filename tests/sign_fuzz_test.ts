/**
 * Mutation fuzzing of the sign, offline-signing and launch-log parsers (with the harness of
 * tests/fuzz_targets.ts): each must succeed or throw its own error, never a TypeError,
 * RangeError or a hang.
 */
import { assertEquals } from "./assert.ts";
import { fuzz, type FuzzTarget } from "./fuzz_targets.ts";
import { HAVE_OPENSSL, openssl } from "./sign_helpers.ts";
import { generateImage, HAVE_SHARED, SHARED, tempDir } from "./helpers.ts";
import {
  OfflineSignatureError,
  parseEcdsaSignature,
  parseP384PublicKey,
} from "../lib/measure/public_key.ts";
import { IgvmFormatError, parseIgvmHeaders } from "../lib/igvm/reader.ts";
import { InputError } from "../lib/errors.ts";
import { LOADERS } from "../lib/measure/loaders.ts";
import { launchDigestOf } from "../lib/measure/launch_update.ts";
import { launchLog } from "../lib/measure/launch_log.ts";
import { rewriteWithIdBlock } from "../lib/measure/id_block_file.ts";
import { DEFAULT_HOST } from "../lib/measure/file_loaders.ts";

const ITERATIONS = Number(Deno.env.get("SIGN_FUZZ_ITERATIONS") ?? 300);

const access = (b: Uint8Array) => ({
  size: b.length,
  readAt: (o: number, n: number) => Promise.resolve(b.slice(o, Math.min(b.length, o + n))),
});

const TARGETS: Record<string, FuzzTarget> = {
  publicKey: {
    name: "ID public key (PEM/DER key or certificate)",
    run: (b) => parseP384PublicKey(b),
    expected: [OfflineSignatureError],
  },
  signature: {
    name: "ECDSA signature (DER or raw)",
    run: (b) => parseEcdsaSignature(b),
    expected: [OfflineSignatureError],
  },
  launch: {
    name: "loader models, launch log and sign's rewrite",
    run: async (b) => {
      const headers = parseIgvmHeaders(b, b.length);
      for (const l of LOADERS) await launchDigestOf(l.updates(access(b), headers, DEFAULT_HOST));
      for await (const _ of launchLog(access(b), headers, "hyperv")) { /* drain */ }
      const sink = { writeAt: () => Promise.resolve() };
      await rewriteWithIdBlock(access(b), headers, new Uint8Array(0x2b8), 0x3001fn, sink);
    },
    expected: [IgvmFormatError, InputError],
  },
};

async function seeds(key: string): Promise<Uint8Array[]> {
  const dir = tempDir();
  try {
    if (key === "launch") {
      const out = [await generateImage(["-boot_mode", "x64"])];
      if (HAVE_SHARED) out.push(Deno.readFileSync(`${SHARED}golden/tb_x86_acpitest.igvm`));
      return out;
    }
    openssl("ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", `${dir}/k.pem`);
    if (key === "signature") {
      Deno.writeFileSync(`${dir}/m`, new Uint8Array(96));
      return [openssl("dgst", "-sha384", "-sign", `${dir}/k.pem`, `${dir}/m`)];
    }
    const pub = openssl("ec", "-in", `${dir}/k.pem`, "-pubout");
    const pubDer = openssl("ec", "-in", `${dir}/k.pem`, "-pubout", "-outform", "DER");
    const cert = openssl(
      "req",
      "-new",
      "-x509",
      "-key",
      `${dir}/k.pem`,
      "-subj",
      "/CN=fuzz",
      "-days",
      "1",
    );
    return [pub, pubDer, cert];
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

for (const [key, target] of Object.entries(TARGETS)) {
  Deno.test({
    name: `fuzz: ${target.name} gives a result or its own error (${ITERATIONS} mutations)`,
    ignore: key !== "launch" && !HAVE_OPENSSL,
    fn: async () => {
      const s = await seeds(key);
      for (const seed of s) await target.run(seed);
      const result = await fuzz(target, s, ITERATIONS, 7);
      if (Deno.env.get("SIGN_FUZZ_ITERATIONS")) console.log(key, result.accepted, result.rejected);
      assertEquals(result.failures.slice(0, 3).map((f) => f.error), []);
    },
  });
}
