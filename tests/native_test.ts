/**
 * `-native`: a NATIVE platform beside SEV-SNP in `-target qemu-kvm|ch-kvm` images. The SEV-SNP
 * side (its directives, launch measurement, ID block, measurement JSON) is the same as without
 * `-native`; the NATIVE side shares every other page and has its own boot_params, page
 * tables and VP context. Booting such images is tests/qemu_igvm_test.ts.
 */
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { runCli, sha256Hex, tempDir } from "./helpers.ts";
import { HAVE_OPENSSL, opensslP384Key } from "./sign_helpers.ts";
import { makeBzImage } from "../scripts/fixtures.ts";
import { type Directive, headerSectionChecksum, readIgvmFile } from "../lib/igvm/reader.ts";
import { IGVM_FIXED_HEADER } from "../lib/igvm/defs.ts";
import {
  IGVM_NATIVE_VP_CONTEXT_X64,
  nativeSegmentAttributes,
  nativeVpContextOf,
} from "../lib/x86/native_context.ts";
import { VMCB_SAVE_AREA, VMCB_SEG } from "../lib/x86/vmsa.ts";
import { BOOT_E820_ENTRY, BOOT_PARAMS } from "../lib/bzimage/boot_params.ts";
import { NATIVE_MAX_RAM, nativeRamEnd } from "../lib/layout/bzimage_layout.ts";
import { InputError } from "../lib/errors.ts";
import { writeIgvm } from "../lib/write/igvm_writer.ts";
import { SparseMemory } from "../lib/layout/sparse_memory.ts";
import type { GuestImage } from "../lib/layout/guest_image.ts";

const KVM_VMSA_GPA = 0xffff_ffff_f000;
const MiB = 1 << 20;

/** Generates an image of the synthetic bzImage into `dir`; returns its bytes and stderr. */
async function generate(dir: string, name: string, args: string[]) {
  const kernel = `${dir}/bzImage`;
  try {
    Deno.statSync(kernel);
  } catch {
    Deno.writeFileSync(kernel, makeBzImage());
  }
  const out = `${dir}/${name}.igvm`;
  const r = await runCli([
    "-o",
    out,
    "-kernel",
    kernel,
    "-measurement_file",
    `${dir}/${name}.json`,
    ...args,
  ]);
  assertEquals(r.code, 0, r.stderr);
  return {
    bytes: Deno.readFileSync(out),
    json: Deno.readTextFileSync(`${dir}/${name}.json`),
    stderr: r.stderr,
    path: out,
  };
}

const mask = (d: Directive) => Number(d.fields.CompatibilityMask ?? 0n);
const gpa = (d: Directive) => Number(d.fields.GPA ?? 0n);
const u64 = (bytes: Uint8Array, at: number) => new DataView(bytes.buffer).getBigUint64(at, true);

/**
 * What the SEV-SNP platform loads, directive by directive: type, fields but the mask, and the
 * hash of the file data. Directives without a mask (parameters, ID block...) come whole.
 */
function snpSide(bytes: Uint8Array): string[] {
  const file = readIgvmFile(bytes);
  return file.directives.filter((d) => d.fields.CompatibilityMask === undefined || mask(d) & 1)
    .filter((d) => !(d.name === "IGVM_VHT_SUPPORTED_PLATFORM" && mask(d) !== 1))
    .map((d) => {
      const { CompatibilityMask: _, FileOffset, ...fields } = d.fields;
      const at = Number(FileOffset ?? 0n);
      const data = at ? sha256Hex(bytes.subarray(at, at + 4096)) : "";
      // Bodies hold the mask and file offset; the ID block's must be the same bytes.
      const whole = d.fields.CompatibilityMask === undefined || d.name === "IGVM_VHT_SNP_ID_BLOCK";
      const json = JSON.stringify(fields, (_, v) => typeof v === "bigint" ? String(v) : v);
      return `${d.name} ${json} ${data} ${whole ? sha256Hex(d.body) : ""}`;
    });
}

const CONFIGS = [
  ["-target", "qemu-kvm", "-boot_mode", "x64"],
  ["-target", "qemu-kvm", "-boot_mode", "x86"],
  ["-target", "qemu-kvm", "-boot_mode", "x64", "-vcpus", "2", "-cpu", "milan"],
  ["-target", "ch-kvm", "-boot_mode", "x64", "-rdinit", "INITRD"],
];

