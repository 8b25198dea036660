/**
 * The original igvmgen's default ACPI snapshot (`acpi.zip`): base64 text of zlib data of a
 * Python pickle of `{gpa: bytearray(4096)}`. A tiny pickle reader for exactly the opcodes
 * such a dict needs; anything else is rejected rather than interpreted.
 */
import { PAGE_SIZE } from "../lib/bytes/le.ts";
import { inflateBounded, InflateLimitError } from "./inflate.ts";

/** A snapshot that cannot be read. */
export class SnapshotError extends Error {
  /** The class name, for messages and logs. */
  override name = "SnapshotError";
}

/** True when `bytes` looks like base64 text (the snapshot's outer layer). */
export function looksLikeLegacySnapshot(bytes: Uint8Array): boolean {
  const n = Math.min(bytes.length, 256);
  if (n === 0) return false;
  for (let i = 0; i < n; i++) {
    const c = bytes[i];
    const ok = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) ||
      c === 0x2b || c === 0x2f || c === 0x3d || c === 0x0a || c === 0x0d;
    if (!ok) return false;
  }
  return true;
}

/** Decodes base64 text, ignoring line breaks. */
function decodeBase64(text: string): Uint8Array {
  const clean = text.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(clean) || clean.length % 4 !== 0) {
    throw new SnapshotError("not base64 text");
  }
  return Uint8Array.fromBase64(clean);
}

const MARK = Symbol("mark");
type Value =
  | number
  | string
  | Uint8Array
  | Map<number, Uint8Array>
  | { global: string }
  | Value[]
  | typeof MARK;

/**
 * Interprets a pickle (protocols 2-5) that builds a dict of int -> bytearray. Supports PROTO,
 * FRAME, EMPTY_DICT, MEMOIZE, PUT/BINPUT/LONG_BINPUT, GET/BINGET/LONG_BINGET, MARK,
 * BININT/BININT1/BININT2, BINBYTES/SHORT_BINBYTES/BINBYTES8, BYTEARRAY8,
 * (SHORT_)BINUNICODE, STACK_GLOBAL, TUPLE1, REDUCE (bytearray only), SETITEM(S), STOP.
 */
export function parsePagePickle(data: Uint8Array): Map<number, Uint8Array> {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const stack: Value[] = [];
  const memo: Value[] = [];
  let pos = 0;
  const need = (n: number) => {
    if (pos + n > data.length) throw new SnapshotError("pickle is truncated");
  };
  const u8 = () => (need(1), data[pos++]);
  const u32 = () => (need(4), pos += 4, view.getUint32(pos - 4, true));
  const bytes = (n: number) => (need(n), pos += n, data.slice(pos - n, pos));
  const pop = (): Value => {
    if (stack.length === 0) throw new SnapshotError("pickle stack underflow");
    return stack.pop()!;
  };
  const popToMark = (): Value[] => {
    const at = stack.lastIndexOf(MARK);
    if (at < 0) throw new SnapshotError("pickle has no MARK");
    const items = stack.splice(at);
    return items.slice(1);
  };
  const setItems = (dict: Value, items: Value[]) => {
    if (!(dict instanceof Map)) throw new SnapshotError("pickle sets items on a non-dict");
    for (let i = 0; i + 1 < items.length; i += 2) {
      const k = items[i];
      const v = items[i + 1];
      if (typeof k !== "number" || !(v instanceof Uint8Array)) {
        throw new SnapshotError("snapshot entries must be int -> bytearray");
      }
      dict.set(k, v);
    }
  };
  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        u8();
        break;
      case 0x95: // FRAME
        need(8);
        pos += 8;
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x94: // MEMOIZE
        memo.push(stack[stack.length - 1]);
        break;
      case 0x71: // BINPUT
        memo[u8()] = stack[stack.length - 1];
        break;
      case 0x72: // LONG_BINPUT
        memo[u32()] = stack[stack.length - 1];
        break;
      case 0x68: // BINGET
      case 0x6a: { // LONG_BINGET
        const i = op === 0x68 ? u8() : u32();
        if (memo[i] === undefined) throw new SnapshotError("pickle refers to an unknown memo");
        stack.push(memo[i]);
        break;
      }
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x4a: // BININT
        need(4);
        pos += 4;
        stack.push(view.getInt32(pos - 4, true));
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        need(2);
        pos += 2;
        stack.push(view.getUint16(pos - 2, true));
        break;
      case 0x42: // BINBYTES
        stack.push(bytes(u32()));
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(bytes(u8()));
        break;
      case 0x8e: // BINBYTES8
      case 0x96: { // BYTEARRAY8
        need(8);
        const n = Number(view.getBigUint64(pos, true));
        pos += 8;
        stack.push(bytes(n));
        break;
      }
      case 0x8c: // SHORT_BINUNICODE
        stack.push(new TextDecoder().decode(bytes(u8())));
        break;
      case 0x58: // BINUNICODE
        stack.push(new TextDecoder().decode(bytes(u32())));
        break;
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        stack.push({ global: `${String(module)}.${String(name)}` });
        break;
      }
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x52: { // REDUCE
        const args = pop();
        const fn = pop();
        if (
          typeof fn !== "object" || !("global" in fn) || fn.global !== "builtins.bytearray" ||
          !Array.isArray(args) || args.length !== 1 || !(args[0] instanceof Uint8Array)
        ) {
          throw new SnapshotError("pickle calls something other than bytearray(bytes)");
        }
        stack.push(args[0]);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popToMark();
        setItems(stack[stack.length - 1], items);
        break;
      }
      case 0x73: { // SETITEM
        const v = pop();
        const k = pop();
        setItems(stack[stack.length - 1], [k, v]);
        break;
      }
      case 0x2e: { // STOP
        const result = pop();
        if (!(result instanceof Map)) throw new SnapshotError("pickle does not hold a dict");
        return result;
      }
      default:
        throw new SnapshotError(`unsupported pickle opcode 0x${op.toString(16)} at ${pos - 1}`);
    }
  }
}

/**
 * The most bytes a snapshot's pickle may inflate to: its pages lie in [0xe0000, 0x200000),
 * 288 pages of 4 KiB and a few bytes each, so a bigger pickle is a zlib bomb, not a snapshot.
 */
export const SNAPSHOT_PICKLE_MAX = 4 << 20;

/** Decodes a legacy snapshot into its pages, checking each is one page at a page GPA. */
export async function decodeLegacySnapshot(
  fileBytes: Uint8Array,
): Promise<Map<number, Uint8Array>> {
  const packed = decodeBase64(new TextDecoder().decode(fileBytes));
  let pickle: Uint8Array;
  try {
    pickle = await inflateBounded(packed, "deflate", SNAPSHOT_PICKLE_MAX);
  } catch (e) {
    if (e instanceof InflateLimitError) {
      throw new SnapshotError(
        `the payload inflates to more than ${SNAPSHOT_PICKLE_MAX} bytes: too large for ACPI pages`,
      );
    }
    throw new SnapshotError("the base64 payload is not zlib data", { cause: e });
  }
  const pages = parsePagePickle(pickle);
  for (const [gpa, page] of pages) {
    if (gpa % PAGE_SIZE !== 0 || page.length !== PAGE_SIZE) {
      throw new SnapshotError(`snapshot entry 0x${gpa.toString(16)} is not one aligned page`);
    }
  }
  return pages;
}
