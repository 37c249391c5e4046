import type { AuditEntry } from "@kiln/core/driver-kit";
import type { Logger } from "../ports/logger";
import { OTHER_PRINCIPALS, OVERFLOW_NAMES, OVERFLOW_PRINCIPALS, type DenialOverflow } from "./audit-reserve-record";

/**
 * Denied and failed attempts that came while their share of the backlog was full: counted per
 * principal (at most {@link OVERFLOW_PRINCIPALS}, then one bucket for the rest), each summarized
 * into one entry once there is room.
 * Keyed by principal (the writer reads and writes it as the map it is).
 */
export class DenialOverflowCounts extends Map<string, DenialOverflow> {
  /** Told after an attempt is counted: the writer schedules its retry. */
  readonly #counted: () => void;
  readonly #logger: Logger;
  /** Makes the id a new bucket's summary entry takes (fix15p). */
  readonly #newId: () => string;

  constructor(counted: () => void, logger: Logger, newId: () => string) {
    super();
    this.#counted = counted;
    this.#logger = logger;
    this.#newId = newId;
  }

  /**
   * Counts `entry` into its principal's overflow bucket (in memory: the caller makes it durable);
   * `cause` says in words why it is counted instead of recorded (kept per bucket, reported in its summary).
   */
  countAttempt(entry: AuditEntry, cause: string): void {
    const key = this.has(entry.principal) || this.size < OVERFLOW_PRINCIPALS - 1 ? entry.principal : OTHER_PRINCIPALS;
    let overflow = this.get(key);
    if (overflow === undefined) {
      overflow = {
        id: this.#newId(),
        count: 0,
        first: entry.at,
        last: entry.at,
        principals: new Set(),
        morePrincipals: false,
        actions: new Set(),
        causes: new Set(),
      };
      this.set(key, overflow);
    }
    overflow.count++;
    this.#counted();
    overflow.first = Math.min(overflow.first, entry.at);
    overflow.last = Math.max(overflow.last, entry.at);
    if (overflow.principals.size < OVERFLOW_NAMES || overflow.principals.has(entry.principal)) {
      overflow.principals.add(entry.principal);
    } else overflow.morePrincipals = true;
    if (overflow.actions.size < OVERFLOW_NAMES) overflow.actions.add(entry.action);
    if (overflow.causes.size < OVERFLOW_NAMES) overflow.causes.add(cause);
    this.#logger.error(
      { id: entry.id, action: entry.action, outcome: entry.outcome, overflow: overflow.count, cause },
      "a denied or failed attempt is counted into the overflow summary instead of recorded",
    );
  }

  /**
   * Adds recovered counts (a reserve read back); returns how many attempts they hold. A merged
   * bucket takes the recovered one's id: a record written before holds that id with part of the
   * count, and its summary must carry it (fix15p); a bucket only in memory was never in a record.
   */
  merge(recovered: ReadonlyMap<string, DenialOverflow>): number {
    let count = 0;
    for (const [key, found] of recovered) {
      count += found.count;
      const overflow = this.get(key);
      if (overflow === undefined) {
        const { parts: _parts, ...bucket } = found;
        this.set(key, { ...bucket, id: found.id ?? this.#newId() });
        continue;
      }
      if (found.id !== undefined) overflow.id = found.id;
      overflow.count += found.count;
      overflow.first = Math.min(overflow.first, found.first);
      overflow.last = Math.max(overflow.last, found.last);
      for (const principal of found.principals) {
        if (overflow.principals.size < OVERFLOW_NAMES) overflow.principals.add(principal);
        else overflow.morePrincipals = true;
      }
      overflow.morePrincipals ||= found.morePrincipals;
      for (const action of found.actions) if (overflow.actions.size < OVERFLOW_NAMES) overflow.actions.add(action);
      for (const cause of found.causes) if (overflow.causes.size < OVERFLOW_NAMES) overflow.causes.add(cause);
    }
    return count;
  }
}
