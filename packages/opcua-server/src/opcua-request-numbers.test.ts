import { AggregateFilter, DataChangeFilter, MonitoringParameters } from "node-opcua-types";
import { StatusCodes } from "node-opcua-status-code";
import { describe, expect, test } from "vitest";
import { checkMonitoringParameters, holdsNonFinite } from "./opcua-request-numbers";

const context = { publishingInterval: 250, maxQueueSize: 100, euRange: { low: 0, high: 1000 } };

describe("holdsNonFinite", () => {
  test("a scalar or any element of an array or typed array that is NaN or ±∞", () => {
    expect([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY].map(holdsNonFinite)).toEqual([
      true,
      true,
      true,
    ]);
    expect(holdsNonFinite([1, 2, Number.NaN])).toBe(true);
    expect(holdsNonFinite(new Float64Array([0, Number.NEGATIVE_INFINITY]))).toBe(true);
    expect(holdsNonFinite([1, 2, 3])).toBe(false);
    expect(holdsNonFinite(new Float32Array([1.5]))).toBe(false);
    expect(holdsNonFinite("NaN")).toBe(false);
    expect(holdsNonFinite(null)).toBe(false);
  });
});

describe("checkMonitoringParameters", () => {
  test("revises sampling interval and queue size in place; refuses bad deadbands and aggregate filters", () => {
    const revised = new MonitoringParameters({ samplingInterval: Number.NaN, queueSize: 1_000 });
    expect(checkMonitoringParameters(revised, context)).toBeUndefined();
    expect([revised.samplingInterval, revised.queueSize]).toEqual([250, 100]);
    const infinite = new MonitoringParameters({ samplingInterval: Number.POSITIVE_INFINITY });
    expect(checkMonitoringParameters(infinite, context)).toBeUndefined();
    expect(infinite.samplingInterval).toBe(Number.MAX_VALUE);
    const withFilter = (filter: DataChangeFilter | AggregateFilter) => new MonitoringParameters({ filter });
    expect(
      checkMonitoringParameters(withFilter(new DataChangeFilter({ deadbandType: 2, deadbandValue: 101 })), context),
    ).toBe(StatusCodes.BadDeadbandFilterInvalid);
    expect(
      checkMonitoringParameters(withFilter(new DataChangeFilter({ deadbandType: 1, deadbandValue: 0.5 })), context),
    ).toBeUndefined();
    expect(checkMonitoringParameters(withFilter(new AggregateFilter({ processingInterval: 1_000 })), context)).toBe(
      StatusCodes.BadMonitoredItemFilterUnsupported,
    );
    expect(checkMonitoringParameters(undefined, context)).toBeUndefined();
  });
});
