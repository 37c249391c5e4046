import type { TimeRange } from "./alarm-history";

/**
 * One audited command, allowed or denied: the auditable event of IEC 62443-3-3 CR 2.8
 * (category, type, source, event id, outcome, timestamp) plus who, what and the values.
 */
export interface AuditEntry {
  /**
   * The event id, unique per command. A store records an entry once per id: recording the same
   * id again is a no-op, so a retried record never duplicates an entry.
   */
  readonly id: string;
  /** The machine the command was issued on. */
  readonly machineId?: string;
  /** Who (principal id). */
  readonly principal: string;
  /** Their roles at the time. */
  readonly roles: readonly string[];
  /** The session or client the command came from, as the host identified it (e.g. `hmi-2/session-81f`). */
  readonly source?: string;
  /** The action category: `tag`, `recipe`, `alarm` or `machine`. */
  readonly category?: string;
  /** The action type (`tag.write`, `recipe.start`, `alarm.acknowledge`...). */
  readonly action: string;
  /** What it acted on (tag name, process id, alarm id). */
  readonly target: string;
  /** Value before, where it applies. */
  readonly oldValue?: unknown;
  /** Value requested, where it applies. */
  readonly newValue?: unknown;
  /** `allowed` and done, `denied` by authorization or a guard, or `failed` while executing. */
  readonly outcome: "allowed" | "denied" | "failed";
  /** Why it was denied or failed. */
  readonly reason?: string;
  /** When, ms since epoch. */
  readonly at: number;
  /**
   * The event id of an earlier entry this one is about. A command refused at its commit point
   * (`KILN_AUDIT_UNAVAILABLE`, or the system stopping) after its `allowed` entry (the intent) was
   * sent to the store is recorded as a second entry, `denied` or `failed`, with its own id and
   * `refersTo` naming the intent: the intent may still commit late, and the trail keeps both facts.
   * An entry referred to this way did not run (ADR 0013, addendum 2026-11); so did one a
   * `<id>:cancel` refers to (a start cancelled before its first effect). One a `<id>:fail`
   * refers to ran and then failed: `denied` when a check refused it before any effect, `failed`
   * when it may have acted in part (an interlock trip whose safe-state write the device refused
   * took place). The command's outcome is always the follow-up entry (review 15y, L7).
   *
   * So an `allowed` entry alone does not say the command ran: pair it by id first. A store that
   * commits an intent and then throws (the connection lost after the COMMIT, an error raised
   * after the row was written) or times out after committing leaves both `<id>` `allowed` and
   * `<id>:refusal` `denied` (`refersTo: "<id>"`) for a command that did not run; Kiln cannot tell
   * that from an intent never written, so it refuses and records the refusal (review 15e).
   */
  readonly refersTo?: string;
}

/** The append-only record of who did what. Entries come back in time order; ties in the order recorded. */
export interface AuditLog {
  /**
   * Appends one entry, once per `entry.id`: an entry whose id is already recorded is ignored
   * (resolves without changing anything), so a retry after an unknown outcome is safe. Throw only
   * when the entry was not recorded where you can: a store that commits and then throws makes
   * the command it records refused and leaves the intent beside its `<id>:refusal` (see
   * {@link AuditEntry.refersTo}); the trail stays true, but a reader must pair the two by id.
   * @throws KilnError `KILN_VALIDATION` for a malformed entry; `KILN_STORE_ERROR` (retryable
   *   when repeating may succeed) when the store cannot take it.
   */
  record(entry: AuditEntry): Promise<void>;
  /** Entries in `[from, to)`, oldest first. */
  query(range: TimeRange): Promise<AuditEntry[]>;
}
