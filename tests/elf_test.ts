import { assert, assertEquals, assertThrows } from "./assert.ts";
import { ElfError, flatBinary, parseElf64, sectionByName, symbolByName } from "../lib/elf/elf64.ts";
import { earlyAreasFromSymbols } from "../lib/layout/early_areas.ts";
import { makeBzImage, makeElf } from "../scripts/fixtures.ts";
import { FIXTURES, HAVE_SHARED, REFERENCE, tempDir } from "./helpers.ts";

const HAVE_OBJCOPY = (() => {
  try {
    new Deno.Command("objcopy", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync();
    return true;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "flatBinary() of test_elf equals the original's objcopy -O binary image",
  ignore: !HAVE_SHARED,
  fn() {
    const image = flatBinary(parseElf64(Deno.readFileSync(`${FIXTURES}test_elf`)));
    const expected = Deno.readFileSync(`${REFERENCE}tests/test_elf.binary`);
    assertEquals(image.length, expected.length);
    assert(image.every((b, i) => b === expected[i]), "bytes differ");
  },
});

Deno.test({
  name: "flatBinary() of a synthetic ELF equals what objcopy makes of it",
  ignore: !HAVE_OBJCOPY,
  async fn() {
    const dir = tempDir();
    const elf = makeElf({ textLength: 0x123, dataLength: 0x45 });
    Deno.writeFileSync(`${dir}/a.elf`, elf);
    const r = await new Deno.Command("objcopy", {
      args: ["-O", "binary", `${dir}/a.elf`, `${dir}/a.bin`],
    }).output();
    assertEquals(r.code, 0);
    const expected = Deno.readFileSync(`${dir}/a.bin`);
    const image = flatBinary(parseElf64(elf));
    assertEquals(image.length, expected.length);
    assert(image.every((b, i) => b === expected[i]), "bytes differ");
    Deno.removeSync(dir, { recursive: true });
  },
});

Deno.test("parseElf64() reads sections, the entry point and symbols", () => {
  const elf = parseElf64(makeElf({ entry: 0x1010 }));
  assertEquals(elf.entry, 0x1010);
  assertEquals(sectionByName(elf, ".text").addr, 0x1000);
  assertEquals(symbolByName(elf, "boot_stack"), {
    name: "boot_stack",
    value: 0x14000,
    size: 0x4000,
  });
  assertThrows(() => symbolByName(elf, "nope"), ElfError, "no symbol nope");
  assertThrows(() => sectionByName(elf, ".bss"), ElfError, "no .bss section");
});

Deno.test("earlyAreasFromSymbols() relocates pgtable to the end of init_size", () => {
  const elf = parseElf64(makeElf());
  // _end 0x20000, pgtable 0x19000: relocated to init_size - 0x20000 + 0x19000.
  assertEquals(earlyAreasFromSymbols(elf, 0x100000), [
    { offset: 0x14000, size: 0x4000 },
    { offset: 0x100000 - 0x7000, size: 0x7000 },
  ]);
});

Deno.test("parseElf64() rejects malformed files with a reason", () => {
  const good = makeElf();
  const mutate = (f: (b: Uint8Array, v: DataView) => void) => {
    const b = good.slice();
    f(b, new DataView(b.buffer));
    return b;
  };
  const shoff = Number(new DataView(good.buffer).getBigUint64(0x28, true));
  const cases: [string, Uint8Array, string][] = [
    ["a bzImage", makeBzImage(), "no ELF magic"],
    ["empty", new Uint8Array(0), "no ELF magic"],
    ["truncated header", good.slice(0, 40), "truncated"],
    ["truncated sections", good.slice(0, shoff + 10), "section headers run past the end"],
    ["32-bit", mutate((b) => b[4] = 1), "only 64-bit"],
    ["big-endian", mutate((b) => b[5] = 2), "big-endian"],
    ["wrong machine", mutate((_, v) => v.setUint16(0x12, 3, true)), "not x86-64"],
    ["bad phentsize", mutate((_, v) => v.setUint16(0x36, 32, true)), "e_phentsize"],
    [
      "segment past the end",
      mutate((_, v) => v.setBigUint64(64 + 0x20, 1n << 30n, true)),
      "segment 0 runs past",
    ],
    [
      "section past the end",
      mutate((_, v) => v.setBigUint64(shoff + 64 + 0x20, 1n << 30n, true)),
      "section 1 runs past",
    ],
    ["bad shstrndx", mutate((_, v) => v.setUint16(0x3e, 99, true)), "e_shstrndx"],
    ["huge offset", mutate((_, v) => v.setBigUint64(0x28, 1n << 62n, true)), "out of range"],
  ];
  for (const [what, bytes, reason] of cases) {
    const e = assertThrows(() => parseElf64(bytes), ElfError);
    assert(e.message.includes(reason), `${what}: "${e.message}" lacks "${reason}"`);
  }
});

Deno.test("parseElf64() rejects overlapping loadable segments", () => {
  const b = makeElf();
  const v = new DataView(b.buffer);
  // Make two program headers: the second a copy of the first (same addresses).
  const two = new Uint8Array(b.length + 0);
  two.set(b);
  const tv = new DataView(two.buffer);
  tv.setUint16(0x38, 2, true);
  two.copyWithin(64 + 56, 64, 64 + 56);
  assertEquals(v.getUint16(0x38, true), 1);
  assertThrows(() => parseElf64(two), ElfError, "overlap");
});
