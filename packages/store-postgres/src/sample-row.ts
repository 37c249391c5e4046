import { GOOD, type Sample } from "@kiln/core";
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
  readonly quality: number;
  readonly quality_reason: string | null;
}

/** The select list of a {@link SampleRow} from `samples` (unqualified column names). */
export const SAMPLE_ROW_COLUMNS = `${millisecondsOf("time")} AS timestamp, value_float, value_int::text AS value_int,
  value_uint::text AS value_uint, value_bool, value_text, quality, quality_reason`;

/** The sample of `tag` a row holds: the one set value column (int8 and numeric as a bigint) and its quality. */
export function toSample(tag: string, row: SampleRow): Sample {
  const value =
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
