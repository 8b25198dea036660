/**
 * One verdict on an ID block everywhere (lib/measure/id_block_checks.ts idBlockVerdict):
 * `verify --loader` refuses an image whose ID block the PSP would refuse, where it used to say
 * "would start this file"; `inspect` no longer calls such a signature valid; author fields left
 * in a block whose AuthorKeyEnabled is 0 are a problem. Each image is a generated, validly
 * signed one with one field edited and its header CRC fixed (tests/igvm_edit.ts).
 */
import { assert, assertEquals } from "./assert.ts";
import { generateImage, ROOT, runCli, tempDir } from "./helpers.ts";
import { editBody } from "./igvm_edit.ts";

const ID_BLOCK = 0x30b;
// IGVM_VHS_SNP_ID_BLOCK offsets, from the IGVM specification (independent of defs.ts).
const AUTHOR_KEY_ENABLED = 0x004;
const ID_KEY_ALGORITHM = 0x060;
const SIGNATURE = 0x068; // R at +0, S at +0x48, 72 bytes each
const PUBLIC_KEY = 0x0f8; // curve +0, reserved +4, Qx +8, Qy +0x50
const DATA = `${ROOT}tests/data/attest/`;

let qemuImage: Promise<Uint8Array> | undefined;
/** A -target qemu-kvm image that qemu-kvm starts (tests/launch_checks_test.ts). */
function image(): Promise<Uint8Array> {
  qemuImage ??= generateImage(["-target", "qemu-kvm", "-boot_mode", "x64"]);
  return qemuImage;
}
let chImage: Promise<Uint8Array> | undefined;
/** A -target ch-kvm image that ch-kvm starts. */
function chKvmImage(): Promise<Uint8Array> {
  chImage ??= generateImage(["-target", "ch-kvm", "-boot_mode", "x64"]);
  return chImage;
}

/** Each broken field, the edit that breaks it and the words of its problem. */
const CASES: [string, (v: DataView, at: number) => void, string][] = [
  [
    "signature R[0] flipped",
    (v, at) => v.setUint8(at + SIGNATURE, v.getUint8(at + SIGNATURE) ^ 1),
    "the signature does not verify with the block's public key",
  ],
  ["R high byte", (v, at) => v.setUint8(at + SIGNATURE + 48, 1), "signature's R has non-zero"],
  ["S high byte", (v, at) => v.setUint8(at + SIGNATURE + 0x48 + 71, 1), "signature's S has"],
  ["Qx high byte", (v, at) => v.setUint8(at + PUBLIC_KEY + 8 + 60, 0x80), "public key's Qx has"],
  ["Qy high byte", (v, at) => v.setUint8(at + PUBLIC_KEY + 0x50 + 48, 1), "public key's Qy has"],
  ["curve 3", (v, at) => v.setUint32(at + PUBLIC_KEY, 3, true), "public key's curve 3"],
  ["key reserved", (v, at) => v.setUint32(at + PUBLIC_KEY + 4, 5, true), "reserved field"],
  ["algorithm 2", (v, at) => v.setUint32(at + ID_KEY_ALGORITHM, 2, true), "key algorithm 2"],
  [
    "AuthorKeyEnabled without a key",
    (v, at) => v.setUint8(at + AUTHOR_KEY_ENABLED, 1),
    "AuthorKeyEnabled is 1 but there is no author key",
  ],
];

