/**
 * The command lines real build pipelines run, word for word, through `main()`:
 * - Kata Containers' IGVM builder (tools/osbuilder/igvm-builder, azure-linux config.sh and
 *   igvm_lib.sh): production and debug images, `-acpi` for `-acpi_dir`, the dm-verity
 *   `dm-mod.create="..."` command line with its quotes, tabs and line continuations.
 * - Contrast (edgelesssys/contrast, its kata IGVM package): the same builder patched to erofs,
 *   with `-sign_key snakeoil.pem -sign_deterministic true` added.
 * - The examples of the original's README.
 * Each must succeed and write the same bytes as the same line with every option spelled out;
 * where a golden case exists, the original's bytes.
 */
import { main } from "../main.ts";
import { assert, assertEquals } from "./assert.ts";
import {
  FIXTURES,
  HAVE_IASL,
  HAVE_SHARED,
  REFERENCE,
  ROOT,
  sha256Hex,
  SHARED,
  tempDir,
} from "./helpers.ts";
import { readIgvmFile } from "../lib/igvm/reader.ts";
import {
  IGVM_FIXED_HEADER,
  IGVM_VHS_SNP_ID_BLOCK,
  IGVM_VHT_SNP_ID_BLOCK,
} from "../lib/igvm/defs.ts";

const KERNEL = `${FIXTURES}vmlinuz-6.1.0-56-amd64`;
const TEST_BZIMAGE = `${FIXTURES}test_bzImage`;
const KEY = `${FIXTURES}test-key.pem`;
const ACPI = `${REFERENCE}acpi/`;

