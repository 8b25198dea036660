/**
 * The hashing stage every loader model shares (lib/measure/planned_updates.ts), the sort by
 * GPA of Cloud Hypervisor on MSHV and the guest reader, which keep pages as runs: checked
 * against SHA-384 from WebCrypto, a stable sort and a page map written here, on files whose
 * pages are one run, scattered, past the end, or placed twice.
 */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { bytesAccess } from "./kvm_helpers.ts";
import { hashPlanned, type PlannedUpdate } from "../lib/measure/planned_updates.ts";
import { chMshvUpdates, igvmmeasureUpdates } from "../lib/measure/file_loaders.ts";
import { guestReaderOf } from "../lib/igvm/structure.ts";
import type { Directive, IgvmFile } from "../lib/igvm/reader.ts";
import type { FileAccess } from "../lib/io/file_reader.ts";
import { toHex } from "../lib/bytes/le.ts";

const PAGE = 4096;
const NORMAL = 1;
const VMSA = 2;
const UNMEASURED = 4;

/** Random pages, every seventh all zero. */
function randomFile(pages: number): Uint8Array {
  const bytes = new Uint8Array(pages * PAGE);
  for (let p = 0; p < pages; p++) {
    if (p % 7 === 3) continue;
    for (let at = 0; at < PAGE; at += 65536) {
      crypto.getRandomValues(bytes.subarray(p * PAGE + at, p * PAGE + Math.min(PAGE, at + 65536)));
    }
  }
  return bytes;
}

/** A FileAccess that reads into the caller's buffer when given one, as a file does. */
function intoAccess(bytes: Uint8Array): FileAccess {
  return {
    size: bytes.length,
    readAt(offset, length, into) {
      const n = Math.max(0, Math.min(length, bytes.length - offset));
      const buf = into && into.length >= n ? into.subarray(0, n) : new Uint8Array(n);
      buf.set(bytes.subarray(offset, offset + n));
      return Promise.resolve(buf);
    },
  };
}

const sha384 = async (b: Uint8Array) =>
  toHex(new Uint8Array(await crypto.subtle.digest("SHA-384", b.slice())));

/** Each update's contents digest as the PSP takes it, from WebCrypto. */
async function expectedContents(bytes: Uint8Array, plan: PlannedUpdate[]): Promise<string[]> {
  const zero = await sha384(new Uint8Array(PAGE));
  return await Promise.all(plan.map((u) => {
    if (u.pageType !== NORMAL && u.pageType !== VMSA) return "00".repeat(48);
    if (u.page) return sha384(u.page);
    if (u.dataOffset === undefined) return zero;
    return sha384(bytes.subarray(u.dataOffset, u.dataOffset + PAGE));
  }));
}

/** The plans: one run of the file, scattered pages, and every kind of update mixed. */
function plans(pages: number): Record<string, PlannedUpdate[]> {
  const run = Array.from({ length: 600 }, (_, i) => ({
    pageType: NORMAL,
    gpa: 0x10_0000 + i * PAGE,
    directive: i,
    dataOffset: (100 + i) * PAGE,
  }));
  const scattered = run.map((u, i) => ({ ...u, dataOffset: ((i * 389) % pages) * PAGE }));
  const mixed = run.map((u, i): PlannedUpdate => {
    switch (i % 6) {
      case 0:
        return { ...u, dataOffset: undefined }; // an empty page
      case 1:
        return { ...u, pageType: UNMEASURED, dataOffset: undefined };
      case 2:
        return { ...u, pageType: VMSA, page: randomFile(1) }; // built by the loader
      case 3:
        return { ...u, dataOffset: (pages - 1 - i) * PAGE }; // far apart
      default:
        return u;
    }
  });
  return { run, scattered, mixed };
}

Deno.test("hashPlanned(): batches and single updates carry each page's SHA-384, however its data lies and whatever the FileAccess does with `into`", async () => {
  const pages = 1500; // 6 MiB: pages far apart are not read in one span
  const bytes = randomFile(pages);
  for (const [name, plan] of Object.entries(plans(pages))) {
    const expected = await expectedContents(bytes, plan);
    for (const [kind, access] of [["into", intoAccess(bytes)], ["own", bytesAccess(bytes)]]) {
      const got: string[] = [];
      const seen: number[] = [];
      for await (const b of hashPlanned(access as FileAccess, plan).batches()) {
        assert(b.updates.length <= 256);
        b.updates.forEach((u, k) => {
          got.push(toHex(b.contents.subarray(k * 48, k * 48 + 48)));
          seen.push(u.directive);
        });
      }
      assertEquals(got, expected, `${name}, ${kind}: batches`);
      assertEquals(seen, plan.map((u) => u.directive));
      const single: string[] = [];
      for await (const u of hashPlanned(access as FileAccess, plan)) single.push(toHex(u.contents));
      assertEquals(single, expected, `${name}, ${kind}: one at a time`);
    }
  }
});

