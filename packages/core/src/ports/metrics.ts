/** Label values of one series. */
export type MetricLabels = Readonly<Record<string, string>>;

/** A monotonically increasing count. */
export interface Counter {
  /** Adds `value` (finite, non-negative; 1 when omitted) to the series of `labels`. */
  inc(value?: number, labels?: MetricLabels): void;
}

/** A value that goes up and down. */
export interface Gauge {
  /** Sets the series of `labels` to `value`. */
  set(value: number, labels?: MetricLabels): void;
}

/** A distribution of observations (latencies, errors). */
export interface Histogram {
  /** Records one observation of `value` (finite) in the series of `labels`. */
  observe(value: number, labels?: MetricLabels): void;
}

/**
 * Where Kiln reports counters, gauges and histograms. Names are snake_case with a `kiln_`
 * prefix and follow Prometheus' conventions: base units in the name (`_seconds`, histograms observe
 * seconds), counters end in `_total`. A prom-client adapter is a few lines; `MemoryMetrics` keeps them for `health()` and tests.
 */
export interface Metrics {
  /** The counter `name`, described by `help`; registered on first call, the same counter on later calls. */
  counter(name: string, help: string): Counter;
  /** The gauge `name`, described by `help`; registered on first call, the same gauge on later calls. */
  gauge(name: string, help: string): Gauge;
  /** The histogram `name`, described by `help`; registered on first call, the same histogram on later calls. */
  histogram(name: string, help: string): Histogram;
}
