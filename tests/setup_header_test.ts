import { assertEquals, assertThrows } from "./assert.ts";
import { BzImageError, parseSetupHeader, payloadLength } from "../lib/bzimage/setup_header.ts";
import { FIXTURES, HAVE_SHARED } from "./helpers.ts";

/** A minimal valid header region: HdrS, 64-bit entry, pref 16 MiB, init_size 32 MiB. */
export function syntheticBzImageHead(): Uint8Array {
  const b = new Uint8Array(0x400);
  const v = new DataView(b.buffer);
  b[0x1f1] = 1; // setup_sects
  v.setUint32(0x202, 0x53726448, true);
  v.setUint16(0x206, 0x20f, true);
  v.setUint16(0x236, 0x1, true);
  v.setBigUint64(0x258, 0x1000000n, true);
  v.setUint32(0x260, 0x2000000, true);
  return b;
}

Deno.test({
  name: "parseSetupHeader() reads the Debian kernel's header",
  ignore: !HAVE_SHARED,
  fn() {
    const f = Deno.readFileSync(`${FIXTURES}vmlinuz-6.1.0-56-amd64`);
    const h = parseSetupHeader(f.subarray(0, 0x1000), f.length);
    assertEquals(h.version, 0x20f);
    assertEquals(h.setupSects, 39);
    assertEquals(h.prefAddress, 0x1000000);
    assertEquals(h.initSize, 0x3f98000);
    assertEquals(h.xloadflags, 0x7f);
    assertEquals(h.payloadOffset, 40 * 512);
    assertEquals(payloadLength(h, f.length), 8247232 - 40 * 512);
  },
});

Deno.test("parseSetupHeader() accepts a minimal synthetic header", () => {
  const h = parseSetupHeader(syntheticBzImageHead(), 0x400);
  assertEquals(h.payloadOffset, 1024);
  assertEquals(payloadLength(h, 0x400), 0);
});

Deno.test("parseSetupHeader() rejects what the boot flow cannot place", () => {
  const cases: [string, (b: Uint8Array, v: DataView) => void, string][] = [
    ["no magic", (b) => b[0x202] = 0, "HdrS"],
    ["no 64-bit entry", (_, v) => v.setUint16(0x236, 0, true), "64-bit entry point"],
    ["pref below 3 MiB", (_, v) => v.setBigUint64(0x258, 0x200000n, true), "not above 3 MiB"],
    ["pref at exactly 3 MiB", (_, v) => v.setBigUint64(0x258, 0x300000n, true), "not above 3 MiB"],
    ["unaligned pref", (_, v) => v.setBigUint64(0x258, 0x1000800n, true), "not page aligned"],
    [
      "huge pref (found by fuzzing)",
      (_, v) => v.setBigUint64(0x258, 0x7f7f7f7fa00000n, true),
      "out of range",
    ],
    ["unaligned init_size", (_, v) => v.setUint32(0x260, 0x2000100, true), "init_size"],
  ];
  for (const [what, mutate, message] of cases) {
    const b = syntheticBzImageHead();
    mutate(b, new DataView(b.buffer));
    const e = assertThrows(() => parseSetupHeader(b, b.length), BzImageError, message);
    assertEquals(e.message.includes(message), true, what);
  }
  assertThrows(() => parseSetupHeader(new Uint8Array(100), 100), BzImageError, "too short");
});
