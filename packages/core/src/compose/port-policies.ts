import { deviceOutcomeOf } from "./checked-write";
import type { Disposer } from "../domain/disposer";
import { KilnError, isRetryable } from "../domain/errors";
import type { Sample } from "../domain/sample";
import type { KilnEvents } from "../events/catalogue";
import type { EventBus } from "../events/event-bus";
import type { Clock } from "../ports/clock";
import type { PlcDriver } from "../ports/plc-driver";
import type { Store } from "../ports/store";
import { isBreakerFailure, type CircuitBreaker, type CircuitBreakerSnapshot } from "../resilience/circuit-breaker";
import type { HistoryQueries } from "@kiln/core/driver-kit";
import type { SampleSink } from "@kiln/core/driver-kit";
import type {
  GuardedDriver,
  GuardedSampleSink,
  GuardedStore,
  PortCall,
  StorePortName,
} from "../resilience/guarded-ports";
import { CallPolicy } from "../resilience/policy";
import type { RetryPolicyOptions } from "../resilience/retry";
import { withTimeout } from "../resilience/timeout";

/** Breaker settings of one port. */
export interface PortBreakerSettings {
  /** Consecutive counted failures that open the breaker. An integer ≥ 1. */
  readonly failureThreshold: number;
  /** How long the breaker stays open before it turns half-open on its own, in ms. */
  readonly recoveryTimeMs: number;
}

/** The policy of one port: a timeout per attempt, a breaker, and a retry schedule for its idempotent calls. */
export interface PortPolicy {
  /** Time one attempt may take, in ms. */
  readonly timeoutMs: number;
  /** The port's own circuit breaker. */
  readonly breaker: PortBreakerSettings;
  /** Retry schedule of the port's idempotent calls (reads, `recipes.save`, `samples.writeBatch`); omit for one attempt. */
  readonly retry?: RetryPolicyOptions;
}

/** The policy of every store port, by port name. */
export type StorePolicies = Readonly<Record<StorePortName, PortPolicy>>;

/** What guarded ports need from the system: its clock and the bus breaker changes are published on. */
export interface PortPolicyContext {
  /** Source of time for timeouts, breakers and backoff. */
  readonly clock: Clock;
  /** Where `breaker-state-change` events are published. */
  readonly bus?: EventBus<KilnEvents>;
}

/** Breaker snapshots of every guarded port, for `health().ports`. */
export interface PortHealth {
  /** The PLC driver's breaker (`plc:<name>`), shared by reads and writes. */
  readonly driver: CircuitBreakerSnapshot;
  /** `samples.writeBatch` (`store:samples`). */
  readonly samples: CircuitBreakerSnapshot;
  /** `samples.readSamples` / `readBuckets` (`store:history`). */
  readonly history: CircuitBreakerSnapshot;
  /** The event store (`store:events`). */
  readonly events: CircuitBreakerSnapshot;
  /** The process repository (`store:processes`). */
  readonly processes: CircuitBreakerSnapshot;
  /** The recipe repository (`store:recipes`). */
  readonly recipes: CircuitBreakerSnapshot;
  /** The alarm history (`store:alarms`). */
  readonly alarms: CircuitBreakerSnapshot;
  /** The audit log (`store:audit`). */
  readonly audit: CircuitBreakerSnapshot;
}

/**
 * Store errors worth another attempt: retryable errors, an open (not isolated) breaker, and an
 * error the store did not classify (not a `KilnError`): only a store's definite answer (a
 * non-retryable `KilnError`) ends the retries, so no sample is dropped for want of a
 * classification (issue 15).
 */
function worthRetrying(error: unknown): boolean {
  if (!KilnError.is(error)) return true;
  return isRetryable(error) || (KilnError.is(error, "KILN_CIRCUIT_OPEN") && error.details?.isolated !== true);
}

/** Disposes a subscription nobody waits for any more; its failure has no one to go to. */
function disposeQuietly(dispose: Disposer): void {
  try {
    dispose();
  } catch {
    // The subscription is abandoned either way.
  }
}

