// Resilience options are written by the programmer wiring the system, not by an operator, so
// nonsense values are programmer errors: TypeError for the wrong type, RangeError for a value
// out of range (STYLE.md, "Errors"). Each message names the option's path.

/** @internal Throws unless `value` is a number (Infinity allowed when `allowInfinity`) at least `min`. */
export function assertNumber(
  value: unknown,
  path: string,
  rule: { min: number; exclusiveMin?: boolean; integer?: boolean; allowInfinity?: boolean },
): asserts value is number {
  if (typeof value !== "number" || Number.isNaN(value)) {
    throw new TypeError(`${path} must be a number, got ${show(value)}`);
  }
  if (!rule.allowInfinity && !Number.isFinite(value)) throw new RangeError(`${path} must be finite, got ${value}`);
  if (rule.integer && Number.isFinite(value) && !Number.isInteger(value)) {
    throw new RangeError(`${path} must be an integer, got ${value}`);
  }
  if (rule.exclusiveMin ? value <= rule.min : value < rule.min) {
    throw new RangeError(
      `${path} must be ${rule.exclusiveMin ? "greater than" : "at least"} ${rule.min}, got ${value}`,
    );
  }
}

/** @internal Throws unless `value` is a function or undefined. */
export function assertOptionalFunction(value: unknown, path: string): asserts value is CallableFunction | undefined {
  if (value !== undefined && typeof value !== "function") {
    throw new TypeError(`${path} must be a function, got ${show(value)}`);
  }
}

/** @internal Throws unless `value` is a non-empty string. */
export function assertName(value: unknown, path: string): asserts value is string {
  if (typeof value !== "string") throw new TypeError(`${path} must be a string, got ${show(value)}`);
  if (value.length === 0) throw new RangeError(`${path} must not be empty`);
}

/** @internal Throws unless `value` looks like a Clock port. */
export function assertClock(value: unknown, path: string): void {
  const clock = value as Record<string, unknown> | null | undefined;
  if (
    typeof clock !== "object" ||
    clock === null ||
    typeof clock["now"] !== "function" ||
    typeof clock["setTimeout"] !== "function" ||
    typeof clock["clearTimeout"] !== "function" ||
    typeof clock["sleep"] !== "function"
  ) {
    throw new TypeError(`${path} must be a Clock (now, setTimeout, clearTimeout, sleep)`);
  }
}

function show(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "string") return `"${value}"`;
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") return String(value);
  return typeof value;
}
