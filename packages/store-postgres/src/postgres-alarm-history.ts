import { type AlarmHistory } from "@kiln/core/driver-kit";
import { type AlarmHistoryEntry, type TimeRange } from "@kiln/core/driver-kit";
import { checkTimeRange, IssueCollector } from "./input-checks";
import { jsonText, millisecondsOf, parseJsonText, timestampOf } from "./sql-expressions";
import type { StoreContext } from "./store-context";

interface AlarmRow {
  readonly alarm_id: string;
  readonly tag: string;
  readonly kind: string;
  readonly priority: number;
  readonly from_state: string;
  readonly to_state: string;
  readonly cause: string;
  readonly value: string | null;
  readonly principal: string | null;
  readonly at: number;
}

/** Alarm transitions in the `alarm_history` table, returned in time order (ties in insertion order). */
export class PostgresAlarmHistory implements AlarmHistory {
  readonly #context: StoreContext;

  constructor(context: StoreContext) {
    this.#context = context;
  }

  /** Appends one transition. */
  async record(entry: AlarmHistoryEntry): Promise<void> {
    this.#context.client();
    const issues = new IssueCollector();
    if (typeof entry !== "object" || entry === null) issues.add("", "must be an alarm history entry");
    else {
      for (const field of ["alarmId", "tag", "kind", "from", "to", "cause"] as const)
        issues.string(field, entry[field]);
      issues.integer("priority", entry.priority, 0);
      const value = entry.value as unknown;
      if (value !== undefined && value !== null && typeof value !== "number" && typeof value !== "boolean") {
        issues.add("value", "must be a number, boolean or null when present");
      }
      issues.optionalString("principal", entry.principal);
      issues.finite("at", entry.at);
    }
    issues.throwIfAny("alarm history entry");
    await this.#context.run("alarms.record", (client) =>
      client.query(
        `INSERT INTO ${this.#context.table("alarm_history")}
           (alarm_id, tag, kind, priority, from_state, to_state, cause, value, principal, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb, $9, ${timestampOf("$10")})`,
        [
          entry.alarmId,
          entry.tag,
          entry.kind,
          entry.priority,
          entry.from,
          entry.to,
          entry.cause,
          jsonText(entry.value),
          entry.principal ?? null,
          entry.at,
        ],
      ),
    );
  }

  /** Transitions in `[from, to)`, oldest first. */
  async query(range: TimeRange): Promise<AlarmHistoryEntry[]> {
    this.#context.client();
    checkTimeRange(range, "time range");
    if (range.from >= range.to) return [];
    const rows = await this.#context.run("alarms.query", (client) =>
      client.query<AlarmRow>(
        `SELECT alarm_id, tag, kind, priority, from_state, to_state, cause, value::text AS value, principal,
                ${millisecondsOf("at")} AS at
         FROM ${this.#context.table("alarm_history")}
         WHERE at >= ${timestampOf("$1")} AND at < ${timestampOf("$2")}
         ORDER BY at, id`,
        [range.from, range.to],
      ),
    );
    return rows.rows.map((row) => ({
      alarmId: row.alarm_id,
      tag: row.tag,
      kind: row.kind,
      priority: row.priority,
      from: row.from_state,
      to: row.to_state,
      cause: row.cause,
      ...(row.value === null ? {} : { value: parseJsonText(row.value) as number | boolean | null }),
      ...(row.principal === null ? {} : { principal: row.principal }),
      at: row.at,
    }));
  }
}
