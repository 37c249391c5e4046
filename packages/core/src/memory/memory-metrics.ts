import type { Counter, Gauge, Histogram, MetricLabels, Metrics } from "@kiln/core/driver-kit";

/** Options of {@link MemoryMetrics}. */
export interface MemoryMetricsOptions {
  /**
   * Observations kept per histogram series for quantiles. Up to this many, quantiles are exact;
   * beyond, they come from a uniform random sample of this size (reservoir sampling).
   * `count`, `sum`, `min` and `max` are always exact. @default 1024
   */
  readonly reservoirSize?: number;
  /** Seed of the reservoir's sampling, so quantiles are reproducible. @default 1 */
  readonly seed?: number;
}

/** The distribution of one histogram series. Quantiles are nearest-rank over the kept observations. */
export interface HistogramSummary {
  /** Number of observations (exact). */
  readonly count: number;
  /** Sum of every observation (exact). */
  readonly sum: number;
  /** Smallest observation (exact). */
  readonly min: number;
  /** Largest observation (exact). */
  readonly max: number;
  /** Median. */
  readonly p50: number;
  /** 99th percentile. */
  readonly p99: number;
}

/** One metric with every label combination it has seen, as {@link MemoryMetrics.snapshot} returns it. */
export type MetricSnapshot =
  | {
      readonly kind: "counter" | "gauge";
      readonly name: string;
      readonly help: string;
      /** One entry per label combination, in first-seen order. */
      readonly series: readonly { readonly labels: MetricLabels; readonly value: number }[];
    }
  | {
      readonly kind: "histogram";
      readonly name: string;
      readonly help: string;
      /** One entry per label combination that has observations, in first-seen order. */
      readonly series: readonly { readonly labels: MetricLabels; readonly summary: HistogramSummary }[];
    };

type MetricKind = MetricSnapshot["kind"];

interface Distribution {
  count: number;
  sum: number;
  min: number;
  max: number;
  readonly kept: number[];
}

interface Series {
  readonly labels: MetricLabels;
  value: number;
  distribution?: Distribution;
}

interface Metric {
  readonly kind: MetricKind;
  readonly help: string;
  readonly instrument: Counter | Gauge | Histogram;
  readonly series: ReadonlyMap<string, Series>;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/**
 * The in-memory {@link Metrics}: keeps every counter, gauge and histogram series (per label
 * combination) for `health()` and tests. Asking again for a metric of the same name and kind
 * returns the same instrument.
 *
 * @example
 * const metrics = new MemoryMetrics();
 * metrics.counter("kiln_samples_written_total", "Samples stored").inc(100, { machine: "ald-1" });
 * metrics.value("kiln_samples_written_total", { machine: "ald-1" }); // 100
 */
export class MemoryMetrics implements Metrics {
  readonly #metrics = new Map<string, Metric>();
  readonly #reservoirSize: number;
  #random: number;

  constructor(options: MemoryMetricsOptions = {}) {
    const reservoirSize = options.reservoirSize ?? 1024;
    if (!Number.isInteger(reservoirSize) || reservoirSize < 1) {
      throw new RangeError("reservoirSize must be a positive integer");
    }
    this.#reservoirSize = reservoirSize;
    this.#random = (options.seed ?? 1) >>> 0 || 1;
  }

