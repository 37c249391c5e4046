import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createControlSystem, defineTags, MemoryStore, SimulatedPlc } from "@kiln/core";
import { Registry } from "prom-client";
import { describe, expect, test } from "vitest";
import { PrometheusMetrics } from "../src/prometheus";

/** The value of one series in the text exposition format, or undefined. */
function valueOf(text: string, series: string): number | undefined {
  const line = text.split("\n").find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("PrometheusMetrics", () => {
  test("a counter is exposed at 0 before its first event, then with the labels of its first observation", async () => {
    const metrics = new PrometheusMetrics();
    const drops = metrics.counter("kiln_samples_dropped_total", "Samples dropped");
    expect(valueOf(await metrics.registry.metrics(), "kiln_samples_dropped_total")).toBe(0);
    drops.inc(3, { reason: "overflow" });
    drops.inc(2, { reason: "overflow" });
    const text = await metrics.registry.metrics();
    expect(text).toContain("# HELP kiln_samples_dropped_total Samples dropped");
    expect(text).toContain("# TYPE kiln_samples_dropped_total counter");
    expect(valueOf(text, 'kiln_samples_dropped_total{reason="overflow"}')).toBe(5);
    expect(metrics.counter("kiln_samples_dropped_total", "again")).toBeDefined();
  });

  test("constant labels go on every series, Kiln's labels beside them", async () => {
    const metrics = new PrometheusMetrics({ labels: { machine: "ald-1" } });
    metrics.gauge("kiln_samples_buffered", "Buffered").set(7);
    metrics.histogram("kiln_batch_flush_seconds", "Flush").observe(0.012, { lane: "0" });
    const text = await metrics.registry.metrics();
    expect(valueOf(text, 'kiln_samples_buffered{machine="ald-1"}')).toBe(7);
    // Default buckets are in seconds (Prometheus base units): 12 ms falls in 0.025, not in 0.01.
    expect(valueOf(text, 'kiln_batch_flush_seconds_bucket{le="0.025",lane="0",machine="ald-1"}')).toBe(1);
    expect(valueOf(text, 'kiln_batch_flush_seconds_bucket{le="0.01",lane="0",machine="ald-1"}')).toBe(0);
    expect(valueOf(text, 'kiln_batch_flush_seconds_sum{lane="0",machine="ald-1"}')).toBe(0.012);
  });

  test("an observation Prometheus cannot take is counted, never thrown into Kiln", async () => {
    const metrics = new PrometheusMetrics();
    const reads = metrics.counter("kiln_scan_failures_total", "Failed reads");
    reads.inc(1, { group: "fast" });
    expect(() => reads.inc(1, { group: "fast", unit: "2" })).not.toThrow(); // a label it was not created with
    expect(() => reads.inc(-1, { group: "fast" })).not.toThrow(); // counters only go up
    expect(() => metrics.histogram("kiln_flush_seconds", "Flush").observe(Number.NaN)).not.toThrow();
    const text = await metrics.registry.metrics();
    expect(valueOf(text, 'kiln_scan_failures_total{group="fast"}')).toBe(1);
    expect(valueOf(text, 'kiln_metrics_rejected_total{metric="kiln_scan_failures_total"}')).toBe(2);
    expect(valueOf(text, 'kiln_metrics_rejected_total{metric="kiln_flush_seconds"}')).toBe(1);
  });

  test("a bad name, a reused name of another kind and bad buckets are refused when registered", () => {
    const metrics = new PrometheusMetrics();
    expect(() => metrics.counter("kiln scan", "x")).toThrow(TypeError);
    metrics.counter("kiln_reads_total", "Reads");
    expect(() => metrics.gauge("kiln_reads_total", "Reads")).toThrow("kiln_reads_total is already a counter");
    expect(() => new PrometheusMetrics({ buckets: [5, 1] })).toThrow(TypeError);
    expect(() => new PrometheusMetrics({ buckets: [] })).toThrow(TypeError);
  });

  test("the host's registry serves Kiln's metrics beside its own", async () => {
    const registry = new Registry();
    const metrics = new PrometheusMetrics({ registry });
    metrics.counter("kiln_samples_in_total", "In").inc(4);
    expect(valueOf(await registry.metrics(), "kiln_samples_in_total")).toBe(4);
  });

  test("a running control system is scraped over HTTP", async () => {
    const tags = defineTags({
      "chamber.pressure": { dataType: "float64", unit: "mbar" },
      "heater.temperature": { dataType: "float64", unit: "°C" },
    });
    const plc = new SimulatedPlc({
      tags,
      sources: {
        "chamber.pressure": { kind: "sine", offset: 2, amplitude: 1, periodMs: 500 },
        "heater.temperature": { kind: "ramp", from: 20, to: 200, periodMs: 1_000 },
      },
    });
    const metrics = new PrometheusMetrics({ labels: { machine: "ald-1" } });
    const system = createControlSystem({
      machineId: "ald-1",
      tags,
      driver: plc,
      metrics,
      scanGroups: { default: { periodMs: 20 } },
      logging: { maxLatencyMs: 20 },
    });
    const server = createServer((_request, response) => {
      void metrics.registry.metrics().then((text) => {
        response.setHeader("Content-Type", metrics.registry.contentType);
        response.end(text);
      });
    }).listen(0, "127.0.0.1");
    await once(server, "listening");
    try {
      await system.start();
      await system.ready();
      await new Promise((resolve) => setTimeout(resolve, 300));
      const response = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`);
      expect(response.headers.get("content-type")).toContain("text/plain");
      const text = await response.text();
      const samplesIn = valueOf(text, 'kiln_samples_in_total{machine="ald-1"}') ?? 0;
      expect(samplesIn).toBeGreaterThan(4);
      expect(valueOf(text, 'kiln_samples_dropped_total{machine="ald-1"}')).toBe(0);
      expect(text).toMatch(/^kiln_scan_period_error_seconds_count\{group="default",machine="ald-1"\} [1-9]/m);
      expect(text).toMatch(/^kiln_scan_duration_seconds_count\{group="default",machine="ald-1"\} [1-9]/m);
      // A read on loopback takes well under a second: it lands in a sub-second bucket, so the unit is seconds.
      expect(
        valueOf(text, 'kiln_scan_duration_seconds_bucket{le="1",group="default",machine="ald-1"}'),
      ).toBeGreaterThan(0);
      expect(valueOf(text, 'kiln_samples_logged_total{machine="ald-1"}')).toBeGreaterThan(0);
      expect(text).toMatch(/^kiln_device_connected\{driver="[^"]+",machine="ald-1"\} 1$/m);
      expect(text).not.toContain("kiln_metrics_rejected_total{");
    } finally {
      await system.stop();
      server.close();
    }
  });

  test("kiln_samples_buffered follows the logging buffer while the store refuses every write (adv16n L2)", async () => {
    const tags = defineTags({
      "chamber.pressure": { dataType: "float64", unit: "mbar" },
      "heater.temperature": { dataType: "float64", unit: "°C" },
    });
    const plc = new SimulatedPlc({
      tags,
      sources: {
        "chamber.pressure": { kind: "sine", offset: 2, amplitude: 1, periodMs: 500 },
        "heater.temperature": { kind: "ramp", from: 20, to: 200, periodMs: 1_000 },
      },
    });
    const store = new MemoryStore();
    const metrics = new PrometheusMetrics({ labels: { machine: "ald-1" } });
    const system = createControlSystem({
      machineId: "ald-1",
      tags,
      driver: plc,
      store,
      metrics,
      scanGroups: { default: { periodMs: 20 } },
      logging: { maxLatencyMs: 20, retry: { initialDelayMs: 10, maxDelayMs: 50 } },
    });
    store.faults.failWritesUntilCleared();
    try {
      await system.start();
      await new Promise((resolve) => setTimeout(resolve, 300));
      const buffered = system.health().logging.buffered;
      expect(system.health().logging.samplesOut).toBe(0);
      expect(buffered).toBeGreaterThan(4);
      // Set at the latest one latency period (20 ms, one scan of 2 tags) after a change: a few samples behind at most.
      const scraped = valueOf(await metrics.registry.metrics(), 'kiln_samples_buffered{machine="ald-1"}') ?? 0;
      expect(scraped).toBeGreaterThan(0);
      expect(scraped).toBeGreaterThanOrEqual(buffered - 10);
      store.faults.clear();
      await new Promise((resolve) => setTimeout(resolve, 500));
    } finally {
      await system.stop();
    }
    expect(valueOf(await metrics.registry.metrics(), 'kiln_samples_buffered{machine="ald-1"}')).toBe(0);
  });
});
