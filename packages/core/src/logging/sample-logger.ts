import PQueue from "p-queue";
import { KilnError } from "../domain/errors";
import type { Sample } from "../domain/sample";
import type { KilnEvents } from "../events/catalogue";
import type { EventBus } from "../events/event-bus";
import { RollingStats, type StatsSummary } from "../stats/rolling-stats";
import type { Clock, TimerHandle } from "../ports/clock";
import type { Logger } from "../ports/logger";
import { silentLogger } from "../runtime/silent-logger";
import { monotonicNow } from "../runtime/system-clock";
import type { Counter, Gauge, Histogram, Metrics } from "@kiln/core/driver-kit";
import type { SampleConflict, SampleWriteResult } from "@kiln/core/driver-kit";
import type { CircuitBreakerSnapshot } from "../resilience/circuit-breaker";
import type { GuardedSampleSink } from "../resilience/guarded-ports";
import { DEFAULT_JOURNAL_MAX_BYTES } from "../journal/record-journal";
import { bisectBatch, conflictsOf, refusalReason } from "./batch-bisect";
import { SampleJournal, type SampleJournalSkip } from "./sample-journal";

/** The default size limit of the spool file, in bytes: 1 GiB. */
export const DEFAULT_SPOOL_MAX_BYTES = DEFAULT_JOURNAL_MAX_BYTES;

/** The `samples-drop` reason of a conflict, by where the other sample is (see `SampleConflict`). */
const CONFLICT_REASONS: Readonly<Record<SampleConflict["existing"], string>> = {
  stored: "conflict: a different sample is stored at this timestamp",
  batch: "conflict: a different sample has this timestamp earlier in the batch",
};

/** How long the replay waits before trying again after the spool could not be read, in ms. */
const REPLAY_RETRY_MS = 1_000;

/** What happens when `maxBufferedSamples` are waiting for the store. */
export type OverflowPolicy = "block" | "drop-oldest" | "spool";

/** Settings of a {@link SampleLogger}. */
export interface SampleLoggerSettings {
  /** A batch is flushed as soon as this many samples wait in it. */
  readonly maxBatchSize: number;
  /** ...or when its oldest sample has waited this long, in ms. */
  readonly maxLatencyMs: number;
  /** Batches written at the same time (also the number of tag lanes that keep per-tag order). */
  readonly flushConcurrency: number;
  /** Samples held in memory at most before the overflow policy applies. */
  readonly maxBufferedSamples: number;
  /** `block` (back-pressure on acquisition), `drop-oldest` (counted), or `spool` (to disk). */
  readonly overflow: OverflowPolicy;
  /** Journal file for `spool` (and for draining at shutdown while the store is down). */
  readonly spoolPath?: string;
  /**
   * Size limit of the spool file, in bytes. A batch that would pass it is not spooled: it is
   * dropped, counted and published as `samples-drop` (reason "spool full"), as is a batch the
   * disk refuses (e.g. `ENOSPC`, reason "spool write failed: ..."). Nothing is counted as
   * spooled before it is durable.
   * @default DEFAULT_SPOOL_MAX_BYTES (1 GiB)
   */
  readonly spoolMaxBytes?: number;
  /** How long `stop()` keeps trying to reach a failing store before spooling (or, without a spool, giving up), in ms. */
  readonly drainTimeoutMs: number;
}

/** Options of {@link SampleLogger}. */
export interface SampleLoggerOptions extends SampleLoggerSettings {
  /**
   * The store the batches are written to, already wrapped in its port policy by composition
   * (write timeout, breaker, retry with backoff until stored; see `guardStore`).
   */
  readonly sink: GuardedSampleSink;
  /** Time source for batch latency and the drain deadline. */
  readonly clock: Clock;
  /** Where flush, drop, spool and breaker events are published. */
  readonly bus: EventBus<KilnEvents>;
  /** Where sample counters, buffered samples and flush latency are reported; nothing is reported when omitted. */
  readonly metrics?: Metrics;
  /** Where failures and spool changes are logged. @default silentLogger */
  readonly logger?: Logger;
}