Deno.test("verify --loader qemu-kvm|ch-kvm: an image whose ID block the PSP refuses is refused, naming the field (was: would start)", async () => {
  const dir = tempDir();
  try {
    Deno.writeFileSync(`${dir}/good.igvm`, await image());
    const good = await runCli(["verify", "--loader", "qemu-kvm", `${dir}/good.igvm`]);
    assertEquals(good.code, 0, good.stdout);
    Deno.writeFileSync(`${dir}/ch.igvm`, await chKvmImage());
    const chGood = await runCli(["verify", "--loader", "ch-kvm", "--json", `${dir}/ch.igvm`]);
    assertEquals([chGood.code, JSON.parse(chGood.stdout).accepted], [0, true], chGood.stdout);
    for (const [name, edit, words] of CASES) {
      Deno.writeFileSync(`${dir}/c.igvm`, editBody(await chKvmImage(), ID_BLOCK, edit));
      const json = await runCli(["verify", "--loader", "ch-kvm", "--json", `${dir}/c.igvm`]);
      assertEquals(json.code, 1, `${name}: ${json.stdout}`);
      const doc = JSON.parse(json.stdout);
      assertEquals([doc.accepted, doc.refusals.length], [false, 1], name);
      assert(doc.refusals[0].includes(words), `${name}: ${json.stdout}`);
      Deno.writeFileSync(`${dir}/b.igvm`, editBody(await image(), ID_BLOCK, edit));
      if (name === "AuthorKeyEnabled without a key") continue; // QEMU: the next test
      const r = await runCli(["verify", "--loader", "qemu-kvm", `${dir}/b.igvm`]);
      assertEquals(r.code, 1, `${name}: ${r.stdout}`);
      assert(
        r.stdout.split("\n").some((l) =>
          l.includes("qemu-kvm refuses: the ID block: ") && l.includes(words) &&
          l.endsWith("the PSP fails SNP_LAUNCH_FINISH")
        ),
        `${name}: ${r.stdout}`,
      );
      assert(r.stdout.trimEnd().endsWith("would not start this file (1 reason)"), r.stdout);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("verify --loader qemu-kvm: QEMU passes AUTH_KEY_EN by the author key's curve, not AuthorKeyEnabled, and says so", async () => {
  const dir = tempDir();
  try {
    // AuthorKeyEnabled 1 without a key: QEMU passes no author key, so the launch starts.
    const flag = editBody(
      await image(),
      ID_BLOCK,
      (v, at) => v.setUint8(at + AUTHOR_KEY_ENABLED, 1),
    );
    Deno.writeFileSync(`${dir}/f.igvm`, flag);
    const r = await runCli(["verify", "--loader", "qemu-kvm", "--json", `${dir}/f.igvm`]);
    const doc = JSON.parse(r.stdout);
    assertEquals([r.code, doc.accepted], [0, true], r.stdout);
    assert(doc.warnings.some((w: string) => w.includes("QEMU passes no author key")), r.stdout);
    // Plain verify still names the file's inconsistency.
    const v = await runCli(["verify", `${dir}/f.igvm`]);
    assertEquals(v.code, 1);
    assert(v.stdout.includes("AuthorKeyEnabled is 1 but there is no author key"), v.stdout);
    // AuthorKeyEnabled cleared with the author key left: QEMU passes it, and its signature
    // verifies, so the launch starts with an author key the file says it has not.
    const authored = await generateImage([
      "-target",
      "qemu-kvm",
      "-boot_mode",
      "x64",
      "-sign_key",
      `${DATA}virtee_test_id_key.pem`,
      "-author_key",
      `${DATA}virtee_test_auth_key.pem`,
    ]);
    const cleared = editBody(authored, ID_BLOCK, (v, at) => v.setUint8(at + AUTHOR_KEY_ENABLED, 0));
    Deno.writeFileSync(`${dir}/c.igvm`, cleared);
    const q = await runCli(["verify", "--loader", "qemu-kvm", "--json", `${dir}/c.igvm`]);
    const qd = JSON.parse(q.stdout);
    assertEquals([q.code, qd.accepted], [0, true], q.stdout);
    assert(qd.warnings.some((w: string) => w.includes("QEMU passes its author key")), q.stdout);
    // ... and with a broken author signature QEMU's launch fails where the file says none.
    const bad = editBody(
      cleared,
      ID_BLOCK,
      (v, at) => v.setUint8(at + 0x190, v.getUint8(at + 0x190) ^ 1),
    );
    Deno.writeFileSync(`${dir}/d.igvm`, bad);
    const b = await runCli(["verify", "--loader", "qemu-kvm", `${dir}/d.igvm`]);
    assertEquals(b.code, 1, b.stdout);
    assert(b.stdout.includes("the author key's signature over the ID key does not verify"));
    // Cloud Hypervisor passes AuthorKeyEnabled 0: the PSP ignores the author fields.
    const c = await runCli(["verify", "--loader", "ch-kvm", "--json", `${dir}/d.igvm`]);
    assert(!JSON.parse(c.stdout).refusals.some((x: string) => x.includes("author")), c.stdout);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("verify --loader openvmm-kvm: a broken ID block is a warning, since OpenVMM on KVM does not pass it", async () => {
  const dir = tempDir();
  try {
    const [, edit, words] = CASES[0];
    Deno.writeFileSync(`${dir}/b.igvm`, editBody(await image(), ID_BLOCK, edit));
    const r = await runCli(["verify", "--loader", "openvmm-kvm", "--json", `${dir}/b.igvm`]);
    const doc = JSON.parse(r.stdout);
    assert(!doc.refusals.some((x: string) => x.includes("ID block")), r.stdout);
    assert(
      doc.warnings.some((x: string) =>
        x.includes(words) && x.includes("OpenVMM on KVM does not pass it")
      ),
      r.stdout,
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("inspect: a signature the PSP refuses (R's high bytes, the key's reserved field) is not valid, and the problem is named (was: valid)", async () => {
  const dir = tempDir();
  try {
    Deno.writeFileSync(`${dir}/good.igvm`, await image());
    const good = JSON.parse((await runCli(["inspect", "--json", `${dir}/good.igvm`])).stdout);
    assertEquals([good.idBlock.signatureValid, good.idBlock.problems], [true, []]);
    for (const [name, edit, words] of CASES.slice(1)) {
      if (name === "AuthorKeyEnabled without a key") continue; // not the ID key's signature
      Deno.writeFileSync(`${dir}/b.igvm`, editBody(await image(), ID_BLOCK, edit));
      const json = await runCli(["inspect", "--json", `${dir}/b.igvm`]);
      assertEquals(json.code, 0, json.stderr);
      const id = JSON.parse(json.stdout).idBlock;
      assertEquals(id.signatureValid, false, name);
      assert(id.problems.some((p: string) => p.includes(words)), `${name}: ${id.problems}`);
      const text = await runCli(["inspect", `${dir}/b.igvm`]);
      assert(text.stdout.includes("  signature INVALID\n"), `${name}: ${text.stdout}`);
      assert(
        text.stdout.split("\n").some((l) => l.startsWith("  problem: ") && l.includes(words)),
        `${name}: ${text.stdout}`,
      );
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("verify: author key and signature left in a block whose AuthorKeyEnabled is 0 is a problem (was: OK)", async () => {
  const dir = tempDir();
  try {
    const bytes = await generateImage([
      "-sign_key",
      `${DATA}virtee_test_id_key.pem`,
      "-sign_deterministic",
      "true",
      "-author_key",
      `${DATA}virtee_test_auth_key.pem`,
    ]);
    Deno.writeFileSync(`${dir}/a.igvm`, bytes);
    assertEquals((await runCli(["verify", `${dir}/a.igvm`])).code, 0);
    const cleared = editBody(bytes, ID_BLOCK, (v, at) => v.setUint8(at + AUTHOR_KEY_ENABLED, 0));
    Deno.writeFileSync(`${dir}/c.igvm`, cleared);
    const r = await runCli(["verify", `${dir}/c.igvm`]);
    assertEquals(r.code, 1, r.stdout);
    assert(
      r.stdout.includes(
        "ID block: AuthorKeyEnabled is 0 but the author key fields are not zero",
      ),
      r.stdout,
    );
    // The ID key's signature does not cover AuthorKeyEnabled: only the author fields are named.
    assert(!r.stdout.includes("does not verify"), r.stdout);
    const id = JSON.parse((await runCli(["inspect", "--json", `${dir}/c.igvm`])).stdout).idBlock;
    assertEquals([id.signatureValid, id.authorKeyEnabled, id.problems.length], [true, false, 1]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
