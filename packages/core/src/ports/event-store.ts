/** An event to append: its type and JSON-serialisable payload. */
export interface NewDomainEvent {
  /** Event type name (kebab-case). */
  readonly type: string;
  /** JSON-serialisable payload. */
  readonly payload: Record<string, unknown>;
  /** When it happened, ms since epoch. */
  readonly at: number;
}

/** An event as stored: with its aggregate and its version in the aggregate's stream. */
export interface StoredDomainEvent extends NewDomainEvent {
  /** The aggregate (machine, process, alarm) id. */
  readonly aggregateId: string;
  /** 1-based position in the aggregate's stream. */
  readonly version: number;
}

/**
 * Append-only streams of domain events, one per aggregate, with optimistic concurrency.
 *
 * Contract: `append` succeeds only when the stream's current version equals
 * `expectedVersion` (0 for a new stream), and then writes all events or none. Otherwise it
 * rejects with `KILN_CONCURRENCY_CONFLICT` and writes nothing.
 */
export interface EventStore {
  /** The event store contract version. */
  readonly eventStoreApiVersion: "1";
  /** Appends `events` after `expectedVersion`; resolves with the new version. */
  append(aggregateId: string, expectedVersion: number, events: readonly NewDomainEvent[]): Promise<number>;
  /** Events of one aggregate in version order, from `fromVersion` (inclusive, default 1). */
  read(aggregateId: string, fromVersion?: number): Promise<StoredDomainEvent[]>;
  /** The current version of an aggregate's stream; 0 when it has none. */
  version(aggregateId: string): Promise<number>;
}
