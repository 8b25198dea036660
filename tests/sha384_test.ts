/**
 * The WebAssembly SHA-384 engine (lib/hash/wasm_sha384.ts): NIST's known answers, random
 * lengths and splits against WebCrypto, page batches with zero and unmeasured pages, the
 * record chain, and the embedded module against a fresh build of its source.
 */
import { assert, assertEquals } from "./assert.ts";
import { PageHasher, Sha384, sha384, Sha384RecordChain } from "../lib/hash/wasm_sha384.ts";
import { toHex } from "../lib/bytes/le.ts";
import { pseudoRandomBytes } from "../scripts/fixtures.ts";
import { buildWasm, embeddingModule, OUT } from "../scripts/build_wasm.ts";

const PAGE = 4096;
const text = (s: string) => new TextEncoder().encode(s);

async function webCrypto(bytes: Uint8Array): Promise<string> {
  const copy = bytes.slice() as Uint8Array<ArrayBuffer>;
  return toHex(new Uint8Array(await crypto.subtle.digest("SHA-384", copy)));
}

/** FIPS 180-4 examples (NIST CSRC "Example Values", SHA-384). */
const NIST: [string, Uint8Array, string][] = [
  [
    "the empty message",
    new Uint8Array(0),
    "38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da" +
    "274edebfe76f65fbd51ad2f14898b95b",
  ],
  [
    '"abc"',
    text("abc"),
    "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed" +
    "8086072ba1e7cc2358baeca134c825a7",
  ],
  [
    "the 896-bit message",
    text(
      "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno" +
        "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
    ),
    "09330c33f71147e83d192fc782cd1b4753111b173b3b05d22fa08086e3b0f712" +
    "fcc7c71a557e2db966c3e9fa91746039",
  ],
  [
    'a million "a"',
    new Uint8Array(1_000_000).fill(0x61),
    "9d0e1809716474cb086e834e310a4a1ced149e9c00f248527972cec5704c2a5b" +
    "07b8b3dc38ecc4ebae97ddd87f3d8985",
  ],
];

for (const [name, message, digest] of NIST) {
  Deno.test(`sha384() gives NIST's digest of ${name}`, () => {
    assertEquals(toHex(sha384(message)), digest);
  });
}

Deno.test('Sha384 streams a million "a" in uneven pieces to NIST\'s digest, then starts anew', () => {
  const h = new Sha384();
  const piece = new Uint8Array(33_331).fill(0x61); // crosses the 32 KiB chunk at odd offsets
  let left = 1_000_000;
  for (let i = 1; left > 0; i++) {
    const n = Math.min(left, i % 3 === 0 ? 1 : piece.length - i);
    h.update(piece.subarray(0, n));
    left -= n;
  }
  assertEquals(toHex(h.digest()), NIST[3][2]);
  assertEquals(toHex(h.update(text("abc")).digest()), NIST[1][2], "a new message after digest()");
});

Deno.test("sha384() agrees with WebCrypto on every length to 300 and on random lengths", async () => {
  const data = pseudoRandomBytes(300_000, 3);
  for (let n = 0; n <= 300; n++) {
    assertEquals(toHex(sha384(data.subarray(0, n))), await webCrypto(data.subarray(0, n)), `${n}`);
  }
  let seed = 12345;
  const next = () => (seed = (seed * 1103515245 + 12345) % 0x8000_0000);
  for (let i = 0; i < 60; i++) {
    const n = next() % data.length;
    const bytes = data.subarray(i, i + n);
    assertEquals(toHex(sha384(bytes)), await webCrypto(bytes), `length ${n}`);
    // The same message streamed in two pieces split at a random point.
    const split = next() % (bytes.length + 1);
    const h = new Sha384().update(bytes.subarray(0, split)).update(bytes.subarray(split));
    assertEquals(toHex(h.digest()), await webCrypto(bytes), `length ${n} split at ${split}`);
  }
});

