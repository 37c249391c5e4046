import type { Quality, TagValue } from "@kiln/core";
import { GOOD, QualityCodes, quality, qualityFromStatusCode } from "@kiln/core/driver-kit";
import type { SparkplugMetricDataType } from "./datatypes";
import type { SparkplugPropertySet, SparkplugValue } from "./payload";

/** The Sparkplug quality codes of the `Quality` property (Sparkplug 3.0.0, 6.4.8.1 "Quality Codes"). */
export const SPARKPLUG_QUALITY = { bad: 0, good: 192, stale: 500 } as const;

/**
 * The Kiln quality of a metric from its properties, as the Kiln edge node sends them
 * (see `METRIC_PROPERTIES` and docs/northbound/sparkplug.md):
 * - `StatusCode` (the OPC UA StatusCode) when present: its severity and code, exactly;
 * - else `Quality`: 192 good, 500 (STALE) uncertain, 0 bad; any other value is read as an
 *   OPC DA quality byte (bits 7–6: 11 good, 01 uncertain, 00 bad);
 * - else good (a DATA metric without quality properties is good);
 * - `StatusReason` is the reason.
 *
 * A `null` value is never good: a null with a good quality becomes bad `BadNoData`.
 */
export function qualityOfMetric(properties: SparkplugPropertySet | undefined, isNull: boolean): Quality {
  // The common case of a DATA metric: no quality properties, a value.
  if (properties === undefined && !isNull) return GOOD;
  const reasonProperty = properties?.StatusReason?.value;
  const reason = typeof reasonProperty === "string" ? reasonProperty : undefined;
  const statusCode = properties?.StatusCode?.value;
  const sparkplugQuality = properties?.Quality?.value;
  let result: Quality;
  if (typeof statusCode === "number" && Number.isInteger(statusCode) && statusCode >= 0 && statusCode <= 0xffffffff) {
    result = qualityFromStatusCode(statusCode, reason);
  } else if (typeof statusCode === "bigint" && statusCode >= 0n && statusCode <= 0xffffffffn) {
    result = qualityFromStatusCode(Number(statusCode), reason);
  } else if (typeof sparkplugQuality === "number" || typeof sparkplugQuality === "bigint") {
    const code = Number(sparkplugQuality);
    if (code === SPARKPLUG_QUALITY.stale) {
      result = quality("uncertain", reason ?? "Sparkplug quality STALE (500)", QualityCodes.UncertainLastUsableValue);
    } else {
      const bits = code & 0xc0;
      result =
        bits === 0xc0
          ? quality("good", reason)
          : bits === 0x40
            ? quality("uncertain", reason ?? `Sparkplug quality ${code}`)
            : quality("bad", reason ?? `Sparkplug quality ${code}`);
    }
  } else {
    result = quality("good", reason);
  }
  if (isNull && result.severity === "good") return quality("bad", reason ?? "null value", QualityCodes.BadNoData);
  return result;
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