Deno.test({
  name:
    "-native (x64, x86, 2 vCPUs, ch-kvm with an initrd): the SEV-SNP directives, launch measurement, ID block and measurement JSON equal those without -native",
  ignore: !HAVE_OPENSSL,
  async fn() {
    const dir = tempDir();
    try {
      opensslP384Key(`${dir}/key.pem`);
      Deno.writeFileSync(`${dir}/initrd`, new Uint8Array(300_000).map((_, i) => i * 7));
      for (const config of CONFIGS) {
        const args = [
          ...config.map((a) => a === "INITRD" ? `${dir}/initrd` : a),
          "-sign_key",
          `${dir}/key.pem`,
          "-sign_deterministic",
          "1",
        ];
        const plain = await generate(dir, "plain", args);
        const native = await generate(dir, "native", [...args, "-native"]);
        const what = config.join(" ");
        assertEquals(native.json, plain.json, what);
        const measurement = (s: string) => /launch measurement ([0-9a-f]{96})/.exec(s)?.[1];
        assertEquals(measurement(native.stderr), measurement(plain.stderr), what);
        assertEquals(snpSide(native.bytes), snpSide(plain.bytes), what);
        // And the loaders' models agree, for the host the ID block is for.
        const host = config.includes("-vcpus") ? ["--vcpus", "2", "--cpu", "milan"] : [];
        for (const loader of ["hyperv", config[1]]) {
          const kvm = loader === "hyperv" ? [] : host;
          const [a, b] = await Promise.all(
            [native.path, plain.path].map((p) =>
              runCli(["measure", p, "--loader", loader, ...kvm])
            ),
          );
          assertEquals([a.code, a.stdout], [0, b.stdout], `${what}: measure --loader ${loader}`);
        }
        const check = await runCli(["verify", "--loader", config[1], ...host, native.path]);
        assertEquals(check.code, 0, check.stdout);
      }
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test("-native: two platforms; CPUID, secrets, VMSA, policy and ID block SEV-SNP only; shared pages carry both bits; NATIVE pages after the VMSA; nothing in 0xa0000-0xfffff", async () => {
  const dir = tempDir();
  try {
    const { bytes } = await generate(dir, "n", ["-target", "qemu-kvm", "-native"]);
    const ds = readIgvmFile(bytes).directives;
    const platforms = ds.filter((d) => d.name === "IGVM_VHT_SUPPORTED_PLATFORM").map((d) => [
      mask(d),
      Number(d.fields.PlatformType),
      Number(d.fields.PlatformVersion),
      Number(d.fields.HighestVtl),
    ]);
    assertEquals(platforms, [[1, 2, 1, 0], [2, 0, 1, 0]]); // SEV-SNP, then NATIVE version 1
    for (const name of ["IGVM_VHT_SNP_POLICY", "IGVM_VHT_SNP_ID_BLOCK"]) {
      assertEquals(ds.filter((d) => d.name === name).map(mask), [1], name);
    }
    const pages = ds.filter((d) => d.name === "IGVM_VHT_PAGE_DATA");
    const typed = pages.filter((d) => Number(d.fields.DataType) !== 0);
    assertEquals(typed.map(mask), [1, 1]); // CPUID and secrets
    const contexts = ds.filter((d) => d.name === "IGVM_VHT_VP_CONTEXT");
    assertEquals(contexts.map((d) => [gpa(d), mask(d), Number(d.fields.VpIndex)]), [
      [KVM_VMSA_GPA, 1, 0],
      [0, 2, 0],
    ]);
    assertEquals(
      ds.filter((d) => d.name === "IGVM_VHT_PARAMETER_INSERT").map(mask),
      [3, 3],
    );
    // Headers are in file order; page directives are made on access, so compare offsets.
    const vmsaAt = contexts[0].offset;
    const nativeOnly = pages.filter((d) => mask(d) === 2);
    assert(nativeOnly.length > 0 && nativeOnly.every((d) => d.offset > vmsaAt));
    const replaced = new Set(nativeOnly.map(gpa));
    for (const d of pages.filter((d) => Number(d.fields.DataType) === 0)) {
      const expected = mask(d) === 2 ? 2 : replaced.has(gpa(d)) ? 1 : 3;
      assertEquals(mask(d), expected, `page 0x${gpa(d).toString(16)}`);
    }
    assert(pages.every((d) => gpa(d) < 0xa0000 || gpa(d) >= 0x100000));
    assert(pages.every((d) => gpa(d) >= 0x100000), "no page below 1 MiB at all");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("nativeVpContextOf() converts the VMSA: attributes to descriptor bits 15:12, CR3 without the C-bit, EFER without SVME, the rest of the page zero", async () => {
  const dir = tempDir();
  try {
    for (const [mode, codeAttributes] of [["x64", 0xa09b], ["x86", 0xc09b]] as const) {
      const { bytes } = await generate(dir, mode, [
        "-target",
        "qemu-kvm",
        "-boot_mode",
        mode,
        "-native",
      ]);
      const file = readIgvmFile(bytes);
      const vmsa = file.pages.get(KVM_VMSA_GPA)!;
      const native = file.directives.find((d) =>
        d.name === "IGVM_VHT_VP_CONTEXT" && mask(d) === 2
      )!;
      const at = Number(native.fields.FileOffset);
      const page = bytes.slice(at, at + 4096);
      assertEquals([...page], [...nativeVpContextOf(vmsa)], mode);
      const n = IGVM_NATIVE_VP_CONTEXT_X64.off;
      const s = VMCB_SAVE_AREA.off;
      const v = new DataView(page.buffer);
      // Known answers: flat 32/64-bit code (access 0x9b, G and L or D/B) and data (0x93, G, B).
      assertEquals(v.getUint16(n.code_attributes, true), codeAttributes, mode);
      assertEquals(v.getUint16(n.data_attributes, true), 0xc093, mode);
      assertEquals(v.getUint32(n.code_limit, true), 0xffff_ffff);
      for (const r of ["rip", "rsp", "rsi", "rflags", "cr0", "cr4"] as const) {
        assertEquals(v.getBigUint64(n[r], true), u64(vmsa, vmsa.byteOffset + s[r]), `${mode} ${r}`);
      }
      const vmsaCr3 = u64(vmsa, vmsa.byteOffset + s.cr3);
      assertEquals(v.getBigUint64(n.cr3, true), vmsaCr3 & ~(1n << 51n), mode);
      assertEquals(v.getBigUint64(n.efer, true), u64(vmsa, vmsa.byteOffset + s.efer) & ~0x1000n);
      assertEquals(
        v.getBigUint64(n.gdtr_base, true),
        u64(vmsa, vmsa.byteOffset + s.gdtr + VMCB_SEG.off.base),
      );
      assert(page.subarray(IGVM_NATIVE_VP_CONTEXT_X64.size).every((b) => b === 0));
      if (mode === "x64") assert(vmsaCr3 & (1n << 51n), "the SEV-SNP CR3 has the C-bit");
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
  assertEquals(nativeSegmentAttributes(0x08b), 0x008b); // a busy 32-bit TSS: no high bits
  assertEquals(IGVM_NATIVE_VP_CONTEXT_X64.size, 0xe8); // igvm_defs: 232 bytes
});

/** The e820 table of a boot_params page, as [addr, size, type]. */
function e820Of(page: Uint8Array, at: number): [number, number, number][] {
  const v = new DataView(page.buffer, page.byteOffset);
  const n = v.getUint8(at + BOOT_PARAMS.e820_entries);
  return Array.from({ length: n }, (_, i) => {
    const e = at + BOOT_PARAMS.e820_table + i * BOOT_E820_ENTRY.size;
    return [
      Number(v.getBigUint64(e, true)),
      Number(v.getBigUint64(e + 8, true)),
      v.getUint32(e + 16, true),
    ];
  });
}

Deno.test("-native: the NATIVE boot_params lists low RAM and RAM to 512 MiB and has no cc_blob; the NATIVE page tables have no C-bit", async () => {
  const dir = tempDir();
  try {
    const { bytes } = await generate(dir, "n", [
      "-target",
      "qemu-kvm",
      "-boot_mode",
      "x64",
      "-native",
    ]);
    const file = readIgvmFile(bytes);
    const vmsa = file.pages.get(KVM_VMSA_GPA)!;
    const rsi = Number(u64(vmsa, vmsa.byteOffset + VMCB_SAVE_AREA.off.rsi));
    const cr3 = Number(u64(vmsa, vmsa.byteOffset + VMCB_SAVE_AREA.off.cr3) & 0xffff_f000n);
    const nativePage = (gpa: number) => {
      const d = file.directives.find((d) =>
        d.name === "IGVM_VHT_PAGE_DATA" && mask(d) === 2 && Number(d.fields.GPA) === gpa
      )!;
      const at = Number(d.fields.FileOffset);
      return bytes.slice(at, at + 4096);
    };
    // boot_params may straddle two pages: join them.
    const base = rsi - (rsi % 4096);
    const join = (get: (gpa: number) => Uint8Array) => {
      const out = new Uint8Array(8192);
      out.set(get(base));
      out.set(get(base + 4096), 4096);
      return out;
    };
    const native = join(nativePage);
    const snp = join((g) => file.pages.get(g)!);
    const at = rsi - base;
    const snpE820 = e820Of(snp, at);
    const kernel = snpE820.find((e) => e[2] === 1 && e[0] >= 0x100000)![0]; // pref_address
    assertEquals(e820Of(native, at), [
      [0, 0xa0000, 1],
      [0xa0000, 0x60000, 2],
      ...snpE820.filter((e) => e[2] === 3),
      [kernel, 512 * MiB - kernel, 1],
    ]);
    assertEquals(snpE820[0][1], 0, "the SEV-SNP table keeps no low RAM");
    const ccBlob = (p: Uint8Array) => new DataView(p.buffer).getUint32(at + 0x13c, true);
    assertEquals(ccBlob(native), 0);
    assert(ccBlob(snp) !== 0);
    // Apart from the e820 table and cc_blob_address, the two are the same.
    const blank = (p: Uint8Array) => {
      const c = p.slice();
      c.fill(0, at + BOOT_PARAMS.e820_entries, at + BOOT_PARAMS.e820_entries + 1);
      c.fill(0, at + BOOT_PARAMS.e820_table, at + BOOT_PARAMS.e820_table + 128 * 20);
      c.fill(0, at + 0x13c, at + 0x140);
      return c;
    };
    assertEquals(sha256Hex(blank(native)), sha256Hex(blank(snp)));
    for (const table of [cr3, cr3 + 4096]) {
      const entries = new BigUint64Array(nativePage(table).buffer).filter((e) => e !== 0n);
      const snpEntries = new BigUint64Array(file.pages.get(table)!.slice().buffer)
        .filter((e) => e !== 0n);
      assert(entries.length > 0 && entries.every((e) => !(e & (1n << 51n))));
      assert(snpEntries.every((e) => (e & (1n << 51n)) !== 0n));
      assertEquals([...entries], [...snpEntries].map((e) => e & ~(1n << 51n)));
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("-target qemu-kvm: the memory map has its own parameter area at offset 0, apart from the VP count", async () => {
  const dir = tempDir();
  try {
    const { bytes } = await generate(dir, "k", ["-target", "qemu-kvm"]);
    const ds = readIgvmFile(bytes).directives;
    const f = (name: string) =>
      ds.filter((d) => d.name === name).map((d) =>
        [d.fields.ParameterAreaIndex, d.fields.ByteOffset ?? d.fields.GPA].map(Number)
      );
    assertEquals(f("IGVM_VHT_PARAMETER_AREA").map(([i]) => i), [0, 1]);
    assertEquals(f("IGVM_VHT_VP_COUNT_PARAMETER"), [[0, 0]]);
    assertEquals(f("IGVM_VHT_MEMORY_MAP"), [[1, 0]]);
    assertEquals(f("IGVM_VHT_PARAMETER_INSERT"), [[0, 0x802000], [1, 0x803000]]);
    assertEquals(f("IGVM_VHT_ENVIRONMENT_INFO_PARAMETER"), []); // Cloud Hypervisor panics on it
    const ok = await runCli(["verify", "--loader", "qemu-kvm", `${dir}/k.igvm`]);
    assertEquals(ok.code, 0, ok.stdout);
    assert(!ok.stdout.includes("warning"), ok.stdout);
    // The original's layout: VP count at 0, the memory map at 0x18 of the same area.
    await generate(dir, "h", []);
    const h = await runCli(["verify", "--loader", "qemu-kvm", `${dir}/h.igvm`]);
    assert(
      h.stdout.includes(
        "warning: MEMORY_MAP at 0x18 of parameter area 0: QEMU writes the memory map from offset 0, so a guest reading it at 0x18 misses its first entries, and VP_COUNT_PARAMETER at 0x0 lies where QEMU writes them",
      ),
      h.stdout,
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("igvmgen -native: refused without a KVM -target; with -target qemu-kvm it names the sev-snp-guest policy and the QEMU command line", async () => {
  const dir = tempDir();
  try {
    Deno.writeFileSync(`${dir}/k`, makeBzImage());
    const refused = await runCli(["-o", `${dir}/o.igvm`, "-kernel", `${dir}/k`, "-native"]);
    assertEquals(refused.code, 2);
    assertEquals(
      refused.stderr,
      "error: -native goes with -target qemu-kvm or ch-kvm: the NATIVE platform shares their layout\n",
    );
    assertThrows(() => Deno.statSync(`${dir}/o.igvm`));
    const q = await generate(dir, "q", [
      "-target",
      "qemu-kvm",
      "-native",
      "-vcpus",
      "2",
      "-cpu",
      "genoa",
    ]);
    assert(
      q.stderr.includes(
        "on SEV-SNP, QEMU needs -object sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x3001f: it starts the launch with that policy (0x30000 when absent), and the ID block carries 0x3001f",
      ),
      q.stderr,
    );
    assert(
      q.stderr.includes(
        `without SEV-SNP (QEMU 10.2 or later): qemu-system-x86_64 -machine q35,igvm-cfg=igvm0 -object igvm-cfg,id=igvm0,file=${dir}/q.igvm -cpu max -m 512M -smp 2 -nographic`,
      ),
      q.stderr,
    );
    const c = await generate(dir, "c", ["-target", "ch-kvm"]);
    assert(!c.stderr.includes("sev-snp-guest") && !c.stderr.includes("without SEV-SNP"), c.stderr);
    // The library request names the field.
    const { generateIgvm } = await import("../lib/ops/generate.ts");
    await assertRejects(
      () => generateIgvm({ output: `${dir}/l.igvm`, kernel: `${dir}/k`, native: true }),
      Error,
      "-native goes with -target qemu-kvm or ch-kvm",
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("nativeRamEnd() is the image's end in 2 MiB steps, at least 512 MiB, and refuses more than q35 keeps below 4 GiB", () => {
  assertEquals(nativeRamEnd(0x1000), 512 * MiB);
  assertEquals(nativeRamEnd(600 * MiB + 1), 602 * MiB);
  assertEquals(nativeRamEnd(NATIVE_MAX_RAM), NATIVE_MAX_RAM);
  const e = assertThrows(() => nativeRamEnd(NATIVE_MAX_RAM + 1), InputError);
  assertEquals(
    e.message,
    "-native: the image ends at 0xb0000001, past 0xb0000000, the most RAM q35 keeps below 4 GiB",
  );
});

Deno.test("writeIgvm() refuses a NATIVE side it cannot emit: a page outside the plan, a page in the legacy window, the GPA order", async () => {
  const image = (over: Partial<GuestImage>): GuestImage => ({
    top: 0x400000,
    holes: [{ start: 0, end: 0x100000 }],
    vmsaPage: KVM_VMSA_GPA,
    cpuidPage: 0x200000,
    secretsPage: 0x201000,
    paramPage: 0x202000,
    parameterAreas: [{ gpa: 0x202000, vpCount: 0 }, { gpa: 0x203000, memoryMap: 0 }],
    guestInvalid: [],
    regions: [],
    memory: (() => {
      const m = new SparseMemory();
      m.write(KVM_VMSA_GPA, new Uint8Array([1]));
      return m;
    })(),
    highestVtl: 0,
    launchOrder: "kvm",
    native: { pages: new Map(), vpContext: new Uint8Array(4096), memoryBytes: 512 * MiB },
    ...over,
  });
  const sink = { writeAt: () => Promise.resolve() };
  const sign = (d: Uint8Array) => Promise.resolve(d);
  const write = (i: GuestImage) => writeIgvm(i, sink, sign, 0x30000n);
  const native = (pages: Map<number, Uint8Array>) => ({
    pages,
    vpContext: new Uint8Array(4096),
    memoryBytes: 512 * MiB,
  });
  await write(image({})); // the sound image is written
  await assertRejects(
    () => write(image({ native: native(new Map([[0x500000, new Uint8Array(4096)]])) })),
    Error,
    "native page 0x500000 does not replace a planned page",
  );
  await assertRejects(
    () => write(image({ holes: [{ start: 0, end: 0xa0000 }] })),
    Error,
    "pages at 0xa0000: a NATIVE image has nothing in 0xa0000-0xfffff",
  );
  await assertRejects(
    () => write(image({ launchOrder: "gpa", vmsaPage: 0x204000, parameterAreas: undefined })),
    Error,
    "a NATIVE platform needs the KVM launch order",
  );
});

/** Sets a u32 of a directive's body and redoes the header checksum. */
function patchDirective(bytes: Uint8Array, d: Directive, at: number, value: number): Uint8Array {
  const out = bytes.slice();
  const view = new DataView(out.buffer);
  view.setUint32(d.offset + 8 + at, value, true);
  const end = view.getUint32(IGVM_FIXED_HEADER.off.VariableHeaderOffset, true) +
    view.getUint32(IGVM_FIXED_HEADER.off.VariableHeaderSize, true);
  view.setUint32(IGVM_FIXED_HEADER.off.Checksum, headerSectionChecksum(out, end), true);
  return out;
}

Deno.test("a multi-platform file: verify, measure, diff and inspect report its SEV-SNP platform and say so; a GPA loaded twice for one platform is still a problem", async () => {
  const dir = tempDir();
  try {
    const n = await generate(dir, "n", ["-target", "qemu-kvm", "-native", "-boot_mode", "x64"]);
    const s = await generate(dir, "s", ["-target", "qemu-kvm", "-boot_mode", "x64"]);
    const note = "note: the file also carries NATIVE: this is its SEV-SNP platform (mask 0x1)";
    const verify = await runCli(["verify", n.path]);
    assertEquals(verify.code, 0, verify.stdout);
    assertEquals(verify.stdout.split("\n")[0], `${n.path}: ${note}`);
    const measured = await runCli(["measure", n.path]);
    assertEquals(measured.stdout, (await runCli(["measure", s.path])).stdout);
    assertEquals(measured.stderr.split("\n")[0], `igvmgen: note: ${n.path}: ${note.slice(6)}`);
    const diff = await runCli(["diff", n.path, s.path]);
    assertEquals(diff.code, 0, diff.stdout);
    assert(diff.stdout.startsWith(`A ${n.path} (hyperv, SEV-SNP platform):`), diff.stdout);
    const inspect = JSON.parse((await runCli(["inspect", "--json", n.path])).stdout);
    assertEquals(inspect.reportedPlatform, "SEV-SNP");
    assertEquals(
      inspect.platforms.map((p: { type: string; compatibilityMask: number }) => [
        p.type,
        p.compatibilityMask,
      ]),
      [["SEV-SNP", 1], ["NATIVE", 2]],
    );
    const plain = JSON.parse((await runCli(["inspect", "--json", s.path])).stdout);
    assertEquals(inspect.pages, plain.pages);
    assertEquals(inspect.ranges, plain.ranges);
    const other = inspect.otherPlatforms[0];
    assertEquals(other.vpContexts[0].registers.rip, inspect.vmsa[0].registers.rip);
    assertEquals(other.vpContexts[0].registers.code_attributes, "0xa09b");
    assert(other.ranges.length > 0);
    // A NATIVE-only page turned into one both platforms load: SEV-SNP has that GPA twice.
    const file = readIgvmFile(n.bytes);
    const nativeOnly = file.directives.find((d) =>
      d.name === "IGVM_VHT_PAGE_DATA" && mask(d) === 2
    )!;
    Deno.writeFileSync(`${dir}/twice.igvm`, patchDirective(n.bytes, nativeOnly, 8, 3));
    const twice = await runCli(["verify", `${dir}/twice.igvm`]);
    assertEquals(twice.code, 1);
    assert(twice.stdout.includes(`GPA 0x${gpa(nativeOnly).toString(16)} is loaded twice`));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "igvmgen sign --loader qemu-kvm --vcpus 2 --cpu milan on a -native image: a new ID block for that host, the NATIVE side byte for byte the same",
  ignore: !HAVE_OPENSSL,
  async fn() {
    const dir = tempDir();
    try {
      opensslP384Key(`${dir}/key.pem`);
      const n = await generate(dir, "n", ["-target", "qemu-kvm", "-native"]);
      const out = `${dir}/signed.igvm`;
      const host = ["--vcpus", "2", "--cpu", "milan"];
      const r = await runCli([
        "sign",
        n.path,
        "-o",
        out,
        "-sign_key",
        `${dir}/key.pem`,
        "--loader",
        "qemu-kvm",
        ...host,
      ]);
      assertEquals(r.code, 0, r.stderr);
      const ok = await runCli(["verify", "--loader", "qemu-kvm", ...host, out]);
      assertEquals(ok.code, 0, ok.stdout);
      const nativeSide = (bytes: Uint8Array) =>
        readIgvmFile(bytes).directives.filter((d) => mask(d) === 2 || mask(d) === 3).map((d) => {
          const at = Number(d.fields.FileOffset ?? 0n);
          return `${d.name} ${gpa(d)} ${at ? sha256Hex(bytes.subarray(at, at + 4096)) : ""}`;
        });
      const signed = Deno.readFileSync(out);
      assertEquals(nativeSide(signed), nativeSide(n.bytes));
      assertEquals(signed.length, n.bytes.length);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
