/**
 * The directives of a parsed file in file order, kept compact: PAGE_DATA headers as rows of a
 * {@link PageDataTable}, the others (a few dozen in any file) as objects, and the order as
 * where the others lie. Read as an array (`h.directives`), a page is a short-lived view of
 * its row ({@link PageDataDirective}), made when it is read and not kept: a 1 GiB initrd's
 * 263k page headers take about 18 bytes each, not one object each. Two reads of one page
 * give two objects: directives are told apart by `offset`, not by identity.
 */
import { IGVM_VHS_PAGE_DATA, IGVM_VHT_PAGE_DATA, VARIABLE_HEADER_BODIES } from "./defs.ts";
import { PageDataTable } from "./page_table.ts";

/** One variable header: its type, offset, and its body's fields by name. */
export interface Directive {
  readonly type: number;
  readonly name: string;
  readonly offset: number;
  readonly length: number;
  readonly fields: Record<string, bigint>;
  /** The raw body. */
  readonly body: Uint8Array;
}

const PAGE_DATA_NAME = VARIABLE_HEADER_BODIES.get(IGVM_VHT_PAGE_DATA)!.name;

/**
 * A PAGE_DATA directive read from a row of a {@link PageDataTable}: it holds no fields of its
 * own, and builds `fields` and `body` on each access. Code that goes over every page reads
 * the row through `table` instead (directives.ts: directiveGpa, directiveFlags...).
 */
export class PageDataDirective implements Directive {
  constructor(readonly table: PageDataTable, readonly row: number) {}
  get type(): number {
    return IGVM_VHT_PAGE_DATA;
  }
  get name(): string {
    return PAGE_DATA_NAME;
  }
  get offset(): number {
    return this.table.headerOffset(this.row);
  }
  get length(): number {
    return IGVM_VHS_PAGE_DATA.size;
  }
  get fields(): Record<string, bigint> {
    return this.table.fields(this.row);
  }
  get body(): Uint8Array {
    return this.table.body(this.row);
  }
}

/**
 * The directives of a file in order: page rows and other directives. Pages are added in
 * file order, so only where the others lie is kept: directive i is the k-th other when the
 * k-th other lies at i, else page row i - k, with k the others before i.
 */
export class DirectiveList {
  readonly pages: PageDataTable = new PageDataTable();
  readonly #others: Directive[] = [];
  /** Where each other directive lies in the list, ascending. */
  readonly #otherAt: number[] = [];
  /** The others before the directive last read: sequential reads find it in one step. */
  #hint = 0;

  /** How many directives the list holds. */
  get count(): number {
    return this.pages.count + this.#others.length;
  }

  /** Appends a PAGE_DATA header whose body is at byte `at` of `chunk` (copied). */
  addPage(chunk: DataView, at: number, headerOffset: number): void {
    this.pages.add(chunk, at, headerOffset);
  }

  /** Appends any other directive. */
  addOther(d: Directive): void {
    this.#otherAt.push(this.count);
    this.#others.push(d);
  }

  /** How many others lie before position i. */
  #othersBefore(i: number): number {
    const at = this.#otherAt;
    let k = this.#hint;
    if (k < at.length && at[k] < i) k++; // the read before was of an other
    if ((k > 0 && at[k - 1] >= i) || (k < at.length && at[k] < i)) {
      let lo = 0;
      let hi = at.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (at[mid] < i) lo = mid + 1;
        else hi = mid;
      }
      k = lo;
    }
    this.#hint = k;
    return k;
  }

  /** Directive `i` (a fresh view for a page). */
  at(i: number): Directive {
    const k = this.#othersBefore(i);
    return this.#otherAt[k] === i ? this.#others[k] : new PageDataDirective(this.pages, i - k);
  }

  /** The directives as a read-only array (see {@link directiveArray}). */
  asArray(): Directive[] {
    return directiveArray(this);
  }
}

