/** The byte streams every layer passes around: sequential input readers and positioned sinks. */

/** Reads an input's bytes in order, once. */
export interface ByteReader {
  /** Fills `dst` from the input; returns how many bytes it got (less only at the end). */
  read(dst: Uint8Array): Promise<number>;
  /** The same without waiting: bytes in memory, or a file read on this thread. */
  readSync?(dst: Uint8Array): number;
  close(): void;
}

/** Bulk input bytes (kernel payload, initrd, shared payload) placed at a page-aligned GPA. */
export interface StreamRegion {
  name: string;
  gpa: number;
  length: number;
  open(): Promise<ByteReader>;
}

/** Where the writer puts bytes: positioned writes into a seekable sink. */
export interface ByteSink {
  writeAt(offset: number, bytes: Uint8Array): Promise<void>;
}