  /** A counter; `inc` takes a finite, non-negative amount. @throws TypeError for a bad or reused name */
  counter(name: string, help: string): Counter {
    return this.#register(name, help, "counter", (seriesOf) => ({
      inc: (value = 1, labels: MetricLabels = {}) => {
        if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name}: a counter only goes up`);
        seriesOf(labels).value += value;
      },
    }));
  }

  /** A gauge. @throws TypeError for a bad or reused name */
  gauge(name: string, help: string): Gauge {
    return this.#register(name, help, "gauge", (seriesOf) => ({
      set: (value: number, labels: MetricLabels = {}) => {
        seriesOf(labels).value = value;
      },
    }));
  }

  /** A histogram; `observe` takes finite values. @throws TypeError for a bad or reused name */
  histogram(name: string, help: string): Histogram {
    return this.#register(name, help, "histogram", (seriesOf) => ({
      observe: (value: number, labels: MetricLabels = {}) => {
        if (!Number.isFinite(value)) throw new RangeError(`${name}: observations must be finite`);
        const series = seriesOf(labels);
        series.distribution ??= { count: 0, sum: 0, min: value, max: value, kept: [] };
        this.#observe(series.distribution, value);
      },
    }));
  }

  /** The value of a counter or gauge series, or undefined when it has none. */
  value(name: string, labels: MetricLabels = {}): number | undefined {
    const metric = this.#metrics.get(name);
    if (!metric || metric.kind === "histogram") return undefined;
    return metric.series.get(labelKey(labels))?.value;
  }

  /** The distribution of a histogram series, or undefined when it has no observations. */
  summary(name: string, labels: MetricLabels = {}): HistogramSummary | undefined {
    const metric = this.#metrics.get(name);
    const distribution = metric?.kind === "histogram" ? metric.series.get(labelKey(labels))?.distribution : undefined;
    return distribution && summarize(distribution);
  }

  /** Every metric, in registration order, with all its series. */
  snapshot(): MetricSnapshot[] {
    return [...this.#metrics].map(([name, { kind, help, series }]): MetricSnapshot => {
      if (kind !== "histogram") {
        return { kind, name, help, series: [...series.values()].map(({ labels, value }) => ({ labels, value })) };
      }
      const observed = [...series.values()].filter((entry) => entry.distribution !== undefined);
      return {
        kind,
        name,
        help,
        series: observed.map(({ labels, distribution }) => ({ labels, summary: summarize(distribution!) })),
      };
    });
  }

  #register<TInstrument extends Counter | Gauge | Histogram>(
    name: string,
    help: string,
    kind: MetricKind,
    create: (seriesOf: (labels: MetricLabels) => Series) => TInstrument,
  ): TInstrument {
    if (!METRIC_NAME.test(name)) throw new TypeError(`"${name}" is not a valid metric name (use snake_case)`);
    const existing = this.#metrics.get(name);
    if (existing) {
      if (existing.kind !== kind) throw new TypeError(`Metric "${name}" is already registered as a ${existing.kind}`);
      return existing.instrument as TInstrument;
    }
    const series = new Map<string, Series>();
    const seriesOf = (labels: MetricLabels): Series => {
      const key = labelKey(labels);
      let entry = series.get(key);
      if (!entry) {
        entry = { labels: Object.freeze({ ...labels }), value: 0 };
        series.set(key, entry);
      }
      return entry;
    };
    const instrument = create(seriesOf);
    this.#metrics.set(name, { kind, help, series, instrument });
    return instrument;
  }

  #observe(distribution: Distribution, value: number): void {
    distribution.count++;
    distribution.sum += value;
    distribution.min = Math.min(distribution.min, value);
    distribution.max = Math.max(distribution.max, value);
    if (distribution.kept.length < this.#reservoirSize) {
      distribution.kept.push(value);
      return;
    }
    // Algorithm R: the n-th observation replaces a kept one with probability size / n.
    const slot = Math.floor(this.#nextRandom() * distribution.count);
    if (slot < this.#reservoirSize) distribution.kept[slot] = value;
  }

  /** xorshift32 in [0, 1): deterministic for a given seed. */
  #nextRandom(): number {
    let state = this.#random;
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    this.#random = state >>> 0;
    return this.#random / 0x1_0000_0000;
  }
}

function labelKey(labels: MetricLabels): string {
  // The unlabelled series is the common one (a counter bumped per sample): no array, no JSON.
  let empty = true;
  for (const name in labels) {
    if (!Object.hasOwn(labels, name)) continue;
    empty = false;
    break;
  }
  if (empty) return "[]";
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function summarize(distribution: Distribution): HistogramSummary {
  const sorted = [...distribution.kept].sort((a, b) => a - b);
  const rank = (quantile: number): number => sorted[Math.max(0, Math.ceil(quantile * sorted.length) - 1)]!;
  return {
    count: distribution.count,
    sum: distribution.sum,
    min: distribution.min,
    max: distribution.max,
    p50: rank(0.5),
    p99: rank(0.99),
  };
}