/** Counters and state of the logging pipeline, for `health()`. */
export interface SampleLoggerHealth {
  /**
   * `memory`: batches go straight to the store. `spooling`: the store is behind; new samples go
   * to the journal. `replaying`: the store is back and takes the journal's records; new samples
   * go straight to the store again meanwhile, so a full journal never costs new samples.
   */
  readonly mode: "stopped" | "memory" | "spooling" | "replaying";
  /** The configured overflow policy. */
  readonly overflow: OverflowPolicy;
  /** Samples accepted by `append`, since the logger was created. */
  readonly samplesIn: number;
  /** Samples written to the store (replayed ones included, conflicts not), since the logger was created. */
  readonly samplesOut: number;
  /**
   * Samples lost (drop-oldest, rejected by the store, refused as a conflict with a different
   * sample at the same tag and timestamp, failed spool write, unwritten at stop), since creation.
   */
  readonly samplesDropped: number;
  /**
   * Samples whose outcome is unknown, since the logger was created: without a spool, a batch
   * whose write was under way (or had timed out) when `stop()` gave up at its drain deadline. The
   * store may or may not have committed it, so it is not counted in `samplesDropped`; lost
   * samples are at least `samplesDropped` and at most `samplesDropped + samplesAbandoned`.
   * Published as `samples-abandon`. With a spool, such a batch is journaled instead (replay is
   * idempotent).
   */
  readonly samplesAbandoned: number;
  /** Samples written to the journal, since the logger was created. */
  readonly samplesSpooled: number;
  /** Samples replayed from the journal to the store, since the logger was created. */
  readonly samplesReplayed: number;
  /** Samples held in memory now (waiting or being written). */
  readonly buffered: number;
  /** Samples waiting in the journal now. */
  readonly spooled: number;
  /** Bytes the spool file holds now (0 without a spool). */
  readonly spoolBytes: number;
  /**
   * Corrupt spool records skipped (at start, and during replay), since the logger was created.
   * Their samples could not be read back; the count of samples is unknown, so they are not in
   * `samplesDropped`. Each skip is published as `spool-record-skip` and shows in `health().problems`.
   */
  readonly spoolCorruptRecords: number;
  /** Poll cycles that waited for room under the `block` policy. */
  readonly blockedWaits: number;
  /**
   * Samples taken in past `maxBufferedSamples` under the `block` policy, since the logger was
   * created (none lost: they are written like any other). A poll is let in while what is held and
   * granted is below the bound (ADR 0046), so the bound is passed by at most the scan let in last,
   * plus samples no poll brings: staleness and link-loss marks (at most one per tag per change of
   * its quality while polls are held back: a tag already marked is not marked again, and a link
   * flapping while the buffer is at its bound adds none, since the probe read after a reconnect
   * takes room like a poll) and subscription notifications.
   */
  readonly samplesOverBound: number;
  /** Duration of successful batch writes, in ms. */
  readonly flushLatency: StatsSummary;
  /** State and counters of the samples port's circuit breaker (`store:samples`). */
  readonly breaker: CircuitBreakerSnapshot;
}

interface Lane {
  readonly index: number;
  buffer: Sample[];
  head: number;
  /** Clock time the oldest waiting sample arrived. */
  firstAt: number;
  flushing: boolean;
  inFlight: Sample[] | undefined;
  /** True when the in-flight batch is known not to be stored (never sent, or its last attempt failed definitely). */
  inFlightFailed: boolean;
  /** Monotonic time the in-flight batch's write began. */
  inFlightSince: number;
}

/**
 * The batched, loss-free path from the current value table to a {@link SampleSink}.
 *
 * Samples are spread over `flushConcurrency` lanes by tag (so each tag's samples are written
 * in order) and flushed in batches of at most `maxBatchSize`, or after `maxLatencyMs`, on a
 * p-queue. A failed batch is retried by the guarded sink (capped backoff, through the store's
 * circuit breaker) until it is stored, superseded by the spool or the logger stops; every failed
 * attempt is published as `batch-flush-fail`, and nothing is dropped silently. Memory is bounded by `maxBufferedSamples`; at the bound the
 * overflow policy decides: `block` holds acquisition back, `drop-oldest` drops (counted,
 * published as `samples-drop`), `spool` moves everything waiting to a crash-safe journal on
 * disk and keeps writing through it until the store has caught up, replaying in order.
 */
