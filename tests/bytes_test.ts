import { assertEquals, assertThrows } from "./assert.ts";
import { alignDown, alignUp, hex, isAllZero, toHex } from "../lib/bytes/le.ts";
import { defineLayout } from "../lib/bytes/layout.ts";

Deno.test("alignUp() and alignDown() round to the alignment", () => {
  assertEquals(alignUp(0, 4096), 0);
  assertEquals(alignUp(1, 4096), 4096);
  assertEquals(alignUp(0x346f0b2, 4096), 0x3470000);
  assertEquals(alignDown(0x1fff, 4096), 0x1000);
  assertEquals(alignUp(2 ** 40 + 1, 4096), 2 ** 40 + 4096);
});

Deno.test("isAllZero() finds a single non-zero byte anywhere", () => {
  const page = new Uint8Array(4096);
  assertEquals(isAllZero(page), true);
  for (const at of [0, 7, 8, 4095]) {
    page[at] = 1;
    assertEquals(isAllZero(page), false);
    page[at] = 0;
  }
  assertEquals(isAllZero(new Uint8Array(4099).subarray(1, 4)), true);
});

Deno.test("hex() prints like Python's hex()", () => {
  assertEquals(hex(0), "0x0");
  assertEquals(hex(0x7040600070406n), "0x7040600070406");
  assertEquals(toHex(new Uint8Array([0, 0xab])), "00ab");
});

Deno.test("defineLayout() rejects a gap, an overlap and a wrong size", () => {
  assertThrows(
    () => defineLayout("gap", 8, [["a", 0, "u32"], ["b", 5, "u16"]]),
    Error,
    "expected 0x4",
  );
  assertThrows(() => defineLayout("size", 8, [["a", 0, "u32"]]), Error, "size is 0x8");
  assertThrows(() => defineLayout("bits", 8, [["a", 0, { bits: 3 }]], "bitfield"), Error, "3 bits");
});
