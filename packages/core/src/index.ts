// @kiln/core: what a host application needs to compose and run a control system.
// Plugin authors (drivers, stores) import from "@kiln/core/driver-kit"; tests from "@kiln/core/testing".
// Everything else is internal. The API report (packages/core/api/index.api.md) shows every change.

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
export { SAMPLE_TIME_MAX, SAMPLE_TIME_MIN, type Sample } from "./domain/sample";
export {
  TAG_DATA_TYPES,
  TagCatalog,
  defineTags,
  interpolationOf,
  type Interpolation,
  type LoggingPolicy,
  type Tag,
  type TagDataType,
  type TagDefinitionInput,
  type TagValue,
} from "./domain/tags";
export type { CurrentValueTable, CurrentValueView, CvtChange, CvtObserver } from "./cvt/current-value-table";
export { NO_COMMUNICATION } from "./cvt/current-value-table";

// Composition and health
export { createControlSystem } from "./compose/create-control-system";
export {
  ControlSystem,
  type ControlSystemHealth,
  type MachineStateMachine,
  type StoredHistoryView,
  type UncheckedParts,
} from "./compose/control-system";
export type { ControlSystemOptions } from "./compose/control-system-options";
export type { PortBreakerSettings, PortHealth, PortPolicy, StorePolicies } from "./compose/port-policies";
export type { SystemState } from "./compose/system-lifecycle";
export type { RetryJitter, RetryPolicyOptions } from "./resilience/retry";
export type { Resolve, ServiceRegistry } from "./compose/service-registry";
export { Tokens } from "./compose/tokens";
export type { AcquisitionHealth, ScanGroupHealth } from "./acquisition/acquisition";
export type { OverflowPolicy, SampleLoggerHealth } from "./logging/sample-logger";
export type { StatsSummary } from "./stats/rolling-stats";
export type { CircuitBreakerSnapshot, CircuitState } from "./resilience/circuit-breaker";

// Events
export { EventBus, type EventHandler, type EventBusView } from "./events/event-bus";
export type { Disposer } from "./domain/disposer";
export type { BreakerState, KilnEventType, KilnEvents } from "./events/catalogue";

// Embedded defaults: simulated PLC, in-memory store and metrics, system clock, silent logger
export {
  SimulatedPlc,
  type SimulatedPlcFaults,
  type SimulatedPlcOptions,
  type SimulatedSource,
} from "./memory/simulated-plc";
export type { SignalSpec } from "./memory/signals";
export {
  MemoryStore,
  type MemoryStoreFaults,
  type MemoryStoreOptions,
  type MemoryStoreRetention,
  type MemoryStoreEviction,
  type MemoryStoreEvictions,
  type MemoryStorePort,
} from "./memory/memory-store";
export { MemoryMetrics, type MemoryMetricsOptions, type MetricSnapshot } from "./memory/memory-metrics";
export { SystemClock } from "./runtime/system-clock";
export { silentLogger } from "./runtime/silent-logger";

// Machine state models (a custom model runs on a StateMachine registered with `Tokens.Machine`)
export {
  StateMachine,
  defineMachineModel,
  type MachineModel,
  type MachineSnapshot,
  type MachineTransition,
  type StateMachineOptions,
} from "./fsm/state-machine";
export { kilnMachineModel, type KilnMachineCommand, type KilnMachineState } from "./fsm/kiln-machine-model";
export { packmlModel, type PackmlCommand, type PackmlState } from "./fsm/packml-model";

// Alarms (ISA-18.2)
export { computeAlarmKpis, type AlarmKpiOptions, type AlarmKpis } from "./alarms/alarm-kpis";
export { defineAlarms, type AlarmDefinitionInput, type AlarmKind, type AlarmPriority } from "./alarms/alarm-definition";
export { type AlarmShelveOptions, type AlarmSnapshot } from "./alarms/alarm-engine";
export { type AlarmStateName } from "./alarms/alarm-state";

// Recipes and processes
export { parseRecipe, type Recipe, type RecipeInput, type RecipeStepInput } from "./recipes/recipe-schema";
export { validateRecipe } from "./recipes/recipe-validation";
export {
  type ProcessProblem,
  type ProcessResult,
  type RecipeProcess,
  type TimingStats,
} from "./recipes/recipe-process";
export { type SafeStateWrite } from "./recipes/safe-state";
export { type StartRecipeOptions } from "./recipes/recipe-executor";

// Operator authorization
export {
  Authorizer,
  PERMISSIONS,
  defaultRoleTable,
  type DefaultRoleTableOptions,
  type Permission,
  type PermissionGrant,
  type Principal,
  type RoleTable,
} from "./security/authorization";

// Ports: the contracts a driver or store implements and a host may pass in
export { AGGREGATES, MAX_HISTORY_CELLS, MAX_HISTORY_INTERVALS, MAX_HISTORY_TAGS } from "./ports/sample-history";
export type {
  AggregateInterval,
  AggregateValue,
  AggregateName,
  AlarmHistory,
  AuditEntry,
  AuditLog,
  Clock,
  Counter,
  DriverStatus,
  EventStore,
  Gauge,
  Histogram,
  HistoryQueries,
  Logger,
  Metrics,
  PlcDriver,
  ProcessRecord,
  ProcessRepository,
  RecipeRepository,
  SampleHistory,
  SampleSink,
  Store,
} from "./ports/index";
