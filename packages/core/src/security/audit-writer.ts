import { randomUUID } from "node:crypto";
import { appendFile, rm, stat } from "node:fs/promises";
import { KilnError } from "../domain/errors";
import type { KilnEvents } from "../events/catalogue";
import type { AuditEntry } from "@kiln/core/driver-kit";
import type { TimerHandle } from "../ports/clock";
import { reconnectDelay, type ReconnectBackoff } from "../driver-kit/backoff";
import { RecordJournal } from "../journal/record-journal";
import { ReservedRecord } from "../journal/reserved-record";
import { encodeExactJson } from "../logging/sample-journal";
import type { Logger } from "../ports/logger";
import { silentLogger } from "../runtime/silent-logger";
import {
  isStrippedFollowUp,
  strippedFollowUp,
  reserveStub,
  isIntentRefusal,
  isSummary,
  REFUSAL_ID_SUFFIX,
  refusedForGood,
  reasonOf,
} from "./audit-entry-rules";
import {
  decodeTombstone,
  decodeEntry,
  type UnopenedReserve,
  OVERFLOW_NAMES,
  LEGACY_OVERFLOW_MAX_BYTES,
  RESERVE_SLOT_BYTES,
  RESERVE_HEADROOM_BYTES,
  encodeReserve,
  memoryOnlyTally,
  type CoalescedRun,
  type DropTally,
  decodeReserve,
  summaryIdsOf,
  collapseOverflow,
  encodeOverflowBuckets,
  decodeOverflow,
  unopenedReserveText,
  foldedTally,
} from "./audit-reserve-record";
import type { AuditedCommandRunnerOptions } from "./audited-command-options";
import { AuditSummaryEntries } from "./audit-summary-entries";
import { AuditDropReports } from "./audit-drop-reports";
import type { AuditWriterStatus } from "./audit-writer-status";
import { DenialOverflowCounts } from "./audit-denial-overflow";
import { COALESCED_KINDS, CoalescedRuns } from "./audit-coalesced-runs";
import { AuditJournalFailures, type JournalFailure } from "./audit-journal-failures";
import { setAsideLinesAmong } from "./audit-set-aside-file";
import { PoisonEvidence } from "./audit-poison-rule";
import { lateOutcomeOf, type LateOutcome } from "../resilience/timeout";

/**
 * The share of `maxEntries` that entries of commands that did not run (`denied`, `failed`) may
 * hold, so a flood of refused attempts can never take the room an authorized command needs to be
 * made durable (IEC 62443-3-3 CR 2.9). Beyond it they are counted into `audit.overflow` summary
 * entries, one per principal.
 */
const DENIED_SHARE = 0.5;

/** The actions of the entries that summarize held counts (see `AuditSummaryEntries`). */
const SUMMARY_ACTIONS: ReadonlySet<string> = new Set(["audit.overflow", "audit.coalesce", "audit.drop"]);

interface BacklogItem {
  /** Undefined for a journal record that could not be decoded: released without being stored. */
  readonly entry: AuditEntry | undefined;
  /** True when the entry is in the journal (then it is the journal's oldest unreleased record once it reaches the front). */
  readonly journaled: boolean;
  /** Failures of this entry at the head: an error the store did not classify, a timeout or a retryable KilnError, never an open breaker (see {@link POISON_ATTEMPTS}, fix15af). */
  failures: number;
  /**
   * The latest store call started when this one last failed: an answer to a later call means the
   * store answers about others (fix15ae; by call since fix15ah, see `#answeredSeq`).
   */
  callSeqAtFailure?: number;
  /**
   * Its failed store calls as the poison rule's probe, counted only from turns in which the store
   * took an entry from a call started after the head failed, or within `RECENT_TAKE_MS` (fix15ai:
   * an outage's are the store's):
   * the probe chosen is one that failed fewest (fix15af); any makes it a suspect (fix15ah).
   */
  probeFailures?: number;
  /**
   * The error of its last failed store call, set by that call itself (fix15ag: never the writer's
   * shared last error, which a concurrent command's call may have set meanwhile).
   */
  lastError?: unknown;
  /** It failed with an error the store did not classify (not a KilnError): may be about its content. */
  unclassified?: boolean;
  /**
   * It is suspected of holding the trail (health's `blockedBy`): it failed with an error the store
   * did not classify, or failed again after the store answered about another entry. A head that
   * only failed with the store's own word (a timeout, a retryable KilnError) while nothing else was
   * answered is waiting on an outage, not held by its content (fix15ag).
   */
  suspect?: boolean;
  /** When it was queued (the runner's clock), for health's `waitingMs`; recovered entries: when recovered. */
  since?: number;
  /**
   * Stored already, as the poison rule's probe of the store while an earlier entry held the head:
   * at the head it leaves the backlog without being stored again (fix15ad).
   */
  stored?: boolean;
  /**
   * Refused for good as the poison rule's probe and kept aside already (counted in `skipped`, one
   * set-aside line): at the head it leaves the backlog, its journal record released durably, never
   * probed, stored or counted again; `drop-oldest` evicts it uncounted (fix15ae, adv15 HIGH-1).
   */
  skipped?: boolean;
  /** A drain's store call for it is out: `drop-oldest` never evicts it then (it may be stored: fix15ad). */
  storing?: boolean;
  /** Already reported by `audit-record-fail` (queued while the store failed, or when it began to fail). */
  reported?: boolean;
  /**
   * Refused for good (or set aside), but the set-aside append failed: what to keep aside, why,
   * and the append's error. Its journal record is kept until the append succeeds (see `#keepAside`).
   */
  aside?: { readonly entry: AuditEntry; readonly error: unknown; readonly problem: string };
}

/**
 * Failures with an error the store did not classify after which a head entry is suspect: its
 * next turn probes the store with another entry first (see `#drain`). Below the audit port's
 * breaker threshold (5 by default), so the probe is tried while the breaker still lets it through.
 */
const POISON_ATTEMPTS = 2;

/** Whether `error` is an open breaker's refusal: no answer of the store, never evidence (fix15af). */
/**
 * Whether a backlog item still needs a durable home: it holds an entry (not an undecodable
 * record) not yet stored nor kept aside. A probe the store took behind a suspect head (`stored`)
 * or refused for good and kept aside (`skipped`, counted there) only waits to leave in order:
 * every count of what is waiting, lost at the stop or dropped at the limit asks this, so none
 * counts it again (fix15l, adv15k MEDIUM-1: the stop counted stored probes dropped and reported
 * stored refusals `audit-refusal-drop`).
 */
function awaitsStore(item: BacklogItem): item is BacklogItem & { readonly entry: AuditEntry } {
  return item.entry !== undefined && item.stored !== true && item.skipped !== true;
}

function isBreakerOpen(error: unknown): boolean {
  return KilnError.is(error) && error.code === "KILN_CIRCUIT_OPEN";
}

/**
 * Probes a suspect head's turn tries at most: the next entries not yet answered, until the store
 * takes one (those it refuses for good are kept aside as they would be at the head: fix15ae).
 */
const PROBES_PER_TURN = 4;

/**
 * How recently the store must have taken an entry for a head whose probes all failed to stay
 * suspect (health's `blockedBy`), in ms (fix15ah, adv15c HIGH-1): the probes left were then
 * entries it fails on too, not an outage. A store that takes nothing for longer is an outage
 * (health says entries wait).
 */
const RECENT_TAKE_MS = 5_000;

/**
 * Most refused (`denied`) entries being recorded at one time (their store calls, or their turns of
 * the writer with a journal); the others wait in order, in memory, with their commands unanswered.
 * A burst of refusals so never stands between an allowed command's entry and the store, nor
 * occupies every connection of the store's pool (adv15g MEDIUM-2, fix15j).
 */
const DENIED_LANE = 4;

/** A promise and its resolver (what `Promise.withResolvers` gives, ES2024). */
function wakeSignal(): { readonly promise: Promise<void>; readonly resolve: () => void } {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((done) => (resolve = done));
  return { promise, resolve };
}

/** Where a refused entry goes: its place in the denial lane, or (bypassed) the backlog path, queued. */
type LanePath = "lane" | { readonly recorded: Promise<void> };

/** What one reserve record counts: each overflow bucket's and each coalesced run's count, by key. */
interface ReserveCounts {
  readonly overflow: ReadonlyMap<string, number>;
  readonly coalesced: ReadonlyMap<string, number>;
  /** The ids of the summaries that stand for its counts ({@link summaryIdsOf}, fix15p). */
  readonly ids: ReadonlySet<string>;
}

/** A refused entry waiting for a place in the denial lane; `order`: its place among all waiting. */
interface LaneWaiting {
  readonly entry: AuditEntry;
  readonly since: number;
  readonly order: number;
  go(path: LanePath): void;
}

/**
 * Longest a refused command counted into the overflow waits for its count to be durable (the
 * runner's clock, ms) before it is answered with the count held only in memory (fix15r).
 */
const DURABLE_WAIT_MS = 10_000;

/** The background retry's schedule when the host gives none. */
const DEFAULT_RETRY_BACKOFF: ReconnectBackoff = { initialDelayMs: 1_000, maxDelayMs: 30_000 };

/**
 * The audit writer behind {@link AuditedCommandRunner}: one writer turn ({@link AuditWriter.serial})
 * makes each entry durable in order (stored, or journaled); the backlog of entries the store did
 * not take, with its journal and reserve, the background drain and retry, the denial overflow, the
 * coalesced runs and drop summaries, and the command gate a stop closes (ADR 0013). Internal: the
 * runner is its only user, and the class documentation of {@link AuditedCommandRunner} states the
 * rules it keeps.
 */
export class AuditWriter {
  readonly #options: AuditedCommandRunnerOptions;
  readonly #logger: Logger;
  readonly #maxEntries: number;
  readonly #whenFull: "refuse-commands" | "drop-oldest";
  readonly #newId: () => string;
  readonly #backlog: BacklogItem[] = [];
  #journal: Promise<RecordJournal | undefined> | undefined;
  #tail: Promise<unknown> = Promise.resolve();
  #skipped = 0;
  /** Skipped entries that could not be kept in `<journal>.set-aside` (no journal, or the append failed). */
  #skippedNotKept = 0;
  /** Entries set aside because they kept failing while the store took others (ADR 0013 addendum). */
  #setAside = 0;
  /** Entries reported set aside or refused whose abandoned (timed-out) store call landed afterwards (fix15ak). */
  #storedLate = 0;
  /** Ids with an abandoned (timed-out) store call still out, by how many calls (fix15ak). */
  readonly #lateCalls = new Map<string, number>();
  /** Ids kept aside while an abandoned call for them was out: how each was counted, to take back if it lands. */
  readonly #asideWhileOut = new Map<string, { entry: AuditEntry; kept: boolean; setAside: boolean }>();
  /** Ids of backlog entries whose abandoned call landed: stored, never set aside nor stored again. */
  readonly #landedLate = new Set<string>();
  /** Set by the stop once it is over (see {@link refuseCommits}), until {@link open}. */
  #stopped = false;
  /** Entries journaled (or reserved) when {@link close} emptied the backlog: the next start records them. */
  #keptForNextStart = 0;
  #lastError: unknown;
  /**
   * Entries dropped (`drop-oldest` at the limit, a damaged journal, tombstones an earlier version
   * left) and not yet recorded as their `audit.drop` summary entry: kept in the reserve with the
   * overflow counts, so a crash does not lose the fact of the drop (ADR 0013, issue 15).
   */
  #drops: DropTally | undefined;
  /**
   * `<journal>.reserve`: room reserved when the journal opens, overwritten in place. It holds the
   * counts of {@link #overflow} and the entries the journal could not take (a full disk), so both
   * are durable before a command is rejected, even on `ENOSPC` (issue 15, adversarial reviews 15
   * and 15c). Opened with the journal.
   */
  #reserve: ReservedRecord | undefined;
  /** Ids of the entries the reserve's last record holds (kept only in memory otherwise). */
  #reservedIds = new Set<string>();
  /** The overflow counts and coalesced runs the reserve's last record holds, by key. */
  #reserveCounts: ReserveCounts | undefined;
  /**
   * The summary ids of the reserve's records being written ({@link ReserveCounts.ids}): one may
   * land, so its summaries wait as for the last written one (fix15p).
   */
  readonly #reserveIdsInFlight = new Set<ReadonlySet<string>>();
  /**
   * The ids of the entries the journal held when it was opened, until the reserve opens: a
   * reserve count whose summary is among them is summarized already (fix15p). Kept apart from the
   * backlog, which may have stored and released them while the reserve could not be opened.
   */
  #journaledAtOpen = new Set<string>();
  /**
   * While the reserve of an earlier run cannot be opened: the summary ids its record holds, read
   * without opening it, or "unread" when that read failed too (then every summary the journal held
   * at its open counts as held). Such a summary is not stored until the reserve opens: stored and
   * released, its id would be free again, and the record's count, summarized again under it, would
   * be thrown away by the store as a second entry with that id (adv15q HIGH-1: 200 of 3,200 lost).
   */
  #unopenedSummaryIds: ReadonlySet<string> | "unread" | undefined;
  /** The ids of the summary entries (`audit.overflow`, `audit.coalesce`, `audit.drop`) among {@link #journaledAtOpen}. */
  #summariesAtOpen = new Set<string>();
  /**
   * Ids of the entries the reserve's last record counts as held only in memory (its `memoryOnly`):
   * once one is stored the record is rewritten, so a crash after it does not count it lost.
   */
  #memoryOnlyIds = new Set<string>();
  /**
   * Entries of `runWithoutDurableAudit` actions counted in the reserve's `memoryOnly` tally before
   * the action acts ({@link announce}), until they join the backlog (fix15e, adv15d F1).
   */
  readonly #announced = new Set<AuditEntry>();
  /**
   * The id of the newest journal record `drop-oldest` dropped, kept in the reserve's record with
   * the drop count: a release the full disk did not let become durable brings the record back at
   * the next start, which then releases it unread instead of storing it (it is counted; fix15e,
   * adv15d F5).
   */
  #releasedThrough: string | undefined;
  /**
   * What the reserve file holds while it cannot be opened (its room cannot be reserved: a disk
   * still full after a crash), read without opening it and left untouched: shown by health until
   * it opens, then merged and summarized as usual (adversarial review 15w, B). Its held entries
   * are in the backlog meanwhile (`ids`): once it opens they are not queued again.
   */
  #unopenedReserve: UnopenedReserve | undefined;
  /** Most denied or failed entries (the overflow summaries included) the backlog holds: {@link DENIED_SHARE} of `maxEntries`. */
  readonly #maxDenied: number;
  /** The journal failures now in force, by operation (`open`, `append`, `reserve`): health names each. */
  readonly #journalFailures: AuditJournalFailures;
  /** Counts and reports every entry dropped unstored. */
  readonly #dropReports: AuditDropReports;
  /** Denied and failed attempts counted per principal while their share of the backlog was full (see {@link DenialOverflowCounts}). */
  readonly #overflow: DenialOverflowCounts;
  /**
   * Entries that came while the backlog was full and would have been kept beyond `maxEntries`,
   * coalesced by kind into `audit.coalesce` summaries once it has room (see {@link CoalescedRuns}).
   */
  readonly #coalesced: CoalescedRuns;
  /** Makes the writer's summary entries (`audit.drop`, `audit.overflow`, `audit.coalesce`). */
  readonly #summaries: AuditSummaryEntries;
  /** Set by {@link close} until {@link open}: the store is not called (it is being closed or closed). */
  #closed = false;
  /** Set as {@link close} begins, until {@link open}: no new entry of a late settle is taken (see {@link accepting}). */
  #closing = false;
  /** Set by {@link refuseCommits} until {@link open}: guarded commands not yet committed are refused. */
  #gate: KilnError | undefined;
  /**
   * Set by {@link refuseCommits} with `safetyFunctions`: the gate refuses safety functions and
   * `runWithoutDurableAudit` actions too (fix15v, adv15u M1/L3).
   */
  #gateAll = false;
  /** The background retry of a non-empty backlog, when one is scheduled. */
  #retryTimer: TimerHandle | undefined;
  #retryAttempt = 0;
  /** A background drain ({@link #continueDrain}) is under way. */
  #draining = false;
  /**
   * The drains of the backlog, one at a time. Apart from {@link serial}: a drain holds the writer
   * only to change the backlog, never across a store call, so a slow or frozen store never holds
   * a command's entry (review 15j).
   */
  #drainTail: Promise<unknown> = Promise.resolve();
  /**
   * When the store last failed to take an entry (a retryable error) with no entry taken since:
   * while set, commands do not call the store (a guarded one is journaled, or refused without a
   * journal) and only the background retry probes it (review 15j). Cleared by the store's next answer.
   */
  #storeFailingSince: number | undefined;
  /**
   * When an `allowed` entry (a command's intent, a safety action's or a follow-up's) last failed
   * with a `KilnError`, while the store has answered none since: the store-failing gate. While set,
   * {@link commit} refuses a command without calling the store. A refused entry's failure alone
   * does not set it: a store that fails on denied entries' content (a trigger raising for them)
   * while it takes allowed ones must not refuse authorized commands (adv15g MEDIUM-3, fix15j).
   */
  #allowedFailingSince: number | undefined;
  /** Refused entries being recorded now, at most {@link DENIED_LANE}. */
  #deniedRecording = 0;
  /**
   * Refused entries waiting for a place in the denial lane, by principal (each oldest first): a
   * freed place goes to the principals in turn, so one principal's flood does not hold back
   * another's refusal (fix15l, adv15k MEDIUM-2). At most the backlog's denied share still free
   * wait ({@link #laneRoom}); beyond it a refusal is counted into the overflow.
   */
  readonly #deniedWaiting = new Map<string, LaneWaiting[]>();
  /** The shared reserve write of refusals counted past the lane's bound (see {@link #persistCounted}). */
  #countedPersist: Promise<void> | undefined;
  /**
   * Refusals counted into the overflow whose callers wait for the count to be durable, each with
   * its place in the count order ({@link #countOrder}); see {@link #untilDurable} (fix15r).
   */
  readonly #countedAt = new Map<AuditEntry, number>();
  /** Overflow counts made by refusals in {@link #countedAt}, in order: the last one's place. */
  #countOrder = 0;
  /** Every count up to this place is durable (in a reserve record written, or in a journaled summary). */
  #durableThrough = 0;
  /** Woken when {@link #durableThrough} moves, a retry ends or the writer closes: waiters look again. */
  #durableWake = wakeSignal();
  /** The retry of a count that could not be made durable (on the `retryBackoff` schedule). */
  #durableTimer: TimerHandle | undefined;
  #durableAttempt = 0;
  /** Refused entries in {@link #deniedWaiting}, all principals. */
  #deniedWaitingCount = 0;
  /** Refused entries that ever waited in the lane: each one's {@link LaneWaiting.order}. */
  #deniedWaitingOrder = 0;
  /**
   * Set when a refused entry's own store call failed, until the store takes an entry: the
   * refused entries waiting (and those that come) then take the backlog path at once, as they did
   * before the lane (one turn of the writer each, queued in order), so a store failing on them is
   * judged by the poison rule on the same evidence and at the same pace (fix15j).
   */
  #deniedFailed = false;
  /** When the store last took an entry (the runner's clock, ms). */
  #storeTookAt: number | undefined;
  /**
   * The latest store call (by {@link #callSeq}) the store answered: took, or refused for good (the
   * poison rule's evidence that it is alive and judges entries by their content: fix15ae). By
   * call, not by answer count (fix15ah): a call started before the head failed and answered after
   * it (one started before an outage) is no evidence that the store takes others now; counted as
   * such, with the suspects left out of the rate, an outage set an entry aside.
   */
  #answeredSeq = 0;
  /** Store calls started since construction: each call's sequence number (fix15ah). */
  #callSeq = 0;
  /**
   * The latest store call (by {@link #callSeq}) the store took (refusals for good left out): a
   * failed probe is charged to its entry only when the store took a call started after the head
   * failed (fix15ai, see `#drainNow`).
   */
  #tookSeq = 0;
  /** Set by {@link close} for its flush: a suspect head with no evidence against it is tried once more. */
  #lastChance = false;
  /** The store's answers, against which a suspect head is judged (the poison rule, fix15ad). */
  readonly #poison = new PoisonEvidence();

