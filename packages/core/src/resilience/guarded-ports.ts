import type { DeviceOutcome } from "../compose/checked-write";
import type { Sample } from "../domain/sample";
import type { Tag, TagValue } from "../domain/tags";
import type { PlcDriver } from "../ports/plc-driver";
import type { SampleHistory } from "@kiln/core/driver-kit";
import type { SampleSink, SampleWriteResult } from "@kiln/core/driver-kit";
import type { Store } from "../ports/store";
import type { CircuitBreaker } from "./circuit-breaker";
import type { RetryInfo } from "./retry";

/** Per-call options of a guarded port call. */
export interface PortCall {
  /** Aborting it ends the call (and its retries) at once with the signal's reason. */
  readonly signal?: AbortSignal;
  /** Called before each backoff wait of a retried call, with the failed attempt and its error. */
  readonly onRetry?: (info: RetryInfo) => void;
}

/**
 * A PLC driver wrapped in its device policy by composition: `read` and `write` run under the
 * call timeout and through the device's circuit breaker, once each (the next scan is a read's
 * retry; a write is not idempotent); `connect` and `subscribe` run under the timeout only.
 * Consumers use it as a plain {@link PlcDriver} and never wire resilience themselves.
 */
export interface GuardedDriver extends PlcDriver {
  /** The device's breaker (`plc:<driver name>`), shared by reads and writes. */
  readonly breaker: CircuitBreaker;
  /**
   * Reads `tags` under the timeout only, outside the breaker: the reconnect loop's probe while
   * the link is down. Its caller closes the breaker (`breaker.reset()`) once the link is back.
   */
  probe(tags: readonly Tag[], signal?: AbortSignal): Promise<Sample[]>;
  /**
   * `write`, also telling when the driver's own call settled (`device`, never rejects): after the
   * timeout `result` rejects while the driver's call may still be on its way to the device and
   * land later (review 15e). `device` resolves with `"landed"` when the driver's call succeeded
   * (the device took the value), `"failed"` when it failed before sending or the device refused,
   * `"unknown"` when it failed after the request may have been sent (`details.sent: true`;
   * review 15g, M1), and `undefined` at once when the driver was not called (breaker open;
   * review 15f, H2).
   */
  writeTracked(
    tag: Tag,
    value: TagValue,
    signal?: AbortSignal,
  ): { readonly result: Promise<void>; readonly device: Promise<DeviceOutcome | undefined> };
}

/**
 * A sample sink wrapped in its port policy by composition: each attempt of `writeBatch` runs
 * under the write timeout and through the sink's breaker, and retryable failures (timeouts,
 * store errors, an open breaker) are retried with capped backoff until the batch is stored or
 * `call.signal` aborts; `writeBatch` is idempotent on (tag, timestamp), so this is safe.
 */
export interface GuardedSampleSink extends SampleSink {
  /**
   * Stores `samples`, retrying as described above; resolves with the sink's result (its
   * conflicts), or `void` from a sink that reports none. Rejects with the first error retrying
   * cannot fix.
   */
  writeBatch(samples: readonly Sample[], call?: PortCall): Promise<SampleWriteResult | void>;
  /** The sink's breaker (`store:samples`). */
  readonly breaker: CircuitBreaker;
}

/** The store ports composition guards, each with its own breaker. */
export type StorePortName = "samples" | "history" | "events" | "processes" | "recipes" | "alarms" | "audit";

/**
 * A store whose every port call runs under its port's policy (see `guardStore`). `open` and
 * `close` are passed through: they are lifecycle, run once, by the owner.
 */
export interface GuardedStore extends Store {
  /** Sample ingest (retried, idempotent) and history reads (their own breaker). */
  readonly samples: GuardedSampleSink & SampleHistory;
  /** The breaker of each port, by port name. */
  readonly breakers: Readonly<Record<StorePortName, CircuitBreaker>>;
}
