import type { Acquisition, AcquisitionHealth } from "../acquisition/acquisition";
import type { AlarmCommand, AlarmEngine, AlarmShelveOptions, AlarmSnapshot } from "../alarms/alarm-engine";
import { currentValueViewOf, type CurrentValueTable, type CurrentValueView } from "../cvt/current-value-table";
import { KilnError, KilnValidationError } from "../domain/errors";
import { reconnectDelay } from "../driver-kit/backoff";
import type { Sample } from "../domain/sample";
import { frozenTagValue, type TagCatalog, type TagValue } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import { eventBusViewOf, type Disposer, type EventBus, type EventBusView } from "../events/event-bus";
import type { LoggingFilter } from "../logging/logging-filter";
import type { SampleLogger, SampleLoggerHealth } from "../logging/sample-logger";
import type { Clock } from "../ports/clock";
import type { Logger } from "../ports/logger";
import type { StoredRecipe } from "@kiln/core/driver-kit";
import type { AlarmHistory, AuditLog, ProcessRepository, RecipeRepository } from "@kiln/core/driver-kit";
import type { HistoryQueries, SampleHistory } from "@kiln/core/driver-kit";
import { withTimeout } from "../resilience/timeout";
import { recoverInterrupted } from "../recipes/process-recovery";
import type { ProcessFailure } from "../recipes/process-run";
import type {
  ProcessProblem,
  ProcessResult,
  RecipeExecutor,
  RecipeProcess,
  StartRecipeOptions,
} from "../recipes/recipe-executor";
import { storedRecipeOf, type RecipeInput } from "../recipes/recipe-schema";
import type { GuardedDriver, GuardedStore } from "../resilience/guarded-ports";
import {
  snapshotPrincipal,
  type Authorizer,
  type Permission,
  type Principal,
  type PrincipalSnapshot,
} from "../security/authorization";
import {
  auditedName,
  auditedText,
  checkIdentifier,
  fittedName,
  snapshotInput,
  valueOf,
  type InputSnapshot,
} from "../security/command-input";
import type { AuditedCommandRunner, CommandContext } from "../security/audited-command";
import { authorizeRecipeSave, authorizeRecipeStart } from "../security/recipe-authorization";
import { checkTagWrite, type LateDeviceSettle, type TagWriter, type WatchesLateCalls } from "./checked-write";
import { manualMachineCommand, stopsMachine } from "./manual-machine-command";
import type { ResolvedControlSystemOptions } from "./control-system-options";
import type { EventRecorder } from "./event-recorder";
import { interlockHolds, interlockRefusal, staleSource, untrustedInput, type SourceAdvances } from "./interlocks";
import { portHealth, resetGuards, type PortHealth } from "./port-policies";
import type { SystemLifecycle, SystemState } from "./system-lifecycle";
import type { ServiceContainer } from "./service-registry";
import type { MachineStateMachine, UncheckedParts } from "@kiln/core/advanced";
import { recordEventMetrics } from "./event-metrics";
import { InternalTokens } from "./tokens";
import { monotonicNow } from "../runtime/system-clock";
import { MEMORY_STORE_FUTURE_TOLERANCE_MS, MemoryStore, type MemoryStoreEvictions } from "../memory/memory-store";

/**
 * How long (ms) the driver's and the store's `close` may take at stop after the drain budget
 * (`logging.drainTimeoutMs`) is spent: stop() takes at most drainTimeoutMs + this (plus a running
 * process's abort). A close still running then is abandoned and reported.
 */
export const STOP_CLOSE_MARGIN_MS = 2_000;

type Settled = "ok" | "timeout" | { readonly error: unknown };

/** How `work` settled, or "timeout" when it did not within `timeoutMs` on `clock`. */
async function settleWithin(clock: Clock, work: Promise<unknown>, timeoutMs: number): Promise<Settled> {
  const timer = new AbortController();
  const timeout = clock.sleep(timeoutMs, timer.signal).then(
    () => "timeout" as const,
    () => "timeout" as const,
  );
  try {
    return await Promise.race([settle(work), timeout]);
  } finally {
    timer.abort();
  }
}

function settle(work: Promise<unknown>): Promise<Settled> {
  return work.then(
    () => "ok" as const,
    (error: unknown) => ({ error }),
  );
}

/** How long (ms) a store still opening after start goes unreported in `health()`. */
const STORE_OPEN_GRACE_MS = 1_000;

/**
 * Reads of what the store holds, each through its port's policy (timeout, breaker, retry):
 * samples and history queries under `store:history`, alarm history under `store:alarms`, the
 * audit trail under `store:audit`, recipes under `store:recipes`, processes under
 * `store:processes`. Read-only, like every read of the system (`read`, `listAlarms`, `health`),
 * so not authorized: a host that serves them to operators checks their role itself. The store is
 * open only while the system runs (otherwise `KILN_LIFECYCLE`); a call that outlasts its port's
 * timeout fails with `KILN_TIMEOUT`, one refused by an open breaker with `KILN_CIRCUIT_OPEN`.
 */
export interface StoredHistoryView {
  /** Raw samples (`readSamples`) and time buckets (`readBuckets`) of one tag. */
  readonly samples: SampleHistory;
  /** Alarm transitions recorded in a time range (for `computeAlarmKpis`). */
  readonly alarms: Pick<AlarmHistory, "query">;
  /** Audit entries recorded in a time range, oldest first: every command, allowed or denied. */
  readonly audit: Pick<AuditLog, "query">;
  /** Saved recipe versions: one by name (and version, else the latest), or all. */
  readonly recipes: Pick<RecipeRepository, "get" | "list">;
  /** Process records: one by id, or those matching a filter. */
  readonly processes: Pick<ProcessRepository, "get" | "list">;
  /** Aggregates, value-at, interpolation and downsampling, when the store has them (`capabilities.history`). */
  readonly queries?: HistoryQueries;
}

/** A summary of the system's health for a host's health endpoint. */
export interface ControlSystemHealth {
  /** `ok`: values flow and reach the store. `degraded`: something is failing but handled. */
  readonly status: "stopped" | "ok" | "degraded";
  /** The machine's id. */
  readonly machineId: string;
  /** The current state of the machine's state machine. */
  readonly machineState: string;
  /** Link, breaker and scan group health of the PLC acquisition. */
  readonly acquisition: AcquisitionHealth;
  /** Counters and state of the logging pipeline to the store. */
  readonly logging: SampleLoggerHealth;
  /**
   * The store's lifecycle: `opening` after a start during a database outage (samples go to the
   * spool while the store is opened in the background with backoff), with the last error.
   */
  readonly store: {
    readonly state: "closed" | "opening" | "open";
    readonly lastError?: string;
    /**
     * With the embedded {@link MemoryStore} only: what its retention evicted since it was created,
     * per port (`store-evict` events, `kiln_store_evicted_total{port}`), and its horizon
     * (`retainedFrom`, ms since the epoch; history from it on is complete). Evictions are by design,
     * not a problem: status stays `ok` (ADR 0045).
     */
    readonly retention?: {
      readonly evicted: MemoryStoreEvictions;
      readonly retainedFrom?: number;
      /**
       * How far the newest stored sample is stamped ahead of the clock, in ms, when it is more than
       * `MEMORY_STORE_FUTURE_TOLERANCE_MS` (60 s): such a tag keeps the retention window on its own
       * time and squeezes every other tag to its value in force, so it is a problem (status degraded).
       */
      readonly aheadOfClockMs?: number;
    };
  };
  /**
   * The last lifecycle call to a port that failed or ran over `lifecycleTimeoutMs` (`store.open`,
   * `store.close`, `driver.close`), as `step: CODE: message`; cleared by the next start.
   */
  readonly lifecycle: { readonly lastError?: string };
  /**
   * The circuit breaker of every guarded port: the driver (`plc:<name>`) and each store port
   * (`store:samples`, `store:history`, `store:events`, `store:processes`, `store:recipes`,
   * `store:alarms`, `store:audit`), with state and counters.
   */
  readonly ports: PortHealth;
  /** Counts of active alarms, unacknowledged alarms, and transitions the alarm history failed to record. */
  readonly alarms: { readonly active: number; readonly unacknowledged: number; readonly historyFailures: number };
  /**
   * The domain events appended to the event store (`machine-state-change`): how many could not be
   * stored (the store down, its breaker open) since construction, and the latest failure. Each
   * is named in `problems` while the count is above 0: the stored event history has a gap
   * (fix15z, adv15y).
   */
  readonly events: {
    /** Events whose append failed since construction: each is missing from the event store. */
    readonly notRecorded: number;
    /** The latest append failure, in words. */
    readonly lastError?: string;
  };
  /**
   * The audit writer: entries waiting (`backlog`), dropped, skipped and set aside, refusals of
   * offered intents dropped unstored (`refusalsDropped`: the trail may show those commands
   * `allowed`; they did not run) and, when the entry at the head of the backlog has failed, its
   * event id (`blockedBy`: the entry holding the queue). ADR 0013 addendum.
   */
  readonly audit: {
    /** Entries waiting to be recorded (journaled or in memory). */
    readonly backlog: number;
    /** Entries dropped unstored since construction (backlog full, a stop without a journal, journal damage). */
    readonly dropped: number;
    /**
     * Entries skipped: refused for good by the store, or set aside; each kept (one JSON line) in
     * `<audit.backlog.path>.set-aside` when there is a journal, and a problem from then on (they
     * are not in the trail) until the next start.
     */
    readonly skipped: number;
    /** Skipped entries not kept in `<journal>.set-aside` (no journal, or the append failed): only in the log and their `audit-entry-skip` event. */
    readonly skippedNotKept: number;
    /** Entries set aside because they kept failing while the store took other entries. */
    readonly setAside: number;
    /**
     * Entries set aside (or refused) after their store call timed out whose abandoned call then
     * landed: in the trail after all, not in `skipped`/`setAside`; each an `audit-entry-stored-late`.
     */
    readonly storedLate: number;
    /** Refusals of offered intents dropped unstored (each an `audit-refusal-drop`). */
    readonly refusalsDropped: number;
    /**
     * Entries of commands issued while the system was stopped (refused `KILN_LIFECYCLE`): the
     * audit store and journal are closed then, so each is reported by `audit-entry-drop` at once
     * and counted here (and in `dropped`), never held until a start that may not come (ADR 0013).
     * Since the last stop: reset by the next start.
     */
    readonly droppedWhileStopped: number;
    /**
     * Entries dropped at the last stop (reset by the next start; counted in `dropped` too), each
     * reported by `audit-entry-drop` before `stop()` returned: held only in memory when the stop closed
     * the audit writer (the store had not taken them, or its budget for the close ran out), or of an action that
     * acted during the stop (a trip, a safety function) and reached the writer after it closed.
     * Named in `problems`. ADR 0013, amendment fix15x.
     */
    readonly droppedAtStop: number;
    /**
     * Denied or failed attempts counted while the backlog was full (or its journal could not take
     * them: a full disk) and not yet recorded in an `audit.overflow` summary entry; durable in
     * `<journal>.reserve` (room reserved when the journal opens), so recovered after a crash.
     */
    readonly overflow: number;
    /**
     * Of `overflow`, the attempts whose count is only in memory: neither the last
     * `<journal>.reserve` record written nor a journaled `audit.overflow` summary holds it (both
     * writes failed, or there is no journal). A crash would lose them unreported; with a journal
     * their refused commands are answered only once the count is durable, so they wait meanwhile.
     * A problem while non-zero. ADR 0013, amendment fix15r.
     */
    readonly overflowMemoryOnly: number;
    /**
     * Entries that came while the backlog was full and would have been kept beyond
     * `audit.backlog.maxEntries` (the system's own entries such as `machine.trip`, safety
     * functions, `:fail` follow-ups), held as counts by kind (principal, action, target, outcome)
     * and not yet in the `audit.coalesce` summary entries they become once the backlog has room
     * (at most 16 kinds; an entry of a further kind is dropped, counted in `dropped` and an
     * `audit.drop` summary). A problem while non-zero. ADR 0013, amendment adv15p.
     */
    readonly coalesced: number;
    /**
     * The audit journal's failures in force, in words (each also in `problems`): it could not be
     * opened (retried on the backoff), an append failed (`ENOSPC` and the path), or its reserve
     * could not be written; with how many entries the reserve holds and how many only memory.
     * An open or append failure stays named until every entry it left only in memory is journaled.
     */
    readonly journalProblems: readonly string[];
    /**
     * Whether the audit backlog survives a restart: true with `audit.backlog.path` (a journal)
     * holding every waiting entry; false without one, or while a journal failure leaves entries
     * only in memory (counted in `journalProblems`). Not a problem by itself (health stays `ok`).
     */
    readonly durableBacklog: boolean;
    /** When the audit store last failed to take an entry (ms, the system clock), while it has taken none since. */
    readonly storeFailingSince?: number;
    /** How long the oldest waiting audit entry has waited, in ms, when there is one. */
    readonly waitingMs?: number;
    /** Waiting entries already reported by `audit-record-fail` (not just written in the background). */
    readonly reportedWaiting: number;
    /**
     * Refused commands' entries waiting for their turn to be recorded: at most 4 refused entries
     * are recorded at a time, so a burst of refusals never holds an allowed command's entry
     * (ADR 0013, amendment fix15j). Their callers get the refusal once the entry is recorded. At
     * most the backlog's free share for refused entries waits; a refusal beyond it is counted into
     * its principal's `audit.overflow` summary and answered then (fix15l). A problem
     * ("audit queue: ...") once the oldest has waited 2 s.
     */
    readonly queued: number;
    /** How long the oldest of the `queued` entries has waited, in ms, when there is one. */
    readonly queuedWaitingMs?: number;
    /** The entry at the head of the backlog while it fails: event id, failures counted, last error. */
    readonly blockedBy?: { readonly id: string; readonly failures: number; readonly error: string };
  };
  /** Why the status is not `ok`, in words. */
  readonly problems: readonly string[];
}

/** How long a journaled audit entry may wait for the store before health names the backlog (ms). */
const AUDIT_WAIT_GRACE_MS = 1_000;
/** How long a refused command's entry may wait for its turn to be recorded before health names the queue (ms, fix15j). */
const DENIED_QUEUE_GRACE_MS = 2_000;
/** health() names at most this many given-up writes still out, then summarises (review 15g, L2). */
const LATE_CALL_LINES = 5;

/**
 * A composed control system for one machine: driver → acquisition → current value table →
 * alarms and the logging pipeline → store, plus the machine's state machine, all on one event
 * bus and one clock. Made by `createControlSystem`; nothing runs until {@link start}.
 */
export class ControlSystem {
  /** The machine's id. */
  readonly machineId: string;
  /** The tag catalog. */
  readonly tags: TagCatalog;
  /**
   * The events every part publishes, to subscribe to (`on`, `once`, `next`). A read-only view:
   * there is no `publish` here, so host code cannot make up an alarm or a state change. (The bus
   * itself is `unchecked.bus`.)
   */
  readonly bus: EventBusView<KilnEvents>;
  /**
   * Current values, synchronously readable and observable (`get`, `value`, `snapshot`, `size`,
   * `observe`, `observeAll`). A read-only view: only acquisition writes values. (The table itself
   * is `unchecked.cvt`.)
   */
  readonly cvt: CurrentValueView;
  /**
   * The raw parts underneath the checked commands: the driver, the store, the recipe executor,
   * the alarm engine, the state machine, the event bus and the current value table.
   *
   * **Everything reached through `unchecked` bypasses authorization and the audit trail**: a
   * write through `unchecked.driver` reaches the PLC with no role check, no machine-state check,
   * no value check and no audit entry; `unchecked.store.audit.record` writes whatever it is given
   * into the audit trail; `unchecked.bus.publish` makes up events (alarms, state changes) that
   * subscribers and the event recorder trust; `unchecked.cvt.update` sets values no device sent.
   * A write through `unchecked.driver` is not ordered with the checked path's writes to the same
   * tag (a process's steps, `writeTag`, the safe state): it can land after a safe state and
   * undo it. It exists for hosts that compose their own parts, for diagnostics and
   * for tests. Operator-facing code uses the commands of this class ({@link writeTag},
   * {@link startRecipe}, {@link acknowledgeAlarm}...), each authorized and audited.
   */
  readonly unchecked: UncheckedParts;

