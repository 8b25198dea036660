import { assertEquals } from "./assert.ts";
import { basename, dirname, join } from "../lib/io/path.ts";

// Expected values are node:path's POSIX results, except "a//b", whose folder node gives as "a/".
Deno.test("dirname() and basename() split paths like node:path", () => {
  const cases: [string, string, string][] = [
    ["out.igvm", ".", "out.igvm"],
    ["dir/out.igvm", "dir", "out.igvm"],
    ["/tmp/x/out.igvm", "/tmp/x", "out.igvm"],
    ["/out.igvm", "/", "out.igvm"],
    ["dir/sub/", "dir", "sub"],
    ["a//b", "a", "b"],
    ["/", "/", ""],
  ];
  for (const [path, dir, base] of cases) {
    assertEquals(dirname(path), dir, `dirname(${path})`);
    assertEquals(basename(path), base, `basename(${path})`);
  }
});

Deno.test("join() puts one separator between a folder and a name", () => {
  assertEquals(join("acpi", "DSDT.dsl"), "acpi/DSDT.dsl");
  assertEquals(join("acpi/", "DSDT.dsl"), "acpi/DSDT.dsl");
  assertEquals(join("/", "x"), "/x");
  assertEquals(join(".", "x"), "./x");
});
