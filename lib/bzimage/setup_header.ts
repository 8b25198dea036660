/**
 * The Linux x86 boot protocol's setup header (Documentation/arch/x86/boot.rst): layout,
 * parser and the checks the original makes before it will place a kernel.
 */
import { defineLayout } from "../bytes/layout.ts";
import { PAGE_SIZE, viewOf } from "../bytes/le.ts";

/** Offset of the setup header in a bzImage and in boot_params. */
export const SETUP_HEADER_OFFSET = 0x1f1;

/** struct setup_header, 0x7b bytes from 0x1f1. Offsets are relative to 0x1f1. */
export const SETUP_HEADER = defineLayout("setup_header", 0x7b, [
  ["setup_sects", 0x00, "u8"],
  ["root_flags", 0x01, "u16"],
  ["syssize", 0x03, "u32"],
  ["ram_size", 0x07, "u16"],
  ["vid_mode", 0x09, "u16"],
  ["root_dev", 0x0b, "u16"],
  ["boot_flag", 0x0d, "u16"],
  ["jump", 0x0f, "u16"],
  ["header", 0x11, "u32"],
  ["version", 0x15, "u16"],
  ["realmode_swtch", 0x17, "u32"],
  ["start_sys_seg", 0x1b, "u16"],
  ["kernel_version", 0x1d, "u16"],
  ["type_of_loader", 0x1f, "u8"],
  ["loadflags", 0x20, "u8"],
  ["setup_move_size", 0x21, "u16"],
  ["code32_start", 0x23, "u32"],
  ["ramdisk_image", 0x27, "u32"],
  ["ramdisk_size", 0x2b, "u32"],
  ["bootsect_kludge", 0x2f, "u32"],
  ["heap_end_ptr", 0x33, "u16"],
  ["ext_loader_ver", 0x35, "u8"],
  ["ext_loader_type", 0x36, "u8"],
  ["cmd_line_ptr", 0x37, "u32"],
  ["initrd_addr_max", 0x3b, "u32"],
  ["kernel_alignment", 0x3f, "u32"],
  ["relocatable_kernel", 0x43, "u8"],
  ["min_alignment", 0x44, "u8"],
  ["xloadflags", 0x45, "u16"],
  ["cmdline_size", 0x47, "u32"],
  ["hardware_subarch", 0x4b, "u32"],
  ["hardware_subarch_data", 0x4f, "u64"],
  ["payload_offset", 0x57, "u32"],
  ["payload_length", 0x5b, "u32"],
  ["setup_data", 0x5f, "u64"],
  ["pref_address", 0x67, "u64"],
  ["init_size", 0x6f, "u32"],
  ["handover_offset", 0x73, "u32"],
  ["kernel_info_offset", 0x77, "u32"],
]);

/** "HdrS", little-endian. */
export const SETUP_HEADER_MAGIC = 0x5372_6448;
/** xloadflags bit 0: the kernel has a 64-bit entry point at +0x200. */
export const XLF_KERNEL_64 = 0x1;
/** The bytes of the file a setup header needs: up to the end of the header. */
export const SETUP_HEADER_END = SETUP_HEADER_OFFSET + SETUP_HEADER.size;

/** The fields of a setup header igvmgen uses, plus its raw bytes for boot_params. */
export interface SetupHeader {
  /** The 0x7b raw bytes, copied into boot_params. */
  raw: Uint8Array;
  setupSects: number;
  version: number;
  xloadflags: number;
  prefAddress: number;
  initSize: number;
  /** Byte offset of the protected-mode payload in the file: (setup_sects + 1) * 512. */
  payloadOffset: number;
  /** Payload bytes the header announces (syssize * 16). */
  announcedPayload: number;
  /** The longest command line the kernel reads, without its NUL (255 before protocol 2.06). */
  cmdlineSize: number;
}

/** An input that is not a bootable bzImage for igvmgen. */
export class BzImageError extends Error {
  override name = "BzImageError";
}

/**
 * Parses and checks the setup header from the first bytes of a bzImage. `fileSize` is the
 * whole file's size, to check the payload offset. Mirrors the original's checks: "HdrS"
 * magic, a 64-bit entry point, pref_address above 3 MiB, page-aligned pref_address and
 * init_size. A file shorter than its header announces is accepted (the original's own test
 * image is such a stub); `payloadLength()` tells how much payload there is.
 */
export function parseSetupHeader(head: Uint8Array, fileSize: number): SetupHeader {
  if (head.length < SETUP_HEADER_END) {
    throw new BzImageError(
      `file is ${fileSize} bytes, too short for a setup header (needs ${SETUP_HEADER_END})`,
    );
  }
  const raw = head.slice(SETUP_HEADER_OFFSET, SETUP_HEADER_END);
  const view = viewOf(raw);
  const o = SETUP_HEADER.off;
  if (view.getUint32(o.header, true) !== SETUP_HEADER_MAGIC) {
    throw new BzImageError(`no "HdrS" magic at 0x202: not a bzImage`);
  }
  const setupSects = view.getUint8(o.setup_sects);
  const xloadflags = view.getUint16(o.xloadflags, true);
  const prefRaw = view.getBigUint64(o.pref_address, true);
  if (prefRaw >= 1n << 52n) {
    throw new BzImageError(`pref_address 0x${prefRaw.toString(16)} is out of range`);
  }
  const prefAddress = Number(prefRaw);
  const initSize = view.getUint32(o.init_size, true);
  const payloadOffset = (setupSects + 1) * 512;
  if ((xloadflags & XLF_KERNEL_64) === 0) {
    throw new BzImageError("the kernel has no 64-bit entry point (xloadflags bit 0 clear)");
  }
  if (prefAddress <= 3 * 1024 * 1024) {
    throw new BzImageError(`pref_address 0x${prefAddress.toString(16)} is not above 3 MiB`);
  }
  if (prefAddress % PAGE_SIZE !== 0) {
    throw new BzImageError(`pref_address 0x${prefAddress.toString(16)} is not page aligned`);
  }
  if (initSize % PAGE_SIZE !== 0) {
    throw new BzImageError(`init_size 0x${initSize.toString(16)} is not page aligned`);
  }
  const version = view.getUint16(o.version, true);
  return {
    raw,
    setupSects,
    version,
    xloadflags,
    prefAddress,
    initSize,
    payloadOffset,
    announcedPayload: view.getUint32(o.syssize, true) * 16,
    cmdlineSize: version >= 0x206 ? view.getUint32(o.cmdline_size, true) : 255,
  };
}

/** The payload bytes present in a file of `fileSize` bytes (0 when the setup code fills it). */
export function payloadLength(header: SetupHeader, fileSize: number): number {
  return Math.max(0, fileSize - header.payloadOffset);
}
