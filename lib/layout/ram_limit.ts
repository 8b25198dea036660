/**
 * The end of guest RAM below 4 GiB. Guest pages must not overlap the MMIO hole: the PCI
 * windows, the I/O APIC at 0xFEC00000 and the local APIC at 0xFEE00000. Both built-in ACPI
 * profiles declare their 32-bit PCI MMIO window from 0xC0000000 (Cloud Hypervisor reserves
 * 3 GiB to 4 GiB for devices as well), so an image's pages must end at or below it.
 */
import { InputError } from "../errors.ts";
import { hex } from "../bytes/le.ts";

/** Guest pages must end at or below this address. */
export const GUEST_RAM_LIMIT = 0xc000_0000;

/** `0xc0000000` for messages. */
export const GUEST_RAM_LIMIT_HEX = hex(GUEST_RAM_LIMIT);

/** The most bytes an input loaded at `start` can have and still end by the limit. */
export function roomBelowRamLimit(start: number): number {
  return Math.max(0, GUEST_RAM_LIMIT - start);
}

/**
 * Throws when the planned guest memory ends past the limit; `what` names the input that
 * reaches furthest (`-rdinit FILE`).
 */
export function checkGuestRamLimit(top: number, what: string): void {
  if (top > GUEST_RAM_LIMIT) {
    throw new InputError(
      `${what}: the guest memory would end at 0x${
        top.toString(16)
      }, past ${GUEST_RAM_LIMIT_HEX} where the MMIO hole starts`,
    );
  }
}
