/**
 * The few path operations igvmgen needs, as string operations, so that no Node-compatibility
 * module loads at start-up. They agree with node:path's POSIX functions except that repeated
 * separators are collapsed. On Windows, "\" is a separator too.
 */

const WINDOWS = Deno.build.os === "windows";
const isSep = (c: string) => c === "/" || (WINDOWS && c === "\\");

/** The path without trailing separators (a root stays as it is). */
function trimTrailing(path: string): string {
  let end = path.length;
  while (end > 1 && isSep(path[end - 1])) end--;
  return path.slice(0, end);
}

function lastSep(path: string): number {
  for (let i = path.length - 1; i >= 0; i--) if (isSep(path[i])) return i;
  return -1;
}

/** The folder part of `path`: "." for a bare name, "/" for a top-level entry. */
export function dirname(path: string): string {
  const p = trimTrailing(path);
  const at = lastSep(p);
  if (at < 0) return ".";
  return at === 0 ? p[0] : trimTrailing(p.slice(0, at));
}

/** The last part of `path`. */
export function basename(path: string): string {
  const p = trimTrailing(path);
  return p.length === 1 && isSep(p) ? "" : p.slice(lastSep(p) + 1);
}

/** `dir/name`, with one separator between them. */
export function join(dir: string, name: string): string {
  if (dir === "") return name;
  return isSep(dir[dir.length - 1]) ? dir + name : `${dir}/${name}`;
}
