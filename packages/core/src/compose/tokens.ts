import type { AlarmEngine } from "../alarms/alarm-engine";
import type { Acquisition } from "../acquisition/acquisition";
import type { CurrentValueTable } from "../cvt/current-value-table";
import type { TagCatalog } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import type { EventBus } from "../events/event-bus";
import type { LoggingFilter } from "../logging/logging-filter";
import type { SampleLogger } from "../logging/sample-logger";
import type { Metrics } from "@kiln/core/driver-kit";
// Tokens is homed in "@kiln/core/advanced"; the main entry's names it mentions come by package name (ADR 0027).
import type { Authorizer, Clock, Logger, PlcDriver, Store, TagWriter } from "@kiln/core";
import type { RecipeExecutor } from "../recipes/recipe-executor";
import type { GuardedDriver, GuardedStore } from "../resilience/guarded-ports";
import type { AuditedCommandRunner } from "../security/audited-command";
import type { MachineStateMachine } from "./unchecked-parts";
import type { ResolvedControlSystemOptions } from "./control-system-options";
import type { ServiceToken } from "./service-registry";
import type { EventRecorder } from "./event-recorder";
import type { SystemLifecycle } from "./system-lifecycle";
import type { SourceAdvances } from "./interlocks";

function token<T>(description: string): ServiceToken<T> {
  return Symbol(`kiln.${description}`) as ServiceToken<T>;
}

/**
 * The registration tokens a host may override, with
 * `createControlSystem({ ..., register: (registry) => registry.override(Tokens.Driver, ...) })`:
 * the ports (driver, store, clock, logger, metrics) and the policies (who may do what, the
 * machine's state model, the write path). The parts that make the guarantees (acquisition, the
 * logging pipeline, alarms, recipes, the audited command path) are internal and not replaceable
 * (docs/adr/0009-policies-at-ports.md, addendum).
 */
export const Tokens = {
  Clock: token<Clock>("clock"),
  Logger: token<Logger>("logger"),
  Metrics: token<Metrics>("metrics"),
  /** The PLC driver as given (or the simulated default); the core calls it only through its device policy. */
  Driver: token<PlcDriver>("driver"),
  /** The store as given (or the in-memory default); the core calls its ports only through their policies. */
  Store: token<Store>("store"),
  /** The machine's state machine (the Kiln model or PackML, with the interlock guard on `start`, `reset` and `clear`). */
  Machine: token<MachineStateMachine>("machine"),
  /** The checked write path every operator write, recipe step and safe-state write goes through. */
  TagWriter: token<TagWriter>("tag-writer"),
  /** Decides who may do what (role table). */
  Authorizer: token<Authorizer>("authorizer"),
} as const;

/** @internal Every registration of a control system's container: {@link Tokens} and the internal parts. */
export const InternalTokens = {
  ...Tokens,
  /** The validated options, with defaults applied. */
  Options: token<ResolvedControlSystemOptions>("options"),
  Bus: token<EventBus<KilnEvents>>("bus"),
  Tags: token<TagCatalog>("tags"),
  /** The driver wrapped in the device policy (timeout, one breaker per device). */
  GuardedDriver: token<GuardedDriver>("guarded-driver"),
  /** The store with every port wrapped in its policy (timeout, a breaker per port, retry where idempotent). */
  GuardedStore: token<GuardedStore>("guarded-store"),
  /** The system's lifecycle state, shared with the write path. */
  Lifecycle: token<SystemLifecycle>("lifecycle"),
  /** Runs recipes as processes on the machine. */
  RecipeExecutor: token<RecipeExecutor>("recipe-executor"),
  /** What the interlocks judge a good sample's source age by (review 15r, M1). */
  SourceFreshness: token<SourceAdvances>("source-freshness"),
  /** Appends recorded domain events from the bus to the event store. */
  EventRecorder: token<EventRecorder>("event-recorder"),
  CurrentValueTable: token<CurrentValueTable>("cvt"),
  LoggingFilter: token<LoggingFilter>("logging-filter"),
  SampleLogger: token<SampleLogger>("sample-logger"),
  Acquisition: token<Acquisition>("acquisition"),
  AlarmEngine: token<AlarmEngine>("alarm-engine"),
  /** Authorizes, runs and audits every operator command. */
  CommandRunner: token<AuditedCommandRunner>("command-runner"),
} as const;
