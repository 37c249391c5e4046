// @kiln/core: what a host application names to compose, configure, run and operate a control
// system: composition, domain types, errors, the ports a host passes in, the in-memory defaults.
//
// Each exported name has one home (ADR 0027):
// - "@kiln/core" (here): a name a host application writes: `createControlSystem` and its options,
//   `ControlSystem` and what its commands take and return, tags, samples, quality, errors, events,
//   alarms, recipes, authorization, the ports a host passes in (`PlcDriver`, `Store`, `Clock`,
//   `Logger`) and the in-memory defaults.
// - "@kiln/core/driver-kit": a name only a plugin author (driver, store, metrics backend,
//   simulator) writes: port detail types (store sub-ports, rows, queries, capabilities, driver
//   status changes, metric instruments), the connection, backoff, abort and history helpers.
//   A host that wants such a type (e.g. to annotate a history query) imports it from there.
// - "@kiln/core/advanced": below the composed system: machine-model authoring (`StateMachine`,
//   `defineMachineModel`, `kilnMachineModel`, `packmlModel`), container overrides (`Tokens`,
//   `ServiceRegistry`) and the raw parts behind `system.unchecked` (`EventBus`,
//   `CurrentValueTable`).
// - "@kiln/core/testing": conformance suites, SimulatedClock, fault injection.
// How to decide: would a host that only composes and runs a system have to write the name?
// Then here; else the entry of the audience that does. A variant a host only narrows by its
// discriminant (a recipe step kind, an alarm state) is a member of its union, not a name here.
// A type this entry's signatures mention whose home is elsewhere is imported in the source from
// its home by package name (`import type { ... } from "@kiln/core/driver-kit"`), so the API
// report shows the import, not a second copy. `src/public-surface.test.ts` fails when this entry
// exports more than MAIN_ENTRY_CEILING names; scripts/api-report.ts fails on any
// ae-forgotten-export.

// Errors
export {
  KILN_ERROR_CODES,
  KilnError,
  KilnValidationError,
  isRetryable,
  type KilnErrorCode,
  type KilnErrorOptions,
  type ValidationIssue,
} from "./domain/errors";

// Tags, samples and quality
export { GOOD, QualityCodes, quality, type Quality, type QualitySeverity } from "./domain/quality";
export type { Sample } from "./domain/sample";
export {
  TagCatalog,
  defineTags,
  type Interpolation,
  type LoggingDeadband,
  type LoggingPolicy,
  type Tag,
  type TagDataType,
  type TagDefinitionInput,
  type TagRange,
  type TagValue,
} from "./domain/tags";
export type { CurrentValueView, CvtObserver, CvtChange } from "./cvt/current-value-view";

// Composition, commands and health
export { createControlSystem } from "./compose/create-control-system";
export { ControlSystem, type ControlSystemHealth, type StoredHistoryView } from "./compose/control-system";
export type { BackoffOptions, ControlSystemOptions } from "./compose/control-system-options";
export type { PortHealth } from "./compose/port-policies";
export type { SystemState } from "./compose/system-lifecycle";
export type { TagWriteOptions, TagWriter } from "./compose/checked-write";
export type { CircuitBreakerSnapshot } from "./resilience/circuit-breaker";
export type { RetryJitter } from "./resilience/retry";
export type { StatsSummary } from "./stats/rolling-stats";
export type { AcquisitionHealth } from "./acquisition/acquisition";
export type { SampleLoggerHealth, OverflowPolicy } from "./logging/sample-logger";

// Events
export type { Disposer } from "./domain/disposer";
export type { BreakerState, EventBase, KilnEvents } from "./events/catalogue";
export type { EventBusView, EventHandler } from "./events/event-bus-view";

// Embedded defaults: simulated PLC, in-memory store and metrics, system clock, silent logger
export {
  SimulatedPlc,
  type SimulatedPlcOptions,
  type SimulatedSource,
  type SimulatedWrite,
} from "./memory/simulated-plc";
export type { SignalSpec } from "./memory/signals";
export {
  MemoryStore,
  type MemoryStoreOptions,
  type MemoryStoreEviction,
  type MemoryStoreEvictions,
  type MemoryStoreRetention,
} from "./memory/memory-store";
export {
  MemoryMetrics,
  type HistogramSummary,
  type MemoryMetricsOptions,
  type MetricSnapshot,
} from "./memory/memory-metrics";
export { SystemClock } from "./runtime/system-clock";
export { silentLogger } from "./runtime/silent-logger";

// Alarms (ISA-18.2)
export { computeAlarmKpis, type AlarmKpiOptions, type AlarmKpis } from "./alarms/alarm-kpis";
export {
  defineAlarms,
  type AlarmDefinition,
  type AlarmDefinitionInput,
  type AlarmKind,
  type AlarmPriority,
  type NumericAlarmKind,
  type AlarmSuppressionCondition,
  type AlarmSuppressionPredicate,
  type AlarmSuppressionRule,
  type AlarmConditionContext,
} from "./alarms/alarm-definition";
export type { AlarmShelveOptions, AlarmSnapshot } from "./alarms/alarm-engine";
export type { AlarmBaseState, AlarmShelf, AlarmState } from "./alarms/alarm-state";

// Recipes and processes
export {
  parseRecipe,
  type ParameterDefinition,
  type Recipe,
  type RecipeInput,
  type RecipeStep,
  type RecipeStepInput,
  type ParameterValue,
  type RecipeCondition,
  type RecipeNumber,
  type RecipeValue,
  type TimeoutAction,
  type ConditionOperator,
  type ParameterRef,
} from "./recipes/recipe-schema";
export {
  validateRecipe,
  type RecipeValidationOptions,
  type RecipeLimits,
  type RecipeResolver,
} from "./recipes/recipe-validation";
export type { RecipePlan, PlannedRecipe, PlannedStep } from "./recipes/recipe-plan";
export type { ProcessResult, RecipeProcess, TimingStats } from "./recipes/recipe-process";
export type { StartRecipeOptions } from "./recipes/recipe-executor";

// Operator authorization
export {
  Authorizer,
  PERMISSIONS,
  defaultRoleTable,
  type AuthorizationContext,
  type AuthorizerOptions,
  type DefaultRoleTableOptions,
  type Permission,
  type PermissionGrant,
  type Principal,
  type RoleTable,
} from "./security/authorization";

// Ports a host passes in (their detail types are in "@kiln/core/driver-kit")
export type { Clock, DriverStatus, LogMethod, Logger, PlcDriver, Store, TimerHandle } from "./ports/index";
