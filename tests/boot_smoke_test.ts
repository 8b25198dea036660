/**
 * The boot smoke test: the IGVM -> PVH ELF converter checked on its own, then real boots of
 * the Debian kernel in QEMU (TCG) when qemu-system-x86, busybox-static and cpio are installed
 * and ../shared is there; otherwise those are skipped with the reason printed.
 */
import { assert, assertEquals } from "./assert.ts";
import { igvmToPvhElf } from "../lib/boot/pvh_elf.ts";
import { buildTrampoline } from "../lib/boot/trampoline.ts";
import {
  bootSmoke,
  buildInitramfs,
  parsePageDumps,
  smokePrerequisites,
} from "../lib/boot/smoke.ts";
import { PT_LOAD } from "../lib/elf/elf64.ts";
import { readIgvmFile } from "../lib/igvm/reader.ts";
import { buildSmokeImage, SMOKE_CASES } from "../scripts/boot_smoke.ts";
import { generateImage, HAVE_SHARED, tempDir } from "./helpers.ts";

const missing = smokePrerequisites() ??
  (HAVE_SHARED ? undefined : "../shared (the Debian kernel) is absent");
if (missing) console.log(`note: QEMU boot smoke tests skipped: ${missing}`);

const image = (args: string[]) => generateImage(args);

Deno.test("buildTrampoline() masks the PIC, loads the GDT, and far-jumps through the image's CS", () => {
  const t = buildTrampoline(0x200000, {
    longMode: false,
    gdtBase: 0x346e068,
    gdtLimit: 0x2f,
    codeSelector: 8,
    dataSelector: 0x18,
    cr0: 1,
    cr3: 0,
    cr4: 0,
    efer: 0,
    rip: 0x1000000,
    rsi: 0x346e098,
    rsp: 0x3471000,
  });
  assertEquals([...t.subarray(0, 7)], [0xfa, 0xb0, 0xff, 0xe6, 0x21, 0xe6, 0xa1]); // cli; mask both 8259s
  assertEquals([...t.subarray(7, 14)], [0x0f, 0x01, 0x15, 0x00, 0x08, 0x20, 0x00]); // lgdt [0x200800]
  assertEquals([...t.subarray(14, 21)], [0xea, 0x15, 0x00, 0x20, 0x00, 0x08, 0x00]); // ljmp 0x8:0x200015
  const v = new DataView(t.buffer);
  assertEquals([v.getUint16(0x800, true), v.getUint32(0x802, true)], [0x2f, 0x346e068]);
});

Deno.test("igvmToPvhElf() writes a PVH note, loads the pages, adds e820 RAM and moves the RSDP", async () => {
  const bytes = await image(["-boot_mode", "x64", "-encrypted_page", "1"]);
  const r = igvmToPvhElf(bytes, { memoryBytes: 1 << 30 });
  // Program headers, read directly (a PVH ELF needs no section headers).
  const ev = new DataView(r.elf.buffer);
  const segments = Array.from({ length: ev.getUint16(56, true) }, (_, i) => {
    const at = Number(ev.getBigUint64(32, true)) + 56 * i;
    return {
      type: ev.getUint32(at, true),
      offset: Number(ev.getBigUint64(at + 8, true)),
      paddr: Number(ev.getBigUint64(at + 24, true)),
      memsz: Number(ev.getBigUint64(at + 40, true)),
    };
  });
  const elf = { segments };
  const note = elf.segments.find((s) => s.type === 4)!;
  const nv = new DataView(r.elf.buffer, note.offset);
  assertEquals([
    nv.getUint32(8, true),
    new TextDecoder().decode(r.elf.subarray(note.offset + 12, note.offset + 15)),
  ], [18, "Xen"]);
  assertEquals(Number(nv.getBigUint64(16, true)), r.trampoline);
  const loads = elf.segments.filter((s) => s.type === PT_LOAD);
  const inLoad = (gpa: number) => loads.some((s) => s.paddr <= gpa && gpa < s.paddr + s.memsz);
  assert(
    inLoad(r.trampoline) && inLoad(0x1000000) && inLoad(0x100000),
    "trampoline, kernel and ACPI loaded",
  );
  assert(!inLoad(0xe0000), "nothing in the BIOS area");
  assert(
    r.notes.some((n) => /cleared the C-bit in [1-9]\d* page-table entries/.test(n)),
    r.notes.join("; "),
  );
  assert(r.notes.some((n) => n.startsWith("moved the RSDP")), r.notes.join("; "));
  // The VMSA page is not guest memory.
  const vp = readIgvmFile(bytes).directives.find((d) => d.name === "IGVM_VHT_VP_CONTEXT")!;
  assert(!inLoad(Number(vp.fields.GPA)), "the VMSA is not loaded as memory");
});

