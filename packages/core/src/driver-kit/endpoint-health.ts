import type { Clock } from "@kiln/core";
import { KilnValidationError } from "../domain/errors";
import { checkBackoff, reconnectDelay, type ReconnectBackoff } from "./backoff";
import { monotonicNow } from "../runtime/system-clock";

/** Whether a driver currently treats an endpoint (a Modbus unit, an OPC UA session) as reachable. */
export type EndpointState = "online" | "offline";

/** What {@link EndpointHealth} knows about one endpoint. */
export interface EndpointHealthSnapshot {
  /** The key the driver uses: a unit id, an endpoint URL. */
  readonly endpoint: string;
  /** `offline` after `offlineAfter` failures in a row; `online` again after a success. */
  readonly state: EndpointState;
  /** Failures since the last success. */
  readonly consecutiveFailures: number;
  /** The last failure's message, if any since the endpoint was first seen. */
  readonly lastError?: string;
  /** When the last failure happened, ms since epoch on the clock. */
  readonly lastFailureAt?: number;
  /** When the last success happened, ms since epoch on the clock. */
  readonly lastSuccessAt?: number;
  /** While offline: when the driver should next probe it, ms since epoch (on the backoff). */
  readonly nextProbeAt?: number;
}

/** Options of {@link EndpointHealth}. */
export interface EndpointHealthOptions {
  /** Source of time. */
  readonly clock: Clock;
  /** Failures in a row after which an endpoint is `offline`. An integer ≥ 1. @default 3 */
  readonly offlineAfter?: number;
  /** Spacing of probes of an offline endpoint. @default 1 s initial, 60 s cap, jitter 0.2 */
  readonly probeBackoff?: ReconnectBackoff;
  /** Source of randomness in `[0, 1)` for the probe jitter. @default Math.random */
  readonly random?: () => number;
}

interface Entry {
  consecutiveFailures: number;
  offlineProbes: number;
  lastError?: string;
  lastFailureAt?: number;
  lastSuccessAt?: number;
  nextProbeAt?: number;
  /** When the next probe is due, on the clock's monotonic time (a wall-clock step does not move it). */
  probeDue?: number;
}

/**
 * Per-endpoint health a driver keys by unit id or session: consecutive failures, last error,
 * online/offline, and when to probe an offline endpoint next (capped exponential backoff on the
 * clock). A driver calls {@link EndpointHealth.success} and {@link EndpointHealth.failure} after
 * each request, asks {@link EndpointHealth.shouldProbe} before sending to an offline endpoint, and
 * shows {@link EndpointHealth.snapshot} in its health report.
 *
 * @example
 * const health = new EndpointHealth({ clock, offlineAfter: 3 });
 * if (!health.shouldProbe(`unit ${unitId}`)) return badSamples("unit offline");
 * try { const data = await request(); health.success(`unit ${unitId}`); }
 * catch (error) { health.failure(`unit ${unitId}`, error); throw error; }
 */
export class EndpointHealth {
  readonly #clock: Clock;
  readonly #offlineAfter: number;
  readonly #backoff: ReconnectBackoff;
  readonly #random: (() => number) | undefined;
  readonly #entries = new Map<string, Entry>();

  /**
   * @throws `KilnValidationError` (`KILN_VALIDATION`) when `offlineAfter` is not an integer ≥ 1 or
   *   `probeBackoff` breaks a rule of `checkBackoff`.
   */
  constructor(options: EndpointHealthOptions) {
    this.#clock = options.clock;
    this.#offlineAfter = options.offlineAfter ?? 3;
    if (!Number.isInteger(this.#offlineAfter) || this.#offlineAfter < 1) {
      throw new KilnValidationError("endpoint health options", [
        { path: "offlineAfter", message: `must be an integer ≥ 1, got ${String(this.#offlineAfter)}` },
      ]);
    }
    this.#backoff = options.probeBackoff ?? { initialDelayMs: 1_000, maxDelayMs: 60_000, jitter: 0.2 };
    checkBackoff(this.#backoff, "probeBackoff");
    this.#random = options.random;
  }

  /** Records a successful request: the endpoint is `online`, its failure count 0. */
  success(endpoint: string): void {
    const entry = this.#entry(endpoint);
    entry.consecutiveFailures = 0;
    entry.offlineProbes = 0;
    entry.nextProbeAt = undefined;
    entry.probeDue = undefined;
    entry.lastSuccessAt = this.#clock.now();
  }

  /**
   * Records a failed request. Returns the endpoint's state afterwards; once `offline`, each
   * further failure pushes the next probe out on the backoff.
   */
  failure(endpoint: string, error: unknown): EndpointState {
    const entry = this.#entry(endpoint);
    const now = this.#clock.now();
    entry.consecutiveFailures++;
    entry.lastError = error instanceof Error ? error.message : String(error);
    entry.lastFailureAt = now;
    if (entry.consecutiveFailures < this.#offlineAfter) return "online";
    entry.offlineProbes++;
    const delay = reconnectDelay(entry.offlineProbes, this.#backoff, this.#random);
    entry.nextProbeAt = now + delay;
    entry.probeDue = monotonicNow(this.#clock) + delay;
    return "offline";
  }

  /** The endpoint's state; an endpoint never seen is `online`. */
  state(endpoint: string): EndpointState {
    const entry = this.#entries.get(endpoint);
    return entry && entry.consecutiveFailures >= this.#offlineAfter ? "offline" : "online";
  }

  /** Whether a request to `endpoint` should go out now: always when online; when offline, once its probe is due. */
  shouldProbe(endpoint: string): boolean {
    const entry = this.#entries.get(endpoint);
    if (!entry || this.state(endpoint) === "online") return true;
    return monotonicNow(this.#clock) >= (entry.probeDue ?? 0);
  }

  /** Forgets every endpoint (after a reconnect, say). */
  reset(): void {
    this.#entries.clear();
  }

  /** What is known about each endpoint seen, sorted by key. */
  snapshot(): EndpointHealthSnapshot[] {
    return [...this.#entries.keys()].sort().map((endpoint) => this.#snapshotOf(endpoint, this.#entries.get(endpoint)!));
  }

  /**
   * What is known about one endpoint, as in {@link EndpointHealth.snapshot}; `undefined` for an endpoint
   * never seen. A map lookup, for the request path (no list is built).
   */
  get(endpoint: string): EndpointHealthSnapshot | undefined {
    const entry = this.#entries.get(endpoint);
    return entry && this.#snapshotOf(endpoint, entry);
  }

  #snapshotOf(endpoint: string, entry: Entry): EndpointHealthSnapshot {
    return {
      endpoint,
      state: entry.consecutiveFailures >= this.#offlineAfter ? "offline" : "online",
      consecutiveFailures: entry.consecutiveFailures,
      ...(entry.lastError === undefined ? {} : { lastError: entry.lastError }),
      ...(entry.lastFailureAt === undefined ? {} : { lastFailureAt: entry.lastFailureAt }),
      ...(entry.lastSuccessAt === undefined ? {} : { lastSuccessAt: entry.lastSuccessAt }),
      ...(entry.nextProbeAt === undefined ? {} : { nextProbeAt: entry.nextProbeAt }),
    };
  }

  #entry(endpoint: string): Entry {
    let entry = this.#entries.get(endpoint);
    if (!entry) {
      entry = { consecutiveFailures: 0, offlineProbes: 0 };
      this.#entries.set(endpoint, entry);
    }
    return entry;
  }
}
