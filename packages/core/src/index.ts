export {
  KILN_ERROR_CODES,
  KilnError,
  KilnValidationError,
  isRetryable,
  type KilnErrorCode,
  type KilnErrorOptions,
  type ValidationIssue,
} from "./domain/errors";
export {
  GOOD,
  ModbusExceptions,
  QualityCodes,
  quality,
  qualityFromModbus,
  qualityFromStatusCode,
  severityOfStatusCode,
  type Quality,
  type QualitySeverity,
} from "./domain/quality";
export type { Sample } from "./domain/sample";
export {
  TAG_DATA_TYPES,
  TagCatalog,
  checkTagValue,
  defineTags,
  loggingPolicySchema,
  tagDefinitionSchema,
  type LoggingPolicy,
  type Tag,
  type TagDataType,
  type TagDefinitionInput,
  type TagValue,
} from "./domain/tags";
export { formatPath, issuesFromZod, parseOrThrow } from "./domain/validation";
export type { BreakerState, EventBase, KilnEventType, KilnEvents } from "./events/catalogue";
export { EventBus, type Disposer, type EventHandler, type EventTap } from "./events/event-bus";
export { createSignal, signalSpecSchema, type Signal, type SignalSpec } from "./memory/signals";
export {
  SimulatedPlc,
  type SimulatedPlcFaults,
  type SimulatedPlcOptions,
  type SimulatedSource,
  type SimulatedWrite,
} from "./memory/simulated-plc";
export { MemoryStore, MemoryStoreFaults, type MemoryStoreOptions } from "./memory/memory-store";
export {
  MemoryMetrics,
  type HistogramSummary,
  type MemoryMetricsOptions,
  type MetricSnapshot,
} from "./memory/memory-metrics";
export { CurrentValueTable, NO_COMMUNICATION, type CvtChange, type CvtObserver } from "./cvt/current-value-table";
export {
  Acquisition,
  type AcquisitionHealth,
  type AcquisitionOptions,
  type AcquisitionPolicy,
  type ScanGroupHealth,
  type ScanGroupSettings,
} from "./acquisition/acquisition";
export {
  FixedRateScheduler,
  type CycleInfo,
  type FixedRateSchedulerOptions,
  type OverrunInfo,
} from "./acquisition/fixed-rate-scheduler";
export type { StatsSummary } from "./acquisition/rolling-stats";
export { LoggingFilter } from "./logging/logging-filter";
export {
  SampleLogger,
  type OverflowPolicy,
  type SampleLoggerHealth,
  type SampleLoggerOptions,
  type SampleLoggerSettings,
} from "./logging/sample-logger";
export { SampleJournal, type JournalRecovery } from "./logging/sample-journal";
export {
  CallPolicy,
  CircuitBreaker,
  RETRY_JITTERS,
  backoffDelay,
  createRetryPolicy,
  isBreakerFailure,
  retry,
  withTimeout,
  type CallPolicyBreakerOptions,
  type CallPolicyOptions,
  type CircuitBreakerOptions,
  type CircuitBreakerSnapshot,
  type CircuitState,
  type CircuitStateChange,
  type RetryInfo,
  type RetryJitter,
  type RetryOptions,
  type RetryPolicy,
  type RetryPolicyOptions,
  type TimeoutOptions,
} from "./resilience/index";
export {
  StateMachine,
  defineMachineModel,
  kilnMachineModel,
  packmlModel,
  type GuardDenial,
  type GuardResult,
  type KilnMachineCommand,
  type KilnMachineState,
  type MachineModel,
  type MachineModelDefinition,
  type MachineSnapshot,
  type MachineTransition,
  type PackmlCommand,
  type PackmlState,
  type StateAction,
  type StateMachineOptions,
  type TransitionGuard,
  type TransitionListener,
  type TransitionRequest,
  type TransitionTable,
} from "./fsm/index";
export {
  ALARM_KINDS,
  ALARM_STATE_NAMES,
  AlarmEngine,
  computeAlarmKpis,
  defineAlarms,
  type AlarmDefinition,
  type AlarmDefinitionInput,
  type AlarmEngineOptions,
  type AlarmEngineStats,
  type AlarmKind,
  type AlarmKpiOptions,
  type AlarmKpis,
  type AlarmPrincipal,
  type AlarmPriority,
  type AlarmShelveOptions,
  type AlarmSnapshot,
  type AlarmState,
  type AlarmStateName,
} from "./alarms/index";
export {
  ControlSystem,
  createControlSystem,
  type ControlSystemHealth,
  type MachineStateMachine,
} from "./compose/control-system";
export {
  resolveControlSystemOptions,
  scanGroupSchema,
  type ControlSystemOptions,
  type ResolvedControlSystemOptions,
} from "./compose/control-system-options";
export type { Resolve, ServiceRegistry } from "./compose/service-registry";
export { Tokens } from "./compose/tokens";
export {
  SystemClock,
  silentLogger,
  sleepOn,
  type AlarmHistory,
  type AlarmHistoryEntry,
  type AuditEntry,
  type AuditLog,
  type BrowsedVariable,
  type BucketQuery,
  type Clock,
  type Counter,
  type DriverStatus,
  type DriverStatusChange,
  type EventStore,
  type Gauge,
  type Histogram,
  type LogMethod,
  type Logger,
  type MetricLabels,
  type Metrics,
  type NewDomainEvent,
  type PlcDriver,
  type PlcDriverCapabilities,
  type ProcessFilter,
  type ProcessRecord,
  type ProcessRepository,
  type ProcessStatus,
  type RecipeRepository,
  type SampleBucket,
  type SampleHistory,
  type SampleQuery,
  type SampleSink,
  type Store,
  type StoreCapabilities,
  type StoredDomainEvent,
  type StoredRecipe,
  type SubscriptionOptions,
  type TimeRange,
  type TimerHandle,
} from "./ports/index";
