import "reflect-metadata";
import { container as rootContainer, type DependencyContainer, type InjectionToken } from "tsyringe";
import { Acquisition, type AcquisitionHealth } from "../acquisition/acquisition";
import { AlarmEngine } from "../alarms/alarm-engine";
import { CurrentValueTable } from "../cvt/current-value-table";
import { KilnError } from "../domain/errors";
import type { Sample } from "../domain/sample";
import type { TagCatalog } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import { EventBus, type Disposer } from "../events/event-bus";
import { kilnMachineModel } from "../fsm/kiln-machine-model";
import { packmlModel } from "../fsm/packml-model";
import { StateMachine } from "../fsm/state-machine";
import { LoggingFilter } from "../logging/logging-filter";
import { SampleLogger, type SampleLoggerHealth } from "../logging/sample-logger";
import { MemoryMetrics } from "../memory/memory-metrics";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedPlc } from "../memory/simulated-plc";
import { SystemClock } from "../ports/clock";
import { silentLogger, type Logger } from "../ports/logger";
import type { Store } from "../ports/store";
import type { PlcDriver } from "../ports/plc-driver";
import {
  resolveControlSystemOptions,
  type ControlSystemOptions,
  type ResolvedControlSystemOptions,
} from "./control-system-options";
import { registerSingleton, type Resolve, type ServiceRegistry } from "./service-registry";
import { Tokens } from "./tokens";

/** Event types appended to the event store, by the aggregate id they carry. */
const RECORDED_EVENTS = new Set<keyof KilnEvents>(["machine-state-change", "interlock-trip"]);

/** The machine's state machine: the founding Kiln model or PackML. */
export type MachineStateMachine = StateMachine<string, string>;

/** A summary of the system's health for a host's health endpoint. */
export interface ControlSystemHealth {
  /** `ok`: values flow and reach the store. `degraded`: something is failing but handled. */
  readonly status: "stopped" | "ok" | "degraded";
  readonly machineId: string;
  readonly machineState: string;
  readonly acquisition: AcquisitionHealth;
  readonly logging: SampleLoggerHealth;
  readonly alarms: { readonly active: number; readonly unacknowledged: number; readonly historyFailures: number };
  /** Why the status is not `ok`, in words. */
  readonly problems: readonly string[];
}

/**
 * A composed control system for one machine: driver → acquisition → current value table →
 * alarms and the logging pipeline → store, plus the machine's state machine, all on one event
 * bus and one clock. Made by {@link createControlSystem}; nothing runs until {@link start}.
 */
export class ControlSystem {
  /** The machine's id. */
  readonly machineId: string;
  /** The tag catalog. */
  readonly tags: TagCatalog;
  /** The event bus every part publishes on. */
  readonly bus: EventBus<KilnEvents>;
  /** Current values, synchronously readable. */
  readonly cvt: CurrentValueTable;
  /** The machine's state machine. */
  readonly machine: MachineStateMachine;
  /** The ISA-18.2 alarm engine. */
  readonly alarms: AlarmEngine;
  /** The PLC driver (as registered; the core wraps its calls). */
  readonly driver: PlcDriver;
  /** The store. */
  readonly store: Store;
  /** The DI container (child of tsyringe's root; one per system). */
  readonly container: DependencyContainer;

  readonly #options: ResolvedControlSystemOptions;
  readonly #acquisition: Acquisition;
  readonly #sampleLogger: SampleLogger;
  readonly #filter: LoggingFilter;
  readonly #logger: Logger;
  readonly #disposers: Disposer[] = [];
  #state: "stopped" | "starting" | "running" | "stopping" = "stopped";
  readonly #versions = new Map<string, Promise<number>>();

  /** @internal use {@link createControlSystem}. */
  constructor(container: DependencyContainer) {
    this.container = container;
    this.#options = container.resolve(Tokens.Options);
    this.machineId = this.#options.machineId;
    this.tags = container.resolve(Tokens.Tags);
    this.bus = container.resolve(Tokens.Bus);
    this.cvt = container.resolve(Tokens.CurrentValueTable);
    this.driver = container.resolve(Tokens.Driver);
    this.store = container.resolve(Tokens.Store);
    this.alarms = container.resolve(Tokens.AlarmEngine);
    this.#acquisition = container.resolve(Tokens.Acquisition);
    this.#sampleLogger = container.resolve(Tokens.SampleLogger);
    this.#filter = container.resolve(Tokens.LoggingFilter);
    this.#logger = container.resolve(Tokens.Logger);
    const clock = container.resolve(Tokens.Clock);
    const model = this.#options.machine.model === "packml" ? packmlModel : kilnMachineModel;
    this.machine = new StateMachine<string, string>(model as never, {
      machineId: this.machineId,
      clock,
      bus: this.bus,
    });
  }

