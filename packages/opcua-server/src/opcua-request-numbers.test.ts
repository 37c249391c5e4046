import { AggregateFilter, DataChangeFilter, MonitoringParameters } from "node-opcua-types";
import { StatusCodes } from "node-opcua-status-code";
import { describe, expect, test } from "vitest";
import { checkMonitoringParameters } from "./opcua-request-numbers";

const context = { publishingInterval: 250, maxQueueSize: 100, euRange: { low: 0, high: 1000 } };

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