  /** @throws RangeError when `backlog.maxEntries` is not a positive integer. */
  constructor(options: AuditedCommandRunnerOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#maxEntries = options.backlog?.maxEntries ?? 10_000;
    this.#whenFull = options.backlog?.whenFull ?? "refuse-commands";
    this.#newId = options.newId ?? randomUUID;
    if (!Number.isInteger(this.#maxEntries) || this.#maxEntries < 1) {
      throw new RangeError("backlog.maxEntries must be a positive integer");
    }
    this.#maxDenied = Math.max(1, Math.floor(this.#maxEntries * DENIED_SHARE));
    this.#journalFailures = new AuditJournalFailures(options);
    this.#overflow = new DenialOverflowCounts(() => this.#scheduleRetry(), this.#logger, this.#newId);
    this.#coalesced = new CoalescedRuns(
      (run, why) => this.#foldRun(run, why),
      () => this.#scheduleRetry(),
      this.#newId,
    );
    this.#dropReports = new AuditDropReports(options, this.#logger, () => this.#stopped);
    this.#summaries = new AuditSummaryEntries(options, this.#newId, { maxEntries: this.#maxEntries });
  }

  /**
   * Entries waiting to be recorded because the audit log failed (journaled or in memory). After
   * {@link close}: the journaled ones the next start records (adv15b L1), until {@link open}.
   */
  get backlog(): number {
    return this.#entriesInBacklog() + this.#keptForNextStart;
  }

  /** Entries dropped because the backlog was full, since construction. */
  get dropped(): number {
    return this.#dropReports.dropped;
  }

  /**
   * Entries the store refused for good and that were skipped, and entries set aside because they
   * kept failing while the store took others (each reported by `audit-entry-skip`).
   */
  get skipped(): number {
    return this.#skipped;
  }

