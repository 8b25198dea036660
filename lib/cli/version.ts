/** igvmgen's version: the `version` of deno.json, so a release changes it in one place. */
import config from "../../deno.json" with { type: "json" };

/** The version `igvmgen --version` prints, such as `0.1.0`. */
export const VERSION: string = config.version;