export class SampleLogger {
  readonly #options: SampleLoggerOptions;
  readonly #logger: Logger;
  readonly #lanes: Lane[];
  readonly #queue: PQueue;
  readonly #flushLatency = new RollingStats();
  readonly #instruments:
    | {
        in: Counter;
        out: Counter;
        dropped: Counter;
        spooled: Counter;
        buffered: Gauge;
        overBound: Counter;
        blockedWaits: Counter;
        flush: Histogram;
      }
    | undefined;
  #mode: SampleLoggerHealth["mode"] = "stopped";
  #generation = 0;
  /** Aborted when the generation changes: ends the retries of batches that were moved to the spool. */
  #superseded = new AbortController();
  #buffered = 0;
  #timer: TimerHandle | undefined;
  #journal: SampleJournal | undefined;
  #spoolBuffer: Sample[] = [];
  #spoolChain: Promise<void> = Promise.resolve();
  #replaying: Promise<void> | undefined;
  /** Why the journal refused its last append (full, or the disk failed); undefined once it takes one again or is replayed to the end. */
  #journalRefusal: string | undefined;
  /** The generation the running replay belongs to. */
  #replayGeneration = -1;
  /** Samples on their way from memory to the journal (counted as buffered). */
  #journalPending = 0;
  #stopping = new AbortController();
  /** The last batch write to the store failed (cleared by the next one that succeeds). */
  #lastWriteFailed = false;
  #roomWaiters: RoomWaiter[] = [];
  /** Room granted to polls under way (`block`), not yet released: they may still append that many. */
  #reserved = 0;
  /** Drops of the overflow bound, by reason, published as one `samples-drop` per latency period. */
  #pendingDrops = new Map<string, number>();
  /** False while the store is not open yet (a degraded start): everything is spooled, nothing replayed. */
  #storeReady = true;
  #stats = {
    in: 0,
    out: 0,
    dropped: 0,
    abandoned: 0,
    spooled: 0,
    replayed: 0,
    blockedWaits: 0,
    overBound: 0,
    corruptRecords: 0,
  };

  constructor(options: SampleLoggerOptions) {
    validate(options);
    this.#options = options;
    this.#logger = (options.logger ?? silentLogger).child({ component: "sample-logger" });
    this.#lanes = Array.from({ length: options.flushConcurrency }, (_, index) => ({
      index,
      buffer: [],
      head: 0,
      firstAt: 0,
      flushing: false,
      inFlight: undefined,
      inFlightFailed: false,
      inFlightSince: 0,
    }));
    this.#queue = new PQueue({ concurrency: options.flushConcurrency });
    const metrics = options.metrics;
    this.#instruments = metrics && {
      in: metrics.counter("kiln_samples_in_total", "Samples offered to the logging pipeline"),
      out: metrics.counter(
        "kiln_samples_logged_total",
        "Samples the store took (each once; conflicts count as dropped)",
      ),
      dropped: metrics.counter("kiln_samples_dropped_total", "Samples dropped by the overflow policy"),
      spooled: metrics.counter("kiln_samples_spooled_total", "Samples written to the disk spool"),
      buffered: metrics.gauge("kiln_samples_buffered", "Samples held in memory"),
      overBound: metrics.counter(
        "kiln_samples_over_bound_total",
        "Samples taken past maxBufferedSamples under overflow 'block' (kept and written, not lost)",
      ),
      blockedWaits: metrics.counter(
        "kiln_logging_blocked_waits_total",
        "Polls that waited for room in the logging buffer (overflow 'block')",
      ),
      flush: metrics.histogram("kiln_batch_flush_seconds", "Batch write latency (s)"),
    };
  }

  /**
   * Opens the spool (if configured) and replays what a previous run left in it.
   * With `storeReady: false` (the store could not be opened yet), every sample goes to the
   * spool and nothing is written until {@link SampleLogger.storeReady} is called.
   * @throws KilnError `KILN_VALIDATION` for `storeReady: false` without a spool;
   *   `KILN_JOURNAL_LOCKED` when another live journal has the spool open (a journal has one
   *   writer); `KILN_JOURNAL_FAILED` when the spool cannot be opened.
   */
  async start(options: { readonly storeReady?: boolean } = {}): Promise<void> {
    if (this.#mode !== "stopped") return;
    const storeReady = options.storeReady ?? true;
    if (!storeReady && !this.#options.spoolPath) {
      throw new KilnError("KILN_VALIDATION", "Starting without a store needs logging.spoolPath.", {
        details: { issues: [{ path: "logging.spoolPath", message: "required to start while the store is down" }] },
      });
    }
    this.#storeReady = storeReady;
    this.#stopping = new AbortController();
    this.#mode = "memory";
    if (this.#options.spoolPath) {
      let opened: Awaited<ReturnType<typeof SampleJournal.open>>;
      try {
        opened = await SampleJournal.open(this.#options.spoolPath, {
          maxBytes: this.#options.spoolMaxBytes ?? DEFAULT_SPOOL_MAX_BYTES,
          pathOption: "spoolPath",
          onSkip: (skip) => this.#onSpoolSkip(skip),
        });
      } catch (error) {
        this.#mode = "stopped";
        throw error;
      }
      const { journal, recovery } = opened;
      this.#journal = journal;
      this.#stats.corruptRecords += recovery.skippedRecords;
      if (recovery.discardedBytes > 0) {
        this.#logger.warn({ ...recovery }, "spool had a torn tail from a crash; it was cut off");
      }
      if (recovery.skippedRecords > 0) {
        this.#logger.error({ ...recovery }, "spool had corrupt records; they were skipped");
        void this.#options.bus.publish("spool-record-skip", {
          at: this.#options.clock.now(),
          records: recovery.skippedRecords,
          bytes: recovery.skippedBytes,
          reason: `corrupt spool record (checksum) skipped at start; its samples are lost, how many is unknown`,
        });
      }
      if (!journal.empty || !storeReady) {
        if (!journal.empty) this.#logger.info({ samples: journal.samples }, "spool holds samples from a previous run");
        this.#enterSpooling();
      }
    }
  }

  /** Tells a logger started with `storeReady: false` that the store is open: the spool replays. */
  storeReady(): void {
    if (this.#storeReady) return;
    this.#storeReady = true;
    if (this.#mode === "spooling") this.#startReplay();
  }

  /**
   * Accepts one sample to log (called synchronously from the CVT observer). Never throws for
   * a full buffer: the overflow policy applies.
   */
  append(sample: Sample): void {
    if (this.#mode === "stopped") {
      throw new KilnError("KILN_LIFECYCLE", "The sample logger is not running.");
    }
    this.#stats.in++;
    this.#instruments?.in.inc();
    if (this.#mode === "spooling") {
      this.#spoolBuffer.push(sample);
      if (this.#spoolBuffer.length >= this.#options.maxBatchSize) void this.#spoolPending();
      else this.#armTimer();
      return;
    }
    const lane = this.#laneFor(sample.tag);
    if (lane.buffer.length === lane.head) lane.firstAt = monotonicNow(this.#options.clock);
    lane.buffer.push(sample);
    this.#buffered++;
    if (lane.buffer.length - lane.head >= this.#options.maxBatchSize) {
      this.#scheduleFlush(lane);
      // The timer's tick sets `kiln_samples_buffered`: it must follow appends while no write succeeds.
      if (this.#instruments) this.#armTimer();
    } else this.#armTimer();
    if (this.#buffered > this.#options.maxBufferedSamples) this.#overflow();
  }

  /**
   * Under the `block` policy, room for a poll of up to `samples` samples (ADR 0046): granted at once
   * while the samples held plus the room granted to polls still under way are below
   * `maxBufferedSamples`; else `ready` resolves once the buffer has drained below it. So the buffer
   * passes the bound by at most one scan (the poll let in last), counted in `samplesOverBound`,
   * however many groups poll at once; a scan of any size is let in once the buffer is below the
   * bound (a whole-scan fit let a group of `maxBufferedSamples` tags or more wait forever beside a
   * subscription, and served polls strictly in order: adv16n H1, M1). The poll calls `release()`
   * once its samples are appended (or it gave up). Other policies need no room: `ready` is undefined.
   */
  reserveRoom(samples: number): RoomReservation {
    if (this.#options.overflow !== "block" || this.#mode === "stopped") return NO_RESERVATION;
    const waiter: RoomWaiter = { samples, granted: false, released: false, grant: () => undefined };
    const release = (): void => {
      if (waiter.released) return;
      waiter.released = true;
      if (waiter.granted) this.#reserved -= samples;
      else this.#roomWaiters = this.#roomWaiters.filter((candidate) => candidate !== waiter);
      this.#releaseRoom(false);
    };
    if (this.#hasRoom()) {
      waiter.granted = true;
      this.#reserved += samples;
      return { ready: undefined, release };
    }
    this.#stats.blockedWaits++;
    this.#instruments?.blockedWaits.inc();
    const ready = new Promise<void>((resolve) => (waiter.grant = resolve));
    this.#roomWaiters.push(waiter);
    return { ready, release };
  }

  /** Whether a poll may be let in: what is held and granted is below the bound. */
  #hasRoom(): boolean {
    return this.#buffered + this.#reserved < this.#options.maxBufferedSamples;
  }

  /**
   * Flushes everything that is waiting and waits for it to be stored. While the store keeps
   * failing, it tries for `drainTimeoutMs`; then what is left goes to the spool when one is
   * configured, or is counted as dropped (`samples-drop`, reason "store unavailable at shutdown").
   * With a spool and a store that is not healthy (its breaker is not closed, its last write
   * failed, or a write has been waiting longer than `maxLatencyMs`), everything buffered goes to
   * the spool first, at once, so a process killed during the stop loses nothing that was acquired.
   * @param budgetMs how long draining may take, in ms (the caller's remaining stop budget). @default drainTimeoutMs
   */
  async stop(budgetMs?: number): Promise<void> {
    if (this.#mode === "stopped") return;
    const { clock } = this.#options;
    const drainTimeoutMs = Math.max(
      0,
      Math.min(budgetMs ?? this.#options.drainTimeoutMs, this.#options.drainTimeoutMs),
    );
    if (this.#journal && this.#mode === "memory" && !this.#storeHealthy()) this.#enterSpooling();
    if (this.#timer !== undefined) clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    const stopping = this.#stopping;
    const deadline = clock.setTimeout(
      () => stopping.abort(new KilnError("KILN_ABORTED", "drain deadline reached")),
      drainTimeoutMs,
    );
    // A store that ignores the abort (a frozen database) cannot hold stop past the deadline.
    const deadlineReached = new Promise<void>((resolve) => stopping.signal.addEventListener("abort", () => resolve()));
    const untilDeadline = (work: Promise<unknown> | undefined): Promise<unknown> =>
      Promise.race([work, deadlineReached]);
    if (this.#mode === "spooling") {
      // Everything new goes to the journal; once it is there, stop need not wait for the store.
      await this.#spoolPending();
    } else {
      await untilDeadline(this.#drainMemory());
    }
    clock.clearTimeout(deadline);
    stopping.abort(new KilnError("KILN_ABORTED", "sample logger stopped"));
    await untilDeadline(this.#queue.onIdle());
    await untilDeadline(this.#replaying);
    // Writes still pending now are abandoned: their batches are counted below, never by a late success.
    this.#nextGeneration();
    // Whatever could not be written leaves memory now: to the spool (replay is idempotent, so a
    // batch that may have been stored is safe there), or counted: as lost when it is known not to
    // be stored, as abandoned when a write of it was under way (it may or may not be stored).
    let unknown = 0;
    for (const lane of this.#lanes) if (lane.inFlight && !lane.inFlightFailed) unknown += lane.inFlight.length;
    const leftovers = this.#takeAll();
    if (this.#journal) {
      if (leftovers.length > 0) await this.#appendToJournal(leftovers);
      await this.#spoolPending();
    } else {
      this.#abandon(unknown);
      this.#drop(leftovers.length - unknown, "store unavailable at shutdown");
    }
    this.#flushDropEvent();
    this.#buffered = 0;
    this.#mode = "stopped";
    this.#publishBuffered();
    this.#releaseRoom(true);
    // Records skipped while replaying stay counted after the journal is closed.
    this.#stats.corruptRecords += this.#journal?.undecodable ?? 0;
    await this.#journal?.close();
    this.#journal = undefined;
  }

  /**
   * The samples port's breaker is closed, its last write did not fail, and no write has been
   * waiting longer than `maxLatencyMs` (a frozen database answers nothing, not even an error).
   */
  #storeHealthy(): boolean {
    const now = monotonicNow(this.#options.clock);
    const stuck = this.#lanes.some(
      (lane) => lane.inFlight !== undefined && now - lane.inFlightSince > this.#options.maxLatencyMs,
    );
    return this.#options.sink.breaker.snapshot.state.state === "closed" && !this.#lastWriteFailed && !stuck;
  }

  /** Counters, mode and breaker state. */
  health(): SampleLoggerHealth {
    return {
      mode: this.#mode,
      overflow: this.#options.overflow,
      samplesIn: this.#stats.in,
      samplesOut: this.#stats.out,
      samplesDropped: this.#stats.dropped,
      samplesAbandoned: this.#stats.abandoned,
      samplesSpooled: this.#stats.spooled,
      samplesReplayed: this.#stats.replayed,
      buffered: this.#held(),
      spooled: this.#journal?.samples ?? 0,
      spoolBytes: this.#journal?.bytes ?? 0,
      spoolCorruptRecords: this.#stats.corruptRecords + (this.#journal?.undecodable ?? 0),
      blockedWaits: this.#stats.blockedWaits,
      samplesOverBound: this.#stats.overBound,
      flushLatency: this.#flushLatency.summary(),
      breaker: this.#options.sink.breaker.snapshot,
    };
  }

  /** Samples held in memory now: waiting or being written, or on their way to the journal. */
  #held(): number {
    return this.#buffered + this.#spoolBuffer.length + this.#journalPending;
  }

  /**
   * Sets `kiln_samples_buffered` to what is held now: on each timer tick (at most `maxLatencyMs` after
   * an append) and whenever samples leave memory (written, dropped, moved to the journal), so the gauge
   * follows the buffer while the store is down, not only after a write succeeds (adv16n L2).
   */
  #publishBuffered(): void {
    this.#instruments?.buffered.set(this.#held());
  }

  /**
   * The lane of `tag`: a hash of its name, computed each time. A map from name to lane cost a
   * cache miss per sample in a large catalog, more than hashing a name (issue 16).
   */
  #laneFor(tag: string): Lane {
    const lanes = this.#lanes;
    if (lanes.length === 1) return lanes[0]!;
    let hash = 0;
    for (let i = 0; i < tag.length; i++) hash = (Math.imul(hash, 31) + tag.charCodeAt(i)) | 0;
    return lanes[(hash >>> 0) % lanes.length]!;
  }

  #armTimer(): void {
    if (this.#timer !== undefined) return;
    this.#timer = this.#options.clock.setTimeout(() => this.#onTimer(), this.#options.maxLatencyMs);
  }

  #onTimer(): void {
    this.#timer = undefined;
    this.#publishBuffered();
    this.#flushDropEvent();
    if (this.#mode === "spooling") {
      void this.#spoolPending();
      return;
    }
    const now = monotonicNow(this.#options.clock);
    let waiting = false;
    for (const lane of this.#lanes) {
      if (lane.buffer.length === lane.head) continue;
      if (now - lane.firstAt >= this.#options.maxLatencyMs) this.#scheduleFlush(lane);
      else waiting = true;
    }
    if (waiting) this.#armTimer();
  }

  #scheduleFlush(lane: Lane): void {
    if (lane.flushing || (this.#mode !== "memory" && this.#mode !== "replaying")) return;
    lane.flushing = true;
    const generation = this.#generation;
    void this.#queue.add(() => this.#flushLane(lane, generation, false));
  }

  async #flushLane(lane: Lane, generation: number, draining: boolean): Promise<void> {
    const { maxBatchSize, maxLatencyMs, clock } = this.#options;
    try {
      while (generation === this.#generation && lane.buffer.length > lane.head) {
        const waiting = lane.buffer.length - lane.head;
        if (!draining && waiting < maxBatchSize && monotonicNow(clock) - lane.firstAt < maxLatencyMs) break;
        const batch = lane.buffer.slice(lane.head, lane.head + maxBatchSize);
        lane.head += batch.length;
        compact(lane);
        lane.firstAt = monotonicNow(clock);
        lane.inFlight = batch;
        lane.inFlightFailed = false;
        lane.inFlightSince = monotonicNow(clock);
        const written = await this.#write(batch, generation, lane);
        if (generation !== this.#generation) return;
        // Given up (stopping): it stays in flight, so stop spools it or counts it, by what is known of it.
        if (!written) return;
        lane.inFlight = undefined;
        this.#buffered -= batch.length;
        this.#publishBuffered();
        this.#releaseRoom(false);
      }
    } finally {
      if (generation === this.#generation) {
        lane.flushing = false;
        if (lane.buffer.length > lane.head) this.#armTimer();
      }
    }
  }

  /**
   * Writes one batch through the guarded sink, which retries it with capped backoff until it is
   * stored, the batch is superseded (moved to the spool), or the logger stops. Every failed
   * attempt is published as `batch-flush-fail`. A rejection retrying cannot fix is counted as
   * dropped and reported. `lane` is the lane whose in-flight batch this is.
   * @returns false when it gave up because the batch was superseded or the logger stopped.
   */
  async #write(batch: readonly Sample[], generation: number, lane?: Lane): Promise<boolean> {
    const { sink, clock, bus } = this.#options;
    const stop = this.#stopping.signal;
    if (generation !== this.#generation || stop.aborted) {
      if (lane) lane.inFlightFailed = true; // never sent
      return false;
    }
    const started = monotonicNow(clock);
    let attempts = 1;
    let result: SampleWriteResult | void;
    // Whether the batch is known not to be stored when the stop gives up on it: only while waiting
    // to retry after an attempt the store refused. An attempt under way, or one that timed out, may
    // still commit: its outcome is unknown.
    let timedOut = false;
    let refusedUntil = Number.NEGATIVE_INFINITY;
    try {
      result = await sink.writeBatch(batch, {
        signal: AbortSignal.any([stop, this.#superseded.signal]),
        onRetry: ({ attempt, error, delayMs }) => {
          if (KilnError.is(error, "KILN_TIMEOUT") || KilnError.is(error, "KILN_ABORTED")) timedOut = true;
          else refusedUntil = monotonicNow(clock) + delayMs;
          attempts = attempt + 1;
          this.#lastWriteFailed = true;
          void bus.publish("batch-flush-fail", { at: clock.now(), size: batch.length, attempt, error });
          this.#logger.warn({ error: String(error), attempt, size: batch.length }, "batch write failed; retrying");
        },
      });
    } catch (error) {
      this.#lastWriteFailed = true;
      if (generation !== this.#generation || stop.aborted) {
        if (lane) lane.inFlightFailed = !timedOut && monotonicNow(clock) < refusedUntil;
        return false;
      }
      void bus.publish("batch-flush-fail", { at: clock.now(), size: batch.length, attempt: attempts, error });
      this.#logger.error({ error: String(error), size: batch.length }, "store rejected a batch; it cannot be retried");
      // Refuse only the samples the store cannot take; the rest of the batch is stored.
      const outcome = await bisectBatch(
        batch,
        error,
        (part) => sink.writeBatch(part, { signal: AbortSignal.any([stop, this.#superseded.signal]) }),
        () => generation === this.#generation && !stop.aborted,
      ).catch(() => undefined);
      if (!outcome) return false;
      for (const { sample, error: refusal } of outcome.refused) this.#drop(1, refusalReason(refusal), sample.tag);
      this.#countStored(outcome.written, outcome.conflicts);
      return true;
    }
    this.#lastWriteFailed = false;
    // Stored after it was moved to the spool (or abandoned at stop): the spool's copy is counted when replayed.
    if (generation !== this.#generation) return false;
    // Counted and taken off the lane in one tick, so spooling cannot move (and count) it again.
    if (lane) lane.inFlight = undefined;
    const duration = monotonicNow(clock) - started;
    this.#flushLatency.observe(duration);
    this.#instruments?.flush.observe(duration / 1000);
    this.#countStored(batch.length, conflictsOf(result));
    void bus.publish("batch-flush-end", { at: clock.now(), size: batch.length, durationMs: duration, attempts });
    return true;
  }

  /**
   * Counts the samples of a write the store took: the ones it stored as `samplesOut`, its
   * conflicts (a different sample already holds their tag and timestamp) as dropped, one
   * `samples-drop` per tag and kind of conflict.
   */
  #countStored(taken: number, conflicts: readonly SampleConflict[]): void {
    const stored = taken - conflicts.length;
    this.#instruments?.out.inc(stored);
    this.#stats.out += stored;
    if (conflicts.length === 0) return;
    const counts = new Map<string, { tag: string; reason: string; count: number }>();
    for (const { sample, existing } of conflicts) {
      const reason = CONFLICT_REASONS[existing];
      const key = `${existing}:${sample.tag}`;
      const entry = counts.get(key);
      if (entry) entry.count++;
      else counts.set(key, { tag: sample.tag, reason, count: 1 });
    }
    for (const { tag, reason, count } of counts.values()) this.#drop(count, reason, tag);
    this.#logger.warn(
      { conflicts: conflicts.length },
      "store refused samples whose tag and timestamp hold a different sample; counted as dropped",
    );
  }

  #nextGeneration(): void {
    this.#generation++;
    this.#superseded.abort(new KilnError("KILN_ABORTED", "batch moved to the spool"));
    this.#superseded = new AbortController();
  }

  #overflow(): void {
    switch (this.#options.overflow) {
      case "block":
        // Acquisition waits in reserveRoom() while the buffer is at its bound: what passes is counted.
        this.#stats.overBound++;
        this.#instruments?.overBound.inc();
        return;
      case "drop-oldest":
        this.#dropOldest(this.#buffered - this.#options.maxBufferedSamples, "buffer full (drop-oldest)");
        return;
      case "spool":
        // While replaying, a journal that refuses appends cannot take memory's excess: moving it
        // there would only drop it; the oldest waiting samples are dropped instead, with the reason.
        if (this.#mode === "replaying" && this.#journalRefusal !== undefined) {
          this.#dropOldest(this.#buffered - this.#options.maxBufferedSamples, this.#journalRefusal);
        } else if (this.#journal) {
          this.#enterSpooling();
        }
        return;
    }
  }

  #dropOldest(count: number, reason: string): void {
    let remaining = count;
    while (remaining > 0) {
      let fullest: Lane | undefined;
      for (const lane of this.#lanes) {
        if (!fullest || lane.buffer.length - lane.head > fullest.buffer.length - fullest.head) fullest = lane;
      }
      const available = fullest ? fullest.buffer.length - fullest.head : 0;
      if (!fullest || available === 0) break;
      const take = Math.min(available, remaining);
      fullest.head += take;
      // The dropped samples must not stay referenced: memory is bounded, not only the count.
      compact(fullest);
      this.#buffered -= take;
      remaining -= take;
    }
    this.#publishBuffered();
    this.#drop(count - remaining, reason, undefined, true);
  }

  /** Counts `count` lost samples; `coalesced` ones are published as one event per latency period, with the exact count. */
  #drop(count: number, reason: string, tag?: string, coalesced = false): void {
    if (count <= 0) return;
    this.#stats.dropped += count;
    this.#instruments?.dropped.inc(count);
    if (coalesced) {
      this.#pendingDrops.set(reason, (this.#pendingDrops.get(reason) ?? 0) + count);
      this.#armTimer();
      return;
    }
    void this.#options.bus.publish("samples-drop", {
      at: this.#options.clock.now(),
      count,
      reason,
      ...(tag === undefined ? {} : { tag }),
    });
  }

  #abandon(count: number): void {
    if (count <= 0) return;
    this.#stats.abandoned += count;
    void this.#options.bus.publish("samples-abandon", {
      at: this.#options.clock.now(),
      count,
      reason:
        "outcome unknown: a write was under way when stop's drain deadline passed; the samples may or may not be stored",
    });
  }

  #flushDropEvent(): void {
    if (this.#pendingDrops.size === 0) return;
    const drops = this.#pendingDrops;
    this.#pendingDrops = new Map();
    for (const [reason, count] of drops) {
      void this.#options.bus.publish("samples-drop", { at: this.#options.clock.now(), count, reason });
    }
  }

  /**
   * Moves every sample held in memory (being written or waiting) to the journal, in lane order.
   * From `replaying` too: the store fell behind again while the journal was replaying.
   */
  #enterSpooling(): void {
    if (this.#mode === "spooling") return;
    const moved = this.#takeAll();
    this.#mode = "spooling";
    this.#nextGeneration();
    this.#buffered = 0;
    this.#releaseRoom(true);
    if (moved.length > 0) void this.#appendToJournal(moved);
    this.#publishBuffered();
    if (this.#storeReady) this.#startReplay();
  }

  /**
   * The store took a replayed record: new samples go straight to it again (the lanes) while the
   * replay goes on. The store is keyed by (tag, timestamp), so the order between the journal's
   * older samples and the new ones does not matter; what matters is that a journal full from a
   * long outage costs no new sample once the store is back.
   */
  #enterReplaying(): void {
    if (this.#mode !== "spooling") return;
    this.#mode = "replaying";
    // Samples still on their way to the journal join it; the replay writes them. Samples held in
    // memory because the journal was full are written now.
    void this.#spoolPending();
    this.#flushHeld();
    this.#logger.info({ spooled: this.#journal?.samples ?? 0 }, "store is back; replaying the spool beside new writes");
  }

  /**
   * Takes a batch the journal refused (full, or the disk failed) into memory instead: memory is a
   * buffer too, bounded by `maxBufferedSamples`. While spooling, the oldest held samples beyond
   * the bound are dropped and counted with `reason`; once the store takes writes again they are
   * written like any other. At stop, nothing is held: the batch is dropped and counted.
   */
  #holdInMemory(samples: readonly Sample[], reason: string): void {
    if (this.#mode === "stopped" || this.#stopping.signal.aborted) {
      this.#drop(samples.length, reason);
      return;
    }
    const now = monotonicNow(this.#options.clock);
    for (const sample of samples) {
      const lane = this.#laneFor(sample.tag);
      if (lane.buffer.length === lane.head) lane.firstAt = now;
      lane.buffer.push(sample);
    }
    this.#buffered += samples.length;
    this.#publishBuffered();
    const over = this.#buffered - this.#options.maxBufferedSamples;
    if (this.#mode === "spooling") {
      if (over > 0) this.#dropOldest(over, reason);
    } else {
      this.#flushHeld();
      if (over > 0) this.#overflow();
    }
  }

  /** Schedules every lane that holds samples (held while spooling) once writes go straight to the store again. */
  #flushHeld(): void {
    for (const lane of this.#lanes) if (lane.buffer.length > lane.head) this.#scheduleFlush(lane);
  }

  #startReplay(): void {
    if (this.#replaying !== undefined && this.#replayGeneration === this.#generation) return;
    // A replay of an older generation is ending (its write was superseded): the new one follows it.
    const previous = this.#replaying ?? Promise.resolve();
    this.#replayGeneration = this.#generation;
    const run: Promise<void> = previous
      .then(() => this.#replay())
      .finally(() => {
        if (this.#replaying === run) this.#replaying = undefined;
      });
    this.#replaying = run;
  }

  /** Empties every lane, in-flight batches first, preserving per-tag order. */
  #takeAll(): Sample[] {
    const all: Sample[] = [];
    for (const lane of this.#lanes) {
      if (lane.inFlight) all.push(...lane.inFlight);
      for (let i = lane.head; i < lane.buffer.length; i++) all.push(lane.buffer[i]!);
      lane.inFlight = undefined;
      lane.buffer = [];
      lane.head = 0;
      lane.flushing = false;
    }
    return all;
  }

  #spoolPending(): Promise<void> {
    if (this.#spoolBuffer.length === 0) return this.#spoolChain;
    const batch = this.#spoolBuffer;
    this.#spoolBuffer = [];
    return this.#appendToJournal(batch);
  }

  #appendToJournal(samples: Sample[]): Promise<void> {
    const journal = this.#journal!;
    const { maxBatchSize } = this.#options;
    this.#journalPending += samples.length;
    this.#spoolChain = this.#spoolChain.then(async () => {
      for (let offset = 0; offset < samples.length; offset += maxBatchSize) {
        const chunk = samples.slice(offset, offset + maxBatchSize);
        try {
          await journal.append(chunk);
        } catch (error) {
          this.#journalPending -= chunk.length;
          // A batch too large for one record is split; records before the failing one are durable.
          const appended = KilnError.is(error) ? Number(error.details?.["appendedSamples"] ?? 0) : 0;
          if (appended > 0) {
            this.#stats.spooled += appended;
            this.#instruments?.spooled.inc(appended);
            void this.#options.bus.publish("samples-spool", { at: this.#options.clock.now(), count: appended });
          }
          const full = KilnError.is(error) && error.code === "KILN_BUFFER_FULL";
          this.#logger.error({ error: String(error), size: chunk.length }, "spool write failed; batch held in memory");
          this.#journalRefusal = full ? "spool full" : `spool write failed: ${spoolErrorReason(error)}`;
          this.#holdInMemory(chunk.slice(appended), this.#journalRefusal);
          continue;
        }
        this.#journalRefusal = undefined;
        this.#journalPending -= chunk.length;
        this.#publishBuffered();
        this.#stats.spooled += chunk.length;
        this.#instruments?.spooled.inc(chunk.length);
        void this.#options.bus.publish("samples-spool", { at: this.#options.clock.now(), count: chunk.length });
      }
    });
    return this.#spoolChain;
  }

  /** What replay could not use: invalid samples are counted as dropped; a record that is not a batch is counted as corrupt. */
  #onSpoolSkip(skip: SampleJournalSkip): void {
    this.#logger.error({ ...skip }, "spool replay skipped what it could not use");
    if (skip.kind === "samples") {
      this.#drop(skip.count, skip.reason);
      return;
    }
    void this.#options.bus.publish("spool-record-skip", {
      at: this.#options.clock.now(),
      records: skip.count,
      reason: `${skip.reason}; its samples are lost, how many is unknown`,
    });
  }

  /** Writes journal records to the store in order; returns to memory mode once it has caught up. */
  async #replay(): Promise<void> {
    const generation = this.#generation;
    for (;;) {
      try {
        await this.#replayOnce(generation);
        return;
      } catch (error) {
        // The spool could not be read: never an unhandled rejection; try again while still spooling.
        this.#logger.error({ error: String(error) }, "spool replay failed; retrying");
        if (generation !== this.#generation || this.#stopping.signal.aborted) return;
        try {
          await this.#options.clock.sleep(REPLAY_RETRY_MS, this.#stopping.signal);
        } catch {
          return;
        }
      }
    }
  }

  async #replayOnce(generation: number): Promise<void> {
    const journal = this.#journal!;
    for (;;) {
      await this.#spoolChain;
      if (generation !== this.#generation) return;
      const batch = await journal.peek();
      if (generation !== this.#generation) return;
      if (batch === undefined) {
        // A journal write still under way (started while peek ran) is replayed before leaving spooling.
        if (this.#spoolBuffer.length > 0 || this.#journalPending > 0) {
          await this.#spoolPending();
          continue;
        }
        if (this.#stopping.signal.aborted) return;
        // Caught up: new samples go to memory again. Both fields change in the same tick, so a
        // later overflow starts a fresh replay.
        this.#mode = "memory";
        this.#replaying = undefined;
        this.#journalRefusal = undefined;
        this.#flushHeld();
        this.#logger.info({}, "spool replayed; back to direct writes");
        return;
      }
      const written = await this.#write(batch, generation);
      if (!written || generation !== this.#generation) return;
      await journal.release();
      this.#enterReplaying();
      this.#stats.replayed += batch.length;
      void this.#options.bus.publish("spool-replay", { at: this.#options.clock.now(), count: batch.length });
    }
  }

  /** Writes every lane out, however small its batch, until done or the stop deadline aborts. */
  async #drainMemory(): Promise<void> {
    await this.#queue.onIdle();
    const generation = this.#generation;
    for (const lane of this.#lanes) {
      if (lane.buffer.length === lane.head || lane.flushing) continue;
      lane.flushing = true;
      void this.#queue.add(() => this.#flushLane(lane, generation, true));
    }
    await this.#queue.onIdle();
  }

  /** Grants room to waiting polls, oldest first, while there is room (`all`: every one, the buffer was emptied or stopped). */
  #releaseRoom(all: boolean): void {
    while (this.#roomWaiters.length > 0) {
      const waiter = this.#roomWaiters[0]!;
      if (!all && !this.#hasRoom()) return;
      this.#roomWaiters.shift();
      waiter.granted = true;
      this.#reserved += waiter.samples;
      waiter.grant();
    }
  }
}

/** Room for one poll's samples under the `block` policy (see {@link SampleLogger.reserveRoom}). */
export interface RoomReservation {
  /** Resolves once the room is granted; undefined when it was granted at once (or is not needed). */
  readonly ready: Promise<void> | undefined;
  /** Gives the room back: after the poll's samples were appended, or when the poll gave up. Idempotent. */
  release(): void;
}

const NO_RESERVATION: RoomReservation = Object.freeze({ ready: undefined, release: () => undefined });

interface RoomWaiter {
  readonly samples: number;
  granted: boolean;
  released: boolean;
  grant: () => void;
}

/**
 * Lets go of the samples before a lane's head (written or dropped). Amortized O(1) per sample:
 * the array is copied only once the dead part is at least half of it (and more than a batch).
 */
function compact(lane: Lane): void {
  if (lane.head === lane.buffer.length) {
    lane.buffer = [];
    lane.head = 0;
  } else if (lane.head > 1024 && lane.head * 2 > lane.buffer.length) {
    lane.buffer = lane.buffer.slice(lane.head);
    lane.head = 0;
  }
}

function spoolErrorReason(error: unknown): string {
  if (!KilnError.is(error)) return String(error);
  const errno = (error.details as { errno?: unknown } | undefined)?.errno;
  return typeof errno === "string" ? `${error.code} (${errno})` : error.code;
}

function validate(options: SampleLoggerSettings): void {
  const positiveInteger = (name: keyof SampleLoggerSettings): void => {
    const value = options[name];
    if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
      throw new RangeError(`logging.${name} must be a positive integer, got ${String(value)}`);
    }
  };
  positiveInteger("maxBatchSize");
  positiveInteger("flushConcurrency");
  positiveInteger("maxBufferedSamples");
  if (!(options.maxLatencyMs > 0)) throw new RangeError("logging.maxLatencyMs must be positive");
  if (options.overflow === "spool" && !options.spoolPath) {
    throw new KilnError("KILN_VALIDATION", 'logging.spoolPath is required when logging.overflow is "spool".', {
      details: { issues: [{ path: "logging.spoolPath", message: 'required for overflow "spool"' }] },
    });
  }
  if (options.maxBufferedSamples < options.maxBatchSize) {
    throw new RangeError("logging.maxBufferedSamples must be at least logging.maxBatchSize");
  }
}
