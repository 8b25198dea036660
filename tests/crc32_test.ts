import { assertEquals } from "./assert.ts";
import { crc32 } from "../lib/bytes/crc32.ts";

const ascii = (s: string) => new TextEncoder().encode(s);

// Known answers: the CRC-32 check value of "123456789" (0xCBF43926, the catalogue's "check"),
// and values computed with Python's zlib.crc32.
Deno.test("crc32() matches the CRC-32 check value and zlib's known answers", () => {
  assertEquals(crc32(ascii("123456789")), 0xcbf4_3926);
  assertEquals(crc32(new Uint8Array(0)), 0);
  assertEquals(crc32(ascii("The quick brown fox jumps over the lazy dog")), 0x414f_a339);
  const ramp = new Uint8Array(4096).map((_, i) => i & 0xff);
  assertEquals(crc32(ramp), 0xa291_2082);
});

Deno.test("crc32() continues an earlier CRC across chunks", () => {
  const s = ascii("123456789");
  assertEquals(crc32(s.subarray(4), crc32(s.subarray(0, 4))), 0xcbf4_3926);
});
