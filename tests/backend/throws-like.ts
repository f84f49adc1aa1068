// Shared by the addon tests: the exact error class and properties of a throw.
import type { Test } from 'tap';

/** Run fn, expect it to throw an instance of ctor with the given own properties. */
export function throwsLike(
  t: Test,
  fn: () => unknown,
  ctor: ErrorConstructor | TypeErrorConstructor | RangeErrorConstructor,
  props: Record<string, unknown>,
  msg: string,
): void {
  let caught: unknown = undefined;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  t.ok(caught instanceof ctor, `${msg}: throws ${ctor.name} (got ${String(caught)})`);
  t.match(caught, props, `${msg}: error properties`);
}
