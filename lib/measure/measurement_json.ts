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