  /**
   * The audit writer's state for a health report: entries waiting, dropped, skipped (of which set
   * aside), refusals of offered intents dropped unstored (each may leave an `allowed` entry of a
   * command that did not run: ADR 0013 addendum), and the event id of the entry at the head of
   * the backlog when it has failed (the one holding the queue), with its last error.
   */
  status(): AuditWriterStatus {
    const head = this.#backlog.find((item) => item.entry !== undefined);
    return {
      backlog: this.backlog,
      dropped: this.#dropReports.dropped,
      skipped: this.#skipped,
      skippedNotKept: this.#skippedNotKept,
      setAside: this.#setAside,
      storedLate: this.#storedLate,
      refusalsDropped: this.#dropReports.refusalsDropped,
      droppedWhileStopped: this.#dropReports.droppedWhileStopped,
      droppedAtStop: this.#dropReports.droppedAtStop,
      overflow:
        [...this.#overflow.values()].reduce((sum, overflow) => sum + overflow.count, 0) +
        (this.#unopenedReserve?.overflow ?? 0),
      overflowMemoryOnly: this.#overflowMemoryOnly(),
      coalesced: [...this.#coalesced.values()].reduce((sum, run) => sum + run.count, 0),
      journalProblems: this.#journalProblems(),
      // A journal whose open or append failed leaves entries only in memory: then the backlog
      // does not survive a restart, whatever was configured (health must not say "journaled").
      durableBacklog: this.#options.backlog?.path !== undefined && this.#unjournaled().memoryOnly === 0,
      ...(this.#storeFailingSince === undefined ? {} : { storeFailingSince: this.#storeFailingSince }),
      ...(this.#storeTookAt === undefined ? {} : { storeTookAt: this.#storeTookAt }),
      ...(head?.since === undefined ? {} : { waitingMs: Math.max(0, this.#options.clock.now() - head.since) }),
      reportedWaiting: this.#backlog.reduce((count, item) => count + (item.reported === true ? 1 : 0), 0),
      queued: this.#deniedWaitingCount,
      ...(this.#deniedWaitingCount === 0
        ? {}
        : { queuedWaitingMs: Math.max(0, this.#options.clock.now() - this.#oldestWaitingSince()) }),
      // Only a suspect head holds the trail: one that only timed out while the store answered
      // nothing else waits on an outage, and health says where the entries are (fix15ag).
      ...(head !== undefined && head.failures > 0 && head.suspect === true
        ? {
            blockedBy: {
              id: head.entry!.id,
              failures: head.failures,
              error: reasonOf(head.lastError ?? this.#lastError, undefined),
            },
          }
        : {}),
    };
  }
  /**
   * Whether an entry handed to {@link recordFollowing} now is still stored or journaled by this
   * run: false once {@link close} has begun (it waits only for entries handed before), until
   * {@link open}.
   */
  get accepting(): boolean {
    return !this.#closing;
  }

  /** The command gate's error while it is closed (see {@link refuseCommits}), else undefined. */
  get gate(): KilnError | undefined {
    return this.#gate;
  }

  /** Whether the closed gate refuses safety functions and `runWithoutDurableAudit` actions too. */
  get gateAll(): boolean {
    return this.#gateAll;
  }

  /** The journal failure a refusal names as its cause (an append's, else an open's), if one is in force. */
  journalFailure(): JournalFailure | undefined {
    return this.#journalFailures.get("append") ?? this.#journalFailures.get("open");
  }

  /**
   * Before an action in `runWithoutDurableAudit` acts without waiting for its entry: whether it
   * may. With a journal, it may at once while the journal takes entries (the reserve holds and
   * counts none) and the reserve can be written (an entry the journal then fails on goes to the
   * reserve, or its `memoryOnly` tally).
   * Otherwise its entry could end up held only in memory, so it is counted in the reserve's
   * `memoryOnly` tally first (one write of the reserve, no store call): it may act once that write
   * is durable. When the reserve cannot be written (EIO, no reserve) nothing could count the entry
   * after a crash: false, and the action waits for a durable entry like any other command (fail
   * closed; fix15e, adv15d F1). Without a journal, always true (nothing is durable but the store,
   * ADR 0013 step 5). Call {@link withdraw} if the action then does not run. `true` itself (not
   * a promise) when it may act at once, so the action loses no turn of the event loop.
   */
  announce(entry: AuditEntry): true | Promise<boolean> {
    if (this.#options.backlog?.path === undefined) return true;
    const reserveWritable = this.#reserve !== undefined && !this.#journalFailures.has("reserve");
    // The journal took the entries so far: the reserve neither holds nor counts any (a journal at
    // its maxBytes fails without a failure in force, so the reserve's contents tell).
    if (
      reserveWritable &&
      this.#journal !== undefined &&
      !this.#journalFailures.has("append") &&
      !this.#journalFailures.has("open") &&
      this.#reservedIds.size === 0 &&
      this.#memoryOnlyIds.size === 0
    ) {
      return true;
    }
    return this.#countBeforeActing(entry);
  }

  async #countBeforeActing(entry: AuditEntry): Promise<boolean> {
    if (this.#reserve === undefined || this.#closed) return false;
    this.#announced.add(entry);
    await this.#persistReserve();
    if (this.#journalFailures.has("reserve") || !this.#memoryOnlyIds.has(entry.id)) {
      this.#announced.delete(entry);
      return false;
    }
    return true;
  }

  /** An entry {@link announce} counted whose action did not run after all: no longer counted. */
  withdraw(entry: AuditEntry): void {
    if (this.#announced.delete(entry)) void this.#persistReserve();
  }

  /** Entries of actions that do not wait for the store, not yet stored or queued (each settles, never rejects). */
  readonly #systemRecords = new Set<Promise<void>>();

  /**
   * Hands the entry of an action that never waits for the audit store (a safety action, a system
   * action; its refusal or failure) to the writer. Resolves once it is journaled (or kept, when
   * the journal cannot take it) with a journal; at once without one, the store being the only
   * place it can go (stored in the background, else kept in memory, retried and reported). Never
   * waits for the store; never rejects; {@link close} waits for every such entry (review 15y, L6).
   */
  recordFollowing(entry: AuditEntry): Promise<void> {
    const recording = this.record(entry).catch((error: unknown) => {
      this.#logger.error(
        { id: entry.id, action: entry.action, error: String(error) },
        "recording the entry of an action that did not wait for it failed",
      );
    });
    this.#systemRecords.add(recording);
    void recording.then(() => this.#systemRecords.delete(recording));
    return this.#options.backlog?.path === undefined ? Promise.resolve() : recording;
  }

  /**
   * Writes the backlog to the store, oldest first (entries it refuses for good are skipped and
   * reported); resolves true when it is empty. Never rejects. Off the writer: commands go on
   * meanwhile (their entries queue behind, or are stored on their own: review 15j).
   */
  async flush(): Promise<boolean> {
    for (;;) {
      const taking = await this.#drain();
      if (!taking) return false;
      if (this.#backlog.length === 0) return true;
    }
  }

  /**
   * Writes the backlog in the background, once entries were queued (a journaled command's entry,
   * a denial) or the store took one again: one drain at a time, off the writer (its store calls
   * hold no command: review 15j). While the store is failing it is left to the backoff retry,
   * the only probe of a failing store.
   */
  #continueDrain(): void {
    if (this.#draining || this.#closed || this.#backlog.length === 0) return;
    if (this.#storeFailingSince !== undefined) {
      this.#scheduleRetry();
      return;
    }
    this.#draining = true;
    void this.#drain().then((taking) => {
      this.#draining = false;
      if (taking) this.#continueDrain();
      else this.#scheduleRetry();
    });
  }

  /**
   * Lets the runner call the store again after {@link close} (the control system's start). A
   * new runner is open. The journal and its reserve are opened now, not at the first command:
   * what an earlier run left in them is retried in the background at once (ADR 0013 addendum),
   * and the reserve's room is taken while there is some, so a disk that fills later still has it
   * (ADR 0034, amendment 15i). Entries kept in memory while closed are journaled behind it.
   * @returns a promise that settles once that first attempt has (never rejects): a journal or a
   *   reserve that could not be opened is then named by {@link status} (`journalProblems`, with
   *   how many entries are held only in memory) and retried on the backoff.
   */
  open(): Promise<void> {
    this.#closed = false;
    this.#closing = false;
    this.#keptForNextStart = 0;
    this.#stopped = false;
    this.#dropReports.reopen();
    this.#gaveUp = undefined;
    this.#gaveUpIds = new Set();
    this.#gaveUpCounted = new Map();
    this.#givenUp = giveUpSignal();
    this.#gate = undefined;
    this.#gateAll = false;
    this.#retryAttempt = 0;
    this.#deniedFailed = false;
    return this.serial(async () => {
      if (this.#closed) return;
      await this.#openJournal();
      this.#scheduleRetry();
    }).catch((error: unknown) => {
      this.#logger.error({ error: String(error) }, "opening the audit journal failed");
    });
  }

  /**
   * Journals the entries held only in memory (a journal that could not be opened or take them
   * when they came), oldest first, once the journal is open: the journal's records stay in the
   * backlog's order, so only entries after the last journaled one are moved. Stops at the first
   * failure (named by health). Entries moved out of the reserve are written out of it.
   */
  async #journalHeldEntries(journal: RecordJournal): Promise<void> {
    let from = 0;
    for (const [index, item] of this.#backlog.entries()) if (item.journaled) from = index + 1;
    let moved = false;
    let whole = true;
    let appended = false;
    for (let index = from; index < this.#backlog.length; index++) {
      const item = this.#backlog[index]!;
      if (item.entry === undefined) continue;
      // Counted lost by a reserve record that cannot be rewritten: journaled, it would come back
      // at the next start and be counted too (fix15e, adv15d F2). It and those behind it wait. (A
      // summary whose count the record holds is journaled: the next start drops that count, fix15p.)
      if (this.#countedLost(item.entry.id)) {
        whole = false;
        break;
      }
      try {
        await journal.append(Buffer.from(encodeExactJson(item.entry), "utf8"));
      } catch (error) {
        if (!KilnError.is(error, "KILN_BUFFER_FULL")) this.#journalFailures.note("append", error, journal.path);
        whole = false;
        break;
      }
      appended = true;
      this.#backlog[index] = { ...item, journaled: true };
      moved ||= this.#reservedIds.has(item.entry.id);
    }
    // Cleared once every held entry is journaled, not at the first: health names what memory
    // still holds until then (issue 15). Never with nothing written: the store may have taken
    // every held entry while the journal still fails, and a failure cleared unproven is
    // published again at the next append, once per command under one full disk (adv15y L1).
    if (whole && appended) this.#journalFailures.clear("append");
    // Journaled now: the reserve need not hold them any more.
    if (moved) await this.#persistReserve();
  }

  /**
   * Retries the backlog in the background on the `retryBackoff` schedule while it holds entries
   * (or an overflow count), so they are stored as soon as the store takes them again, not only
   * when the next command comes (ADR 0013). One timer at most; none while closed.
   */
  #scheduleRetry(): void {
    if (this.#retryTimer !== undefined || this.#closed) return;
    if (!this.#needsRetry()) return;
    this.#retryAttempt++;
    const delay = reconnectDelay(
      this.#retryAttempt,
      this.#options.retryBackoff ?? DEFAULT_RETRY_BACKOFF,
      this.#options.random,
    );
    this.#retryTimer = this.#options.clock.setTimeout(() => {
      this.#retryTimer = undefined;
      // The probe of a failing store (never a command's entry), and the drain that follows: off the writer.
      void this.#drain().then((taking) => {
        if (!taking) this.#scheduleRetry();
        else if (this.#backlog.length > 0) this.#continueDrain();
        else if (this.#needsRetry()) this.#scheduleRetry();
        else this.#retryAttempt = 0;
      });
    }, delay);
  }

  /**
   * Whether the background retry has work: entries or counts waiting, or a journal (or its
   * reserve) that could not be opened (retried on the same backoff; once open, what it holds is
   * replayed: issue 15, review 15c; the reserve is made once there is room: review 15i).
   */
  #needsRetry(): boolean {
    return (
      this.#backlog.length > 0 ||
      this.#overflow.size > 0 ||
      this.#coalesced.size > 0 ||
      this.#drops !== undefined ||
      this.#journalFailures.has("open") ||
      (this.#reserve === undefined && this.#journalFailures.has("reserve"))
    );
  }

  /**
   * Closes the command gate (the control system's `stop()`, before it settles the commands in
   * flight): until {@link open}, a command that has not committed yet is refused with `error`
   * (`KILN_LIFECYCLE`), recorded `failed`, never `allowed`; also one already waiting for the
   * audit writer. A command that arrives meanwhile is refused before its body runs (it touches
   * no store, device or recipe: review 15r). Actions in `runWithoutDurableAudit` (abort, pause)
   * and safety functions (a machine stop, fault, abort) still run, unless `safetyFunctions` is
   * true: then they are refused the same way, before they act (the control system's `stop()` once
   * acquisition and the alarms are stopped, just before it settles what is in flight and closes the
   * writer, and after the stop: fix15v, adv15u M1/L3: one acting then had its entries dropped).
   * Once set, `safetyFunctions` stays set until {@link open}. `stopped`: the stop is over (an entry
   * dropped after the close is then one of a command issued while stopped, not of an action that
   * acted during the stop: fix15x); also until {@link open}.
   */
  refuseCommits(
    error: KilnError,
    options: { readonly safetyFunctions?: boolean; readonly stopped?: boolean } = {},
  ): void {
    this.#gate = error;
    if (options.safetyFunctions === true) this.#gateAll = true;
    if (options.stopped === true) this.#stopped = true;
  }

  /**
   * Flushes, then closes the journal: what the store did not take stays journaled for the next
   * start. Attempts counted into the overflow and not yet summarized become their one summary
   * entry now (stored, else journaled). Entries held only in memory (and an overflow count that
   * could be neither stored nor journaled) are reported by `audit-entry-drop`. Afterwards, until
   * {@link open}, the store is not called and the journal is not reopened (its lock is free for
   * the next start or another system): an entry recorded meanwhile (a command refused because
   * the system is stopped) cannot be made durable and would wait for a start that may never
   * come, so it is not held: it is reported dropped at once by `audit-entry-drop` and counted in
   * `status().droppedWhileStopped` (ADR 0013 addendum, review 15s). A refusal of an offered intent (`<id>:refusal`) held only in
   * memory is reported apart, by `audit-refusal-drop` and an error log naming the intent: the
   * trail may show that command `allowed`; it did not run. Never rejects.
   */
  async close(): Promise<void> {
    this.#closing = true;
    // Refusals waiting for their count to be durable are answered: the close summarizes, keeps or reports it.
    if (this.#durableTimer !== undefined) this.#options.clock.clearTimeout(this.#durableTimer);
    this.#durableTimer = undefined;
    this.#wakeDurable();
    // Refused entries waiting in the lane are queued now, ahead of the close's flush.
    this.#openLane();
    // Entries of system actions (the abort at stop) still on their way to the writer.
    while (this.#systemRecords.size > 0) await Promise.all(this.#systemRecords);
    this.#lastChance = true;
    try {
      await this.flush();
    } finally {
      this.#lastChance = false;
    }
    await this.serial(async () => {
      await this.#closeOverflow();
      this.#closed = true;
      if (this.#retryTimer !== undefined) this.#options.clock.clearTimeout(this.#retryTimer);
      this.#retryTimer = undefined;
      this.#lastError = new KilnError("KILN_LIFECYCLE", "The control system is stopped: the audit store is closed.");
      // Entries the reserve holds come back at the next start: not lost.
      // Stored probes and entries kept aside are not lost (fix15l).
      const memoryOnly = this.#backlog.filter(
        (item) =>
          !item.journaled &&
          awaitsStore(item) &&
          !this.#reservedIds.has(item.entry.id) &&
          !this.#gaveUpIds.has(item.entry.id),
      );
      const refusals = memoryOnly.filter((item) => isIntentRefusal(item.entry!));
      for (const item of refusals)
        this.#dropReports.reportRefusalDrop(item.entry!, "the control system stopped before the audit store took it");
      // A summary held only in memory stands for its count of commands (an overflow's attempts are
      // reported now; an audit.drop summary's were reported when dropped): F1, review 15s.
      let others = 0;
      for (const item of memoryOnly) {
        if (isIntentRefusal(item.entry!)) continue;
        if (!isSummary(item.entry!)) others++;
        else {
          const fold = foldedTally(item.entry!);
          if (!fold.reported) others += fold.tally.count;
          else
            this.#logger.error(
              { count: fold.tally.count },
              "an audit.drop summary held only in memory was lost at the stop",
            );
        }
      }
      if (others > 0) {
        // Named in health like those reported when the stop gives up on the close (fix15x, adv15w L3).
        this.#dropReports.countAtStop(others);
        this.#dropReports.reportDrop(others, "the control system stopped before the audit store took them");
      }
      if (this.#memoryOnlyIds.size > 0 && this.#reserve !== undefined) {
        // Reported lost at the stop just above: the reserve's record must not count them again as
        // held only in memory, or the next start would record them a second time.
        const lost = new Set(memoryOnly);
        this.#backlog.splice(0, this.#backlog.length, ...this.#backlog.filter((item) => !lost.has(item)));
        await this.#persistReserve();
      }
      // Journaled (or reserved) entries wait for the next start: still the backlog health reports.
      this.#keptForNextStart = this.#backlog.filter(
        (item) =>
          item.entry !== undefined &&
          (item.journaled || this.#reservedIds.has(item.entry.id)) &&
          !this.#gaveUpIds.has(item.entry.id),
      ).length;
      this.#backlog.length = 0;
      // The journal is closed, never opened here: a closed runner holds no journal and no lock,
      // so another system in this process (or the next start) can take it.
      const journal = this.#journal === undefined ? undefined : await this.#journal;
      this.#journal = undefined;
      await journal?.close().catch(() => undefined);
      await this.#reserve?.close().catch(() => undefined);
      this.#reserve = undefined;
      this.#reservedIds = new Set();
      this.#reserveCounts = undefined;
      this.#unopenedReserve = undefined;
    });
    // A background drain begun before the close (the retry timer) may still have a store call in
    // flight: close settles once it has, so nothing calls the store after close (review 15j).
    await this.#drainTail;
  }

  /** Entries handed to the writer and not yet stored or queued (waiting for the writer's turn or a store call). */
  readonly #pending = new Set<AuditEntry>();

  /** Set once stop() gave up on {@link close} (fix15x): why; entries recorded from then on are reported dropped at once. */
  #gaveUp: string | undefined;

  /** Ids of entries reported dropped when stop() gave up on {@link close}: not reported again by it. */
  #gaveUpIds = new Set<string>();

  /**
   * Of {@link #gaveUpIds}, the entries counted dropped whose store call may still land (their own
   * call was out, or the close going on in the background may store them), with the count each
   * added: one the store then takes is taken back out of the counts (fix15ad).
   */
  #gaveUpCounted = new Map<string, number>();

  /**
   * Settles when stop() gives up on {@link close}: what a command waits for on the store (its
   * intent's store call, its entry's) is released then, so no command outlives the stop (fix15aa).
   */
  #givenUp = giveUpSignal();

  /**
   * stop() ran out of its budget for {@link close} (the store does not answer): every entry held
   * only in memory (queued, waiting for the writer's turn or for a store call, an overflow count,
   * a coalesced run) is reported dropped now (`audit-entry-drop`, counted in `status().dropped`),
   * before stop() returns, never later in the background (fix15x, adv15w H1). Journaled entries
   * and what the reserve's record holds (entries, overflow counts, coalesced runs) are not: they
   * come back at the next start (adv15n MEDIUM-1). From now until
   * {@link open}, an entry recorded is reported dropped at once. A command waiting for the store
   * (its intent's store call in {@link commit}, its entry's in {@link record}) is released: the
   * commit answers `closed`, the record returns (fix15aa). close() goes on in the background;
   * an entry reported here that its flush still stores is logged, not reported again. After a
   * close that finished, only the entries whose own store call is still out are reported (and
   * their commands released): stop() calls it whatever the close did, so no entry is counted
   * after it returns (fix15ab). Returns the count reported. Idempotent.
   */
  giveUpClose(reason: string): number {
    if (this.#gaveUp !== undefined) return 0;
    // Commands waiting for the store are released (refused, their entries reported below or
    // when recorded from now on), never left pending until the store answers (fix15aa).
    this.#givenUp.release();
    let count = 0;
    const take = (entry: AuditEntry): void => {
      if (this.#gaveUpIds.has(entry.id)) return;
      this.#gaveUpIds.add(entry.id);
      this.#gaveUpCounted.set(entry.id, 1);
      if (isIntentRefusal(entry)) {
        // Dropped at the stop like any other (as one recorded after the give-up is): counted there too.
        this.#dropReports.countAtStop(1);
        this.#dropReports.reportRefusalDrop(entry, reason);
      } else count++;
    };
    if (this.#closed) {
      // The close finished, but an entry's own store call is still out (a hung call of a denial's
      // record, not in the backlog: fix15ab, adv15 H2). Its outcome is unknown: counted dropped at
      // the stop now, never later as "while stopped"; stored after all, it is logged.
      for (const entry of this.#pending) take(entry);
      this.#reportGivenUp(count, reason);
      return count;
    }
    this.#gaveUp = reason;
    // Refused entries still waiting in the lane are pending (taken below); none waits on forever.
    this.#openLane();
    for (const item of this.#backlog) {
      if (item.journaled || !awaitsStore(item) || this.#reservedIds.has(item.entry.id)) continue;
      if (!isSummary(item.entry)) take(item.entry);
      else {
        const fold = foldedTally(item.entry);
        this.#gaveUpIds.add(item.entry.id);
        if (!fold.reported) count += fold.tally.count;
      }
    }
    // An entry still pending that its writer turn already queued is the backlog's to count (above):
    // one journaled there comes back at the next start (adv15n, +1 at every give-up with a journal).
    const queued = new Set(this.#backlog.map((item) => item.entry?.id));
    for (const entry of this.#pending) if (!queued.has(entry.id)) take(entry);
    // Overflow counts and coalesced runs the reserve's last written record holds come back at the next start, as its held entries do: only the part beyond it is reported.
    // The held part stays in memory, so a reserve write the close still makes keeps it (adv15n
    // MEDIUM-1: a give-up reported a whole flood's overflow dropped that the next start then
    // summarized from the reserve: counted twice).
    // Only a record known written: one still being written may never land (a process that exits
    // after stop(), a write that fails), and what it alone held would vanish unreported (adv15o
    // HIGH-1). Counted dropped and then summarized after all is the lesser fault: reported.
    const held = this.#reserveCounts;
    for (const [key, overflow] of [...this.#overflow]) {
      const kept = Math.min(overflow.count, held?.overflow.get(key) ?? 0);
      count += overflow.count - kept;
      if (kept === 0) this.#overflow.delete(key);
      else overflow.count = kept;
    }
    for (const [key, run] of [...this.#coalesced]) {
      const kept = Math.min(run.count, held?.coalesced.get(key) ?? 0);
      count += run.count - kept;
      if (kept === 0) this.#coalesced.delete(key);
      else run.count = kept;
    }
    this.#reportGivenUp(count, reason);
    return count;
  }

  #reportGivenUp(count: number, reason: string): void {
    if (count === 0) return;
    this.#dropReports.countAtStop(count);
    this.#logger.error({ count }, `${reason}: audit entries held only in memory reported dropped`);
    this.#dropReports.reportDrop(count, reason);
  }

  /**
   * An entry recorded after stop() gave up on {@link close}: reported dropped at once; counted at
   * the stop while it lasts, as one of a command issued while stopped once it is over (what stop()
   * counted when it returned stands: adv15b M1).
   */
  #dropAfterGiveUp(entry: AuditEntry): void {
    if (this.#gaveUpIds.has(entry.id)) return;
    this.#gaveUpIds.add(entry.id);
    if (this.#stopped) {
      this.#dropReports.dropWhileClosed(entry);
      return;
    }
    const what = `${entry.action} on ${entry.target} by ${entry.principal} (${entry.outcome}, entry ${entry.id})`;
    this.#dropReports.countAtStop(1);
    this.#logger.error(
      { id: entry.id, action: entry.action, outcome: entry.outcome },
      "audit entry dropped at the stop",
    );
    if (isIntentRefusal(entry)) this.#dropReports.reportRefusalDrop(entry, this.#gaveUp!);
    else this.#dropReports.reportDrop(1, `${this.#gaveUp!}: the entry of ${what} could not be recorded`);
  }

  /** Runs `task` after every earlier audit task: one writer, so the store sees entries in order and once. */
  serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(task, task);
    this.#tail = run.catch(() => undefined);
    return run;
  }

  /**
   * Makes an allowed entry durable before its command runs (inside the writer's turn): with a
   * journal that works and has room, appended to it (fsynced) and written to the store in the
   * background, so neither the backlog nor a slow or frozen store reaches the command; otherwise
   * stored, its own entry first, before any backlog entry (the store is then the one durable
   * target): `run`. While the store is failing it is not called here (the background retry
   * probes it) and the command is refused: `refused` (the entry is not kept; its refusal is
   * recorded as an entry of its own naming it when it was offered), `unstorable` (the store
   * refused it for good; reported) or `closed` (the command gate closed meanwhile). Safety
   * actions never come here (see `run`). ADR 0034, amendment 15j.
   */
  async commit(entry: AuditEntry, offer: { offered: boolean }): Promise<"run" | "refused" | "unstorable" | "closed"> {
    if (this.#options.backlog?.path !== undefined) {
      const journal = await this.#openJournal();
      // Kept only once journaled: an intent the journal does not take is not kept, and nothing is
      // evicted for it at the limit with refuse-commands (issue 15).
      if (
        journal !== undefined &&
        (this.#canEvictNow() || this.#entriesAgainstBound() < this.#maxEntries) &&
        (await this.#enqueue(entry, { journaledOnly: true }))
      ) {
        this.#continueDrain();
        return "run";
      }
    }
    // The system began stopping meanwhile: not kept, the command does not run.
    if (this.#gate !== undefined) return "closed";
    // No journal, or it could not take the entry: the store is the only durable target. Not
    // called while it is failing (the background retry probes it) or closed.
    // An allowed entry failed since the store last answered (fix15j: a refused entry's failure
    // alone does not close the gate).
    if (this.#closed || this.#allowedFailingSince !== undefined) return "refused";
    offer.offered = true;
    // Refused for good, the command does not run: what is kept and reported says so, never `allowed`.
    // stop() gave up on the writer while the store did not answer: the command does not run and
    // is refused now (`closed`), its refusal reported dropped; the store may still take the intent.
    const stored = await Promise.race([
      this.#store(entry, { notRun: true }),
      this.#givenUp.released.then(() => "closed" as const),
    ]);
    if (stored === "closed") return "closed";
    if (stored === "skipped") return "unstorable";
    if (stored === "retry") return "refused";
    this.#continueDrain();
    return "run";
  }

  /**
   * Records an entry of a command that runs without waiting (a safety action), did not run
   * (denied, failed) or was cancelled. It holds the writer only to queue: without a journal,
   * while the store answers and nothing waits, it is stored at once, off the writer (its own
   * write, concurrent with others'; an entry that fails is then queued); otherwise it is queued
   * (journaled when there is a journal) and written in the background. Never waits on another
   * command's entry or the backlog (review 15j).
   */
  async record(entry: AuditEntry): Promise<void> {
    // stop() gave up on close(): not held where nothing would write it before the exit (fix15x).
    if (this.#gaveUp !== undefined) {
      this.#dropAfterGiveUp(entry);
      return;
    }
    this.#pending.add(entry);
    try {
      // Released when stop() gives up on the writer (its entry reported dropped then): the
      // command waiting for it answers, not when the store does (fix15aa).
      await Promise.race([this.#recordPending(entry), this.#givenUp.released]);
      // Counted into the overflow: answered once the count is durable (fix15r, adv15q MEDIUM-1).
      const counted = this.#countedAt.get(entry);
      if (counted !== undefined) await Promise.race([this.#untilDurable(counted), this.#givenUp.released]);
    } finally {
      this.#countedAt.delete(entry);
      this.#pending.delete(entry);
      // Whatever became of it (queued, coalesced, reported dropped), it is no longer only announced.
      this.#announced.delete(entry);
    }
  }

  async #recordPending(entry: AuditEntry): Promise<void> {
    if (entry.outcome !== "denied") return this.#recordOne(entry);
    let path: LanePath;
    if (this.#laneBypassed()) path = { recorded: this.serial(() => this.recordNow(entry)) };
    else if (this.#deniedRecording < DENIED_LANE && this.#deniedWaitingCount === 0) {
      this.#deniedRecording++;
      path = "lane";
    } else if (this.#deniedWaitingCount >= this.#laneRoom()) {
      // The waiting list is at its bound: counted into the overflow summary (as the backlog counts
      // a refusal its full denied share cannot hold), the caller answered without waiting (fix15l).
      // Counted now, in memory (the stop has not begun: the lane is not bypassed), and no longer
      // pending (a stop that gives up counts it in the overflow, not twice); made durable by one
      // reserve write shared by every refusal counted before it begins. A writer turn and a whole
      // reserve write per refusal put a flood's turns ahead of an operator's commit (adv15m
      // MEDIUM-1: 4.8 s behind 20,000 refusals with a journal, 9–14 s and +385 MB behind 40,000).
      this.#countRefusal(
        entry,
        `the audit denial lane's waiting list was full (${this.#deniedWaitingCount} refused entries waiting for the store)`,
      );
      this.#pending.delete(entry);
      return this.#persistCounted();
    } else {
      path = await new Promise<LanePath>((go) => {
        const waiting: LaneWaiting = { entry, since: this.#options.clock.now(), order: this.#deniedWaitingOrder++, go };
        const queue = this.#deniedWaiting.get(entry.principal);
        if (queue === undefined) this.#deniedWaiting.set(entry.principal, [waiting]);
        else queue.push(waiting);
        this.#deniedWaitingCount++;
      });
    }
    if (path !== "lane") return path.recorded;
    try {
      await this.#recordOne(entry);
    } finally {
      // The place goes to the next principal's oldest waiting entry, else it is free.
      const next = this.#nextWaiting();
      if (next === undefined) this.#deniedRecording--;
      else next.go("lane");
    }
  }

  /**
   * Most refused entries that may wait for the lane: the backlog's denied share still free
   * (`maxEntries` × {@link DENIED_SHARE}, less the denied entries it holds), the same budget a
   * refusal queued in the backlog has; at least one (fix15l, adv15k MEDIUM-2: unbounded, 20,000
   * refusals against a store taking 1 s a call held 186 MB).
   */
  #laneRoom(): number {
    return Math.max(1, this.#maxDenied - this.#deniedInBacklog());
  }

  /**
   * Takes the oldest waiting entry of the principal first in turn, whose turn then goes to the
   * back (round-robin by principal, fix15l); undefined when none waits.
   */
  #nextWaiting(): LaneWaiting | undefined {
    for (const [principal, queue] of this.#deniedWaiting) {
      const next = queue.shift();
      this.#deniedWaiting.delete(principal);
      if (next === undefined) continue;
      if (queue.length > 0) this.#deniedWaiting.set(principal, queue);
      this.#deniedWaitingCount--;
      return next;
    }
    return undefined;
  }

  /** When the oldest waiting refused entry began to wait (the runner's clock, ms). */
  #oldestWaitingSince(): number {
    let since = Number.POSITIVE_INFINITY;
    for (const queue of this.#deniedWaiting.values()) since = Math.min(since, queue[0]?.since ?? since);
    return since;
  }

  /** Whether refused entries skip the lane and are queued in the backlog at once (see {@link #deniedFailed}). */
  #laneBypassed(): boolean {
    return this.#deniedFailed || this.#closing || this.#gaveUp !== undefined;
  }

  /**
   * Sends every refused entry waiting in the lane to the backlog path now, in order (each queued
   * for its turn of the writer synchronously, so a close that follows finds them ahead of its own).
   */
  #openLane(): void {
    const all = [...this.#deniedWaiting.values()].flat().sort((a, b) => a.order - b.order);
    this.#deniedWaiting.clear();
    this.#deniedWaitingCount = 0;
    for (const waiting of all) {
      waiting.go({ recorded: this.serial(() => this.recordNow(waiting.entry)) });
    }
  }

  async #recordOne(entry: AuditEntry): Promise<void> {
    if (
      this.#options.backlog?.path === undefined &&
      !this.#closed &&
      this.#storeFailingSince === undefined &&
      this.#backlog.length === 0 &&
      this.#overflow.size === 0 &&
      this.#coalesced.size === 0
    ) {
      if ((await this.#store(entry)) !== "retry") return;
      if (entry.outcome === "denied" && !this.#deniedFailed) {
        this.#deniedFailed = true;
        this.#openLane();
      }
    }
    await this.serial(() => this.recordNow(entry));
  }

  /**
   * Queues `entry` inside the writer's current turn (journaled when possible) and starts a
   * background drain. After {@link close} (the system stopped) the store and the journal are
   * closed and nothing would write a held entry: it is reported dropped at once instead.
   */
  async recordNow(entry: AuditEntry): Promise<void> {
    // Already reported dropped when stop() gave up on close() (fix15x).
    if (this.#gaveUpIds.has(entry.id)) return;
    if (this.#gaveUp !== undefined) {
      this.#dropAfterGiveUp(entry);
      return;
    }
    if (this.#closed) {
      this.#dropReports.dropWhileClosed(entry);
      return;
    }
    await this.#enqueue(entry);
    this.#continueDrain();
  }

  /**
   * Stores one entry: `stored`, `skipped` (refused for good: kept aside and reported, see
   * {@link #keepAside}), `held` (refused for good, but its journal record is its only durable
   * copy and the set-aside append failed: it stays at the head, see {@link #keepAside}; or not
   * offered, see {@link #heldBack}) or `retry`. `notRun`: the entry is the intent of a command that will not
   * run if it is refused; what is kept aside and reported is then its refusal (`denied`).
   */
  async #store(
    entry: AuditEntry,
    options: { notRun?: boolean; item?: BacklogItem } = {},
  ): Promise<"stored" | "skipped" | "held" | "retry"> {
    if (this.#heldBack(entry)) {
      // Counted lost by the reserve's last record, which cannot be rewritten: stored now, it would
      // be stored and counted after a crash. The reserve is tried again first (fix15e, adv15d F2).
      await this.#persistReserve();
      if (this.#heldBack(entry)) return "held";
    }
    const seq = ++this.#callSeq;
    try {
      await this.#options.audit.record(entry);
      this.#answeredSeq = Math.max(this.#answeredSeq, seq);
      this.#tookSeq = Math.max(this.#tookSeq, seq);
      this.#poison.took(entry.id);
      this.#takeBackGaveUp(entry);
      // The store takes entries: a later failure backs off from the start, not from where a long
      // outage left the backoff (review 15g, M4: with 20% transient failures the backlog drained
      // at 3 entries/s, the delay grown to 30 s and reset only once the backlog was empty).
      this.#retryAttempt = 0;
      this.#storeTookAt = this.#options.clock.now();
      this.#storeFailingSince = undefined;
      this.#allowedFailingSince = undefined;
      this.#deniedFailed = false;
      return "stored";
    } catch (error) {
      // Only the store's definite answer about this entry skips it. An error it did not classify
      // (not a KilnError) keeps the entry and is retried: never lost for want of a classification.
      if (refusedForGood(error)) {
        this.#storeFailingSince = undefined;
        this.#allowedFailingSince = undefined;
        // The store answered about this entry's content: evidence that it is alive, as a take is
        // (fix15ae, adv15 HIGH-1: not counted, a poison head with only refused entries behind it
        // was never proven the cause and held the trail).
        this.#answeredSeq = Math.max(this.#answeredSeq, seq);
        this.#poison.answered(entry.id);
        if (options.notRun === true) {
          const refusal = new KilnError(
            "KILN_AUDIT_UNAVAILABLE",
            `Refused ${entry.action}: the audit store refused its entry for good (${reasonOf(error, undefined)}), so it was not executed.`,
          );
          // The allowed entry's reason is the operator's comment (escaped where it was read).
          const denied: AuditEntry = { ...entry, outcome: "denied", reason: reasonOf(refusal, entry.reason) };
          await this.#keepAside(denied, denied.reason!);
        } else if (!(await this.#keepAside(entry, error, options.item))) {
          return "held";
        }
        return "skipped";
      }
      this.#lastError = error;
      // A timed-out call was abandoned, not undone: its late outcome decides (fix15ak).
      const late = lateOutcomeOf(error);
      if (late !== undefined) this.#watchLate(entry, late);
      // The call's own error, on its item: read by the drain that made the call (fix15ag).
      if (options.item !== undefined) options.item.lastError = error;
      // A timeout or other retryable KilnError is evidence too (fix15af, adv15b HIGH-A: a store
      // that hangs on one entry's content was never judged). An open breaker is no answer of the store.
      if (!isBreakerOpen(error)) this.#poison.failed(entry.id);
      // The store's own word that it is not answering (a timeout, an open breaker, a lost
      // connection: a KilnError) gates commands off it until the background retry finds it back.
      // An error it did not classify may be about the entry (a poison entry): commands still
      // try the store then, and their entries are the probe the poison rule needs.
      if (this.#allowedFailingSince === undefined && KilnError.is(error) && entry.outcome === "allowed")
        this.#allowedFailingSince = this.#options.clock.now();
      if (this.#storeFailingSince === undefined && KilnError.is(error)) {
        this.#storeFailingSince = this.#options.clock.now();
        // Entries queued while it answered (journaled commands' entries) are reported now.
        this.#reportWaiting();
      }
      return "retry";
    }
  }

  /**
   * Whether `entry` waits before it is stored: counted lost by a reserve record that cannot be
   * rewritten ({@link #countedLost}), or a summary whose count a reserve record holds
   * ({@link #countedInReserve}).
   */
  #heldBack(entry: AuditEntry): boolean {
    return this.#countedLost(entry.id) || this.#countedInReserve(entry.id);
  }

  /**
   * Whether the reserve's last durable record counts entry `id` as held only in memory (its
   * `memoryOnly` tally) and the reserve cannot be written now (EIO). Stored then, a crash before the
   * record is rewritten would count it lost although the store has it: the count must equal what is
   * missing (fix15e, adv15d F2). It is stored once the reserve takes a write again; until then it is
   * counted, and a crash loses it counted.
   */
  #countedLost(id: string): boolean {
    return this.#memoryOnlyIds.has(id) && this.#journalFailures.has("reserve");
  }

  /**
   * Whether `id` is the id of a summary whose count a reserve record holds (the last one written,
   * or one being written): stored now, the summary would be counted again from that record at the
   * next start, once the journal no longer holds it (adv15o MEDIUM-1: 5,977 refusals counted for
   * 3,000 while the reserve's rewrites failed). It waits until a record without the count is
   * written; journaled meanwhile, the next start finds it there and drops the record's count (fix15p).
   */
  #countedInReserve(id: string): boolean {
    if (this.#reserveCounts?.ids.has(id) === true) return true;
    for (const ids of this.#reserveIdsInFlight) if (ids.has(id)) return true;
    // The reserve of an earlier run not opened yet: its record may hold the count (adv15q HIGH-1).
    const unopened = this.#unopenedSummaryIds;
    if (unopened === "unread") return this.#summariesAtOpen.has(id);
    return unopened?.has(id) === true;
  }

  /**
   * Writes the backlog, oldest first; true when it is empty (false when the store failed or the
   * runner is closed). One drain at a time; it holds the writer ({@link serial}) only to change
   * the backlog and the journal, never across a store call, so commands queue their entries (and,
   * without a journal, store their own) while it writes (review 15j).
   *
   * The rule for a poison entry (ADR 0013 addendum): a head entry that failed
   * {@link POISON_ATTEMPTS} times with an error the store did not classify is suspect. Its next
   * try stores another entry first (the next in the backlog), or uses the store having taken
   * another entry since (a command's own); a probe refused for good is kept aside once and the
   * next one tried (fix15ae); when the store takes (or refuses for good) one and then fails the head
   * again (an error it does not classify), the head is about its own content: it is set aside
   * (kept in a `<journal>.set-aside` file when there is a journal, reported by `audit-entry-skip`
   * with its id and error) and the queue moves on; a follow-up entry (`refersTo`) is then
   * recorded again without its values and reason ({@link #keepAside}). With no other entry to
   * probe the store with and none taken since, the head waits for one (not retried: each failure
   * counts towards the audit breaker); {@link close} tries it once more. When the store fails that one too, it is an
   * outage: the head stays and everything is retried, fail closed, for as long as it lasts.
   */
  #drain(): Promise<boolean> {
    const run = this.#drainTail.then(() => this.#drainNow());
    this.#drainTail = run.catch(() => undefined);
    return run;
  }

  async #drainNow(): Promise<boolean> {
    const ready = await this.serial(async () => {
      if (this.#closed) return false;
      await this.#openJournal();
      if (this.#closed) return false;
      await this.#retryReserve();
      await this.#summarizeOverflow();
      return true;
    });
    if (!ready) return false;
    for (;;) {
      if (this.#closed) return false;
      const head = this.#backlog[0];
      if (head === undefined) return true;
      let setAside = false;
      /** Refused for good by the store: kept aside (`<journal>.set-aside`) already. */
      let keptAside = false;
      if (head.aside !== undefined) {
        // Refused for good (or set aside) earlier, but not yet kept aside: only the append is retried.
        if (!(await this.#keepAside(head.aside.entry, head.aside.error, head))) return false;
        keptAside = true;
      } else if (head.entry !== undefined && head.stored === true) {
        // Stored already as the probe of an earlier suspect head: it only leaves the backlog.
      } else if (head.entry !== undefined && head.skipped === true) {
        // Refused for good as a probe and kept aside then: it leaves, its journal record for good.
        keptAside = true;
      } else if (head.entry !== undefined) {
        // A follow-up naming its intent (a refusal, a `:fail`) follows the poison rule too: held
        // at the head for good, one the store refuses with a plain Error blocked every later
        // guarded command without a journal (adv15r, M3). Set aside, it is recorded again without
        // its values and reason (#keepAside), so the trail still says what became of the command.
        if (head.failures >= POISON_ATTEMPTS) {
          // Probes: the next entries not yet answered. One refused for good is kept aside (once: it
          // is marked, fix15ae) and is the store's answer too; the next is then tried, so a probe
          // the store takes is found when there is one (at most PROBES_PER_TURN a turn).
          let probed = false;
          let probeFailed = false;
          const tried = new Set<BacklogItem>();
          // Probes the store failed this turn: charged to their entries (probeFailures: suspicion,
          // left out of the poison rule's rate, see #underSuspicion) only when the store took an
          // entry from a call started after the head failed (this turn's probe, or a command's own
          // meanwhile) or within RECENT_TAKE_MS: it was up, so what it failed was about content
          // (one principal's many entries, adv15c HIGH-1, whose probes fail in turns of their own).
          // Otherwise nothing shows the store up (an outage, or one that only refuses): their
          // failures are the store's, no entry's, and stay in the rate (fix15ai: charged anyway,
          // an outage's failed probes left the rate, and the one take when the store came back at
          // the stop proved a head that had failed twice in the outage the cause).
          const failedProbes: BacklogItem[] = [];
          const chargeProbes = (): void => {
            if (this.#tookSeq <= (head.callSeqAtFailure ?? 0) && !this.#storeTookRecently()) return;
            for (const item of failedProbes) item.probeFailures = (item.probeFailures ?? 0) + 1;
          };
          // The store answered about another entry (took it, or refused it for good) from a call
          // started after the head failed (a command's own): that is the evidence already, no probe is needed; each failing probe would count towards the audit
          // breaker, which then refuses every command (fix15ah, adv15c HIGH-1 step 6).
          const answeredSince = this.#answeredSeq > (head.callSeqAtFailure ?? 0);
          for (let tries = 0; !answeredSince && tries < PROBES_PER_TURN; tries++) {
            // The first entry that failed fewest times as a probe: one the store hangs on is not
            // chosen again and again, each failure would make the store look flaky (fix15af).
            // Among those, one of another principal than the head's first: one principal's many
            // entries the store fails on are not each other's probes (fix15ah, adv15c HIGH-1).
            const rank = (item: BacklogItem): number =>
              (item.probeFailures ?? 0) * 2 + (item.entry!.principal === head.entry!.principal ? 1 : 0);
            let probeItem: BacklogItem | undefined;
            for (let index = 1; index < this.#backlog.length; index++) {
              const item = this.#backlog[index]!;
              if (tried.has(item) || item.entry === undefined || item.stored === true) continue;
              if (item.skipped === true || item.aside !== undefined || this.#heldBack(item.entry)) continue;
              if (probeItem === undefined || rank(item) < rank(probeItem)) probeItem = item;
              if (rank(probeItem) === 0) break;
            }
            if (probeItem === undefined) break;
            tried.add(probeItem);
            const answer = await this.#storing(probeItem, () => this.#store(probeItem.entry!, { item: probeItem }));
            if (answer === "retry") {
              // An open breaker is no answer of the store: never charged to the probe (fix15ah,
              // adv15c HIGH-1 step 5), it ends the turn.
              if (isBreakerOpen(probeItem.lastError)) {
                chargeProbes();
                return false;
              }
              failedProbes.push(probeItem);
              // A probe that timed out (the store's own word, a KilnError) may be about its own
              // content too: the next is tried (fix15af, adv15b HIGH-A). An error the store did
              // not classify ends the turn as before.
              probeFailed = true;
              if (!KilnError.is(probeItem.lastError)) {
                chargeProbes();
                return false;
              }
              continue;
            }
            probed = true;
            // Stored: not stored again when it reaches the head (a store need not dedupe by id).
            // Skipped (kept aside) or held (its set-aside append failed): not probed again.
            if (answer === "stored") break;
          }
          chargeProbes();
          // Without a probe, and the store took no entry since the head failed, there is no
          // evidence that the store takes others: the head holds the queue until another entry
          // comes (health names it), not retried meanwhile (each failure would count towards the
          // audit breaker, which then refuses every command). At close it is tried once more (a
          // store that came back takes it), never set aside on that try.
          const evidence = probed || this.#answeredSeq > (head.callSeqAtFailure ?? 0);
          // Every probe failed too: the store is failing, not the head (an outage: nothing set
          // aside). A head suspected only for timeouts is no longer suspected (fix15ag).
          // Unless the store took another entry within the last turns (fix15ah, adv15c HIGH-1 step
          // 3): the probes left are then the same principal's entries it fails on, and the head
          // stays suspect (health's `blockedBy`), never reported as an outage.
          if (!evidence && probeFailed) {
            head.suspect = head.unclassified === true || this.#storeTookRecently();
            return false;
          }
          // A head that failed with the store's own word (a timeout): with no other entry to probe
          // with, it is retried, the retry that finds a store back; never set aside on that try.
          if (!evidence && !this.#lastChance && !KilnError.is(head.lastError)) return false;
          // The store takes entries. One more try of the head tells an entry it fails on from a
          // store that has just come back: only a failure it again cannot classify sets it aside.
          const result = await this.#storing(head, () => this.#store(head.entry!, { item: head }));
          if (result === "held") return false;
          keptAside = result === "skipped";
          if (result === "retry") {
            if (!KilnError.is(head.lastError)) head.unclassified = true;
            if (!evidence || isBreakerOpen(head.lastError)) {
              if (head.unclassified === true) head.suspect = true;
              return false;
            }
            head.failures++;
            // Failed again after the store answered about another entry: suspect (fix15ag).
            head.suspect = true;
            head.callSeqAtFailure = this.#callSeq;
            // Proven the cause only against the store's record on other entries: a flaky store
            // that fails some calls whatever their content needs many more failures in a row
            // (see PoisonEvidence), so it never sets an innocent entry aside (fix15ad).
            if (!this.#poison.provenCause(head.entry.id, head.failures, head.entry.refersTo, this.#underSuspicion()))
              return false;
            setAside = true;
          }
        } else {
          const result = await this.#storing(head, () => this.#store(head.entry!, { item: head }));
          if (result === "held") return false;
          keptAside = result === "skipped";
          if (result === "retry") {
            head.callSeqAtFailure = this.#callSeq;
            // Timeouts and retryable KilnErrors count too (fix15af): a store that fails everything
            // is told apart by the probes, which then fail as well. Only an unclassified error
            // makes the head suspect by itself (fix15ag).
            if (!KilnError.is(head.lastError)) head.unclassified = head.suspect = true;
            if (!isBreakerOpen(head.lastError)) head.failures++;
            // Its failures as a probe count too: an entry the store failed on while it took others
            // is not tried again and again at the head (fix15ah).
            if (head.failures + (head.probeFailures ?? 0) < POISON_ATTEMPTS) return false;
            continue;
          }
        }
      }
      const held = await this.serial(async () => {
        // Dropped meanwhile (drop-oldest at the limit: released and reported there), or the runner closed.
        if (this.#backlog[0] !== head) return false;
        // Its abandoned call landed meanwhile: stored, not set aside (fix15ak).
        if (setAside && head.entry !== undefined && this.#landedLate.has(head.entry.id)) setAside = false;
        // Not kept aside: its journal record, its only durable copy, stays (retried, health names it).
        if (setAside && !(await this.#setEntryAside(head))) return true;
        this.#backlog.shift();
        if (head.entry !== undefined) this.#landedLate.delete(head.entry.id);
        // An entry kept aside must not come back from the journal to be kept aside again.
        if (head.journaled) await this.#releaseJournalHead(setAside || keptAside);
        else if (
          head.entry !== undefined &&
          (this.#reservedIds.has(head.entry.id) || this.#memoryOnlyIds.has(head.entry.id))
        )
          await this.#persistReserve();
        await this.#summarizeOverflow();
        return false;
      });
      if (held) return false;
    }
  }

  /**
   * Ids of the backlog entries under suspicion (a suspect, or a probe the store failed) and not
   * answered since: their failures are about their own content as much as about the store, so they
   * are left out of the poison rule's estimate of the store's failure rate (fix15ah, adv15c HIGH-1
   * step 4: twenty entries of one principal the store fails on made it look like a store failing
   * everything, and none was ever proven the cause).
   */
  #underSuspicion(): ReadonlySet<string> {
    const ids = new Set<string>();
    for (const item of this.#backlog) {
      if (!awaitsStore(item)) continue;
      if (item.suspect === true || (item.probeFailures ?? 0) > 0 || item.failures > 0) ids.add(item.entry.id);
    }
    return ids;
  }

  /**
   * Whether the store took an entry recently enough (within {@link RECENT_TAKE_MS}) that a backlog
   * entry failing is about its content, not an outage.
   */
  #storeTookRecently(): boolean {
    return this.#storeTookAt !== undefined && this.#options.clock.now() - this.#storeTookAt <= RECENT_TAKE_MS;
  }

  /**
   * Runs a store call for `item`, marked {@link BacklogItem.storing} meanwhile (see
   * {@link #evictOldest}); its answer is marked on it ({@link BacklogItem.stored},
   * {@link BacklogItem.skipped}) before `storing` is cleared, in the same turn: an eviction
   * between the answer and the drain's removal of the entry (an enqueue holding the writer) then
   * drops it uncounted, never counting an entry the store has (fix15ae, adv15 MEDIUM-1).
   */
  async #storing(
    item: BacklogItem,
    call: () => Promise<"stored" | "skipped" | "held" | "retry">,
  ): Promise<"stored" | "skipped" | "held" | "retry"> {
    item.storing = true;
    let mayLand = false;
    try {
      // Its abandoned call landed: stored, so it is not sent again (fix15ak).
      const answer = item.entry !== undefined && this.#landedLate.has(item.entry.id) ? "stored" : await call();
      if (answer === "stored") item.stored = true;
      else if (answer === "skipped") item.skipped = true;
      // Timed out: the abandoned call may still land, so the entry stays marked (never evicted and
      // counted) until a later call for it answers (fix15af, adv15b MEDIUM-B).
      else if (answer === "retry") mayLand = KilnError.is(item.lastError) && item.lastError.code === "KILN_TIMEOUT";
      return answer;
    } finally {
      item.storing = mayLand;
    }
  }

  /**
   * Reports the entries queued while the store answered (a journaled command's entry, a denial
   * queued with a journal) once it fails: `audit-record-fail`, once each, as an entry that
   * failed when it came is (see {@link #enqueue}).
   */
  #reportWaiting(): void {
    for (const item of this.#backlog) {
      if (item.reported === true || item.entry === undefined) continue;
      item.reported = true;
      this.#publishRecordFail(item.entry, item.journaled);
    }
  }

  /**
   * Sets the head entry aside: the store took another entry while failing on this one, so its
   * content is the problem. Kept in `<journal>.set-aside` (one JSON line each) when there is a
   * journal, counted, logged and reported by `audit-entry-skip`. The caller removes it from the backlog.
   */
  async #setEntryAside(item: BacklogItem): Promise<boolean> {
    this.#setAside++;
    if (item.entry !== undefined) this.#poison.setAside(item.entry.id);
    const cause = reasonOf(item.lastError ?? this.#lastError, undefined);
    const kept = await this.#keepAside(
      item.entry!,
      `it failed ${item.failures} times (${cause}) while the audit store took other entries; set aside so it does ` +
        "not hold the trail",
      item,
    );
    const out = item.entry === undefined ? undefined : this.#asideWhileOut.get(item.entry.id);
    if (out !== undefined) out.setAside = true;
    return kept;
  }

  /**
   * An entry counted dropped when the stop gave up on the writer, stored after all (by a later
   * call, or by its abandoned call landing: fix15ak): the counts say what is missing, so it is
   * taken back out of them (fix15ad). The `audit-entry-drop` event published then stands.
   */
  #takeBackGaveUp(entry: AuditEntry): void {
    const counted = this.#gaveUpCounted.get(entry.id);
    if (counted !== undefined) {
      this.#gaveUpCounted.delete(entry.id);
      this.#dropReports.uncount(counted, entry.id.endsWith(REFUSAL_ID_SUFFIX));
      this.#logger.warn(
        { id: entry.id, action: entry.action },
        "an audit entry reported dropped when the stop gave up on the audit writer was stored after all; taken back out of the drop counts",
      );
    } else if (this.#gaveUpIds.has(entry.id))
      this.#logger.warn(
        { id: entry.id, action: entry.action },
        "an audit entry reported dropped when the stop gave up on the audit writer was stored after all",
      );
  }

  /**
   * Follows a store call the port guard abandoned at its timeout (fix15ak): the store may still
   * take the entry. A call that lands stores the entry: one still in the backlog is marked stored
   * (not set aside, not sent again); one already kept aside is taken back out of the counts and
   * reported stored late ({@link #correctStoredLate}). One that fails changes nothing: the entry is
   * still waiting, or was counted once when it was kept aside.
   */
  #watchLate(entry: AuditEntry, late: Promise<LateOutcome>): void {
    const id = entry.id;
    this.#lateCalls.set(id, (this.#lateCalls.get(id) ?? 0) + 1);
    void late.then((outcome) => {
      const left = (this.#lateCalls.get(id) ?? 1) - 1;
      if (left > 0) this.#lateCalls.set(id, left);
      else this.#lateCalls.delete(id);
      if (outcome.landed) return this.#landedLateCall(entry);
      // Failed late: kept aside, it stays counted once; no call for it is out any more.
      if (left === 0) this.#asideWhileOut.delete(id);
      return undefined;
    });
  }

  async #landedLateCall(entry: AuditEntry): Promise<void> {
    const id = entry.id;
    this.#poison.took(id);
    const aside = this.#asideWhileOut.get(id);
    if (aside !== undefined) {
      this.#asideWhileOut.delete(id);
      await this.#correctStoredLate(aside);
      return;
    }
    this.#takeBackGaveUp(entry);
    if (this.#backlog.some((item) => awaitsStore(item) && item.entry.id === id)) this.#landedLate.add(id);
  }

  /**
   * An entry kept aside (reported not in the trail) whose abandoned store call landed: the store
   * has it. Taken back out of `skipped` (and `setAside`, `skippedNotKept`), counted in `storedLate`,
   * a follow-up line `{"storedLate":<id>,...}` appended to `<journal>.set-aside` when it was kept
   * there, logged and published as `audit-entry-stored-late` (fix15ak).
   */
  async #correctStoredLate(aside: { entry: AuditEntry; kept: boolean; setAside: boolean }): Promise<void> {
    const { entry, kept } = aside;
    this.#skipped--;
    if (!kept) this.#skippedNotKept--;
    if (aside.setAside) this.#setAside--;
    this.#storedLate++;
    const at = this.#options.clock.now();
    const path = this.#options.backlog?.path;
    let noted = false;
    if (kept && path !== undefined) {
      try {
        await appendFile(`${path}.set-aside`, `${JSON.stringify({ storedLate: entry.id, at })}\n`, {
          encoding: "utf8",
          flush: true,
        });
        noted = true;
      } catch (noteError) {
        this.#logger.error(
          { id: entry.id, error: String(noteError) },
          "an audit entry stored late could not be noted in the set-aside file",
        );
      }
    }
    const reason =
      "its store call timed out and was abandoned, then the audit store took it: it is in the trail" +
      (noted ? `; noted in ${path}.set-aside` : "");
    this.#logger.warn({ id: entry.id, action: entry.action, reason }, "an audit entry set aside was stored late");
    void this.#options.bus?.publish("audit-entry-stored-late", {
      at,
      id: entry.id,
      principal: entry.principal,
      action: entry.action,
      target: entry.target,
      outcome: entry.outcome,
      reason,
    });
  }

  /**
   * Once the denied share of the backlog has room, the attempts counted while it was full become
   * one entry per principal at its end (after every older entry): `audit.overflow`, outcome
   * `denied`, with their count, first and last time, principals and actions.
   */
  async #summarizeOverflow(): Promise<void> {
    await this.#flushCoalesced();
    const drops = this.#drops;
    if (
      drops !== undefined &&
      this.#deniedInBacklog() < this.#maxDenied &&
      this.#entriesAgainstBound() < this.#maxEntries
    ) {
      this.#drops = undefined;
      const summary = this.#summaries.dropEntry(drops);
      const journaled = await this.#append(summary);
      if (!journaled && this.#reserve !== undefined) {
        // Not durable as an entry: it stays counted in the reserve until it is. Under a new id: a
        // failed append may still have landed, and its record must not stand for later counts.
        this.#removeFromBacklog(summary);
        this.#drops = { ...drops, id: this.#newId() };
        return;
      }
      await this.#persistReserve();
    }
    for (const [key, overflow] of this.#overflow) {
      if (this.#deniedInBacklog() >= this.#maxDenied || this.#entriesAgainstBound() >= this.#maxEntries) return;
      this.#overflow.delete(key);
      const summary = this.#summaries.overflowEntry(overflow);
      const journaled = await this.#append(summary);
      if (!journaled && this.#reserve !== undefined) {
        // Not durable as an entry: it stays counted (and durable as a count) until it is.
        this.#removeFromBacklog(summary);
        this.#overflow.set(key, { ...overflow, id: this.#newId() });
        return;
      }
      await this.#persistReserve();
    }
  }

  /**
   * At close: the attempts counted but not yet summarized (and the entries dropped and counted)
   * become their summary entries now, even with the backlog full (one per principal, bounded):
   * stored when the store takes them, else journaled for the next start. A count leaves the
   * reserve only once its summary entry is stored or journaled: one neither takes stays counted
   * in `<journal>.reserve` and is summarized at the next start. Only when the reserve cannot hold
   * it either (no reserve, or its write fails) is an overflow count reported by `audit-entry-drop`,
   * with why (issue 15: a clean stop must not erase what a SIGKILL would have kept); an
   * `audit.drop` count was reported when its entries were dropped and is only logged (fix15v, L2).
   */
  async #closeOverflow(): Promise<void> {
    // Coalesced runs first (they stand for actions that ran): stored when the store takes them and
    // nothing waits before them, else queued (journaled when possible; held only in memory, a
    // summary is reported by its count at the stop, as any summary: see close()).
    // A summary whose count the reserve's record holds is journaled, not stored, until a record
    // without that count is written (below): stored first, a failed rewrite would leave the count
    // for the next start to summarize again (fix15p). Then it is stored, if nothing waits before it.
    const direct = (entry: AuditEntry): boolean => this.#backlog.length === 0 && !this.#countedInReserve(entry.id);
    const journaledFirst = new Set<AuditEntry>();
    const journal = async (entry: AuditEntry): Promise<boolean> => {
      const journaled = await this.#append(entry);
      if (journaled && this.#countedInReserve(entry.id)) journaledFirst.add(entry);
      return journaled;
    };
    for (const [key, run] of [...this.#coalesced]) {
      this.#coalesced.delete(key);
      const entry = this.#summaries.coalescedEntry(run);
      if (direct(entry) && (await this.#store(entry)) !== "retry") continue;
      await journal(entry);
    }
    const drops = this.#drops;
    if (drops !== undefined) {
      const entry = this.#summaries.dropEntry(drops);
      let kept = direct(entry) && (await this.#store(entry)) !== "retry";
      if (!kept && (await this.#openJournal()) !== undefined) {
        kept = await journal(entry);
        if (!kept) this.#removeFromBacklog(entry);
      }
      if (kept) this.#drops = undefined;
    }
    for (const [key, overflow] of [...this.#overflow]) {
      const entry = this.#summaries.overflowEntry(overflow);
      // Inside the writer's turn (close): the backlog was flushed just before; behind what it still holds otherwise.
      let kept = direct(entry) && (await this.#store(entry)) !== "retry";
      if (!kept && (await this.#openJournal()) !== undefined) {
        kept = await journal(entry);
        if (!kept) this.#removeFromBacklog(entry);
      }
      // Not kept: it stays counted, so the reserve written below still holds it.
      if (kept) this.#overflow.delete(key);
    }
    await this.#persistReserve();
    // The record no longer holds their counts (when its write landed): the summaries journaled
    // first are stored now, oldest first, if nothing waits before them; else at the next start.
    while (this.#backlog[0]?.journaled === true && journaledFirst.has(this.#backlog[0].entry!)) {
      const head = this.#backlog[0];
      if (this.#countedInReserve(head.entry!.id) || (await this.#store(head.entry!)) !== "stored") break;
      this.#backlog.shift();
      await this.#releaseJournalHead();
    }
    const left = (this.#drops?.count ?? 0) + [...this.#overflow.values()].reduce((sum, o) => sum + o.count, 0);
    if (left > 0) {
      const failure = this.#journalFailures.get("reserve");
      if (this.#reserve !== undefined && failure === undefined) {
        this.#logger.error(
          { count: left },
          "audit summaries could be neither stored nor journaled before the stop; their counts stay in the reserve for the next start",
        );
      } else {
        const why =
          `could be neither stored nor journaled before the control system stopped, and ` +
          (this.#reserve === undefined
            ? "there is no audit reserve to keep the count"
            : `the audit reserve could not be written (${failure!.message})`);
        // Its entries were reported (`audit-entry-drop`, `dropped`) when they were dropped: the
        // summary lost is logged, not reported again (fix15v, adv15u L2; as a memory-only one at close()).
        if (this.#drops !== undefined) {
          this.#logger.error(
            { count: this.#drops.count },
            `the audit.drop summary of ${this.#drops.count} dropped entries (reported when dropped) ${why}`,
          );
        }
        for (const overflow of this.#overflow.values()) {
          this.#logger.error({ count: overflow.count }, "an audit.overflow count was lost at the stop");
          this.#dropReports.reportDrop(
            overflow.count,
            `the summary of ${overflow.count} denied attempts counted while the audit backlog was full ${why}`,
          );
        }
      }
    }
    // Held by the reserve now (read back at the next open, in this process too) or reported:
    // never counted twice.
    this.#overflow.clear();
    this.#drops = undefined;
  }

  /**
   * Whether a denied or failed entry may join the backlog: nothing counted is waiting (order is
   * kept), their share has room, and the backlog is not full (they never evict, in either mode).
   */
  #roomForDenied(): boolean {
    return (
      this.#overflow.size === 0 &&
      this.#deniedInBacklog() < this.#maxDenied &&
      this.#entriesAgainstBound() < this.#maxEntries
    );
  }

  /** Denied and failed entries (summaries included) in the backlog: they may hold at most {@link #maxDenied}. */
  #deniedInBacklog(): number {
    let count = 0;
    for (const item of this.#backlog) if (awaitsStore(item) && item.entry.outcome !== "allowed") count++;
    return count;
  }

  /** Adds dropped entries (or, without them, only a count: a damaged journal) to {@link #drops}. */
  #tallyDrops(entries: readonly AuditEntry[], count: number, reason: string): void {
    const points = entries.map((entry) => ({ id: entry.id, at: entry.at }));
    this.#mergeDrops({
      count,
      ...(points.length === 0 ? {} : { first: points[0]!, last: points.at(-1)! }),
      reasons: new Set([reason]),
    });
    for (const point of points) {
      const tally = this.#drops!;
      if (point.at < tally.first!.at) tally.first = point;
      if (point.at >= tally.last!.at) tally.last = point;
    }
  }

  /** Adds a tally (this run's drops, or what an earlier run left in the reserve) to {@link #drops}. */
  #mergeDrops(found: DropTally, options: { readonly adoptId?: boolean } = {}): void {
    const tally = (this.#drops ??= { id: this.#newId(), count: 0, reasons: new Set() });
    // A tally read back from the reserve gives its id: a record holds it (fix15p).
    if (options.adoptId === true && found.id !== undefined) tally.id = found.id;
    tally.count += found.count;
    if (found.first !== undefined && (tally.first === undefined || found.first.at < tally.first.at)) {
      tally.first = found.first;
    }
    if (found.last !== undefined && (tally.last === undefined || found.last.at >= tally.last.at)) {
      tally.last = found.last;
    }
    for (const reason of found.reasons) if (tally.reasons.size < OVERFLOW_NAMES) tally.reasons.add(reason);
    this.#scheduleRetry();
  }

  /**
   * Appends `entry` to the backlog (and the journal, when there is one); true when it was
   * journaled. At the limit: with `drop-oldest` the oldest entries are dropped (reported);
   * with `refuse-commands` nothing is ever evicted: a denied or failed entry is counted into the
   * overflow summary (ADR 0013), and any other entry that would go beyond the limit (an abort
   * that runs without a durable entry, a system trip, a `:fail` follow-up) is coalesced with the
   * entries of its kind ({@link #mustCoalesce}, adversarial review adv15p M3); false then.
   */
  async #enqueue(entry: AuditEntry, options: { journaledOnly?: boolean } = {}): Promise<boolean> {
    // Denied and failed entries never take more than their share: the rest of the room is kept for
    // entries of commands that run (whatever whenFull says), and a flood is counted, not stored one by one.
    // A refusal of an offered intent is never counted away nor evicted: without it the intent
    // may read `allowed` for a command that did not run (ADR 0013 addendum). It is the last thing dropped.
    if (entry.outcome !== "allowed" && !isIntentRefusal(entry) && !this.#roomForDenied()) {
      await this.#countOverflow(entry, this.#noRoomForDenied());
      return false;
    }
    // Runs coalesced while the backlog was full go first once it has room (their entries came first).
    await this.#flushCoalesced();
    if (this.#mustCoalesce(entry)) {
      // A guarded command's intent is never coalesced: not kept, the command does not run from it.
      if (options.journaledOnly === true) return false;
      await this.#coalesce(entry);
      return false;
    }
    const journaled = await this.#append(entry);
    if (!journaled && options.journaledOnly === true) {
      // The entry #append pushed (by identity: concurrent commands push behind it meanwhile): not
      // kept, so it takes no room from anything.
      this.#removeFromBacklog(entry);
      return false;
    }
    if (!journaled && this.#reserve !== undefined) {
      // The journal failed (a full disk): the entry is made durable in the reserve before the
      // command returns; when it has no room left, a denied or failed attempt is counted there
      // instead (the overflow summary), never held only in memory (issue 15, review 15c).
      await this.#persistReserve();
      if (!this.#reservedIds.has(entry.id) && entry.outcome !== "allowed" && !isIntentRefusal(entry)) {
        // Removed by identity, and counted only if still there: #persistReserve may have counted it
        // already (no room for it) and concurrent commands pushed behind it meanwhile; a blind pop
        // took another principal's entry uncounted and counted this one twice (adv15z HIGH-1).
        if (this.#removeFromBacklog(entry)) await this.#countOverflow(entry, this.#noRoomInReserve());
        return false;
      }
    }
    const dropped = await this.#evictOldest();
    // Queued while the store fails (or the runner is closed): reported now. Queued while it answers
    // (a journaled entry written in the background): reported only if the store fails before taking it.
    let item: BacklogItem | undefined;
    for (let index = this.#backlog.length - 1; index >= 0 && item === undefined; index--) {
      if (this.#backlog[index]!.entry === entry) item = this.#backlog[index];
    }
    if (item !== undefined && (this.#storeFailingSince !== undefined || this.#closed)) {
      item.reported = true;
      this.#publishRecordFail(entry, journaled);
    }
    if (dropped > 0) this.#dropReports.reportDrop(dropped, `the audit backlog is full (${this.#maxEntries} entries)`);
    this.#scheduleRetry();
    return journaled;
  }

  /**
   * Whether `entry` would be kept beyond `maxEntries` (nothing evicts at the limit: `refuse-commands`,
   * or `drop-oldest` that cannot count a drop durably) or must go behind runs coalesced before it:
   * then it is coalesced. Only the refusal of an offered intent (`<id>:refusal`) is exempt: at most
   * one waits at any time (ADR 0013, seventh review), and it is the last thing dropped.
   */
  #mustCoalesce(entry: AuditEntry): boolean {
    if (entry.id.endsWith(REFUSAL_ID_SUFFIX)) return false;
    if (this.#coalesced.size > 0) return true;
    return !this.#canEvictNow() && this.#entriesAgainstBound() >= this.#maxEntries;
  }

  /**
   * Coalesces `entry` into the run of its kind (principal, source, roles, action, target, outcome,
   * follow-up or not), or starts one; past {@link COALESCED_KINDS} kinds it is counted into the `audit.drop`
   * tally and reported by `audit-entry-drop` (counted in `dropped`): never held without a bound,
   * never lost uncounted (adversarial review adv15p, M3).
   */
  async #coalesce(entry: AuditEntry): Promise<void> {
    if (!this.#coalesced.hasKindOf(entry) && this.#coalesced.size < COALESCED_KINDS) {
      this.#logger.error(
        { id: entry.id, action: entry.action, backlog: this.#entriesInBacklog() },
        "the audit backlog is full: entries of this kind are coalesced into one audit.coalesce summary until it has room",
      );
    }
    this.#coalesced.merge({ count: 1, first: entry, last: entry });
    // With a journal, the run is durable (`<journal>.reserve`) before the caller goes on, as the
    // entry would have been journaled: a crash keeps its count.
    await this.#persistReserve();
  }

  /**
   * Counts a coalesced run as dropped: into the `audit.drop` tally (its count, first and last id
   * and time), logged and reported by `audit-entry-drop` (counted in `dropped`). The caller makes
   * the tally durable.
   */
  #foldRun(run: CoalescedRun, why: string): void {
    const reason =
      `${run.first.action} entries by ${run.first.principal} (${run.first.outcome}) could not be coalesced while the ` +
      `audit backlog was full (${this.#maxEntries} entries): ${why}`;
    this.#tallyDrops(run.count === 1 ? [run.first] : [run.first, run.last], run.count, reason);
    this.#logger.error({ count: run.count, action: run.first.action }, `audit entries were dropped: ${reason}`);
    this.#dropReports.reportDrop(run.count, reason);
  }

  /**
   * Turns coalesced runs into their entries at the backlog's end while it has room, oldest kind
   * first: one run of one entry is that entry as it was; longer runs are `audit.coalesce` summaries.
   */
  async #flushCoalesced(): Promise<void> {
    let moved = false;
    for (const [key, run] of this.#coalesced) {
      // drop-oldest that can count a drop durably again (runs began while it could not) makes room itself.
      if (!this.#canEvictNow() && this.#entriesAgainstBound() >= this.#maxEntries) break;
      this.#coalesced.delete(key);
      await this.#append(this.#summaries.coalescedEntry(run));
      moved = true;
    }
    if (!moved) return;
    const dropped = await this.#evictOldest();
    if (dropped > 0) this.#dropReports.reportDrop(dropped, `the audit backlog is full (${this.#maxEntries} entries)`);
    // The reserve no longer holds them as runs (a crash before this write summarizes them twice:
    // at least once, as the overflow counts).
    await this.#persistReserve();
  }

  /**
   * Whether `drop-oldest` may evict now: only when the drop can be counted durably first. With a
   * journal that means a reserve whose last write succeeded; without one (never made: a disk too
   * small, or a write that failed) nothing is evicted and the backlog behaves as with
   * `refuse-commands`: new commands are refused (`KILN_AUDIT_UNAVAILABLE`), nothing is discarded
   * without a durable count (issue 15). Without a journal nothing is durable to discard: entries
   * and count are both in memory.
   */
  #mayEvict(): boolean {
    if (this.#whenFull !== "drop-oldest") return false;
    if (this.#options.backlog?.path === undefined) return true;
    return this.#reserve !== undefined && !this.#journalFailures.has("reserve");
  }

  /**
   * Whether an entry beyond `maxEntries` would be evicted now ({@link #evictOldest}): `drop-oldest`
   * may evict ({@link #mayEvict}), and the oldest entry may go (its store call is not out, it is
   * not a refusal of an offered intent) or an entry held only in memory behind it may. With a
   * journal every entry behind the head is journaled and the journal releases oldest first, so
   * while the head's store call is out nothing can be evicted: the limit is then kept as with
   * `refuse-commands` (a command's entry is stored directly or the command refused; other entries
   * are coalesced or counted), never by growing the backlog (fix15ae, adv15 MEDIUM-2: 6,474
   * entries at `maxEntries` 20 behind a hanging store).
   */
  #canEvictNow(): boolean {
    if (!this.#mayEvict()) return false;
    const head = this.#backlog[0];
    if (head === undefined) return true;
    if (head.storing !== true && (head.entry === undefined || !isIntentRefusal(head.entry))) return true;
    return this.#backlog.some(
      (item, at) =>
        at > 0 && item.entry !== undefined && !item.journaled && item.storing !== true && !isIntentRefusal(item.entry),
    );
  }

  /**
   * `drop-oldest` at the limit: evicts the oldest entries (a refusal of an offered intent is
   * kept), counts them into {@link #drops} and makes that count durable in the reserve, and only
   * then releases their journal records durably. When the reserve cannot be written the eviction
   * is undone (the entries stay, journaled, beyond the limit; the reserve failure is named by
   * health) and nothing is discarded. Returns how many entries were dropped.
   */
  async #evictOldest(): Promise<number> {
    if (!this.#mayEvict() || this.#entriesInBacklog() <= this.#maxEntries) return 0;
    const before = [...this.#backlog];
    const previousDrops =
      this.#drops === undefined ? undefined : { ...this.#drops, reasons: new Set(this.#drops.reasons) };
    const evicted = new Set<BacklogItem>();
    const droppedEntries: AuditEntry[] = [];
    let journalReleases = 0;
    const previousReleasedThrough = this.#releasedThrough;
    while (this.#entriesInBacklog() > this.#maxEntries) {
      const oldest = this.#backlog[0]!;
      // A drop count must equal what is missing (fix15ad): an entry whose store call is out may
      // yet be stored, so it is not evicted (like a refusal); one the store took already (the
      // poison rule's probe) leaves the backlog uncounted.
      if (oldest.storing === true || (oldest.entry !== undefined && isIntentRefusal(oldest.entry))) {
        // Kept: the oldest other entry goes instead, when it is only in memory (the journal
        // releases its oldest record only); otherwise the backlog holds it beyond the limit.
        const index = this.#backlog.findIndex(
          (item, at) =>
            at > 0 &&
            item.entry !== undefined &&
            !item.journaled &&
            item.storing !== true &&
            !isIntentRefusal(item.entry),
        );
        if (index < 0) break;
        const item = this.#backlog.splice(index, 1)[0]!;
        evicted.add(item);
        if (awaitsStore(item)) droppedEntries.push(item.entry);
        continue;
      }
      this.#backlog.shift();
      evicted.add(oldest);
      if (oldest.journaled) journalReleases++;
      if (oldest.journaled && oldest.entry !== undefined) this.#releasedThrough = oldest.entry.id;
      // Stored or kept aside already (its answer came, the drain has not removed it yet): uncounted.
      if (awaitsStore(oldest)) {
        droppedEntries.push(oldest.entry);
      }
    }
    // A summary evicted is not one entry lost but every command it counts: its count (and span)
    // is folded into the new tally, so the trail's counts still add up to what is missing
    // (adversarial review 15s, F1). Attempts an overflow summary counted are reported dropped
    // now; an `audit.drop` summary's count was reported when its entries were dropped.
    const commands = droppedEntries.filter((entry) => !isSummary(entry));
    const folded = droppedEntries.filter(isSummary).map(foldedTally);
    const dropped = commands.length + folded.reduce((sum, fold) => sum + (fold.reported ? 0 : fold.tally.count), 0);
    if (droppedEntries.length > 0) {
      // Counted durably (the reserve) before the drop is made durable: the trail gets its
      // `audit.drop` summary even after a crash (issue 15).
      if (commands.length > 0) {
        this.#tallyDrops(
          commands,
          commands.length,
          `the audit backlog was full (${this.#maxEntries} entries, drop-oldest)`,
        );
      }
      for (const fold of folded) this.#mergeDrops(fold.tally);
      await this.#persistReserve();
      if (this.#options.backlog?.path !== undefined && !this.#mayEvict()) {
        // The count is not durable: undo. The evicted entries go back in their places (what the
        // failed write left in the backlog stays as it is), the count is as before.
        const present = new Set(this.#backlog);
        this.#backlog.splice(
          0,
          this.#backlog.length,
          ...before.filter((item) => evicted.has(item) || present.has(item)),
        );
        this.#drops = previousDrops;
        this.#releasedThrough = previousReleasedThrough;
        this.#logger.error(
          { count: dropped },
          "the audit backlog is full but the drop could not be counted durably (the reserve failed): nothing is dropped",
        );
        return 0;
      }
    }
    // The journal's oldest records are the ones shifted off. The last release is durable, before
    // the drop is reported, so a dropped entry never comes back at the next start: what was
    // reported is what happened (ADR 0034).
    for (let release = 1; release <= journalReleases; release++) {
      await this.#releaseJournalHead(release === journalReleases);
    }
    return dropped;
  }

  /** Logs and publishes `audit-record-fail` for an entry the store has not taken and that is kept for retry. */
  #publishRecordFail(entry: AuditEntry, journaled: boolean): void {
    this.#logger.error(
      { id: entry.id, action: entry.action, backlog: this.#backlog.length, durable: journaled },
      "an audit entry could not be recorded; it is kept for retry",
    );
    void this.#options.bus?.publish("audit-record-fail", {
      at: this.#options.clock.now(),
      id: entry.id,
      principal: entry.principal,
      action: entry.action,
      target: entry.target,
      outcome: entry.outcome,
      backlog: this.#backlog.length,
      durable: journaled,
      error: this.#lastError ?? new KilnError("KILN_STORE_ERROR", "The audit log is failing."),
    });
  }

  /**
   * Backlog items that hold an entry still waiting for the store (not an undecodable record or a
   * tombstone): a probe the store took (or refused for good and kept aside) is done and only
   * waits to leave in order, so it never counts against `maxEntries` (fix15ah, adv15c HIGH-1:
   * stored probes behind a hanging head filled the limit and every command was refused).
   */
  #entriesInBacklog(): number {
    let count = 0;
    for (const item of this.#backlog) if (awaitsStore(item)) count++;
    return count;
  }

  /**
   * Entries counted against `maxEntries` when an entry asks to be let in: allowed ones, and denied
   * and failed ones up to their share ({@link #maxDenied}). Denied entries pass their share only as
   * overflow summaries journaled because the reserve could not be written ({@link #persistCounts},
   * bounded there): counted here, a flood of refusals with the reserve failing filled the whole
   * backlog with them and every authorized command was refused (adv15s HIGH-1: 197 of 199 operator
   * writes refused during a 20 s flood). Eviction still weighs every entry ({@link #evictOldest}).
   */
  #entriesAgainstBound(): number {
    let allowed = 0;
    let denied = 0;
    for (const item of this.#backlog) {
      if (!awaitsStore(item)) continue;
      if (item.entry.outcome === "allowed") allowed++;
      else denied++;
    }
    return allowed + Math.min(denied, this.#maxDenied);
  }

  /** Takes `entry`'s item out of the backlog, found by identity; false when it is no longer there. */
  #removeFromBacklog(entry: AuditEntry): boolean {
    // From the end: the entry was pushed just before (entries pushed meanwhile are behind it).
    for (let index = this.#backlog.length - 1; index >= 0; index--) {
      if (this.#backlog[index]!.entry !== entry) continue;
      this.#backlog.splice(index, 1);
      return true;
    }
    return false;
  }

  /** Why the last entry {@link #append} could not journal was not journaled, in words (a count's cause). */
  #notJournaled = "the audit journal could not be opened";

  /** Why a denied or failed entry is counted at the door ({@link #roomForDenied} false), in words. */
  #noRoomForDenied(): string {
    if (this.#entriesAgainstBound() >= this.#maxEntries)
      return `the audit backlog was full (${this.#maxEntries} entries)`;
    if (this.#deniedInBacklog() >= this.#maxDenied) {
      return `the audit backlog's share for denied and failed entries was full (${this.#maxDenied} of ${this.#maxEntries} entries)`;
    }
    return "attempts before it were being counted (their summary not yet recorded)";
  }

  /** Why an entry the journal did not take is counted: no room left for it in the reserve, in words. */
  #noRoomInReserve(): string {
    return `${this.#notJournaled} and the audit reserve had no room for the entry`;
  }

  /** Journals (when there is a journal) and appends one entry to the backlog; true when journaled. */
  async #append(entry: AuditEntry): Promise<boolean> {
    const journal = await this.#openJournal();
    let journaled = false;
    // Entries an earlier append failure left unjournaled go first, so the journal keeps the
    // backlog's order and they are not left behind this one (issue 15).
    if (journal !== undefined && this.#journalFailures.has("append")) await this.#journalHeldEntries(journal);
    if (journal !== undefined) {
      try {
        await journal.append(Buffer.from(encodeExactJson(entry), "utf8"));
        journaled = true;
      } catch (error) {
        this.#logger.error({ id: entry.id, error: String(error) }, "the audit journal could not take an entry");
        // A record too large for the journal is about that entry, not the journal.
        if (!KilnError.is(error, "KILN_BUFFER_FULL")) this.#journalFailures.note("append", error, journal.path);
        this.#notJournaled = KilnError.is(error, "KILN_BUFFER_FULL")
          ? `the audit journal was at its maxBytes (${journal.maxBytes} bytes)`
          : `the audit journal could not take it (${this.#journalFailures.get("append")?.errno ?? String(error).slice(0, 200)})`;
      }
    }
    this.#backlog.push({ entry, journaled, failures: 0, since: this.#options.clock.now() });
    // Announced before its action acted (fix15e): in the backlog now, counted from there. Journaled,
    // the reserve's record must stop counting it, or a crash would replay it and count it too.
    if (this.#announced.delete(entry) && journaled) await this.#persistReserve();
    // An append failure stays named while entries it left are held only in memory (issue 15).
    if (journaled && this.#journalFailures.has("append") && this.#unjournaled().memoryOnly === 0) {
      this.#journalFailures.clear("append");
    }
    return journaled;
  }

  /**
   * Counts a denied or failed attempt into the overflow and makes the count durable (in
   * `<journal>.reserve`, when there is a journal) before the command is rejected: after a crash
   * the attempts are still summarized. When it cannot be written the count is kept in memory, the
   * failure is named by health and `audit-journal-fail` (the next count or the summary writes it again).
   */
  /**
   * The reserve write that makes the overflow counts made so far durable: one writer turn shared
   * by every refusal counted while it waits for its turn (its snapshot is taken when the turn
   * begins, so it covers them all); a count made after that waits for the next (adv15m MEDIUM-1).
   */
  #persistCounted(): Promise<void> {
    this.#countedPersist ??= this.serial(async () => {
      this.#countedPersist = undefined;
      await this.#persistCounts();
    });
    return this.#countedPersist;
  }

  async #countOverflow(entry: AuditEntry, cause: string): Promise<void> {
    this.#countRefusal(entry, cause);
    await this.#persistCounts();
  }

  /**
   * Counts `entry` into the overflow, and notes its place in the count order when a caller waits
   * for it in {@link record} (then answered once the count is durable, {@link #untilDurable}).
   */
  #countRefusal(entry: AuditEntry, cause: string): void {
    this.#overflow.countAttempt(entry, cause);
    if (this.#pending.has(entry)) this.#countedAt.set(entry, ++this.#countOrder);
  }

  /**
   * Makes the overflow counts durable (inside a writer turn): a rewrite of the reserve; when that
   * fails (EIO), each bucket's summary is journaled instead (fix15r, adv15q MEDIUM-1). The summary
   * carries the bucket's id, which the last reserve record written may hold with part of the
   * count: the summary then waits in the journal until a record without it is written, and a start
   * drops the record's count whose summary the journal holds (fix15p), so each count is summarized
   * once. A summary the journal does not take either puts its count back (under a new id: the
   * failed append may have landed): only in memory, counted by health (`overflowMemoryOnly`), its
   * callers waiting ({@link #untilDurable}). These summaries may take the backlog beyond its bound
   * by at most its denied share ({@link #maxDenied}); past that the counts wait for the reserve.
   */
  async #persistCounts(): Promise<void> {
    if (await this.#persistReserve()) return;
    if (this.#options.backlog?.path === undefined || this.#overflow.size === 0) return;
    const through = this.#countOrder;
    for (const [key, overflow] of [...this.#overflow]) {
      // Beyond the backlog's bound, these summaries take at most the denied share once more: past
      // it the counts wait for the reserve (their callers with them), so a reserve that keeps
      // failing does not grow the backlog up to the journal's maxBytes.
      if (this.#deniedInBacklog() >= 2 * this.#maxDenied) return;
      // Out of the map before the append: counts made meanwhile go to a new bucket, with a new id.
      this.#overflow.delete(key);
      const summary = this.#summaries.overflowEntry(overflow);
      if (await this.#append(summary)) continue;
      this.#removeFromBacklog(summary);
      this.#overflow.merge(new Map([[key, { ...overflow, id: this.#newId() }]]));
      return;
    }
    this.#madeDurable(through);
  }

  /** Every count up to `through` in the count order is durable now: its callers are answered. */
  #madeDurable(through: number): void {
    if (through <= this.#durableThrough) return;
    this.#durableThrough = through;
    this.#durableAttempt = 0;
    this.#wakeDurable();
  }

  #wakeDurable(): void {
    const wake = this.#durableWake;
    this.#durableWake = wakeSignal();
    wake.resolve();
  }

  /**
   * Waits until the count at `place` in the count order is durable (fix15r, adv15q MEDIUM-1): a
   * refusal counted into the overflow is answered once its count is in a reserve record written or
   * in a journaled summary, never while it is only in memory (a crash would lose it unreported:
   * 8,308-19,265 per flood in adv15q with 30 % of reserve writes failing). While neither can be
   * written it waits (back-pressure on the flood; the refusal is refused anyway), retried on the
   * `retryBackoff` schedule, and health counts it (`overflowMemoryOnly`), at most
   * {@link DURABLE_WAIT_MS}: then it is answered, its count still counted by health until a write
   * holds it (the stop reports it if none does). Without a journal nothing is durable and nothing
   * waits, nor while the reserve could not be opened (the journal's summaries may still hold it);
   * once the stop begins, the close summarizes, keeps or reports it.
   */
  async #untilDurable(place: number): Promise<void> {
    const until = this.#options.clock.now() + DURABLE_WAIT_MS;
    while (place > this.#durableThrough) {
      if (this.#options.backlog?.path === undefined || this.#closing || this.#closed || this.#gaveUp !== undefined)
        return;
      // No reserve (it could not be opened: retried on the backoff, named by health), or waited
      // long enough: answered, the count held only in memory and counted by health meanwhile.
      if (this.#reserve === undefined || this.#options.clock.now() >= until) return;
      const wake = this.#durableWake.promise;
      this.#scheduleDurableRetry();
      await wake;
    }
  }

  /** One timer at most: a shared write of the counts after the backoff's delay, then the waiters look again. */
  #scheduleDurableRetry(): void {
    if (this.#durableTimer !== undefined) return;
    this.#durableAttempt++;
    const delay = reconnectDelay(
      this.#durableAttempt,
      this.#options.retryBackoff ?? DEFAULT_RETRY_BACKOFF,
      this.#options.random,
    );
    this.#durableTimer = this.#options.clock.setTimeout(() => {
      this.#durableTimer = undefined;
      if (this.#closing || this.#closed) return this.#wakeDurable();
      void this.#persistCounted().finally(() => this.#wakeDurable());
    }, delay);
  }

  /** Overflow counts the last reserve record written does not hold (nor a journaled summary): only in memory. */
  #overflowMemoryOnly(): number {
    let count = 0;
    const written = this.#reserveCounts;
    for (const [key, overflow] of this.#overflow) {
      const held =
        overflow.id !== undefined && written?.ids.has(overflow.id) === true ? (written.overflow.get(key) ?? 0) : 0;
      count += Math.max(0, overflow.count - held);
    }
    return count;
  }

  /**
   * Writes the reserve's record: the overflow counts and the entries the journal could not take
   * (kept in memory too, until stored). When they do not fit its room, every denied or failed
   * entry is counted instead first (newest first), then the counts are merged into one bucket,
   * then the newest allowed entries and refusals are left out (held in memory only). A
   * write that fails is a journal failure (`reserve`): health names it and `audit-journal-fail`
   * reports it. Without a reserve (no journal, or it could not be opened) nothing is written.
   */
  async #persistReserve(): Promise<boolean> {
    const reserve = this.#reserve;
    if (reserve === undefined) return false;
    // Every count made so far is in this record (taken with its payload, before the write).
    const through = this.#countOrder;
    const held = this.#backlog.filter((item) => !item.journaled && item.entry !== undefined).map((item) => item.entry!);
    let overflow = encodeOverflowBuckets(this.#overflow);
    // Allowed entries left out for want of room: held only in memory, counted in the record; and
    // the entries of actions about to act without waiting for them (fix15e), counted first.
    const queued = new Set(this.#backlog.map((item) => item.entry));
    const leftOut: AuditEntry[] = [...this.#announced].filter((entry) => !queued.has(entry));
    const encode = (): Buffer =>
      encodeReserve(
        overflow,
        held,
        this.#drops,
        [...this.#coalesced.values()],
        memoryOnlyTally(leftOut),
        this.#releasedThrough,
      );
    let payload = encode();
    if (payload.length > reserve.capacity && this.#coalesced.size > 0) {
      // Coalesced runs that do not fit with their first and last entries become drop counts
      // (durable with this write, reported): counted, never only in memory.
      for (const run of this.#coalesced.values()) this.#foldRun(run, "they did not fit the audit reserve");
      this.#coalesced.clear();
      payload = encode();
    }
    // Over its room, in this order (adv15za HIGH-1 and MEDIUM-1): every kept denied or failed
    // entry becomes a count (durable with this write; newest first, names kept); only then are the
    // counts' names merged; then each follow-up naming an offered intent (a refusal, a `:fail`) is
    // kept without its values and reason (a reserve stub: its id, the intent, who, what, when);
    // only then are the newest allowed entries left out (held in memory only, named by health);
    // last, a stub that still has no room is counted (its principal named), never held in memory
    // only: a crash never loses the fact that a command whose intent was offered did not run
    // (fix15c). Before, the newest entries were left out first whatever they were, so a refusal
    // could be left in memory while older denials kept their room, or allowed entries did.
    let collapsed = false;
    // A collapsed bucket's own id (the one it takes if a next start reads it back), with its parts'.
    const collapsedId = this.#newId();
    const encodeCounts = (): unknown[] =>
      encodeOverflowBuckets(collapsed ? collapseOverflow(this.#overflow, { id: collapsedId }) : this.#overflow);
    for (let index = held.length - 1; index >= 0 && payload.length > reserve.capacity; index--) {
      const left = held[index]!;
      if (left.outcome === "allowed" || isIntentRefusal(left)) continue;
      held.splice(index, 1);
      this.#removeFromBacklog(left);
      this.#overflow.countAttempt(left, this.#noRoomInReserve());
      overflow = encodeCounts();
      payload = encode();
    }
    if (payload.length > reserve.capacity) {
      collapsed = true;
      overflow = encodeCounts();
      payload = encode();
    }
    const whole = new Map<AuditEntry, AuditEntry>();
    for (let index = held.length - 1; index >= 0 && payload.length > reserve.capacity; index--) {
      const left = held[index]!;
      if (!isIntentRefusal(left)) continue;
      const stub = reserveStub(left);
      whole.set(stub, left);
      held[index] = stub;
      payload = encode();
    }
    // The newest allowed entries left out until the record fits. Each one left out takes its own
    // encoded length off an estimate, and the record is encoded again only once the estimate fits
    // (then checked, with the memory-only tally it now carries): encoding the whole record per
    // entry left out cost O(k) encodes of up to the reserve's room per write, k the entries held
    // only in memory (adv15d F3: 0.3 s per write at 548, every audited command waiting behind it).
    let estimate = payload.length;
    let stale = false;
    for (let index = held.length - 1; index >= 0 && payload.length > reserve.capacity; index--) {
      if (isIntentRefusal(held[index]!)) continue;
      const [left] = held.splice(index, 1);
      leftOut.push(left!);
      estimate -= Buffer.byteLength(encodeExactJson(left), "utf8") + 1;
      stale = true;
      if (estimate > reserve.capacity) continue;
      payload = encode();
      estimate = payload.length;
      stale = false;
    }
    if (stale) payload = encode();
    while (payload.length > reserve.capacity && held.length > 0) {
      const stub = held.pop()!;
      const left = whole.get(stub) ?? stub;
      if (this.#removeFromBacklog(left)) this.#overflow.countAttempt(left, this.#noRoomInReserve());
      overflow = encodeCounts();
      payload = encode();
    }
    if (payload.length > reserve.capacity) {
      // The last resort, never reached with principal ids of their allowed length: no names.
      overflow = encodeOverflowBuckets(collapseOverflow(this.#overflow, { named: false, id: collapsedId }));
      payload = encode();
    }
    // What this record counts (taken with the payload: counts made during the write are not in it).
    const ids = summaryIdsOf(this.#overflow.values(), this.#coalesced.values(), this.#drops);
    if (collapsed) ids.add(collapsedId);
    const counts: ReserveCounts = {
      overflow: new Map([...this.#overflow].map(([key, overflow]) => [key, overflow.count])),
      coalesced: new Map([...this.#coalesced].map(([key, run]) => [key, run.count])),
      ids,
    };
    this.#reserveIdsInFlight.add(ids);
    try {
      await reserve.write(payload);
      this.#reserveCounts = counts;
      this.#reservedIds = new Set(held.map((entry) => entry.id));
      this.#memoryOnlyIds = new Set(leftOut.map((entry) => entry.id));
      this.#journalFailures.clear("reserve");
      this.#madeDurable(through);
      return true;
    } catch (error) {
      this.#logger.error({ error: String(error) }, "the audit reserve could not be written");
      this.#journalFailures.note("reserve", error, reserve.path);
      return false;
    } finally {
      // A write that failed is not known to have landed, nor known not to have: what it alone
      // held is summarized (counted) rather than waiting on it (the lesser fault, as adv15o HIGH-1).
      this.#reserveIdsInFlight.delete(ids);
    }
  }

  /**
   * Takes out of a reserve record read back the counts whose summary entries the journal held
   * when it opened (`summarized`, by id): the earlier run journaled the summary and then could not
   * rewrite the record (it died in between, or every rewrite failed: EIO), so the record still
   * counts them (adv15o MEDIUM-1, fix15p). A collapsed bucket loses the parts summarized; true
   * when anything was taken out.
   */
  #dropSummarized(found: NonNullable<ReturnType<typeof decodeReserve>>, summarized: ReadonlySet<string>): boolean {
    let count = 0;
    for (const [key, bucket] of [...found.overflow]) {
      let left = bucket.count;
      if (bucket.id !== undefined && summarized.has(bucket.id)) left = 0;
      else for (const [id, part] of bucket.parts ?? []) if (summarized.has(id)) left -= part;
      if (left === bucket.count) continue;
      count += bucket.count - Math.max(0, left);
      if (left <= 0) found.overflow.delete(key);
      else bucket.count = left;
    }
    const runs = found.coalesced.filter(
      (run) => (run.id !== undefined && summarized.has(run.id)) || (run.count === 1 && summarized.has(run.first.id)),
    );
    for (const run of runs) {
      count += run.count;
      found.coalesced.splice(found.coalesced.indexOf(run), 1);
    }
    if (found.drops?.id !== undefined && summarized.has(found.drops.id)) {
      count += found.drops.count;
      found.drops = undefined;
    }
    if (count === 0) return false;
    this.#logger.warn(
      { count },
      "counts the audit reserve still held were summarized already (the summary is in the journal): not counted again",
    );
    return true;
  }

  /**
   * Opens `<journal>.reserve` (reserving its room) and adds what a crashed run left in it: the
   * overflow counts to {@link #overflow}, the entries it held to the backlog (those the journal
   * holds too are skipped). Counts left in `<journal>.overflow` by earlier versions are moved into
   * it, once.
   */
  async #openReserve(path: string): Promise<void> {
    try {
      this.#reserve = await ReservedRecord.open(`${path}.reserve`, RESERVE_SLOT_BYTES, {
        headroomBytes: RESERVE_HEADROOM_BYTES,
      });
      this.#journalFailures.clear("reserve");
    } catch (error) {
      this.#logger.error({ path: `${path}.reserve`, error: String(error) }, "the audit reserve could not be opened");
      this.#unopenedReserve ??= await this.#peekReserve(`${path}.reserve`);
      this.#unopenedSummaryIds ??= "unread";
      this.#journalFailures.note("reserve", error, `${path}.reserve`);
      return;
    }
    // Held entries read while it could not be opened are in the backlog already, or stored.
    const peeked = this.#unopenedReserve?.ids ?? new Set<string>();
    this.#unopenedReserve = undefined;
    let changed = false;
    const found = decodeReserve(this.#reserve.read());
    const summarized = this.#journaledAtOpen;
    this.#journaledAtOpen = new Set();
    this.#summariesAtOpen = new Set();
    this.#unopenedSummaryIds = undefined;
    if (found !== undefined) {
      // What the record holds, as its last written one (its summaries wait until one without
      // them is written: a failed rewrite leaves this one, fix15p).
      const ids = summaryIdsOf(found.overflow.values(), found.coalesced, found.drops);
      if (this.#dropSummarized(found, summarized)) changed = true;
      this.#reserveCounts = {
        overflow: new Map([...found.overflow].map(([key, bucket]) => [key, bucket.count])),
        coalesced: new Map(),
        ids,
      };
      const count = this.#overflow.merge(found.overflow);
      if (found.drops !== undefined) {
        // Drops an earlier run counted and had not summarized yet (it stopped or crashed first).
        this.#mergeDrops(found.drops, { adoptId: true });
        changed = true;
      }
      if (this.#releaseDropped(found.releasedThrough) > 0) changed = true;
      if (found.memoryOnly !== undefined) {
        // Entries an earlier run held only in memory when it last wrote the reserve, and then died:
        // lost. Recorded now as dropped (an audit.drop summary) and reported (adv15, fix15c's
        // pass: 74 of 400 aborts were lost uncounted to a SIGKILL). A run that stopped cleanly
        // rewrote the record without them (close()).
        this.#mergeDrops(found.memoryOnly);
        this.#dropReports.reportDrop(found.memoryOnly.count, [...found.memoryOnly.reasons].join("; "));
        changed = true;
      }
      // Runs an earlier run coalesced and had not summarized yet (adv15p, M3).
      for (const run of found.coalesced) {
        this.#coalesced.merge(run);
        changed = true;
      }
      const known = new Set(this.#backlog.map((item) => item.entry?.id));
      const held = found.held.filter((entry) => !known.has(entry.id) && !peeked.has(entry.id));
      const since = this.#options.clock.now();
      for (const entry of held) this.#backlog.push({ entry, journaled: false, failures: 0, since, reported: true });
      // All it holds, also those already in the backlog (read while it could not be opened).
      this.#reservedIds = new Set(found.held.map((entry) => entry.id));
      if (count > 0 || held.length > 0 || peeked.size > 0) {
        changed = true;
        this.#logger.error(
          { path: `${path}.reserve`, count, held: held.length },
          "audit entries and counts kept in the reserve by an earlier run were recovered",
        );
      }
    }
    const legacy = `${path}.overflow`;
    const hasLegacy = await stat(legacy).then(
      () => true,
      () => false,
    );
    if (hasLegacy) {
      try {
        const { journal } = await RecordJournal.open(legacy, { maxBytes: LEGACY_OVERFLOW_MAX_BYTES });
        let latest: Buffer | undefined;
        try {
          await journal.scan((payload) => {
            latest = payload;
          });
        } finally {
          // Also when the scan fails: an open journal holds its lock and a FileHandle.
          await journal.close();
        }
        const recovered = latest === undefined ? undefined : decodeOverflow(latest);
        if (recovered !== undefined) this.#overflow.merge(recovered);
        await this.#persistReserve();
        // Only once the reserve holds them: a failed write leaves them where they were for the next open.
        if (!this.#journalFailures.has("reserve")) await rm(legacy, { force: true });
        changed = false;
      } catch (error) {
        this.#logger.error({ path: legacy, error: String(error) }, "the audit overflow count could not be read");
      }
    }
    if (changed) await this.#persistReserve();
  }

  /**
   * Reads what the reserve at `path` holds without opening it (its room could not be reserved),
   * leaving the file as it is: its counts are shown by health until it opens (then merged and
   * summarized, once), its held entries join the backlog so the store gets them meanwhile.
   * Undefined when it holds nothing or cannot be read (logged).
   */
  async #peekReserve(path: string): Promise<UnopenedReserve | undefined> {
    let found: ReturnType<typeof decodeReserve>;
    try {
      found = decodeReserve(await ReservedRecord.peek(path, RESERVE_SLOT_BYTES));
    } catch (error) {
      this.#logger.error({ path, error: String(error) }, "the audit reserve could not be read");
      this.#unopenedSummaryIds = "unread";
      return undefined;
    }
    // The summaries its record holds the counts of wait until it opens (adv15q HIGH-1).
    this.#unopenedSummaryIds =
      found === undefined ? new Set() : summaryIdsOf(found.overflow.values(), found.coalesced, found.drops);
    if (found === undefined) return undefined;
    const overflow = [...found.overflow.values()].reduce((sum, bucket) => sum + bucket.count, 0);
    const drops = found.drops?.count ?? 0;
    const released = this.#releaseDropped(found.releasedThrough);
    const memoryOnly = found.memoryOnly?.count ?? 0;
    const known = new Set(this.#backlog.map((item) => item.entry?.id));
    const since = this.#options.clock.now();
    for (const entry of found.held) {
      this.#reservedIds.add(entry.id);
      if (!known.has(entry.id)) this.#backlog.push({ entry, journaled: false, failures: 0, since, reported: true });
    }
    if (overflow === 0 && drops === 0 && found.held.length === 0 && released === 0 && memoryOnly === 0)
      return undefined;
    this.#logger.error(
      { path, overflow, drops, held: found.held.length, released, memoryOnly },
      "the audit reserve of an earlier run cannot be opened (no room): what it holds was read without changing it",
    );
    return {
      overflow,
      drops,
      held: found.held.length,
      ids: new Set(found.held.map((entry) => entry.id)),
      released,
      memoryOnly,
    };
  }

  /**
   * Releases unread the journal records an earlier run dropped (`drop-oldest`, counted in the
   * reserve's `drops`) whose release it could not make durable: the backlog's journaled records
   * from its front through the one whose entry is `through` (the journal releases oldest first, so
   * every record before the newest dropped one was released too: dropped and counted, or stored).
   * Each stays in its place as an unread record, as a tombstoned one does. Replayed and stored
   * instead, an entry was stored and counted dropped (fix15e, adv15d F5: over-count 296 of 788).
   * The cursor is kept for the next record: until a durable mark passes it, a crash brings the
   * records back again. Returns how many were released.
   */
  #releaseDropped(through: string | undefined): number {
    if (through === undefined) return 0;
    this.#releasedThrough ??= through;
    let last = -1;
    for (let index = 0; index < this.#backlog.length && this.#backlog[index]!.journaled; index++) {
      if (this.#backlog[index]!.entry?.id === through) last = index;
    }
    let released = 0;
    for (let index = 0; index <= last; index++) {
      if (this.#backlog[index]!.entry === undefined) continue;
      this.#backlog[index] = { entry: undefined, journaled: true, failures: 0 };
      released++;
    }
    if (released > 0) {
      this.#logger.warn(
        { count: released },
        "audit journal records an earlier run dropped (counted) and could not release durably are released unread",
      );
    }
    return released;
  }

  /**
   * The journal is open but its reserve could not be made (a disk already full when the journal
   * opened): tried again at each turn and on the retry backoff; once it is made, the entries held
   * only in memory are journaled, or else written to it (review 15i).
   */
  async #retryReserve(): Promise<void> {
    const path = this.#options.backlog?.path;
    if (path === undefined || this.#reserve !== undefined || !this.#journalFailures.has("reserve")) return;
    const journal = this.#journal === undefined ? undefined : await this.#journal;
    if (journal === undefined || this.#closed) return;
    await this.#openReserve(path);
    if (this.#reserve === undefined) return;
    await this.#journalHeldEntries(journal);
    await this.#persistReserve();
  }

  /**
   * The journal failures in force, in words, with what they leave where (health's problems): each
   * names how many entries are held only in memory (lost if the process dies), whichever failure
   * it is, so a journal that could not be opened at start is never a quiet loss (review 15i).
   */
  #journalProblems(): string[] {
    const held = this.#backlog.filter((item) => item.aside !== undefined);
    const notKept =
      held.length === 0
        ? []
        : [
            `${held.length} audit entr${held.length === 1 ? "y" : "ies"} refused for good by the audit store (or set aside) ` +
              `could not be kept in ${this.#options.backlog?.path ?? ""}.set-aside (${held[0]!.aside!.problem}); ` +
              "held in the audit journal and retried, never released before they are kept",
          ];
    return [
      ...notKept,
      ...this.#journalFailures.problems(
        () => this.#unjournaled(),
        this.#reserve !== undefined,
        () => unopenedReserveText(this.#unopenedReserve),
      ),
    ];
  }

  /** Backlog entries not in the journal: those in its reserve and those held only in memory. */
  #unjournaled(): { reserved: number; memoryOnly: number } {
    let reserved = 0;
    let memoryOnly = 0;
    for (const item of this.#backlog) {
      if (item.journaled || item.entry === undefined) continue;
      if (this.#reservedIds.has(item.entry.id)) reserved++;
      else memoryOnly++;
    }
    return { reserved, memoryOnly };
  }

  /**
   * The one place a `:fail` entry is made: a failure after a command's `allowed` entry (the
   * command's own error, a safe-state write a manual fault, a re-drive or a trip met, a failure
   * told after the command answered). It is recorded by `record` and then published as
   * `command-fail` (the command's id, its action and target, the entry's reason) exactly once (adversarial
   * review adv15r, M2: the `:fail` of a safety function or a system action was recorded but never
   * published, so an HMI listening to events did not learn that a safe state failed).
   */
  recordFail(entry: AuditEntry, record: (entry: AuditEntry) => Promise<void>): Promise<void> {
    const reason = entry.reason ?? "";
    this.#logger.error(
      { id: entry.refersTo, action: entry.action, reason },
      "a command failed after its audit entry was recorded",
    );
    // Published once the entry is with the writer (as before: after it was recorded), so a
    // listener that reads the trail on the event finds it, or finds it waiting in the backlog.
    return record(entry).finally(() =>
      this.publish("command-fail", {
        id: entry.refersTo!,
        principal: entry.principal,
        action: entry.action,
        target: entry.target,
        reason,
      }),
    );
  }

  publish<TType extends "command-refuse" | "command-fail">(type: TType, event: Omit<KilnEvents[TType], "at">): void {
    void this.#options.bus?.publish(type, { at: this.#options.clock.now(), ...event } as KilnEvents[TType]);
  }

  /**
   * Which of the replayed journal `records` `<journal>.set-aside` holds, each as its exact JSON line
   * (what {@link #keepAside} appended): a journal record replayed after a crash that is one of them
   * was kept aside already. Matched by content, not by id alone: a follow-up recorded again without
   * its values has the same id. The file is streamed, never read whole ({@link setAsideLinesAmong}).
   * When it cannot be read, nothing is matched (kept aside twice, never lost).
   */
  async #keptAsideEntries(path: string, records: readonly string[]): Promise<Set<string>> {
    try {
      return await setAsideLinesAmong(`${path}.set-aside`, new Set(records));
    } catch (error) {
      this.#logger.warn({ path, error: String(error) }, "the audit set-aside file could not be read at open");
      return new Set();
    }
  }

  /**
   * An entry that leaves the backlog unstored (refused for good by the store, or set aside as a
   * poison entry) is never silently gone: appended (one JSON line, flushed) to
   * `<journal>.set-aside` when there is a journal, before its journal record is released; counted
   * in `skipped` (and `skippedNotKept` when it could not be kept there: no journal, or the append
   * failed), named by health as a problem, logged with the whole entry, and reported by
   * `audit-entry-skip` (adversarial review 15w).
   *
   * `item`: the backlog entry it leaves. When its journal record is its only durable copy and the
   * append fails (a full disk), it is not skipped: it stays at the head with its journal record
   * (`item.aside`), the append is retried by the drain (or at the next start, from the journal),
   * and health names it until it is kept (adversarial review 15x, F1).
   * @returns false when it was held so (nothing counted, nothing to release), else true.
   */
  async #keepAside(entry: AuditEntry, error: unknown, item?: BacklogItem): Promise<boolean> {
    const path = this.#options.backlog?.path;
    let kept = false;
    if (path !== undefined) {
      try {
        await appendFile(`${path}.set-aside`, `${encodeExactJson(entry)}\n`, { encoding: "utf8", flush: true });
        kept = true;
      } catch (keepError) {
        this.#logger.error({ id: entry.id, error: String(keepError) }, "a skipped audit entry could not be kept aside");
        if (item?.journaled === true) {
          item.aside = { entry, error, problem: String(keepError) };
          return false;
        }
      }
    }
    if (item !== undefined) item.aside = undefined;
    this.#skipped++;
    if (!kept) this.#skippedNotKept++;
    // An abandoned call for it is still out: if it lands, this is taken back (fix15ak).
    if (this.#lateCalls.has(entry.id)) this.#asideWhileOut.set(entry.id, { entry, kept, setAside: false });
    // A follow-up naming its intent (a refusal, a `:fail`) is what the trail says became of that
    // command: once, it is recorded again under its id without the values and reason the store
    // may have refused, saying so; a stripped one that leaves unstored too is reported as the
    // drop of what it said (adversarial review adv15r, M3).
    const stripped = entry.refersTo !== undefined && !isStrippedFollowUp(entry) ? strippedFollowUp(entry) : undefined;
    const reason =
      (typeof error === "string" ? error : reasonOf(error, undefined)) +
      (kept ? `; kept in ${path}.set-aside` : "; not kept in a file (no audit journal, or the append failed)") +
      (stripped === undefined ? "" : "; recorded again under its id without its values and reason");
    this.#logger.error(
      { id: entry.id, action: entry.action, reason, entry: encodeExactJson(entry) },
      "an audit entry left the backlog unstored",
    );
    void this.#options.bus?.publish("audit-entry-skip", {
      at: this.#options.clock.now(),
      id: entry.id,
      principal: entry.principal,
      action: entry.action,
      target: entry.target,
      outcome: entry.outcome,
      reason,
    });
    if (stripped !== undefined) {
      // Behind every waiting entry (the journal releases oldest first); its own writer turn.
      void this.serial(() => this.recordNow(stripped)).catch((recordError: unknown) => {
        this.#logger.error(
          { id: stripped.id, error: String(recordError) },
          "a follow-up recorded without its values could not be queued",
        );
        this.#dropReports.reportRefusalDrop(stripped, "its audit entry could not be queued", false);
      });
    } else if (entry.refersTo !== undefined) {
      this.#dropReports.reportRefusalDrop(entry, "the audit store refused it even without its values", false);
    }
    return true;
  }

  /**
   * Releases the journal's oldest record. `durable`: a mark makes this and every earlier release
   * durable before it resolves (ADR 0034), so they are not loaded again at the next start; when
   * the mark cannot be written they may come back (stored once per id), which is logged.
   */
  async #releaseJournalHead(durable = false): Promise<void> {
    const journal = await this.#openJournal();
    await journal?.release({ durable }).catch((error: unknown) => {
      this.#logger.error({ error: String(error) }, "the audit journal could not make a release durable");
    });
  }

  /**
   * Opens the journal once and loads what an earlier run left in it to the front of the backlog.
   * Damage found there (a torn tail cut off, corrupt stretches skipped, a record whose checksum
   * holds but whose entry cannot be decoded) is logged and published as `audit-entry-drop` with
   * its counts: those entries are lost, and say so. A journal file deleted between runs cannot be
   * told from one that was never written (ADR 0013).
   */
  #openJournal(): Promise<RecordJournal | undefined> {
    const path = this.#options.backlog?.path;
    // A closed runner never (re)opens its journal: its lock belongs to whoever runs next.
    if (path === undefined || (this.#closed && this.#journal === undefined)) return Promise.resolve(undefined);
    this.#journal ??= (async () => {
      try {
        const { journal, recovery } = await RecordJournal.open(path, {
          maxBytes: this.#options.backlog?.maxBytes ?? 64 * 1024 * 1024,
          pathOption: "audit.backlog.path",
          // A disk the journal filled before a crash: the reserve's room (beside it for this)
          // makes room for the lock, so the backlog is replayed; the reserve is made again when
          // the volume has room (#openReserve, #retryReserve; ADR 0034 amendment, issue 15).
          makeRoom: async () => {
            const freed = await ReservedRecord.shrink(`${path}.reserve`, RESERVE_SLOT_BYTES);
            if (freed)
              this.#logger.warn(
                { path },
                "the disk is full: the audit reserve's room was given back to take the journal's lock",
              );
            return freed;
          },
        });
        const recovered: BacklogItem[] = [];
        const tombstoned = new Set<string>();
        let undecodable = 0;
        await journal
          .scan((payload) => {
            const dropped = decodeTombstone(payload);
            if (dropped !== undefined) {
              for (const id of dropped) tombstoned.add(id);
              recovered.push({ entry: undefined, journaled: true, failures: 0 });
              return;
            }
            const entry = decodeEntry(payload);
            if (entry === undefined) undecodable++;
            // An undecodable record keeps its place (the journal releases oldest first) and is released unread.
            recovered.push({ entry, journaled: true, failures: 0, since: this.#options.clock.now(), reported: true });
          })
          .catch(async (error: unknown) => {
            // Closed again, so its lock does not keep the next attempt (or another process) out.
            await journal.close().catch(() => undefined);
            throw error;
          });
        // Entries dropped (and reported) in an earlier run stay dropped: released unread in their
        // place, and counted into the `audit.drop` summary (issue 15).
        const tombstonedEntries = recovered.flatMap((item) =>
          item.entry !== undefined && tombstoned.has(item.entry.id) ? [item.entry] : [],
        );
        if (tombstonedEntries.length > 0) {
          this.#tallyDrops(
            tombstonedEntries,
            tombstonedEntries.length,
            "dropped by drop-oldest in an earlier run (journal tombstones found at open)",
          );
        }
        // Kept aside in an earlier run (a probe mid-backlog, or a head before its release was
        // durable) and then a crash: its record is released unread in its place, never kept
        // aside and counted again (fix15ag, adv15b LOW-C).
        const replayed = recovered.flatMap((item) =>
          item.entry === undefined || tombstoned.has(item.entry.id) ? [] : [encodeExactJson(item.entry)],
        );
        const keptAside = await this.#keptAsideEntries(path, replayed);
        let alreadyKept = 0;
        this.#backlog.unshift(
          ...recovered.map((item) => {
            if (item.entry === undefined) return item;
            if (tombstoned.has(item.entry.id)) return { entry: undefined, journaled: true, failures: 0 };
            if (!keptAside.has(encodeExactJson(item.entry))) return item;
            alreadyKept++;
            return { entry: undefined, journaled: true, failures: 0 };
          }),
        );
        if (alreadyKept > 0)
          this.#logger.warn(
            { path, count: alreadyKept },
            "audit journal records already kept aside in an earlier run are released unread (not kept aside again)",
          );
        this.#reportDamage(path, { ...recovery, undecodable });
        // What the journal holds now, for the reserve's open (now or on a retry): fix15p.
        for (const item of this.#backlog) {
          if (item.entry === undefined) continue;
          this.#journaledAtOpen.add(item.entry.id);
          if (SUMMARY_ACTIONS.has(item.entry.action)) this.#summariesAtOpen.add(item.entry.id);
        }
        await this.#openReserve(path);
        // Drops found at this open (tombstones, damage) are made durable with the reserve's counts.
        if (this.#drops !== undefined) await this.#persistReserve();
        // Entries held only in memory while it could not be opened (or while stopped) are journaled behind it.
        await this.#journalHeldEntries(journal);
        // Only now: until they are journaled (or a failure that names them is in force), health
        // still names the open failure and the entries held only in memory. Cleared before, a
        // host (or an operator) reading "no journal problem" could stop or lose the process
        // while they were still in memory only (issue 15: 22 of 31 lost to a SIGKILL so timed).
        this.#journalFailures.clear("open");
        return journal;
      } catch (error) {
        this.#journal = undefined;
        this.#logger.error({ path, error: String(error) }, "the audit journal could not be opened");
        // Not silent: health names it, it is reported, and it is retried on the backoff (review 15c).
        this.#journalFailures.note("open", error, path);
        this.#scheduleRetry();
        return undefined;
      }
    })();
    return this.#journal;
  }

  #reportDamage(
    path: string,
    damage: { skippedRecords: number; skippedBytes: number; discardedBytes: number; undecodable: number },
  ): void {
    const { skippedRecords, skippedBytes, discardedBytes, undecodable } = damage;
    // Each corrupt stretch and a torn tail hold at least one entry; how many more cannot be known.
    const lost = skippedRecords + (discardedBytes > 0 ? 1 : 0) + undecodable;
    if (lost === 0) return;
    const reason =
      `the audit journal ${path} was damaged: ${skippedRecords} corrupt stretch(es) (${skippedBytes} bytes) ` +
      `skipped, a torn tail of ${discardedBytes} bytes cut off, ${undecodable} undecodable record(s); ` +
      `at least ${lost} entr${lost === 1 ? "y" : "ies"} lost`;
    this.#logger.error({ path, ...damage }, "the audit journal was damaged; entries in it were lost");
    this.#tallyDrops([], lost, reason);
    this.#dropReports.reportDrop(lost, reason);
  }
}

/** A one-shot signal: `released` settles once `release()` is called. */
function giveUpSignal(): { readonly released: Promise<void>; release(): void } {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  return { released, release };
}