  /**
   * Stored history (samples, buckets, alarm transitions, history queries, the audit trail,
   * recipes, processes) read through the store's port policies; use this rather than
   * `unchecked.store`.
   * @example
   * const kpis = computeAlarmKpis(await system.history.alarms.query(lastHour), lastHour);
   * const denied = (await system.history.audit.query(lastHour)).filter((entry) => entry.outcome === "denied");
   */
  readonly history: StoredHistoryView;
  readonly #options: ResolvedControlSystemOptions;
  readonly #bus: EventBus<KilnEvents>;
  readonly #cvt: CurrentValueTable;
  readonly #machine: MachineStateMachine;
  readonly #alarms: AlarmEngine;
  readonly #recipes: RecipeExecutor;
  readonly #acquisition: Acquisition;
  readonly #sampleLogger: SampleLogger;
  readonly #filter: LoggingFilter;
  readonly #logger: Logger;
  readonly #disposers: Disposer[] = [];
  readonly #lifecycle: SystemLifecycle;
  readonly #clock: Clock;
  readonly #commands: AuditedCommandRunner;
  readonly #authorizer: Authorizer;
  readonly #guardedDriver: GuardedDriver;
  readonly #guardedStore: GuardedStore;
  readonly #writer: TagWriter;
  readonly #recorder: EventRecorder;
  readonly #eventMetrics: ReturnType<typeof recordEventMetrics>;
  readonly #freshness: SourceAdvances;
  #storeState: "closed" | "opening" | "open" = "closed";
  #storeError: string | undefined;
  #storeOpening = new AbortController();
  #storeOpener: Promise<void> | undefined;
  /** When the store began opening, on monotonic time. */
  #openingSince = 0;
  #lifecycleError: string | undefined;
  /** The start in progress (never rejects), so a stop can wait for it. */
  #starting: Promise<unknown> | undefined;
  /** Set by a stop during a start: the start gives up at its next step. */
  #startAbort = new AbortController();
  /** The stop in progress, shared by every caller. */
  #stopping: Promise<void> | undefined;

  /** @internal use `createControlSystem`; the container stays private to the system. */
  constructor(container: ServiceContainer) {
    this.#options = container.resolve(InternalTokens.Options);
    this.machineId = this.#options.machineId;
    this.tags = container.resolve(InternalTokens.Tags);
    this.#bus = container.resolve(InternalTokens.Bus);
    this.#cvt = container.resolve(InternalTokens.CurrentValueTable);
    this.bus = eventBusViewOf(this.#bus);
    this.cvt = currentValueViewOf(this.#cvt);
    this.#alarms = container.resolve(InternalTokens.AlarmEngine);
    this.#acquisition = container.resolve(InternalTokens.Acquisition);
    this.#sampleLogger = container.resolve(InternalTokens.SampleLogger);
    this.#filter = container.resolve(InternalTokens.LoggingFilter);
    this.#logger = container.resolve(InternalTokens.Logger);
    this.#clock = container.resolve(InternalTokens.Clock);
    this.#commands = container.resolve(InternalTokens.CommandRunner);
    this.#authorizer = container.resolve(InternalTokens.Authorizer);
    this.#lifecycle = container.resolve(InternalTokens.Lifecycle);
    this.#guardedDriver = container.resolve(InternalTokens.GuardedDriver);
    this.#guardedStore = container.resolve(InternalTokens.GuardedStore);
    this.#writer = container.resolve(InternalTokens.TagWriter);
    this.#recorder = container.resolve(InternalTokens.EventRecorder);
    this.#machine = container.resolve(InternalTokens.Machine);
    this.#recipes = container.resolve(InternalTokens.RecipeExecutor);
    this.#freshness = container.resolve(InternalTokens.SourceFreshness);
    this.#eventMetrics = recordEventMetrics(this.#bus, container.resolve(InternalTokens.Metrics), {
      evictingStore: container.resolve(InternalTokens.Store) instanceof MemoryStore,
    });
    const store = this.#guardedStore;
    this.history = Object.freeze({
      samples: Object.freeze({
        readSamples: (query: Parameters<SampleHistory["readSamples"]>[0]) => store.samples.readSamples(query),
        readBuckets: (query: Parameters<SampleHistory["readBuckets"]>[0]) => store.samples.readBuckets(query),
        ...(store.samples.retainedFrom ? { retainedFrom: () => store.samples.retainedFrom?.() } : {}),
      }),
      alarms: Object.freeze({ query: (range: Parameters<AlarmHistory["query"]>[0]) => store.alarms.query(range) }),
      audit: Object.freeze({ query: (range: Parameters<AuditLog["query"]>[0]) => store.audit.query(range) }),
      recipes: Object.freeze({
        get: (name: string, version?: number) => store.recipes.get(name, version),
        list: () => store.recipes.list(),
      }),
      processes: Object.freeze({
        get: (id: string) => store.processes.get(id),
        list: (filter?: Parameters<ProcessRepository["list"]>[0]) => store.processes.list(filter),
      }),
      ...(store.history ? { queries: store.history } : {}),
    });
    this.unchecked = Object.freeze({
      driver: container.resolve(InternalTokens.Driver),
      store: container.resolve(InternalTokens.Store),
      machine: this.#machine,
      bus: this.#bus,
      cvt: this.#cvt,
    });
  }