/** Array methods answered by walking the list, not through the array's generic traps. */
function fastMethods(list: DirectiveList, self: () => Directive[]) {
  type Test = (d: Directive, i: number, all: Directive[]) => unknown;
  const n = () => list.count;
  return {
    *[Symbol.iterator](): Generator<Directive> {
      for (let i = 0; i < n(); i++) yield list.at(i);
    },
    *values(): Generator<Directive> {
      for (let i = 0; i < n(); i++) yield list.at(i);
    },
    at(i: number): Directive | undefined {
      const k = i < 0 ? n() + i : i;
      return k >= 0 && k < n() ? list.at(k) : undefined;
    },
    find(test: Test): Directive | undefined {
      for (let i = 0; i < n(); i++) {
        const d = list.at(i);
        if (test(d, i, self())) return d;
      }
      return undefined;
    },
    findIndex(test: Test): number {
      for (let i = 0; i < n(); i++) if (test(list.at(i), i, self())) return i;
      return -1;
    },
    some(test: Test): boolean {
      for (let i = 0; i < n(); i++) if (test(list.at(i), i, self())) return true;
      return false;
    },
    every(test: Test): boolean {
      for (let i = 0; i < n(); i++) if (!test(list.at(i), i, self())) return false;
      return true;
    },
    filter(test: Test): Directive[] {
      const out: Directive[] = [];
      for (let i = 0; i < n(); i++) {
        const d = list.at(i);
        if (test(d, i, self())) out.push(d);
      }
      return out;
    },
    forEach(visit: Test): void {
      for (let i = 0; i < n(); i++) visit(list.at(i), i, self());
    },
    map<T>(f: (d: Directive, i: number, all: Directive[]) => T): T[] {
      const out: T[] = [];
      for (let i = 0; i < n(); i++) out.push(f(list.at(i), i, self()));
      return out;
    },
  } as Record<PropertyKey, unknown>;
}

/**
 * The array index a property key names, or -1: digits without a leading zero, at most 9 of
 * them (a header section holds fewer than 2^28 headers). Parsed by hand, as every element
 * read goes through here.
 */
function indexOf(key: PropertyKey): number {
  if (typeof key !== "string") return -1;
  const n = key.length;
  if (n === 0 || n > 9) return -1;
  let i = 0;
  for (let k = 0; k < n; k++) {
    const digit = key.charCodeAt(k) - 48;
    if (digit < 0 || digit > 9 || (digit === 0 && k === 0 && n > 1)) return -1;
    i = i * 10 + digit;
  }
  return i;
}

/** The list behind each array view. */
const LISTS = new WeakMap<readonly Directive[], DirectiveList>();

/** Indexed reading of directives: `at(i)` for i below `length`. */
export interface DirectiveAccess {
  readonly length: number;
  at(i: number): Directive;
}

/**
 * Fast indexed reading of `ds`: for a parsed file's directives, straight from its list (an
 * element read through the array view costs a property trap, several times slower); for any
 * other array (a test's reordered copy), the array itself.
 */
export function directiveAccess(ds: readonly Directive[]): DirectiveAccess {
  const list = LISTS.get(ds);
  if (list) return { length: list.count, at: (i) => list.at(i) };
  return { length: ds.length, at: (i) => ds[i] };
}

/**
 * A read-only array view of a list: `length`, indexing, iteration, spreading and every array
 * method work as on a `Directive[]`, and none holds a page's directive longer than its
 * caller does. Writes throw. Lists of a file stay small in memory however it is read.
 */
export function directiveArray(list: DirectiveList): Directive[] {
  const target: Directive[] = [];
  const fast = fastMethods(list, () => proxy);
  const readOnly = () => {
    throw new TypeError("the directives of a parsed file are read-only");
  };
  const proxy: Directive[] = new Proxy(target, {
    get(t, key, receiver) {
      const i = indexOf(key);
      if (i >= 0) return i < list.count ? list.at(i) : undefined;
      if (key === "length") return list.count;
      if (Object.hasOwn(fast, key)) return fast[key];
      return Reflect.get(t, key, receiver);
    },
    has(t, key) {
      const i = indexOf(key);
      return i >= 0 ? i < list.count : Reflect.has(t, key);
    },
    ownKeys() {
      return [...Array.from({ length: list.count }, (_, i) => String(i)), "length"];
    },
    getOwnPropertyDescriptor(t, key) {
      const i = indexOf(key);
      if (i >= 0 && i < list.count) {
        return { value: list.at(i), writable: false, enumerable: true, configurable: true };
      }
      if (key === "length") {
        return { value: list.count, writable: true, enumerable: false, configurable: false };
      }
      return Reflect.getOwnPropertyDescriptor(t, key);
    },
    set: readOnly,
    defineProperty: readOnly,
    deleteProperty: readOnly,
  });
  LISTS.set(proxy, list);
  return proxy;
}
