/** One element of a PostgreSQL array literal. */
export type SqlArrayElement = string | number | boolean | bigint | null | undefined;

/**
 * Serialises `values` as a PostgreSQL array literal (`{1,NULL,"a \"b\""}`), to be passed as a
 * text parameter and cast in SQL (`$1::text::float8[]`). Doing this here rather than in the
 * driver keeps NULL elements NULL on every client (PGlite turns them into `NaN` or `'NULL'`).
 * Non-finite numbers become `NaN`, `Infinity` and `-Infinity`, and -0 stays `-0`, which `float8` accepts.
 */
export function arrayLiteral(values: readonly SqlArrayElement[]): string {
  const parts = new Array<string>(values.length);
  for (let index = 0; index < values.length; index++) {
    const value = values[index];
    if (value === null || value === undefined) parts[index] = "NULL";
    else if (typeof value === "string") parts[index] = `"${value.replace(/[\\"]/g, "\\$&")}"`;
    else if (typeof value === "boolean") parts[index] = value ? "t" : "f";
    else if (Object.is(value, -0)) parts[index] = "-0";
    else parts[index] = String(value);
  }
  return `{${parts.join(",")}}`;
}
