import { Acquisition } from "../acquisition/acquisition";
import { interlockHolds, interlockHoldsReason, SourceAdvances, sourceAgeLimits, staleSource } from "./interlocks";
import { AlarmEngine } from "../alarms/alarm-engine";
import { CurrentValueTable } from "../cvt/current-value-table";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { kilnMachineModel } from "../fsm/kiln-machine-model";
import { packmlModel } from "../fsm/packml-model";
import { StateMachine } from "../fsm/state-machine";
import { LoggingFilter } from "../logging/logging-filter";
import { SampleLogger } from "../logging/sample-logger";
import { MemoryMetrics } from "../memory/memory-metrics";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedPlc } from "../memory/simulated-plc";
import { kilnMachineBinding, packmlMachineBinding } from "../recipes/machine-binding";
import { RecipeExecutor } from "../recipes/recipe-executor";
import { tableRecipeIo } from "../recipes/recipe-io";
import { recipeResolver } from "../recipes/recipe-validation";
import { SystemClock } from "../runtime/system-clock";
import { silentLogger } from "../runtime/silent-logger";
import { Authorizer, defaultRoleTable } from "../security/authorization";
import { AuditedCommandRunner } from "../security/audited-command";
import { CheckedTagWriter, type TagWriter, type WatchesLateCalls } from "./checked-write";
import { ControlSystem } from "./control-system";
import type { MachineStateMachine } from "./unchecked-parts";
import {
  resolveControlSystemOptions,
  type ControlSystemOptions,
  type ResolvedControlSystemOptions,
} from "./control-system-options";
import { EventRecorder } from "./event-recorder";
import { guardDriver, guardStore, type PortPolicy, type StorePolicies } from "./port-policies";
import { ServiceContainer, type Resolve, type ServiceRegistry, type ServiceToken } from "./service-registry";
import { SystemLifecycle } from "./system-lifecycle";
import { InternalTokens } from "./tokens";

/**
 * Builds a control system for one machine from its options, wiring every part through a
 * container of its own with explicit tokens. Only `machineId` and `tags` are required: without a
 * driver it runs on a `SimulatedPlc`, without a store on a `MemoryStore`. Every driver and store
 * call goes through its port's policy (timeout, breaker, retry where idempotent), applied here
 * once. Nothing starts until `start()`.
 *
 * @example
 * import { createControlSystem, defineTags } from "@kiln/core";
 *
 * const tags = defineTags({ "chamber.pressure": { dataType: "float64", unit: "mbar" } });
 * await using system = createControlSystem({ machineId: "ald-1", tags });
 * await system.start();
 * await system.ready(); // the first scan is done: every tag has a sample
 * console.log(system.read("chamber.pressure")); // { tag, value: 0, timestamp, quality: { severity: "good", code: 0 } }
 *
 * @throws KilnValidationError (`KILN_VALIDATION`) naming every bad option by path.
 */
export function createControlSystem(options: ControlSystemOptions): ControlSystem {
  const resolved = resolveControlSystemOptions(options);
  const container = new ServiceContainer();
  registerDefaults(container, resolved);
  const registry: ServiceRegistry = {
    override: (token, factory) => container.register(token, factory),
  };
  resolved.register?.(registry);
  return new ControlSystem(container);
}

/** The device policy, from `acquisition`. */
function driverPolicy(options: ResolvedControlSystemOptions): PortPolicy {
  const { timeoutMs, failureThreshold, recoveryTimeMs } = options.acquisition;
  return { timeoutMs, breaker: { failureThreshold, recoveryTimeMs } };
}

/** Every store port's policy: samples from `logging` (retried until stored), the others from `storePolicies`. */
function storePolicies(options: ResolvedControlSystemOptions): StorePolicies {
  const { writeTimeoutMs, retry, breaker } = options.logging;
  const random = options.random === undefined ? {} : { random: options.random };
  const port = (policy: PortPolicy): PortPolicy =>
    policy.retry === undefined ? policy : { ...policy, retry: { ...policy.retry, ...random } };
  const { history, events, processes, recipes, alarms, audit } = options.storePolicies;
  return {
    history: port(history),
    events: port(events),
    processes: port(processes),
    recipes: port(recipes),
    alarms: port(alarms),
    audit: port(audit),
    samples: {
      timeoutMs: writeTimeoutMs,
      breaker,
      // A batch is retried until it is stored, spooled at the bound, or counted at a stop deadline.
      retry: { ...retry, maxAttempts: Number.MAX_SAFE_INTEGER, ...random },
    },
  };
}

