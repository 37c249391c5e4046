/** Label values of one series. */
export type MetricLabels = Readonly<Record<string, string>>;

/** A monotonically increasing count. */
export interface Counter {
  inc(value?: number, labels?: MetricLabels): void;
}

/** A value that goes up and down. */
export interface Gauge {
  set(value: number, labels?: MetricLabels): void;
}

/** A distribution of observations (latencies, errors). */
export interface Histogram {
  observe(value: number, labels?: MetricLabels): void;
}

/**
 * Where Kiln reports counters, gauges and histograms. Names are snake_case with a `kiln_`
 * prefix. A prom-client adapter is a few lines; `MemoryMetrics` keeps them for `health()` and tests.
 */
export interface Metrics {
  counter(name: string, help: string): Counter;
  gauge(name: string, help: string): Gauge;
  histogram(name: string, help: string): Histogram;
}
