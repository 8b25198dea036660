/**
 * Boots through a real IGVM loader: QEMU 10.2.2 built with IGVM (../shared/qemu-igvm) loads
 * `-native` images as ordinary VMs under TCG and Linux reaches /init; its guest shows the
 * parameter pages as QEMU fills them; and QEMU refuses what it must refuse, with its own
 * message. Skipped, with the reason, when ../shared, that QEMU, busybox or cpio is missing.
 */
import { assert, assertEquals } from "./assert.ts";
import {
  bootIgvmQemu,
  igvmQemuAccepts,
  parsePageDumps,
  smokePrerequisites,
} from "../lib/boot/smoke.ts";
import { makeBzImage } from "../scripts/fixtures.ts";
import {
  buildNativeInitramfs,
  buildSmokeImage,
  buildSmokeImageWithResult,
  NATIVE_CASES,
  PARAMETER_PAGES,
  QEMU_IGVM,
  QEMU_ROMS,
  qemuIgvmPrerequisites,
} from "../scripts/boot_smoke.ts";
import { type Directive, readIgvmFile } from "../lib/igvm/reader.ts";
import { IGVM_VHS_MEMORY_MAP_ENTRY, IGVM_VHS_PARAMETER } from "../lib/igvm/defs.ts";
import { HAVE_SHARED, runCli, tempDir } from "./helpers.ts";
import { fixHeaders } from "./igvm_edit.ts";

const missing = (HAVE_SHARED ? undefined : "../shared is absent") ?? smokePrerequisites() ??
  qemuIgvmPrerequisites();
if (missing) console.log(`note: boots through QEMU's IGVM loader skipped: ${missing}`);

/** One initramfs for every case (built once; tempDir removes it when the file ends). */
let shared: { dir: string; initramfs: string } | undefined;
async function initramfs(): Promise<{ dir: string; initramfs: string }> {
  if (!shared) {
    const dir = tempDir();
    shared = { dir, initramfs: await buildNativeInitramfs(`${dir}/initramfs`) };
  }
  return shared;
}

const MiB = 1 << 20;
const IGVM_MEMORY_MAP_ENTRY_TYPE_MEMORY = 0;

for (const c of NATIVE_CASES) {
  Deno.test({
    name: `boot smoke (QEMU's IGVM loader): ${c.name} reaches /init; its guest reads ${c.vcpus} ` +
      `vCPU(s) and a memory map starting with RAM in the parameter pages`,
    ignore: missing !== undefined,
    async fn() {
      const { dir, initramfs: cpio } = await initramfs();
      const { bytes, result } = await buildSmokeImageWithResult(dir, cpio, c.args);
      assertEquals(result.nativeMemory, 512 * MiB);
      const r = await bootIgvmQemu(bytes, {
        qemu: QEMU_IGVM,
        romPath: QEMU_ROMS,
        memoryBytes: result.nativeMemory!,
        vcpus: c.vcpus,
        timeoutSeconds: 120,
      });
      assert(r.booted, `no marker; last lines:\n${r.tail.join("\n")}`);
      // Linux booted on the NATIVE side: no SEV, the RSDP found through boot_params.
      assert(r.log.includes(`smp: Brought up 1 node, ${c.vcpus} CPU`), r.tail.join("\n"));
      assert(!/SEV-SNP|Memory Encryption Features active/.test(r.log), "booted as a SEV guest?");
      assert(/ACPI: RSDP 0x0000000000102000/.test(r.log), "the RSDP from boot_params");
      // The parameter pages, read by the guest from /dev/mem.
      const pages = parsePageDumps(r.log);
      const [vpPage, mapPage] = PARAMETER_PAGES.map((gpa) => pages.get(gpa));
      assert(vpPage && mapPage, "the guest printed both parameter pages");
      assertEquals(new DataView(vpPage.buffer).getUint32(0, true), c.vcpus, "VP_COUNT at 0");
      const e = IGVM_VHS_MEMORY_MAP_ENTRY.off;
      const map = new DataView(mapPage.buffer);
      // QEMU's e820 starts with the RAM below 4 GiB: all of -m.
      assertEquals(
        [
          map.getBigUint64(e.StartingGpaPageNumber, true),
          map.getBigUint64(e.NumberOfPages, true),
          map.getUint16(e.Type, true),
        ],
        [0n, BigInt(result.nativeMemory! / 4096), IGVM_MEMORY_MAP_ENTRY_TYPE_MEMORY],
      );
    },
  });
}