  #retentionHealth(): { retention?: NonNullable<ControlSystemHealth["store"]["retention"]> } {
    const store = this.unchecked.store;
    if (!(store instanceof MemoryStore)) return {};
    const { retainedFrom, newestSampleTime } = store;
    const ahead = newestSampleTime === undefined ? 0 : newestSampleTime - this.#clock.now();
    return {
      retention: {
        evicted: store.evicted,
        ...(retainedFrom === undefined ? {} : { retainedFrom }),
        ...(ahead > MEMORY_STORE_FUTURE_TOLERANCE_MS ? { aheadOfClockMs: ahead } : {}),
      },
    };
  }

  /** The current state of the machine's state machine (`idle`, `processing`...). */
  get machineState(): string {
    return this.#machine.state;
  }

  /**
   * Whether `principal` may use `permission` on `target` now: the system's role table
   * (`authorization.roles`), checked in the machine's current state, as every command is. For a
   * northbound server that must guard what the in-process API does not, e.g. `read` of a tag
   * before it serves a remote client its value. A malformed principal may do nothing. Records
   * nothing (a query, not a command).
   */
  can(principal: Principal, permission: Permission, target?: string): boolean {
    return this.#authorizer.can(principal, permission, target, { machineState: this.#machine.state });
  }

  /**
   * Audits a command that a northbound server refuses before it can become a Kiln command (an OPC
   * UA Write with an IndexRange, an Acknowledge naming an unknown EventId, a method Kiln does not
   * have), so every refusal leaves its entry like a refused command of this API: `permission` on
   * `target` is authorized first (a principal without it is refused `KILN_FORBIDDEN`), then the
   * command is refused with `reason`. One entry, `denied` when `reason`'s code is a denial
   * (`KILN_VALIDATION`, `KILN_FORBIDDEN`...), else `failed`, naming principal, source, action
   * (`action`, default `permission`), target and the reason. `comment`, when given, is appended to
   * the entry's reason whatever refused it, the authorization included: what the caller knows of
   * the refusal (a count of the operations it stands for, a user name) is never lost to a
   * `KILN_FORBIDDEN` entry. Nothing else happens.
   * @returns never resolves.
   * @throws `KILN_FORBIDDEN` when the principal lacks `permission` on `target`, else `reason`
   *   itself (the same object), or `KILN_AUDIT_UNAVAILABLE`/`KILN_VALIDATION` (a malformed
   *   principal or target) like any command.
   */
  refuseCommand(
    principal: Principal,
    command: {
      readonly permission: Permission;
      readonly action?: string;
      readonly target: string;
      readonly reason: KilnError;
      /** Recorded with the entry's reason (at most 1000 characters; a longer one is refused `KILN_VALIDATION`, like any comment). */
      readonly comment?: string;
    },
  ): Promise<never> {
    const who = snapshotPrincipal(principal);
    const { permission, action, target, reason, comment } = command;
    return this.#command(
      who,
      permission,
      target,
      () => {
        throw reason;
      },
      {
        machineState: () => this.#machine.state,
        ...(action === undefined ? {} : { action }),
        ...(comment === undefined ? {} : { comment }),
      },
    );
  }

  /** Every alarm's current state (read-only snapshots; change them with the alarm commands). */
  listAlarms(): AlarmSnapshot[] {
    return this.#alarms.list();
  }

  /** `stopped`, `starting`, `running` or `stopping`. */
  get state(): SystemState {
    return this.#lifecycle.state;
  }

  /**
   * Opens the store, replays any spool, and starts acquisition. A PLC that cannot be reached
   * does not fail start (reconnection runs in the background); bad credentials do. With a spool
   * (`logging.spoolPath`), start does not wait on the store before acquiring: acquisition logs
   * into the spool at once while the store opens (retried in the background with the
   * `logging.retry` backoff while it fails or hangs; see `health().store`, a problem after 1 s),
   * then the spool replays. Start returns once the first attempt to open the store has
   * settled, or after 1 s at most when it hangs; a store that cannot be opened never fails start.
   * Start waits for the first attempt to open the audit journal (`audit.backlog.path`) and make
   * its reserve, and does not fail for it either: a failure (`ENOSPC`, `EACCES`, a lock held
   * elsewhere) is in `health().audit.journalProblems` when start returns, with how many entries
   * are held only in memory, and is retried (ADR 0034, amendment 15i).
   *
   * A stopped system can be started again (start → stop → start ...): it reopens the store and
   * the driver, every port breaker begins closed, and the current value table, alarm states,
   * machine state and counters carry over. A start that fails leaves the system stopped.
   * Opening the store is bounded by `lifecycleTimeoutMs` (without a spool, start waits that long at most).
   *
   * Start resolves once acquisition has started, before the first scan has read any value:
   * `read()` may still return undefined. Await {@link ControlSystem.ready} for a current value of every tag.
   *
   * Start and stop are serialized: a {@link stop} during a start makes the start give up at its
   * next step (it rejects with `KILN_ABORTED`) or, once acquisition is starting, waits for it
   * and then stops; either way the system ends `stopped` with nothing connected.
   * A step of Kiln's own that the last stop abandoned past its budget (the audit writer's close,
   * acquisition's stop, the logging drain) is waited for first, at most `lifecycleTimeoutMs`: run
   * beside the start it would close what the start opens. A driver's or store's close that hangs
   * is not waited for.
   * @throws KilnError `KILN_LIFECYCLE` when not stopped (starting, running or stopping), or
   *   (retryable, `details.steps` naming them) when such an abandoned step still runs after that wait;
   *   `KILN_ABORTED` when a stop came during the start.
   */
  start(): Promise<void> {
    if (this.#lifecycle.state !== "stopped") {
      return Promise.reject(
        new KilnError("KILN_LIFECYCLE", `Cannot start a control system that is ${this.#lifecycle.state}.`),
      );
    }
    this.#lifecycle.state = "starting";
    this.#startAbort = new AbortController();
    this.#releaseTurns = releaseSignal();
    const starting = this.#start(this.#startAbort.signal);
    this.#starting = starting.then(
      () => (this.#starting = undefined),
      () => (this.#starting = undefined),
    );
    return starting;
  }

  async #start(abort: AbortSignal): Promise<void> {
    // A step of Kiln's own the last stop abandoned past its budget (the audit writer's close,
    // acquisition, the logging drain) still runs: it finishes first, or this start fails. Run
    // beside the start it would close what the start opens (the audit writer closed under a
    // running system: CI of stop 28). A port's close (driver, store) is not waited for: a port
    // answers an open after a close that has not finished itself (a hung socket must not keep the system down).
    try {
      await this.#awaitAbandoned();
    } catch (error) {
      this.#lifecycle.state = "stopped";
      throw error;
    }
    // The last stop halted the safe state's writing before it closed the writer (fix15z).
    this.#recipes.resumeSafeState();
    // Every start begins with closed breakers, whatever happened while the system was stopped.
    resetGuards(this.#guardedDriver, this.#guardedStore, "control system starting");
    this.#storeOpening = new AbortController();
    this.#storeOpener = undefined;
    this.#storeError = undefined;
    this.#lifecycleError = undefined;
    const checkpoint = (): void => {
      if (abort.aborted) throw new KilnError("KILN_ABORTED", "control system stopped while starting");
    };
    let firstOpen: Promise<void> | undefined;
    try {
      // With a spool, start never waits on the store: acquisition logs into the spool at once and
      // the store opens in the background (a frozen database would otherwise hold start for
      // lifecycleTimeoutMs with nothing acquired). Without one, start needs the store.
      const spooled = Boolean(this.#options.logging.spoolPath);
      if (spooled) {
        firstOpen = this.#bounded("store.open", () => this.#guardedStore.open(this.tags.list()), false);
        firstOpen.catch(() => undefined);
      } else {
        await this.#bounded("store.open", () => this.#guardedStore.open(this.tags.list()), false);
        checkpoint();
      }
      const storeReady = !spooled;
      this.#openingSince = monotonicNow(this.#clock);
      this.#storeState = storeReady ? "open" : "opening";
      // The audit writer may call the store again: entries kept while stopped are written first.
      // Its journal and reserve are opened now (awaited: a failure is in health when start
      // returns), so a disk that fills later finds the reserve made (ADR 0034, amendment 15i).
      await this.#commands.open();
      if (storeReady) await this.#recoverProcesses();
      checkpoint();
      await this.#sampleLogger.start({ storeReady });
      checkpoint();
      this.#alarms.resume();
      this.#wire();
      // From here on a stop waits for the acquisition to start, then stops it.
      await this.#acquisition.start();
      this.#eventMetrics.deviceConnected(this.#guardedDriver.name, this.#acquisition.link === "online");
      this.#lifecycle.state = "running";
      if (!storeReady) {
        this.#storeOpener = this.#openStoreInBackground(firstOpen);
        // Acquisition already runs into the spool. A store whose first open succeeds soon (the
        // usual case) is open when start returns, so commands right after it find their audit
        // trail; one that refuses returns at once, a frozen one holds start no longer than this grace.
        const firstAttempt = firstOpen === undefined ? Promise.resolve() : firstOpen.catch(() => undefined);
        await settleWithin(this.#clock, Promise.race([this.#storeOpener, firstAttempt]), STORE_OPEN_GRACE_MS);
      }
      this.#logger.info({ machineId: this.machineId }, "control system started");
    } catch (error) {
      this.#unwire();
      await this.#sampleLogger.stop().catch(() => undefined);
      await firstOpen?.catch(() => undefined);
      await this.#bounded("store.close", () => this.#guardedStore.close());
      this.#storeState = "closed";
      this.#alarms.suspend();
      resetGuards(this.#guardedDriver, this.#guardedStore, "control system start failed");
      this.#lifecycle.state = "stopped";
      throw error;
    }
  }

  /**
   * Resolves when the system has a current value for every tag: the first complete scan of
   * every scan group since the last {@link ControlSystem.start} (poll groups: the first cycle; subscribed
   * groups: a first notification for each tag). Each tag then has a sample in the current value
   * table — the device's as read, or, where the device did not answer (unreachable, the read
   * failed or timed out), `bad` (`BadNoCommunication`, `value: null`) with the reason; a tag
   * holding a value from an earlier run keeps it as `uncertain`. It never waits longer than
   * `lifecycleTimeoutMs` (the tags still without an answer are then marked bad the same way);
   * a poll group's first read is bounded by the driver's `timeoutMs` already. `start()` itself
   * does not wait for values (see docs/adr/0016-ready-after-first-scan.md). Resolves at once
   * when the first scan is already done; waits for a start in progress.
   * @example
   * await system.start();
   * await system.ready();
   * console.log(system.read("chamber.pressure")); // { tag, value, timestamp, quality: { severity: "good", ... } }
   * @throws KilnError `KILN_LIFECYCLE` when the system is not running (or the start failed);
   *   `KILN_ABORTED` when a stop came while waiting.
   */
  async ready(): Promise<void> {
    if (this.#lifecycle.state === "starting") await this.#starting;
    if (this.#lifecycle.state !== "running") {
      throw new KilnError(
        "KILN_LIFECYCLE",
        `A control system that is ${this.#lifecycle.state} has no scan to wait for; start it first.`,
      );
    }
    await this.#acquisition.firstScan(this.#options.lifecycleTimeoutMs);
    if (this.#lifecycle.state !== "running") {
      throw new KilnError("KILN_ABORTED", "control system stopped while waiting for its first scan");
    }
  }

  /**
   * The machine state last recorded in the event store when it differs from the machine's state
   * now (a new system starts in the model's initial state): a restart does not restore a trip
   * latch or a running machine (ADR 0042, 15t §4), so `health()` names it until the machine
   * next changes state (an operator acted: a fault to latch it again, a start...). Review 15r.
   */
  #restartedFrom: { readonly state: string; readonly at: number } | undefined;

  async #noteRestartedFrom(): Promise<void> {
    try {
      const events = this.#guardedStore.events;
      const version = await events.version(this.machineId);
      if (version === 0) return;
      const last = (await events.read(this.machineId, version)).at(-1);
      const payload = last?.payload as { readonly to?: unknown } | undefined;
      const to = payload?.to;
      if (last === undefined || last.type !== "machine-state-change" || typeof to !== "string") return;
      if (to !== this.#machine.state) this.#restartedFrom = { state: to, at: last.at };
    } catch (error) {
      this.#logger.warn({ error: String(error) }, "could not read the machine's last recorded state");
    }
  }

  async #recoverProcesses(): Promise<void> {
    await this.#noteRestartedFrom();
    const { recovered } = await recoverInterrupted(this.#guardedStore.processes, {
      clock: this.#clock,
      machineId: this.machineId,
      bus: this.#bus,
    });
    for (const process of recovered) {
      this.#logger.warn(
        { processId: process.id, lastCompletedStep: process.lastCompletedStep },
        "process was interrupted by a restart",
      );
    }
  }

  /**
   * Opens the store with backoff (`logging.retry`) after a start with a spool, then lets the spool
   * replay. `first` is the open start launched, awaited as the first attempt.
   */
  async #openStoreInBackground(first: Promise<void> | undefined): Promise<void> {
    const signal = this.#storeOpening.signal;
    const backoff = this.#options.logging.retry;
    for (let attempt = 1; ; attempt++) {
      try {
        if (attempt === 1 && first !== undefined) {
          await first;
        } else {
          await this.#clock.sleep(reconnectDelay(attempt, backoff, this.#options.random), signal);
          await this.#bounded("store.open", () => this.#guardedStore.open(this.tags.list()), false);
        }
        if (signal.aborted) return;
        break;
      } catch (error) {
        if (signal.aborted) return;
        this.#storeError = String(error);
        if (attempt === 1)
          this.#logger.error({ error: String(error) }, "store unavailable at start; spooling until it opens");
        else this.#logger.warn({ error: String(error), attempt }, "store still unavailable");
      }
    }
    if (signal.aborted) return;
    this.#storeState = "open";
    this.#storeError = undefined;
    this.#logger.info({}, "store opened; replaying the spool");
    await this.#recoverProcesses().catch((error: unknown) => {
      this.#logger.error({ error: String(error) }, "recovering interrupted processes failed");
    });
    this.#sampleLogger.storeReady();
  }

  /**
   * Refuses new commands and those in flight not yet committed (`KILN_LIFECYCLE`, recorded
   * `failed`), cancels a start still waiting for its entry (it never begins: `KILN_ABORTED`),
   * aborts a running process at once (its safe state is written while the system
   * is stopping), waits at most `lifecycleTimeoutMs` for the commands in flight to settle,
   * flushes the audit backlog,
   * stops acquisition, drains the logging pipeline (flushing every buffered sample, or spooling
   * it when the store is down), then closes the driver and the store. Idempotent. A command
   * while stopped is refused (`KILN_LIFECYCLE`, "is stopped"); its entry cannot be made durable
   * (the audit store and journal are closed), so it is reported dropped at once
   * (`audit-entry-drop`, `health().audit.droppedWhileStopped`, a health problem), never held in
   * memory until a start that may not come (ADR 0013, addendum of review 15s).
   * Afterwards the system holds no timer and no listener of its own on the driver: alarm
   * delay and shelf timers are suspended (timed shelves resume at the next start) and every
   * port breaker is closed (`breaker-state-change`, reason "control system stopped", for one
   * that was not). {@link start} may be called again.
   *
   * Every caller awaits the same stop: a second `stop()` (a signal handler and `await using`)
   * resolves only when the drain and the closes are done. A stop during a start waits for the
   * start (see {@link start}). Each step goes on past a failure of the one before. The whole stop
   * is bounded: everything up to the drain shares `logging.drainTimeoutMs` from the call, the
   * abort of a running process included (its safe-state writes, in order, each bounded by the
   * driver's timeout; a process save past the budget is abandoned and logged) and the wait for
   * device calls still out. When the abort runs out of the budget, and in any case before the
   * device calls are waited for, the safe state is halted: nothing more is sent, every write not
   * answered fails (`KILN_ABORTED`, `details.halted`; named in `health().problems` as "safe state
   * not confirmed") and the abort's `:fail` entry names it, recorded before the audit writer
   * closes (ADR 0042, amendment fix15z); alarm history, events and the driver's and
   * store's `close` get what is left until {@link STOP_CLOSE_MARGIN_MS} after the drain's end
   * (and `lifecycleTimeoutMs` at most). A step still running then is abandoned and reported (a
   * close: `lifecycle-step-fail`, `health().lifecycle`) without failing the stop, which always
   * ends `stopped`. When closing the audit writer is abandoned, every entry held only in memory
   * is reported dropped (`audit-entry-drop`, `health().audit.droppedAtStop`, a health problem)
   * before `stop()` returns, never afterwards (ADR 0013, amendment fix15x); a command still
   * waiting for the audit store then (its entry's commit, its refusal's store call) is released:
   * it rejects with `KILN_LIFECYCLE` before `stop()` returns, its entry reported dropped the same
   * way, never pending until the store answers (amendment fix15aa). Whatever else a command or an
   * action of the stop still waits on when the writer is about to close (its turn, a device write
   * within its driver timeout, a store port, a process save, one audit-store call that never
   * answers) is settled then, in one place: it is answered `KILN_LIFECYCLE` (`details.released`)
   * and the entry it owes (its `<id>:fail`, outcome unknown, or its refusal) is stored, journaled
   * or counted in `droppedAtStop` before `stop()` returns, never afterwards (amendment fix15ab).
   * With a spool and an unhealthy store, the buffered samples are journaled first. Never rejects.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop().finally(() => (this.#stopping = undefined));
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    if (this.#lifecycle.state === "starting") {
      this.#startAbort.abort();
      await this.#starting;
    }
    if (this.#lifecycle.state !== "running") return;
    // The command gate closes here: a command from now on, or one not yet committed, is refused
    // (KILN_LIFECYCLE) and audited; a running process's writes (its safe state) still go through.
    this.#lifecycle.state = "stopping";
    this.#commands.refuseCommits(
      new KilnError("KILN_LIFECYCLE", "The control system is stopping: the command was not executed."),
    );
    // A start whose entry was already on its way to the store never begins its process (review 15y, M4).
    this.#cancelStarts("control system stopping");
    // One budget for the whole stop: draining gets drainTimeoutMs from here, the closes
    // STOP_CLOSE_MARGIN_MS after it. A step still running when its time is up is abandoned and reported.
    const drainEnd = monotonicNow(this.#clock) + this.#options.logging.drainTimeoutMs;
    const remaining = (): number => Math.max(0, drainEnd - monotonicNow(this.#clock));
    // Measured from the drain's end, not added to what is left: steps past it (a close given its
    // floor) use the margin up, and the whole stop stays within drainTimeoutMs + the margin (fix15x).
    const remainingWithMargin = (): number => Math.max(0, drainEnd + STOP_CLOSE_MARGIN_MS - monotonicNow(this.#clock));
    let afterDrain = false;
    // The least a step that hands audit entries over gets, even when the budget is spent (fix15x):
    // a continuation or a healthy store's flush takes milliseconds; within the close margin.
    const floor = Math.min(this.#options.lifecycleTimeoutMs, STOP_CLOSE_MARGIN_MS / 4);
    const step = async (
      what: string,
      operation: () => Promise<unknown>,
      bounded = true,
      budgetFloor = 0,
    ): Promise<"ok" | "timeout" | "failed"> => {
      const work = operation();
      const budget = Math.max(budgetFloor, afterDrain ? remainingWithMargin() : remaining());
      const outcome = bounded ? await settleWithin(this.#clock, work, budget) : await settle(work);
      if (outcome === "timeout") {
        this.#abandon(what, work);
        this.#logger.error({ step: what }, `${what} at stop ran out of the drain budget; abandoned`);
        return "timeout";
      } else if (outcome !== "ok") {
        this.#logger.error({ error: String(outcome.error) }, `${what} at stop failed`);
        return "failed";
      }
      return "ok";
    };
    let aborted: RecipeProcess | undefined;
    const abortActive = async (): Promise<void> => {
      const active = this.#recipes.active;
      // The one aborted already (its abort abandoned past the budget, still going on) is not aborted again.
      if (active === undefined || active === aborted) return;
      aborted = active;
      // Bounded by the drain budget (fix15x, adv15w H1): the abort issues its safe-state writes
      // first (each bounded by the driver's timeout; one still out is waited for below, with the
      // device calls); what it waits on after them (the process save, a slow store) is abandoned
      // past the budget and reported, never spending the budget of the audit writer's close.
      // A process only ending (its effect done: its abort, or its end, already recorded) is not
      // aborted again, which recorded a second `recipe.abort` by the system (review 15c).
      const ending = this.#recipes.ending() !== undefined;
      const what = ending ? "waiting for the ending process" : "aborting the running process";
      const work = ending ? active.finished : this.#systemAbort(active, "control system stopping");
      if ((await step(what, () => work)) !== "timeout") return;
      // Out of budget with safe-state writes unanswered or not yet sent (fix15z, adv15y H2: they
      // were written one after another, each waiting up to the driver's timeout, and the rest went
      // out after the stop had closed the writer, the abort's `:fail` dropped): nothing more is
      // sent; every write not answered fails now, named in health() and in the abort's `:fail`,
      // recorded before the writer closes.
      this.#recipes.haltSafeState(
        "the control system stopped waiting for the safe state (stop()'s drain budget ran out)",
      );
      await step(`${what} (its safe state halted)`, () => work, true, floor);
    };
    /** The aborted process's record save, after its effect: waited for within the budget, else abandoned and logged. */
    const saveAborted = async (): Promise<void> => {
      if (aborted === undefined) return;
      await step("saving the aborted process", () => aborted!.finished);
    };
    try {
      // The running process first: its safe state must reach the PLC now, not after commands
      // waiting on a slow audit store.
      await abortActive();
      await saveAborted();
      // Commands in flight settle (and their entries reach the writer) before the writer closes.
      await step("settling the commands in flight", () =>
        withTimeout(() => this.#settled(), {
          clock: this.#clock,
          timeoutMs: this.#options.lifecycleTimeoutMs,
          name: "commands in flight",
        }),
      );
      // A start that committed before the gate closed may have begun a process meanwhile.
      await abortActive();
      await saveAborted();
      this.#storeOpening.abort(new KilnError("KILN_ABORTED", "control system stopping"));
      await step("opening the store", async () => this.#storeOpener);
      // Nothing may act on the device once the audit writer is closed (fix15v, adv15u M1: a trip or
      // a stop press in that window acted and its entries were dropped, journal or not). So, before
      // it closes: acquisition stops (no more samples, no more trips), the alarms' delay timers are
      // cancelled (no delayed trip), safety functions are refused from now on (KILN_LIFECYCLE, before
      // they act), and what already acted settles, its entries handed to the writer.
      await step("stopping acquisition", () => this.#acquisition.stop());
      this.#alarms.suspend();
      this.#commands.refuseCommits(
        new KilnError("KILN_LIFECYCLE", "The control system is stopping: the command was not executed."),
        { safetyFunctions: true },
      );
      await step("settling the trips and safety functions in flight", () =>
        withTimeout(() => this.#settled(), {
          clock: this.#clock,
          timeoutMs: this.#options.lifecycleTimeoutMs,
          name: "trips and safety functions in flight",
        }),
      );
      // Nothing writes the safe state from here on (fix15z): a trip or safety function still
      // writing it fails its unanswered writes now and records its `:fail` in the settle below.
      this.#recipes.haltSafeState("the control system is stopping (stop() closes the writer)");
      // Driver calls still out (given-up writes, re-asserts) settle, bounded by the write timeout and
      // by the drain budget (fix15z), so a late landing is seen and audited before the audit closes;
      // one still out then is recorded as unknown (review 15g, H4).
      await step("waiting for device calls still out", () => this.#settleDeviceCalls(remaining()), false);
      // A trip or safety function whose device call just settled hands its entry (its `:fail`) to
      // the writer now, before it closes (fix15x, adv15w M1: it was dropped, journal or not).
      await step(
        "settling the trips and safety functions after the device calls",
        () =>
          withTimeout(() => this.#settled(), {
            clock: this.#clock,
            timeoutMs: Math.max(floor, Math.min(this.#options.lifecycleTimeoutMs, remaining())),
            name: "trips and safety functions in flight",
          }),
        true,
        floor,
      );
      // What the stop accepted and is still in flight, whatever it waits on (its turn, the audit
      // store, a device write within its timeout, a store port, a process save), is settled here,
      // in one place, before the writer closes (fix15ab, adv15 H1-H3, M1): a command still queued
      // for its turn takes it now (the closed gate refuses it); every command and system action
      // still unanswered is answered (KILN_LIFECYCLE) and hands the entry it owes (its `:fail`,
      // outcome unknown, or its refusal) to the writer; what it goes on doing records nothing more.
      await this.#releaseInFlight();
      // Whatever the audit store did not take stays journaled (or is reported as dropped). When the
      // budget runs out first, what is held only in memory is reported dropped now, before stop()
      // returns, never later by the close going on in the background (fix15x, adv15w H1).
      const closing = await step("closing the command runner", () => this.#commands.close(), true, floor);
      // Whatever the close did: an entry still out at the store (the close abandoned, or one
      // command's own store call hung while the close finished) is counted dropped at the stop
      // now, and a command waiting for it released (fix15aa, fix15ab: adv15 H2).
      this.#commands.giveUpClose(
        closing === "timeout"
          ? "the control system stopped before the audit store took them (the stop's drain budget ran out while closing the audit writer)"
          : "the control system stopped while the audit store had not answered for them (their outcome is unknown)",
      );
      // A command that came during the close: answered now, its entry counted at the stop.
      await this.#releaseInFlight();
      // Bounds itself by the budget it is given, then spools (or counts) what is left: never abandoned.
      // With a spool and an unhealthy store it journals everything first.
      await step("draining the logging pipeline", () => this.#sampleLogger.stop(remaining()), false);
      afterDrain = true; // what follows shares the margin
      await step("flushing alarm history", () => this.#alarms.flush());
      this.#unwire();
      await step("recording events", () => this.#recorder.settled());
      // The store is closed even when the driver's close fails or hangs; both within the margin.
      const closeBudget = Math.min(this.#options.lifecycleTimeoutMs, remainingWithMargin());
      await Promise.all([
        this.#bounded("driver.close", () => this.#acquisition.close(), true, closeBudget),
        this.#bounded("store.close", () => this.#guardedStore.close(), true, closeBudget),
      ]);
      this.#storeState = "closed";
    } finally {
      this.#alarms.suspend();
      resetGuards(this.#guardedDriver, this.#guardedStore, "control system stopped");
      this.#lifecycle.state = "stopped";
      // Commands from now on are refused as what they are: the system is stopped, not stopping.
      this.#commands.refuseCommits(
        new KilnError("KILN_LIFECYCLE", "The control system is stopped: the command was not executed."),
        { safetyFunctions: true, stopped: true },
      );
      this.#logger.info({ machineId: this.machineId }, "control system stopped");
    }
  }

  /**
   * Runs a lifecycle call to a port under `lifecycleTimeoutMs`. A failure is reported
   * (`lifecycle-step-fail`, `health().lifecycle`) and, unless `swallow` is false, not thrown.
   */
  async #bounded(
    step: "store.open" | "store.close" | "driver.close",
    operation: () => Promise<void>,
    swallow = true,
    timeoutMs = this.#options.lifecycleTimeoutMs,
  ): Promise<void> {
    try {
      await withTimeout(() => operation(), {
        clock: this.#clock,
        timeoutMs: Math.max(1, timeoutMs),
        name: step,
      });
    } catch (error) {
      const reason = KilnError.is(error) ? `${error.code}: ${error.message}` : String(error);
      this.#lifecycleError = `${step}: ${reason}`;
      this.#logger.error({ error: reason }, `${step} failed`);
      void this.#bus.publish("lifecycle-step-fail", { at: this.#clock.now(), step, reason });
      if (!swallow) throw error;
    }
  }

  /** Steps of Kiln's own a stop abandoned past their budget and still running, by name. */
  readonly #abandoned = new Map<Promise<unknown>, string>();

  /** Keeps `work`, abandoned past its budget, until it settles: the next start waits for it. */
  #abandon(what: string, work: Promise<unknown>): void {
    const settled = work.then(
      () => undefined,
      () => undefined,
    );
    this.#abandoned.set(settled, what);
    void settled.then(() => this.#abandoned.delete(settled));
  }

  /**
   * Waits (at most `lifecycleTimeoutMs`) for the steps an earlier stop abandoned.
   * @throws KilnError `KILN_LIFECYCLE` (retryable) naming them (`details.steps`) when one still runs.
   */
  async #awaitAbandoned(): Promise<void> {
    if (this.#abandoned.size === 0) return;
    const all = Promise.all(this.#abandoned.keys());
    await settleWithin(this.#clock, all, this.#options.lifecycleTimeoutMs);
    if (this.#abandoned.size === 0) return;
    const steps = [...new Set(this.#abandoned.values())];
    throw new KilnError(
      "KILN_LIFECYCLE",
      `Cannot start: the last stop's ${steps.join(", ")} has not finished (waited ${this.#options.lifecycleTimeoutMs} ms); start again once it has.`,
      { retryable: true, details: { steps } },
    );
  }

  /** Same as {@link stop}, for `await using system = createControlSystem(...)`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** The current sample of `tag` (value, quality, timestamp), or undefined before its first value. */
  read(tag: string): Sample | undefined {
    if (!this.tags.has(tag)) throw new KilnError("KILN_TAG_UNKNOWN", `No tag named "${tag}".`, { details: { tag } });
    return this.cvt.get(tag);
  }

  /**
   * Writes `value` to a tag for `principal`: checked (tag exists, is writable, value fits its
   * type and range; an array tag takes an array or a typed array such as a `Float64Array`, each
   * element checked, path `value[3]`), authorized (`tag.write` on the tag), written through the device's timeout
   * and breaker, and audited with the old and new value whatever the outcome.
   * @throws `KILN_FORBIDDEN`, `KILN_TAG_UNKNOWN`, `KILN_TAG_NOT_WRITABLE`, `KILN_OUT_OF_RANGE`,
   *   `KILN_VALIDATION`, or the device's error (`KILN_TIMEOUT`, `KILN_CIRCUIT_OPEN`, `KILN_WRITE_REJECTED`...).
   */
  writeTag(
    principal: Principal,
    tag: string,
    value: TagValue | ArrayBufferView,
    options: { comment?: string } = {},
  ): Promise<void> {
    // Read once, at the call: a command queued behind another uses what it was given.
    const who = snapshotPrincipal(principal);
    // A typed array (for an array tag) is taken as the plain array it holds (ADR 0038).
    const input = snapshotInput(ArrayBuffer.isView(value) ? frozenTagValue(value) : value, "value");
    const comment = commentOf(options);
    // A write issued before the safe state (a trip, a manual stop, fault or abort, a process's
    // abort or its own failure) is never sent after it (reviews 15r M3, 15f H1).
    const epoch = this.#recipes.safeStateEpoch;
    return this.#stateCommand((turn) =>
      this.#command(
        who,
        "tag.write",
        tag,
        async (command) => {
          const checked = valueOf(input);
          checkTagWrite(this.tags, this.#lifecycle, tag, checked);
          this.#refuseIfTripped(epoch, tag);
          await command.commit();
          // Again right before it is sent, synchronously (after the commit and the tag's earlier
          // writes): a safe state begun meanwhile wins, and the state-dependent grant is judged in
          // the machine state the write lands in, not the one before the audit await (its
          // follow-up `<id>:fail`, denied: nothing sent; reviews 15-2 M2, 15f H1).
          await this.#writer.write(tag, checked, undefined, {
            beforeSend: () => {
              this.#refuseIfTripped(epoch, tag);
              this.#refuseIfNoLongerGranted(command.principal, tag);
            },
            // Answered KILN_TIMEOUT (`<id>:fail`, failed) while the device call was still out: what
            // became of it is recorded too, `<id>:landed` (allowed) or `<id>:lost` (failed), so the
            // trail is true (review 15f, LOW).
            // A call that failed after its request may have been sent is `<id>:landed` too, saying
            // so: the device may have taken it (review 15g, M1).
            onLateSettle: ({ landed, unconfirmed }) =>
              command.recordAfter(
                landed ? "landed" : "lost",
                landed
                  ? {
                      outcome: "allowed",
                      reason:
                        unconfirmed === true
                          ? `the write answered as failed may have reached the device (the driver's call failed after its request was sent): ${tag} may have been written`
                          : `the write answered KILN_TIMEOUT reached the device later: ${tag} was written`,
                    }
                  : { outcome: "failed", reason: "the write answered KILN_TIMEOUT did not reach the device" },
              ),
          });
        },
        {
          action: "tag.write",
          machineState: () => this.#machine.state,
          newValue: input.ok ? input.value : undefined,
          readOldValue: () => this.#cvt.value(tag),
          comment,
          // Refused before it acts: its entry is recorded outside the turn (adv15g MEDIUM-2).
          onDecided: turn.end,
        },
      ),
    );
  }

  /**
   * Validates `recipe` against the tag catalog and starts it as a process (`recipe.start`).
   * @returns the running process; await `process.finished` for its result.
   * @throws `KILN_VALIDATION` listing every problem with its step path (nothing runs), or for a
   *   `processId` that is not 1 to 256 characters without control characters (path `processId`),
   *   `KILN_INVALID_TRANSITION` when the machine cannot start (busy, an interlock active or its
   *   state unknown, i.e. no sample yet or bad quality: `details.holds`, recorded denied; a state no
   *   process starts from: then no process record is left), `KILN_FORBIDDEN`; `KILN_ABORTED`
   *   (`details.cancelled`, nothing ran) when a stop, fault or abort of the machine, an interlock
   *   trip or {@link ControlSystem.stop} came while the start waited for its turn or its audit entry.
   */
  startRecipe(principal: Principal, recipe: RecipeInput, options: StartRecipeOptions = {}): Promise<RecipeProcess> {
    // Read once, at the call: validation, the write-set check and the run use this copy.
    const input = snapshotInput(recipe, "recipe");
    return this.#startRecipe(principal, recipeNameOf(input), options, undefined, () => valueOf(input));
  }

  /**
   * Starts the saved recipe `name` version `version` as a process (`recipe.start`, ISA-88: a
   * master recipe is run by reference). Authorized before the store is asked, so a caller without
   * `recipe.start` on `name` learns nothing about which recipes exist; a saved version's write set
   * was authorized when it was saved (ADR 0010). **Trust boundary:** that check was made by
   * whichever host saved it, against that host's role table; this host does not check the write
   * set again. Hosts sharing a recipe store trust each other's role tables (and anyone who can
   * write the store's recipe table): hosts with differing role tables must not share one
   * (docs/concepts/security.md, "Trust boundary: the recipe store"). For hosts and northbound servers (the OPC UA
   * server's `StartRecipe` Method) that name a recipe rather than hold its definition.
   * @returns the running process; await `process.finished` for its result.
   * @throws `KILN_FORBIDDEN`; `KILN_VALIDATION` for a `name` that is not a non-empty string or a
   *   `version` that is not a positive integer (paths `name`, `version`); `KILN_NOT_FOUND` when no
   *   such version is saved; then as {@link startRecipe}. Every outcome is audited.
   */
  startSavedRecipe(
    principal: Principal,
    name: string,
    version: number,
    options: StartRecipeOptions = {},
  ): Promise<RecipeProcess> {
    const target = typeof name === "string" && name !== "" ? name : "(recipe)";
    // Recorded as the requested value until the saved version is found (a denied or not-found start says what was asked for).
    return this.#startRecipe(principal, target, options, { name, version }, async () => {
      const problems = [
        ...(typeof name === "string" && name !== "" && name.length <= 256
          ? []
          : [{ path: "name", message: "must be a saved recipe's name (1 to 256 characters)" }]),
        ...(Number.isSafeInteger(version) && version >= 1
          ? []
          : [{ path: "version", message: "must be a positive integer" }]),
      ];
      if (problems.length > 0) throw new KilnValidationError("recipe.start command", problems);
      const stored = await this.#guardedStore.recipes.get(name, version);
      if (stored === undefined) {
        throw new KilnError("KILN_NOT_FOUND", `no saved recipe "${name}" version ${version}`, {
          details: { name, version },
        });
      }
      return stored.definition as unknown as RecipeInput;
    });
  }

  /** The one start path: principal and options read once, the recipe resolved inside the audited command. */
  #startRecipe(
    principal: Principal,
    target: string,
    options: StartRecipeOptions,
    requested: { readonly name: unknown; readonly version: unknown } | undefined,
    recipeOf: () => RecipeInput | Promise<RecipeInput>,
  ): Promise<RecipeProcess> {
    const who = snapshotPrincipal(principal);
    const given = snapshotInput(
      { parameters: readSafely(() => options.parameters), processId: readSafely(() => options.processId) },
      "options",
    );
    // Cancelled by a stop, fault, abort, interlock trip or system stop issued while this start
    // waits for its turn or its entry: it then never starts a process (adversarial review 15y, M4).
    const cancel = new AbortController();
    this.#waitingStarts.add(cancel);
    const started = this.#stateCommand((turn) =>
      this.#command(
        who,
        "recipe.start",
        target,
        (command) => {
          // Cancelled while it waited for its turn: refused before its entry is committed (recorded failed).
          throwIfCancelled(cancel.signal);
          const { parameters, processId } = valueOf(given);
          // The id becomes the target of every pause, resume and abort: checked here, before anything runs.
          const processIdProblem = processId === undefined ? undefined : checkIdentifier(processId, "processId");
          if (processIdProblem !== undefined) throw new KilnValidationError("recipe.start command", [processIdProblem]);
          const start = (recipe: RecipeInput): Promise<RecipeProcess> =>
            this.#recipes.start(recipe, {
              ...(parameters === undefined ? {} : { parameters: parameters as Record<string, unknown> }),
              ...(processId === undefined ? {} : { processId: processId as string }),
              startedBy: command.principal,
              // Its store calls race the cancellation: a cancelled start rejects at once (review 15z, M5).
              signal: cancel.signal,
              // Its entry is committed by then: the wait for the last process to finish ending
              // holds no one else's command (review 15c, M1).
              outsideTurn: (wait) => turn.outside(wait, cancel.signal),
              authorize: async (request) => {
                // In the state the process starts from: where the principal could make these writes by hand.
                authorizeRecipeStart(command, request, this.#machine.state);
                // Not started while an interlock is active or its state unknown (no sample yet,
                // bad quality): refused before the commit, naming them (denied; review 15t, H3).
                // The machine's guard refuses it again if one trips meanwhile.
                const refusal = interlockRefusal(this.#alarms, this.#machine, "start", this.#freshness);
                if (refusal !== undefined) throw refusal;
                throwIfCancelled(cancel.signal);
                await command.commit();
              },
            });
          // A definition in hand starts in this tick (an abort right after the call sees the start).
          const recipe = recipeOf();
          return recipe instanceof Promise ? unlessCancelled(recipe, cancel.signal).then(start) : start(recipe);
        },
        {
          onDecided: turn.end,
          newValue:
            requested === undefined
              ? given.ok
                ? given.value.parameters
                : undefined
              : {
                  recipe: { name: auditedName(requested.name), version: requested.version },
                  ...(given.ok && given.value.parameters !== undefined ? { parameters: given.value.parameters } : {}),
                },
        },
      ),
    );
    const done = (): void => void this.#waitingStarts.delete(cancel);
    started.then(done, done);
    return started;
  }

  /**
   * Refuses a manual write issued at safe-state epoch `epoch` ({@link RecipeExecutor.safeStateEpoch})
   * once the machine has begun to be brought to its safe state since, by any path (an interlock
   * trip, a manual stop, fault or abort, a process's abort or its own failure), or while that
   * acts (`KILN_INVALID_TRANSITION`, `details.stage: "trip"`): its safe state is in force, and a
   * write decided before it must not undo it (reviews 15r M3, 15f H1). A write issued after the
   * machine reached its end state is judged by the role table in that state like any other.
   */
  #refuseIfTripped(epoch: number, tag: string): void {
    if (this.#recipes.safeStateEpoch === epoch && !this.#recipes.actingSafeState) return;
    throw new KilnError(
      "KILN_INVALID_TRANSITION",
      `safe state in force: the write of "${tag}" issued before or during a trip, a manual stop, fault or abort, or the end of a process that was aborted or failed, was not sent. Write it again if it is still wanted.`,
      { details: { machineId: this.machineId, tag, stage: "trip", tripped: true } },
    );
  }

  /**
   * Refuses (`KILN_FORBIDDEN`) a manual write whose grant no longer holds in the machine's
   * current state: checked synchronously right before the driver write, so a grant limited to
   * some states (a role that may write a tag only while processing) is never used in another
   * the machine reached while the audit entry was made durable (review 15f, H1).
   */
  #refuseIfNoLongerGranted(principal: Principal, tag: string): void {
    const context = { machineState: this.#machine.state };
    if (this.#authorizer.can(principal, "tag.write", tag, context)) return;
    throw this.#authorizer.forbidden(principal, "tag.write", tag, context);
  }

  /** Starts called and not settled yet (waiting for their turn, validating, or waiting for their entry). */
  readonly #waitingStarts = new Set<AbortController>();

  /**
   * Cancels every start called before now whose process is not active yet (queued for its turn,
   * or in the executor waiting for its entry): none of them starts a process. A stop, fault or
   * abort of the machine, an interlock trip and the system's stop call it as they act.
   * @returns how many starts were waiting.
   */
  #cancelStarts(reason: string): number {
    const waiting = this.#waitingStarts.size;
    for (const cancel of this.#waitingStarts) cancel.abort(reason);
    this.#waitingStarts.clear();
    this.#recipes.abortPending(reason);
    return waiting;
  }

  /**
   * Pauses the running process at its next step boundary (`recipe.pause`). Acts at once, even
   * while the audit store hangs: its entry follows (`audit.runWithoutDurableAudit`, ADR 0013).
   * A start in progress whose process is not running yet holds at its first step once it begins.
   * @throws `KILN_INVALID_TRANSITION` (recorded denied, nothing changes) when the process is
   *   already paused or a pause is already requested; `KILN_NOT_FOUND` with no process.
   */
  pauseProcess(principal: Principal): Promise<void> {
    return this.#command(
      snapshotPrincipal(principal),
      "recipe.pause",
      this.#activeId(),
      async (command) => {
        // A start in progress, its process not active yet: it holds at its first step once it begins.
        if (this.#recipes.pendingId !== undefined) {
          if (this.#recipes.pendingPause) {
            throw new KilnError("KILN_INVALID_TRANSITION", "The process is already pausing: nothing to do.", {
              details: { command: "pause" },
            });
          }
          await command.commit();
          if (this.#recipes.pausePending()) return;
        }
        return this.#onActive(
          command,
          (active) => active.pause(),
          (active) => {
            // A no-op is refused (recorded denied, counted when the backlog is full): only a pause
            // that changes something records an entry that may run without a durable one.
            if (active.status === "paused" || active.pauseRequested) {
              throw new KilnError(
                "KILN_INVALID_TRANSITION",
                "The process is already paused or pausing: nothing to do.",
                {
                  details: { command: "pause" },
                },
              );
            }
          },
        );
      },
      {
        subject: this.machineId,
      },
    );
  }

  /**
   * Resumes the paused process, or cancels a pause not yet taken (`recipe.resume`).
   * @throws `KILN_INVALID_TRANSITION` (recorded denied) when it is neither paused nor pausing.
   */
  resumeProcess(principal: Principal): Promise<void> {
    const who = snapshotPrincipal(principal);
    return this.#stateCommand((turn) =>
      this.#command(
        who,
        "recipe.resume",
        this.#activeId(),
        (command) =>
          this.#onActive(
            command,
            (active) => active.resume(),
            (active) => {
              if (active.status !== "paused" && !active.pauseRequested) {
                throw new KilnError("KILN_INVALID_TRANSITION", "The process is not paused: nothing to resume.", {
                  details: { command: "resume" },
                });
              }
            },
          ),
        {
          subject: this.machineId,
          onDecided: turn.end,
        },
      ),
    );
  }

  /**
   * Aborts the running process at once and writes the safe state (`recipe.abort`), without
   * waiting for the audit trail (its entry follows; `audit.runWithoutDurableAudit`). A start in
   * progress whose process is not running yet (waiting for validation or its audit entry) is
   * cancelled before its first effect and the answer comes at once: `status: "aborted"`,
   * `stepsCompleted: 0`, `persisted: false`; that `startRecipe` rejects with `KILN_ABORTED`. `reason` is
   * the operator's comment (recorded with the entry, a string of at most 1000 characters);
   * without one the process ends with "aborted by operator" and the entry has no comment. The
   * command is done (its entry, and a `:fail` naming a safe-state write that failed) once the abort's
   * effect is: the safe state written or halted and the machine at its end state; the promise
   * resolves with the process's result once its record is saved (a stop meanwhile never turns a done
   * abort into a failed one; ADR 0013, amendment fix15ab).
   * @throws `KILN_FORBIDDEN`, `KILN_VALIDATION` (a bad `reason`), `KILN_NOT_FOUND` (no process).
   */
  async abortProcess(principal: Principal, reason?: string): Promise<ProcessResult> {
    const done = await this.#command(
      snapshotPrincipal(principal),
      "recipe.abort",
      this.#activeId(),
      async (command): Promise<ProcessResult | RecipeProcess> => {
        // A start in progress, its process not active yet (the last one may still be ending):
        // cancelled before its first effect, answered at once (adversarial review 15-2, H1).
        if (this.#recipes.pendingId !== undefined) {
          await command.commit();
          const cancelled = this.#recipes.abortPending(reason ?? "aborted by operator");
          if (cancelled !== undefined) return cancelled;
        }
        return this.#onActive(
          command,
          async (active) => {
            // The command is done once its effect is (the safe state written or halted, the
            // machine at its end state): the process record's save that follows is not part of
            // it, so a slow save never makes a stop answer a done abort KILN_LIFECYCLE and record
            // it failed (adv15b M2, as the stop's own abort since fix15ab).
            const why = reason ?? "aborted by operator";
            const halted = this.#recipes.active === active ? await this.#recipes.halt(why) : undefined;
            const problems = halted?.problems ?? (await active.abort(why)).problems;
            recordSafeStateFailure(command, problems);
            return active;
          },
          (active) => {
            // Its effect is done (safe state written, machine back at rest): a second abort
            // would change nothing, so it is refused (denied), never recorded as an abort.
            if (this.#recipes.ending()?.processId === active.id) {
              throw new KilnError("KILN_INVALID_TRANSITION", "The process has already ended: nothing to abort.", {
                details: { command: "abort" },
              });
            }
          },
        );
      },
      {
        subject: this.machineId,
        ...(reason === undefined ? {} : { comment: reason }),
      },
    );
    // The caller's answer is the process's result, once its record is saved.
    return "finished" in done ? done.finished : done;
  }

  /**
   * Validates and saves an immutable recipe version (`recipe.save`).
   * @throws `KILN_VALIDATION` (every problem, by step path), `KILN_ALREADY_EXISTS` for a changed
   *   definition under an existing version, `KILN_FORBIDDEN`.
   */
  saveRecipe(principal: Principal, recipe: RecipeInput): Promise<StoredRecipe> {
    // Read once, at the call: what is authorized is what is stored (issue 15).
    const input = snapshotInput(recipe, "recipe");
    return this.#command(snapshotPrincipal(principal), "recipe.save", recipeNameOf(input), async (command) => {
      const definition = valueOf(input);
      const recipes = this.#guardedStore.recipes;
      const plan = await this.#recipes.plan(definition);
      const { name: recipeName, version } = plan.recipe;
      const writeSet = this.#recipes.writeSet(plan);
      authorizeRecipeSave(
        command,
        { recipe: { name: recipeName, version }, writeSet, saved: false },
        processStartStates(this.#machine),
      );
      const stored = storedRecipeOf(definition, this.#clock.now());
      await command.commit();
      await recipes.save(stored);
      return stored;
    });
  }

  /** Acknowledges an alarm (`alarm.acknowledge`). @throws `KILN_INVALID_TRANSITION` (recorded denied) unless it is unacknowledged. */
  acknowledgeAlarm(principal: Principal, alarmId: string, comment?: string): Promise<AlarmSnapshot> {
    return this.#alarmCommand(
      snapshotPrincipal(principal),
      "alarm.acknowledge",
      alarmId,
      () => ({ type: "acknowledge" }),
      comment,
    );
  }

  /**
   * Shelves an alarm for a time or until it next clears (`alarm.shelve`; the entry's
   * `newValue` is the options).
   * @throws `KILN_VALIDATION` for bad options, `KILN_INVALID_TRANSITION` in a state that cannot be
   *   shelved; both recorded denied, nothing changed.
   */
  shelveAlarm(
    principal: Principal,
    alarmId: string,
    shelve: AlarmShelveOptions,
    comment?: string,
  ): Promise<AlarmSnapshot> {
    const given = snapshotInput(shelve, "shelve");
    return this.#alarmCommand(
      snapshotPrincipal(principal),
      "alarm.shelve",
      alarmId,
      () => ({ type: "shelve", options: valueOf(given) }),
      comment,
      given.ok ? given.value : undefined,
    );
  }

  /** Unshelves an alarm (`alarm.unshelve`). @throws `KILN_INVALID_TRANSITION` (recorded denied) unless it is shelved. */
  unshelveAlarm(principal: Principal, alarmId: string, comment?: string): Promise<AlarmSnapshot> {
    return this.#alarmCommand(
      snapshotPrincipal(principal),
      "alarm.unshelve",
      alarmId,
      () => ({ type: "unshelve" }),
      comment,
    );
  }

  /**
   * Suppresses an alarm by design (`suppressed` true), or lifts that suppression (false)
   * (`alarm.suppress`; the entry's `newValue` is `suppressed`).
   * @throws `KILN_VALIDATION` when `suppressed` is not a boolean, `KILN_INVALID_TRANSITION`
   *   (already so); both recorded denied.
   */
  suppressAlarm(principal: Principal, alarmId: string, suppressed: boolean, comment?: string): Promise<AlarmSnapshot> {
    return this.#alarmCommand(
      snapshotPrincipal(principal),
      "alarm.suppress",
      alarmId,
      () => (requireBoolean(suppressed, "suppressed") ? { type: "suppress" } : { type: "unsuppress" }),
      comment,
      suppressed,
    );
  }

  /**
   * Takes an alarm out of service (`inService` false), or returns it (true)
   * (`alarm.out-of-service`; the entry's `newValue` is `inService`).
   * @throws `KILN_VALIDATION` when `inService` is not a boolean, `KILN_INVALID_TRANSITION`
   *   (already so); both recorded denied.
   */
  setAlarmInService(
    principal: Principal,
    alarmId: string,
    inService: boolean,
    comment?: string,
  ): Promise<AlarmSnapshot> {
    return this.#alarmCommand(
      snapshotPrincipal(principal),
      "alarm.out-of-service",
      alarmId,
      () => (requireBoolean(inService, "inService") ? { type: "return-to-service" } : { type: "remove-from-service" }),
      comment,
      inService,
    );
  }

  /**
   * Sends a command to the machine's state machine (`machine.mode`; maintenance commands need
   * `machine.maintenance`). Recipes drive the machine themselves; this is for manual modes, and
   * it never lets the machine state and a running process disagree (ADR 0042): while a process
   * runs, the commands that stop the machine (Kiln `stop` and `fault`, PackML `stop` and `abort`)
   * abort the process (its safe state written) and the machine then follows it (to `idle` or
   * `stopped`; faulted to `error` or `aborted`); the entry records `newValue: { command, aborts:
   * processId }`. Those commands are safety functions: they act at once even while the audit
   * store is down or frozen (their entry follows, as `recipe.abort`'s does), never waiting behind
   * a start or a write waiting for its entry, and they cancel every start called before them
   * whose process is not running yet: it never begins (`newValue: { command, cancelsStarts }`
   * when only such a start waits, the command then going to the machine as it would with none
   * waiting; ADR 0042, amendments 15y and 15z). A fault or abort during a stop escalates it (the
   * machine ends faulted). They answer once their effect is done: the safe state written and the
   * machine at its end state, not after the process record's final save (with a journal, once
   * their entry is journaled). **Their answer says the command acted, not that the plant is
   * safe** (review 15m, LOW): it resolves with the end state (`error` for a Kiln `fault`) even
   * when a safe-state write failed (the device refused it, it was given up at its timeout, or the
   * per-tag bound refused it `KILN_BUFFER_FULL`): rejecting would say the stop did not act, and it
   * did. Such a failure is told, never hidden: in the command's `<id>:fail` audit entry (outcome
   * `failed`, reason `safe-state <tag>: <code>: <message>`, with any other problem met, such as
   * a refused pulse `off`), and in `health().problems` (`safe state not confirmed on <tag>: last
   * write failed <code> at <time> ...`) until the device confirms a value set since: a later write
   * of the tag landed, or a good read-back of the safe value newer than the failure. A reset does
   * not clear it (it is taken; its entry lists the tags, `newValue.safeStateUnconfirmed`; ADR 0042,
   * fix15s). A host that must know
   * whether the safe state was written checks `health()` once the command answers; with a process,
   * `abortProcess` answers its problems (`ProcessResult.problems`). A stop, fault or abort asked for
   * again writes the safe state again, each write with its own answer (ADR 0042, 15n), except
   * that one asked for while the previous write of a tag's safe value is still waiting for the
   * device's answer joins that write (answered by it; `<id>:joined` audited; fix15s). Every other command is refused while a process runs, and without one a command
   * that would enter a process state (`start`, `started`, `resume`; PackML `start`,
   * `stateComplete` from `starting`, `unhold`...) is refused: a process starts with
   * {@link ControlSystem.startRecipe}.
   * @returns the machine's state afterwards.
   * A trip is not reset while its condition persists: `start`, Kiln `reset` and `exitMaintenance`
   * and PackML `clear` and `reset` are refused while an interlock alarm is active (ADR 0042, 15u) or its state is
   * unknown: no sample yet, or a bad current sample (`details.holds`; ADR 0042, 15t).
   * @throws `KILN_INVALID_TRANSITION` (nothing changes; `details.stage: "process"` for the rules
   *   above, naming the running process to the caller, who holds `machine.mode`; `details.stage:
   *   "guard"` with `details.interlocks`, the active interlock alarms' ids, for an interlocked
   *   command; recorded denied), `KILN_FORBIDDEN`.
   */
  sendMachineCommand(principal: Principal, command: string): Promise<string> {
    const who = snapshotPrincipal(principal);
    // A string is read once by nature; anything else is refused (recorded denied) below.
    const name = typeof command === "string" ? command : undefined;
    const permission: Permission =
      name !== undefined && /maintenance/i.test(name) ? "machine.maintenance" : "machine.mode";
    // A stop button stops the plant while the audit store is down (ADR 0042): its entry follows.
    const safetyFunction = name !== undefined && stopsMachine(this.#machine.model.name, name);
    const run = (turn?: StateTurnControl): Promise<string> =>
      this.#command(
        who,
        permission,
        this.machineId,
        async (context) => {
          if (name === undefined) {
            throw new KilnValidationError("machine command", [{ path: "command", message: "must be a string" }]);
          }
          // Only a process that exists: a start still waiting has none yet (review 15z, M3).
          const processId = this.#recipes.active?.id;
          const { model, state } = this.#machine;
          // The machine and the running process never disagree (ADR 0042): refused before the commit (denied).
          const decision = manualMachineCommand(name, {
            machineId: this.machineId,
            model: model.name,
            state,
            accepts: (model.transitions as Readonly<Record<string, Readonly<Record<string, string>>>>)[state] ?? {},
            processId,
            // A stop also reaches a start still waiting for its turn (review 15y, M4).
            startWaiting: safetyFunction && this.#waitingStarts.size > 0,
          });
          const reason = `machine command "${name}" by ${context.principal.id}`;
          if (decision.kind !== "send") {
            const waiting = this.#waitingStarts.size;
            // Fenced from the decision, as a trip (review 15d, H1/H2): no start begins and no
            // manual write issued before or during it lands until the machine is at its end state.
            return this.#safetyFence(reason, async () => {
              context.recordRequest({
                command: auditedName(name),
                ...(decision.kind === "abort" ? { aborts: processId } : {}),
                ...(waiting > 0 ? { cancelsStarts: waiting } : {}),
              });
              await context.commit();
              // Answers once the effect is done (safe state written, machine at its end state), not
              // after the process record's final save (review 15z, M4).
              const halted = await this.#recipes.halt(reason, { fault: decision.fault });
              if (halted !== undefined) recordSafeStateFailure(context, halted.problems);
              // No process: the command then goes to the machine as it would with no start waiting
              // (the table decides; review 15z, M3). Refused there, it answers the state: the
              // waiting starts were cancelled, and that is what its entry says.
              if (halted === undefined && decision.kind === "cancel" && this.#machine.can(name)) {
                return this.#stopWithoutProcess(name, context);
              }
              // Refused by the table while a safe-state write failed: written again (review 15p, H1).
              if (halted === undefined && this.#redrivesSafeState()) {
                return this.#reapplySafeState(context);
              }
              return this.#machine.state;
            });
          }
          // While a trip writes the safe state the machine is about to be faulted: a command
          // other than a safety function (maintenance, reset) would slip in before the fault and
          // clear the trip without a reset. Refused before the commit (denied; review 15w, M6),
          // and again after it: a trip that began while the entry was being written wins (review 15v).
          const refuseWhileTripping = (): void => {
            if (safetyFunction || !this.#recipes.tripping) return;
            throw new KilnError(
              "KILN_INVALID_TRANSITION",
              `Machine "${this.machineId}" is tripping (safe state being written): command "${name}" was not sent. Try again once the machine is faulted.`,
              { details: { machineId: this.machineId, command: name, stage: "process", tripping: true } },
            );
          };
          refuseWhileTripping();
          // A trip is not reset (nor the machine started) while an interlock's condition persists
          // (ISA-84 / IEC 61511): refused before the commit, naming the interlocks (recorded
          // denied; review 15u). The machine's guard refuses it again if one trips meanwhile.
          const refusal = this.#machine.can(name)
            ? interlockRefusal(this.#alarms, this.#machine, name, this.#freshness)
            : undefined;
          if (refusal !== undefined) throw refusal;
          // A stop, fault or abort the table refuses (the machine is already faulted, stopped or
          // aborted) while a safe-state write failed and is still named by health() writes the
          // safe state again and answers the state: asking again is how an operator re-drives it
          // once the device is back (state-machines.md; review 15p, H1). Audited allowed, with
          // its own :fail when it fails again. Without a failure it is refused as before.
          if (safetyFunction && !this.#machine.can(name) && this.#redrivesSafeState()) {
            return this.#safetyFence(reason, async () => {
              // It names what it writes, as a trip does (adversarial review adv15r, L2).
              context.recordRequest({
                command: auditedName(name),
                safeStateAgain: true,
                safeState: this.#options.machine.safeState,
              });
              await context.commit();
              return this.#reapplySafeState(context);
            });
          }
          // A stop, fault or abort with no process is fenced from here, as a trip (review 15d, H1/H2).
          if (safetyFunction && this.#machine.can(name)) {
            return this.#safetyFence(reason, async () => {
              await context.commit();
              return this.#machine.can(name) ? this.#stopWithoutProcess(name, context) : this.#machine.send(name);
            });
          }
          // A reset of a fault is taken while a safe-state write is unconfirmed (operators must be
          // able to reset), but does not clear it: its entry names the tags, and health() keeps
          // naming them until the device confirms a value set since (fix15s, ADR 0042).
          const unconfirmed =
            this.#machine.can(name) && isFaultReset(this.#machine.state, name) ? this.#unconfirmedTags() : [];
          if (unconfirmed.length > 0)
            context.recordRequest({ command: auditedName(name), safeStateUnconfirmed: unconfirmed });
          // An impossible transition is refused before the entry is committed (recorded denied).
          if (this.#machine.can(name)) await context.commit();
          refuseWhileTripping();
          return this.#machine.send(name);
        },
        {
          action: `machine.${name ?? "(invalid)"}`,
          readOldValue: () => this.#machine.state,
          newValue: auditedName(name) ?? "(invalid)",
          safetyFunction,
          ...(turn === undefined ? {} : { onDecided: turn.end }),
        },
      );
    // A safety function acts at once: it never waits behind a start (or a write) waiting for its
    // audit entry (adversarial review 15y, M4). Every other command takes its turn.
    return safetyFunction ? run() : this.#stateCommand(run);
  }

  /**
   * A manual stop, fault or abort with no process: the safe state is written first (as a trip
   * with no process writes it; a failed write is named by health()), then the command is sent,
   * and an acting state it enters (PackML `stopping`, `aborting`) completes to its end state
   * (`stopped`, `aborted`): nothing else would complete it (review 15c, LOW).
   */
  async #stopWithoutProcess(name: string, command: Pick<CommandContext, "recordAfter">): Promise<string> {
    await this.#writeSafeStateFor(command);
    const state = await this.#machine.send(name);
    const acting = this.#machine.model.name === "packml" && (state === "stopping" || state === "aborting");
    return acting && this.#machine.can("stateComplete") ? this.#machine.send("stateComplete") : state;
  }

  /**
   * Whether a stop, fault or abort the table refuses writes the safe state again (review 15p, H1):
   * only while a safe-state write failed (not a late step write or pulse-off of another tag, which
   * the safe state does not repair), and never in `maintenance`, where technicians work on the
   * machine and outputs move only by their writes (review 15q, M1, M2).
   */
  #redrivesSafeState(): boolean {
    return (
      this.#machine.state !== "maintenance" &&
      this.#recipes.safeStateFailures().some((failure) => (failure.stage ?? "safe-state") === "safe-state")
    );
  }

  /** The tags of the failed writes health() names (safe state, pulse off, step write), each once. */
  #unconfirmedTags(): string[] {
    return [...new Set(this.#recipes.safeStateFailures().map((failure) => failure.tag))];
  }

  /**
   * Writes the safe state again with no transition (the machine is already at a state the table
   * does not leave on a stop, fault or abort) and answers the machine's state; a write that fails
   * again is the command's `:fail` and stays named by health() (review 15p, H1).
   */
  async #reapplySafeState(command: Pick<CommandContext, "recordAfter">): Promise<string> {
    await this.#writeSafeStateFor(command);
    return this.#machine.state;
  }

  /**
   * Writes the safe state for a manual stop, fault or abort with no process. A tag whose safe
   * write of the same value is still waiting for the device's answer (an earlier press's) is
   * joined, not written again (the writer's rule, fix15s; review 15q): the command's own
   * `<id>:joined` entry says so (`allowed`, naming the tags), and its `:fail` names that write's
   * failure when it fails. A press after that write was answered writes again.
   */
  async #writeSafeStateFor(command: Pick<CommandContext, "recordAfter">): Promise<void> {
    const report = { joined: [] as string[] };
    const problems = await this.#recipes.applySafeState(report);
    if (report.joined.length > 0) {
      command.recordAfter("joined", {
        outcome: "allowed",
        reason: `joined the safe-state write of ${report.joined.join(", ")} still waiting for the device's answer (no write of its own sent; answered by that write)`,
      });
    }
    recordSafeStateFailure(command, problems);
  }

  /** What the device last read back for `tag` (the current value table), in words for health(). */
  #readBackText(tag: string): string {
    const sample = this.#cvt.get(tag);
    if (sample === undefined) return "no read-back from the device yet";
    return `the device last read back ${auditedText(String(sample.value), SHOWN_VALUE_MAX)} (${sample.quality.severity}) at ${new Date(sample.timestamp).toISOString()}`;
  }

  /** Driver link, pipeline, the breaker of every port, and alarms in one summary. */
  health(): ControlSystemHealth {
    const acquisition = this.#acquisition.health();
    const logging = this.#sampleLogger.health();
    const ports = portHealth(this.#guardedDriver, this.#guardedStore);
    const alarms = this.#alarms.list();
    const audit = this.#commands.status();
    const problems: string[] = [];
    if (this.#lifecycle.state === "running") {
      if (acquisition.link !== "online")
        problems.push(`PLC ${acquisition.driver} offline: ${acquisition.lastError ?? "reconnecting"}`);
      const step = acquisition.lastWallClockStep;
      if (step?.recent) {
        problems.push(
          `host wall clock stepped ${step.stepMs > 0 ? "forward" : "back"} by ${Math.round(Math.abs(step.stepMs))} ms`,
        );
      }
      for (const endpoint of acquisition.endpoints ?? []) {
        if (endpoint.state !== "offline") continue;
        const next =
          endpoint.nextProbeAt === undefined ? "" : `, next probe at ${new Date(endpoint.nextProbeAt).toISOString()}`;
        problems.push(
          `PLC ${acquisition.driver} ${endpoint.endpoint} offline: ${endpoint.lastError ?? "no answer"}${next}`,
        );
      }
      for (const [port, breaker] of Object.entries(ports)) {
        if (port !== "driver" && breaker.state.state !== "closed") {
          problems.push(`${breaker.name} breaker ${breaker.state.state}`);
        }
      }
      // A store that opens at once after a start is not a problem; one that failed or takes over a second is.
      if (
        this.#storeState === "opening" &&
        (this.#storeError !== undefined || monotonicNow(this.#clock) - this.#openingSince >= STORE_OPEN_GRACE_MS)
      ) {
        problems.push(`store unavailable, opening in the background: ${this.#storeError ?? "retrying"}`);
      }
      if (logging.mode === "spooling" && logging.spooled > 0)
        problems.push(`store behind: ${logging.spooled} samples spooled`);
      if (logging.mode === "replaying")
        problems.push(`store catching up: ${logging.spooled} spooled samples to replay`);
      if (logging.samplesDropped > 0) problems.push(`${logging.samplesDropped} samples dropped`);
      const ahead = this.#retentionHealth().retention?.aheadOfClockMs;
      if (ahead !== undefined) {
        problems.push(
          `store retention: a sample is stamped ${Math.round(ahead / 1000)} s ahead of the clock; the memory store's window follows it and other tags keep only their value in force`,
        );
      }
      if (logging.samplesAbandoned > 0) {
        problems.push(
          `${logging.samplesAbandoned} samples of unknown outcome (given up at a stop while being written)`,
        );
      }
      if (audit.blockedBy !== undefined) {
        problems.push(
          `audit trail held by entry ${audit.blockedBy.id} (${audit.backlog} waiting; failed ${audit.blockedBy.failures} time(s): ${audit.blockedBy.error})`,
        );
      } else if (audit.storeFailingSince !== undefined && audit.backlog > 0) {
        // What is true: the store is not answering; where the entries are meanwhile (review 15j).
        // Counted from the last entry it took (else from the oldest waiting), not from the first failure (issue 15).
        const now = this.#clock.now();
        const since = audit.storeTookAt ?? Math.min(now - (audit.waitingMs ?? 0), audit.storeFailingSince);
        const seconds = Math.max(0, Math.round((now - since) / 1000));
        problems.push(
          `audit backlog: ${audit.backlog} entries waiting; the audit store has not taken an entry for ${seconds} s ` +
            `(retried in the background; entries ${audit.durableBacklog ? "journaled" : "held in memory only"})`,
        );
      } else if (audit.backlog > 0 && (audit.reportedWaiting > 0 || (audit.waitingMs ?? 0) >= AUDIT_WAIT_GRACE_MS)) {
        // Not "ok" while entries wait: the trail is incomplete until the backlog drains (review 15c).
        // A journaled entry written in the background within the grace is not a problem (review 15j).
        const waiting = audit.waitingMs ?? 0;
        const now = this.#clock.now();
        // A store that hangs (frozen, no answer and so no failure yet) is not "taking them" (issue 15).
        if (waiting >= AUDIT_WAIT_GRACE_MS && (audit.storeTookAt === undefined || audit.storeTookAt <= now - waiting)) {
          problems.push(
            `audit backlog: ${audit.backlog} entries waiting ${Math.round(waiting / 1000)} s for the store ` +
              `(no entry stored since the oldest came; entries ${audit.durableBacklog ? "journaled" : "held in memory only"})`,
          );
        } else {
          problems.push(`audit backlog: ${audit.backlog} entries waiting to be stored (the store is taking them)`);
        }
      }
      if (audit.queued > 0 && (audit.queuedWaitingMs ?? 0) >= DENIED_QUEUE_GRACE_MS) {
        // Refusals wait for the store outside every command's turn; named, never silent (fix15j).
        problems.push(
          `audit queue: ${audit.queued} refused commands' entries waiting to be recorded, the oldest for ` +
            `${Math.round((audit.queuedWaitingMs ?? 0) / 1000)} s (at most 4 recorded at a time; the audit store answers slowly)`,
        );
      }
    }
    // Reported whatever the state: a stop is when they happen.
    problems.push(...audit.journalProblems);
    // An interlock whose state is unknown holds every start and reset (fail-safe, review 15t).
    for (const hold of this.#lifecycle.state === "running" ? interlockHolds(this.#alarms, this.#freshness) : []) {
      if (hold.reason === "active") continue;
      problems.push(`interlock ${hold.id} not permissive (${hold.reason}): starts and resets are refused`);
    }
    // A write given up at its timeout may still land and undo a later write (the safe state):
    // named while its driver call is out (review 15f, H2).
    // One line per call up to LATE_CALL_LINES, then a summary (review 15g, L2).
    const lateCalls = this.#lateWatcher?.lateCalls() ?? [];
    for (const late of lateCalls.slice(0, LATE_CALL_LINES)) {
      problems.push(
        `write of ${late.tag} given up at ${new Date(late.since).toISOString()} is still out at the device and may yet land (the tag's latest-issued value is then written again)`,
      );
    }
    if (lateCalls.length > LATE_CALL_LINES) {
      const tags = new Set(lateCalls.slice(LATE_CALL_LINES).map((late) => late.tag));
      problems.push(
        `and ${lateCalls.length - LATE_CALL_LINES} more given-up writes still out at the device (${tags.size} tags)`,
      );
    }
    // Until a later write of the tag is confirmed: a reset does not clear it (review 15g, H3).
    for (const unresolved of this.#lateWatcher?.unresolvedTags() ?? []) {
      const at = new Date(unresolved.since).toISOString();
      // Says what was tried: a re-write that failed, or none yet (the safe state's write is to come; review 15j, M1).
      problems.push(
        unresolved.tried
          ? `a write of ${unresolved.tag} landed late and writing the tag's latest value again failed at ${at}: ${unresolved.reason} (the tag may hold a stale value; cleared once a later write of the tag is confirmed)`
          : `a write of ${unresolved.tag} landed late at ${at} and nothing was written again yet: ${unresolved.reason} (cleared once a later write of the tag is confirmed)`,
      );
    }
    for (const [tag, late] of this.#landedLate) {
      if (this.#lateWatcher?.confirmedAfter(tag, late.sequence) === true) this.#landedLate.delete(tag);
      else problems.push(late.text);
    }
    // The machine may not be safe: named until the device confirms a value set since (a later
    // write of the tag landed, or a good read-back of the value not written), never cleared by a
    // reset (adversarial review 15u, fix15s). Each line says what the device last read back.
    for (const failure of this.#recipes.safeStateFailures()) {
      const at = new Date(failure.at).toISOString();
      const device = this.#readBackText(failure.tag);
      problems.push(
        failure.stage === "pulse-off"
          ? `pulse off write of ${failure.tag} failed at ${at}: ${failure.reason} (the tag may still hold its pulse's on value; ${device}; cleared once a later write of the tag lands, not by a reset)`
          : failure.stage === "step-write"
            ? `step write of ${failure.tag} in flight at the process's abort failed at ${at}: ${failure.reason} (the tag may not hold the value the process wrote last; ${device}; cleared once a later write of the tag lands, not by a reset)`
            : `safe state not confirmed on ${failure.tag}: last write failed ${failure.code ?? "(error)"} at ${at} ` +
              `(safe-state write of ${failure.tag} failed: ${failure.reason}; ${device}; cleared once a write of the tag lands or the device reads back ` +
              `${failure.value === undefined ? "its safe value" : auditedText(String(failure.value), SHOWN_VALUE_MAX)}, not by a reset)`,
      );
    }
    if (this.#restartedFrom !== undefined) {
      const { state, at } = this.#restartedFrom;
      problems.push(
        `machine was "${state}" when last recorded (${new Date(at).toISOString()}) and restarted "${this.#machine.state}": a restart does not restore a trip or a running process; check the plant, then fault the machine to latch a trip again, or act on it (ADR 0042)`,
      );
    }
    // The machine is back at its ready state, but a start waits for these (ADR 0042, 15r).
    const ending = this.#recipes.ending();
    if (ending !== undefined && ending.lateWrites.length > 0) {
      problems.push(
        `process ${ending.processId} is ending: its write of ${ending.lateWrites.join(", ")} sent before its abort has not settled (a start waits for it, at most the driver's write timeout)`,
      );
    }
    if (audit.overflow > 0) {
      problems.push(
        `${audit.overflow} denied attempt(s) counted while the audit backlog was full or its journal failed, not yet recorded in an audit.overflow entry`,
      );
    }
    if (audit.overflowMemoryOnly > 0) {
      problems.push(
        `${audit.overflowMemoryOnly} of them counted only in memory (the audit reserve could not be written, and the journal failed too or its room for their summaries beyond the backlog's bound is used up; a crash would lose them): their refused commands wait until it is durable, at most 10 s`,
      );
    }
    if (audit.coalesced > 0) {
      problems.push(
        `${audit.coalesced} audit entr${audit.coalesced === 1 ? "y" : "ies"} coalesced by kind while the audit backlog was full ` +
          `(held as counts in memory, recorded as audit.coalesce summary entries once the backlog has room)`,
      );
    }
    if (audit.skipped > 0) {
      // Not in the trail: an operator must look at them (adversarial review 15w).
      const kept = audit.skipped - audit.skippedNotKept;
      problems.push(
        `${audit.skipped} audit entr${audit.skipped === 1 ? "y" : "ies"} skipped unstored (refused for good by the audit store, or set aside), not in the audit trail: ` +
          `${kept} kept in the audit journal's .set-aside file, ${audit.skippedNotKept} only in the log and audit-entry-skip events`,
      );
    }
    if (audit.droppedAtStop > 0) {
      problems.push(
        `${audit.droppedAtStop} audit entr${audit.droppedAtStop === 1 ? "y was" : "ies were"} dropped at the last stop, not in the audit trail: held only in memory when the stop closed the audit writer, or of an action that acted during the stop and reached the audit writer after it closed (reported by audit-entry-drop)`,
      );
    }
    if (audit.droppedWhileStopped > 0) {
      problems.push(
        `${audit.droppedWhileStopped} audit entr${audit.droppedWhileStopped === 1 ? "y" : "ies"} of commands issued while the control system was stopped could not be recorded (the audit store and journal were closed; reported by audit-entry-drop)`,
      );
    }
    if (audit.refusalsDropped > 0) {
      problems.push(
        `${audit.refusalsDropped} refusal(s) of offered audit intents dropped unstored: the trail may show those commands allowed; they did not run`,
      );
    }
    const events = this.#recorder.health();
    if (events.notRecorded > 0) {
      problems.push(
        `${events.notRecorded} machine state change(s) not stored in the event store (${events.lastError ?? "append failed"}): the stored event history has a gap`,
      );
    }
    if (this.#lifecycle.state === "running") {
      if (logging.spoolCorruptRecords > 0) {
        problems.push(
          `${logging.spoolCorruptRecords} corrupt spool records skipped: their samples are lost (how many is unknown)`,
        );
      }
    }
    return {
      status: this.#lifecycle.state !== "running" ? "stopped" : problems.length === 0 ? "ok" : "degraded",
      machineId: this.machineId,
      machineState: this.#machine.state,
      acquisition,
      logging,
      store: {
        state: this.#storeState,
        ...(this.#storeError === undefined ? {} : { lastError: this.#storeError }),
        ...this.#retentionHealth(),
      },
      lifecycle: this.#lifecycleError === undefined ? {} : { lastError: this.#lifecycleError },
      ports,
      alarms: {
        active: alarms.filter((alarm) => alarm.active).length,
        unacknowledged: alarms.filter(
          (alarm) => alarm.state.name === "unacknowledged" || alarm.state.name === "rtn-unacknowledged",
        ).length,
        historyFailures: this.#alarms.stats.historyFailures,
      },
      events,
      audit,
      problems,
    };
  }

  /**
   * Runs `task` after every earlier state command has settled: manual writes (checked against
   * the machine state) and the commands that move the machine out of a state (recipe start,
   * resume, machine commands) take turns, so a write authorized in `idle` cannot reach the
   * driver after a process started. Abort and pause do not wait: they must act at once. A task
   * may give its turn up for a wait that needs none (`turn.outside`) and take a new one after it.
   */
  #stateCommand<TResult>(task: (turn: StateTurnControl) => Promise<TResult>): Promise<TResult> {
    let turn = this.#enterTurn();
    const released = this.#releaseTurns.released;
    const control: StateTurnControl = {
      // A wait that needs no turn (a start waiting for the last process to finish ending) lets
      // the commands behind it go first, then takes a new turn (review 15c, M1).
      end: () => turn.end(),
      outside: async (wait, signal) => {
        turn.end();
        const result = await wait();
        turn = this.#enterTurn();
        await unlessCancelled(turn.ready, signal);
        return result;
      },
    };
    // A stop releases the queue (fix15ab): a command still waiting for its turn then goes at
    // once, refused by the closed gate before it acts, never left pending past the stop.
    return this.#track(
      Promise.race([turn.ready, released])
        .then(() => task(control))
        .finally(() => turn.end()),
    );
  }

  /** Joins the queue of state commands: `ready` once every earlier turn has ended; `end()` ends this one (once, never before it began). */
  #enterTurn(): { readonly ready: Promise<void>; end(): void } {
    const previous = this.#stateTurn;
    let endTurn!: () => void;
    this.#stateTurn = new Promise<void>((resolve) => (endTurn = resolve));
    let ended = false;
    return {
      ready: previous,
      end: () => {
        if (ended) return;
        ended = true;
        void previous.then(endTurn);
      },
    };
  }

  #stateTurn: Promise<void> = Promise.resolve();

  /** Every command not yet settled (settles, never rejects). */
  readonly #inFlight = new Set<Promise<void>>();

  /** Resolved by a stop's {@link #releaseInFlight}: state commands still queued for their turn take it at once. */
  #releaseTurns = releaseSignal();

  /**
   * The stop's one place for what is still in flight (fix15ab): state commands still queued for
   * their turn take it now (the closed gate refuses them before they act, their refusal recorded);
   * then every command and system action the runner has not answered is answered and hands the
   * entry it owes to the writer ({@link AuditedCommandRunner.releaseInFlight}); their callers
   * settle before this resolves (at most {@link STOP_CLOSE_MARGIN_MS} / 4, within the margin).
   */
  async #releaseInFlight(): Promise<void> {
    if (this.#inFlight.size === 0 && this.#commands.inFlight === 0) return;
    this.#releaseTurns.release();
    // The queued commands enter the runner on the next turns of the event loop.
    await new Promise<void>((resolve) => setImmediate(resolve));
    const released = this.#commands.releaseInFlight(
      new KilnError(
        "KILN_LIFECYCLE",
        "The control system stopped while the command was in flight: it was answered before it finished, so what became of it is unknown (a device or store call it made may still complete).",
        { details: { released: true } },
      ),
    );
    if (released > 0)
      this.#logger.error(
        { released },
        "commands still in flight at stop were answered KILN_LIFECYCLE and their entries recorded",
      );
    const settled = await settleWithin(
      this.#clock,
      this.#settled(),
      Math.min(this.#options.lifecycleTimeoutMs, STOP_CLOSE_MARGIN_MS / 4),
    );
    if (settled === "timeout")
      this.#logger.error({ inFlight: this.#inFlight.size }, "commands still unanswered after the stop released them");
  }

  #track<TResult>(command: Promise<TResult>): Promise<TResult> {
    const settled = command.then(
      () => undefined,
      () => undefined,
    );
    this.#inFlight.add(settled);
    void settled.then(() => this.#inFlight.delete(settled));
    return command;
  }

  /** Resolves once no command is in flight (also those issued while waiting). */
  async #settled(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight);
  }

  #command<TResult>(
    principal: PrincipalSnapshot,
    permission: Permission,
    target: string,
    execute: (command: CommandContext) => TResult | Promise<TResult>,
    extras: {
      action?: string;
      subject?: string;
      machineState?: string | (() => string);
      newValue?: unknown;
      readOldValue?: () => unknown;
      comment?: string | undefined;
      safetyFunction?: boolean;
      onDecided?: () => void;
    } = {},
  ): Promise<TResult> {
    // Each command commits its audit entry itself, after its checks and before its first effect.
    return this.#track(
      this.#commands.run({
        principal,
        permission,
        target,
        execute,
        commit: "in-execute",
        ...withoutUndefined(extras),
      }),
    );
  }

  #alarmCommand(
    principal: PrincipalSnapshot,
    permission: Permission,
    alarmId: string,
    request: () => AlarmCommand,
    comment: string | undefined,
    newValue?: unknown,
  ): Promise<AlarmSnapshot> {
    return this.#command(
      principal,
      permission,
      alarmId,
      async (command) => {
        // Every side-effect-free check (alarm, options, transition) before the entry is
        // committed, so a refusal is recorded denied; then the change.
        const apply = this.#alarms.prepare(alarmId, request(), command.principal.id);
        await command.commit();
        return apply();
      },
      {
        readOldValue: () => this.#alarms.list().find((alarm) => alarm.id === alarmId)?.state.name ?? null,
        // What was requested (CR 2.8): the suppression or service flag, the shelve options.
        newValue,
        ...(comment === undefined ? {} : { comment }),
      },
    );
  }

  #active(): RecipeProcess {
    const active = this.#recipes.active;
    if (!active) throw new KilnError("KILN_NOT_FOUND", `No process is running on ${this.machineId}.`);
    return active;
  }

  /**
   * Runs `action` on the active process once the entry is committed; no process: `KILN_NOT_FOUND`,
   * nothing committed. `check` refuses before the commit (a no-op: `KILN_INVALID_TRANSITION`, denied).
   */
  async #onActive<TResult>(
    command: CommandContext,
    action: (active: RecipeProcess) => TResult | Promise<TResult>,
    check?: (active: RecipeProcess) => void,
  ): Promise<TResult> {
    const active = this.#active();
    check?.(active);
    await command.commit();
    return action(active);
  }

  /**
   * The target of pause, resume and abort: the active process's id, which the system holds (not
   * caller input), fitted to the target rule so a safety command is never refused for its form.
   */
  #activeId(): string {
    // A start waiting for the last process to finish ending is the target, not that process.
    const id = this.#recipes.pendingId ?? this.#recipes.active?.id;
    return id === undefined ? "(no process)" : fittedName(id);
  }

  #wire(): void {
    this.#interlocksByTag = new Map();
    for (const alarm of this.#alarms.list()) {
      if (!alarm.interlock) continue;
      this.#interlocksByTag.set(alarm.tag, [...(this.#interlocksByTag.get(alarm.tag) ?? []), alarm.id]);
    }
    // Evictions of the in-memory default store, as `store-evict` events while the system runs; the observer goes
    // at stop, so systems built one after another on one store do not pile observers up (adv16a F8).
    const rawStore = this.unchecked.store;
    if (rawStore instanceof MemoryStore) {
      const clock = this.#clock;
      this.#disposers.push(
        rawStore.observeEvictions(
          (eviction) => void this.#bus.publish("store-evict", { at: clock.now(), ...eviction }),
        ),
      );
    }
    this.#disposers.push(
      this.#cvt.observeAll((change) => {
        this.#alarms.observe(change.sample);
        this.#freshness.observe(change);
        // A good read-back of a value a failed write did not set clears its line (fix15s).
        this.#recipes.readBack(change);
        this.#tripIfUntrusted(change.sample);
        const logged = this.#filter.select(change.sample);
        if (logged) this.#sampleLogger.append(logged);
      }),
      this.#bus.tap((type, event) => this.#recorder.record(type, event)),
      // The reset of a fault (Kiln `reset` from `error`, PackML `clear` from `aborted`) is the
      // operator taking over: the late landings named by health() (the device took a known value)
      // are forgotten. A failed safe-state write is not (fix15s): the device may still hold the
      // old, unsafe value; only evidence from the device clears it (RecipeExecutor.safeStateFailures).
      this.#machine.onTransition((transition) => {
        this.#restartedFrom = undefined;
        if (isFaultReset(transition.from, transition.command)) this.#landedLate.clear();
      }),
      this.#lateWatcher?.onLateSettle((settle) => this.#onLateSettle(settle)) ?? (() => undefined),
      // A process that fails on its own is audited like every other end (review 15j, M2).
      this.#recipes.onProcessFailed((failure) => this.#onProcessFailed(failure)),
      this.#bus.on("interlock-trip", async (event) => {
        this.#logger.error({ alarmId: event.alarmId, value: event.value }, "interlock tripped");
        await this.#trip(event.alarmId, event.value, `interlock ${event.alarmId} tripped at ${String(event.value)}`);
      }),
    );
  }

  /**
   * At stop: waits for the driver calls still out and the re-asserts still queued, at most two
   * write timeouts; a given-up write still out then, or a re-assert still unsent, is recorded as
   * the system's `tag.unsettled` entry (outcome unknown: the device may yet take it, or may hold
   * an older value) and logged (reviews 15g H4, 15h H2).
   */
  async #settleDeviceCalls(budgetMs: number): Promise<void> {
    const watcher = this.#lateWatcher;
    if (watcher === undefined) return;
    // A queued re-assert waits for the late call before it (at most one write timeout), then is
    // sent (at most one more): two write timeouts bound the wait (review 15h, H2), and the stop's
    // budget (fix15z: what is still out then is recorded as unknown, as past the two timeouts).
    const left = await watcher.drain(Math.min(2 * this.#options.acquisition.timeoutMs, budgetMs));
    if (left === 0) return;
    for (const tag of watcher.queuedReasserts?.() ?? []) {
      this.#logger.error({ tag }, "a re-assert of a tag's latest value was still queued at stop");
      await this.#commands
        .runSystemAction(
          {
            action: "tag.unsettled",
            target: tag,
            reason: `a write of ${tag} that landed late left an older value, and writing the latest value again was still queued when the control system stopped: the device may hold the older value`,
          },
          () => Promise.resolve(undefined),
        )
        .catch(() => undefined);
    }
    for (const late of watcher.lateCalls()) {
      this.#logger.error({ tag: late.tag }, "a given-up write was still out at the device at stop");
      await this.#commands
        .runSystemAction(
          {
            action: "tag.unsettled",
            target: late.tag,
            reason: `a write of ${late.tag} given up at its timeout was still out at the device when the control system stopped: its outcome is unknown (the device may have taken it)`,
            newValue: late.value,
          },
          () => Promise.resolve(undefined),
        )
        .catch(() => undefined);
    }
  }

  /** The writer's watch of its given-up driver calls, when the registered writer keeps one (the default does). */
  get #lateWatcher(): WatchesLateCalls | undefined {
    const writer = this.#writer as TagWriter & Partial<WatchesLateCalls>;
    return writer.lateCalls !== undefined && writer.onLateSettle !== undefined
      ? (writer as TagWriter & WatchesLateCalls)
      : undefined;
  }

  /** Process writes that landed late after the machine left the process, by tag (until reset; review 15g, M3). */
  readonly #landedLate = new Map<string, { readonly text: string; readonly sequence: number }>();

  /**
   * A write given up at its timeout settled at the device later (review 15f, H2): published
   * (`write-late-settle`), and when it landed after a later write to its tag, recorded as the
   * system's `tag.reassert` entry (the later value written again, or why that failed: then named
   * by health() until reset).
   */
  #onLateSettle(settle: LateDeviceSettle): void {
    const reassertFailed =
      settle.reassertError === undefined
        ? undefined
        : KilnError.is(settle.reassertError)
          ? `${settle.reassertError.code}: ${settle.reassertError.message}`
          : String(settle.reassertError);
    this.#logger.warn({ tag: settle.tag, landed: settle.landed, reassertFailed }, "a given-up write settled late");
    void this.#bus.publish("write-late-settle", {
      at: this.#clock.now(),
      aggregateId: this.machineId,
      tag: settle.tag,
      value: settle.value,
      landed: settle.landed,
      ...(settle.reasserted === undefined ? {} : { reasserted: settle.reasserted }),
      ...(reassertFailed === undefined ? {} : { reassertFailed }),
    });
    if (settle.landed && settle.reasserted === undefined && settle.origin !== undefined) {
      // A process's write that landed after it was given up: audited as the system's entry naming
      // the process and its principal, and named by health() until reset (review 15g, M3).
      const { processId, principal } = settle.origin;
      const by = `process ${processId}${principal === undefined ? "" : ` started by ${principal}`}`;
      const took = settle.unconfirmed === true ? "may have taken" : "took";
      if (this.#recipes.active?.id !== processId)
        this.#landedLate.set(settle.tag, {
          text: `the device ${took} ${settle.tag} = ${String(settle.value)} from ${by} after the write was given up, at ${new Date(this.#clock.now()).toISOString()} (cleared by a reset of the machine or a later confirmed write of the tag)`,
          sequence: settle.sequence ?? Number.POSITIVE_INFINITY,
        });
      void this.#track(
        this.#commands.runSystemAction(
          {
            action: "tag.late-landing",
            target: settle.tag,
            reason: `a write of ${settle.tag} by ${by}, given up at its timeout, ${settle.unconfirmed === true ? "may have reached" : "reached"} the device later`,
            newValue: { late: settle.value, processId, ...(principal === undefined ? {} : { principal }) },
          },
          () => Promise.resolve(undefined),
        ),
      ).catch(() => undefined);
    }
    if (!settle.landed || settle.reasserted === undefined) return;
    void this.#track(
      this.#commands.runSystemAction(
        {
          action: "tag.reassert",
          target: settle.tag,
          reason: `a write of ${settle.tag} given up at its timeout landed late, after a later write: the later value was written again`,
          newValue: { late: settle.value, reasserted: settle.reasserted },
        },
        () => Promise.resolve(reassertFailed),
        (failed) => failed,
      ),
    ).catch(() => undefined);
  }

  /**
   * A process failed on its own (a step failed; not an abort, stop, fault or trip, whose command
   * or system entry tells it): recorded as the system's `recipe.fail` entry naming the process,
   * its recipe, who started it and why, with the safe state it wrote; a problem its safe state met
   * follows as the entry's `:fail` (the rule of every safe-state path, {@link problemsOf}; review 15j, M2).
   */
  #onProcessFailed(failure: ProcessFailure): void {
    const { processId, recipe, startedBy } = failure;
    const by = startedBy === undefined ? "" : ` started by ${startedBy.id}`;
    void this.#track(
      this.#commands.runSystemAction(
        {
          action: "recipe.fail",
          target: fittedName(processId),
          reason: `process ${processId} (recipe ${recipe.name} v${recipe.version})${by} failed: ${failure.reason}`,
          newValue: {
            processId,
            recipe: { name: recipe.name, version: recipe.version },
            ...(startedBy === undefined ? {} : { startedBy: { id: startedBy.id, roles: [...startedBy.roles] } }),
            safeState: this.#options.machine.safeState,
          },
        },
        () => Promise.resolve(failure.problems),
        (problems) => problemsOf(problems),
      ),
    ).catch(() => undefined);
  }

  /**
   * The interlock action: writes the safe state and faults the machine, aborting a running process
   * (recorded as the system's `machine.trip`). Acts at once, from an `interlock-trip` or a stale
   * interlock input that cannot be trusted (`#tripIfUntrusted`).
   */
  async #trip(alarmId: string, value: unknown, reason: string): Promise<void> {
    const processId = this.#recipes.active?.id;
    // Its safe-state writes reach the device: recorded as the system's action (ADR 0042).
    // Tracked in flight: a stop waits for it (bounded) before closing the driver and the
    // audit writer, so its writes and its entry are not lost (adversarial review 15w, H2).
    // Fenced before any await (review 15r M3, 15y M4).
    await this.#safetyFence(reason, () =>
      this.#track(
        this.#commands.runSystemAction(
          {
            action: "machine.trip",
            target: this.machineId,
            reason,
            newValue: {
              alarmId,
              value,
              ...(processId === undefined ? {} : { processId }),
              safeState: this.#options.machine.safeState,
            },
          },
          () => this.#recipes.trip(reason),
          (result) => problemsOf(result.problems),
        ),
      ),
    );
  }

  /**
   * The one safety fence of a trip and of a manual stop, fault or abort (with or without a
   * process), from the moment it is decided until `work` settles (review 15d, H1/H2): counted in
   * the executor's safe-state epoch (a manual write issued before it is not sent after it; one
   * issued during it is refused, as `recipes.actingSafeState` holds), every start not active yet cancelled, and no start
   * begins meanwhile (`RecipeExecutor.fence`). Called before any await.
   */
  #safetyFence<T>(reason: string, work: () => Promise<T>): Promise<T> {
    this.#cancelStarts(reason);
    return this.#recipes.fence(reason, work);
  }

  /** The interlock alarms' ids by tag (set when wired). */
  #interlocksByTag = new Map<string, string[]>();
  /** The process an untrusted interlock input has tripped (review 15d, M3: one trip per process). */
  #untrustedTripped: string | undefined;

  /** Interlock tags whose untrusted input has tripped the machine, until a good, fresh sample (one trip per episode). */
  readonly #untrustedTrips = new Set<string>();

  /**
   * Trips a running process when the current sample of an interlock's tag cannot show its
   * condition: bad quality or a last usable value (Kiln's stale or no-communication marker;
   * {@link untrustedInput}, review 15c M4), or a good sample whose source has not advanced within
   * the tag's limit (`maxSourceAgeMs`; {@link staleSource}: the device stuck, or a link serving a
   * cached value; review 15r M1). The same path as a value trip: safe state, fault, a
   * `machine.trip` entry whose reason names the tag and its quality. Once per episode: a good,
   * fresh sample re-arms it. Without a running process the interlock holds starts and resets instead.
   */
  #tripIfUntrusted(sample: Sample): void {
    const interlocks = this.#interlocksByTag.get(sample.tag);
    if (interlocks === undefined) return;
    const untrusted = untrustedInput(sample) ?? staleSource(this.#freshness, sample.tag);
    if (untrusted === undefined) {
      this.#untrustedTrips.delete(sample.tag);
      return;
    }
    // Only a process whose machine has not reached its end state: not one already stopped,
    // aborted or tripped whose machine is at rest (its status stays running until its late writes
    // settle), and at most once per process however the input flaps (review 15d, M3). One being
    // stopped or aborted (its safe state still being written) is tripped, as a value trip in
    // that window is: the stop escalates to a fault, audited `machine.trip`, and the next start
    // needs a reset (review 15f, M2).
    const active = this.#recipes.active;
    const status = active?.status;
    if (this.#untrustedTrips.has(sample.tag) || active === undefined || (status !== "running" && status !== "paused"))
      return;
    if (this.#recipes.ending() !== undefined || this.#untrustedTripped === active.id) return;
    this.#untrustedTrips.add(sample.tag);
    this.#untrustedTripped = active.id;
    const alarmId = interlocks[0] ?? sample.tag;
    this.#logger.error({ alarmId, tag: sample.tag, reason: untrusted }, "interlock input untrusted");
    void this.#trip(alarmId, sample.value, `interlock ${alarmId} tripped: ${untrusted}`);
  }

  /**
   * Aborts `process` on the system's own account (`stop()`): the abort and its safe-state writes
   * are recorded as a `recipe.abort` entry of the system principal (ADR 0042).
   */
  #systemAbort(process: RecipeProcess, reason: string): Promise<readonly ProcessProblem[]> {
    return this.#commands.runSystemAction(
      {
        action: "recipe.abort",
        target: fittedName(process.id),
        reason,
        newValue: { processId: process.id, safeState: this.#options.machine.safeState },
      },
      // Answered once its effect is done (the safe state written or halted, the machine at its
      // end state), not after the process record's save: its `:fail` names what the safe state met
      // before the writer closes, however slow the save (fix15ab, adv15 H1).
      async () => {
        // The executor halts its active process (the one the stop aborts); another (none) is aborted as before.
        if (this.#recipes.active === process) return (await this.#recipes.halt(reason))?.problems ?? [];
        return (await process.abort(reason)).problems;
      },
      (problems) => problemsOf(problems),
    );
  }

  #unwire(): void {
    for (const dispose of this.#disposers.splice(0)) dispose();
  }
}

/** A one-shot signal: `released` resolves once `release()` is called. */
function releaseSignal(): { readonly released: Promise<void>; release(): void } {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  return { released, release };
}

/** What a state command may do with its turn (see `#stateCommand`). */
interface StateTurnControl {
  /**
   * Ends the turn now: for a command refused before it acts (its `denied` entry is then recorded
   * outside the turn, so the commands behind it do not wait for the audit store; fix15j).
   */
  end(): void;
  /** Gives the turn up while `wait` runs, then waits for a new turn (rejecting `KILN_ABORTED` when `signal` aborts first). */
  outside<T>(wait: () => Promise<T>, signal: AbortSignal): Promise<T>;
}

/** Refuses a start cancelled while it waited (`KILN_ABORTED`, `details.cancelled`: nothing ran). */
function throwIfCancelled(signal: AbortSignal): void {
  if (!signal.aborted) return;
  const reason = typeof signal.reason === "string" ? signal.reason : "start cancelled";
  throw new KilnError("KILN_ABORTED", `The start was cancelled before it began (${reason}): nothing ran.`, {
    details: { reason, cancelled: true },
  });
}

/** `work`, or the start's cancellation (`KILN_ABORTED`, `details.cancelled`) as soon as `signal` aborts (review 15z, M5). */
function unlessCancelled<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      try {
        throwIfCancelled(signal);
      } catch (error) {
        reject(error);
      }
    };
    if (signal.aborted) onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

