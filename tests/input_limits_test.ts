/** Input limits: spools stop at their cap, side inputs are capped, RAM ends below the MMIO hole. */
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { InputError } from "../lib/errors.ts";
import { readInputFile, spoolToTempFile } from "../lib/io/inputs.ts";
import { liveTemps } from "../lib/io/temp_files.ts";
import { checkGuestRamLimit, GUEST_RAM_LIMIT, roomBelowRamLimit } from "../lib/layout/ram_limit.ts";
import { planBzImageLayout } from "../lib/layout/bzimage_layout.ts";
import { parseSetupHeader, SETUP_HEADER_END } from "../lib/bzimage/setup_header.ts";
import { makeBzImage } from "../scripts/fixtures.ts";
import { checkArgsEncoding } from "../lib/cli/arg_encoding.ts";
import { UsageError } from "../lib/errors.ts";

/** A stream that never ends, counting what was pulled from it. */
function endless(counter: { bytes: number }): ReadableStream<Uint8Array> {
  const chunk = new Uint8Array(64 << 10);
  return new ReadableStream({
    pull(c) {
      counter.bytes += chunk.length;
      c.enqueue(chunk);
    },
  });
}

Deno.test("spoolToTempFile() stops an endless stream just past its limit and removes the spool", async () => {
  const pulled = { bytes: 0 };
  const before = liveTemps().length;
  await assertRejects(
    () => spoolToTempFile(endless(pulled), "-rdinit /dev/zero", { maxBytes: 4 << 20, why: "test" }),
    InputError,
    "-rdinit /dev/zero has more than 4194304 bytes",
  );
  assert(pulled.bytes <= (4 << 20) + (256 << 10), `pulled ${pulled.bytes} bytes`);
  assertEquals(liveTemps().length, before);
});

Deno.test("readInputFile() wants a regular file within its cap", async () => {
  await assertRejects(
    () => readInputFile("/dev/zero", "signing key"),
    InputError,
    "not a regular file",
  );
  const dir = await Deno.makeTempDir({ prefix: "igvmgen-cap-" });
  try {
    await Deno.writeFile(`${dir}/a`, new Uint8Array(100));
    assertEquals((await readInputFile(`${dir}/a`, "x", 100)).length, 100);
    await assertRejects(
      () => readInputFile(`${dir}/a`, "x", 99),
      InputError,
      "larger than 99 bytes",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the largest initrd that fits keeps every page and e820 entry below 0xc0000000", () => {
  const kernel = makeBzImage();
  const header = parseSetupHeader(kernel.subarray(0, SETUP_HEADER_END), kernel.length);
  const plan = (initrdLength: number) =>
    planBzImageLayout({
      header,
      payloadLength: kernel.length - header.payloadOffset,
      cmdlineLength: 10,
      initrdLength,
      acpiEnd: 0x110000,
      bootMode: "x86",
      pvalidateOpt: true,
    });
  const room = GUEST_RAM_LIMIT - plan(0).top;
  const fits = plan(room);
  assertEquals(fits.top, GUEST_RAM_LIMIT);
  checkGuestRamLimit(fits.top, "-rdinit x");
  for (const e of fits.e820) assert(e.addr + e.size <= GUEST_RAM_LIMIT, JSON.stringify(e));
  assertThrows(
    () => checkGuestRamLimit(plan(room + 1).top, "-rdinit x"),
    InputError,
    "-rdinit x: the guest memory would end at 0xc0001000, past 0xc0000000",
  );
  // The early cap (before spooling) is never tighter than what fits.
  assert(roomBelowRamLimit(header.prefAddress + header.initSize) >= room);
});

Deno.test("checkArgsEncoding() names the option whose value held U+FFFD", () => {
  checkArgsEncoding(["-append", "console=ttyS0 é"]);
  assertThrows(() => checkArgsEncoding(["-o", "x", "-append", "a\uFFFD"]), UsageError, "-append");
  assertThrows(() => checkArgsEncoding(["--o=a\uFFFD"]), UsageError, "the value of -o");
  assertThrows(() => checkArgsEncoding(["k\uFFFD"]), UsageError, "argument 1");
});