/** Sets u32 fields of a directive's body and redoes the header checksum. */
function patchBody(bytes: Uint8Array, offset: number, fields: [number, number][]): Uint8Array {
  const out = bytes.slice();
  const view = new DataView(out.buffer);
  for (const [at, value] of fields) view.setUint32(offset + 8 + at, value, true);
  return fixHeaders(out);
}

Deno.test({
  name: "boot smoke (QEMU's IGVM loader): with the original's parameter layout (VP count at 0, " +
    "memory map at 0x18 of one area) the guest reads 0 vCPUs and no RAM there, as " +
    "verify --loader qemu-kvm warns",
  ignore: missing !== undefined,
  async fn() {
    const { dir, initramfs: cpio } = await initramfs();
    const { bytes, result } = await buildSmokeImageWithResult(dir, cpio, NATIVE_CASES[2].args);
    const map = readIgvmFile(bytes).directives.find((d) => d.name === "IGVM_VHT_MEMORY_MAP")!;
    const p = IGVM_VHS_PARAMETER.off;
    const old = patchBody(bytes, map.offset, [[p.ParameterAreaIndex, 0], [p.ByteOffset, 0x18]]);
    Deno.writeFileSync(`${dir}/old.igvm`, old);
    const check = await runCli(["verify", "--loader", "qemu-kvm", `${dir}/old.igvm`]);
    assert(check.stdout.includes("warning: MEMORY_MAP at 0x18 of parameter area 0"), check.stdout);
    const r = await bootIgvmQemu(old, {
      qemu: QEMU_IGVM,
      romPath: QEMU_ROMS,
      memoryBytes: result.nativeMemory!,
      vcpus: 2,
      timeoutSeconds: 120,
    });
    assert(r.booted, `no marker; last lines:\n${r.tail.join("\n")}`);
    const page = parsePageDumps(r.log).get(PARAMETER_PAGES[0]);
    assert(page, "the guest printed the parameter page");
    const v = new DataView(page.buffer);
    const e = IGVM_VHS_MEMORY_MAP_ENTRY.off;
    // The first map entry (RAM from page 0) lies over the VP count; at 0x18 is the second.
    assertEquals(v.getUint32(0, true), 0, "the VP count the guest reads");
    assertEquals(v.getBigUint64(e.NumberOfPages, true), BigInt(result.nativeMemory! / 4096));
    assert(
      v.getUint16(0x18 + e.Type, true) !== IGVM_MEMORY_MAP_ENTRY_TYPE_MEMORY,
      "no RAM at 0x18",
    );
  },
});

/** Moves the first page that both platforms load to `gpa`, with the header checksum redone. */
function moveSharedPage(bytes: Uint8Array, gpa: number): Uint8Array {
  const shared = (d: Directive) =>
    d.name === "IGVM_VHT_PAGE_DATA" && d.fields.CompatibilityMask === 3n;
  return patchDirective(bytes, shared, 0, BigInt(gpa)); // the body's GPA comes first
}