/**
 * Wraps `driver` in the device's policy: `read` and `write` under `policy.timeoutMs` and one
 * breaker named `plc:<driver name>` (one breaker per device, so a failing device refuses writes
 * at once too), each tried once; `connect` and `subscribe` under the timeout only (the
 * acquisition's reconnect loop owns their retries). A `subscribe` that completes after its
 * timeout is disposed at once, and no subscription's callback runs after its disposer was called
 * or its subscribe gave up. `close`, `status`, `onStatusChange` and
 * `browse` pass through. `policy.retry` is not used: no driver call is retried here (a read's
 * retry is the next scan; a write may not be idempotent).
 *
 * @example
 * const guarded = guardDriver(new SimulatedPlc({ tags }), { timeoutMs: 2_000, breaker: { failureThreshold: 3, recoveryTimeMs: 5_000 } }, { clock, bus });
 * await guarded.read(tags.list()); // KILN_TIMEOUT after 2 s; KILN_CIRCUIT_OPEN once the breaker is open
 */
export function guardDriver(driver: PlcDriver, policy: PortPolicy, context: PortPolicyContext): GuardedDriver {
  const { clock, bus } = context;
  const { timeoutMs } = policy;
  const device = new CallPolicy({
    name: `plc:${driver.name}`,
    clock,
    timeoutMs,
    breaker: policy.breaker,
    ...(bus ? { bus } : {}),
  });
  const timed = <T>(operation: (signal: AbortSignal) => Promise<T>, what: string, signal?: AbortSignal): Promise<T> =>
    withTimeout(operation, { clock, timeoutMs, name: `${driver.name}.${what}`, ...(signal ? { signal } : {}) });
  const subscribe = driver.subscribe?.bind(driver);
  const browse = driver.browse?.bind(driver);
  const endpoints = driver.endpoints?.bind(driver);
  return {
    driverApiVersion: driver.driverApiVersion,
    name: driver.name,
    capabilities: driver.capabilities,
    get status() {
      return driver.status;
    },
    breaker: device.breaker,
    onStatusChange: (listener) => driver.onStatusChange(listener),
    connect: (signal) => timed((attempt) => driver.connect(attempt), "connect", signal),
    close: () => driver.close(),
    read: (tags, signal) => device.executeOnce((attempt) => driver.read(tags, attempt), signal),
    write: (tag, value, signal) => device.executeOnce((attempt) => driver.write(tag, value, attempt), signal),
    writeTracked: (tag, value, signal) => {
      let call: Promise<void> | undefined;
      const result = device.executeOnce((attempt) => (call = driver.write(tag, value, attempt)), signal);
      // Once `result` settles the driver was called, or never will be.
      const deviceSettled = result.then(
        () => "landed" as const,
        () =>
          call?.then(
            () => "landed" as const,
            (error: unknown) => deviceOutcomeOf(error),
          ),
      );
      return { result, device: deviceSettled };
    },
    probe: (tags, signal) => timed((attempt) => driver.read(tags, attempt), "read", signal),
    ...(subscribe
      ? {
          subscribe: async (tags, options, onSamples) => {
            // The callback is gated: nothing reaches the caller once it gave up or disposed, even
            // from a driver that goes on calling; a subscription completing after the timeout
            // is disposed the moment it completes, since its caller has already moved on.
            let live = true;
            let pending: Promise<Disposer> | undefined;
            const gated = (samples: Sample[]): void => {
              if (live) onSamples(samples);
            };
            try {
              const dispose = await timed(() => (pending = subscribe(tags, options, gated)), "subscribe");
              return () => {
                live = false;
                dispose();
              };
            } catch (error) {
              live = false;
              void pending?.then(disposeQuietly, () => undefined);
              throw error;
            }
          },
        }
      : {}),
    ...(browse ? { browse } : {}),
    ...(endpoints ? { endpoints } : {}),
  };
}

