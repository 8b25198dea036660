/**
 * `igvmgen diff`: explains why two launch digests differ. It walks both launch logs in
 * step to find the first update that differs, and compares the pages by GPA to count, per
 * part of the guest, the pages changed, added and removed. Memory: about 40 bytes per page.
 */
import { toHex } from "../bytes/le.ts";
import { type IgvmFile, IgvmFormatError } from "../igvm/reader.ts";
import { assertStructurallySound } from "../igvm/structure.ts";
import type { FileAccess } from "../io/file_reader.ts";
import {
  launchLog,
  type LaunchLogEntry,
  type LaunchLogEntryJson,
  logEntryJson,
} from "./launch_log.ts";

/** One side of a diff: a file under a loader. */
export interface DiffSide {
  file: FileAccess;
  headers: IgvmFile;
  loader: string;
  /** The side's name in errors (default "A" or "B"). */
  name?: string;
}

/** Pages changed, added (only in B) and removed (only in A) in one part. */
export interface PartChanges {
  /** The part of the guest (kernel, initrd, ACPI tables, ...). */
  part: string;
  /** Pages at the same GPA in both whose type or contents differ. */
  changed: number;
  /** Pages only B measures. */
  added: number;
  /** Pages only A measures. */
  removed: number;
}

/** The outcome of a diff. */
export interface LaunchDiff {
  /** True when the two launch digests are equal. */
  equal: boolean;
  /** A's launch digest, 96 hex digits. */
  digestA: string;
  /** B's launch digest, 96 hex digits. */
  digestB: string;
  /** How many launch updates A has. */
  updatesA: number;
  /** How many launch updates B has. */
  updatesB: number;
  /** The first launch update that differs (index, and each side's update there). */
  firstDifference?: {
    index: number;
    a?: LaunchLogEntryJson;
    b?: LaunchLogEntryJson;
  };
  /** Per part of the guest, the pages changed, added and removed. */
  parts: PartChanges[];
  /** True when the same pages are measured, but in another order. */
  orderOnly: boolean;
}

/**
 * The pages of one log, compactly (about 40 bytes a page): GPA, type, the first 12 bytes of
 * the contents digest as three words, and the part's index.
 */
class PageTable {
  gpa: number[] = [];
  type: number[] = [];
  words: number[] = [];
  part: number[] = [];
  constructor(readonly partNames: string[], readonly partIndex: Map<string, number>) {}
  add(e: LaunchLogEntry) {
    let p = this.partIndex.get(e.part);
    if (p === undefined) {
      p = this.partNames.length;
      this.partNames.push(e.part);
      this.partIndex.set(e.part, p);
    }
    this.gpa.push(e.gpa);
    this.type.push(e.pageType);
    const v = new DataView(e.contents.buffer, e.contents.byteOffset, 12);
    this.words.push(v.getUint32(0), v.getUint32(4), v.getUint32(8));
    this.part.push(p);
  }
  /** True when page `i` here and page `j` of `other` have the same type and contents. */
  sameAs(i: number, other: PageTable, j: number): boolean {
    return this.type[i] === other.type[j] && this.words[3 * i] === other.words[3 * j] &&
      this.words[3 * i + 1] === other.words[3 * j + 1] &&
      this.words[3 * i + 2] === other.words[3 * j + 2];
  }
  /** Indices sorted by GPA, then by order of issue. */
  sorted(): Uint32Array {
    const order = new Uint32Array(this.gpa.length);
    for (let i = 0; i < order.length; i++) order[i] = i;
    return order.sort((x, y) => this.gpa[x] - this.gpa[y] || x - y);
  }
}

const same = (a: LaunchLogEntry, b: LaunchLogEntry) =>
  a.gpa === b.gpa && a.pageType === b.pageType && a.contents.every((v, i) => v === b.contents[i]);

/**
 * Diffs the launch logs of A and B. A structurally broken file is refused, as `measure`
 * refuses it: it has no launch digest to explain.
 */