/** The reset of a fault: Kiln `reset` from `error`, PackML `clear` from `aborted`. */
function isFaultReset(state: string, command: string): boolean {
  return (state === "error" && command === "reset") || (state === "aborted" && command === "clear");
}

/** At most this many code units of a device value shown in a health() line (fix15s). */
const SHOWN_VALUE_MAX = 64;

/**
 * One rule for every safe-state path (reviews 15g M2, 15j M3): a manual stop, fault or abort
 * whose safe state met a problem (a safe-state write, a pulse's off, a step write in flight, the
 * machine) gets its command's `<id>:fail` entry naming every problem, as a trip's entry does
 * ({@link problemsOf}, the one text both use).
 */
function recordSafeStateFailure(
  command: Pick<CommandContext, "recordAfter">,
  problems: ProcessResult["problems"],
): void {
  const text = problemsOf(problems);
  if (text !== undefined) command.recordAfter("fail", { outcome: "failed", reason: text });
}

/** The problems of an abort or a trip (a safe-state write the device refused), in words; undefined when none. */
function problemsOf(problems: ProcessResult["problems"]): string | undefined {
  if (problems.length === 0) return undefined;
  return problems
    .map((problem) => {
      const error = problem.error;
      const text = KilnError.is(error) ? `${error.code}: ${error.message}` : String(error);
      return `${problem.stage}${problem.tag === undefined ? "" : ` ${problem.tag}`}: ${text}`;
    })
    .join("; ");
}

