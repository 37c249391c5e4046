import { escapeText, jsonNeedsEscape, mapStrings, unescapeText } from "./text-escape";

/** SQL for a `timestamptz` column as float8 milliseconds since the Unix epoch (exact to the µs). */
export function millisecondsOf(column: string): string {
  return `(extract(epoch from ${column}) * 1000)::float8`;
}

/**
 * SQL for a parameter or column holding milliseconds since the Unix epoch, as `timestamptz`,
 * exactly: whole microseconds recovered by rounding (`ms * 1000` is exact to well under half a
 * microsecond from 1834 to 2106), added to the epoch as an integer count of microseconds. Every
 * time the store turns back into a timestamp (a range bound, a probe point, the row a
 * downsample picked, an area's previous good sample) goes through here, so it lands on the row's
 * own stored key. `to_timestamp(ms / 1000)` did not: its float division and rescaling missed
 * about one stored time in fourteen by 1 µs (for example 1931-12-01 00:00:00.000317), and an
 * equality join on it dropped the row.
 */
export function timestampOf(parameter: string): string {
  return timestampOfMicroseconds(`round(${parameter}::float8 * 1000)`);
}

/** SQL for whole microseconds since the Unix epoch (a float8 or int8 expression) as `timestamptz`, exactly. */
export function timestampOfMicroseconds(micros: string): string {
  return `(timestamptz 'epoch' + (${micros}) * interval '1 microsecond')`;
}

/**
 * JSON text of `value` for a `$n::text::jsonb` parameter, or null for `undefined`. A bigint
 * becomes its decimal string, since JSON has no 64-bit integers. Every string in it, object keys
 * included, is escaped (`escapeText`): `jsonb` holds neither U+0000 nor a lone surrogate.
 */
export function jsonText(value: unknown): string | null {
  if (value === undefined) return null;
  const text = JSON.stringify(value, (_key, child: unknown) => (typeof child === "bigint" ? child.toString() : child));
  if (!jsonNeedsEscape(text)) return text;
  return JSON.stringify(mapStrings(JSON.parse(text), escapeText));
}

/** Parses JSON text read back with `column::text`, unescaping its strings; SQL NULL gives undefined. */
export function parseJsonText(text: string | null): unknown {
  if (text === null) return undefined;
  const value: unknown = JSON.parse(text);
  // jsonb writes the escape character U+0010 as \u0010.
  return text.includes("\\u0010") ? mapStrings(value, unescapeText) : value;
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
