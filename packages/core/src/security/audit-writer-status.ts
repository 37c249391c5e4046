/** The audit writer's state, as `ControlSystem.health().audit` reports it. */
export interface AuditWriterStatus {
  /** Entries waiting to be recorded (journaled or in memory). */
  readonly backlog: number;
  /** Entries dropped unstored since construction (backlog full, a stop without a journal, journal damage). */
  readonly dropped: number;
  /** Entries skipped: refused for good by the store, or set aside (below); each kept in `<journal>.set-aside` when it can be. */
  readonly skipped: number;
  /** Skipped entries that could not be kept in `<journal>.set-aside` (no journal, or the append failed). */
  readonly skippedNotKept: number;
  /** Entries set aside because they kept failing while the store took other entries. */
  readonly setAside: number;
  /**
   * Entries that were set aside (or refused) after their store call timed out, and whose abandoned
   * call then landed: the store has them, so they are not in `skipped` or `setAside` (fix15ak);
   * each reported by `audit-entry-stored-late`.
   */
  readonly storedLate: number;
  /**
   * Refusals of offered intents (`<id>:refusal`) dropped unstored, each reported by
   * `audit-refusal-drop`: the trail may show those commands `allowed`; they did not run.
   */
  readonly refusalsDropped: number;
  /**
   * Entries of commands issued while the control system was stopped (refused `KILN_LIFECYCLE`),
   * since the last stop (reset by the next start): the audit store and journal are closed then,
   * so each was reported by `audit-entry-drop` at once, not held (counted in `dropped` too).
   */
  readonly droppedWhileStopped: number;
  /**
   * Entries dropped at the last stop (reset by the next start; counted in `dropped` too), each
   * reported by `audit-entry-drop` before `stop()` returned: held only in memory when the stop closed
   * the audit writer (the store had not taken them, or its budget for the close ran out), or of an action that
   * acted during the stop and reached the writer after it closed (fix15x).
   */
  readonly droppedAtStop: number;
  /**
   * Denied or failed attempts counted while the backlog was full (or the journal could not take
   * them, a full disk) and not yet in an `audit.overflow` summary entry (recovered from
   * `<journal>.reserve` after a crash).
   */
  readonly overflow: number;
  /**
   * Of {@link overflow}, the attempts whose count is only in memory: neither the last
   * `<journal>.reserve` record written nor a journaled `audit.overflow` summary holds it (the
   * reserve's rewrite and the journal's append both failed, or there is no journal). A crash would
   * lose them unreported; with a journal, their refused commands are answered only once the count
   * is durable, so they wait meanwhile (fix15r, ADR 0013). 0 while every count is durable.
   */
  readonly overflowMemoryOnly: number;
  /**
   * Entries held as counts because the backlog was full (kept beyond it before: the system's own
   * entries, safety functions, follow-ups), not yet in the `audit.coalesce` summaries they become
   * once it has room (adversarial review adv15p, M3).
   */
  readonly coalesced: number;
  /**
   * The journal failures in force, in words: the journal could not be opened (retried on the
   * backoff), an append failed (the errno, e.g. `ENOSPC`, and the path), or its reserve could not
   * be written; each with how many entries its reserve holds and how many are only in memory.
   * An open or append failure stays named until every entry it left held only in memory is
   * journaled, so an empty list never hides entries a crash would lose (issue 15).
   */
  readonly journalProblems: readonly string[];
  /**
   * Whether the backlog survives a restart: true with a journal (`backlog.path`) holding every
   * waiting entry; false without one, or while a journal failure leaves entries only in memory
   * (lost if the process dies; `journalProblems` counts them). Not a problem by itself.
   */
  readonly durableBacklog: boolean;
  /**
   * When the store last failed to take an entry (the runner's clock, ms), while it has taken none
   * since: commands do not call it meanwhile; the background retry probes it.
   */
  readonly storeFailingSince?: number;
  /**
   * When the store last took an entry (the runner's clock, ms); absent before the first. Health
   * counts "has not taken an entry for N s" from it (issue 15), and says the backlog waits for
   * the store, not that the store is taking it, when none was taken since the oldest waiting entry came.
   */
  readonly storeTookAt?: number;
  /** How long the oldest waiting entry has waited, in ms, when the backlog holds one. */
  readonly waitingMs?: number;
  /** Waiting entries reported by `audit-record-fail` (the store failed, or the runner was closed, when they came). */
  readonly reportedWaiting: number;
  /**
   * Refused commands' entries waiting for a place in the denial lane (at most 4 refused entries
   * are recorded at a time; their commands answer once theirs is recorded; at most the backlog's
   * free denied share waits, beyond it refusals are counted into the overflow). Not in `backlog`.
   */
  readonly queued: number;
  /** How long the oldest of the {@link queued} entries has waited, in ms, when there is one. */
  readonly queuedWaitingMs?: number;
  /** The entry at the head of the backlog when it has failed: its event id, failures counted and the last error. */
  readonly blockedBy?: { readonly id: string; readonly failures: number; readonly error: string };
}
