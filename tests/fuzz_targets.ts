/**
 * Mutation fuzzing of igvmgen's parsers: each target takes bytes and either succeeds or
 * throws one of its own error classes. Anything else (TypeError, RangeError, a hang) is a
 * bug. Used by tests/fuzz_test.ts (bounded) and scripts/fuzz.ts (long runs).
 */
import { BzImageError, parseSetupHeader } from "../lib/bzimage/setup_header.ts";
import { ElfError, flatBinary, parseElf64, symbolByName } from "../lib/elf/elf64.ts";
import { IgvmFormatError, parseIgvmHeaders } from "../lib/igvm/reader.ts";
import { verifyIgvm } from "../lib/ops/verify.ts";
import { decodeLegacySnapshot, SnapshotError } from "../acpi/legacy_snapshot.ts";
import { AcpiError, acpiFromLegacySnapshot } from "../acpi/acpi_image.ts";
import { KeyError, parseP384PrivateKeyPem } from "../lib/measure/signing_key.ts";
import { ConfigError, parseTeiConfig } from "../lib/measure/tei_config.ts";
import { deflateSync } from "node:zlib";

/** A parser under test, with the errors it may throw. */
export interface FuzzTarget {
  name: string;
  run(input: Uint8Array): unknown | Promise<unknown>;
  expected: (new (...a: never[]) => Error)[];
}

export const FUZZ_TARGETS: Record<string, FuzzTarget> = {
  bzimage: {
    name: "bzImage setup header",
    run: (b) => parseSetupHeader(b, b.length),
    expected: [BzImageError],
  },
  elf: {
    name: "ELF64 reader and flat image",
    run: (b) => {
      const elf = parseElf64(b);
      flatBinary(elf);
      try {
        symbolByName(elf, "_end");
      } catch (e) {
        if (!(e instanceof ElfError)) throw e;
      }
    },
    expected: [ElfError],
  },
  igvm: {
    name: "IGVM reader and verifier",
    run: async (b) => {
      parseIgvmHeaders(b, b.length);
      await verifyIgvm({
        size: b.length,
        readAt: (o, n) => Promise.resolve(b.slice(o, Math.min(b.length, o + n))),
      });
    },
    expected: [IgvmFormatError],
  },
  snapshot: {
    name: "legacy ACPI snapshot",
    run: (b) => acpiFromLegacySnapshot(b),
    expected: [SnapshotError, AcpiError],
  },
  pickle: {
    name: "legacy snapshot pickle layer",
    run: (b) =>
      decodeLegacySnapshot(new TextEncoder().encode(btoa(String.fromCharCode(...deflate(b))))),
    expected: [SnapshotError],
  },
  pem: {
    name: "PEM signing key",
    run: (b) => parseP384PrivateKeyPem(new TextDecoder().decode(b)),
    expected: [KeyError],
  },
  tei: {
    name: "TEI config",
    run: (b) => parseTeiConfig(new TextDecoder().decode(b)),
    expected: [ConfigError],
  },
};

function deflate(b: Uint8Array): Uint8Array {
  return new Uint8Array(deflateSync(b));
}

/** A small seeded PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One mutation of `input`: bit flips, a truncation, or a 16/32/64-bit field set to an extreme. */
export function mutate(input: Uint8Array, random: () => number): Uint8Array {
  const b = input.slice();
  const pick = (n: number) => Math.floor(random() * n);
  switch (pick(4)) {
    case 0: // flip 1-8 bits
      for (let i = 1 + pick(8); i > 0 && b.length; i--) b[pick(b.length)] ^= 1 << pick(8);
      return b;
    case 1: // truncate
      return b.slice(0, pick(b.length + 1));
    case 2: { // an extreme little-endian field
      if (b.length < 8) return b;
      const at = pick(b.length - 8);
      const width = [2, 4, 8][pick(3)];
      const value = [0, 0xff, 0x7f, 0x80][pick(4)];
      for (let i = 0; i < width; i++) b[at + i] = i === width - 1 && value === 0x7f ? 0x7f : value;
      return b;
    }
    default: { // splice: duplicate or delete a range
      if (b.length < 2) return b;
      const from = pick(b.length);
      const len = 1 + pick(Math.min(64, b.length - from));
      return pick(2)
        ? new Uint8Array([
          ...b.subarray(0, from),
          ...b.subarray(from, from + len),
          ...b.subarray(from),
        ])
        : new Uint8Array([...b.subarray(0, from), ...b.subarray(from + len)]);
    }
  }
}

/** The outcome of a fuzz run. */
export interface FuzzResult {
  runs: number;
  accepted: number;
  rejected: number;
  failures: { input: Uint8Array; error: string }[];
  slowestMs: number;
  /** The input that took longest. */
  slowest?: Uint8Array;
}

/** Runs `iterations` mutations of the seeds through a target. */
export async function fuzz(
  target: FuzzTarget,
  seeds: Uint8Array[],
  iterations: number,
  seed = 1,
): Promise<FuzzResult> {
  const random = prng(seed);
  const result: FuzzResult = { runs: 0, accepted: 0, rejected: 0, failures: [], slowestMs: 0 };
  for (let i = 0; i < iterations; i++) {
    let input = seeds[i % seeds.length];
    for (let m = 1 + Math.floor(random() * 3); m > 0; m--) input = mutate(input, random);
    const start = performance.now();
    try {
      await target.run(input);
      result.accepted++;
    } catch (e) {
      if (target.expected.some((t) => e instanceof t)) result.rejected++;
      else {result.failures.push({
          input,
          error: e instanceof Error ? `${e.name}: ${e.message}` : String(e),
        });}
    }
    const ms = performance.now() - start;
    if (ms > result.slowestMs) {
      result.slowestMs = ms;
      result.slowest = input;
    }
    result.runs++;
  }
  return result;
}
