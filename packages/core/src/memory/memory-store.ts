import { deepFreeze } from "../domain/deep-freeze";
// The fault switches are test tooling: their home is "@kiln/core/testing" (ADR 0027).
import type { MemoryStoreFaults } from "@kiln/core/testing";
import { MemoryStoreFaults as Faults } from "./memory-store-faults";
import type { Disposer } from "../domain/disposer";
import { z } from "zod";
import { KilnError, KilnValidationError, type ValidationIssue } from "../domain/errors";
import { checkSample, sameSamplePayload, sampleIssues, type Sample } from "../domain/sample";
import { frozenTagValue, interpolationOf, type Interpolation, type Tag, type TagDataType } from "../domain/tags";
import {
  checkAggregateQuery,
  refuseArrayTags,
  checkDownsampleQuery,
  checkIntervalQuery,
  checkValueAtQuery,
  checkValuesAtQuery,
  inRequestedOrder,
  type CheckedIntervals,
} from "../history/history-input";
import {
  aggregateSeries,
  downsampleSeries,
  valuesAtInSeries,
  valuesInSeries,
  type SampleSeries,
} from "../history/series-history";
import {
  checkContinuation,
  markEvictedBuckets,
  markEvictedIntervals,
  markEvictedTrend,
  markEvictedValues,
} from "../history/retention-horizon";
import { parseOrThrow } from "../domain/validation";
import type { AlarmHistory, AlarmHistoryEntry, TimeRange } from "@kiln/core/driver-kit";
import type { AuditEntry, AuditLog } from "@kiln/core/driver-kit";
import type { Clock } from "../ports/clock";
import { monotonicNow, SystemClock } from "../runtime/system-clock";
import { lowerBound, RetainedSamples, TimedEntries, upperBound } from "./retained-samples";
import type { EventStore, NewDomainEvent, StoredDomainEvent } from "@kiln/core/driver-kit";
import type { ProcessFilter, ProcessRecord, ProcessRepository } from "@kiln/core/driver-kit";
import type { RecipeRepository, StoredRecipe } from "@kiln/core/driver-kit";
import type { BucketQuery, HistoryQueries, SampleBucket, SampleHistory, SampleQuery } from "@kiln/core/driver-kit";
import type { AggregateInterval } from "@kiln/core/driver-kit";
import type { SampleConflict, SampleSink, SampleWriteResult } from "@kiln/core/driver-kit";
import type { Store } from "../ports/store";
import type { StoreCapabilities } from "@kiln/core/driver-kit";

/**
 * How much history a {@link MemoryStore} keeps. The store is an embedded convenience, not an
 * archive: it keeps a bounded window and evicts the oldest entries first, so a long run cannot
 * exhaust the host's memory. Evictions are counted ({@link MemoryStore.evicted}) and reported
 * ({@link MemoryStore.observeEvictions}; in a control system, the `store-evict` event and the
 * `kiln_store_evicted_total{port}` counter).
 *
 * Samples are retained as one window over every tag, by time (ADR 0045): the retention moves a
 * horizon ({@link MemoryStore.retainedFrom}) forward and evicts a tag's sample once the tag's
 * next sample is at or before it, so each tag keeps its value in force at the horizon (a quiet
 * tag logged once an hour ago keeps that sample beside a tag logged every 10 ms) and every tag's
 * samples from the horizon on are kept. A history result that rests on evicted time (one that looks
 * back past the horizon included) is never good: see {@link MemoryStore.retainedFrom}.
 *
 * An evicted sample was stored and then aged out by this retention, as a database retention
 * policy would drop it; it is not a lost sample (`samplesDropped` in the logging health counts
 * samples that never reached the store). Audit entries are evicted the same way, counted and
 * reported; a host that must keep its audit trail uses a durable store.
 */
export interface MemoryStoreRetention {
  /**
   * Most samples kept, over every tag. Past it the horizon moves forward, oldest first over every
   * tag, after each `writeBatch`, until at most `maxSamples` are kept, or every tag is down to its
   * one sample in force (so at most `max(maxSamples, tags written)` are kept). A number sample
   * costs about 110 to 145 bytes of heap (measured at 100 and at 100,000 tags, ADR 0045; more when
   * each tag keeps only a few), so the default bounds the samples to roughly 110 to 145 MB; a
   * string value costs its length on top. A sample
   * written again after its (tag, timestamp) was evicted is stored again, not reported as a
   * conflict (and evicted first when the bound is reached again: it went out of force early).
   * An integer from 1 to `Number.MAX_SAFE_INTEGER`.
   * @default 1_000_000
   */
  readonly maxSamples?: number;
  /**
   * A sample is evicted after each `writeBatch` once it has been out of force (the next sample of
   * its tag is at or before) for longer than this, in ms, counted on the store's age clock: the
   * clock's `now()` less every step of the wall clock seen between writes (a change of `now()` more
   * than 1 s away from the change of `monotonicNow()`), each sample's time taken as received
   * (ADR 0021, ADR 0045 fix16d). So a wall-clock step forward does not age the history out at once,
   * a step back does not evict the samples written after it (stamped before older ones), and steps
   * do not add up; a tag's newest sample is kept however old it is. No age limit when absent. A
   * finite number > 0.
   * @default undefined
   */
  readonly maxAgeMs?: number;
  /** Most alarm history entries kept; the oldest (by `at`) are evicted past it. @default 100_000 */
  readonly maxAlarmEntries?: number;
  /** Most audit entries kept; the oldest (by `at`) are evicted past it. @default 100_000 */
  readonly maxAuditEntries?: number;
}