  /** `stopped`, `starting`, `running` or `stopping`. */
  get state(): "stopped" | "starting" | "running" | "stopping" {
    return this.#state;
  }

  /**
   * Opens the store, replays any spool, and starts acquisition. A PLC that cannot be reached
   * does not fail start (reconnection runs in the background); bad credentials do.
   * @throws KilnError `KILN_LIFECYCLE` when not stopped.
   */
  async start(): Promise<void> {
    if (this.#state !== "stopped") {
      throw new KilnError("KILN_LIFECYCLE", `Cannot start a control system that is ${this.#state}.`);
    }
    this.#state = "starting";
    try {
      await this.store.open(this.tags.list());
      await this.#sampleLogger.start();
      this.#wire();
      await this.#acquisition.start();
      this.#state = "running";
      this.#logger.info({ machineId: this.machineId }, "control system started");
    } catch (error) {
      this.#unwire();
      await this.#sampleLogger.stop().catch(() => undefined);
      await this.store.close().catch(() => undefined);
      this.#state = "stopped";
      throw error;
    }
  }

  /**
   * Stops acquisition, drains the logging pipeline (flushing every buffered sample, or
   * spooling it when the store is down), then closes the driver and the store. Idempotent.
   */
  async stop(): Promise<void> {
    if (this.#state === "stopped" || this.#state === "stopping") return;
    this.#state = "stopping";
    try {
      await this.#acquisition.stop();
      await this.#sampleLogger.stop();
      await this.alarms.flush();
      this.#unwire();
      await Promise.all(this.#versions.values()).catch(() => undefined);
      await this.store.close();
    } finally {
      this.alarms.dispose();
      this.#state = "stopped";
      this.#logger.info({ machineId: this.machineId }, "control system stopped");
    }
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

  /** Driver link, pipeline, store breaker and alarms in one summary. */
  health(): ControlSystemHealth {
    const acquisition = this.#acquisition.health();
    const logging = this.#sampleLogger.health();
    const alarms = this.alarms.list();
    const problems: string[] = [];
    if (this.#state === "running") {
      if (acquisition.link !== "online")
        problems.push(`PLC ${acquisition.driver} offline: ${acquisition.lastError ?? "reconnecting"}`);
      if (logging.breaker.state.state !== "closed") problems.push(`store breaker ${logging.breaker.state.state}`);
      if (logging.mode === "spooling") problems.push(`store behind: ${logging.spooled} samples spooled`);
      if (logging.samplesDropped > 0) problems.push(`${logging.samplesDropped} samples dropped`);
    }
    return {
      status: this.#state !== "running" ? "stopped" : problems.length === 0 ? "ok" : "degraded",
      machineId: this.machineId,
      machineState: this.machine.state,
      acquisition,
      logging,
      alarms: {
        active: alarms.filter((alarm) => alarm.active).length,
        unacknowledged: alarms.filter(
          (alarm) => alarm.state.name === "unacknowledged" || alarm.state.name === "rtn-unacknowledged",
        ).length,
        historyFailures: this.alarms.stats.historyFailures,
      },
      problems,
    };
  }

  #wire(): void {
    this.#disposers.push(
      this.cvt.observeAll((change) => {
        this.alarms.observe(change.sample);
        if (this.#filter.accept(change.sample)) this.#sampleLogger.append(change.sample);
      }),
      this.bus.tap((type, event) => this.#record(type, event)),
    );
  }

  #unwire(): void {
    for (const dispose of this.#disposers.splice(0)) dispose();
  }

  /** Appends recorded domain events to the event store, serialized per aggregate. */
  #record(type: keyof KilnEvents, event: KilnEvents[keyof KilnEvents]): Promise<void> | undefined {
    if (!RECORDED_EVENTS.has(type) || event.aggregateId === undefined) return undefined;
    const aggregateId = event.aggregateId;
    const {
      at,
      aggregateId: _aggregateId,
      ...payload
    } = event as KilnEvents[keyof KilnEvents] & Record<string, unknown>;
    const events = this.store.events;
    const previous = this.#versions.get(aggregateId) ?? events.version(aggregateId);
    const next = previous
      .catch(() => events.version(aggregateId))
      .then((version) => events.append(aggregateId, version, [{ type, at, payload: toJson(payload) }]));
    this.#versions.set(aggregateId, next);
    return next.then(() => undefined);
  }
}

function toJson(payload: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(
    JSON.stringify(payload, (_key, value: unknown) =>
      value instanceof Error ? { name: value.name, message: value.message } : value,
    ),
  ) as Record<string, unknown>;
}

/**
 * Builds a control system for one machine from its options, wiring every part through a
 * tsyringe container with explicit tokens. Only `machineId` and `tags` are required: without a
 * driver it runs on a `SimulatedPlc`, without a store on a `MemoryStore`. Nothing starts until
 * `start()`.
 *
 * @example
 * const tags = defineTags({ "chamber.pressure": { dataType: "float64", unit: "mbar" } });
 * await using system = createControlSystem({ machineId: "ald-1", tags });
 * await system.start();
 * system.read("chamber.pressure");
 *
 * @throws KilnValidationError (`KILN_VALIDATION`) naming every bad option by path.
 */
export function createControlSystem(options: ControlSystemOptions): ControlSystem {
  const resolved = resolveControlSystemOptions(options);
  const container = rootContainer.createChildContainer();
  registerDefaults(container, resolved);
  const registry: ServiceRegistry = {
    override: (token, factory) => registerSingleton(container, token, factory),
  };
  resolved.register?.(registry);
  return new ControlSystem(container);
}

function registerDefaults(container: DependencyContainer, options: ResolvedControlSystemOptions): void {
  const singleton = <T>(token: InjectionToken<T>, factory: (resolve: Resolve) => T): void =>
    registerSingleton(container, token, factory);
  singleton(Tokens.Options, () => options);
  singleton(Tokens.Tags, () => options.tags);
  singleton(Tokens.Clock, () => options.clock ?? new SystemClock());
  singleton(Tokens.Logger, () => (options.logger ?? silentLogger).child({ machineId: options.machineId }));
  singleton(Tokens.Metrics, () => options.metrics ?? new MemoryMetrics());
  singleton(Tokens.Bus, (resolve) => {
    const logger = resolve(Tokens.Logger);
    const clock = resolve(Tokens.Clock);
    return new EventBus<KilnEvents>({
      now: () => clock.now(),
      onHandlerError: (type, error) => logger.error({ eventType: type, error: String(error) }, "event handler failed"),
    });
  });
  singleton(
    Tokens.Driver,
    (resolve) => options.driver ?? new SimulatedPlc({ tags: options.tags, clock: resolve(Tokens.Clock) }),
  );
  singleton(Tokens.Store, (resolve) => options.store ?? new MemoryStore({ clock: resolve(Tokens.Clock) }));
  singleton(Tokens.CurrentValueTable, (resolve) => {
    const logger = resolve(Tokens.Logger);
    return new CurrentValueTable({
      tags: options.tags.list(),
      onObserverError: (error, change) =>
        logger.error({ tag: change.sample.tag, error: String(error) }, "CVT observer failed"),
    });
  });
  singleton(Tokens.LoggingFilter, () => new LoggingFilter(options.tags.list()));
  singleton(
    Tokens.SampleLogger,
    (resolve) =>
      new SampleLogger({
        ...options.logging,
        sink: resolve(Tokens.Store).samples,
        clock: resolve(Tokens.Clock),
        bus: resolve(Tokens.Bus),
        metrics: resolve(Tokens.Metrics),
        logger: resolve(Tokens.Logger),
      }),
  );
  singleton(Tokens.Acquisition, (resolve) => {
    const sampleLogger = resolve(Tokens.SampleLogger);
    return new Acquisition({
      driver: resolve(Tokens.Driver),
      tags: options.tags.list(),
      groups: options.scanGroups,
      cvt: resolve(Tokens.CurrentValueTable),
      clock: resolve(Tokens.Clock),
      bus: resolve(Tokens.Bus),
      metrics: resolve(Tokens.Metrics),
      logger: resolve(Tokens.Logger),
      policy: options.acquisition,
      beforeRead: () => sampleLogger.whenWritable(),
    });
  });
  singleton(
    Tokens.AlarmEngine,
    (resolve) =>
      new AlarmEngine({
        clock: resolve(Tokens.Clock),
        tags: options.tags,
        definitions: options.alarms,
        bus: resolve(Tokens.Bus),
        history: resolve(Tokens.Store).alarms,
      }),
  );
}
