/**
 * `-target qemu-kvm|ch-kvm`: the layout KVM loaders accept, the digest they compute (equal
 * to the file-order digest for one vCPU under QEMU, and extended by one known-answer AP VMSA
 * per extra vCPU), the ID block and measurement file, the option errors, `measure --matrix`.
 */
import { assert, assertEquals } from "./assert.ts";
import { FIXTURES, generateImage, HAVE_SHARED, runCli, tempDir } from "./helpers.ts";
import { bytesAccess, updatesOf } from "./kvm_helpers.ts";
import { readGuest, readIgvmFile } from "../lib/igvm/reader.ts";
import { computeLaunchDigest, verifyIgvm } from "../lib/ops/verify.ts";
import { checkLaunch } from "../lib/measure/launch_checks.ts";
import { chKvmUpdates, qemuKvmUpdates } from "../lib/measure/kvm_loaders.ts";
import { launchDigestOf } from "../lib/measure/launch_update.ts";
import { sha384 } from "../lib/hash/wasm_sha384.ts";
import { encodePageInfo } from "../lib/measure/snp_digest.ts";
import { toHex } from "../lib/bytes/le.ts";

const fromHex = (h: string) => Uint8Array.from(h.match(/../g)!, (b) => parseInt(b, 16));
import {
  IGVM_VHS_SNP_ID_BLOCK,
  IGVM_VHT_PAGE_DATA,
  IGVM_VHT_PARAMETER_INSERT,
  IGVM_VHT_SNP_ID_BLOCK,
  IGVM_VHT_SUPPORTED_PLATFORM,
  IGVM_VHT_VP_CONTEXT,
} from "../lib/igvm/defs.ts";
import { BOOT_PARAMS } from "../lib/bzimage/boot_params.ts";

const VMSA_GPA = 0xffff_ffff_f000;
// SHA-384 of sev-snp-measure's QEMU AP VMSA (build_save_area(0xfffffff0, 1, 0x00a00f11)):
// the known answer of tests/kvm_loaders_test.ts, for the Milan AP of an SNP-only image.
const MILAN_AP_SHA384 =
  "728af287318db5f3fc4d2357a969483c4225956dc555b514a78d64ee372112d13b3dca8afd02cdbd1c55697d8ce087f5";

function idBlockLd(file: ReturnType<typeof readIgvmFile>): string {
  const d = file.directives.find((x) => x.type === IGVM_VHT_SNP_ID_BLOCK)!;
  return toHex(d.body.subarray(IGVM_VHS_SNP_ID_BLOCK.off.Ld, IGVM_VHS_SNP_ID_BLOCK.off.Ld + 48));
}

Deno.test("-target qemu-kvm -vcpus 1: QEMU's digest is the file-order digest, and the ID block's", async () => {
  const bytes = await generateImage(["-target", "qemu-kvm"]);
  const file = readIgvmFile(bytes);
  const access = bytesAccess(bytes);
  const host = { vcpus: 1, cpuSignature: 0x00a00f11 };
  const fileOrder = toHex(await computeLaunchDigest(access, file));
  const qemu = await updatesOf(qemuKvmUpdates(access, file, host));
  // Why they are equal: (1) the parameter area's directives come before every page, so
  // QEMU's immediate PARAMETER_INSERT overtakes no buffered run; (2) every other page is in
  // ascending GPA order, which QEMU's runs keep; (3) zero pages are NORMAL for both, and
  // there are no shared pages; (4) the VP context is the last directive, at 0xFFFFFFFFF000,
  // where KVM measures the VMSA after every page; (5) its bytes are those KVM rebuilds.
  const ds = file.directives;
  const firstPage = ds.findIndex((d) => d.type === IGVM_VHT_PAGE_DATA);
  assert(ds.findIndex((d) => d.type === IGVM_VHT_PARAMETER_INSERT) < firstPage);
  const last = ds.filter((d) => d.type !== IGVM_VHT_SNP_ID_BLOCK).at(-1)!;
  assertEquals([last.type, Number(last.fields.GPA)], [IGVM_VHT_VP_CONTEXT, VMSA_GPA]);
  const vmsa = file.pages.get(VMSA_GPA)!;
  assertEquals(toHex(qemu.at(-1)!.contents), toHex(sha384(vmsa)));
  assertEquals(qemu.filter((u) => u.pageType === 3).length, 0);
  assertEquals(toHex(await launchDigestOf(qemuKvmUpdates(access, file, host))), fileOrder);
  assertEquals(idBlockLd(file), fileOrder);
});

