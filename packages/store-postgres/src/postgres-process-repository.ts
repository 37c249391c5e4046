import { type ProcessRecord, type ProcessRepository } from "@kiln/core/driver-kit";
import { type NewDomainEvent, type ProcessFilter, type ProcessStatus } from "@kiln/core/driver-kit";
import { appendEvents, checkAppend } from "./postgres-event-store";
import { IssueCollector } from "./input-checks";
import { arrayLiteral } from "./sql-array";
import { jsonText, millisecondsOf, parseJsonText, timestampOf } from "./sql-expressions";
import type { StoreContext } from "./store-context";

const STATUSES: ReadonlySet<string> = new Set<ProcessStatus>([
  "created",
  "running",
  "paused",
  "completed",
  "aborted",
  "failed",
  "interrupted",
]);

interface ProcessRow {
  readonly id: string;
  readonly machine_id: string;
  readonly recipe_name: string;
  readonly recipe_version: number;
  readonly parameters: string;
  readonly status: ProcessStatus;
  readonly created_at: number;
  readonly started_at: number | null;
  readonly ended_at: number | null;
  readonly last_completed_step: string | null;
  readonly reason: string | null;
  readonly version: number;
}

/**
 * Processes in the `processes` table, saved in one transaction with the events appended to the
 * process's stream in `events`. The saved record's `version` is the stream version after the
 * append.
 */
export class PostgresProcessRepository implements ProcessRepository {
  readonly #context: StoreContext;

  constructor(context: StoreContext) {
    this.#context = context;
  }

  /** Appends `events` and upserts `record` atomically, when the stream is at `expectedVersion`. */
  async save(record: ProcessRecord, events: readonly NewDomainEvent[], expectedVersion: number): Promise<number> {
    this.#context.client();
    checkRecord(record);
    checkAppend(record.id, expectedVersion, events);
    return this.#context.run("processes.save", (client) =>
      client.transaction(async (transaction) => {
        const version = await appendEvents(
          transaction,
          this.#context.table("events"),
          record.id,
          expectedVersion,
          events,
        );
        await transaction.query(
          `INSERT INTO ${this.#context.table("processes")} (id, machine_id, recipe_name, recipe_version, parameters,
             status, created_at, started_at, ended_at, last_completed_step, reason, version)
           VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, ${timestampOf("$7")}, ${timestampOf("$8")},
             ${timestampOf("$9")}, $10, $11, $12)
           ON CONFLICT (id) DO UPDATE SET machine_id = excluded.machine_id, recipe_name = excluded.recipe_name,
             recipe_version = excluded.recipe_version, parameters = excluded.parameters, status = excluded.status,
             created_at = excluded.created_at, started_at = excluded.started_at, ended_at = excluded.ended_at,
             last_completed_step = excluded.last_completed_step, reason = excluded.reason,
             version = excluded.version, updated_at = now()`,
          [
            record.id,
            record.machineId,
            record.recipe.name,
            record.recipe.version,
            jsonText(record.parameters),
            record.status,
            record.createdAt,
            record.startedAt ?? null,
            record.endedAt ?? null,
            record.lastCompletedStep ?? null,
            record.reason ?? null,
            version,
          ],
        );
        return version;
      }),
    );
  }

  /** The process with that id, or undefined. */
  async get(id: string): Promise<ProcessRecord | undefined> {
    this.#context.client();
    if (typeof id !== "string") throw new TypeError("id must be a string");
    const rows = await this.#context.run("processes.get", (client) =>
      client.query<ProcessRow>(`${this.#select()} WHERE id = $1`, [id]),
    );
    const row = rows.rows[0];
    return row === undefined ? undefined : toRecord(row);
  }

  /** Processes matching `filter`, oldest first (ties by id). */
  async list(filter: ProcessFilter = {}): Promise<ProcessRecord[]> {
    this.#context.client();
    const issues = new IssueCollector();
    issues.optionalString("machineId", filter.machineId);
    if (filter.status !== undefined && !Array.isArray(filter.status)) issues.add("status", "must be an array");
    issues.throwIfAny("process filter");
    const rows = await this.#context.run("processes.list", (client) =>
      client.query<ProcessRow>(
        `${this.#select()}
         WHERE ($1::text IS NULL OR machine_id = $1::text)
           AND ($2::text IS NULL OR status = ANY($2::text::text[]))
         ORDER BY created_at, id COLLATE "C"`,
        [filter.machineId ?? null, filter.status === undefined ? null : arrayLiteral(filter.status)],
      ),
    );
    return rows.rows.map(toRecord);
  }

  #select(): string {
    return `SELECT id, machine_id, recipe_name, recipe_version, parameters::text AS parameters, status,
              ${millisecondsOf("created_at")} AS created_at, ${millisecondsOf("started_at")} AS started_at,
              ${millisecondsOf("ended_at")} AS ended_at, last_completed_step, reason, version
            FROM ${this.#context.table("processes")}`;
  }
}

function checkRecord(record: ProcessRecord): void {
  if (typeof record !== "object" || record === null) throw new TypeError("record must be a process record object");
  const issues = new IssueCollector();
  issues.string("id", record.id);
  issues.string("machineId", record.machineId);
  if (typeof record.recipe !== "object" || record.recipe === null) issues.add("recipe", "must be an object");
  else {
    issues.string("recipe.name", record.recipe.name);
    issues.integer("recipe.version", record.recipe.version, 1);
  }
  issues.record("parameters", record.parameters);
  if (!STATUSES.has(record.status)) issues.add("status", `must be one of ${[...STATUSES].join(", ")}`);
  issues.finite("createdAt", record.createdAt);
  issues.optionalFinite("startedAt", record.startedAt);
  issues.optionalFinite("endedAt", record.endedAt);
  issues.optionalString("lastCompletedStep", record.lastCompletedStep);
  issues.optionalString("reason", record.reason);
  issues.throwIfAny("process record");
}

function toRecord(row: ProcessRow): ProcessRecord {
  return {
    id: row.id,
    machineId: row.machine_id,
    recipe: { name: row.recipe_name, version: row.recipe_version },
    parameters: parseJsonText(row.parameters) as Record<string, unknown>,
    status: row.status,
    createdAt: row.created_at,
    ...(row.started_at === null ? {} : { startedAt: row.started_at }),
    ...(row.ended_at === null ? {} : { endedAt: row.ended_at }),
    ...(row.last_completed_step === null ? {} : { lastCompletedStep: row.last_completed_step }),
    ...(row.reason === null ? {} : { reason: row.reason }),
    version: row.version,
  };
}
