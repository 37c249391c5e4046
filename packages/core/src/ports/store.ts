// The store's sub-ports are plugin-facing: their home is "@kiln/core/driver-kit" (ADR 0027).
import type {
  AlarmHistory,
  AuditLog,
  EventStore,
  HistoryQueries,
  ProcessRepository,
  RecipeRepository,
  SampleHistory,
  SampleSink,
  StoreCapabilities,
} from "@kiln/core/driver-kit";
import type { Tag } from "../domain/tags";

/**
 * Everything Kiln persists, behind one object: a store implements each port and is opened
 * and closed as one. `MemoryStore` is the embedded default; `PostgresStore` the durable one.
 */
export interface Store {
  /** The store contract version. */
  readonly storeApiVersion: "1";
  /** Optional features. */
  readonly capabilities: StoreCapabilities;
  /** Sample ingest (idempotent batches). */
  readonly samples: SampleSink & SampleHistory;
  /**
   * History queries with OPC UA Part 13 semantics; present exactly when `capabilities.aggregates`
   * is true (see docs/adr/0011-history-aggregates.md).
   */
  readonly history?: HistoryQueries;
  /** Domain event streams. */
  readonly events: EventStore;
  /** Processes, saved with their events. */
  readonly processes: ProcessRepository;
  /** Immutable recipe versions. */
  readonly recipes: RecipeRepository;
  /** Alarm transitions. */
  readonly alarms: AlarmHistory;
  /** The audit trail. */
  readonly audit: AuditLog;
  /**
   * Prepares the store (connect, migrate) and registers the tag catalog. Idempotent. Every
   * other operation before `open` or after `close` rejects with `KILN_LIFECYCLE`.
   */
  open(tags: readonly Tag[]): Promise<void>;
  /** Releases connections it owns. Idempotent. */
  close(): Promise<void>;
}
