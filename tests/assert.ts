/** Minimal assertions on node:assert (JSR's @std/assert is not reachable here). */
import assert from "node:assert/strict";

export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  assert.deepStrictEqual(actual, expected, message);
}

export function assert_(condition: unknown, message?: string): asserts condition {
  assert.ok(condition, message);
}
export { assert_ as assert };

/** Asserts `fn` throws an instance of `type` whose message includes `includes`. */
export function assertThrows(
  fn: () => unknown,
  type: new (...a: never[]) => Error = Error,
  includes?: string,
): Error {
  try {
    fn();
  } catch (e) {
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
  throw new assert.AssertionError({ message: "expected an exception" });
}

/** Async version of assertThrows. */
export async function assertRejects(
  fn: () => Promise<unknown>,
  type: new (...a: never[]) => Error = Error,
  includes?: string,
): Promise<Error> {
  try {
    await fn();
  } catch (e) {
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
  throw new assert.AssertionError({ message: "expected a rejection" });
}