Deno.test({
  name: "QEMU's IGVM loader refuses a hyperv-layout image and a NATIVE page at 0xA0000, " +
    "with its own messages",
  ignore: missing !== undefined,
  async fn() {
    const dir = tempDir();
    try {
      const cpio = `${dir}/empty.cpio`;
      Deno.writeFileSync(cpio, new Uint8Array(0));
      const boot = (bytes: Uint8Array) =>
        bootIgvmQemu(bytes, {
          qemu: QEMU_IGVM,
          romPath: QEMU_ROMS,
          memoryBytes: 512 * MiB,
          timeoutSeconds: 30,
        });
      const hyperv = await boot(await buildSmokeImage(dir, cpio, ["-boot_mode", "x64"]));
      assert(!hyperv.booted);
      assert(
        hyperv.log.includes("IGVM file does not describe a compatible supported platform"),
        hyperv.log,
      );
      const native = await buildSmokeImage(dir, cpio, ["-target", "qemu-kvm", "-native"]);
      const legacy = await boot(moveSharedPage(native, 0xa0000));
      assert(!legacy.booted);
      assert(
        legacy.log.includes(
          "Could not prepare memory at address 0xA0000 due to existing non-RAM region",
        ),
        legacy.log,
      );
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

/** KVM-target option sets beyond the boot cases: boot modes, pvalidate, C-bit, ACPI, vCPUs. */
const LOAD_CASES = [
  ["-target", "qemu-kvm", "-boot_mode", "x86", "-pvalidate_opt", "0"],
  ["-target", "qemu-kvm", "-boot_mode", "x64", "-encrypted_page", "0"],
  ["-target", "qemu-kvm", "-boot_mode", "x64", "-pvalidate_opt", "0", "-acpi_profile", "clh"],
  ["-target", "qemu-kvm", "-boot_mode", "x64", "-vcpus", "8", "-cpu", "genoa"],
  ["-target", "qemu-kvm", "-boot_mode", "x86", "-vcpus", "3", "-cpu", "0x00a00f11"],
  ["-target", "ch-kvm", "-boot_mode", "x86", "-acpi_profile", "clh", "-vcpus", "2"],
  ["-target", "ch-kvm", "-boot_mode", "x64", "-pvalidate_opt", "0", "-encrypted_page", "0"],
];

Deno.test({
  name: "QEMU's IGVM loader (libigvm 0.4.0) takes -native KVM-target images of every option set, " +
    "SEV-SNP headers included, and refuses them without -native (no SEV-SNP under TCG)",
  ignore: missing !== undefined,
  async fn() {
    const dir = tempDir();
    try {
      Deno.writeFileSync(`${dir}/bzImage`, makeBzImage());
      Deno.writeFileSync(`${dir}/initrd`, new Uint8Array(100_000).fill(0x5a));
      for (const args of LOAD_CASES) {
        for (const native of [true, false]) {
          const out = `${dir}/o.igvm`;
          const r = await runCli([
            "-o",
            out,
            "-kernel",
            `${dir}/bzImage`,
            "-rdinit",
            `${dir}/initrd`,
            ...args,
            ...(native ? ["-native"] : []),
          ]);
          assertEquals(r.code, 0, r.stderr);
          const vcpus = args.includes("-vcpus") ? Number(args[args.indexOf("-vcpus") + 1]) : 1;
          const loaded = await igvmQemuAccepts(Deno.readFileSync(out), {
            qemu: QEMU_IGVM,
            romPath: QEMU_ROMS,
            memoryBytes: 512 * MiB,
            vcpus,
          });
          const what = `${args.join(" ")}${native ? " -native" : ""}`;
          if (native) assertEquals(loaded, { accepted: true, message: "" }, what);
          else {
            assertEquals(loaded.accepted, false, what);
            assert(loaded.message.includes("does not describe a compatible supported platform"));
          }
        }
      }
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

/** Sets a u32 or u64 field of the first directive `pick` finds, header checksum redone. */
function patchDirective(
  bytes: Uint8Array,
  pick: (d: Directive) => boolean,
  at: number,
  value: number | bigint,
): Uint8Array {
  const out = bytes.slice();
  const d = readIgvmFile(out).directives.find(pick)!;
  const view = new DataView(out.buffer);
  if (typeof value === "bigint") view.setBigUint64(d.offset + 8 + at, value, true);
  else view.setUint32(d.offset + 8 + at, value, true);
  return fixHeaders(out);
}

Deno.test({
  name: "QEMU's IGVM loader refuses a VP context of two platforms and pages or inserts on its " +
    "HPET or I/O APIC; verify refuses each, naming QEMU's reason; QEMU takes a page of " +
    "mask 0 and one at 2^62 without a word, and verify refuses them too",
  ignore: missing !== undefined,
  async fn() {
    const dir = tempDir();
    try {
      const cpio = `${dir}/empty.cpio`;
      Deno.writeFileSync(cpio, new Uint8Array(0));
      const native = await buildSmokeImage(dir, cpio, ["-target", "qemu-kvm", "-native"]);
      type D = ReturnType<typeof readIgvmFile>["directives"][number];
      const vp = (mask: bigint) => (d: D) =>
        d.name === "IGVM_VHT_VP_CONTEXT" && d.fields.CompatibilityMask === mask;
      const shared = (d: D) => d.name === "IGVM_VHT_PAGE_DATA" && d.fields.CompatibilityMask === 3n;
      const insert = (d: D) => d.name === "IGVM_VHT_PARAMETER_INSERT";
      const MASK = 8; // the CompatibilityMask field of VP_CONTEXT, PAGE_DATA and PARAMETER_INSERT
      const twoPlatforms = "VP_CONTEXT mask 0x3 names more than one platform";
      const nonRam = (gpa: number) =>
        `Could not prepare memory at address 0x${
          gpa.toString(16).toUpperCase()
        } due to existing non-RAM region`;
      // [name, file, QEMU's message, the verify command's arguments, verify's reason]
      const refused: [string, Uint8Array, string, string[], string][] = [
        [
          "snp-vp",
          patchDirective(native, vp(1n), MASK, 3),
          "Unable to parse IGVM file",
          [],
          twoPlatforms,
        ],
        [
          "native-vp",
          patchDirective(native, vp(2n), MASK, 3),
          "Unable to parse IGVM file",
          [],
          twoPlatforms,
        ],
        [
          "hpet",
          patchDirective(native, shared, 0, 0xfed0_0000n),
          nonRam(0xfed0_0000),
          ["--loader", "qemu-kvm"],
          `page at 0xfed00000 overlaps the HPET at 0xfed00000-0xfed003ff, which QEMU maps as a ` +
          `device, not RAM: QEMU stops`,
        ],
        [
          "ioapic-insert",
          patchDirective(native, insert, 0, 0xfec0_0000n),
          nonRam(0xfec0_0000),
          ["--loader", "qemu-kvm"],
          `PARAMETER_INSERT at 0xfec00000 overlaps the I/O APIC`,
        ],
      ];
      const options = {
        qemu: QEMU_IGVM,
        romPath: QEMU_ROMS,
        memoryBytes: 512 * MiB,
        timeoutSeconds: 60,
      };
      for (const [name, bytes, message, args, reason] of refused) {
        const loaded = await igvmQemuAccepts(bytes, options);
        assertEquals(loaded.accepted, false, `${name}: QEMU took it`);
        assert(loaded.message.includes(message), `${name}: ${loaded.message}`);
        const path = `${dir}/${name}.igvm`;
        Deno.writeFileSync(path, bytes);
        const v = await runCli(["verify", ...args, path]);
        assertEquals(v.code, 1, `${name}: ${v.stdout}${v.stderr}`);
        assert(v.stdout.includes(reason), `${name}: ${v.stdout}`);
      }
      // QEMU takes these without a word, but no guest gets the page (QEMU skips the first and
      // maps the second beyond the guest's physical addresses), so verify refuses them.
      const quiet: [string, Uint8Array, string][] = [
        ["mask0", patchDirective(native, shared, MASK, 0), "PAGE_DATA mask 0x0 names no platform"],
        ["2^62", patchDirective(native, shared, 0, 1n << 62n), "ends beyond 2^52"],
      ];
      for (const [name, bytes, reason] of quiet) {
        assertEquals(await igvmQemuAccepts(bytes, options), { accepted: true, message: "" }, name);
        const path = `${dir}/quiet.igvm`;
        Deno.writeFileSync(path, bytes);
        const v = await runCli(["verify", path]);
        assertEquals(v.code, 1, `${name}: ${v.stdout}${v.stderr}`);
        assert(v.stdout.includes(reason), `${name}: ${v.stdout}`);
      }
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
