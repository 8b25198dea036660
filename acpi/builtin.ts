/**
 * Places a built-in profile's tables where the original puts ACPI: the RSDP at 0xE0000, the
 * XSDT at 1 MiB and the other tables from 0x101000 (FACS 64-byte aligned, others 8-byte).
 */
import type { AcpiImage } from "./acpi_image.ts";
import { ACPI_DEFAULT_XSDT_ADDR, ACPI_RSDP_ADDR } from "./tables.ts";
import { alignUp, PAGE_SIZE } from "../lib/bytes/le.ts";
import { acpiProfile, type ProfileName } from "./profiles.ts";
import {
  encodeDsdt,
  encodeFacs,
  encodeFadt,
  encodeMadt,
  encodeMcfg,
  encodeRsdp,
  encodeXsdt,
} from "./table_builder.ts";

/** The built-in tables of `profile` for `vcpus` vCPUs, placed in guest memory. */
export function builtinAcpi(profile: ProfileName, vcpus: number): AcpiImage {
  const p = acpiProfile(profile, vcpus);
  let next = ACPI_DEFAULT_XSDT_ADDR + PAGE_SIZE;
  const place = (size: number, alignment = 8) => {
    const at = alignUp(next, alignment);
    next = at + size;
    return at;
  };
  const facs = encodeFacs();
  const dsdt = encodeDsdt(p.dsdt);
  const madt = encodeMadt(p.madt);
  const mcfg = p.mcfg ? encodeMcfg(p.mcfg) : undefined;
  const facsAt = place(facs.length, 64);
  const dsdtAt = place(dsdt.length);
  const fadt = encodeFadt(p.fadt, facsAt, dsdtAt);
  const fadtAt = place(fadt.length);
  const madtAt = place(madt.length);
  const mcfgAt = mcfg ? place(mcfg.length) : undefined;
  const xsdt = encodeXsdt([fadtAt, madtAt, ...(mcfgAt !== undefined ? [mcfgAt] : [])]);
  const writes = [
    { gpa: ACPI_RSDP_ADDR, bytes: encodeRsdp(ACPI_DEFAULT_XSDT_ADDR) },
    { gpa: ACPI_DEFAULT_XSDT_ADDR, bytes: xsdt },
    { gpa: facsAt, bytes: facs },
    { gpa: dsdtAt, bytes: dsdt },
    { gpa: fadtAt, bytes: fadt },
    { gpa: madtAt, bytes: madt },
    ...(mcfg && mcfgAt !== undefined ? [{ gpa: mcfgAt, bytes: mcfg }] : []),
  ];
  return { writes, endAddr: alignUp(next, PAGE_SIZE) };
}