/** What one write evicted from a {@link MemoryStore} under its {@link MemoryStoreRetention}. */
export interface MemoryStoreEviction {
  /** The port whose entries were evicted. */
  readonly port: "samples" | "alarms" | "audit";
  /** How many entries this write evicted. */
  readonly count: number;
}

/** Entries a {@link MemoryStore} evicted under its retention since it was created, per port. */
export interface MemoryStoreEvictions {
  /** Samples evicted by `maxSamples` or `maxAgeMs`. */
  readonly samples: number;
  /** Alarm history entries evicted by `maxAlarmEntries`. */
  readonly alarms: number;
  /** Audit entries evicted by `maxAuditEntries`. */
  readonly audit: number;
}

/** Options of {@link MemoryStore}. */
export interface MemoryStoreOptions {
  /** The clock {@link MemoryStoreFaults.delayWrites} waits on and `retention.maxAgeMs` counts from. @default new SystemClock() */
  readonly clock?: Clock;
  /** How much history is kept; see {@link MemoryStoreRetention} for the defaults. */
  readonly retention?: MemoryStoreRetention;
  /** Gets what an eviction observer ({@link MemoryStore.observeEvictions}) threw. @default ignores it */
  readonly onObserverError?: (error: unknown, eviction: MemoryStoreEviction) => void;
}

const DEFAULT_MEMORY_STORE_RETENTION = Object.freeze({
  maxSamples: 1_000_000,
  maxAlarmEntries: 100_000,
  maxAuditEntries: 100_000,
} as const);

const positiveCount = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);
const memoryStoreOptionsSchema = z.object({
  retention: z
    .object({
      maxSamples: positiveCount.optional(),
      maxAgeMs: z.number().positive().finite().optional(),
      maxAlarmEntries: positiveCount.optional(),
      maxAuditEntries: positiveCount.optional(),
    })
    .strict()
    .optional(),
  onObserverError: z.function().optional(),
});

/**
 * How far ahead of the store's clock a sample may be stamped before a control system's `health()`
 * reports it (clock skew between a PLC and the host is tolerated): 60,000 ms. Retention also counts
 * a sample as stamped at most this far ahead of its receipt (ADR 0045 fix16m).
 */
export const MEMORY_STORE_FUTURE_TOLERANCE_MS = 60_000;

/**
 * A change of the wall clock between two writes that differs from the monotonic clock's change by
 * more than this is a step, which the age clock of `retention.maxAgeMs` leaves out (ADR 0045,
 * fix16d); smaller differences (drift, NTP slewing) are followed, so the age clock stays on the
 * wall clock until the first step.
 */
const AGE_CLOCK_STEP_TOLERANCE_MS = 1_000;

const NO_CONFLICTS: SampleWriteResult = Object.freeze({ conflicts: Object.freeze([]) });

/** The index of the first sample of each (timestamp, tag) in `samples`. */
function firstIndexOfKeys(samples: readonly Sample[]): Map<number, Map<string, number>> {
  const first = new Map<number, Map<string, number>>();
  for (let index = 0; index < samples.length; index++) {
    const { tag, timestamp } = samples[index]!;
    let tags = first.get(timestamp);
    if (tags === undefined) first.set(timestamp, (tags = new Map()));
    if (!tags.has(tag)) tags.set(tag, index);
  }
  return first;
}

const DEFAULT_LIMIT = 10_000;

/**
 * At most about this many result cells (intervals × aggregates) or samples a MemoryStore history
 * query computes between two yields to the event loop (see `MAX_HISTORY_CELLS`).
 */
const HISTORY_SLICE = 20_000;

/** Lets timers and I/O of the host run between slices of a long in-memory query. */
const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * `intervals` cut into consecutive runs of whole intervals, each of at most {@link HISTORY_SLICE}
 * cells (`cellsPerInterval` each) and, unless it is a single interval, samples of `series`. A run
 * starts on an interval edge of the whole query, so its intervals and their Part 13 results are
 * the whole query's (each run finds its own bounding samples in the series).
 */
