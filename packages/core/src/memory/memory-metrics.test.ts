import { describe, expect, test } from "vitest";
import { MemoryMetrics } from "./memory-metrics";

function shuffled(values: number[], seed = 42): number[] {
  let state = seed;
  const result = [...values];
  for (let index = result.length - 1; index > 0; index--) {
    state = (state * 48271) % 0x7fffffff;
    const other = state % (index + 1);
    [result[index], result[other]] = [result[other]!, result[index]!];
  }
  return result;
}

describe("MemoryMetrics", () => {
  test("counters add up per label combination, whatever the label order", () => {
    const metrics = new MemoryMetrics();
    const written = metrics.counter("kiln_samples_written_total", "Samples stored");
    written.inc();
    written.inc(10, { machine: "ald-1", tag: "a" });
    written.inc(5, { tag: "a", machine: "ald-1" });
    expect(metrics.value("kiln_samples_written_total")).toBe(1);
    expect(metrics.value("kiln_samples_written_total", { machine: "ald-1", tag: "a" })).toBe(15);
    expect(metrics.value("kiln_samples_written_total", { machine: "ald-2" })).toBe(undefined);
    expect(() => written.inc(-1)).toThrow(RangeError);
    expect(() => written.inc(Number.NaN)).toThrow(RangeError);
  });

  test("gauges keep the last value set", () => {
    const metrics = new MemoryMetrics();
    const depth = metrics.gauge("kiln_queue_depth", "Batches waiting");
    depth.set(7, { queue: "samples" });
    depth.set(3, { queue: "samples" });
    expect(metrics.value("kiln_queue_depth", { queue: "samples" })).toBe(3);
  });

  test("asking for a metric again returns the same instrument; another kind or a bad name is a TypeError", () => {
    const metrics = new MemoryMetrics();
    const first = metrics.counter("kiln_retries_total", "Retries");
    expect(metrics.counter("kiln_retries_total", "Retries")).toBe(first);
    expect(() => metrics.gauge("kiln_retries_total", "Retries")).toThrow(TypeError);
    expect(() => metrics.histogram("kiln-latency", "Latency")).toThrow(TypeError);
  });

  test("histograms give exact count, sum, min, max and nearest-rank p50/p99 while within the reservoir", () => {
    const metrics = new MemoryMetrics();
    const latency = metrics.histogram("kiln_write_seconds", "Write latency");
    for (const value of shuffled(Array.from({ length: 100 }, (_, index) => index + 1))) latency.observe(value);
    expect(metrics.summary("kiln_write_seconds")).toEqual({
      count: 100,
      sum: 5050,
      min: 1,
      max: 100,
      p50: 50,
      p99: 99,
    });
    expect(() => latency.observe(Number.POSITIVE_INFINITY)).toThrow(RangeError);
  });

  test("beyond the reservoir, count/sum/min/max stay exact and quantiles are estimated from a uniform sample", () => {
    const metrics = new MemoryMetrics({ reservoirSize: 200, seed: 7 });
    const latency = metrics.histogram("kiln_write_seconds", "Write latency");
    const values = shuffled(Array.from({ length: 20_000 }, (_, index) => index + 1));
    for (const value of values) latency.observe(value);
    const summary = metrics.summary("kiln_write_seconds")!;
    expect([summary.count, summary.sum, summary.min, summary.max]).toEqual([20_000, 200_010_000, 1, 20_000]);
    expect(Math.abs(summary.p50 - 10_000)).toBeLessThan(2_000);
    expect(summary.p99).toBeGreaterThan(19_000);
  });

  test("snapshot lists every metric in registration order with its series", () => {
    const metrics = new MemoryMetrics();
    metrics.counter("kiln_flush_total", "Flushes").inc(2, { sink: "memory" });
    metrics.histogram("kiln_flush_seconds", "Flush time").observe(0.5);
    metrics.histogram("kiln_idle_seconds", "Never observed");
    expect(metrics.snapshot()).toEqual([
      {
        kind: "counter",
        name: "kiln_flush_total",
        help: "Flushes",
        series: [{ labels: { sink: "memory" }, value: 2 }],
      },
      {
        kind: "histogram",
        name: "kiln_flush_seconds",
        help: "Flush time",
        series: [{ labels: {}, summary: { count: 1, sum: 0.5, min: 0.5, max: 0.5, p50: 0.5, p99: 0.5 } }],
      },
      { kind: "histogram", name: "kiln_idle_seconds", help: "Never observed", series: [] },
    ]);
    expect(metrics.summary("kiln_idle_seconds")).toBe(undefined);
  });
});
