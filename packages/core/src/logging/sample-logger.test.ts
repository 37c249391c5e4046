import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { KilnError } from "../domain/errors";
import { GOOD } from "../domain/quality";
import type { Sample } from "../domain/sample";
import { defineTags } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { MemoryMetrics } from "../memory/memory-metrics";
import { MemoryStore } from "../memory/memory-store";
import type { Metrics } from "../ports/metrics";
import { SimulatedClock } from "../memory/simulated-clock";
import type { SampleSink } from "../ports/sample-sink";
import { guardSampleSink, type PortPolicy } from "../compose/port-policies";
import { RecordJournal } from "../journal/record-journal";
import { SampleJournal } from "./sample-journal";
import { SampleLogger, type SampleLoggerSettings } from "./sample-logger";

const TAGS = Array.from({ length: 8 }, (_, index) => `tag${index}`);
const catalog = defineTags(Object.fromEntries(TAGS.map((name) => [name, { dataType: "float64" as const }])));

const settings: SampleLoggerSettings = {
  maxBatchSize: 10,
  maxLatencyMs: 100,
  flushConcurrency: 2,
  maxBufferedSamples: 100,
  overflow: "block",
  drainTimeoutMs: 1_000,
};

/** The sink's port policy, as composition applies it (`logging.writeTimeoutMs`, `retry`, `breaker`). */
const sinkPolicy: PortPolicy = {
  timeoutMs: 50,
  retry: { maxAttempts: Number.MAX_SAFE_INTEGER, initialDelayMs: 10, maxDelayMs: 100, random: () => 0.5 },
  breaker: { failureThreshold: 3, recoveryTimeMs: 200 },
};

let directory: string;
beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), "kiln-logger-"));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

async function setup(
  overrides: Partial<SampleLoggerSettings> = {},
  makeSink?: (clock: SimulatedClock) => SampleSink,
  metrics?: Metrics,
) {
  const clock = new SimulatedClock({ start: 0 });
  const sink = makeSink?.(clock);
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  const store = new MemoryStore({ clock });
  await store.open(catalog.list());
  const events: { type: string; event: never }[] = [];
  bus.tap((type, event) => void events.push({ type, event: event as never }));
  const guarded = guardSampleSink(sink ?? store.samples, sinkPolicy, { clock, bus });
  const logger = new SampleLogger({
    ...settings,
    ...overrides,
    sink: guarded,
    clock,
    bus,
    ...(metrics ? { metrics } : {}),
  });
  await logger.start();
  const ofType = <TType extends keyof KilnEvents>(type: TType): KilnEvents[TType][] =>
    events.filter((entry) => entry.type === type).map((entry) => entry.event);
  return { clock, bus, store, logger, ofType };
}

/**
 * Advances simulated time in steps, letting real I/O (the spool file) progress in between,
 * until `condition` holds. Fails the test if it never does.
 */
