import "reflect-metadata";
import { container as rootContainer, type DependencyContainer, type InjectionToken } from "tsyringe";
import { Acquisition, type AcquisitionHealth } from "../acquisition/acquisition";
import { AlarmEngine } from "../alarms/alarm-engine";
import { CurrentValueTable } from "../cvt/current-value-table";
import { KilnError, KilnValidationError } from "../domain/errors";
import type { Sample } from "../domain/sample";
import { checkTagValue, type TagCatalog, type TagValue } from "../domain/tags";
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
import { SystemClock, type Clock } from "../ports/clock";
import { silentLogger, type Logger } from "../ports/logger";
import type { Store } from "../ports/store";
import type { PlcDriver } from "../ports/plc-driver";
import type { StoredRecipe } from "../ports/recipe-repository";
import type { AlarmShelveOptions, AlarmSnapshot } from "../alarms/alarm-engine";
import { kilnMachineBinding, packmlMachineBinding } from "../recipes/machine-binding";
import { recoverInterrupted } from "../recipes/process-recovery";
import {
  RecipeExecutor,
  type ProcessResult,
  type RecipeProcess,
  type StartRecipeOptions,
} from "../recipes/recipe-executor";
import { tableRecipeIo, type WriteOrigin } from "../recipes/recipe-io";
import { storedRecipeOf, type RecipeInput } from "../recipes/recipe-schema";
import { recipeResolver } from "../recipes/recipe-validation";
import { CallPolicy } from "../resilience/policy";
import { Authorizer, defaultRoleTable, type Permission, type Principal } from "../security/authorization";
import { AuditedCommandRunner, type CommandContext } from "../security/audited-command";
import { authorizeRecipeSave, authorizeRecipeStart } from "../security/recipe-authorization";
import {
  resolveControlSystemOptions,
  type ControlSystemOptions,
  type ResolvedControlSystemOptions,
} from "./control-system-options";
import { registerSingleton, type Resolve, type ServiceRegistry } from "./service-registry";
import { Tokens } from "./tokens";

/** Event types appended to the event store, by the aggregate id they carry. */
const RECORDED_EVENTS = new Set<keyof KilnEvents>(["machine-state-change"]);