function historySlices(
  series: SampleSeries,
  intervals: CheckedIntervals,
  cellsPerInterval: number,
): CheckedIntervals[] {
  const { start, intervalMs, count, end } = intervals;
  const edge = (index: number): number => Math.min(end, start + index * intervalMs);
  const samplesIn = (first: number, last: number): number =>
    lowerBound(series.timestamps, edge(last)) - lowerBound(series.timestamps, edge(first));
  const slices: CheckedIntervals[] = [];
  for (let first = 0; first < count;) {
    let size = Math.max(1, Math.min(count - first, Math.floor(HISTORY_SLICE / cellsPerInterval)));
    while (size > 1 && samplesIn(first, first + size) > HISTORY_SLICE) size = Math.ceil(size / 2);
    slices.push({ start: edge(first), intervalMs, count: size, end: edge(first + size) });
    first += size;
  }
  return slices;
}

const sampleQuerySchema = z.object({
  tag: z.string().min(1),
  from: z.number(),
  to: z.number(),
  limit: z.number().int().positive().optional(),
  after: z.number().optional(),
  acceptEvicted: z.boolean().optional(),
});

const bucketQuerySchema = z.object({
  tag: z.string().min(1),
  from: z.number(),
  to: z.number(),
  bucketMs: z.number().positive(),
});

const timeRangeSchema = z.object({ from: z.number(), to: z.number() });

const versionSchema = z.number().int().nonnegative();

const newEventsSchema = z.object({
  events: z.array(
    z.object({
      type: z.string().min(1),
      payload: z.record(z.string(), z.unknown()),
      at: z.number(),
    }),
  ),
});

const auditOutcomeSchema = z.object({ outcome: z.enum(["allowed", "denied", "failed"]) });

const recipeKeySchema = z.object({
  name: z.string().min(1),
  version: z.number().int().positive(),
  definition: z.record(z.string(), z.unknown()),
  savedAt: z.number(),
});

/**
 * The embedded, in-memory {@link Store}: every port, no dependencies, nothing durable. It passes
 * `storeConformance` and is what Kiln uses when the host gives no store.
 *
 * - Samples are kept per tag in arrays sorted by timestamp (appending in order is O(1); late
 *   samples and queries use binary search). A sample at a kept (tag, timestamp) is not stored,
 *   so the first stored value wins, as with SQL `ON CONFLICT DO NOTHING`; when its value or
 *   quality differs, `writeBatch` reports it as a conflict.
 * - History is bounded by {@link MemoryStoreOptions.retention} (by default the newest 1,000,000
 *   samples over every tag, each tag keeping its value in force, 100,000 alarm and 100,000 audit
 *   entries): the oldest are evicted first, counted in {@link MemoryStore.evicted} and reported to
 *   {@link MemoryStore.observeEvictions}; every tag's samples from {@link MemoryStore.retainedFrom} on are kept. Event streams, processes and recipes are not evicted
 *   (they grow with processes run and recipes saved, not with time).
 * - Events, processes, recipes, alarm and audit entries are stored as JSON copies, as a durable
 *   store would, and come back frozen.
 * - Every operation rejects with `KILN_LIFECYCLE` unless the store is open. `close()` keeps the
 *   data: opening again resumes with it.
 * - {@link faults} injects `writeBatch` failures and delays for pipeline tests.
 *
 * @example
 * const store = new MemoryStore();
 * await store.open(tags.list());
 * await store.samples.writeBatch([{ tag: "chamber.pressure", value: 2.5, timestamp: 0, quality: GOOD }]);
 */
export class MemoryStore implements Store {
  /** The store contract version. */
  readonly storeApiVersion = "1";
  /** Every call runs without awaiting in between, so `processes.save` is atomic. */
  readonly capabilities: StoreCapabilities = Object.freeze({ transactions: true, aggregates: true });
  /** History queries, computed from the samples in memory by the reference implementation. */
  readonly history: HistoryQueries;
  /** Fault injection: failing and slow `samples.writeBatch`, hanging writes on any port. */
  readonly faults: MemoryStoreFaults = new Faults();
  /** Sample ingest and history. */
  readonly samples: SampleSink & SampleHistory;
  /** Domain event streams. */
  readonly events: EventStore;
  /** Processes, saved with their events. */
  readonly processes: ProcessRepository;
  /** Immutable recipe versions. */
  readonly recipes: RecipeRepository;
  /** Alarm transitions. */
  readonly alarms: AlarmHistory;
  /** The audit trail. */
  readonly audit: AuditLog;

  readonly #clock: Clock;
  #state: "created" | "open" | "closed" = "created";
  #writeBatchCalls = 0;
  readonly #samples: RetainedSamples;
  readonly #maxAlarmEntries: number;
  readonly #maxAuditEntries: number;
  readonly #onObserverError: (error: unknown, eviction: MemoryStoreEviction) => void;
  #evictionObservers: readonly ((eviction: MemoryStoreEviction) => void)[] = [];
  /** The age clock of `maxAgeMs` (see {@link MemoryStore.#ageNow}): its last wall and monotonic readings. */
  #ageWall: number | undefined;
  #ageMonotonic = 0;
  /** How far the wall clock stands ahead of the age clock: the sum of the wall-clock steps seen. */
  #ageSkew = 0;
  /** The latest wall-clock reading at a sample write: the retention horizon never passes it (fix16o). */
  #clockHighWater = -Infinity;
  #evictedAlarms = 0;
  #evictedAudit = 0;
  readonly #interpolations = new Map<string, Interpolation>();
  /** Each catalog tag's current data type (history computes `Delta` in it). */
  readonly #dataTypes = new Map<string, TagDataType>();
  /** The tags with `arrayLength`: history aggregates over them are refused. */
  readonly #arrayTags = new Set<string>();
  readonly #streams = new Map<string, StoredDomainEvent[]>();
  readonly #processes = new Map<string, ProcessRecord>();
  readonly #recipes = new Map<string, Map<number, { readonly recipe: StoredRecipe; readonly canonical: string }>>();
  readonly #alarms = new TimedEntries<AlarmHistoryEntry>();
  readonly #auditEntries = new TimedEntries<AuditEntry>();
  readonly #auditIds = new Set<string>();