/**
 * Wraps a sample sink in its port policy: each `writeBatch` attempt under `policy.timeoutMs` and
 * through one breaker named `store:samples`, retried with `policy.retry` (idempotent on
 * (tag, timestamp)) while the failure is retryable or the breaker is open. Used by
 * {@link guardStore}; on its own where a sink is used without a whole store (benchmarks, tools).
 *
 * @example
 * const sink = guardSampleSink(store.samples, {
 *   timeoutMs: 10_000,
 *   breaker: { failureThreshold: 5, recoveryTimeMs: 10_000 },
 *   retry: { maxAttempts: Number.MAX_SAFE_INTEGER, initialDelayMs: 200, maxDelayMs: 10_000 },
 * }, { clock, bus });
 */
export function guardSampleSink(sink: SampleSink, policy: PortPolicy, context: PortPolicyContext): GuardedSampleSink {
  const samples = callPolicy("samples", policy, true, context);
  return {
    sinkApiVersion: sink.sinkApiVersion,
    breaker: samples.breaker,
    writeBatch: (batch, call: PortCall = {}) =>
      samples.execute(() => sink.writeBatch(batch), call.signal, call.onRetry),
  };
}

/**
 * The call policy of one store port (`store:<port>`); `retry` applies `settings.retry` with {@link worthRetrying};
 * `isFailure` decides which errors count against its breaker (default {@link isBreakerFailure}).
 */
export function callPolicy(
  port: StorePortName,
  settings: PortPolicy,
  retry: boolean,
  context: PortPolicyContext,
  isFailure?: (error: unknown) => boolean,
): CallPolicy {
  return new CallPolicy({
    name: `store:${port}`,
    clock: context.clock,
    timeoutMs: settings.timeoutMs,
    breaker: isFailure === undefined ? settings.breaker : { ...settings.breaker, isFailure },
    ...(retry && settings.retry ? { retry: { shouldRetry: worthRetrying, ...settings.retry } } : {}),
    ...(context.bus ? { bus: context.bus } : {}),
  });
}

/**
 * Wraps every port of `store` in its policy, each port with its own breaker (`store:<port>`):
 * a slow history query, a stuck audit table or a saturated ingest path opens only its own
 * breaker, so it cannot refuse the other ports' calls.
 *
 * - Every call runs under its port's `timeoutMs` and breaker.
 * - Idempotent calls are retried with the port's `retry` schedule: every read, `recipes.save`
 *   (saving an identical version is a no-op) and `samples.writeBatch` (idempotent on
 *   (tag, timestamp)).
 * - Calls that are not idempotent run once: `events.append` and `processes.save` (a retry after
 *   an unknown outcome would conflict on `expectedVersion`), `alarms.record` (a retry could
 *   record a transition twice) and `audit.record` (idempotent on the entry id, but the audited
 *   command runner keeps its own ordered backlog and retries from there).
 *
 * `open` and `close` pass through. {@link resetGuards} closes the breakers (and clears their timers) at stop.
 *
 * @throws `TypeError`/`RangeError` for invalid settings (a programmer error).
 */
