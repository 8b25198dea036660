/**
 * The launch log as text, written straight from its batches (launch_log.ts) into a byte
 * buffer: the lines of `measure --log`, text or JSON, byte for byte those of
 * {@link formatLogEntry} and of `JSON.stringify(logEntryJson(e))`, with no string or object
 * per entry. A million-entry log is then printed in constant memory.
 */
import { type LaunchLogBatch, SNP_PAGE_TYPE_NAMES } from "./launch_log.ts";

const HEX = new TextEncoder().encode("0123456789abcdef");
const SPACE = 0x20;
const ZERO = 0x30;
const encoder = new TextEncoder();
/** Lines are handed on in chunks of about this many bytes. */
const CHUNK = 64 << 10;
/** Room for one line without its part name: index, GPA, type, directive and two digests. */
const LINE_ROOM = 512;
/** Part names kept encoded; a file's parts are a few dozen, a hostile file's at most this. */
const MAX_CACHED_PARTS = 4096;

/**
 * Writes log lines, text (`json` false) or JSON (each entry indented by 4 spaces, entries
 * separated by `,`), and hands them to `sink` in chunks of whole lines, each without its
 * last newline: print each chunk as a line and the output is that of one line per entry.
 */
export class LaunchLogWriter {
  #buf = new Uint8Array(CHUNK + LINE_ROOM);
  #at = 0;
  #lines = 0;
  /** Where the last line written begins in the buffer; -1 once it is handed on. */
  #lastLine = -1;
  readonly #parts = new Map<string, Uint8Array>();
  readonly #types = new Map<number, Uint8Array>();

  constructor(private readonly json: boolean, private readonly sink: (chunk: Uint8Array) => void) {}

  /** Adds the batch's entries. */
  add(b: LaunchLogBatch): void {
    for (let k = 0; k < b.updates.length; k++) {
      const u = b.updates[k];
      const part = this.#part(b.parts[k]);
      if (this.#lines > 0) {
        if (this.json) this.#byte(0x2c); // ","
        if (this.#at + LINE_ROOM + part.length > CHUNK) this.flush();
        else this.#byte(0x0a);
      }
      this.#room(LINE_ROOM + part.length);
      this.#lastLine = this.#at;
      if (this.json) this.#jsonLine(b, k, u, part);
      else this.#textLine(b, k, u, part);
      this.#lines++;
    }
  }

  /** Hands on the lines written and not yet handed on. */
  flush(): void {
    if (this.#at === 0) return;
    this.sink(this.#buf.subarray(0, this.#at));
    this.#at = 0;
    this.#lastLine = -1;
  }

  /**
   * Forgets the last line if it is not handed on yet: a JSON log that stops at an error
   * ends with the entries known to be followed by another, each with its comma.
   */
  dropLast(): void {
    if (this.#lastLine < 0) return;
    this.#at = Math.max(0, this.#lastLine - 1);
    this.#lastLine = -1;
  }

  /**
   * `{"index":..,"gpa":"0x..","pageType":"..","directive":..,"part":..,"contents":"..",
   * "digest":".."}` after 4 spaces, as JSON.stringify writes logEntryJson's object.
   */
  #jsonLine(b: LaunchLogBatch, k: number, u: LaunchLogBatch["updates"][number], part: Uint8Array) {
    this.#ascii('    {"index":');
    this.#number(b.first + k, 10, 0, SPACE);
    this.#ascii(',"gpa":"0x');
    this.#number(u.gpa, 16, 0, ZERO);
    this.#ascii('","pageType":');
    this.#bytes(this.#type(u.pageType, true));
    this.#ascii(',"directive":');
    this.#number(u.directive, 10, 0, SPACE);
    this.#ascii(',"part":');
    this.#bytes(part);
    this.#ascii(',"contents":"');
    this.#hexBytes(b.contents, k * 48);
    this.#ascii('","digest":"');
    this.#hexBytes(b.digests, k * 48);
    this.#ascii('"}');
  }

  /** Index (7 wide), GPA (0x and 12 digits), type (10 wide), the digests, the part. */
  #textLine(b: LaunchLogBatch, k: number, u: LaunchLogBatch["updates"][number], part: Uint8Array) {
    this.#number(b.first + k, 10, 7, SPACE);
    this.#ascii("  0x");
    this.#number(u.gpa, 16, 12, ZERO);
    this.#ascii("  ");
    this.#bytes(this.#type(u.pageType, false));
    this.#ascii("  ");
    this.#hexBytes(b.contents, k * 48);
    this.#ascii("  ");
    this.#hexBytes(b.digests, k * 48);
    this.#ascii("  ");
    this.#bytes(part);
  }

  /** The part's bytes: as text, or as a JSON string. */
  #part(name: string): Uint8Array {
    let bytes = this.#parts.get(name);
    if (!bytes) {
      if (this.#parts.size >= MAX_CACHED_PARTS) this.#parts.clear();
      bytes = encoder.encode(this.json ? JSON.stringify(name) : name);
      this.#parts.set(name, bytes);
    }
    return bytes;
  }

  /** The page type's name: padded to 10 for text, a JSON string for JSON. */
  #type(pageType: number, json: boolean): Uint8Array {
    let bytes = this.#types.get(pageType);
    if (!bytes) {
      const name = SNP_PAGE_TYPE_NAMES[pageType] ?? String(pageType);
      bytes = encoder.encode(json ? JSON.stringify(name) : name.padEnd(10));
      this.#types.set(pageType, bytes);
    }
    return bytes;
  }

  /** Makes room for `n` more bytes. */
  #room(n: number): void {
    if (this.#at + n <= this.#buf.length) return;
    const grown = new Uint8Array(this.#at + n + CHUNK);
    grown.set(this.#buf.subarray(0, this.#at));
    this.#buf = grown;
  }

  #byte(c: number): void {
    this.#room(1);
    this.#buf[this.#at++] = c;
  }

  #bytes(bytes: Uint8Array): void {
    this.#buf.set(bytes, this.#at);
    this.#at += bytes.length;
  }

  /** Writes ASCII text (the fixed pieces of a line). */
  #ascii(text: string): void {
    const buf = this.#buf;
    let at = this.#at;
    for (let i = 0; i < text.length; i++) buf[at++] = text.charCodeAt(i);
    this.#at = at;
  }

  /**
   * A number in `base` (10 or 16, lower case), padded on the left to `width` with the byte
   * `fill`: as n.toString(base).padStart(width, fill), which also writes what is not a whole
   * number from 0 to 2^53 - 1.
   */
  #number(n: number, base: number, width: number, fill: number): void {
    if (!(Number.isSafeInteger(n) && n >= 0)) {
      return this.#ascii(n.toString(base).padStart(width, String.fromCharCode(fill)));
    }
    let digits = 1;
    for (let p = base; p <= n; p *= base) digits++;
    const buf = this.#buf;
    for (let i = digits; i < width; i++) buf[this.#at++] = fill;
    for (let i = this.#at + digits - 1; i >= this.#at; i--) {
      buf[i] = HEX[n % base];
      n = Math.floor(n / base);
    }
    this.#at += digits;
  }

  /** 48 bytes from `at` as 96 lower-case hex digits. */
  #hexBytes(bytes: Uint8Array, at: number): void {
    const buf = this.#buf;
    let to = this.#at;
    for (let i = at; i < at + 48; i++) {
      const v = bytes[i];
      buf[to++] = HEX[v >> 4];
      buf[to++] = HEX[v & 15];
    }
    this.#at = to;
  }
}
