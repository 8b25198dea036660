/** The measurement JSON the original igvmgen writes with `-measurement_file`, and its SVN. */
import { UsageError } from "../errors.ts";

/** The measurement JSON as the original writes it (indent 2, no trailing newline). */
export function measurementJson(svn: string, launchMeasurement: string): string {
  return JSON.stringify(
    { "x-ms-sevsnpvm-guestsvn": svn, "x-ms-sevsnpvm-launchmeasurement": launchMeasurement },
    null,
    2,
  );
}

/** A guest SVN as the measurement JSON writes it: decimal digits, a u32 (at most `max`). */
export function checkSvn(field: string, svn: string | number, max = 0xffff_ffff): string {
  const text = String(svn);
  if (!/^[0-9]+$/.test(text) || Number(text) > max) {
    const range = max === Infinity ? "" : ` from 0 to ${max}`;
    throw new UsageError(`${field}: expected a whole number${range}, got "${text}"`);
  }
  return text;
}

/**
 * A note when the measurement JSON's guest SVN (`-svn`) is not the ID block's (the TEI
 * config's `guest_svn`, default 2), else undefined. The original writes `-svn` to the JSON
 * only and igvmgen keeps its bytes, but the attestation report carries the ID block's.
 */
export function svnMismatchNote(svn: string, idBlockGuestSvn: number): string | undefined {
  if (Number(svn) === idBlockGuestSvn) return undefined;
  return `note: the measurement JSON's guest SVN is ${svn} (-svn), the ID block's is ` +
    `${idBlockGuestSvn} (-config_file's guest_svn, default 2), and attestation reports carry ` +
    `the ID block's: give -svn ${idBlockGuestSvn} to make them agree`;
}