export async function diffLaunches(a: DiffSide, b: DiffSide): Promise<LaunchDiff> {
  for (const [side, label] of [[a, "A"], [b, "B"]] as const) {
    try {
      assertStructurallySound(side.file, side.headers);
    } catch (e) {
      throw new IgvmFormatError(`${side.name ?? label}: ${(e as Error).message}`, { cause: e });
    }
  }
  const names: string[] = [];
  const index = new Map<string, number>();
  const ta = new PageTable(names, index);
  const tb = new PageTable(names, index);
  const ia = launchLog(a.file, a.headers, a.loader)[Symbol.asyncIterator]();
  const ib = launchLog(b.file, b.headers, b.loader)[Symbol.asyncIterator]();
  let first: LaunchDiff["firstDifference"];
  let lastA: Uint8Array = new Uint8Array(48);
  let lastB: Uint8Array = new Uint8Array(48);
  for (let i = 0;; i++) {
    const [ra, rb] = await Promise.all([ia.next(), ib.next()]);
    if (ra.done && rb.done) break;
    const ea = ra.done ? undefined : ra.value;
    const eb = rb.done ? undefined : rb.value;
    if (ea) {
      ta.add(ea);
      lastA = ea.digest;
    }
    if (eb) {
      tb.add(eb);
      lastB = eb.digest;
    }
    if (!first && (!ea || !eb || !same(ea, eb))) {
      first = { index: i, a: ea && logEntryJson(ea), b: eb && logEntryJson(eb) };
    }
  }
  // Pages by GPA: a merge of both sorted tables. Pages measured twice at one GPA pair up
  // in order of issue.
  const counts = new Map<number, PartChanges>();
  const bump = (part: number, key: "changed" | "added" | "removed") => {
    let c = counts.get(part);
    if (!c) counts.set(part, c = { part: names[part], changed: 0, added: 0, removed: 0 });
    c[key]++;
  };
  const oa = ta.sorted();
  const ob = tb.sorted();
  let x = 0;
  let y = 0;
  while (x < oa.length || y < ob.length) {
    const i = oa[x];
    const j = ob[y];
    const ga = x < oa.length ? ta.gpa[i] : Infinity;
    const gb = y < ob.length ? tb.gpa[j] : Infinity;
    if (ga < gb) {
      bump(ta.part[i], "removed");
      x++;
    } else if (gb < ga) {
      bump(tb.part[j], "added");
      y++;
    } else {
      if (!ta.sameAs(i, tb, j)) {
        bump(tb.part[j], "changed");
      }
      x++;
      y++;
    }
  }
  const digestA = toHex(lastA);
  const digestB = toHex(lastB);
  const parts = [...counts.values()];
  return {
    equal: digestA === digestB,
    digestA,
    digestB,
    updatesA: ta.gpa.length,
    updatesB: tb.gpa.length,
    firstDifference: first,
    parts,
    orderOnly: digestA !== digestB && parts.length === 0,
  };
}

/** The text report of a diff. */
export function formatDiff(d: LaunchDiff, nameA: string, nameB: string): string[] {
  const out = [
    `A ${nameA}: ${d.updatesA} launch updates, digest ${d.digestA}`,
    `B ${nameB}: ${d.updatesB} launch updates, digest ${d.digestB}`,
  ];
  if (d.equal) {
    out.push("the launch digests are equal");
    return out;
  }
  const f = d.firstDifference;
  if (f) {
    const show = (e: typeof f.a) =>
      e ? `${e.gpa} ${e.pageType} ${e.part} contents ${e.contents.slice(0, 16)}...` : "(none)";
    out.push(
      `first difference at launch update ${f.index}:`,
      `  A: ${show(f.a)}`,
      `  B: ${show(f.b)}`,
    );
  }
  if (d.orderOnly) out.push("the same pages are measured, in another order");
  for (const p of d.parts) {
    out.push(`  ${p.part}: ${p.changed} changed, ${p.added} added, ${p.removed} removed`);
  }
  return out;
}
