import { assertEquals, assertThrows } from "./assert.ts";
import { decodeOid, encodeDer, encodeOid, readDer, readDerSequence } from "../lib/measure/der.ts";
import { toHex } from "../lib/bytes/le.ts";

// Known encodings from X.690 / RFC 5480: secp384r1 and id-ecPublicKey.
Deno.test("encodeOid() and decodeOid() match the known DER of P-384's and EC keys' OIDs", () => {
  assertEquals(toHex(encodeOid("1.3.132.0.34")), "2b81040022");
  assertEquals(toHex(encodeOid("1.2.840.10045.2.1")), "2a8648ce3d0201");
  assertEquals(
    decodeOid(Uint8Array.from([0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 1])),
    "1.2.840.113549.1.1.1",
  );
  assertEquals(decodeOid(encodeOid("1.2.840.10045.3.1.7")), "1.2.840.10045.3.1.7");
});

Deno.test("encodeDer() and readDer() use short and long length forms", () => {
  const short = encodeDer(0x04, new Uint8Array(5));
  assertEquals(toHex(short.subarray(0, 2)), "0405");
  const long = encodeDer(0x04, new Uint8Array(200));
  assertEquals(toHex(long.subarray(0, 3)), "0481c8");
  const longer = encodeDer(0x30, new Uint8Array(300));
  assertEquals(toHex(longer.subarray(0, 4)), "3082012c");
  assertEquals(readDer(longer).contents.length, 300);
  const seq = encodeDer(
    0x30,
    encodeDer(0x02, Uint8Array.of(1)),
    encodeDer(0x04, Uint8Array.of(9, 9)),
  );
  assertEquals(readDerSequence(readDer(seq).contents).map((e) => e.tag), [0x02, 0x04]);
});

Deno.test("readDer() rejects cut and oversized elements", () => {
  assertThrows(() => readDer(Uint8Array.of(0x30)), RangeError);
  assertThrows(() => readDer(Uint8Array.of(0x04, 0x05, 1, 2)), RangeError);
  assertThrows(() => readDer(Uint8Array.of(0x04, 0x85, 1, 1, 1, 1, 1)), RangeError);
  assertThrows(() => readDer(Uint8Array.of(0x04, 0x80)), RangeError);
});
