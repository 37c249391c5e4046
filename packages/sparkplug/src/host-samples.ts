import type { Quality, TagValue } from "@kiln/core";
import { GOOD, QualityCodes, quality, qualityFromStatusCode } from "@kiln/core/driver-kit";
import type { SparkplugMetricDataType } from "./datatypes";
import type { SparkplugPropertySet, SparkplugValue } from "./payload";

/** The Sparkplug quality codes of the `Quality` property (Sparkplug 3.0.0, 6.4.8.1 "Quality Codes"). */
export const SPARKPLUG_QUALITY = { bad: 0, good: 192, stale: 500 } as const;

const INTEGER_TYPES: ReadonlySet<string> = new Set([
  "Int8",
  "Int16",
  "Int32",
  "Int64",
  "UInt8",
  "UInt16",
  "UInt32",
  "UInt64",
]);
const RANK = { good: 0, uncertain: 1, bad: 2 } as const;

/** A quality property's integer value; a string naming what is wrong with it; undefined when absent. */
function integerProperty(
  properties: SparkplugPropertySet | undefined,
  key: string,
  max: number,
): number | string | undefined {
  if (properties === undefined || !Object.hasOwn(properties, key)) return undefined;
  const { type, value } = properties[key]!;
  const number = typeof value === "bigint" ? Number(value) : value;
  if (INTEGER_TYPES.has(type) && typeof number === "number" && Number.isInteger(number) && number >= 0 && number <= max)
    return number;
  const shown = typeof value === "string" ? JSON.stringify(value) : String(value as unknown);
  return `${key} property is a ${type} ${shown}, not an integer from 0 to ${max}: quality unknown`;
}

/**
 * The Kiln quality of a metric from its properties, as the Kiln edge node sends them
 * (see `METRIC_PROPERTIES` and docs/northbound/sparkplug.md):
 * - `StatusCode` (the OPC UA StatusCode, an integer property) when present: its severity and code, exactly;
 * - `Quality` (an integer property): 192 good, 500 (STALE) uncertain, 0 bad; any other value is
 *   read as an OPC DA quality byte (bits 7–6: 11 good, 01 uncertain, 00 bad);
 * - both present and of different severities: the worse, with both named in the reason;
 * - a `StatusCode` or `Quality` property that is not an integer of its range (a String
 *   `"2150694912"`, a Double, a null) is never read as good: the quality is bad
 *   (`BadTypeMismatch`) with a reason naming the property, whatever the other one says;
 * - neither: good (a DATA metric without quality properties is good);
 * - `StatusReason` is the reason.
 *
 * A `null` value is never good: a null with a good quality becomes bad `BadNoData`.
 */
export function qualityOfMetric(properties: SparkplugPropertySet | undefined, isNull: boolean): Quality {
  // The common case of a DATA metric: no quality properties, a value.
  if (properties === undefined && !isNull) return GOOD;
  const reasonProperty = properties?.StatusReason?.value;
  const reason = typeof reasonProperty === "string" ? reasonProperty : undefined;
  const statusCode = integerProperty(properties, "StatusCode", 0xffffffff);
  const sparkplugQuality = integerProperty(properties, "Quality", 0xffffffff);
  let result: Quality;
  if (typeof statusCode === "string" || typeof sparkplugQuality === "string") {
    const malformed = [statusCode, sparkplugQuality].filter((each) => typeof each === "string").join("; ");
    result = quality(
      "bad",
      reason === undefined ? malformed : `${malformed} (${reason})`,
      QualityCodes.BadTypeMismatch,
    );
  } else {
    const fromStatus = statusCode === undefined ? undefined : qualityFromStatusCode(statusCode, reason);
    const fromQuality = sparkplugQuality === undefined ? undefined : qualityOfSparkplugCode(sparkplugQuality, reason);
    if (fromStatus !== undefined && fromQuality !== undefined && fromStatus.severity !== fromQuality.severity) {
      const worse = RANK[fromStatus.severity] > RANK[fromQuality.severity] ? fromStatus : fromQuality;
      const disagree = `StatusCode 0x${statusCode!.toString(16).padStart(8, "0")} (${fromStatus.severity}) and Quality ${sparkplugQuality} (${fromQuality.severity}) disagree`;
      result = quality(worse.severity, reason === undefined ? disagree : `${disagree} (${reason})`, worse.code);
    } else result = fromStatus ?? fromQuality ?? quality("good", reason);
  }
  if (isNull && result.severity === "good") return quality("bad", reason ?? "null value", QualityCodes.BadNoData);
  return result;
}

function qualityOfSparkplugCode(code: number, reason: string | undefined): Quality {
  if (code === SPARKPLUG_QUALITY.stale)
    return quality("uncertain", reason ?? "Sparkplug quality STALE (500)", QualityCodes.UncertainLastUsableValue);
  const bits = code & 0xc0;
  return bits === 0xc0
    ? quality("good", reason)
    : bits === 0x40
      ? quality("uncertain", reason ?? `Sparkplug quality ${code}`)
      : quality("bad", reason ?? `Sparkplug quality ${code}`);
}

/**
 * The Kiln value of a decoded Sparkplug metric value, or undefined when Kiln has no tag value
 * for it (arrays, Bytes, File, DataSet, Template): numbers, bigints (Int64/UInt64 beyond 2^53),
 * booleans and strings as they are; DateTime as ms since the Unix epoch; `null` for `is_null`.
 */
export function tagValueOfMetric(
  value: SparkplugValue | null | undefined,
  datatype: SparkplugMetricDataType | undefined,
): TagValue | null | undefined {
  if (value === null || value === undefined) return null;
  switch (typeof value) {
    case "number":
    case "bigint":
    case "boolean":
      return value;
    case "string":
      return datatype === undefined || datatype === "String" || datatype === "Text" || datatype === "UUID"
        ? value
        : undefined;
    default:
      return undefined;
  }
}
