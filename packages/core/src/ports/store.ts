import type { AlarmHistory } from "./alarm-history";
import type { AuditLog } from "./audit-log";
import type { EventStore } from "./event-store";
import type { ProcessRepository } from "./process-repository";
import type { RecipeRepository } from "./recipe-repository";
import type { HistoryQueries, SampleHistory } from "./sample-history";
import type { SampleSink } from "./sample-sink";
import type { Tag } from "../domain/tags";

/** Optional features of a store. */
export interface StoreCapabilities {
  /** `processes.save` is atomic with its events (a real transaction). */
  readonly transactions: boolean;
  /** `history` is present: per-interval aggregates, values at times and downsampled trends. */
  readonly aggregates: boolean;
}

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