function registerDefaults(container: ServiceContainer, options: ResolvedControlSystemOptions): void {
  // One device-call order per system, shared by acquisition's poll reads and the writer's
  // landings: what a read answers is known to be no older than its issue (ADR 0042, fix15z).
  let deviceCalls = 0;
  const deviceOrder = (): number => ++deviceCalls;
  const singleton = <T>(token: ServiceToken<T>, factory: (resolve: Resolve) => T): void =>
    container.register(token, factory);
  singleton(InternalTokens.Options, () => options);
  singleton(InternalTokens.Tags, () => options.tags);
  singleton(InternalTokens.Clock, () => options.clock ?? new SystemClock());
  singleton(InternalTokens.Logger, () => (options.logger ?? silentLogger).child({ machineId: options.machineId }));
  singleton(InternalTokens.Metrics, () => options.metrics ?? new MemoryMetrics());
  singleton(InternalTokens.Lifecycle, () => new SystemLifecycle());
  singleton(InternalTokens.Bus, (resolve) => {
    const logger = resolve(InternalTokens.Logger);
    const clock = resolve(InternalTokens.Clock);
    return new EventBus<KilnEvents>({
      now: () => clock.now(),
      onHandlerError: (type, error) => logger.error({ eventType: type, error: String(error) }, "event handler failed"),
    });
  });
  singleton(
    InternalTokens.Driver,
    (resolve) => options.driver ?? new SimulatedPlc({ tags: options.tags, clock: resolve(InternalTokens.Clock) }),
  );
  // The default store's evictions are published as `store-evict` by the running system (ControlSystem #wire).
  singleton(
    InternalTokens.Store,
    (resolve) => options.store ?? new MemoryStore({ clock: resolve(InternalTokens.Clock) }),
  );
  singleton(InternalTokens.GuardedDriver, (resolve) =>
    guardDriver(resolve(InternalTokens.Driver), driverPolicy(options), {
      clock: resolve(InternalTokens.Clock),
      bus: resolve(InternalTokens.Bus),
    }),
  );
  singleton(InternalTokens.GuardedStore, (resolve) =>
    guardStore(resolve(InternalTokens.Store), storePolicies(options), {
      clock: resolve(InternalTokens.Clock),
      bus: resolve(InternalTokens.Bus),
    }),
  );
  singleton(InternalTokens.CurrentValueTable, (resolve) => {
    const logger = resolve(InternalTokens.Logger);
    return new CurrentValueTable({
      tags: options.tags.list(),
      clock: resolve(InternalTokens.Clock),
      onObserverError: (error, change) =>
        logger.error({ tag: change.sample.tag, error: String(error) }, "CVT observer failed"),
    });
  });
  singleton(
    InternalTokens.LoggingFilter,
    (resolve) => new LoggingFilter(options.tags.list(), resolve(InternalTokens.Clock)),
  );
  singleton(InternalTokens.SampleLogger, (resolve) => {
    const { writeTimeoutMs: _timeout, retry: _retry, breaker: _breaker, ...settings } = options.logging;
    return new SampleLogger({
      ...settings,
      sink: resolve(InternalTokens.GuardedStore).samples,
      clock: resolve(InternalTokens.Clock),
      bus: resolve(InternalTokens.Bus),
      metrics: resolve(InternalTokens.Metrics),
      logger: resolve(InternalTokens.Logger),
    });
  });
  singleton(InternalTokens.Acquisition, (resolve) => {
    const sampleLogger = resolve(InternalTokens.SampleLogger);
    return new Acquisition({
      driver: resolve(InternalTokens.GuardedDriver),
      tags: options.tags.list(),
      groups: options.scanGroups,
      cvt: resolve(InternalTokens.CurrentValueTable),
      clock: resolve(InternalTokens.Clock),
      bus: resolve(InternalTokens.Bus),
      metrics: resolve(InternalTokens.Metrics),
      logger: resolve(InternalTokens.Logger),
      policy: {
        reconnect: {
          ...options.acquisition.reconnect,
          ...(options.random === undefined ? {} : { random: options.random }),
        },
      },
      reserveRoom: (samples) => sampleLogger.reserveRoom(samples),
      readOrder: deviceOrder,
    });
  });
  singleton(
    InternalTokens.Authorizer,
    () =>
      new Authorizer({
        roles:
          options.authorization.roles ??
          defaultRoleTable({ operatorWritableTags: options.authorization.operatorWritableTags }),
      }),
  );
  singleton(InternalTokens.CommandRunner, (resolve) => {
    if (options.audit.backlog?.path === undefined) {
      // Fail closed either way, but only a journal makes an intent and its refusal durable together (ADR 0013 addendum).
      resolve(InternalTokens.Logger).warn(
        { machineId: options.machineId },
        "the audit trail runs without a journal (audit.backlog.path): a command refused after its entry was offered " +
          "to a hanging store has its refusal kept in memory only, so a stop can leave the trail showing it allowed; " +
          "configure a journal in production",
      );
    }
    return new AuditedCommandRunner({
      authorizer: resolve(InternalTokens.Authorizer),
      audit: resolve(InternalTokens.GuardedStore).audit,
      clock: resolve(InternalTokens.Clock),
      machineId: options.machineId,
      // CR 2.8 wants a source on every entry: without one configured, the system names itself.
      source: options.audit.source ?? `kiln:${options.machineId}`,
      backlog: withoutUndefinedPath(options.audit.backlog),
      runWithoutDurableAudit: options.audit.runWithoutDurableAudit,
      // The backlog is retried in the background on the audit port's own backoff.
      retryBackoff: options.storePolicies.audit.retry,
      ...(options.random === undefined ? {} : { random: options.random }),
      bus: resolve(InternalTokens.Bus),
      logger: resolve(InternalTokens.Logger),
    });
  });
  singleton(
    InternalTokens.AlarmEngine,
    (resolve) =>
      new AlarmEngine({
        clock: resolve(InternalTokens.Clock),
        tags: options.tags,
        definitions: options.alarms,
        bus: resolve(InternalTokens.Bus),
        history: resolve(InternalTokens.GuardedStore).alarms,
      }),
  );
  singleton(InternalTokens.SourceFreshness, (resolve) => {
    const cvt = resolve(InternalTokens.CurrentValueTable);
    const clock = resolve(InternalTokens.Clock);
    const logger = resolve(InternalTokens.Logger);
    return new SourceAdvances({
      clock,
      current: (tag: string) => cvt.get(tag),
      maxAgeMs: sourceAgeLimits(options.tags, options.scanGroups),
      // A device clock stepped back: its source is alive (review 15e); the step is worth a look.
      onStepBack: (tag, stepMs) =>
        logger.warn({ tag, stepMs }, "source timestamp went back (device clock stepped back?): source still alive"),
    });
  });
  singleton(InternalTokens.Machine, (resolve): MachineStateMachine => {
    const alarms = resolve(InternalTokens.AlarmEngine);
    const freshness = resolve(InternalTokens.SourceFreshness);
    // Refuses a start, and the reset of a trip, while an interlock's condition persists
    // (ISA-84 / IEC 61511; the reset since adversarial review 15u), or its state is unknown (no
    // sample yet, bad quality: fail-safe, review 15t).
    const interlockGuard = (): true | { allowed: false; reason: string } => {
      const holds = interlockHolds(alarms, freshness);
      return holds.length > 0 ? { allowed: false, reason: interlockHoldsReason(holds) } : true;
    };
    const model = options.machine.model === "packml" ? packmlModel : kilnMachineModel;
    return new StateMachine<string, string>(model as never, {
      machineId: options.machineId,
      clock: resolve(InternalTokens.Clock),
      bus: resolve(InternalTokens.Bus),
      guards: { start: interlockGuard, reset: interlockGuard, clear: interlockGuard, exitMaintenance: interlockGuard },
    });
  });
  singleton(
    InternalTokens.TagWriter,
    (resolve) =>
      new CheckedTagWriter({
        tags: options.tags,
        driver: resolve(InternalTokens.GuardedDriver),
        lifecycle: resolve(InternalTokens.Lifecycle),
        // A write given up at its timeout may still land: the tag's next write (a safe state)
        // waits for it, at most one more write timeout (review 15e).
        clock: resolve(InternalTokens.Clock),
        lateWriteWaitMs: options.acquisition.timeoutMs,
        order: deviceOrder,
      }),
  );
  singleton(InternalTokens.RecipeExecutor, (resolve) => {
    const machine = resolve(InternalTokens.Machine);
    const writer = resolve(InternalTokens.TagWriter);
    const store = resolve(InternalTokens.GuardedStore);
    const logger = resolve(InternalTokens.Logger);
    const freshness = resolve(InternalTokens.SourceFreshness);
    return new RecipeExecutor({
      machine:
        options.machine.model === "packml"
          ? packmlMachineBinding(machine as never)
          : kilnMachineBinding(machine as never),
      io: tableRecipeIo(
        resolve(InternalTokens.CurrentValueTable),
        (tag, value, signal, origin, reservation) => {
          if (origin) logger.debug({ tag, processId: origin.processId, principal: origin.principal }, "process write");
          // A process's writes (its safe state above all) still reach the PLC while the system stops.
          return writer.write(tag, value, signal, {
            duringStop: true,
            ...(origin ? { origin } : {}),
            ...(reservation ? { reservation } : {}),
          });
        },
        writer.settled === undefined ? undefined : (tag) => writer.settled?.(tag),
        // The one source-age rule: a waitUntil is not met by a value whose source stopped (review 15e).
        (tag) => staleSource(freshness, tag),
        // The safe state announces its writes before it defers them (review 15k).
        writer.reserveSafeWrite === undefined ? undefined : (tag, value) => writer.reserveSafeWrite!(tag, value),
      ),
      catalog: options.tags,
      clock: resolve(InternalTokens.Clock),
      processes: store.processes,
      resolveRecipe: recipeResolver(store.recipes),
      safeState: options.machine.safeState,
      bus: resolve(InternalTokens.Bus),
      logger,
      progressSaveIntervalMs: options.recipes.progressSaveIntervalMs,
      // A start waits for a write the last process sent before its abort (the driver's write
      // timeout bounds it) and its record's last save (ADR 0042, 15r).
      endingWaitMs: options.acquisition.timeoutMs + options.storePolicies.processes.timeoutMs,
      // A failed safe-state write is forgotten only on evidence from the device, never by a reset (fix15s).
      ...(hasConfirmations(writer)
        ? {
            evidence: {
              mark: () => writer.issued(),
              landedAfter: (tag: string, mark: number) => writer.confirmedAfter(tag, mark),
              ...(hasQuietSince(writer)
                ? { order: deviceOrder, quietSince: (tag: string, since: number) => writer.quietSince(tag, since) }
                : {}),
            },
          }
        : {}),
    });
  });
  singleton(InternalTokens.EventRecorder, (resolve) => new EventRecorder(resolve(InternalTokens.GuardedStore).events));
}

/** A writer that tells whether a tag's writes were quiet since a point of the device-call order (the {@link CheckedTagWriter}; fix15z). */
function hasQuietSince(writer: TagWriter): writer is TagWriter & Pick<CheckedTagWriter, "quietSince"> {
  return typeof (writer as TagWriter & Partial<Pick<CheckedTagWriter, "quietSince">>).quietSince === "function";
}

/** A writer that numbers its writes and tells which landed (the {@link CheckedTagWriter}). */
function hasConfirmations(
  writer: TagWriter,
): writer is TagWriter & Pick<WatchesLateCalls, "issued" | "confirmedAfter"> {
  const candidate = writer as TagWriter & Partial<WatchesLateCalls>;
  return typeof candidate.issued === "function" && typeof candidate.confirmedAfter === "function";
}

function withoutUndefinedPath<T extends { path?: string | undefined }>(
  backlog: T,
): Omit<T, "path"> & { path?: string } {
  const { path, ...rest } = backlog;
  return path === undefined ? rest : { ...rest, path };
}
