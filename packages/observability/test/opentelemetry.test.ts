import { createControlSystem, defineTags, SimulatedPlc } from "@kiln/core";
import { AggregationTemporality, MeterProvider, MetricReader, type MetricData } from "@opentelemetry/sdk-metrics";
import { describe, expect, test } from "vitest";
import { OpenTelemetryMetrics } from "../src/opentelemetry";

/** A reader the test collects from on demand. */
class TestReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

async function collect(reader: TestReader): Promise<Map<string, MetricData>> {
  const { resourceMetrics } = await reader.collect();
  return new Map(
    resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics).map((metric) => [metric.descriptor.name, metric]),
  );
}

function setup(attributes?: Record<string, string>) {
  const reader = new TestReader();
  const provider = new MeterProvider({ readers: [reader] });
  const metrics = new OpenTelemetryMetrics(provider.getMeter("kiln"), attributes ? { attributes } : {});
  return { reader, provider, metrics };
}

describe("OpenTelemetryMetrics", () => {
  test("counters, gauges and histograms become instruments with Kiln's names, help, labels and units", async () => {
    const { reader, metrics } = setup({ machine: "ald-1" });
    metrics.counter("kiln_samples_in_total", "Samples in").inc(3, { lane: "0" });
    metrics.gauge("kiln_samples_buffered", "Buffered").set(9);
    metrics.histogram("kiln_batch_flush_seconds", "Flush time").observe(0.012);
    metrics.histogram("kiln_custom_wait_ms", "A host's own histogram in ms").observe(12);
    const collected = await collect(reader);
    const counter = collected.get("kiln_samples_in_total")!;
    expect(counter.descriptor.description).toBe("Samples in");
    expect(counter.dataPoints[0]).toMatchObject({ value: 3, attributes: { lane: "0", machine: "ald-1" } });
    expect(collected.get("kiln_samples_buffered")!.dataPoints[0]).toMatchObject({ value: 9 });
    const histogram = collected.get("kiln_batch_flush_seconds")!;
    expect(histogram.descriptor.unit).toBe("s");
    expect(histogram.dataPoints[0]!.value).toMatchObject({ count: 1, sum: 0.012 });
    expect(collected.get("kiln_custom_wait_ms")!.descriptor.unit).toBe("ms");
    expect(collected.get("kiln_samples_in_total")!.descriptor.unit).toBe("");
  });

  test("the same name gives the same instrument; another kind under it is refused", async () => {
    const { reader, metrics } = setup();
    metrics.counter("kiln_reads_total", "Reads").inc();
    metrics.counter("kiln_reads_total", "Reads").inc();
    expect(() => metrics.histogram("kiln_reads_total", "Reads")).toThrow("kiln_reads_total is already a counter");
    expect((await collect(reader)).get("kiln_reads_total")!.dataPoints[0]).toMatchObject({ value: 2 });
  });

  test("a running control system reports through the SDK", async () => {
    const tags = defineTags({ "chamber.pressure": { dataType: "float64", unit: "mbar" } });
    const plc = new SimulatedPlc({
      tags,
      sources: { "chamber.pressure": { kind: "sine", offset: 2, amplitude: 1, periodMs: 500 } },
    });
    const { reader, provider, metrics } = setup({ machine: "ald-1" });
    const system = createControlSystem({
      machineId: "ald-1",
      tags,
      driver: plc,
      metrics,
      scanGroups: { default: { periodMs: 20 } },
      logging: { maxLatencyMs: 20 },
    });
    try {
      await system.start();
      await system.ready();
      await new Promise((resolve) => setTimeout(resolve, 300));
      const collected = await collect(reader);
      expect(collected.get("kiln_samples_in_total")!.dataPoints[0]!.value as number).toBeGreaterThan(2);
      expect(collected.get("kiln_scan_period_error_seconds")!.dataPoints[0]!.attributes).toEqual({
        group: "default",
        machine: "ald-1",
      });
    } finally {
      await system.stop();
      await provider.shutdown();
    }
  });
});