Deno.test("igvmToPvhElf() on a -target qemu-kvm image: registers from the VMSA at 0xFFFFFFFFF000, which is not RAM", async () => {
  const bytes = await image(["-target", "qemu-kvm", "-boot_mode", "x64"]);
  const file = readIgvmFile(bytes);
  const vmsa = file.pages.get(0xffff_ffff_f000)!;
  const r = igvmToPvhElf(bytes, { memoryBytes: 1 << 30 });
  assertEquals(
    r.entry,
    Number(new DataView(vmsa.buffer, vmsa.byteOffset).getBigUint64(0x178, true)),
  );
  assert(r.longMode);
  const ev = new DataView(r.elf.buffer);
  const top = Array.from({ length: ev.getUint16(56, true) }, (_, i) => {
    const at = Number(ev.getBigUint64(32, true)) + 56 * i;
    return Number(ev.getBigUint64(at + 24, true)) + Number(ev.getBigUint64(at + 40, true));
  });
  assert(Math.max(...top) < 0x1_0000_0000, "nothing loaded at 0xFFFFFFFFF000");
  assert(!r.notes.some((n) => n.startsWith("moved the RSDP")), "no RSDP in the BIOS area to move");
});

for (const c of SMOKE_CASES) {
  Deno.test({
    name: `boot smoke: ${c.name} reaches /init in QEMU`,
    ignore: missing !== undefined,
    async fn() {
      const dir = tempDir();
      const r = await bootSmoke(await buildSmokeImage(dir, await buildInitramfs(dir), c.args));
      assert(r.booted, `no marker; last lines:\n${r.tail.join("\n")}`);
      if (c.args.includes("-target")) {
        // The KVM layout has nothing below 1 MiB: Linux found the RSDP through boot_params.
        const rsdp = /ACPI: RSDP 0x([0-9A-F]+)/.exec(r.log);
        assert(rsdp && parseInt(rsdp[1], 16) >= 0x100000, `RSDP: ${rsdp?.[0]}`);
        assert(!r.notes.some((n) => n.startsWith("moved the RSDP")), r.notes.join("; "));
      }
      Deno.removeSync(dir, { recursive: true });
    },
  });
}

/** Patches a u64 of the VMSA inside IGVM bytes (the file's VP_CONTEXT data page). */
function patchVmsa(bytes: Uint8Array, offsetInVmsa: number, value: bigint): Uint8Array {
  const out = bytes.slice();
  const vp = readIgvmFile(out).directives.find((d) => d.name === "IGVM_VHT_VP_CONTEXT")!;
  new DataView(out.buffer).setBigUint64(Number(vp.fields.FileOffset) + offsetInVmsa, value, true);
  return out;
}

Deno.test({
  name: "boot smoke: broken images (wrong RSI, corrupted boot_params) fail and show the serial log",
  ignore: missing !== undefined,
  async fn() {
    const dir = tempDir();
    const good = await buildSmokeImage(dir, await buildInitramfs(dir), []);
    const vmsa = new DataView(readIgvmFile(good).pages.get(0x803000)!.buffer);
    const rsi = vmsa.getBigUint64(readIgvmFile(good).pages.get(0x803000)!.byteOffset + 0x330, true);
    const wrongRsi = patchVmsa(good, 0x330, rsi + 0x1000n);
    // Corrupted boot_params: the command-line pointer aimed at an empty page.
    const file = readIgvmFile(good);
    const bpPage = Number(rsi) & ~0xfff;
    const bp = file.directives.find((d) =>
      d.name === "IGVM_VHT_PAGE_DATA" && Number(d.fields.GPA) === bpPage
    )!;
    const corrupted = good.slice();
    new DataView(corrupted.buffer).setUint32(
      Number(bp.fields.FileOffset) + (Number(rsi) & 0xfff) + 0x228,
      0x200000,
      true,
    );
    for (
      const [what, bytes] of [["wrong RSI", wrongRsi], [
        "corrupted boot_params",
        corrupted,
      ]] as const
    ) {
      const r = await bootSmoke(bytes, { timeoutSeconds: 30 });
      assert(!r.booted, `${what}: booted anyway`);
      assert(r.tail.length > 0, `${what}: the serial log's last lines are reported`);
    }
    Deno.removeSync(dir, { recursive: true });
  },
});

Deno.test("parsePageDumps() skips console lines between a page's rows and leaves out a page missing one", () => {
  const rows = (fill: string) =>
    Array.from(
      { length: 16 },
      (_, i) =>
        `${(i * 16).toString(16).padStart(6, "0")} ${
          `${fill}${i.toString(16)}`.padStart(8, "0")
        } ` +
        "00000000 00000000 00000000",
    );
  const page1 = rows("a");
  const page2 = rows("b").filter((_, i) => i !== 7); // row 0x70 lost
  const log = [
    "IGVMGEN-PAGE 0x1000",
    ...page1.slice(0, 5),
    "[    3.141592] random: crng init done",
    ...page1.slice(5),
    "IGVMGEN-PAGE 0x2000",
    ...page2,
  ].join("\r\n");
  const pages = parsePageDumps(log);
  assertEquals([...pages.keys()], [0x1000]);
  const view = new DataView(pages.get(0x1000)!.buffer);
  for (let i = 0; i < 16; i++) assertEquals(view.getUint32(i * 16, true), 0xa0 + i, `row ${i}`);
});
