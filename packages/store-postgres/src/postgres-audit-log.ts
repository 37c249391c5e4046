import { type AuditEntry, type AuditLog } from "@kiln/core/driver-kit";
import { type TimeRange } from "@kiln/core/driver-kit";
import { checkTimeRange, IssueCollector } from "./input-checks";
import { arrayLiteral } from "./sql-array";
import { jsonText, millisecondsOf, parseJsonText, timestampOf } from "./sql-expressions";
import type { StoreContext } from "./store-context";

const OUTCOMES: ReadonlySet<string> = new Set(["allowed", "denied", "failed"]);

interface AuditRow {
  readonly id: string;
  readonly event_id: string | null;
  readonly refers_to: string | null;
  readonly machine_id: string | null;
  readonly source: string | null;
  readonly category: string | null;
  readonly principal: string;
  readonly roles: string;
  readonly action: string;
  readonly target: string;
  readonly old_value: string | null;
  readonly new_value: string | null;
  readonly outcome: AuditEntry["outcome"];
  readonly reason: string | null;
  readonly at: number;
}

/**
 * The append-only audit trail in the `audit_log` table, returned in time order (ties in
 * insertion order). Old and new values are stored as `jsonb` (a bigint as its decimal string).
 * An entry is recorded once per `id` (a unique `event_id`; a repeat is ignored); `refersTo` is
 * kept in `refers_to`. Text the
 * database cannot hold (a NUL character) is refused with a non-retryable `KILN_STORE_ERROR`,
 * which the audited command runner reports and skips.
 */
export class PostgresAuditLog implements AuditLog {
  readonly #context: StoreContext;

  constructor(context: StoreContext) {
    this.#context = context;
  }

  /** Appends one entry. */
  async record(entry: AuditEntry): Promise<void> {
    this.#context.client();
    const issues = new IssueCollector();
    if (typeof entry !== "object" || entry === null) issues.add("", "must be an audit entry");
    else {
      for (const field of ["id", "principal", "action", "target"] as const) issues.string(field, entry[field]);
      for (const field of ["machineId", "source", "category", "refersTo"] as const) {
        issues.optionalString(field, entry[field]);
      }
      if (!Array.isArray(entry.roles)) issues.add("roles", "must be an array of strings");
      else entry.roles.forEach((role, index) => issues.string(`roles[${index}]`, role));
      if (!OUTCOMES.has(entry.outcome)) issues.add("outcome", "must be allowed, denied or failed");
      issues.optionalString("reason", entry.reason);
      issues.finite("at", entry.at);
    }
    issues.throwIfAny("audit entry");
    await this.#context.run("audit.record", (client) =>
      client.query(
        `INSERT INTO ${this.#context.table("audit_log")}
           (principal, roles, action, target, old_value, new_value, outcome, reason, at,
            event_id, machine_id, source, category, refers_to)
         VALUES ($1, $2::text::text[], $3, $4, $5::text::jsonb, $6::text::jsonb, $7, $8, ${timestampOf("$9")},
                 $10, $11, $12, $13, $14)
         ON CONFLICT (event_id) DO NOTHING`,
        [
          entry.principal,
          arrayLiteral(entry.roles),
          entry.action,
          entry.target,
          jsonText(entry.oldValue),
          jsonText(entry.newValue),
          entry.outcome,
          entry.reason ?? null,
          entry.at,
          entry.id,
          entry.machineId ?? null,
          entry.source ?? null,
          entry.category ?? null,
          entry.refersTo ?? null,
        ],
      ),
    );
  }

  /**
   * Entries in `[from, to)`, oldest first; entries of the same time in the order recorded (the
   * row's identity column, assigned at insert; the command runner records one entry at a time).
   * The columns are qualified: a bare `id` in ORDER BY would name the selected `id::text`.
   */
  async query(range: TimeRange): Promise<AuditEntry[]> {
    this.#context.client();
    checkTimeRange(range, "time range");
    if (range.from >= range.to) return [];
    const rows = await this.#context.run("audit.query", (client) =>
      client.query<AuditRow>(
        `SELECT id::text AS id, event_id, refers_to, machine_id, source, category, principal, array_to_json(roles)::text AS roles, action, target, old_value::text AS old_value,
                new_value::text AS new_value, outcome, reason, ${millisecondsOf("at")} AS at
         FROM ${this.#context.table("audit_log")} AS log
         WHERE log.at >= ${timestampOf("$1")} AND log.at < ${timestampOf("$2")}
         ORDER BY log.at, log.id`,
        [range.from, range.to],
      ),
    );
    return rows.rows.map((row) => ({
      id: row.event_id ?? `legacy-${row.id}`,
      ...(row.machine_id === null ? {} : { machineId: row.machine_id }),
      principal: row.principal,
      roles: parseJsonText(row.roles) as string[],
      ...(row.source === null ? {} : { source: row.source }),
      ...(row.category === null ? {} : { category: row.category }),
      action: row.action,
      target: row.target,
      ...(row.old_value === null ? {} : { oldValue: parseJsonText(row.old_value) }),
      ...(row.new_value === null ? {} : { newValue: parseJsonText(row.new_value) }),
      outcome: row.outcome,
      ...(row.reason === null ? {} : { reason: row.reason }),
      at: row.at,
      ...(row.refers_to === null ? {} : { refersTo: row.refers_to }),
    }));
  }
}
