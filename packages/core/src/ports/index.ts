export type { AlarmHistory, AlarmHistoryEntry, TimeRange } from "./alarm-history";
export type { AuditEntry, AuditLog } from "./audit-log";
export type { Clock, TimerHandle } from "./clock";
export type { EventStore, NewDomainEvent, StoredDomainEvent } from "./event-store";
export type { LogMethod, Logger } from "./logger";
export type { Counter, Gauge, Histogram, MetricLabels, Metrics } from "./metrics";
export type { DriverStatus, PlcDriver } from "./plc-driver";
export type {
  BrowsedVariable,
  DriverStatusChange,
  PlcDriverCapabilities,
  SubscriptionOptions,
} from "./plc-driver-types";
export type { ProcessFilter, ProcessRecord, ProcessRepository, ProcessStatus } from "./process-repository";
export type { RecipeRepository, StoredRecipe } from "./recipe-repository";
export type {
  AggregateInterval,
  AggregateName,
  AggregateQuery,
  AggregateValue,
  BucketQuery,
  DownsampleQuery,
  HistoryQueries,
  IntervalQuery,
  SampleBucket,
  SampleHistory,
  SampleQuery,
  ValueAtTime,
} from "./sample-history";
export type { SampleConflict, SampleSink, SampleWriteResult } from "./sample-sink";
export type { Store } from "./store";
export type { StoreCapabilities } from "./store-capabilities";
