/** The measurement JSON the original igvmgen writes with `-measurement_file`. */

/** The measurement JSON as the original writes it (indent 2, no trailing newline). */
export function measurementJson(svn: string, launchMeasurement: string): string {
  return JSON.stringify(
    { "x-ms-sevsnpvm-guestsvn": svn, "x-ms-sevsnpvm-launchmeasurement": launchMeasurement },
    null,
    2,
  );
}
