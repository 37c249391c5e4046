import { GOOD, type Sample, type TagDataType, type TagValue } from "@kiln/core";
import { decodeArrayValue } from "./array-value";
import { qualityFromStatusCode } from "@kiln/core/driver-kit";
import { millisecondsOf } from "./sql-expressions";

/** One stored sample as read back: the columns of {@link SAMPLE_ROW_COLUMNS}. */
export interface SampleRow {
  readonly timestamp: number;
  readonly value_float: number | null;
  readonly value_int: string | null;
  readonly value_uint: string | null;
  readonly value_bool: boolean | null;
  readonly value_text: string | null;
  /** `value_array` as JSON text (docs/adr/0038-array-tags.md). */
  readonly value_array: string | null;
  readonly quality: number;
  readonly quality_reason: string | null;
}

/** The select list of a {@link SampleRow} from `samples` (unqualified column names). */
export const SAMPLE_ROW_COLUMNS = `${millisecondsOf("time")} AS timestamp, value_float, value_int::text AS value_int,
  value_uint::text AS value_uint, value_bool, value_text, value_array::text AS value_array, quality, quality_reason`;

/**
 * SQL: a sample's value when it is not in `value_float`, as one text column (NULL when
 * `value_float` is set or there is no value): `i` + int8, `u` + uint64, `b` + 0/1, `t` + text,
 * `a` + an array's JSON.
 * Where a query returns a few values, one column instead of four keeps it cheap to plan and
 * decode; {@link otherValue} reads it back.
 */
export const OTHER_VALUE = `CASE WHEN value_float IS NULL THEN
  coalesce('i' || value_int::text, 'u' || value_uint::text, 'b' || value_bool::int4::text, 't' || value_text,
    'a' || value_array::text) END`;

/** The value an {@link OTHER_VALUE} column holds (64-bit integers as bigint; an array by `dataType`), or null. */
export function otherValue(other: string | null, dataType?: TagDataType): TagValue | null {
  if (other === null) return null;
  const rest = other.slice(1);
  switch (other[0]) {
    case "i":
    case "u":
      return BigInt(rest);
    case "b":
      return rest === "1";
    case "a":
      return decodeArrayValue(rest, dataType);
    default:
      return rest;
  }
}

/**
 * The sample of `tag` a row holds: the one set value column (int8 and numeric as a bigint, an
 * array by the tag's `dataType`) and its quality.
 */
export function toSample(tag: string, row: SampleRow, dataType?: TagDataType): Sample {
  const value: TagValue | null =
    (row.value_array !== null ? decodeArrayValue(row.value_array, dataType) : null) ??
    row.value_float ??
    (row.value_int !== null ? BigInt(row.value_int) : null) ??
    (row.value_uint !== null ? BigInt(row.value_uint) : null) ??
    row.value_bool ??
    row.value_text ??
    null;
  const code = row.quality >>> 0;
  const quality =
    code === 0 && row.quality_reason === null
      ? GOOD
      : qualityFromStatusCode(code, row.quality_reason === null ? undefined : row.quality_reason);
  return { tag, value, timestamp: row.timestamp, quality };
}
