/**
 * `o` without its undefined fields, so that spreading it over defaults, or passing it where
 * `exactOptionalPropertyTypes` forbids an explicit undefined, keeps the defaults.
 */
export function withoutUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
