/** Quantiles of recent observations. */
export interface StatsSummary {
  /** Observations since creation. */
  readonly count: number;
  /** Median of the recent window. */
  readonly p50: number;
  /** 99th percentile of the recent window. */
  readonly p99: number;
  /** Largest observation since creation. */
  readonly max: number;
}

/**
 * Keeps the last `capacity` observations in a ring (fixed memory) and answers quantiles over
 * them; `max` and `count` cover every observation.
 */
export class RollingStats {
  readonly #ring: Float64Array;
  #next = 0;
  #filled = 0;
  #count = 0;
  #max = 0;

  constructor(capacity = 1024) {
    this.#ring = new Float64Array(capacity);
  }

  /** Adds one observation. */
  observe(value: number): void {
    this.#ring[this.#next] = value;
    this.#next = (this.#next + 1) % this.#ring.length;
    if (this.#filled < this.#ring.length) this.#filled++;
    if (this.#count === 0 || value > this.#max) this.#max = value;
    this.#count++;
  }

  /** p50, p99 (nearest rank over the window), max and count. All zero before any observation. */
  summary(): StatsSummary {
    if (this.#filled === 0) return { count: 0, p50: 0, p99: 0, max: 0 };
    const sorted = this.#ring.slice(0, this.#filled).sort();
    const rank = (q: number): number => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
    return { count: this.#count, p50: rank(0.5), p99: rank(0.99), max: this.#max };
  }
}
