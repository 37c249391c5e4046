/**
 * Kiln's metrics as OpenTelemetry instruments, for any OpenTelemetry exporter.
 * @packageDocumentation
 */
import type { Counter, Gauge, Histogram, MetricLabels, Metrics } from "@kiln/core/driver-kit";
import type { Attributes, Meter } from "@opentelemetry/api";

/** Options of {@link OpenTelemetryMetrics}. */
export interface OpenTelemetryMetricsOptions {
  /** Attributes added to every measurement, e.g. `{ machine: "ald-1" }`. */
  readonly attributes?: MetricLabels;
}

/**
 * The `Metrics` port on an OpenTelemetry `Meter` (`@opentelemetry/api` ≥ 1.9): each Kiln counter
 * becomes a Counter, each gauge a synchronous Gauge, each histogram a Histogram, with the same
 * name and the help as description; a name ending in `_seconds` gets the unit `s` (UCUM), one ending
 * in `_ms` the unit `ms`. Labels become
 * attributes. A measurement the SDK refuses never throws into Kiln's scan or logging path.
 *
 * @example
 * import { metrics as otel } from "@opentelemetry/api";
 * import { OpenTelemetryMetrics } from "@kiln/observability/opentelemetry";
 *
 * const metrics = new OpenTelemetryMetrics(otel.getMeter("kiln"), { attributes: { machine: "ald-1" } });
 * const system = createControlSystem({ machineId: "ald-1", tags, metrics });
 */
export class OpenTelemetryMetrics implements Metrics {
  readonly #meter: Meter;
  readonly #attributes: Attributes;
  readonly #instruments = new Map<
    string,
    { readonly kind: string; readonly instrument: Counter | Gauge | Histogram }
  >();

  constructor(meter: Meter, options: OpenTelemetryMetricsOptions = {}) {
    this.#meter = meter;
    this.#attributes = { ...options.attributes };
  }

  /** An OpenTelemetry Counter. @throws `TypeError` when `name` is already used for another kind. */
  counter(name: string, help: string): Counter {
    return this.#instrument(name, "counter", () => {
      const counter = this.#meter.createCounter(name, this.#describe(name, help));
      return { inc: (value = 1, labels) => this.#safely(() => counter.add(value, this.#with(labels))) };
    });
  }

  /** An OpenTelemetry (synchronous) Gauge. @throws `TypeError` as {@link OpenTelemetryMetrics.counter}. */
  gauge(name: string, help: string): Gauge {
    return this.#instrument(name, "gauge", () => {
      const gauge = this.#meter.createGauge(name, this.#describe(name, help));
      return { set: (value, labels) => this.#safely(() => gauge.record(value, this.#with(labels))) };
    });
  }

  /** An OpenTelemetry Histogram. @throws `TypeError` as {@link OpenTelemetryMetrics.counter}. */
  histogram(name: string, help: string): Histogram {
    return this.#instrument(name, "histogram", () => {
      const histogram = this.#meter.createHistogram(name, this.#describe(name, help));
      return { observe: (value, labels) => this.#safely(() => histogram.record(value, this.#with(labels))) };
    });
  }

  #instrument<T extends Counter | Gauge | Histogram>(name: string, kind: string, create: () => T): T {
    const existing = this.#instruments.get(name);
    if (existing) {
      if (existing.kind !== kind) throw new TypeError(`metric ${name} is already a ${existing.kind}`);
      return existing.instrument as T;
    }
    const instrument = create();
    this.#instruments.set(name, { kind, instrument });
    return instrument;
  }

  #describe(name: string, help: string): { description: string; unit?: string } {
    if (name.endsWith("_seconds")) return { description: help, unit: "s" };
    return name.endsWith("_ms") ? { description: help, unit: "ms" } : { description: help };
  }

  #with(labels: MetricLabels | undefined): Attributes {
    return labels === undefined ? this.#attributes : { ...labels, ...this.#attributes };
  }

  #safely(record: () => void): void {
    try {
      record();
    } catch {
      // The SDK reports its own errors through its diagnostics logger; Kiln's path must not fail.
    }
  }
}