Deno.test("PageHasher.hashPages() flags zero pages and hashes measured ones as WebCrypto does", async () => {
  const hasher = new PageHasher();
  // 1 and 3 pages (an odd one left over from the pairs), 257 and 600 (across 256-page calls).
  for (const count of [1, 2, 3, 257, 600]) {
    const bytes = pseudoRandomBytes(count * PAGE, count);
    const measured = new Uint8Array(count).fill(1);
    for (let i = 0; i < count; i++) {
      if (i % 7 === 3) bytes.fill(0, i * PAGE, (i + 1) * PAGE);
      if (i % 11 === 5) measured[i] = 0;
    }
    if (count > 1) bytes[(count - 1) * PAGE + PAGE - 1] = 0; // a last byte of zero is not a zero page
    const zero = new Uint8Array(count).fill(9);
    const digests = new Uint8Array(count * 48).fill(0xee);
    hasher.hashPages(bytes, count, measured, zero, digests);
    for (let i = 0; i < count; i++) {
      const page = bytes.subarray(i * PAGE, (i + 1) * PAGE);
      const isZero = i % 7 === 3 ? 1 : 0;
      assertEquals(zero[i], isZero, `zero flag of page ${i} of ${count}`);
      const slot = toHex(digests.subarray(i * 48, (i + 1) * 48));
      if (isZero || !measured[i]) assertEquals(slot, "ee".repeat(48), `untouched slot ${i}`);
      else assertEquals(slot, await webCrypto(page), `page ${i} of ${count}`);
    }
  }
});

Deno.test("PageHasher.hashPages() hashes pages in its hosted buffer where they are", async () => {
  const count = 300;
  const hasher = new PageHasher(count);
  assertEquals(hasher.hosted.length, count * PAGE);
  const bytes = pseudoRandomBytes(count * PAGE, 9);
  bytes.fill(0, 10 * PAGE, 12 * PAGE);
  hasher.hosted.set(bytes);
  const zero = new Uint8Array(count);
  const digests = new Uint8Array(count * 48);
  // Fewer pages than the buffer holds, an odd number: the last page is hashed alone.
  hasher.hashPages(hasher.hosted, count - 1, new Uint8Array(count).fill(1), zero, digests);
  assertEquals(toHex(hasher.hosted), toHex(bytes), "the pages are left as they were");
  for (let i = 0; i < count - 1; i++) {
    const page = bytes.subarray(i * PAGE, (i + 1) * PAGE);
    assertEquals(zero[i], i === 10 || i === 11 ? 1 : 0, `zero flag of page ${i}`);
    if (!zero[i]) {
      assertEquals(toHex(digests.subarray(i * 48, (i + 1) * 48)), await webCrypto(page), `${i}`);
    }
  }
  assertEquals(toHex(digests.subarray((count - 1) * 48)), "00".repeat(48), "page 299 not asked");
});

Deno.test("Sha384RecordChain.step() replaces the record's first 48 bytes with its SHA-384", async () => {
  const chain = new Sha384RecordChain();
  const record = pseudoRandomBytes(112, 5);
  chain.record.set(record);
  for (let i = 0; i < 3; i++) {
    const want = await webCrypto(chain.record);
    const tail = toHex(chain.record.subarray(48));
    chain.step();
    assertEquals(toHex(chain.record.subarray(0, 48)), want, `step ${i}`);
    assertEquals(toHex(chain.record.subarray(48)), tail, "bytes 48-111 stay");
  }
});

Deno.test("lib/hash/sha384_wasm.ts is what wat2wasm builds from lib/hash/sha384.wat", async (t) => {
  const found = await new Deno.Command("wat2wasm", { args: ["--version"], stdout: "null" })
    .output().then((o) => o.success, () => false);
  if (!found) {
    console.log("skipped: wat2wasm is not installed (Debian package wabt)");
    return;
  }
  const built = await buildWasm();
  assert(built.length > 1000, "a module was built");
  await t.step("byte for byte", async () => {
    assertEquals(await Deno.readTextFile(OUT), embeddingModule(built));
  });
});

Deno.test("ZERO_PAGE_DIGEST is WebCrypto's SHA-384 of a 4 KiB page of zeros", async () => {
  const { ZERO_PAGE_DIGEST } = await import("../lib/measure/snp_digest.ts");
  assertEquals(toHex(ZERO_PAGE_DIGEST), await webCrypto(new Uint8Array(PAGE)));
});
