import { GOOD, quality, QualityCodes, type Sample, type Tag, type TagValue } from "@kiln/core";
import { qualityFromStatusCode, severityOfStatusCode } from "@kiln/core/driver-kit";
import type { DataValue } from "node-opcua-client";
import { statusNameOf } from "./opcua-errors";
import { tagValueFromVariant } from "./opcua-values";

/**
 * OPC UA's MinDateTime, 1601-01-01T00:00:00Z in ms since the Unix epoch: a DateTime at or before
 * it encodes "no time" (OPC UA Part 6 §5.2.2.5, DateTime: 0 and earlier values are MinDateTime, which
 * "shall be interpreted as" a null date; a server that has no source time may send it).
 */
const MIN_DATE_TIME_MS = Date.UTC(1601, 0, 1);

/** The time of an OPC UA DateTime in ms, or `undefined` when it is absent, invalid or MinDateTime ("no time"). */
function timeOf(date: Date | null | undefined): number | undefined {
  const time = date?.getTime();
  return time === undefined || Number.isNaN(time) || time <= MIN_DATE_TIME_MS ? undefined : time;
}

/**
 * Builds the Kiln sample of `tag` from an OPC UA DataValue: quality from the status code
 * (severity from its top two bits, the code kept), the source timestamp when the server gives
 * one (else the server timestamp, else `now`; a MinDateTime, 1601-01-01 or earlier, counts as not
 * given: docs/adr/0022, amendment fix13d), and the value converted to the tag's type exactly (else
 * `bad` BadTypeMismatch).
 */
export function sampleFromDataValue(tag: Tag, dataValue: DataValue, now: number): Sample {
  const code = dataValue.statusCode.value >>> 0;
  const timestamp = timeOf(dataValue.sourceTimestamp) ?? timeOf(dataValue.serverTimestamp) ?? now;
  if (severityOfStatusCode(code) === "bad") {
    return { tag: tag.name, value: null, timestamp, quality: qualityFromStatusCode(code, statusNameOf(code)) };
  }
  const converted = tagValueFromVariant(dataValue.value, tag);
  if (!converted.ok) return { tag: tag.name, value: null, timestamp, quality: converted.quality };
  return {
    tag: tag.name,
    value: converted.value,
    timestamp,
    quality: code === 0 ? GOOD : qualityFromStatusCode(code, statusNameOf(code)),
  };
}

/** A `bad` sample of `tag` with the given status code and reason. */
export function badSample(tag: Tag, statusCode: number, reason: string, now: number): Sample {
  return { tag: tag.name, value: null, timestamp: now, quality: quality("bad", reason, statusCode) };
}

/**
 * The sample of a subscribed tag while the connection is down: the last value with quality
 * `uncertain` (no communication, last usable value), or `bad` when no value was ever received;
 * the quality's reason starts with `reason` (why the connection is down; default "connection lost").
 */
export function staleSample(
  tag: Tag,
  lastValue: TagValue | undefined,
  now: number,
  reason = "connection lost",
): Sample {
  if (lastValue === undefined) {
    return badSample(tag, QualityCodes.BadNotConnected, `${reason}; no value received yet`, now);
  }
  return {
    tag: tag.name,
    value: lastValue,
    timestamp: now,
    quality: quality("uncertain", `${reason}; last usable value`, QualityCodes.UncertainNoCommunicationLastUsableValue),
  };
}