Deno.test("hashPlanned() refuses the first page whose data runs past the end, in one run or scattered", async () => {
  const bytes = randomFile(40);
  const end = bytes.length;
  const page = (gpa: number, dataOffset: number) => ({
    pageType: NORMAL,
    gpa,
    directive: 0,
    dataOffset,
  });
  const cases: [PlannedUpdate[], string][] = [
    [[page(0x1000, end - 2 * PAGE), page(0x2000, end - PAGE), page(0x3000, end)], "0x3000"],
    [[page(0x1000, end - PAGE), page(0x2000, end - 100)], "0x2000"],
    [[page(0x1000, 0), page(0x2000, end - 100), page(0x3000, 5 * PAGE)], "0x2000"],
  ];
  for (const [plan, gpa] of cases) {
    for (const access of [intoAccess(bytes), bytesAccess(bytes)]) {
      const bad = plan.find((u) => u.gpa === Number(gpa))!;
      await assertRejects(
        async () => {
          for await (const _ of hashPlanned(access, plan).batches());
        },
        Error,
        `page ${gpa}: file data at 0x${bad.dataOffset!.toString(16)} runs past the end`,
      );
    }
  }
});

/** A directive of the kind the reader makes, from its fields. */
function directive(type: number, offset: number, fields: Record<string, bigint>): Directive {
  return {
    type,
    name: `0x${type.toString(16)}`,
    offset,
    length: 0,
    fields,
    body: new Uint8Array(),
  };
}

/** A SEV-SNP file whose PAGE_DATA directives place `pages` ([gpa, file offset or 0]). */
function snpFile(pages: [number, number][]): IgvmFile {
  return {
    fixed: {},
    problems: [],
    directives: [
      directive(0x001, 0x40, { CompatibilityMask: 1n, PlatformType: 2n, HighestVtl: 0n }),
      ...pages.map(([gpa, at], i) =>
        directive(0x302, 0x100 + i * 32, {
          GPA: BigInt(gpa),
          CompatibilityMask: 1n,
          FileOffset: BigInt(at),
          Flags: 0n,
          DataType: 0n,
          Reserved: 0n,
        })
      ),
    ],
  };
}

/** Pages in runs: [first GPA, pages, first file offset (0: no data)], in file order. */
function runsOf(runs: [number, number, number][]): [number, number][] {
  return runs.flatMap(([gpa, n, at]) =>
    Array.from({ length: n }, (_, k): [number, number] => [gpa + k * PAGE, at && at + k * PAGE])
  );
}

const LAYOUTS: Record<string, [number, number, number][]> = {
  "runs apart, out of order": [[0x20_0000, 40, PAGE], [0x1_0000, 8, 0], [
    0x10_0000,
    300,
    41 * PAGE,
  ]],
  "overlapping runs": [[0x10_0000, 40, PAGE], [0x10_8000, 20, 41 * PAGE], [0x10_0000, 2, 0]],
  "a page placed three times": [[0x5000, 1, PAGE], [0x4000, 3, 2 * PAGE], [0x5000, 1, 0]],
};

Deno.test("chMshvUpdates() is the stable sort by GPA of the file-order updates, with runs apart or overlapping", async () => {
  const bytes = randomFile(400);
  for (const [name, runs] of Object.entries(LAYOUTS)) {
    const h = snpFile(runsOf(runs));
    const key = (u: { gpa: number; pageType: number; directive: number; contents: Uint8Array }) =>
      `${u.gpa.toString(16)} ${u.pageType} ${u.directive} ${toHex(u.contents)}`;
    const fileOrder: string[] = [];
    const gpas: number[] = [];
    for await (
      const u of igvmmeasureUpdates(bytesAccess(bytes), h, { vcpus: 1, cpuSignature: 0 })
    ) {
      fileOrder.push(key(u));
      gpas.push(u.gpa);
    }
    const expected = fileOrder.map((k, i) => [k, i] as const)
      .sort((a, b) => gpas[a[1]] - gpas[b[1]] || a[1] - b[1]).map(([k]) => k);
    const got: string[] = [];
    for await (const u of chMshvUpdates(bytesAccess(bytes), h, { vcpus: 1, cpuSignature: 0 })) {
      got.push(key(u));
    }
    assertEquals(got, expected, name);
  }
});

Deno.test("guestReaderOf(): each page reads as the last directive that places it, with runs apart or overlapping", async () => {
  const bytes = randomFile(400);
  for (const [name, runs] of Object.entries(LAYOUTS)) {
    const pages = runsOf(runs);
    const expected = new Map<number, number>(pages); // the later page wins
    const guest = guestReaderOf(bytesAccess(bytes), snpFile(pages));
    const lo = Math.min(...expected.keys()) - 2 * PAGE;
    const hi = Math.max(...expected.keys()) + 2 * PAGE;
    await guest.load(lo, hi - lo);
    for (let gpa = lo; gpa < hi; gpa += PAGE) {
      assertEquals(guest.has(gpa), expected.has(gpa), `${name}: 0x${gpa.toString(16)}`);
      assert(!guest.has(gpa + 8));
      const at = expected.get(gpa);
      const want = at ? bytes.subarray(at, at + PAGE) : new Uint8Array(PAGE);
      assertEquals(toHex(guest.read(gpa, PAGE)), toHex(want), `${name}: 0x${gpa.toString(16)}`);
    }
  }
});
