/** Minimal assertions on node:assert (JSR's @std/assert is not reachable here). */
import assert from "node:assert/strict";

export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  assert.deepStrictEqual(actual, expected, message);
}

export function assert_(condition: unknown, message?: string): asserts condition {
  assert.ok(condition, message);
}
export { assert_ as assert };

type ErrorClass = new (...a: never[]) => Error;

/** Checks a caught value is a `type` whose message includes `includes`; returns it. */
function checkError(e: unknown, type: ErrorClass, includes?: string): Error {
  assert.ok(
    e instanceof type,
    `expected ${type.name}, got ${(e as Error)?.name}: ${(e as Error)?.message}`,
  );
  if (includes) {
    assert.ok(
      (e as Error).message.includes(includes),
      `"${(e as Error).message}" lacks "${includes}"`,
    );
  }
  return e as Error;
}

/** Asserts `fn` throws an instance of `type` whose message includes `includes`. */
export function assertThrows(
  fn: () => unknown,
  type: ErrorClass = Error,
  includes?: string,
): Error {
  try {
    fn();
  } catch (e) {
    return checkError(e, type, includes);
  }
  throw new assert.AssertionError({ message: "expected an exception" });
}

/** Async version of assertThrows. */
export async function assertRejects(
  fn: () => Promise<unknown>,
  type: ErrorClass = Error,
  includes?: string,
): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    return checkError(e, type, includes);
  }
  throw new assert.AssertionError({ message: "expected a rejection" });
}
