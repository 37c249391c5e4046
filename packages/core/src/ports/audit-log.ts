import type { TimeRange } from "./alarm-history";

/** One audited command, allowed or denied. */
export interface AuditEntry {
  /** Who (principal id). */
  readonly principal: string;
  /** Their roles at the time. */
  readonly roles: readonly string[];
  /** The command (`tag.write`, `recipe.start`, `alarm.acknowledge`...). */
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
}

/** The append-only record of who did what. Entries come back in time order; ties in the order recorded. */
export interface AuditLog {
  /** Appends one entry. */
  record(entry: AuditEntry): Promise<void>;
  /** Entries in `[from, to)`, oldest first. */
  query(range: TimeRange): Promise<AuditEntry[]>;
}
