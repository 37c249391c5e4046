export { isLogger, type LogMethod, type Logger } from "../ports/logger";
export { abortError, onAbort, raceAbort, untilAbort } from "./abort";
export { MAX_DRIVER_DURATION_MS, checkBackoff, reconnectDelay, type ReconnectBackoff } from "./backoff";
export type { RetryInfo, RetryJitter, RetryPolicyOptions } from "../resilience/retry";
// For adapters that write into a Store themselves (a Sparkplug host): the port policy composition
// applies to a control system's own ingest, so no adapter writes its own retry loop (principle 5).
export { guardIngest, type GuardedIngest } from "./guarded-ingest";
export type { PortBreakerSettings, PortPolicy } from "../compose/port-policies";
export type { PortCall } from "../resilience/guarded-ports";
export { deadlineSignal, signalTimeLeft, type DeadlineSignalOptions } from "../resilience/signal-deadline";
export { coerceToTagType, type TagTypeCoercion } from "./coerce-to-tag-type";
export { ConnectionLifecycle, type ConnectionLifecycleOptions, type ReconnectOptions } from "./connection-lifecycle";
export { TagListCache } from "./tag-list-cache";
export { endpointUrlHost } from "./url-host";
export { afterEventLoopTurn } from "./event-loop-turn";
export {
  EndpointHealth,
  type EndpointHealthOptions,
  type EndpointHealthSnapshot,
  type EndpointState,
} from "./endpoint-health";
export type { Disposer } from "../domain/disposer";
export {
  KilnError,
  KilnValidationError,
  isRetryable,
  type KilnErrorCode,
  type KilnErrorOptions,
  type ValidationIssue,
} from "../domain/errors";
export {
  GOOD,
  QualityCodes,
  quality,
  qualityFromStatusCode,
  severityOfStatusCode,
  type Quality,
  type QualitySeverity,
} from "../domain/quality";
export { FLOAT32_MAX, checkTagValue } from "../domain/tags";
export { auditedTarget } from "../security/command-input";
export { auditablePrincipalId } from "../security/authorization";

// For adapters with a durable backlog (an MQTT edge node's store-and-forward): the crash-safe
// journal behind the sample spool, so no adapter writes a journal of its own.
export {
  DEFAULT_JOURNAL_MAX_BYTES,
  JOURNAL_DAMAGED_COPY_MAX_BYTES,
  JOURNAL_FILE_HEADER_BYTES,
  JOURNAL_MARK_EVERY_RELEASES,
  RecordJournal,
  type RecordJournalOptions,
  type RecordJournalRecovery,
  type RecordJournalReleaseOptions,
} from "../journal/record-journal";
export { JournalLock, type JournalLockOwner } from "../journal/journal-lock";
export { issuesFromZod, parseOrThrow } from "../domain/validation";

// For simulators: the signal generators SimulatedPlc uses, to drive a protocol simulator's values.
export { createSignal, signalSpecSchema, type Signal, type SignalSpec } from "../memory/signals";

// For store authors: input checks and the OPC UA Part 13 reference logic behind every store's history.
export { AGGREGATES, MAX_HISTORY_CELLS, MAX_HISTORY_INTERVALS, MAX_HISTORY_TAGS } from "../ports/sample-history";
export {
  checkAggregateQuery,
  checkDownsampleQuery,
  checkIntervalQuery,
  checkValueAtQuery,
  checkValuesAtQuery,
  inRequestedOrder,
  refuseArrayTags,
  type CheckedAggregateQuery,
  type CheckedDownsampleQuery,
  type CheckedIntervalQuery,
  type CheckedIntervals,
  type CheckedValueAtQuery,
  type CheckedValuesAtQuery,
} from "../history/history-input";
export {
  HISTORY_ARITHMETIC_LIMIT,
  HISTORY_GOOD,
  HISTORY_IMPRECISE,
  HISTORY_NO_DATA,
  HISTORY_OVERFLOW,
  HISTORY_UNCERTAIN,
  boundingValue,
  finishAggregates,
  isHuge,
  isImprecise,
  larger,
  segmentArea,
  smaller,
  type Bound,
  type BoundingSamples,
  type HistoryNumber,
  type HistoryPoint,
  type IntervalPartials,
  type OuterBounds,
} from "../history/part13-aggregates";
export {
  aggregateSeries,
  downsampleSeries,
  isGoodData,
  numericValue,
  samplePoint,
  valueAtInSeries,
  valuesAtInSeries,
  valueAtTime,
  valuesInSeries,
  valueFromBounds,
  type SamplePoint,
  type SampleSeries,
} from "../history/series-history";
export {
  TAG_ARRAY_LENGTH_MAX,
  formatTagValue,
  interpolationOf,
  sameTagValue,
  type Interpolation,
  type LoggingDeadband,
  type LoggingPolicy,
  type Tag,
  type TagDataType,
  type TagArrayValue,
  type TagRange,
  type TagScalarValue,
  type TagValue,
} from "../domain/tags";
export { SAMPLE_TIME_MAX, SAMPLE_TIME_MIN, checkSample, sameSamplePayload, type Sample } from "../domain/sample";

// The port detail types: what a driver, store or metrics implementation names and a host gets by
// inference. `PlcDriver`, `Store`, `Clock` and `Logger` themselves are in "@kiln/core" (ADR 0027).
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
  Counter,
  DownsampleQuery,
  DriverStatusChange,
  EventStore,
  Gauge,
  Histogram,
  HistoryQueries,
  IntervalQuery,
  MetricLabels,
  Metrics,
  NewDomainEvent,
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
  StoreCapabilities,
  StoredDomainEvent,
  StoredRecipe,
  SubscriptionOptions,
  TimeRange,
  ValueAtTime,
} from "../ports/index";
