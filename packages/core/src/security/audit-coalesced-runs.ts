import type { AuditEntry } from "@kiln/core/driver-kit";
import type { CoalescedRun } from "./audit-reserve-record";

/**
 * The kind entries are coalesced by: principal, its source (session) and roles (as a set), action,
 * target, outcome, and whether it is a follow-up (`refersTo`). A summary is stored with its first
 * entry's source and roles: entries of one principal from another session or with other roles are
 * another kind, never credited to the first's (fix15v, adv15u M2).
 */
function coalesceKey(entry: AuditEntry): string {
  return JSON.stringify([
    entry.principal,
    entry.source ?? null,
    [...new Set(entry.roles)].sort(),
    entry.action,
    entry.target,
    entry.outcome,
    entry.refersTo !== undefined,
  ]);
}

/**
 * Most kinds of entries coalesced at once while the backlog is full ({@link coalesceKey}); an
 * entry of a further kind is counted into the `audit.drop` tally and reported.
 */
export const COALESCED_KINDS = 16;

/**
 * The runs of entries coalesced while the audit backlog is full, one per kind
 * ({@link coalesceKey}), at most {@link COALESCED_KINDS}: what the writer turns into
 * `audit.coalesce` summaries once the backlog has room (adversarial review adv15p, M3).
 */
export class CoalescedRuns {
  /**
   * Entries that came while the backlog was full and would have been kept beyond `maxEntries`
   * (with `refuse-commands`: the system's own entries, safety functions, follow-ups such as
   * `:fail`): coalesced by kind (principal, action, target, outcome, follow-up or not), at most
   * {@link COALESCED_KINDS} kinds, each becoming one `audit.coalesce` summary entry once the
   * backlog has room (adversarial review adv15p, M3). Past that many kinds an entry is counted
   * into the writer's `audit.drop` tally and reported. Insertion order is the order the summaries take.
   */
  readonly #runs = new Map<string, CoalescedRun>();
  /** Counts a run that cannot be held as dropped (the writer's tally, log and report). */
  readonly #fold: (run: CoalescedRun, why: string) => void;
  /** Told after each merge: the writer schedules its retry. */
  readonly #changed: () => void;

  /** Makes the id a new run's summary entry takes (fix15p). */
  readonly #newId: () => string;

  constructor(fold: (run: CoalescedRun, why: string) => void, changed: () => void, newId: () => string) {
    this.#fold = fold;
    this.#changed = changed;
    this.#newId = newId;
  }

  /** How many kinds are coalesced now. */
  get size(): number {
    return this.#runs.size;
  }

  /** The runs, oldest kind first. */
  values(): IterableIterator<CoalescedRun> {
    return this.#runs.values();
  }

  /** The runs by kind key, oldest kind first (a run may be deleted while iterating). */
  [Symbol.iterator](): IterableIterator<[string, CoalescedRun]> {
    return this.#runs[Symbol.iterator]();
  }

  /** Whether entries of `entry`'s kind are coalesced now. */
  hasKindOf(entry: AuditEntry): boolean {
    return this.#runs.has(coalesceKey(entry));
  }

  /** Forgets the run of kind `key` (turned into its entry, or counted). */
  delete(key: string): void {
    this.#runs.delete(key);
  }

  /** Forgets every run (turned into entries, or counted). */
  clear(): void {
    this.#runs.clear();
  }

  /**
   * Adds a run (one entry, or what the reserve kept) to the run of its kind, or starts one; past
   * {@link COALESCED_KINDS} kinds it is counted as dropped instead (the writer's `fold`).
   */
  merge(found: CoalescedRun): void {
    const key = coalesceKey(found.first);
    const run = this.#runs.get(key);
    if (run !== undefined) {
      // A run read back from the reserve gives its id (a record holds it: fix15p).
      if (found.id !== undefined) run.id = found.id;
      run.count += found.count;
      if (found.first.at < run.first.at) run.first = found.first;
      if (found.last.at >= run.last.at) run.last = found.last;
    } else if (this.#runs.size < COALESCED_KINDS) {
      this.#runs.set(key, { ...found, id: found.id ?? this.#newId() });
    } else {
      this.#fold(found, `${COALESCED_KINDS} kinds of entries were already coalesced`);
    }
    this.#changed();
  }
}