async function advanceUntil(
  clock: SimulatedClock,
  condition: () => boolean,
  stepMs = 50,
  maxSteps = 2_000,
): Promise<void> {
  for (let step = 0; step < maxSteps && !condition(); step++) {
    await clock.advance(stepMs);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  expect(condition()).toBe(true);
}

/** Appends `count` sequence-numbered samples per tag; the value is the per-tag sequence. */
function feed(logger: SampleLogger, from: number, count: number): void {
  for (let seq = from; seq < from + count; seq++) {
    for (const tag of TAGS) logger.append({ tag, value: seq, timestamp: 1_000_000 + seq, quality: GOOD });
  }
}

/** Every tag's stored sequence numbers must be exactly from..to-1, once each. */
async function expectComplete(store: MemoryStore, to: number, from = 0): Promise<void> {
  for (const tag of TAGS) {
    const stored = await store.samples.readSamples({ tag, from: 0, to: Number.MAX_SAFE_INTEGER, limit: 1_000_000 });
    expect(stored.map((sample) => sample.value)).toEqual(Array.from({ length: to - from }, (_, index) => from + index));
  }
}

describe("SampleLogger batching", () => {
  test("flushes full batches at once and the rest after maxLatencyMs", async () => {
    const { clock, store, logger, ofType } = await setup({ flushConcurrency: 1 });
    for (let i = 0; i < 25; i++) logger.append({ tag: "tag0", value: i, timestamp: i, quality: GOOD });
    await clock.advance(0);
    expect(ofType("batch-flush-end").map((event) => event.size)).toEqual([10, 10]);
    await clock.advance(99);
    expect(ofType("batch-flush-end")).toHaveLength(2);
    await clock.advance(1);
    expect(ofType("batch-flush-end").map((event) => event.size)).toEqual([10, 10, 5]);
    expect(store.sampleCount).toBe(25);
    await logger.stop();
  });

  test("keeps each tag's samples in order across concurrent lanes", async () => {
    const writes: Sample[][] = [];
    const slowSink = (clock: SimulatedClock): SampleSink => ({
      sinkApiVersion: "1",
      writeBatch: async (samples) => {
        writes.push([...samples]);
        await clock.sleep(1 + (samples.length % 3));
      },
    });
    const { clock, logger } = await setup({ flushConcurrency: 4, maxBufferedSamples: 10_000 }, slowSink);
    feed(logger, 0, 200);
    await clock.advance(500);
    await logger.stop();
    for (const tag of TAGS) {
      const order = writes
        .flat()
        .filter((sample) => sample.tag === tag)
        .map((sample) => sample.value);
      expect(order).toEqual(Array.from({ length: 200 }, (_, index) => index));
    }
  });
});

describe("SampleLogger failures", () => {
  test("a failed batch is retried with backoff until stored, once", async () => {
    const { clock, store, logger, ofType } = await setup();
    store.faults.failWrites(5);
    store.faults.failAfterWrites(1); // an unknown outcome: stored, but the caller saw an error
    feed(logger, 0, 10);
    await clock.advance(5_000);
    await expectComplete(store, 10);
    expect(ofType("batch-flush-fail").length).toBeGreaterThanOrEqual(6);
    expect(logger.health()).toMatchObject({ samplesIn: 80, samplesOut: 80, samplesDropped: 0, buffered: 0 });
    await logger.stop();
  });

  test("a store that hangs is timed out and the breaker opens, then recovers", async () => {
    const { clock, store, logger, ofType } = await setup();
    store.faults.delayWrites(10_000);
    feed(logger, 0, 5);
    await clock.advance(1_000);
    expect(ofType("breaker-state-change").map((event) => event.to)).toContain("open");
    store.faults.clear();
    await clock.advance(2_000);
    await expectComplete(store, 5);
    expect(logger.health().breaker.state.state).toBe("closed");
    await logger.stop();
  });

  test("kiln_samples_buffered follows the buffer while the store refuses every write, not only after a write succeeds (adv16n L2)", async () => {
    const metrics = new MemoryMetrics();
    const { clock, store, logger } = await setup({ maxBufferedSamples: 1_000 }, undefined, metrics);
    const gauge = () => metrics.value("kiln_samples_buffered");
    store.faults.failWritesUntilCleared();
    feed(logger, 0, 5); // 40 samples, 4 full batches: every write fails
    await clock.advance(settings.maxLatencyMs);
    expect(logger.health().buffered).toBe(40);
    expect(gauge()).toBe(40);
    feed(logger, 5, 5);
    await clock.advance(settings.maxLatencyMs);
    expect(gauge()).toBe(80);
    store.faults.clear();
    await clock.advance(5_000);
    expect(logger.health().buffered).toBe(0);
    expect(gauge()).toBe(0);
    await logger.stop();
  });

  test("under block, the samples past the bound and the polls that waited are on the metrics port too, equal to health() (adv16p LOW-2)", async () => {
    const metrics = new MemoryMetrics();
    const { clock, store, logger } = await setup({ overflow: "block", maxBufferedSamples: 20 }, undefined, metrics);
    store.faults.failWritesUntilCleared();
    feed(logger, 0, 5); // 40 samples into a bound of 20: 20 past it, kept
    const waiting = logger.reserveRoom(8);
    expect(waiting.ready).toBeDefined();
    await clock.advance(settings.maxLatencyMs);
    expect(logger.health()).toMatchObject({ samplesOverBound: 20, blockedWaits: 1, samplesDropped: 0 });
    expect(metrics.value("kiln_samples_over_bound_total")).toBe(20);
    expect(metrics.value("kiln_logging_blocked_waits_total")).toBe(1);
    expect(metrics.value("kiln_samples_buffered")).toBe(40);
    waiting.release();
    store.faults.clear();
    await clock.advance(5_000);
    await expectComplete(store, 5);
    await logger.stop();
  });

  test("(sibling) kiln_samples_buffered follows drop-oldest and the move to the spool while the store is down", async () => {
    const dropping = new MemoryMetrics();
    const first = await setup({ overflow: "drop-oldest", maxBufferedSamples: 100 }, undefined, dropping);
    first.store.faults.failWritesUntilCleared();
    feed(first.logger, 0, 50); // 400 samples against a bound of 100
    await first.clock.advance(200);
    expect(dropping.value("kiln_samples_buffered")).toBe(100);
    first.store.faults.clear();
    await first.clock.advance(5_000);
    await first.logger.stop();
    expect(dropping.value("kiln_samples_buffered")).toBe(0);

    const spooling = new MemoryMetrics();
    const second = await setup(
      { overflow: "spool", maxBufferedSamples: 100, spoolPath: join(directory, "gauge.spool") },
      undefined,
      spooling,
    );
    second.store.faults.failWritesUntilCleared();
    feed(second.logger, 0, 20); // 160 samples: past the bound, memory moves to the journal
    await advanceUntil(second.clock, () => second.logger.health().buffered === 0);
    await second.clock.advance(settings.maxLatencyMs);
    expect(second.logger.health().spooled).toBeGreaterThan(0);
    expect(spooling.value("kiln_samples_buffered")).toBe(0);
    second.store.faults.clear();
    await second.logger.stop();
  });

  test("drop-oldest drops exactly the excess, counts it and publishes it", async () => {
    const { clock, store, logger, ofType } = await setup({ overflow: "drop-oldest", maxBufferedSamples: 100 });
    store.faults.failWritesUntilCleared();
    feed(logger, 0, 50); // 400 samples
    await clock.advance(200);
    const health = logger.health();
    expect(health.buffered).toBe(100);
    expect(health.samplesDropped).toBe(300);
    expect(ofType("samples-drop").reduce((sum, event) => sum + event.count, 0)).toBe(300);
    store.faults.clear();
    await clock.advance(5_000);
    await logger.stop();
    expect(store.sampleCount + logger.health().samplesDropped).toBe(400);
  });

  test("drop-oldest lets go of the samples it dropped: memory is bounded, not only the buffer count", async () => {
    setFlagsFromString("--expose-gc");
    const collect = runInNewContext("gc") as () => void;
    for (const concurrency of [1, 2]) {
      const { clock, store, logger } = await setup({
        overflow: "drop-oldest",
        maxBufferedSamples: 100,
        flushConcurrency: concurrency,
      });
      store.faults.failWritesUntilCleared();
      // The first samples are dropped; weak references tell whether anything still holds them.
      const early: WeakRef<Sample>[] = [];
      for (let seq = 0; seq < 20_000; seq++) {
        const sample: Sample = { tag: TAGS[seq % TAGS.length]!, value: seq, timestamp: seq, quality: GOOD };
        if (seq >= 1_000 && seq < 2_000) early.push(new WeakRef(sample));
        logger.append(sample);
      }
      await clock.advance(200);
      expect(logger.health()).toMatchObject({ buffered: 100, samplesDropped: 19_900 });
      collect();
      expect(early.filter((reference) => reference.deref() !== undefined)).toHaveLength(0);
      store.faults.clear();
      await clock.advance(5_000);
      await logger.stop();
    }
  });

  test("block holds acquisition back until the store drains the buffer", async () => {
    const { clock, store, logger } = await setup({ overflow: "block", maxBufferedSamples: 40 });
    store.faults.failWritesUntilCleared();
    const first = logger.reserveRoom(5);
    expect(first.ready).toBeUndefined();
    feed(logger, 0, 5);
    first.release();
    // 5 held and 36 more would pass the bound of 40: the poll waits for the whole of its room.
    const waiting = logger.reserveRoom(36).ready;
    expect(waiting).toBeInstanceOf(Promise);
    let released = false;
    void waiting!.then(() => (released = true));
    await clock.advance(500);
    expect(released).toBe(false);
    store.faults.clear();
    await clock.advance(2_000);
    expect(released).toBe(true);
    await expectComplete(store, 5);
    expect(logger.health().blockedWaits).toBe(1);
    await logger.stop();
  });

  test("a rejection that retrying cannot fix is counted as dropped, not retried forever", async () => {
    const rejecting = (): SampleSink => ({
      sinkApiVersion: "1",
      writeBatch: () => Promise.reject(new KilnError("KILN_VALIDATION", "bad sample")),
    });
    const { clock, logger, ofType } = await setup({}, rejecting);
    feed(logger, 0, 1);
    await clock.advance(200);
    expect(logger.health().samplesDropped).toBe(8);
    // The batch is bisected down to single samples; each is refused and reported with its tag.
    const drops = ofType("samples-drop");
    expect(drops.map((drop) => drop.count)).toEqual(Array.from({ length: 8 }, () => 1));
    expect(new Set(drops.map((drop) => drop.tag)).size).toBeGreaterThan(1);
    expect(drops[0]?.reason).toBe("KILN_VALIDATION: bad sample");
    await logger.stop();
  });
});

describe("SampleLogger spool (store-and-forward)", () => {
  test("an outage of any length loses and duplicates nothing", async () => {
    const spoolPath = join(directory, "samples.journal");
    const { clock, store, logger, ofType } = await setup({ overflow: "spool", spoolPath, maxBufferedSamples: 50 });
    feed(logger, 0, 5);
    await clock.advance(200);
    feed(logger, 5, 5);
    await clock.advance(200);
    feed(logger, 10, 5);
    await clock.advance(200);
    feed(logger, 15, 5);
    await clock.advance(200);
    store.faults.failWritesUntilCleared();
    for (let round = 0; round < 30; round++) {
      feed(logger, 20 + round * 10, 10);
      await clock.advance(100);
    }
    expect(logger.health().mode).toBe("spooling");
    await advanceUntil(clock, () => logger.health().buffered === 0);
    const { samplesIn, samplesOut, spooled } = logger.health();
    expect(samplesOut + spooled).toBe(samplesIn);
    expect(spooled).toBeGreaterThan(2_000);
    expect(ofType("samples-spool").length).toBeGreaterThan(0);
    store.faults.clear();
    // New data keeps arriving while the spool replays; it is stored beside the replay, none lost.
    for (let round = 0; round < 10; round++) {
      feed(logger, 320 + round * 10, 10);
      await clock.advance(200);
    }
    await advanceUntil(clock, () => logger.health().mode === "memory");
    await logger.stop();
    await expectComplete(store, 420);
    expect(logger.health().samplesDropped).toBe(0);
    expect(logger.health().samplesReplayed).toBe(logger.health().samplesSpooled);
  });

  test("stop with the store down spools what is left; the next start replays it", async () => {
    const spoolPath = join(directory, "samples.journal");
    const first = await setup({ overflow: "spool", spoolPath, drainTimeoutMs: 300 });
    first.store.faults.failWritesUntilCleared();
    feed(first.logger, 0, 7);
    let stopped = false;
    const stopping = first.logger.stop().then(() => (stopped = true));
    await advanceUntil(first.clock, () => stopped);
    await stopping;
    expect(first.logger.health()).toMatchObject({ samplesDropped: 0, samplesOut: 0, samplesSpooled: 56 });

    const second = await setup({ overflow: "spool", spoolPath });
    expect(second.logger.health().mode).toBe("spooling");
    await advanceUntil(second.clock, () => second.logger.health().mode === "memory");
    await second.logger.stop();
    await expectComplete(second.store, 7);
  });

  test("stop without a spool and the store down counts what is lost and says why", async () => {
    const { clock, store, logger, ofType } = await setup({ overflow: "block", drainTimeoutMs: 300 });
    store.faults.failWritesUntilCleared();
    feed(logger, 0, 2);
    const stopping = logger.stop();
    await clock.advance(1_000);
    await stopping;
    expect(logger.health().samplesDropped).toBe(16);
    expect(ofType("samples-drop")).toEqual([
      expect.objectContaining({ count: 16, reason: "store unavailable at shutdown" }),
    ]);
  });

  test("stop without a spool and a frozen store: a batch whose write was under way is reported as abandoned (outcome unknown), not as dropped", async () => {
    // A frozen database: writes neither commit nor fail until it thaws, and ignore the abort.
    const frozen: (() => Promise<void>)[] = [];
    const { clock, store, logger, ofType } = await setup({ overflow: "drop-oldest", drainTimeoutMs: 300 }, () => ({
      sinkApiVersion: "1",
      writeBatch: (samples) =>
        new Promise<void>((resolve) => frozen.push(() => store.samples.writeBatch(samples).then(() => resolve()))),
    }));
    feed(logger, 0, 2); // 16 samples: one batch of 8 per lane, sent after maxLatencyMs
    await clock.advance(100);
    expect(frozen.length).toBe(2);
    feed(logger, 2, 1); // 8 more, never sent: each lane is busy with its frozen batch
    const stopping = logger.stop();
    await clock.advance(1_000);
    await stopping;
    const health = logger.health();
    expect(health).toMatchObject({ samplesAbandoned: 16, samplesDropped: 8 });
    expect(ofType("samples-abandon")).toEqual([
      expect.objectContaining({ count: 16, reason: expect.stringContaining("outcome unknown") as string }),
    ]);
    expect(ofType("samples-drop")).toEqual([
      expect.objectContaining({ count: 8, reason: "store unavailable at shutdown" }),
    ]);
    // The database thaws and commits the writes under way: they were not lost, as reported.
    for (const thaw of frozen) await thaw();
    const lost = health.samplesIn - (await storedValues(store)).length;
    expect(lost).toBeGreaterThanOrEqual(health.samplesDropped);
    expect(lost).toBeLessThanOrEqual(health.samplesDropped + health.samplesAbandoned);
  });

  test("stop drains everything when the store is up", async () => {
    const { store, logger } = await setup({ maxLatencyMs: 60_000 });
    feed(logger, 0, 3);
    await logger.stop();
    await expectComplete(store, 3);
    expect(() => logger.append({ tag: "tag0", value: 1, timestamp: 1, quality: GOOD })).toThrow(
      expect.objectContaining({ code: "KILN_LIFECYCLE" }),
    );
  });

  test("spool without a path is a configuration error naming the field", () => {
    const clock = new SimulatedClock();
    expect(
      () =>
        new SampleLogger({
          ...settings,
          overflow: "spool",
          sink: guardSampleSink(new MemoryStore().samples, sinkPolicy, { clock }),
          clock,
          bus: new EventBus<KilnEvents>(),
        }),
    ).toThrow(
      expect.objectContaining({ code: "KILN_VALIDATION", message: expect.stringContaining("logging.spoolPath") }),
    );
  });
});

/** Every tag's stored values, to check for losses and duplicates by sequence number. */
async function storedValues(store: MemoryStore): Promise<string[]> {
  const values: string[] = [];
  for (const tag of TAGS) {
    const stored = await store.samples.readSamples({ tag, from: 0, to: Number.MAX_SAFE_INTEGER, limit: 1_000_000 });
    values.push(...stored.map((sample) => `${tag}:${String(sample.value)}`));
  }
  return values;
}

describe("SampleLogger spool faults (issue 14)", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  test("a full spool drops and counts what does not fit, and the pipeline leaves spooling once the store is back", async () => {
    const spoolPath = join(directory, "samples.journal");
    const { clock, store, logger, ofType } = await setup({
      overflow: "spool",
      spoolPath,
      maxBufferedSamples: 50,
      spoolMaxBytes: 8_192,
    });
    store.faults.failWritesUntilCleared();
    for (let round = 0; round < 20; round++) {
      feed(logger, round * 10, 10);
      await clock.advance(100);
    }
    await advanceUntil(clock, () => logger.health().buffered === 50);
    const during = logger.health();
    expect(during.mode).toBe("spooling");
    expect(during.spoolBytes).toBeLessThanOrEqual(8_192);
    expect(during.samplesDropped).toBeGreaterThan(0);
    // What the full spool refused is held in memory up to maxBufferedSamples; only the rest is lost.
    expect(during.samplesIn).toBe(during.samplesOut + during.samplesDropped + during.spooled + during.buffered);
    expect(ofType("samples-drop").every((event) => event.reason === "spool full")).toBe(true);
    store.faults.clear();
    await advanceUntil(clock, () => logger.health().mode === "memory");
    feed(logger, 200, 5);
    await clock.advance(200);
    expect(logger.health().mode).toBe("memory");
    await logger.stop();
    const values = await storedValues(store);
    const health = logger.health();
    expect(new Set(values).size).toBe(values.length); // no duplicates
    expect(store.sampleCount + health.samplesDropped).toBe(health.samplesIn);
    expect(ofType("samples-drop").reduce((sum, event) => sum + event.count, 0)).toBe(health.samplesDropped);
    expect(values).toEqual(expect.arrayContaining(["tag0:200", "tag0:201", "tag7:204"]));
  });

  test("a full spool replaying after an outage costs no sample acquired after the store is back", async () => {
    const spoolPath = join(directory, "samples.journal");
    // A store that takes 40 ms per batch: the replay of a full spool takes a while, as it does for real.
    const { clock, store, logger, ofType } = await setup(
      { overflow: "spool", spoolPath, maxBufferedSamples: 50, spoolMaxBytes: 32_768 },
      (clock) => ({
        sinkApiVersion: "1",
        writeBatch: async (samples) => {
          await clock.sleep(40);
          await store.samples.writeBatch(samples);
        },
      }),
    );
    store.faults.failWritesUntilCleared();
    for (let round = 0; round < 60; round++) {
      feed(logger, round * 10, 10);
      await clock.advance(100);
    }
    await advanceUntil(clock, () => logger.health().buffered === 50);
    expect(logger.health().samplesDropped).toBeGreaterThan(0); // the spool filled up
    expect(ofType("samples-drop").every((event) => event.reason === "spool full")).toBe(true);
    store.faults.clear();
    // The store acknowledges the first replayed record: from here on it is known to be back.
    await advanceUntil(clock, () => logger.health().mode !== "spooling", 10);
    const droppedBeforeRecovery = logger.health().samplesDropped;
    let next = 600;
    let roundsReplaying = 0;
    for (let round = 0; round < 1_000 && logger.health().mode !== "memory"; round++) {
      if (logger.health().mode === "replaying") roundsReplaying++;
      feed(logger, next, 2);
      next += 2;
      await clock.advance(50);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    expect(roundsReplaying).toBeGreaterThan(10);
    expect(logger.health().mode).toBe("memory");
    let stopped = false;
    const stopping = logger.stop().then(() => (stopped = true));
    await advanceUntil(clock, () => stopped);
    await stopping;
    const health = logger.health();
    // Memory was full of what the full spool refused: some of that may still be dropped (the
    // oldest first, counted) to make room; no sample acquired since the store is back is.
    expect(health.samplesDropped).toBeLessThanOrEqual(droppedBeforeRecovery + 50);
    expect(store.sampleCount + health.samplesDropped).toBe(health.samplesIn);
    expect(ofType("samples-drop").reduce((sum, event) => sum + event.count, 0)).toBe(health.samplesDropped);
    const values = new Set(await storedValues(store));
    for (let seq = 600; seq < next; seq++) for (const tag of TAGS) expect(values.has(`${tag}:${seq}`)).toBe(true);
  });

  test("the store failing again while the spool replays: back to spooling, replay resumes, nothing lost or stored twice", async () => {
    const spoolPath = join(directory, "samples.journal");
    const { clock, store, logger } = await setup({ overflow: "spool", spoolPath, maxBufferedSamples: 50 }, (clock) => ({
      sinkApiVersion: "1",
      writeBatch: async (samples) => {
        await clock.sleep(40);
        await store.samples.writeBatch(samples);
      },
    }));
    store.faults.failWritesUntilCleared();
    let next = 0;
    const round = async () => {
      feed(logger, next, 2);
      next += 2;
      await clock.advance(50);
      await new Promise((resolve) => setTimeout(resolve, 1));
    };
    for (let index = 0; index < 40; index++) await round();
    expect(logger.health().mode).toBe("spooling");
    store.faults.clear();
    for (let index = 0; index < 400 && logger.health().mode !== "replaying"; index++) await round();
    expect(logger.health().mode).toBe("replaying");
    // The second outage, while the journal is still replaying.
    store.faults.failWritesUntilCleared();
    for (let index = 0; index < 400 && logger.health().mode !== "spooling"; index++) await round();
    expect(logger.health().mode).toBe("spooling");
    for (let index = 0; index < 10; index++) await round();
    store.faults.clear();
    for (let index = 0; index < 400 && logger.health().mode === "spooling"; index++) await round();
    // The journal is appended with real fsyncs: let the replay catch up without new samples.
    await advanceUntil(clock, () => logger.health().mode === "memory", 50, 10_000);
    let stopped = false;
    const stopping = logger.stop().then(() => (stopped = true));
    await advanceUntil(clock, () => stopped);
    await stopping;
    expect(logger.health().samplesDropped).toBe(0);
    await expectComplete(store, next);
  }, 60_000);

  test("a batch split into several spool records and refused part-way: the records kept count as spooled, the rest is held in memory", async () => {
    const spoolPath = join(directory, "samples.journal");
    const { clock, store, logger } = await setup({
      overflow: "spool",
      spoolPath,
      maxBatchSize: 10,
      maxBufferedSamples: 10,
      spoolMaxBytes: 5 * 1024 * 1024,
    });
    store.faults.failWritesUntilCleared();
    // 11 samples of 2 MiB: the overflow moves them to the spool; one record each, two fit.
    const big = "x".repeat(2 * 1024 * 1024);
    for (let seq = 0; seq < 11; seq++)
      logger.append({ tag: "tag0", value: big + String(seq), timestamp: seq, quality: GOOD });
    await advanceUntil(clock, () => logger.health().samplesSpooled === 2 && logger.health().buffered === 9);
    expect(logger.health()).toMatchObject({ spooled: 2, samplesDropped: 0 });
    store.faults.clear();
    await advanceUntil(clock, () => logger.health().mode === "memory" && logger.health().buffered === 0);
    expect(store.sampleCount).toBe(11);
    await logger.stop();
  });

  test("ENOSPC on the spool: nothing counted as spooled, refused batches held in memory to its bound, the rest counted and published, no crash", async () => {
    const spoolPath = join(directory, "samples.journal");
    const { clock, store, logger, ofType } = await setup({ overflow: "spool", spoolPath, maxBufferedSamples: 50 });
    const realAppend = SampleJournal.prototype.append;
    let refusals = 10;
    vi.spyOn(SampleJournal.prototype, "append").mockImplementation(async function (this: SampleJournal, samples) {
      if (refusals-- > 0) {
        throw new KilnError("KILN_JOURNAL_FAILED", "the disk is full", { details: { errno: "ENOSPC" } });
      }
      return realAppend.call(this, samples);
    });
    store.faults.failWritesUntilCleared();
    feed(logger, 0, 10); // 80 samples: overflow moves them to the spool, and the disk refuses them
    await advanceUntil(clock, () => logger.health().samplesDropped > 0);
    const health = logger.health();
    expect(health).toMatchObject({ samplesSpooled: 0, spooled: 0, buffered: 50, samplesDropped: 30 });
    await clock.advance(100); // drops at the bound are published once per latency period
    expect(ofType("samples-drop").map((event) => event.reason)).toContain(
      "spool write failed: KILN_JOURNAL_FAILED (ENOSPC)",
    );
    store.faults.clear();
    // What memory held is written once the store is back.
    await advanceUntil(clock, () => logger.health().mode === "memory" && logger.health().buffered === 0);
    await logger.stop();
    expect(store.sampleCount).toBe(50);
    expect(store.sampleCount + logger.health().samplesDropped).toBe(logger.health().samplesIn);
  });

  test("a spool that cannot be read during replay is retried, not an unhandled rejection", async () => {
    const spoolPath = join(directory, "samples.journal");
    const { clock, store, logger } = await setup({ overflow: "spool", spoolPath, maxBufferedSamples: 50 });
    const realPeek = SampleJournal.prototype.peek;
    let failures = 2;
    vi.spyOn(SampleJournal.prototype, "peek").mockImplementation(async function (this: SampleJournal) {
      if (failures-- > 0) throw new KilnError("KILN_JOURNAL_FAILED", "EIO");
      return realPeek.call(this);
    });
    feed(logger, 0, 10);
    await advanceUntil(clock, () => logger.health().mode === "memory");
    await logger.stop();
    await expectComplete(store, 10);
    expect(failures).toBeLessThan(0);
  });

  test("a corrupt record in the spool is skipped and counted; the rest is replayed", async () => {
    const spoolPath = join(directory, "samples.journal");
    const { journal } = await SampleJournal.open(spoolPath);
    const batch = (seq: number): Sample[] =>
      TAGS.map((tag) => ({ tag, value: seq, timestamp: 1_000_000 + seq, quality: GOOD }));
    await journal.append(batch(0));
    await journal.append(batch(1));
    await journal.append(batch(2));
    await journal.close();
    const bytes = await readFile(spoolPath);
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff; // inside the second record
    await writeFile(spoolPath, bytes);
    const { clock, store, logger, ofType } = await setup({ overflow: "spool", spoolPath });
    expect(logger.health().spoolCorruptRecords).toBe(1);
    // Reported, not only counted: its samples are lost and how many cannot be known.
    expect(ofType("spool-record-skip")).toEqual([
      expect.objectContaining({
        records: 1,
        bytes: expect.any(Number) as number,
        reason: expect.stringContaining("unknown") as string,
      }),
    ]);
    expect(logger.health().samplesDropped).toBe(0);
    await advanceUntil(clock, () => logger.health().mode === "memory");
    await logger.stop();
    expect((await storedValues(store)).sort()).toEqual(TAGS.flatMap((tag) => [`${tag}:0`, `${tag}:2`]).sort());
  });
});

describe("SampleLogger replay of records of the wrong shape (issue 14)", () => {
  test("records with a valid checksum but the wrong shape do not wedge replay: skipped, counted, reported; the rest is stored", async () => {
    const spoolPath = join(directory, "samples.journal");
    const sample = (tag: string, seq: number) => ({ tag, value: seq, timestamp: 1_000_000 + seq, quality: GOOD });
    const { journal } = await RecordJournal.open(spoolPath);
    for (const payload of [
      JSON.stringify([sample("tag0", 0)]),
      JSON.stringify([null]),
      JSON.stringify({ $number: "5" }),
      JSON.stringify("str"),
      JSON.stringify([sample("tag1", 1), { ...sample("tag2", 2), timestamp: -3e12 }, sample("tag3", 3)]),
      JSON.stringify([sample("tag4", 4)]),
    ]) {
      await journal.append(Buffer.from(payload));
    }
    await journal.close();
    const { clock, store, logger, ofType } = await setup({ overflow: "spool", spoolPath });
    expect(Number.isFinite(logger.health().spooled)).toBe(true);
    await advanceUntil(clock, () => logger.health().mode === "memory");
    await logger.stop();
    expect((await storedValues(store)).sort()).toEqual(["tag0:0", "tag1:1", "tag3:3", "tag4:4"]);
    const health = logger.health();
    expect(health).toMatchObject({ spooled: 0, spoolCorruptRecords: 2, samplesDropped: 2 });
    expect(ofType("samples-drop").map((event) => [event.count, event.reason.slice(0, 27)])).toEqual([
      [1, "spool sample malformed: [0]"],
      [1, "spool sample malformed: [1]"],
    ]);
    expect(ofType("spool-record-skip").map((event) => event.records)).toEqual([1, 1]);
    // A restart finds nothing left to replay: the bad records were released, not kept forever.
    const again = await setup({ overflow: "spool", spoolPath });
    expect(again.logger.health()).toMatchObject({ mode: "memory", spooled: 0 });
    await again.logger.stop();
  });
});

describe("SampleLogger counters and stop (issue 14)", () => {
  test("a batch in flight when spooling starts is counted once in samplesOut", async () => {
    const spoolPath = join(directory, "samples.journal");
    const { clock, bus, store, logger } = await setup({
      overflow: "spool",
      spoolPath,
      maxBufferedSamples: 20,
      flushConcurrency: 1,
    });
    // Spooling starts in the same tick the first batch is stored, before its lane hears of it.
    const off = bus.on("batch-flush-end", () => {
      off();
      for (let seq = 10; seq < 40; seq++) logger.append({ tag: "tag0", value: seq, timestamp: seq, quality: GOOD });
    });
    for (let seq = 0; seq < 10; seq++) logger.append({ tag: "tag0", value: seq, timestamp: seq, quality: GOOD });
    await clock.advance(0);
    await advanceUntil(clock, () => logger.health().mode === "memory", 10);
    await logger.stop();
    expect(logger.health().samplesSpooled).toBeGreaterThanOrEqual(30);
    expect(store.sampleCount).toBe(40);
    expect(logger.health()).toMatchObject({ samplesIn: 40, samplesOut: 40, samplesDropped: 0 });
  });

  test("stop during an outage returns as soon as everything is journaled", async () => {
    const spoolPath = join(directory, "samples.journal");
    const { clock, store, logger } = await setup({
      overflow: "spool",
      spoolPath,
      maxBufferedSamples: 20,
      drainTimeoutMs: 30_000,
    });
    store.faults.failWritesUntilCleared();
    feed(logger, 0, 5);
    await advanceUntil(clock, () => logger.health().buffered === 0);
    const started = clock.now();
    let stopped = false;
    void logger.stop().then(() => (stopped = true));
    await advanceUntil(clock, () => stopped, 10);
    expect(clock.now() - started).toBeLessThan(1_000);
    expect(logger.health()).toMatchObject({ samplesDropped: 0, samplesOut: 0, samplesSpooled: 40 });
    const { journal } = await SampleJournal.open(spoolPath);
    expect(journal.samples).toBe(40);
    await journal.close();
  });

  test("stop honours drainTimeoutMs when the store never answers, and journals what it could not write", async () => {
    const spoolPath = join(directory, "samples.journal");
    const clock = new SimulatedClock({ start: 0 });
    const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
    const frozen = guardSampleSink({ sinkApiVersion: "1", writeBatch: () => Promise.resolve() }, sinkPolicy, {
      clock,
      bus,
    });
    // A store whose query never returns and ignores every abort (a frozen database).
    const sink = Object.assign(Object.create(frozen) as typeof frozen, {
      writeBatch: () => new Promise<void>(() => undefined),
    });
    const logger = new SampleLogger({
      ...settings,
      overflow: "block",
      spoolPath,
      drainTimeoutMs: 500,
      sink,
      clock,
      bus,
    });
    await logger.start();
    feed(logger, 0, 3);
    await clock.advance(200);
    let stopped = false;
    const started = clock.now();
    void logger.stop().then(() => (stopped = true));
    await advanceUntil(clock, () => stopped, 50);
    // The deadline is 500 ms; the rest is simulated time that passed while the journal was written.
    expect(clock.now() - started).toBeLessThan(2_000);
    expect(logger.health()).toMatchObject({ samplesOut: 0, samplesDropped: 0, samplesSpooled: 24 });
  });
});

describe("SampleLogger conflicts (issue 14)", () => {
  const STORED_REASON = "conflict: a different sample is stored at this timestamp";
  const BATCH_REASON = "conflict: a different sample has this timestamp earlier in the batch";
  const at = (tag: string, timestamp: number, value: number): Sample => ({ tag, value, timestamp, quality: GOOD });
  const values = async (store: MemoryStore, tag: string): Promise<unknown[]> =>
    (await store.samples.readSamples({ tag, from: 0, to: 1e12 })).map((sample) => sample.value);

  test("a sample the store refuses as a conflict is counted as dropped and published with its tag and the reason", async () => {
    const { clock, store, logger, ofType } = await setup({ flushConcurrency: 1, maxBatchSize: 20 });
    // Another writer stored tag0 at 1000..1004 first.
    await store.samples.writeBatch([0, 1, 2, 3, 4].map((index) => at("tag0", 1000 + index, index)));
    for (let index = 0; index < 10; index++) logger.append(at("tag0", 1000 + index, 100 + index));
    logger.append(at("tag1", 2000, 1));
    logger.append(at("tag1", 2000, 2));
    await clock.advance(100);
    expect(ofType("samples-drop").map(({ tag, count, reason }) => ({ tag, count, reason }))).toEqual([
      { tag: "tag0", count: 5, reason: STORED_REASON },
      { tag: "tag1", count: 1, reason: BATCH_REASON },
    ]);
    expect(logger.health()).toMatchObject({ samplesIn: 12, samplesOut: 6, samplesDropped: 6 });
    expect(store.sampleCount).toBe(5 + 6);
    expect(await values(store, "tag0")).toEqual([0, 1, 2, 3, 4, 105, 106, 107, 108, 109]);
    expect(await values(store, "tag1")).toEqual([1]);

    // An identical replay is not a conflict: nothing more is dropped or stored.
    logger.append(at("tag0", 1005, 105));
    logger.append(at("tag1", 2000, 1));
    await clock.advance(100);
    expect(ofType("samples-drop")).toHaveLength(2);
    expect(logger.health()).toMatchObject({ samplesIn: 14, samplesOut: 8, samplesDropped: 6 });
    expect(store.sampleCount).toBe(11);
    await logger.stop();
  });

  test("conflicts in the parts of a bisected batch are counted, beside the refused poison sample", async () => {
    // The sink stores through the MemoryStore setup makes, refusing any batch with the value -1.
    const target: { store?: MemoryStore } = {};
    const poisoned = (): SampleSink => ({
      sinkApiVersion: "1",
      writeBatch: (samples) =>
        samples.some((sample) => sample.value === -1)
          ? Promise.reject(new KilnError("KILN_VALIDATION", "poison"))
          : target.store!.samples.writeBatch(samples),
    });
    const { clock, store, logger, ofType } = await setup({ flushConcurrency: 1, maxBatchSize: 20 }, poisoned);
    target.store = store;
    await store.samples.writeBatch([at("tag0", 1000, 0)]);
    logger.append(at("tag0", 1000, 9));
    for (let index = 1; index < 8; index++) logger.append(at("tag0", 1000 + index, index));
    logger.append(at("tag1", 1000, -1));
    await clock.advance(100);
    expect(ofType("samples-drop").map(({ tag, count, reason }) => ({ tag, count, reason }))).toEqual([
      { tag: "tag1", count: 1, reason: "KILN_VALIDATION: poison" },
      { tag: "tag0", count: 1, reason: STORED_REASON },
    ]);
    expect(logger.health()).toMatchObject({ samplesIn: 9, samplesOut: 7, samplesDropped: 2 });
    expect(await values(store, "tag0")).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    await logger.stop();
  });

  test("conflicts in a replayed spool are counted once, and in = out + dropped", async () => {
    const spoolPath = join(directory, "samples.journal");
    const { clock, store, logger, ofType } = await setup({
      overflow: "spool",
      spoolPath,
      maxBufferedSamples: 20,
      flushConcurrency: 1,
    });
    await store.samples.writeBatch([at("tag0", 5, -5), at("tag0", 25, -25)]);
    store.faults.failWritesUntilCleared();
    for (let seq = 0; seq < 40; seq++) logger.append(at("tag0", seq, seq));
    await advanceUntil(clock, () => logger.health().mode === "spooling" && logger.health().buffered === 0, 10);
    store.faults.clear();
    await advanceUntil(clock, () => logger.health().mode === "memory", 10);
    await logger.stop();
    const drops = ofType("samples-drop");
    expect(drops.reduce((sum, drop) => sum + drop.count, 0)).toBe(2);
    expect(drops.every((drop) => drop.tag === "tag0" && drop.reason === STORED_REASON)).toBe(true);
    expect(logger.health()).toMatchObject({ samplesIn: 40, samplesOut: 38, samplesDropped: 2 });
    expect(store.sampleCount).toBe(40);
  });
});
