/**
 * `-target qemu-kvm` computes QEMU's digest as the writer's file-order digest extended by the
 * AP VMSAs (lib/measure/kvm_extend.ts), without a second pass over the pages. Here it equals
 * the full qemu-kvm model on images of 1, 2 and 4 vCPUs, with and without an initrd, and the
 * check that allows the shortcut refuses files where QEMU's order differs.
 */
import { assert, assertEquals } from "./assert.ts";
import { generateImage, tempDir } from "./helpers.ts";
import { bytesAccess } from "./kvm_helpers.ts";
import { readIgvmFile } from "../lib/igvm/reader.ts";
import {
  IGVM_VHS_SNP_ID_BLOCK,
  IGVM_VHT_PAGE_DATA,
  IGVM_VHT_PARAMETER_INSERT,
  IGVM_VHT_SNP_ID_BLOCK,
  IGVM_VHT_VP_CONTEXT,
} from "../lib/igvm/defs.ts";
import { qemuKvmUpdates } from "../lib/measure/kvm_loaders.ts";
import { launchDigestOf } from "../lib/measure/launch_update.ts";
import { loaderDigest } from "../lib/measure/loaders.ts";
import { extendWithApVmsas, fileOrderIsQemuOrder } from "../lib/measure/kvm_extend.ts";
import { toHex } from "../lib/bytes/le.ts";
import { CPU_SIGNATURES } from "../lib/x86/kvm_vmsa.ts";
import { VMCB_SAVE_AREA } from "../lib/x86/vmsa.ts";

function idBlockLd(file: ReturnType<typeof readIgvmFile>): string {
  const d = file.directives.find((x) => x.type === IGVM_VHT_SNP_ID_BLOCK)!;
  return toHex(d.body.subarray(IGVM_VHS_SNP_ID_BLOCK.off.Ld, IGVM_VHS_SNP_ID_BLOCK.off.Ld + 48));
}

/** A deterministic 1 MiB initrd that is not all zeros. */
function initrd(): Uint8Array {
  const bytes = new Uint8Array(1 << 20);
  let x = 0x12345678;
  for (let i = 0; i < bytes.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[i] = x >>> 24;
  }
  return bytes;
}

const CASES: { vcpus: number; cpu: string; initrd: boolean; extra?: string[] }[] = [
  { vcpus: 1, cpu: "milan", initrd: false },
  { vcpus: 2, cpu: "milan", initrd: true },
  { vcpus: 4, cpu: "genoa", initrd: false },
  { vcpus: 4, cpu: "turin", initrd: true, extra: ["-boot_mode", "x64"] },
];

for (const c of CASES) {
  Deno.test(
    `-target qemu-kvm -vcpus ${c.vcpus} -cpu ${c.cpu}${c.initrd ? " with an initrd" : ""}${
      c.extra ? " " + c.extra.join(" ") : ""
    }: file-order digest + AP VMSAs = the full qemu-kvm model = the ID block's`,
    async () => {
      const dir = tempDir();
      try {
        const args = ["-target", "qemu-kvm", "-vcpus", String(c.vcpus), "-cpu", c.cpu];
        if (c.initrd) {
          Deno.writeFileSync(`${dir}/initrd`, initrd());
          args.push("-rdinit", `${dir}/initrd`);
        }
        const bytes = await generateImage([...args, ...(c.extra ?? [])]);
        const file = readIgvmFile(bytes);
        const access = bytesAccess(bytes);
        const host = { vcpus: c.vcpus, cpuSignature: CPU_SIGNATURES[c.cpu] };
        const boot = await fileOrderIsQemuOrder(access, file);
        assert(boot, "the shortcut's conditions hold for a -target qemu-kvm image");
        const fileOrder = await loaderDigest("hyperv", access, file);
        const full = await launchDigestOf(qemuKvmUpdates(access, file, host));
        assertEquals(toHex(extendWithApVmsas(fileOrder, boot, host)), toHex(full));
        assertEquals(idBlockLd(file), toHex(full));
        if (c.vcpus > 1) assert(toHex(fileOrder) !== toHex(full));
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
    },
  );
}

Deno.test("the shortcut is refused where QEMU's order or VMSA differs from file order: a hyperv image, an insert after a page, a TR base KVM replaces", async () => {
  const hyperv = await generateImage([]);
  assertEquals(await fileOrderIsQemuOrder(bytesAccess(hyperv), readIgvmFile(hyperv)), undefined);

  const bytes = await generateImage(["-target", "qemu-kvm"]);
  const file = readIgvmFile(bytes);
  const access = bytesAccess(bytes);
  const host = { vcpus: 1, cpuSignature: CPU_SIGNATURES.milan };
  // The parameter insert moved behind the first page: QEMU issues it ahead of the run of
  // pages it buffers, so its order (and digest) is no longer file order.
  const ds = file.directives;
  const insert = ds.findIndex((d) => d.type === IGVM_VHT_PARAMETER_INSERT);
  const firstPage = ds.findIndex((d) => d.type === IGVM_VHT_PAGE_DATA);
  assert(insert >= 0 && insert < firstPage);
  const moved = [...ds];
  const [ins] = moved.splice(insert, 1);
  moved.splice(firstPage, 0, ins); // right after the first page
  const reordered = { ...file, directives: moved };
  assertEquals(await fileOrderIsQemuOrder(access, reordered), undefined);
  assert(
    toHex(await loaderDigest("hyperv", access, reordered)) !==
      toHex(await launchDigestOf(qemuKvmUpdates(access, reordered, host))),
  );
  // A TR base unlike LDTR's: QEMU loads TR with LDTR's base, so KVM's VMSA is not the file's.
  const ctx = ds.find((d) => d.type === IGVM_VHT_VP_CONTEXT)!;
  const changed = bytes.slice();
  const at = Number(ctx.fields.FileOffset) + VMCB_SAVE_AREA.off.tr + 8;
  changed[at] ^= 0x10;
  assertEquals(await fileOrderIsQemuOrder(bytesAccess(changed), readIgvmFile(changed)), undefined);
});
