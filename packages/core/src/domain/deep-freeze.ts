/**
 * Freezes `value` and every object reachable from it through own enumerable properties, in
 * place, and returns it. An object already frozen is taken as deep-frozen (its children are not
 * visited), so freeze only data this module built.
 */
export function deepFreeze<TValue>(value: TValue): TValue {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
