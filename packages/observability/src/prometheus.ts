/**
 * Kiln's metrics on a prom-client registry, for a Prometheus scrape.
 * @packageDocumentation
 */
import type { Counter, Gauge, Histogram, MetricLabels, Metrics } from "@kiln/core/driver-kit";
import * as prom from "prom-client";

/** Options of {@link PrometheusMetrics}. */
export interface PrometheusMetricsOptions {
  /**
   * The registry the metrics are registered on. Pass prom-client's global `register` to serve
   * them beside the host's own metrics. @default a new `Registry` of its own
   */
  readonly registry?: prom.Registry;
  /** Labels added to every series, e.g. `{ machine: "ald-1" }` when one process runs several systems. */
  readonly labels?: MetricLabels;
  /**
   * Upper bounds of the histogram buckets, in the metric's own unit (Kiln's histograms are in
   * seconds: `kiln_scan_period_error_seconds`, `kiln_scan_duration_seconds`, `kiln_batch_flush_seconds`).
   * @default [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
   */
  readonly buckets?: readonly number[];
}

type Kind = "counter" | "gauge" | "histogram";
type PromMetric = prom.Counter | prom.Gauge | prom.Histogram;

/** One Kiln metric: its prom-client metric, created again (empty) if the first labels arrive after creation. */
interface Family {
  readonly kind: Kind;
  readonly help: string;
  labelNames: readonly string[];
  /** True until the first observation: the metric was created without labels and may still take them. */
  provisional: boolean;
  metric: PromMetric;
}

