import { KilnError } from "@kiln/core";
import { type EventStore } from "@kiln/core/driver-kit";
import { type NewDomainEvent, type StoredDomainEvent } from "@kiln/core/driver-kit";
import { invalid, IssueCollector } from "./input-checks";
import { sqlStateOf, UNIQUE_VIOLATION } from "./postgres-error";
import { arrayLiteral } from "./sql-array";
import type { SqlQueryable } from "./sql-client";
import { jsonText, millisecondsOf, parseJsonText, timestampOf } from "./sql-expressions";
import type { StoreContext } from "./store-context";

interface EventRow {
  readonly version: number;
  readonly type: string;
  readonly payload: string;
  readonly at: number;
}

/**
 * Domain event streams in the `events` table, one per aggregate, with optimistic concurrency:
 * the unique (aggregate_id, version) constraint settles concurrent appends, and the loser gets
 * `KILN_CONCURRENCY_CONFLICT` with nothing written.
 */
export class PostgresEventStore implements EventStore {
  /** The event store contract version. */
  readonly eventStoreApiVersion = "1";
  readonly #context: StoreContext;

  constructor(context: StoreContext) {
    this.#context = context;
  }

  /** Appends `events` in one transaction when the stream is at `expectedVersion`. */
  async append(aggregateId: string, expectedVersion: number, events: readonly NewDomainEvent[]): Promise<number> {
    this.#context.client();
    checkAppend(aggregateId, expectedVersion, events);
    return this.#context.run("events.append", (client) =>
      client.transaction((transaction) =>
        appendEvents(transaction, this.#context.table("events"), aggregateId, expectedVersion, events),
      ),
    );
  }

  /** Events of one aggregate in version order, from `fromVersion` (inclusive). */
  async read(aggregateId: string, fromVersion = 1): Promise<StoredDomainEvent[]> {
    this.#context.client();
    checkAggregateId(aggregateId);
    if (!Number.isInteger(fromVersion)) {
      throw invalid("event read", "fromVersion", "must be an integer");
    }
    const rows = await this.#context.run("events.read", (client) =>
      client.query<EventRow>(
        `SELECT version, type, payload::text AS payload, ${millisecondsOf("at")} AS at
         FROM ${this.#context.table("events")}
         WHERE aggregate_id = $1 AND version >= $2
         ORDER BY version`,
        [aggregateId, fromVersion],
      ),
    );
    return rows.rows.map((row) => ({
      aggregateId,
      version: row.version,
      type: row.type,
      payload: parseJsonText(row.payload) as Record<string, unknown>,
      at: row.at,
    }));
  }

  /** The stream's current version; 0 when it has no events. */
  async version(aggregateId: string): Promise<number> {
    this.#context.client();
    checkAggregateId(aggregateId);
    return this.#context.run("events.version", (client) =>
      currentVersion(client, this.#context.table("events"), aggregateId),
    );
  }
}

/** Programmer mistake, as in the in-memory store: the aggregate id must be a non-empty string. */
export function checkAggregateId(aggregateId: unknown): void {
  if (typeof aggregateId !== "string" || aggregateId === "") {
    throw new TypeError("aggregateId must be a non-empty string");
  }
}

/** Checks append arguments. @throws TypeError for the id, KilnValidationError for the rest. */
export function checkAppend(aggregateId: unknown, expectedVersion: unknown, events: readonly NewDomainEvent[]): void {
  checkAggregateId(aggregateId);
  if (!Array.isArray(events)) throw new TypeError("events must be an array");
  const issues = new IssueCollector();
  issues.integer("expectedVersion", expectedVersion, 0);
  events.forEach((event: NewDomainEvent | null | undefined, index) => {
    if (typeof event !== "object" || event === null) {
      issues.add(`events[${index}]`, "must be an event object");
      return;
    }
    issues.string(`events[${index}].type`, event.type);
    issues.record(`events[${index}].payload`, event.payload);
    issues.finite(`events[${index}].at`, event.at);
  });
  issues.throwIfAny("event append");
}

async function currentVersion(client: SqlQueryable, table: string, aggregateId: string): Promise<number> {
  const rows = await client.query<{ version: number }>(
    `SELECT coalesce(max(version), 0)::int4 AS version FROM ${table} WHERE aggregate_id = $1`,
    [aggregateId],
  );
  return rows.rows[0]?.version ?? 0;
}

function conflict(aggregateId: string, expectedVersion: number, actualVersion: number | undefined): KilnError {
  const actual = actualVersion === undefined ? "" : ` is at version ${actualVersion},`;
  return new KilnError(
    "KILN_CONCURRENCY_CONFLICT",
    `The event stream "${aggregateId}"${actual} not at version ${expectedVersion}: reload it and retry.`,
    {
      details:
        actualVersion === undefined
          ? { aggregateId, expectedVersion }
          : { aggregateId, expectedVersion, actualVersion },
    },
  );
}

/**
 * Appends `events` to a stream inside the caller's transaction, when the stream is at
 * `expectedVersion`; resolves with the new version. Rejects with `KILN_CONCURRENCY_CONFLICT`
 * otherwise, including when a concurrent append wins the race for the same versions (its
 * unique violation), so the caller's transaction rolls back and nothing is written.
 */
export async function appendEvents(
  transaction: SqlQueryable,
  table: string,
  aggregateId: string,
  expectedVersion: number,
  events: readonly NewDomainEvent[],
): Promise<number> {
  const actual = await currentVersion(transaction, table, aggregateId);
  if (actual !== expectedVersion) throw conflict(aggregateId, expectedVersion, actual);
  if (events.length === 0) return expectedVersion;
  try {
    await transaction.query(
      `INSERT INTO ${table} (aggregate_id, version, type, payload, at)
       SELECT $1, version, type, payload::jsonb, ${timestampOf("at")}
       FROM unnest($2::text::int4[], $3::text::text[], $4::text::text[], $5::text::float8[])
            AS input (version, type, payload, at)`,
      [
        aggregateId,
        arrayLiteral(events.map((_event, index) => expectedVersion + index + 1)),
        arrayLiteral(events.map((event) => event.type)),
        arrayLiteral(events.map((event) => jsonText(event.payload))),
        arrayLiteral(events.map((event) => event.at)),
      ],
    );
  } catch (error) {
    if (sqlStateOf(error) === UNIQUE_VIOLATION) throw conflict(aggregateId, expectedVersion, undefined);
    throw error;
  }
  return expectedVersion + events.length;
}