  /**
   * @throws KilnValidationError (`KILN_VALIDATION`) naming each bad option, e.g.
   * `retention.maxSamples: Too small: expected number to be >0`.
   */
  constructor(options: MemoryStoreOptions = {}) {
    const { retention = {} } = parseOrThrow(
      memoryStoreOptionsSchema,
      { retention: options.retention, onObserverError: options.onObserverError },
      "memory store options",
    );
    this.#clock = options.clock ?? new SystemClock();
    this.#onObserverError = options.onObserverError ?? (() => undefined);
    this.#samples = new RetainedSamples({
      maxSamples: retention.maxSamples ?? DEFAULT_MEMORY_STORE_RETENTION.maxSamples,
      maxAgeMs: retention.maxAgeMs,
    });
    this.#maxAlarmEntries = retention.maxAlarmEntries ?? DEFAULT_MEMORY_STORE_RETENTION.maxAlarmEntries;
    this.#maxAuditEntries = retention.maxAuditEntries ?? DEFAULT_MEMORY_STORE_RETENTION.maxAuditEntries;
    this.samples = {
      sinkApiVersion: "1",
      writeBatch: async (samples) => {
        await this.faults.held("samples");
        return this.#writeBatch(samples);
      },
      readSamples: async (query) => this.#readSamples(query),
      readBuckets: async (query) => this.#readBuckets(query),
      retainedFrom: () => this.#samples.retainedFrom,
    };
    const known = (tag: string): boolean => this.#interpolations.has(tag);
    const isArray = (tag: string): boolean => this.#arrayTags.has(tag);
    const seriesOf = (tag: string): SampleSeries => this.#samples.get(tag) ?? { timestamps: [], samples: [] };
    this.history = {
      aggregate: async (tags, query) => {
        this.#assertOpen();
        const checked = checkAggregateQuery(tags, query, known);
        refuseArrayTags(checked.tags, isArray, "an aggregate");
        const results: AggregateInterval[] = [];
        for (const tag of checked.tags) {
          await yieldToEventLoop();
          this.#assertOpen();
          // A copy: writes and evictions between the slices change the stored arrays in place.
          const stored = seriesOf(tag);
          const series = { timestamps: stored.timestamps.slice(), samples: stored.samples.slice() };
          const slices = historySlices(series, checked.intervals, checked.aggregates.length);
          for (const [index, intervals] of slices.entries()) {
            if (index > 0) await yieldToEventLoop();
            this.#assertOpen();
            const slice = aggregateSeries(
              tag,
              series,
              this.#interpolations.get(tag)!,
              intervals,
              checked.aggregates,
              this.#dataTypes.get(tag)!,
            );
            for (const interval of markEvictedIntervals(slice, this.#samples.completeFrom(tag))) results.push(interval);
          }
        }
        return results;
      },
      valueAt: async (tags, time) => {
        this.#assertOpen();
        const checked = checkValueAtQuery(tags, time, known);
        return this.#perTag(checked.tags, (tag) =>
          markEvictedValues(
            valuesInSeries(tag, seriesOf(tag), [checked.time], this.#interpolations.get(tag)!),
            this.#samples.completeFrom(tag),
          ),
        );
      },
      valuesAt: async (tags, times) => {
        this.#assertOpen();
        const checked = checkValuesAtQuery(tags, times, known);
        const values = await this.#perTag(checked.tags, (tag) =>
          markEvictedValues(
            valuesAtInSeries(tag, seriesOf(tag), checked.times, this.#interpolations.get(tag)!),
            this.#samples.completeFrom(tag),
          ),
        );
        return inRequestedOrder(checked, values);
      },
      interpolated: async (tags, query) => {
        this.#assertOpen();
        const checked = checkIntervalQuery(tags, query, known);
        const { start, intervalMs, count } = checked.intervals;
        const times = Array.from({ length: count }, (_, index) => start + index * intervalMs);
        return this.#perTag(checked.tags, (tag) =>
          markEvictedValues(
            valuesInSeries(tag, seriesOf(tag), times, this.#interpolations.get(tag)!),
            this.#samples.completeFrom(tag),
          ),
        );
      },
      downsample: async (tag, query) => {
        this.#assertOpen();
        const checked = checkDownsampleQuery(tag, query, known);
        refuseArrayTags([checked.tag], isArray, "a downsample");
        const series = seriesOf(checked.tag);
        return markEvictedTrend(
          checked.tag,
          downsampleSeries(series, checked.start, checked.end, checked.columns),
          checked,
          this.#samples.evictedSpan(checked.tag),
          this.#samples.completeFrom(checked.tag),
          (from, to) => lowerBound(series.timestamps, from) < lowerBound(series.timestamps, to),
        );
      },
    };
    this.events = {
      eventStoreApiVersion: "1",
      append: async (aggregateId, expectedVersion, events) => {
        await this.faults.held("events");
        this.#assertOpen();
        return this.#append(aggregateId, expectedVersion, events);
      },
      read: async (aggregateId, fromVersion = 1) => {
        this.#assertOpen();
        return (this.#streams.get(aggregateId) ?? []).slice(Math.max(0, fromVersion - 1));
      },
      version: async (aggregateId) => {
        this.#assertOpen();
        return this.#streams.get(aggregateId)?.length ?? 0;
      },
    };
    this.processes = {
      save: async (record, events, expectedVersion) => {
        await this.faults.held("processes");
        return this.#saveProcess(record, events, expectedVersion);
      },
      get: async (id) => {
        this.#assertOpen();
        return this.#processes.get(id);
      },
      list: async (filter) => this.#listProcesses(filter),
    };
    this.recipes = {
      save: async (recipe) => {
        await this.faults.held("recipes");
        this.#saveRecipe(recipe);
      },
      get: async (name, version) => this.#getRecipe(name, version),
      list: async () => {
        this.#assertOpen();
        const names = [...this.#recipes.keys()].sort(compareStrings);
        return names.flatMap((name) =>
          [...this.#recipes.get(name)!.values()].map((entry) => entry.recipe).sort((a, b) => a.version - b.version),
        );
      },
    };
    this.alarms = {
      record: async (entry) => {
        await this.faults.held("alarms");
        this.#recordTimed(this.#alarms, entry);
        const evicted = this.#alarms.size - this.#maxAlarmEntries;
        if (evicted > 0) {
          this.#alarms.evictOldest(evicted);
          this.#evictedAlarms += evicted;
          this.#reportEviction({ port: "alarms", count: evicted });
        }
      },
      query: async (range) => this.#queryTimed(this.#alarms, range),
    };
    this.audit = {
      record: async (entry) => {
        await this.faults.held("audit");
        // Once per id: a retried record after an unknown outcome changes nothing.
        if (typeof entry?.id !== "string" || entry.id === "") {
          throw new KilnValidationError("audit entry", [{ path: "id", message: "must be a non-empty string" }]);
        }
        parseOrThrow(auditOutcomeSchema, { outcome: entry.outcome }, "audit entry");
        if (this.#auditIds.has(entry.id)) return;
        this.#recordTimed(this.#auditEntries, entry);
        this.#auditIds.add(entry.id);
        const evicted = this.#auditEntries.size - this.#maxAuditEntries;
        if (evicted > 0) {
          // The ids go too, to bound memory: a retry of an evicted entry would be stored again.
          for (const old of this.#auditEntries.evictOldest(evicted)) this.#auditIds.delete(old.id);
          this.#evictedAudit += evicted;
          this.#reportEviction({ port: "audit", count: evicted });
        }
      },
      query: async (range) => this.#queryTimed(this.#auditEntries, range),
    };
  }

  /** Number of `samples.writeBatch` calls so far, failed ones included. */
  get writeBatchCalls(): number {
    return this.#writeBatchCalls;
  }

  /** Number of samples kept, over every tag (stored and not evicted). */
  get sampleCount(): number {
    return this.#samples.count;
  }

  /**
   * The sample retention's horizon, in ms since the epoch: undefined until a sample was evicted,
   * then the latest time at which an evicted sample was still its tag's value in force, but never
   * later than the latest clock reading the store saw at a write (a sample stamped ahead of the clock,
   * a device clock ahead, moves it to that reading at most: fix16o). It only moves forward: after a
   * step back of the wall clock it can stand ahead of now, up to the step, until the clock passes it
   * (samples stamped by the fast clock are kept whole from it: adv16p). Every
   * tag's samples from it on are kept (`readSamples` from it returns them all; a tag stamped ahead of
   * the clock may have lost samples stamped after it, and its reads say so as below);
   * before it, samples are missing. Every history result that rests on missing samples is marked
   * uncertain or bad with the reason "rests on history evicted by retention": before the horizon,
   * and after it too for a tag whose value in force is bad (a Part 13 look-back to its last good
   * value crosses evicted samples) or that kept samples written after a wall-clock step back
   * (stamped in evicted time). A raw read whose range holds evicted samples of its tag rejects
   * `KILN_HISTORY_EVICTED` (unless `acceptEvicted`), first page too, and a `downsample` marks the
   * columns that lost samples. Unmarked results are exactly what a store that keeps everything
   * would answer (ADR 0045, amendments fix16b, fix16d, fix16m). Also on the port: `samples.retainedFrom()`.
   */
  get retainedFrom(): number | undefined {
    return this.#samples.retainedFrom;
  }

  /**
   * The newest sample timestamp stored, ms since the epoch (undefined while empty). A sample
   * stamped ahead of the clock is retained as if received at most
   * 60 s ahead (ADR 0045 fix16m: it ages out and goes under
   * `maxSamples` in the order received, not last); `health()` of a control system reports a newest
   * sample more than that ahead of the clock as a problem.
   */
  get newestSampleTime(): number | undefined {
    return this.#samples.newestTimestamp;
  }

  /**
   * The store's age clock, which `retention.maxAgeMs` counts on (ADR 0021 for elapsed time, ADR 0045
   * fix16d): the wall clock less every step it made between two writes, a step being a change of
   * `now()` that differs from the change of `monotonicNow()` by more than
   * `AGE_CLOCK_STEP_TOLERANCE_MS`. A sample's age key is its timestamp less the steps seen when it
   * was received ({@link MemoryStore.#ageSkew}), so the age of every sample runs on one monotonic
   * reckoning: a step back keeps the samples written after it (stamped before older ones) and ages
   * the older ones out on time; a step forward ages nothing out at once; steps do not add up. A
   * clock without `monotonicNow` never steps, as before.
   */
  #ageNow(): number {
    const wall = this.#clock.now();
    const monotonic = monotonicNow(this.#clock);
    if (this.#ageWall !== undefined) {
      const step = wall - this.#ageWall - (monotonic - this.#ageMonotonic);
      if (Math.abs(step) > AGE_CLOCK_STEP_TOLERANCE_MS) this.#ageSkew += step;
    }
    this.#ageWall = wall;
    this.#ageMonotonic = monotonic;
    return wall - this.#ageSkew;
  }

  /** Entries evicted under the {@link MemoryStoreRetention} since the store was created, per port. */
  get evicted(): MemoryStoreEvictions {
    return Object.freeze({ samples: this.#samples.evicted, alarms: this.#evictedAlarms, audit: this.#evictedAudit });
  }

  /**
   * Calls `observer` once per write that evicted entries under the retention, after the write took
   * effect; returns a disposer. `createControlSystem` publishes these as `store-evict`. An observer
   * that throws is reported to `onObserverError` and affects neither the write nor the other observers.
   */
  observeEvictions(observer: (eviction: MemoryStoreEviction) => void): Disposer {
    if (typeof observer !== "function") throw new TypeError("observeEvictions expects a function");
    this.#evictionObservers = [...this.#evictionObservers, observer];
    return () => {
      this.#evictionObservers = this.#evictionObservers.filter((candidate) => candidate !== observer);
    };
  }

  #reportEviction(eviction: MemoryStoreEviction): void {
    const frozen = Object.freeze(eviction);
    for (const observer of this.#evictionObservers) {
      try {
        observer(frozen);
      } catch (error) {
        this.#onObserverError(error, frozen);
      }
    }
  }

  /**
   * Opens the store (again, after `close`); idempotent. `tags` are registered but not enforced
   * for writes; `history` queries accept only these tags and use their interpolation.
   */
  async open(tags: readonly Tag[]): Promise<void> {
    if (!Array.isArray(tags)) throw new TypeError("open expects an array of tags");
    for (const tag of tags) {
      this.#samples.register(tag.name);
      this.#interpolations.set(tag.name, interpolationOf(tag));
      this.#dataTypes.set(tag.name, tag.dataType);
      if (tag.arrayLength === undefined) this.#arrayTags.delete(tag.name);
      else this.#arrayTags.add(tag.name);
    }
    this.#state = "open";
  }

  /** Closes the store; idempotent. Data is kept for a later `open`. */
  async close(): Promise<void> {
    if (this.#state === "open") this.#state = "closed";
  }

  #assertOpen(): void {
    if (this.#state === "open") return;
    throw new KilnError(
      "KILN_LIFECYCLE",
      this.#state === "created"
        ? "The memory store is not open: call store.open(tags) first."
        : "The memory store is closed: open it again before using it.",
      { details: { state: this.#state } },
    );
  }

  async #writeBatch(samples: readonly Sample[]): Promise<SampleWriteResult> {
    this.#writeBatchCalls++;
    this.#assertOpen();
    if (!Array.isArray(samples)) throw new TypeError("writeBatch expects an array of samples");
    const { fault, delayMs } = this.faults.claim();
    if (delayMs > 0) await this.#clock.sleep(delayMs);
    if (fault === "fail") throw simulatedFailure("fail");
    this.#assertOpen();
    // The index path is built only for a sample that breaks a rule: most batches have none.
    let issues: ValidationIssue[] | undefined;
    for (let index = 0; index < samples.length; index++) {
      if (sampleIssues(samples[index]) !== undefined)
        (issues ??= []).push(...checkSample(samples[index], `[${index}]`));
    }
    if (issues) throw new KilnValidationError("sample batch", issues);
    const ageNow = this.#ageNow();
    const skew = this.#ageSkew;
    let conflicts: SampleConflict[] | undefined;
    // Built only once a conflict needs them: which samples met a sample already at their key,
    // and the first index of each key in the batch (so the common batch costs nothing more).
    let collided: Set<number> | undefined;
    let firstOfKey: Map<number, Map<string, number>> | undefined;
    for (let index = 0; index < samples.length; index++) {
      const given = samples[index]!;
      // An array value is kept as a frozen copy unless frozen already: the caller keeps its own.
      const sample =
        Array.isArray(given.value) && !Object.isFrozen(given.value)
          ? { ...given, value: frozenTagValue(given.value) }
          : given;
      const existing = this.#samples.insert(sample, skew, ageNow + MEMORY_STORE_FUTURE_TOLERANCE_MS);
      if (existing === undefined) continue;
      (collided ??= new Set()).add(index);
      if (sameSamplePayload(existing, sample)) continue;
      firstOfKey ??= firstIndexOfKeys(samples);
      const first = firstOfKey.get(sample.timestamp)!.get(sample.tag)!;
      // The sample at the key came from this batch when the key's first sample was inserted by it.
      (conflicts ??= []).push({ sample, existing: first < index && !collided.has(first) ? "batch" : "stored" });
    }
    // The horizon never passes the latest clock reading the store has seen at a write (a step back of
    // the wall clock does not lower it: samples stamped before the step are not ahead; ADR 0045 fix16o).
    this.#clockHighWater = Math.max(this.#clockHighWater, this.#clock.now());
    const evicted = this.#samples.retain(ageNow, this.#clockHighWater);
    if (evicted > 0) this.#reportEviction({ port: "samples", count: evicted });
    if (fault === "fail-after") throw simulatedFailure("fail-after");
    return conflicts ? { conflicts } : NO_CONFLICTS;
  }

  /**
   * The values of each tag in turn, yielding to the event loop before each tag: a query of many
   * tags never blocks the host for more than one tag's work (see `MAX_HISTORY_CELLS`). Each tag
   * is computed at one moment, from its samples as they are then.
   */
  async #perTag<TValue>(tags: readonly string[], valuesOf: (tag: string) => readonly TValue[]): Promise<TValue[]> {
    const values: TValue[] = [];
    for (const tag of tags) {
      await yieldToEventLoop();
      this.#assertOpen();
      for (const value of valuesOf(tag)) values.push(value);
    }
    return values;
  }

  #readSamples(input: SampleQuery): Sample[] {
    this.#assertOpen();
    const query = parseOrThrow(sampleQuerySchema, input, "sample query");
    const series = this.#samples.peek(query.tag);
    if (!series || query.from >= query.to) return [];
    checkContinuation(query, this.#samples.evictedSpan(query.tag), this.#samples.retainedFrom);
    let start = Math.max(series.start, lowerBound(series.timestamps, query.from));
    if (query.after !== undefined) start = Math.max(start, upperBound(series.timestamps, query.after));
    const end = Math.min(lowerBound(series.timestamps, query.to), start + (query.limit ?? DEFAULT_LIMIT));
    return start < end ? series.samples.slice(start, end) : [];
  }

  /**
   * Buckets of the numeric samples in the range as it was at the call, yielding to the event
   * loop every {@link HISTORY_SLICE} samples.
   */
  async #readBuckets(input: BucketQuery): Promise<SampleBucket[]> {
    this.#assertOpen();
    const query = parseOrThrow(bucketQuerySchema, input, "bucket query");
    const series = this.#samples.peek(query.tag);
    if (!series || query.from >= query.to) return [];
    const buckets: SampleBucket[] = [];
    let bucket: { -readonly [K in keyof SampleBucket]: SampleBucket[K] } | undefined;
    let sum = 0;
    // Copies of the range: writes and evictions between the slices change the stored arrays in place.
    const first = Math.max(series.start, lowerBound(series.timestamps, query.from));
    const last = Math.max(first, lowerBound(series.timestamps, query.to));
    const timestamps = series.timestamps.slice(first, last);
    const samples = series.samples.slice(first, last);
    for (let index = 0; index < samples.length; index++) {
      if (index % HISTORY_SLICE === 0) {
        await yieldToEventLoop();
        this.#assertOpen();
      }
      const value = numericValue(samples[index]!.value);
      if (value === undefined) continue;
      const start = query.from + Math.floor((timestamps[index]! - query.from) / query.bucketMs) * query.bucketMs;
      if (bucket?.start === start) {
        bucket.min = Math.min(bucket.min, value);
        bucket.max = Math.max(bucket.max, value);
        sum += value;
        bucket.last = value;
        bucket.count++;
        bucket.avg = sum / bucket.count;
      } else {
        sum = value;
        bucket = { start, min: value, max: value, avg: value, first: value, last: value, count: 1 };
        buckets.push(bucket);
      }
    }
    // Evictions during the slices count too: a bucket that lost samples meanwhile is partial.
    return markEvictedBuckets(
      query.tag,
      buckets,
      query,
      this.#samples.evictedSpan(query.tag),
      this.#samples.completeFrom(query.tag),
    );
  }

  #append(aggregateId: string, expectedVersion: number, events: readonly NewDomainEvent[]): number {
    if (typeof aggregateId !== "string" || aggregateId === "") throw new TypeError("aggregateId must be a string");
    parseOrThrow(versionSchema, expectedVersion, "expected version");
    parseOrThrow(newEventsSchema, { events }, "events");
    const stream = this.#streams.get(aggregateId) ?? [];
    if (stream.length !== expectedVersion) {
      throw new KilnError(
        "KILN_CONCURRENCY_CONFLICT",
        `The event stream "${aggregateId}" is at version ${stream.length}, not ${expectedVersion}: reload it and retry.`,
        { details: { aggregateId, expectedVersion, actualVersion: stream.length } },
      );
    }
    const stored = events.map((event, index) =>
      deepFreeze({
        type: event.type,
        payload: jsonCopy(event.payload),
        at: event.at,
        aggregateId,
        version: expectedVersion + index + 1,
      }),
    );
    stream.push(...stored);
    this.#streams.set(aggregateId, stream);
    return stream.length;
  }

  #saveProcess(record: ProcessRecord, events: readonly NewDomainEvent[], expectedVersion: number): number {
    this.#assertOpen();
    const copy = jsonCopy(record);
    const version = this.#append(record.id, expectedVersion, events);
    this.#processes.set(record.id, deepFreeze({ ...copy, version }));
    return version;
  }

  #listProcesses(filter: ProcessFilter = {}): ProcessRecord[] {
    this.#assertOpen();
    return [...this.#processes.values()]
      .filter(
        (process) =>
          (filter.machineId === undefined || process.machineId === filter.machineId) &&
          (filter.status === undefined || filter.status.includes(process.status)),
      )
      .sort((a, b) => a.createdAt - b.createdAt || compareStrings(a.id, b.id));
  }

  #saveRecipe(recipe: StoredRecipe): void {
    this.#assertOpen();
    parseOrThrow(recipeKeySchema, recipe, "recipe");
    const canonical = canonicalJson(recipe.definition);
    const versions = this.#recipes.get(recipe.name) ?? new Map();
    const existing = versions.get(recipe.version);
    if (existing) {
      if (existing.canonical === canonical) return;
      throw new KilnError(
        "KILN_ALREADY_EXISTS",
        `Recipe "${recipe.name}" version ${recipe.version} exists with another definition: save it as a new version.`,
        { details: { name: recipe.name, version: recipe.version } },
      );
    }
    versions.set(recipe.version, { recipe: deepFreeze(jsonCopy(recipe)), canonical });
    this.#recipes.set(recipe.name, versions);
  }

  #getRecipe(name: string, version?: number): StoredRecipe | undefined {
    this.#assertOpen();
    const versions = this.#recipes.get(name);
    if (!versions) return undefined;
    if (version !== undefined) return versions.get(version)?.recipe;
    return versions.get(Math.max(...versions.keys()))?.recipe;
  }

  #recordTimed<TEntry extends { readonly at: number }>(entries: TimedEntries<TEntry>, entry: TEntry): void {
    this.#assertOpen();
    if (!Number.isFinite(entry.at)) {
      throw new KilnValidationError("entry", [{ path: "at", message: "must be a finite number" }]);
    }
    entries.insert(deepFreeze(jsonCopy(entry)));
  }

  #queryTimed<TEntry extends { readonly at: number }>(entries: TimedEntries<TEntry>, input: TimeRange): TEntry[] {
    this.#assertOpen();
    const range = parseOrThrow(timeRangeSchema, input, "time range");
    if (range.from >= range.to) return [];
    return entries.range(range.from, range.to);
  }
}

function simulatedFailure(fault: "fail" | "fail-after"): KilnError {
  return new KilnError(
    "KILN_STORE_ERROR",
    fault === "fail"
      ? "Simulated store failure (MemoryStore fault injection); nothing was written: retry the batch."
      : "Simulated store failure after the write (MemoryStore fault injection): retry the batch.",
    { retryable: true, details: { fault } },
  );
}

function numericValue(value: Sample["value"]): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) ? value : undefined;
  if (typeof value === "bigint") return Number(value);
  return undefined;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A JSON round trip, as a durable store keeps it: a bigint becomes its decimal string (as in PostgresStore). */
function jsonCopy<TValue>(value: TValue): TValue {
  return JSON.parse(
    JSON.stringify(value, (_key, child: unknown) => (typeof child === "bigint" ? child.toString() : child)),
  ) as TValue;
}

/** JSON with object keys sorted at every level, so equal definitions compare equal. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, child: unknown) =>
    typeof child === "object" && child !== null && !Array.isArray(child)
      ? Object.fromEntries(Object.entries(child).sort(([a], [b]) => compareStrings(a, b)))
      : child,
  );
}