/**
 * A recipe's name for the audit target, from its snapshot; "(recipe)" when it has no non-empty
 * string name (the recipe's validation then says what is wrong with it).
 */
function recipeNameOf(input: InputSnapshot<unknown>): string {
  const name = input.ok && typeof input.value === "object" && input.value !== null ? readName(input.value) : undefined;
  return typeof name === "string" && name !== "" ? name : "(recipe)";
}

function readName(recipe: object): unknown {
  return "name" in recipe ? recipe.name : undefined;
}

/** The comment of a command's options, read once (an unreadable one is refused as not a string). */
function commentOf(options: { comment?: string }): string | undefined {
  return readSafely(() => options.comment) as string | undefined;
}

/** `read()`, or a marker value the command's checks refuse when it throws (a hostile getter). */
function readSafely(read: () => unknown): unknown {
  try {
    return read();
  } catch {
    return UNREADABLE;
  }
}

/** Stands for a field whose getter threw: not plain data, so the snapshot refuses it. */
const UNREADABLE = Symbol("unreadable");

/** `value` when it is a boolean; else a `KILN_VALIDATION` error naming `field` (the command is recorded denied). */
function requireBoolean(value: unknown, field: string): boolean {
  if (typeof value !== "boolean") {
    throw new KilnValidationError("alarm command", [{ path: field, message: "must be a boolean (true or false)" }]);
  }
  return value;
}

function withoutUndefined<T extends Record<string, unknown>>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, entry]) => entry !== undefined)) as T;
}

/**
 * The machine states a process can start from: the model's states that accept `start` (`idle`
 * in both built-in models), else its initial state. A saved recipe's write set is authorized
 * for its author in these (ADR 0010 addendum).
 */
function processStartStates(machine: MachineStateMachine): readonly string[] {
  const { transitions, initial } = machine.model;
  const states = Object.keys(transitions).filter((state) => transitions[state]?.["start"] !== undefined);
  return states.length > 0 ? states : [initial];
}