/** The machine's state machine: the founding Kiln model or PackML. */
export type MachineStateMachine = StateMachine<string, string>;

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
  /** Counts of active alarms, unacknowledged alarms, and transitions the alarm history failed to record. */
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
  /** Runs recipes as processes on this machine (use the audited commands below to start them). */
  readonly recipes: RecipeExecutor;

  readonly #options: ResolvedControlSystemOptions;
  readonly #acquisition: Acquisition;
  readonly #sampleLogger: SampleLogger;
  readonly #filter: LoggingFilter;
  readonly #logger: Logger;
  readonly #disposers: Disposer[] = [];
  #state: "stopped" | "starting" | "running" | "stopping" = "stopped";
  readonly #versions = new Map<string, Promise<number>>();
  readonly #clock: Clock;
  readonly #commands: AuditedCommandRunner;
  readonly #writePolicy: CallPolicy;

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
    this.#clock = clock;
    this.#commands = container.resolve(Tokens.CommandRunner);
    const packml = this.#options.machine.model === "packml";
    const interlockGuard = (): true | { allowed: false; reason: string } => {
      const tripped = this.alarms.list().find((alarm) => alarm.interlock && alarm.active);
      return tripped ? { allowed: false, reason: `interlock ${tripped.id} is active` } : true;
    };
    this.machine = new StateMachine<string, string>((packml ? packmlModel : kilnMachineModel) as never, {
      machineId: this.machineId,
      clock,
      bus: this.bus,
      guards: { start: interlockGuard },
    });
    // Device writes share the acquisition's breaker: one breaker per device.
    this.#writePolicy = new CallPolicy({
      name: `plc:${this.driver.name}:write`,
      clock,
      timeoutMs: this.#options.acquisition.timeoutMs,
      breaker: this.#acquisition.breaker,
    });
    this.recipes = new RecipeExecutor({
      machine: packml ? packmlMachineBinding(this.machine as never) : kilnMachineBinding(this.machine as never),
      io: tableRecipeIo(this.cvt, (tag, value, signal, origin) => this.#write(tag, value, signal, origin)),
      catalog: this.tags,
      clock,
      processes: this.store.processes,
      resolveRecipe: recipeResolver(this.store.recipes),
      safeState: this.#options.machine.safeState,
      bus: this.bus,
      logger: this.#logger,
      progressSaveIntervalMs: this.#options.recipes.progressSaveIntervalMs,
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
      const { recovered } = await recoverInterrupted(this.store.processes, {
        clock: this.#clock,
        machineId: this.machineId,
        bus: this.bus,
      });
      for (const process of recovered) {
        this.#logger.warn(
          { processId: process.id, lastCompletedStep: process.lastCompletedStep },
          "process was interrupted by a restart",
        );
      }
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
      if (this.recipes.active) {
        await this.recipes.active.abort("control system stopping").catch((error: unknown) => {
          this.#logger.error({ error: String(error) }, "aborting the running process at stop failed");
        });
      }
      await this.#commands.flush().catch(() => undefined);
      await this.#acquisition.stop();
      await this.#sampleLogger.stop();
      await this.alarms.flush();
      this.#unwire();
      await Promise.all(this.#versions.values()).catch(() => undefined);
      await this.#acquisition.close();
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

  /**
   * Writes `value` to a tag for `principal`: checked (tag exists, is writable, value fits its
   * type and range), authorized (`tag.write` on the tag), written through the device's timeout
   * and breaker, and audited with the old and new value whatever the outcome.
   * @throws `KILN_FORBIDDEN`, `KILN_TAG_UNKNOWN`, `KILN_TAG_NOT_WRITABLE`, `KILN_OUT_OF_RANGE`,
   *   `KILN_VALIDATION`, or the device's error (`KILN_TIMEOUT`, `KILN_CIRCUIT_OPEN`, `KILN_WRITE_REJECTED`...).
   */
  writeTag(principal: Principal, tag: string, value: TagValue, options: { comment?: string } = {}): Promise<void> {
    return this.#command(principal, "tag.write", tag, () => this.#write(tag, value), {
      action: "tag.write",
      machineState: this.machine.state,
      newValue: value,
      readOldValue: () => this.cvt.value(tag),
      ...options,
    });
  }

  /**
   * Validates `recipe` against the tag catalog and starts it as a process (`recipe.start`).
   * @returns the running process; await `process.finished` for its result.
   * @throws `KILN_VALIDATION` listing every problem with its step path (nothing runs),
   *   `KILN_INVALID_TRANSITION` when the machine cannot start (busy, interlock active), `KILN_FORBIDDEN`.
   */
  startRecipe(principal: Principal, recipe: RecipeInput, options: StartRecipeOptions = {}): Promise<RecipeProcess> {
    const name = typeof recipe === "object" && recipe !== null && "name" in recipe ? String(recipe.name) : "(recipe)";
    return this.#command(
      principal,
      "recipe.start",
      name,
      (command) =>
        this.recipes.start(recipe, {
          ...options,
          startedBy: command.principal,
          authorize: (request) => authorizeRecipeStart(command, request),
        }),
      {
        newValue: options.parameters,
      },
    );
  }

  /** Pauses the running process at its next step boundary (`recipe.pause`). */
  pauseProcess(principal: Principal): Promise<void> {
    return this.#command(principal, "recipe.pause", this.#activeId(), () => this.#active().pause(), {
      subject: this.machineId,
    });
  }

  /** Resumes the paused process (`recipe.resume`). */
  resumeProcess(principal: Principal): Promise<void> {
    return this.#command(principal, "recipe.resume", this.#activeId(), () => this.#active().resume(), {
      subject: this.machineId,
    });
  }

  /** Aborts the running process at once and writes the safe state (`recipe.abort`). */
  abortProcess(principal: Principal, reason = "aborted by operator"): Promise<ProcessResult> {
    return this.#command(principal, "recipe.abort", this.#activeId(), () => this.#active().abort(reason), {
      subject: this.machineId,
      comment: reason,
    });
  }

  /**
   * Validates and saves an immutable recipe version (`recipe.save`).
   * @throws `KILN_VALIDATION` (every problem, by step path), `KILN_ALREADY_EXISTS` for a changed
   *   definition under an existing version, `KILN_FORBIDDEN`.
   */
  saveRecipe(principal: Principal, recipe: RecipeInput): Promise<StoredRecipe> {
    const name = typeof recipe === "object" && recipe !== null && "name" in recipe ? String(recipe.name) : "(recipe)";
    return this.#command(principal, "recipe.save", name, async (command) => {
      const plan = await this.recipes.plan(recipe);
      const { name: recipeName, version } = plan.recipe;
      const writeSet = this.recipes.writeSet(plan);
      authorizeRecipeSave(command, { recipe: { name: recipeName, version }, writeSet, saved: false });
      const stored = storedRecipeOf(recipe, this.#clock.now());
      await this.store.recipes.save(stored);
      return stored;
    });
  }

  /** Acknowledges an alarm (`alarm.acknowledge`). */
  acknowledgeAlarm(principal: Principal, alarmId: string, comment?: string): Promise<AlarmSnapshot> {
    return this.#alarmCommand(
      principal,
      "alarm.acknowledge",
      alarmId,
      (command) => this.alarms.acknowledge(alarmId, command.principal.id),
      comment,
    );
  }

  /** Shelves an alarm for a time or until it next clears (`alarm.shelve`). */
  shelveAlarm(
    principal: Principal,
    alarmId: string,
    shelve: AlarmShelveOptions,
    comment?: string,
  ): Promise<AlarmSnapshot> {
    return this.#alarmCommand(
      principal,
      "alarm.shelve",
      alarmId,
      (command) => this.alarms.shelve(alarmId, shelve, command.principal.id),
      comment,
    );
  }

  /** Unshelves an alarm (`alarm.unshelve`). */
  unshelveAlarm(principal: Principal, alarmId: string, comment?: string): Promise<AlarmSnapshot> {
    return this.#alarmCommand(
      principal,
      "alarm.unshelve",
      alarmId,
      (command) => this.alarms.unshelve(alarmId, command.principal.id),
      comment,
    );
  }

  /** Suppresses an alarm by design, or lifts that suppression (`alarm.suppress`). */
  suppressAlarm(principal: Principal, alarmId: string, suppressed: boolean, comment?: string): Promise<AlarmSnapshot> {
    return this.#alarmCommand(
      principal,
      "alarm.suppress",
      alarmId,
      (command) =>
        suppressed
          ? this.alarms.suppress(alarmId, command.principal.id)
          : this.alarms.unsuppress(alarmId, command.principal.id),
      comment,
    );
  }

  /** Takes an alarm out of service, or returns it (`alarm.out-of-service`). */
  setAlarmInService(
    principal: Principal,
    alarmId: string,
    inService: boolean,
    comment?: string,
  ): Promise<AlarmSnapshot> {
    return this.#alarmCommand(
      principal,
      "alarm.out-of-service",
      alarmId,
      (command) =>
        inService
          ? this.alarms.returnToService(alarmId, command.principal.id)
          : this.alarms.removeFromService(alarmId, command.principal.id),
      comment,
    );
  }

  /**
   * Sends a command to the machine's state machine (`machine.mode`; maintenance commands need
   * `machine.maintenance`). Recipes drive the machine themselves; this is for manual modes.
   * @throws `KILN_INVALID_TRANSITION` (nothing changes), `KILN_FORBIDDEN`.
   */
  sendMachineCommand(principal: Principal, command: string): Promise<string> {
    const permission: Permission = /maintenance/i.test(command) ? "machine.maintenance" : "machine.mode";
    return this.#command(principal, permission, this.machineId, () => this.machine.send(command), {
      action: `machine.${command}`,
      readOldValue: () => this.machine.state,
      newValue: command,
    });
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

  #command<TResult>(
    principal: Principal,
    permission: Permission,
    target: string,
    execute: (command: CommandContext) => TResult | Promise<TResult>,
    extras: {
      action?: string;
      subject?: string;
      machineState?: string;
      newValue?: unknown;
      readOldValue?: () => unknown;
      comment?: string;
    } = {},
  ): Promise<TResult> {
    return this.#commands.run({ principal, permission, target, execute, ...withoutUndefined(extras) });
  }

  #alarmCommand(
    principal: Principal,
    permission: Permission,
    alarmId: string,
    execute: (command: CommandContext) => AlarmSnapshot,
    comment: string | undefined,
  ): Promise<AlarmSnapshot> {
    return this.#command(principal, permission, alarmId, execute, {
      readOldValue: () => this.alarms.list().find((alarm) => alarm.id === alarmId)?.state.name ?? null,
      ...(comment === undefined ? {} : { comment }),
    });
  }

  #active(): RecipeProcess {
    const active = this.recipes.active;
    if (!active) throw new KilnError("KILN_NOT_FOUND", `No process is running on ${this.machineId}.`);
    return active;
  }

  #activeId(): string {
    return this.recipes.active?.id ?? "(no process)";
  }

  /** The checked write path: catalog, access, type and range, then the device under timeout + breaker. */
  async #write(tag: string, value: TagValue, signal?: AbortSignal, origin?: WriteOrigin): Promise<void> {
    if (origin) this.#logger.debug({ tag, processId: origin.processId, principal: origin.principal }, "process write");
    const definition = this.tags.find(tag);
    if (!definition) throw new KilnError("KILN_TAG_UNKNOWN", `No tag named "${tag}".`, { details: { tag } });
    if (definition.access !== "readwrite") {
      throw new KilnError(
        "KILN_TAG_NOT_WRITABLE",
        `Tag "${tag}" is read-only; declare it access: "readwrite" to write it.`,
        {
          details: { tag },
        },
      );
    }
    const problem = checkTagValue(definition, value);
    if (problem !== undefined) {
      const { range } = definition;
      if (range && typeof value === "number" && Number.isFinite(value) && (value < range.min || value > range.max)) {
        throw new KilnError("KILN_OUT_OF_RANGE", `Cannot write ${tag}: ${problem}.`, {
          details: { tag, value, min: range.min, max: range.max },
        });
      }
      throw new KilnValidationError(`write to ${tag}`, [{ path: "value", message: problem }]);
    }
    if (this.#state !== "running") {
      throw new KilnError("KILN_LIFECYCLE", `Cannot write ${tag}: the control system is ${this.#state}.`);
    }
    await this.#writePolicy.executeOnce((attempt) =>
      this.driver.write(definition, value, signal ? AbortSignal.any([attempt, signal]) : attempt),
    );
  }

  #wire(): void {
    this.#disposers.push(
      this.cvt.observeAll((change) => {
        this.alarms.observe(change.sample);
        if (this.#filter.accept(change.sample)) this.#sampleLogger.append(change.sample);
      }),
      this.bus.tap((type, event) => this.#record(type, event)),
      this.bus.on("interlock-trip", async (event) => {
        this.#logger.error({ alarmId: event.alarmId, value: event.value }, "interlock tripped");
        await this.recipes.trip(`interlock ${event.alarmId} tripped at ${String(event.value)}`);
      }),
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

function withoutUndefined<T extends Record<string, unknown>>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, entry]) => entry !== undefined)) as T;
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
    Tokens.Authorizer,
    () =>
      new Authorizer({
        roles:
          options.authorization.roles ??
          defaultRoleTable({ operatorWritableTags: options.authorization.operatorWritableTags }),
      }),
  );
  singleton(
    Tokens.CommandRunner,
    (resolve) =>
      new AuditedCommandRunner({
        authorizer: resolve(Tokens.Authorizer),
        audit: resolve(Tokens.Store).audit,
        clock: resolve(Tokens.Clock),
        bus: resolve(Tokens.Bus),
        logger: resolve(Tokens.Logger),
      }),
  );
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