/** A test that needs ../shared (and iasl for .dsl tables); skipped, saying why, otherwise. */
function pipelineTest(name: string, fn: (dir: string) => Promise<void>) {
  Deno.test({
    name: HAVE_SHARED && HAVE_IASL ? name : `${name} (needs ../shared and iasl: skipped)`,
    ignore: !HAVE_SHARED || !HAVE_IASL,
    async fn() {
      const dir = tempDir();
      try {
        await fn(dir);
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
    },
  });
}

/** Runs `main(args)`; asserts success; returns the image `out`. */
async function build(args: string[], out: string): Promise<Uint8Array> {
  assertEquals(await main(args), 0, `igvmgen ${args.join(" ")}`);
  return Deno.readFileSync(out);
}

// Kata's dm-verity parameters, as igvm_lib.sh reads them from root_hash.txt.
const ROOT_HASH = "5a2d4f9b6e1c0a8d7f3e2b1c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f70";
const SALT = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";
const DATA_BLOCKS = 131072;
const DATA_BLOCK_SIZE = 4096;
const HASH_BLOCK_SIZE = 4096;
const DATA_SECTORS = DATA_BLOCKS * (DATA_BLOCK_SIZE / 512);

/**
 * IGVM_KERNEL_PARAMS_COMMON of Kata's config.sh as bash expands it: `\"` is a quote, and each
 * backslash-newline inside the double quotes disappears, leaving the next line's tab.
 */
function kataParams(rootfs: "ext4" | "erofs"): string {
  const rootflags = rootfs === "ext4" ? "rootflags=data=ordered,errors=remount-ro" : "";
  return `dm-mod.create="dm-verity,,,ro,0 ${DATA_SECTORS} verity 1 /dev/vda1 /dev/vda2 ` +
    `${DATA_BLOCK_SIZE} ${HASH_BLOCK_SIZE} ${DATA_BLOCKS} 0 sha256 ${ROOT_HASH} ${SALT}" ` +
    `\troot=/dev/dm-0 ${rootflags} ro rootfstype=${rootfs} panic=1 no_timer_check ` +
    `noreplace-smp systemd.unit=kata-containers.target systemd.mask=systemd-networkd.service ` +
    `\tsystemd.mask=systemd-networkd.socket agent.enable_signature_verification=false`;
}
const PROD = (rootfs: "ext4" | "erofs") => `${kataParams(rootfs)} quiet`;
const DEBUG = (rootfs: "ext4" | "erofs") =>
  `${kataParams(rootfs)} console=hvc0 systemd.log_target=console agent.log=debug ` +
  `agent.debug_console agent.debug_console_vport=1026`;

/** IGVM_BUILD_VARS of Kata's config.sh: note `-acpi`, a prefix of `-acpi_dir`. */
const KATA_BUILD_VARS = [
  ...["-kernel", KERNEL, "-boot_mode", "x64", "-vtl", "0", "-svme", "1"],
  ...["-encrypted_page", "1", "-pvalidate_opt", "1", "-acpi", `${ACPI}acpi-clh/`],
];

/** The igvmgen line of Kata's igvm_lib.sh, for the image `img` and its measurement file. */
function kataLine(img: string, measurement: string, params: string): string[] {
  return [
    ...KATA_BUILD_VARS,
    ...["-o", img, "-measurement_file", measurement, "-append", params, "-svn", "0"],
  ];
}

/** The same line with every option spelled out and in the original's order. */
function spelledOut(args: string[]): string[] {
  const full: Record<string, string> = { "-acpi": "-acpi_dir" };
  return args.map((a) => full[a] ?? a);
}

/**
 * The image with its ID block signature and public key, and the header checksum that covers
 * them, zeroed: what two runs without -sign_key (a fresh key each) must share.
 */
function withoutFreshKey(image: Uint8Array): Uint8Array {
  const copy = image.slice();
  const idBlock = readIgvmFile(copy).directives.find((d) => d.type === IGVM_VHT_SNP_ID_BLOCK);
  assert(idBlock, "an ID block");
  const body = idBlock.offset + 8;
  const { IdKeySignature, AuthorKeySignature } = IGVM_VHS_SNP_ID_BLOCK.off;
  copy.fill(0, body + IdKeySignature, body + AuthorKeySignature); // signature, public key
  copy.fill(0, IGVM_FIXED_HEADER.off.Checksum, IGVM_FIXED_HEADER.off.Checksum + 4);
  return copy;
}

/** True when `image` holds `cmdline` followed by its NUL, byte for byte. */
function holdsCommandLine(image: Uint8Array, cmdline: string): boolean {
  const needle = new TextEncoder().encode(`${cmdline}\0`);
  for (let at = image.indexOf(needle[0]); at >= 0; at = image.indexOf(needle[0], at + 1)) {
    if (needle.every((b, i) => image[at + i] === b)) return true;
  }
  return false;
}

for (const variant of ["production", "debug"] as const) {
  pipelineTest(
    `Kata's igvm builder line (${variant}, -acpi acpi-clh/) succeeds and equals -acpi_dir's`,
    async (dir) => {
      const params = variant === "production" ? PROD("ext4") : DEBUG("ext4");
      const kata = await build(kataLine(`${dir}/k.img`, `${dir}/k.cose`, params), `${dir}/k.img`);
      const spelled = await build(
        spelledOut(kataLine(`${dir}/s.img`, `${dir}/s.cose`, params)),
        `${dir}/s.img`,
      );
      // Without -sign_key each run signs with a fresh key: all else is the same, both verify.
      assertEquals(withoutFreshKey(kata), withoutFreshKey(spelled));
      assert(sha256Hex(kata) !== sha256Hex(spelled), "two fresh keys");
      assertEquals(Deno.readTextFileSync(`${dir}/k.cose`), Deno.readTextFileSync(`${dir}/s.cose`));
      assertEquals(await main(["verify", `${dir}/k.img`]), 0);
      assert(holdsCommandLine(kata, params), "the dm-verity command line, quotes and tabs intact");
      assert(params.includes('dm-mod.create="dm-verity,,,ro,0 1048576 verity 1 /dev/vda1'));
    },
  );
}

pipelineTest(
  "Kata's production line, run as `deno task igvmgen` in the build folder, writes what main() writes",
  async (dir) => {
    // The exact permissions of `deno task igvmgen`, and Kata's relative output names.
    const task = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).tasks.igvmgen as string;
    const [, ...runArgs] = task.split(" ");
    const args = kataLine("kata-containers-igvm.img", "igvm-measurement.cose", PROD("ext4"));
    const signed = [...args, "-sign_key", KEY, "-sign_deterministic", "true"];
    const r = await new Deno.Command(Deno.execPath(), {
      args: [...runArgs.map((a) => a === "main.ts" ? `${ROOT}main.ts` : a), ...signed],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(r.code, 0, new TextDecoder().decode(r.stderr));
    const viaMain = await build(
      spelledOut(kataLine(`${dir}/m.img`, `${dir}/m.cose`, PROD("ext4")))
        .concat("-sign_key", KEY, "-sign_deterministic", "true"),
      `${dir}/m.img`,
    );
    assertEquals(
      sha256Hex(Deno.readFileSync(`${dir}/kata-containers-igvm.img`)),
      sha256Hex(viaMain),
    );
    assertEquals(
      JSON.parse(Deno.readTextFileSync(`${dir}/igvm-measurement.cose`)),
      JSON.parse(Deno.readTextFileSync(`${dir}/m.cose`)),
    );
  },
);

for (const variant of ["production", "debug"] as const) {
  pipelineTest(
    `Contrast's line (${variant}, erofs, -sign_key -sign_deterministic true) is reproducible and equals -acpi_dir's`,
    async (dir) => {
      const params = variant === "production" ? PROD("erofs") : DEBUG("erofs");
      const contrast = (img: string, m: string) => [
        ...kataLine(img, m, params),
        ...["-sign_key", KEY, "-sign_deterministic", "true"],
      ];
      const a = await build(contrast(`${dir}/a.img`, `${dir}/a.cose`), `${dir}/a.img`);
      const b = await build(contrast(`${dir}/b.img`, `${dir}/b.cose`), `${dir}/b.img`);
      const s = await build(spelledOut(contrast(`${dir}/s.img`, `${dir}/s.cose`)), `${dir}/s.img`);
      assertEquals(sha256Hex(a), sha256Hex(b), "deterministic signing: the same bytes twice");
      assertEquals(sha256Hex(a), sha256Hex(s), "-acpi and -acpi_dir: the same bytes");
      assert(holdsCommandLine(a, params), "root=/dev/dm-0  ro (the removed rootflags) intact");
      assertEquals(await main(["verify", `${dir}/a.img`]), 0);
    },
  );
}

/** The golden case `name` of ../shared/golden/cases.json. */
function goldenSha256(name: string): string {
  const cases = JSON.parse(Deno.readTextFileSync(`${SHARED}golden/cases.json`)).cases as {
    name: string;
    expected: { sha256: string };
  }[];
  return cases.find((c) => c.name === name)!.expected.sha256;
}
const GOLDEN_KEY_ARGS = ["-sign_key", KEY, "-sign_deterministic", "true"];

pipelineTest(
  "README example of the original: bzImage, x86, VTL 2, succeeds, also by prefixes; with the original's default ACPI it is golden deb_x86",
  async (dir) => {
    const line = (out: string) => [
      ...["-o", out, "-kernel", KERNEL, "-append", "console=ttyS0 panic=-1"],
      ...["-boot_mode", "x86", "-vtl", "2", "-inform", "bzImage"],
    ];
    const asWritten = await build(line(`${dir}/r.igvm`), `${dir}/r.igvm`);
    assertEquals(await main(["verify", `${dir}/r.igvm`]), 0);
    const prefixes = { "-kernel": "-k", "-append": "-ap", "-boot_mode": "-b", "-vtl": "-vt" };
    const abbreviated = await build(
      line(`${dir}/p.igvm`).map((a) => prefixes[a as keyof typeof prefixes] ?? a),
      `${dir}/p.igvm`,
    );
    assertEquals(withoutFreshKey(abbreviated), withoutFreshKey(asWritten));
    // The original's default tables were its acpi.zip snapshot; cases.json passes it explicitly.
    const golden = await build(
      [...line(`${dir}/g.igvm`), "-acpi_dir", `${ACPI}acpi.zip`, ...GOLDEN_KEY_ARGS],
      `${dir}/g.igvm`,
    );
    assertEquals(sha256Hex(golden), goldenSha256("deb_x86"));
  },
);

pipelineTest(
  "README example of the original: -acpi_dir acpi_test gives golden tb_x86_acpitest's bytes",
  async (dir) => {
    const line = (out: string) => [
      ...["-o", out, "-kernel", TEST_BZIMAGE, "-append", "panic=-1 console=ttySEV0"],
      ...["-boot_mode", "x86", "-vtl", "2", "-inform", "bzImage", "-acpi_dir", `${ACPI}acpi-test`],
    ];
    const image = await build([...line(`${dir}/r.igvm`), ...GOLDEN_KEY_ARGS], `${dir}/r.igvm`);
    assertEquals(sha256Hex(image), goldenSha256("tb_x86_acpitest"));
  },
);

pipelineTest(
  "README example of the original: Cloud Hypervisor (x64, VTL 0, acpi-clh) gives golden deb_clh_x64's bytes",
  async (dir) => {
    const line = (out: string) => [
      ...["-o", out, "-kernel", KERNEL, "-append", "console=ttyS0 root=/dev/vda1 rw"],
      ...["-boot_mode", "x64", "-vtl", "0", "-inform", "bzImage", "-svme", "1"],
      ...["-encrypted_page", "1", "-pvalidate_opt", "0", "-acpi_dir", `${ACPI}acpi-clh`],
    ];
    const image = await build([...line(`${dir}/r.igvm`), ...GOLDEN_KEY_ARGS], `${dir}/r.igvm`);
    assertEquals(sha256Hex(image), goldenSha256("deb_clh_x64"));
    // The same line by prefixes and in another order, as argparse allowed: the same bytes.
    const short = await build(
      [
        ...["-sign_k", KEY, "-sign_d", "true", "-pv", "0", "-e", "1", "-svm", "1", "-i", "bzImage"],
        ...["-vt", "0", "-b", "x64", "-ap", "console=ttyS0 root=/dev/vda1 rw", "-k", KERNEL],
        ...["-ac", `${ACPI}acpi-clh`, `-o${dir}/p.igvm`],
      ],
      `${dir}/p.igvm`,
    );
    assertEquals(sha256Hex(short), goldenSha256("deb_clh_x64"));
  },
);

pipelineTest(
  "README's -pvalidate_opt=true form equals -pvalidate_opt true",
  async (dir) => {
    const line = (out: string, ...pv: string[]) => [
      ...["-o", out, "-kernel", TEST_BZIMAGE, "-append", "panic=-1 console=ttySEV0"],
      ...["-boot_mode", "x86", "-vtl", "2", "-inform", "bzImage", ...pv, ...GOLDEN_KEY_ARGS],
      ...["-acpi_dir", `${ACPI}acpi-test`, "-encrypted_page", "false", "-svme", "true"],
    ];
    const eq = await build(line(`${dir}/a.igvm`, "-pvalidate_opt=true"), `${dir}/a.igvm`);
    const sp = await build(line(`${dir}/b.igvm`, "-pvalidate_opt", "true"), `${dir}/b.igvm`);
    assertEquals(sha256Hex(eq), sha256Hex(sp));
    assertEquals(sha256Hex(eq), goldenSha256("tb_x86_acpitest"));
  },
);
