/**
 * The built-in ACPI table sets. `default`: a small PC-style set for an SNP guest; `clh`:
 * Cloud Hypervisor's guest layout. Both are hardware-reduced (no PM1 blocks, no SCI, no
 * legacy 8259 declared), as SNP guests need no legacy ACPI hardware.
 */
import * as aml from "./aml.ts";
import * as res from "./resource_template.ts";
import {
  type EcamWindow,
  FADT_HW_REDUCED_ACPI,
  FADT_PWR_BUTTON,
  FADT_RESET_REG_SUP,
  FADT_SLP_BUTTON,
  FADT_TMR_VAL_EXT,
  type FadtSpec,
  IAPC_CMOS_RTC_NOT_PRESENT,
  IAPC_VGA_NOT_PRESENT,
  type MadtSpec,
} from "./table_builder.ts";

/** The tables of a profile, before placement. */
export interface AcpiProfile {
  name: string;
  fadt: FadtSpec;
  madt: MadtSpec;
  mcfg?: EcamWindow[];
  dsdt: Uint8Array; // the AML term list
}

export const PROFILE_NAMES = ["default", "clh"] as const;
export type ProfileName = typeof PROFILE_NAMES[number];
export const MAX_VCPUS = 255;

const IO_APIC_ADDRESS = 0xfec00000;
/** ISO flags: active high (01), level triggered (11 << 2). */
const ACTIVE_HIGH_LEVEL = 0x0d;

/** COM1: 16550 at 0x3F8, IRQ 4. */
function com1(interrupt: Uint8Array): Uint8Array {
  return aml.device(
    "COM1",
    aml.name("_HID", aml.eisaId("PNP0501")),
    aml.name("_UID", aml.integer(0)),
    aml.name("_DDN", aml.string("COM1")),
    aml.method("_STA", 0, false, aml.ret(aml.integer(0x0f))),
    aml.name("_CRS", res.resourceTemplate(interrupt, res.io(0x3f8, 0x3f8, 0, 8))),
  );
}

/** Processor devices (ACPI0007) under a processor container, one per vCPU. */
function processors(vcpus: number): Uint8Array {
  const cpus: Uint8Array[] = [];
  for (let i = 0; i < vcpus; i++) {
    const mat = i <= 254 ? new Uint8Array([0, 8, i, i, 1, 0, 0, 0]) : undefined;
    cpus.push(aml.device(
      `C${i.toString(16).toUpperCase().padStart(3, "0")}`,
      aml.name("_HID", aml.string("ACPI0007")),
      aml.name("_UID", aml.integer(i)),
      aml.name("_STA", aml.integer(0x0f)),
      ...(mat ? [aml.name("_MAT", aml.buffer(mat))] : []),
    ));
  }
  return aml.device(
    "CPUS",
    aml.name("_HID", aml.string("ACPI0010")),
    aml.name("_CID", aml.eisaId("PNP0A05")),
    ...cpus,
  );
}

/** `default`: one PCI root bridge on port CF8, COM1, processors; ISOs for IRQ 0 and 9. */
export function defaultProfile(vcpus: number): AcpiProfile {
  const pci0 = aml.device(
    "PCI0",
    aml.name("_HID", aml.eisaId("PNP0A03")),
    aml.name("_UID", aml.integer(0)),
    aml.name("_SEG", aml.integer(0)),
    aml.name("_BBN", aml.integer(0)),
    aml.name(
      "_CRS",
      res.resourceTemplate(
        res.wordBusNumber(0, 0xff),
        res.io(0xcf8, 0xcf8, 1, 8),
        res.wordIo(0x0000, 0x0cf7),
        res.wordIo(0x0d00, 0xffff),
        res.dwordMemory(0xc0000000, 0xfebfffff),
      ),
    ),
  );
  return {
    name: "default",
    fadt: {
      flags: FADT_HW_REDUCED_ACPI | FADT_RESET_REG_SUP | FADT_PWR_BUTTON | FADT_SLP_BUTTON,
      iapcBootArch: IAPC_VGA_NOT_PRESENT,
      resetReg: { spaceId: 1, bitWidth: 8, accessSize: 1, address: 0xcf9 },
      resetValue: 0x06,
    },
    madt: {
      vcpus,
      ioApicId: 0,
      ioApicAddress: IO_APIC_ADDRESS,
      overrides: [{ source: 0, gsi: 2, flags: 0 }, { source: 9, gsi: 9, flags: ACTIVE_HIGH_LEVEL }],
    },
    dsdt: aml.scope("\\_SB", pci0, com1(res.irqNoFlags(4)), processors(vcpus)),
  };
}

