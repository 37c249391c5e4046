import { AggregateFilter, DataChangeFilter, type MonitoringParameters } from "node-opcua-types";
import { type StatusCode, StatusCodes } from "node-opcua-status-code";

/** `DeadbandType` values (OPC UA Part 4, 7.22.2): None, Absolute, Percent. */
const DEADBAND_NONE = 0;
const DEADBAND_PERCENT = 2;
/** Highest `DataChangeTrigger` value (StatusValueTimestamp, Part 4, 7.22.2). */
const TRIGGER_MAX = 2;

/** What {@link checkMonitoringParameters} needs to know of the item's node and subscription. */
export interface MonitoringContext {
  /** The subscription's publishing interval (ms): the sampling interval a negative request asks for. */
  readonly publishingInterval: number;
  /** Largest queue of one monitored item (a larger requested QueueSize is revised down to it). */
  readonly maxQueueSize: number;
  /** The node's EURange, when it has one (a percent deadband is a share of its span). */
  readonly euRange?: { readonly low: number; readonly high: number } | undefined;
}

/**
 * The one check of the numeric parameters of a monitored item's create or modify request
 * (`MonitoringParameters`, OPC UA Part 4, 7.21; `DataChangeFilter`, 7.22.2), made before any of
 * them reaches node-opcua, whose code asserts they are finite (a failed assert there is an
 * exception thrown out of the service handler: it ended the process).
 *
 * Revised in place (Part 4, 5.12.1.2: an illegal value of a revisable parameter is not an error;
 * the server revises it):
 * - `samplingInterval`: NaN, −∞ or any negative number → the subscription's publishing interval
 *   (Part 4: a negative value asks for it); +∞ → `Number.MAX_VALUE`, which node-opcua revises to
 *   its maximum sampling interval.
 * - `queueSize` above `maxQueueSize` → `maxQueueSize` (a UInt32 on the wire: never NaN).
 *
 * Refused (the StatusCode the item's result answers; nothing is created or changed):
 * - an AggregateFilter (Part 4, 7.22.4): `BadMonitoredItemFilterUnsupported`. node-opcua accepts
 *   it but computes no aggregate, so the item would deliver raw values to a client that asked for
 *   (and would show) averages; history aggregates are served by HistoryRead (ReadProcessed);
 * - a DataChangeFilter whose `deadbandType` is not None, Absolute or Percent, whose
 *   `deadbandValue` is not a finite number ≥ 0 (≤ 100 for Percent), or a Percent deadband whose
 *   absolute size (its share of the EURange span) is not finite: `BadDeadbandFilterInvalid`;
 * - a DataChangeFilter whose `trigger` is not Status, StatusValue or StatusValueTimestamp:
 *   `BadMonitoredItemFilterInvalid`.
 *
 * The other numeric parameters of the subscription services are UInt32 or Byte on the wire
 * (always finite, non-negative integers) or revised by node-opcua without an assert
 * (`requestedPublishingInterval`: NaN, ±∞ and negatives are revised to its bounds); see
 * `docs/northbound/opcua-server.md`.
 * @returns the refusal, or `undefined` when the parameters (as revised) may go on.
 */
export function checkMonitoringParameters(
  parameters: MonitoringParameters | null | undefined,
  context: MonitoringContext,
): StatusCode | undefined {
  if (!parameters) return undefined;
  const sampling = parameters.samplingInterval;
  if (Number.isNaN(sampling) || sampling < 0) parameters.samplingInterval = context.publishingInterval;
  else if (sampling === Number.POSITIVE_INFINITY) parameters.samplingInterval = Number.MAX_VALUE;
  if (parameters.queueSize > context.maxQueueSize) parameters.queueSize = context.maxQueueSize;
  const filter = parameters.filter;
  if (filter instanceof AggregateFilter) return StatusCodes.BadMonitoredItemFilterUnsupported;
  if (!(filter instanceof DataChangeFilter)) return undefined;
  if (!Number.isInteger(filter.trigger) || filter.trigger < 0 || filter.trigger > TRIGGER_MAX) {
    return StatusCodes.BadMonitoredItemFilterInvalid;
  }
  const type = filter.deadbandType as number;
  if (type === DEADBAND_NONE) return undefined;
  const value = filter.deadbandValue;
  if (type !== 1 && type !== DEADBAND_PERCENT) return StatusCodes.BadDeadbandFilterInvalid;
  if (!Number.isFinite(value) || value < 0) return StatusCodes.BadDeadbandFilterInvalid;
  if (type === DEADBAND_PERCENT) {
    if (value > 100) return StatusCodes.BadDeadbandFilterInvalid;
    const range = context.euRange;
    if (range && !Number.isFinite((value / 100) * Math.abs(range.high - range.low))) {
      return StatusCodes.BadDeadbandFilterInvalid;
    }
  }
  return undefined;
}