const DEFAULT_BUCKETS = [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const REJECTED = "kiln_metrics_rejected_total";

/**
 * The `Metrics` port on a prom-client `Registry`: Kiln's counters, gauges and histograms
 * (`kiln_samples_in_total`, `kiln_samples_dropped_total`, `kiln_scan_duration_seconds`...) become
 * Prometheus metrics of the same name, type and help, served by `registry.metrics()` in the text
 * exposition format.
 *
 * Prometheus fixes a metric's label names at creation; Kiln's port does not declare them. Each
 * metric is registered at once with only the constant labels (so a counter reads 0 before its first event) and
 * takes its label names from its first observation. An observation with a label not in that set,
 * or a value prom-client refuses (a negative counter increment, NaN), is not recorded and is
 * counted in `kiln_metrics_rejected_total{metric}`: a metrics call never throws into Kiln's
 * scan or logging path.
 *
 * @example
 * import { createControlSystem } from "@kiln/core";
 * import { PrometheusMetrics } from "@kiln/observability/prometheus";
 * import { createServer } from "node:http";
 *
 * const metrics = new PrometheusMetrics({ labels: { machine: "ald-1" } });
 * const system = createControlSystem({ machineId: "ald-1", tags, metrics });
 * createServer(async (_request, response) => {
 *   response.setHeader("Content-Type", metrics.registry.contentType);
 *   response.end(await metrics.registry.metrics());
 * }).listen(9464);
 */
export class PrometheusMetrics implements Metrics {
  /** The registry the metrics are on; serve `registry.metrics()` at `/metrics`. */
  readonly registry: prom.Registry;
  readonly #labels: MetricLabels;
  /** The constant labels' names, sorted: the label set of a call without labels (Kiln's per-sample counters). */
  readonly #labelNames: readonly string[];
  readonly #buckets: number[];
  readonly #families = new Map<string, Family>();
  readonly #rejected: prom.Counter<"metric">;

  /** @throws `TypeError` when `buckets` is not a non-empty list of increasing finite numbers. */
  constructor(options: PrometheusMetricsOptions = {}) {
    this.registry = options.registry ?? new prom.Registry();
    this.#labels = { ...options.labels };
    this.#labelNames = Object.keys(this.#labels).sort();
    const buckets = [...(options.buckets ?? DEFAULT_BUCKETS)];
    if (
      buckets.length === 0 ||
      buckets.some((bound, index) => !Number.isFinite(bound) || (index > 0 && bound <= buckets[index - 1]!))
    ) {
      throw new TypeError("buckets must be a non-empty list of increasing finite numbers");
    }
    this.#buckets = buckets;
    this.#rejected = new prom.Counter({
      name: REJECTED,
      help: "Metric observations not recorded: a label the metric was not created with, or a value Prometheus refuses",
      labelNames: ["metric", ...Object.keys(this.#labels)],
      registers: [this.registry],
    });
  }

  /** A Prometheus counter. @throws `TypeError` for a name Prometheus refuses or one already used for another kind. */
  counter(name: string, help: string): Counter {
    const family = this.#family(name, help, "counter");
    return {
      inc: (value = 1, labels) =>
        this.#record(name, family, labels, (metric, all) => (metric as prom.Counter).inc(all, value)),
    };
  }

  /** A Prometheus gauge. @throws `TypeError` as {@link PrometheusMetrics.counter}. */
  gauge(name: string, help: string): Gauge {
    const family = this.#family(name, help, "gauge");
    return {
      set: (value, labels) =>
        this.#record(name, family, labels, (metric, all) => (metric as prom.Gauge).set(all, value)),
    };
  }

  /** A Prometheus histogram with the configured buckets. @throws `TypeError` as {@link PrometheusMetrics.counter}. */
  histogram(name: string, help: string): Histogram {
    const family = this.#family(name, help, "histogram");
    return {
      observe: (value, labels) =>
        this.#record(name, family, labels, (metric, all) => {
          if (!Number.isFinite(value)) throw new RangeError("not a finite number");
          (metric as prom.Histogram).observe(all, value);
        }),
    };
  }

  #family(name: string, help: string, kind: Kind): Family {
    const existing = this.#families.get(name);
    if (existing) {
      if (existing.kind !== kind) throw new TypeError(`metric ${name} is already a ${existing.kind}`);
      return existing;
    }
    if (name === REJECTED) throw new TypeError(`metric name ${name} is reserved`);
    const labelNames = this.#labelNames;
    let metric: PromMetric;
    try {
      metric = this.#create(name, help, kind, labelNames);
    } catch (error) {
      throw new TypeError(`metric ${name}: ${(error as Error).message}`);
    }
    const family: Family = { kind, help, labelNames, provisional: true, metric };
    this.#families.set(name, family);
    return family;
  }

  #create(name: string, help: string, kind: Kind, labelNames: readonly string[]): PromMetric {
    const common = { name, help, labelNames: [...labelNames], registers: [this.registry] };
    if (kind === "gauge") return new prom.Gauge(common); // no value until one is set
    // A count of 0 is true before the first event: expose it, also under the constant labels.
    const constant = labelNames.length > 0 && labelNames.length === Object.keys(this.#labels).length;
    if (kind === "counter") {
      const counter = new prom.Counter(common);
      if (constant) counter.inc(this.#labels, 0);
      return counter;
    }
    const histogram = new prom.Histogram({ ...common, buckets: this.#buckets });
    if (constant) histogram.zero(this.#labels);
    return histogram;
  }

  #record(
    name: string,
    family: Family,
    labels: MetricLabels | undefined,
    apply: (metric: PromMetric, labels: prom.LabelValues<string>) => void,
  ): void {
    // Without labels (the common, per-sample case) the constant set is used as it is: no copy, no sort.
    const all = labels === undefined ? this.#labels : { ...labels, ...this.#labels };
    const names = labels === undefined ? this.#labelNames : Object.keys(all).sort();
    if (family.provisional) {
      family.provisional = false;
      if (names.length !== family.labelNames.length) {
        // Created before its first observation without these labels: create it again with them.
        this.registry.removeSingleMetric(name);
        family.labelNames = names;
        family.metric = this.#create(name, family.help, family.kind, names);
      }
    }
    try {
      if (names.some((label) => !family.labelNames.includes(label))) throw new RangeError("unexpected label");
      apply(family.metric, all);
    } catch {
      this.#rejected.inc({ ...this.#labels, metric: name });
    }
  }
}