export function guardStore(store: Store, policies: StorePolicies, context: PortPolicyContext): GuardedStore {
  const policy = (port: Exclude<StorePortName, "samples">): CallPolicy =>
    callPolicy(port, policies[port], true, context);
  const sink = guardSampleSink(store.samples, policies.samples, context);
  const history = policy("history");
  const events = policy("events");
  const processes = policy("processes");
  const recipes = policy("recipes");
  const alarms = policy("alarms");
  // A refused command's entry the store answered with an error (a trigger raising for it, a
  // serialization failure) does not count against the audit breaker: anyone may cause refusals,
  // and their entries must not open the breaker and so refuse authorized commands (adv15g
  // MEDIUM-3, fix15j). A timeout still counts (it is the timeout's own error, not the store's).
  const refusalErrors = new WeakSet<object>();
  const audit = callPolicy(
    "audit",
    policies.audit,
    true,
    context,
    (error) => !(typeof error === "object" && error !== null && refusalErrors.has(error)) && isBreakerFailure(error),
  );
  const raw = store;
  return {
    storeApiVersion: raw.storeApiVersion,
    capabilities: raw.capabilities,
    open: (tags) => raw.open(tags),
    close: () => raw.close(),
    breakers: {
      samples: sink.breaker,
      history: history.breaker,
      events: events.breaker,
      processes: processes.breaker,
      recipes: recipes.breaker,
      alarms: alarms.breaker,
      audit: audit.breaker,
    },
    samples: {
      sinkApiVersion: sink.sinkApiVersion,
      breaker: sink.breaker,
      writeBatch: (batch, call) => sink.writeBatch(batch, call),
      readSamples: (query) => history.execute(() => raw.samples.readSamples(query)),
      readBuckets: (query) => history.execute(() => raw.samples.readBuckets(query)),
      // A local, synchronous read of the store's horizon: no policy (not a store round trip).
      ...(raw.samples.retainedFrom ? { retainedFrom: () => raw.samples.retainedFrom?.() } : {}),
    },
    ...(raw.history ? { history: guardHistory(raw.history, history) } : {}),
    events: {
      eventStoreApiVersion: raw.events.eventStoreApiVersion,
      append: (aggregateId, expectedVersion, list) =>
        events.executeOnce(() => raw.events.append(aggregateId, expectedVersion, list)),
      read: (aggregateId, fromVersion) => events.execute(() => raw.events.read(aggregateId, fromVersion)),
      version: (aggregateId) => events.execute(() => raw.events.version(aggregateId)),
    },
    processes: {
      save: (record, list, expectedVersion) =>
        processes.executeOnce(() => raw.processes.save(record, list, expectedVersion)),
      get: (id) => processes.execute(() => raw.processes.get(id)),
      list: (filter) => processes.execute(() => raw.processes.list(filter)),
    },
    recipes: {
      save: (recipe) => recipes.execute(() => raw.recipes.save(recipe)),
      get: (name, version) => recipes.execute(() => raw.recipes.get(name, version)),
      list: () => recipes.execute(() => raw.recipes.list()),
    },
    alarms: {
      record: (entry) => alarms.executeOnce(() => raw.alarms.record(entry)),
      query: (range) => alarms.execute(() => raw.alarms.query(range)),
    },
    audit: {
      record: (entry) =>
        audit.executeOnce(() =>
          entry.outcome !== "denied"
            ? raw.audit.record(entry)
            : raw.audit.record(entry).catch((error: unknown) => {
                if (typeof error === "object" && error !== null) refusalErrors.add(error);
                throw error;
              }),
        ),
      query: (range) => audit.execute(() => raw.audit.query(range)),
    },
  };
}

/** History queries under the `store:history` policy: read-only, so retried like every read. */
function guardHistory(raw: HistoryQueries, history: CallPolicy): HistoryQueries {
  return {
    aggregate: (tags, query) => history.execute(() => raw.aggregate(tags, query)),
    valueAt: (tags, time) => history.execute(() => raw.valueAt(tags, time)),
    valuesAt: (tags, times) => history.execute(() => raw.valuesAt(tags, times)),
    interpolated: (tags, query) => history.execute(() => raw.interpolated(tags, query)),
    downsample: (tag, query) => history.execute(() => raw.downsample(tag, query)),
  };
}

/**
 * Closes every breaker of a guarded driver and store with `reason`, clearing their recovery
 * timers: a stopped system holds no timer, and the next start begins with closed breakers
 * (the link and the store are opened afresh, so an earlier failure count says nothing about them).
 */
export function resetGuards(driver: GuardedDriver, store: GuardedStore, reason: string): void {
  const breakers: CircuitBreaker[] = [driver.breaker, ...Object.values(store.breakers)];
  for (const breaker of breakers) breaker.reset(reason);
}

/** Breaker snapshots of every guarded port. */
export function portHealth(driver: GuardedDriver, store: GuardedStore): PortHealth {
  const { breakers } = store;
  return {
    driver: driver.breaker.snapshot,
    samples: breakers.samples.snapshot,
    history: breakers.history.snapshot,
    events: breakers.events.snapshot,
    processes: breakers.processes.snapshot,
    recipes: breakers.recipes.snapshot,
    alarms: breakers.alarms.snapshot,
    audit: breakers.audit.snapshot,
  };
}
