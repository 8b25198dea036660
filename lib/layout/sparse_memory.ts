/** Generated guest bytes (tables, boot_params, ACPI...) kept by page, written at any GPA. */
import { PAGE_SIZE } from "../bytes/le.ts";

/** A sparse byte-addressed memory of whole pages, allocated on first write. */
export class SparseMemory {
  readonly #pages = new Map<number, Uint8Array>();

  /** Writes `bytes` at `gpa`, across pages as needed. */
  write(gpa: number, bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.length) {
      const at = gpa + done;
      const pageGpa = at - (at % PAGE_SIZE);
      const inPage = at - pageGpa;
      const n = Math.min(PAGE_SIZE - inPage, bytes.length - done);
      let page = this.#pages.get(pageGpa);
      if (!page) {
        page = new Uint8Array(PAGE_SIZE);
        this.#pages.set(pageGpa, page);
      }
      page.set(bytes.subarray(done, done + n), inPage);
      done += n;
    }
  }

  /** The page at page-aligned `gpa`, or undefined when nothing was written there. */
  page(gpa: number): Uint8Array | undefined {
    return this.#pages.get(gpa);
  }
}