Deno.test("-target qemu-kvm -vcpus 2 -cpu milan: the file-order digest extended by the known-answer AP VMSA", async () => {
  const dir = tempDir();
  try {
    const bytes = await generateImage([
      "-target",
      "qemu-kvm",
      "-vcpus",
      "2",
      "-cpu",
      "milan",
      "-measurement_file",
      `${dir}/m.json`,
    ]);
    const file = readIgvmFile(bytes);
    const fileOrder = await computeLaunchDigest(bytesAccess(bytes), file);
    const expected = toHex(
      sha384(encodePageInfo(fileOrder, fromHex(MILAN_AP_SHA384), 2, VMSA_GPA)),
    );
    assertEquals(idBlockLd(file), expected);
    const json = JSON.parse(Deno.readTextFileSync(`${dir}/m.json`));
    assertEquals(json["x-ms-sevsnpvm-launchmeasurement"], expected);
    // The image passes QEMU's checks for that host, and the ID block check fails for another.
    const ok = await checkLaunch("qemu-kvm", bytesAccess(bytes), file, {
      vcpus: 2,
      cpuSignature: 0x00a00f11,
    });
    assertEquals(ok.refusals, []);
    const genoa = await checkLaunch("qemu-kvm", bytesAccess(bytes), file, {
      vcpus: 2,
      cpuSignature: 0x00a10f10,
    });
    assert(genoa.refusals[0].includes("ID block"));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

for (const target of ["qemu-kvm", "ch-kvm"] as const) {
  Deno.test(`-target ${target}: VTL 0, pages from 1 MiB, the RSDP through boot_params, own launch checks pass`, async () => {
    const bytes = await generateImage([
      "-target",
      target,
      "-boot_mode",
      "x64",
      "-vcpus",
      "3",
      // Cloud Hypervisor starts the APs in KVM's reset state: no CPU model to give.
      ...(target === "qemu-kvm" ? ["-cpu", "genoa"] : []),
    ]);
    const file = readIgvmFile(bytes);
    const platform = file.directives.find((d) => d.type === IGVM_VHT_SUPPORTED_PLATFORM)!;
    assertEquals(platform.fields.HighestVtl, 0n);
    const gpas = [...file.pages.keys()];
    assert(gpas.every((g) => g >= 0x100000), `lowest page 0x${Math.min(...gpas).toString(16)}`);
    const vmsa = file.pages.get(VMSA_GPA)!;
    const v = new DataView(vmsa.buffer, vmsa.byteOffset);
    assertEquals(v.getBigUint64(0x3b0, true), 1n); // SNP only
    const rsi = Number(v.getBigUint64(0x330, true));
    const rsdp = Number(
      new DataView(readGuest(file.pages, rsi + BOOT_PARAMS.acpi_rsdp_addr, 8).buffer)
        .getBigUint64(0, true),
    );
    assert(rsdp >= 0x100000);
    assertEquals(new TextDecoder().decode(readGuest(file.pages, rsdp, 8)), "RSD PTR ");
    const host = { vcpus: 3, cpuSignature: 0x00a10f10 };
    const own = await checkLaunch(target, bytesAccess(bytes), file, host);
    assertEquals(own.refusals, []);
    const model = target === "qemu-kvm" ? qemuKvmUpdates : chKvmUpdates;
    assertEquals(
      idBlockLd(file),
      toHex(await launchDigestOf(model(bytesAccess(bytes), file, host))),
    );
    assertEquals((await checkLaunch("openvmm-kvm", bytesAccess(bytes), file)).refusals, []);
    // verify walks the ACPI tables from boot_params' RSDP and names the host the ID block is
    // for (Cloud Hypervisor's APs do not depend on the CPU model).
    const report = await verifyIgvm(bytesAccess(bytes));
    assertEquals(report.problems, []);
    assert(report.acpiTables.some((t) => t.startsWith(`RSDP@0x${rsdp.toString(16)}`)));
    assert(report.acpiTables.some((t) => t.startsWith("XSDT@")));
    assertEquals(report.layout, "kvm");
    assertEquals(
      report.signedFor,
      target === "qemu-kvm"
        ? { loader: target, vcpus: 3, cpu: "genoa", cpuSignature: "0x00a10f10" }
        : { loader: target, vcpus: 3 },
    );
    assertEquals(report.idBlock!.ld, idBlockLd(file));
  });
}

Deno.test({
  name: "-target hyperv is the default and gives the same bytes as no -target",
  ignore: !HAVE_SHARED,
  async fn() {
    const args = ["-sign_deterministic", "1", "-sign_key", `${FIXTURES}test-key.pem`];
    const a = await generateImage(args);
    const b = await generateImage([...args, "-target", "hyperv"]);
    assertEquals(toHex(sha384(a)), toHex(sha384(b)));
  },
});

Deno.test("igvmgen -target with options that cannot give a KVM image: exit 2 or 1, one line", async () => {
  const dir = tempDir();
  try {
    const { makeBzImage } = await import("../scripts/fixtures.ts");
    Deno.writeFileSync(`${dir}/k`, makeBzImage());
    const run = (args: string[]) => runCli(["-o", `${dir}/o.igvm`, "-kernel", `${dir}/k`, ...args]);
    const cases: [string[], number, string][] = [
      [["-target", "qemu-kvm", "-vcpus", "2"], 2, "needs -cpu"],
      [["-target", "qemu-kvm", "-vtl", "2"], 2, "highest VTL 0"],
      [["-target", "ch-kvm", "-svme", "0"], 2, "EFER.SVME"],
      [["-target", "qemu-kvm", "-cpu", "zen9"], 2, "-cpu: expected"],
      [["-cpu", "milan"], 2, "-cpu goes with -target"],
      [
        ["-target", "qemu-kvm", "-inform", "bzImage2", "-shared_payload", `${dir}/k`],
        2,
        "guest-invalid",
      ],
    ];
    for (const [args, code, text] of cases) {
      const r = await run(args);
      assertEquals(r.code, code, `${args.join(" ")}: ${r.stderr}`);
      assert(r.stderr.startsWith("error: ") && r.stderr.includes(text), r.stderr);
      assertEquals(r.stderr.trim().split("\n").length, 1);
    }
    Deno.writeTextFileSync(
      `${dir}/c.json`,
      JSON.stringify({ tei_config_data: { policy: { migrate_ma: true, smt_allowed: true } } }),
    );
    const policy = await run(["-target", "qemu-kvm", "-config_file", `${dir}/c.json`]);
    assertEquals(policy.code, 1, policy.stderr);
    assert(policy.stderr.includes("MIGRATE_MA"), policy.stderr);
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["c.json", "k"]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("igvmgen measure --matrix --vcpus 1,2,4 --cpu milan,genoa [--json]: one digest per combination", async () => {
  const dir = tempDir();
  try {
    Deno.writeFileSync(`${dir}/a.igvm`, await generateImage(["-target", "qemu-kvm"]));
    const args = [
      "measure",
      "--matrix",
      "--vcpus",
      "1,2,4",
      "--cpu",
      "milan,genoa",
      `${dir}/a.igvm`,
    ];
    const text = await runCli(args);
    assertEquals(text.code, 0, text.stderr);
    const lines = text.stdout.trim().split("\n");
    assertEquals(lines[0].split(/\s+/), [
      "loader",
      "vcpus",
      "cpu",
      "signature",
      "launch",
      "digest",
    ]);
    assertEquals(lines.length, 7);
    const json = await runCli([...args, "--json"]);
    const doc = JSON.parse(json.stdout);
    assertEquals([doc.schema, doc.loader, doc.digests.length], [
      "igvmgen-measure-matrix/1",
      "qemu-kvm",
      6,
    ]);
    for (const row of doc.digests) {
      const one = await runCli([
        "measure",
        "--loader",
        "qemu-kvm",
        "--vcpus",
        String(row.vcpus),
        "--cpu",
        row.cpu,
        `${dir}/a.igvm`,
      ]);
      assertEquals(one.stdout.trim(), row.launchDigest);
      assert(lines.some((l) => l.endsWith(row.launchDigest) && l.includes(row.signature)));
    }
    const [m1, g1] = [0, 3].map((i) => doc.digests[i].launchDigest);
    assertEquals(m1, g1); // one vCPU: no AP, no CPU signature
    assert(doc.digests[1].launchDigest !== doc.digests[4].launchDigest);
    const bad = await runCli(["measure", "--matrix", "--vcpus", "1,2", `${dir}/a.igvm`]);
    assertEquals(bad.code, 2);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("igvmgen -target qemu-kvm refuses any --loader, even hyperv's name: the target signs for its own loader", async () => {
  for (const loader of ["hyperv", "ch-mshv"]) {
    const r = await runCli([
      "-o",
      "/nonexistent-folder/x.igvm",
      "-kernel",
      "k",
      "-target",
      "qemu-kvm",
      "--loader",
      loader,
    ]);
    assertEquals(r.code, 2, r.stderr);
    assert(r.stderr.includes(`--loader ${loader} does not go with -target qemu-kvm`), r.stderr);
  }
});
