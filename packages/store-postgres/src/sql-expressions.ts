/** SQL for a `timestamptz` column as float8 milliseconds since the Unix epoch (exact to the µs). */
export function millisecondsOf(column: string): string {
  return `(extract(epoch from ${column}) * 1000)::float8`;
}

/** SQL for a parameter holding milliseconds since the Unix epoch, as `timestamptz`. */
export function timestampOf(parameter: string): string {
  return `to_timestamp(${parameter}::float8 / 1000)`;
}

/**
 * JSON text of `value` for a `$n::text::jsonb` parameter, or null for `undefined`. A bigint
 * becomes its decimal string, since JSON has no 64-bit integers.
 */
export function jsonText(value: unknown): string | null {
  if (value === undefined) return null;
  return JSON.stringify(value, (_key, child: unknown) => (typeof child === "bigint" ? child.toString() : child));
}

/** Parses JSON text read back with `column::text`; SQL NULL gives undefined. */
export function parseJsonText(text: string | null): unknown {
  return text === null ? undefined : JSON.parse(text);
}

/**
 * SQL for a `timestamptz` column as float8 milliseconds since the Unix epoch, in float8
 * arithmetic only (`extract` works in numeric, several times slower per row): whole
 * microseconds recovered by rounding, exact for times from 1834 to 2106 (the rounding error of
 * the two float8 steps stays under half a microsecond there). For queries that convert every row.
 */
export function fastMillisecondsOf(column: string): string {
  return `(round(date_part('epoch', ${column}) * 1000000) / 1000)`;
}