/** Cloud Hypervisor: 10 PCI segments with ECAM windows. */
const CLH_SEGMENTS = 10;
const CLH_ECAM_BASE = 0xe8000000;
const CLH_ECAM_SIZE = 0x100000;
const CLH_MEM32 = [0xc0000000, 0xe7ffffff] as const;
const CLH_MEM64_BASE = 0x100_0000_0000n;
const CLH_MEM64_SIZE = 0x1_0000_0000n;
const CLH_ACPI_IO = 0x600;

/** `clh`: Cloud Hypervisor's guest layout (hardware-reduced, PCI segments, ECAM). */
export function clhProfile(vcpus: number): AcpiProfile {
  const segments: Uint8Array[] = [];
  for (let s = 0; s < CLH_SEGMENTS; s++) {
    const mem64 = res.qwordMemory(
      CLH_MEM64_BASE + BigInt(s) * CLH_MEM64_SIZE,
      CLH_MEM64_BASE + BigInt(s + 1) * CLH_MEM64_SIZE - 1n,
    );
    const windows = s === 0
      ? [
        res.io(0xcf8, 0xcf8, 1, 8),
        res.dwordMemory(...CLH_MEM32),
        mem64,
        res.wordIo(0, 0xcf7),
        res.wordIo(0xd00, 0xffff),
      ]
      : [res.memory32Fixed(CLH_ECAM_BASE + s * CLH_ECAM_SIZE, CLH_ECAM_SIZE), mem64];
    segments.push(aml.device(
      `PC${s.toString().padStart(2, "0")}`,
      aml.name("_HID", aml.eisaId("PNP0A08")),
      aml.name("_CID", aml.eisaId("PNP0A03")),
      aml.name("_ADR", aml.integer(0)),
      aml.name("_SEG", aml.integer(s)),
      aml.name("_UID", aml.integer(s)),
      aml.name("_CCA", aml.integer(1)),
      aml.name("_CRS", res.resourceTemplate(res.wordBusNumber(0, 0), ...windows)),
    ));
  }
  const ecam = Array.from(
    { length: CLH_SEGMENTS },
    (_, s) => res.memory32Fixed(CLH_ECAM_BASE + s * CLH_ECAM_SIZE, CLH_ECAM_SIZE),
  );
  const mbrd = aml.device(
    "MBRD",
    aml.name("_HID", aml.eisaId("PNP0C02")),
    aml.name("_UID", aml.integer(0)),
    aml.name("_CRS", res.resourceTemplate(...ecam)),
  );
  const pwrb = aml.device(
    "PWRB",
    aml.name("_HID", aml.eisaId("PNP0C0C")),
    aml.name("_UID", aml.integer(0)),
  );
  const io600 = { spaceId: 1, bitWidth: 8, accessSize: 1, address: CLH_ACPI_IO };
  return {
    name: "clh",
    fadt: {
      flags: FADT_HW_REDUCED_ACPI | FADT_RESET_REG_SUP | FADT_TMR_VAL_EXT,
      iapcBootArch: IAPC_VGA_NOT_PRESENT | IAPC_CMOS_RTC_NOT_PRESENT,
      resetReg: io600,
      resetValue: 0x01,
      sleepControl: io600,
      sleepStatus: io600,
      hypervisorId: "CLOUDHYP",
    },
    madt: {
      vcpus,
      ioApicId: 0,
      ioApicAddress: IO_APIC_ADDRESS,
      overrides: [{ source: 9, gsi: 9, flags: ACTIVE_HIGH_LEVEL }],
    },
    mcfg: Array.from(
      { length: CLH_SEGMENTS },
      (_, s) => ({ base: CLH_ECAM_BASE + s * CLH_ECAM_SIZE, segment: s, startBus: 0, endBus: 0 }),
    ),
    dsdt: aml.terms(
      aml.scope(
        "\\_SB",
        ...segments,
        mbrd,
        com1(res.extendedInterrupt(4)),
        pwrb,
        processors(vcpus),
      ),
      aml.name("_S5", aml.pkg(aml.integer(5))),
    ),
  };
}

/** The profile by name. */
export function acpiProfile(name: ProfileName, vcpus: number): AcpiProfile {
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > MAX_VCPUS) {
    throw new RangeError(`vCPU count ${vcpus} is not from 1 to ${MAX_VCPUS}`);
  }
  return name === "clh" ? clhProfile(vcpus) : defaultProfile(vcpus);
}
