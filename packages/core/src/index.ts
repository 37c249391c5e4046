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
export { RESTAMPED_REASON } from "./cvt/receipt-stamp";

// Composition and health
export { createControlSystem } from "./compose/create-control-system";
export {
  ControlSystem,
  STOP_CLOSE_MARGIN_MS,
  type ControlSystemHealth,
  type MachineStateMachine,
  type StoredHistoryView,
  type UncheckedParts,
} from "./compose/control-system";
export type { BackoffOptions, ControlSystemOptions } from "./compose/control-system-options";
export type { PortBreakerSettings, PortHealth, PortPolicy, StorePolicies } from "./compose/port-policies";
export type { SystemState } from "./compose/system-lifecycle";
export type { TagWriteOptions, TagWriter } from "./compose/checked-write";
export type { StorePortName } from "./resilience/guarded-ports";
export type { RetryJitter, RetryPolicyOptions } from "./resilience/retry";
export type { Resolve, ServiceRegistry, ServiceToken } from "./compose/service-registry";
export { Tokens } from "./compose/tokens";
export type { AcquisitionHealth, ScanGroupHealth } from "./acquisition/acquisition";
export type { OverflowPolicy, SampleLoggerHealth } from "./logging/sample-logger";
export type { StatsSummary } from "./stats/rolling-stats";
export type { CircuitBreakerSnapshot, CircuitState } from "./resilience/circuit-breaker";

// Events
export { EventBus, type EventHandler, type EventBusView, type EventTap } from "./events/event-bus";
export type { Disposer } from "./domain/disposer";
export type { BreakerState, EventBase, KilnEventType, KilnEvents } from "./events/catalogue";

// Embedded defaults: simulated PLC, in-memory store and metrics, system clock, silent logger
export {
  SimulatedPlc,
  type SimulatedPlcFaults,
  type SimulatedPlcOptions,
  type SimulatedSource,
  type SimulatedWrite,
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
export {
  MemoryMetrics,
  type HistogramSummary,
  type MemoryMetricsOptions,
  type MetricSnapshot,
} from "./memory/memory-metrics";
export { SystemClock } from "./runtime/system-clock";
export { silentLogger } from "./runtime/silent-logger";

// Machine state models (a custom model runs on a StateMachine registered with `Tokens.Machine`)
export {
  StateMachine,
  defineMachineModel,
  type MachineModel,
  type GuardDenial,
  type GuardResult,
  type MachineModelDefinition,
  type MachineSnapshot,
  type MachineTransition,
  type StateAction,
  type StateMachineOptions,
  type TransitionGuard,
  type TransitionListener,
  type TransitionRequest,
  type TransitionTable,
} from "./fsm/state-machine";
export {
  KILN_MACHINE_COMMANDS,
  KILN_MACHINE_STATES,
  kilnMachineModel,
  type KilnMachineCommand,
  type KilnMachineState,
} from "./fsm/kiln-machine-model";
export { PACKML_COMMANDS, PACKML_STATES, packmlModel, type PackmlCommand, type PackmlState } from "./fsm/packml-model";

// Alarms (ISA-18.2)
export {
  computeAlarmKpis,
  type AlarmFlood,
  type AlarmKpiOptions,
  type AlarmKpis,
  type AlarmRateBucket,
  type ChatteringAlarm,
} from "./alarms/alarm-kpis";
export {
  ALARM_KINDS,
  NUMERIC_ALARM_KINDS,
  defineAlarms,
  type AlarmDefinition,
  type AlarmDefinitionBase,
  type AlarmConditionContext,
  type AlarmDefinitionInput,
  type AlarmSuppressionCondition,
  type AlarmSuppressionPredicate,
  type AlarmSuppressionRule,
  type BooleanAlarmDefinition,
  type NumericAlarmDefinition,
  type NumericAlarmKind,
  type AlarmKind,
  type AlarmPriority,
} from "./alarms/alarm-definition";
export type { AlarmPendingDelay, AlarmShelveOptions, AlarmSnapshot } from "./alarms/alarm-engine";
export {
  ALARM_STATE_NAMES,
  type AcknowledgedAlarmState,
  type AlarmBaseState,
  type AlarmShelf,
  type AlarmState,
  type AlarmStateName,
  type AlarmSuppressionSource,
  type NormalAlarmState,
  type OutOfServiceAlarmState,
  type RtnUnacknowledgedAlarmState,
  type ShelvedAlarmState,
  type SuppressedAlarmState,
  type UnacknowledgedAlarmState,
} from "./alarms/alarm-state";

// Recipes and processes
export {
  CONDITION_OPERATORS,
  TIMEOUT_ACTIONS,
  parseRecipe,
  type CallStep,
  type ConditionOperator,
  type ParameterRef,
  type ParameterValue,
  type PulseStep,
  type RampStep,
  type Recipe,
  type RecipeInput,
  type RecipeNumber,
  type RecipeCondition,
  type RecipeStepInput,
  type RecipeValue,
  type SetStep,
  type TimeoutAction,
  type WaitStep,
  type WaitUntilStep,
} from "./recipes/recipe-schema";
export {
  validateRecipe,
  type RecipeLimits,
  type RecipeResolver,
  type RecipeValidationOptions,
} from "./recipes/recipe-validation";
export type { PlannedRecipe, PlannedStep, RecipePlan } from "./recipes/recipe-plan";
export {
  type ProcessProblem,
  type ProcessResult,
  type RecipeProcess,
  type TimingStats,
} from "./recipes/recipe-process";
export { type SafeStateWrite } from "./recipes/safe-state";
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

// Ports: the contracts a driver or store implements and a host may pass in
export { AGGREGATES, MAX_HISTORY_CELLS, MAX_HISTORY_INTERVALS, MAX_HISTORY_TAGS } from "./ports/sample-history";
export type {
  AggregateInterval,
  AggregateName,
  AggregateQuery,
  AggregateValue,
  AlarmHistory,
  AlarmHistoryEntry,
  AuditEntry,
  AuditLog,
  BrowsedVariable,
  BucketQuery,
  Clock,
  Counter,
  DownsampleQuery,
  DriverStatus,
  DriverStatusChange,
  EventStore,
  Gauge,
  Histogram,
  HistoryQueries,
  IntervalQuery,
  LogMethod,
  Logger,
  MetricLabels,
  Metrics,
  NewDomainEvent,
  PlcDriver,
  PlcDriverCapabilities,
  ProcessFilter,
  ProcessRecord,
  ProcessRepository,
  ProcessStatus,
  RecipeRepository,
  SampleBucket,
  SampleConflict,
  SampleHistory,
  SampleQuery,
  SampleSink,
  SampleWriteResult,
  Store,
  StoreCapabilities,
  StoredDomainEvent,
  StoredRecipe,
  SubscriptionOptions,
  TimeRange,
  TimerHandle,
} from "./ports/index";
