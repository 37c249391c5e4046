import { expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import { simulatedSystem } from "../../test/support/simulated-system";

/** `count` counter tags named `<prefix>.<i>` in `group` (`unlogged`: logging mode `none`). */
function counters(prefix: string, count: number, group: string, unlogged = false) {
  const names = Array.from({ length: count }, (_, index) => `${prefix}.${index}`);
  const logging = unlogged ? { logging: { mode: "none" as const } } : {};
  return {
    names,
    tags: Object.fromEntries(
      names.map((name) => [name, { dataType: "uint32" as const, scanGroup: group, ...logging }]),
    ),
    sources: Object.fromEntries(names.map((name) => [name, { kind: "counter" as const }])),
  };
}

/** Runs a system whose store refuses every write, so the buffer only fills, and returns its peak. */
async function peakBuffered(
  groups: Record<string, { periodMs: number; tags: number; unlogged?: boolean }>,
  maxBufferedSamples: number,
  staleAfterPeriods = 0,
) {
  const parts = Object.entries(groups).map(([group, { tags, unlogged }]) => counters(group, tags, group, unlogged));
  const { clock, store, system } = simulatedSystem({
    tags: defineTags(Object.assign({}, ...parts.map((part) => part.tags))),
    sources: Object.assign({}, ...parts.map((part) => part.sources)),
    scanGroups: Object.fromEntries(
      Object.entries(groups).map(([group, { periodMs }]) => [group, { periodMs, staleAfterPeriods }]),
    ),
    logging: {
      maxBatchSize: 10,
      maxLatencyMs: 50,
      maxBufferedSamples,
      overflow: "block",
      drainTimeoutMs: 100,
      retry: { initialDelayMs: 50, maxDelayMs: 200 },
    },
  });
  store.faults.failWritesUntilCleared();
  await system.start();
  let peak = 0;
  for (let step = 0; step < 40; step++) {
    await clock.advance(50);
    peak = Math.max(peak, system.health().logging.buffered);
  }
  const { blockedWaits: waits, samplesOverBound: over } = system.health().logging;
  const skipped = Object.fromEntries(
    system.health().acquisition.groups.map((group) => [group.name, group.skippedCycles]),
  );
  store.faults.clear();
  await clock.advance(2_000);
  const stopped = system.stop();
  await clock.advance(1_000);
  await stopped;
  return { peak, waits, over, skipped };
}

test("under block, a poll is let in only below the bound: the buffer passes maxBufferedSamples by at most one scan, every sample past it counted", async () => {
  // 150 tags a scan against a bound of 200 (issue 16: 300,000-357,000 with a bound of 200,000, uncounted).
  const { peak, waits, over } = await peakBuffered({ slow: { periodMs: 100, tags: 150 } }, 200);
  expect(peak).toBeGreaterThan(0);
  expect(peak).toBeLessThanOrEqual(200 + 150);
  expect(peak).toBeLessThanOrEqual(200 + over);
  expect(waits).toBeGreaterThan(0);
});

test("under block, staleness marks made while polls wait may pass the bound: at most one per tag, counted", async () => {
  // Held back, the 150 values turn stale: the marks are logged (nothing lost) past the bound.
  const { peak, over } = await peakBuffered({ slow: { periodMs: 100, tags: 150 } }, 200, 3);
  expect(peak).toBeGreaterThan(200);
  // One scan let in below the bound, and one mark per tag.
  expect(peak).toBeLessThanOrEqual(200 + 150 + 150);
  expect(peak).toBeLessThanOrEqual(200 + over);
});

test("under block, two groups polling together share the room: together they pass the bound by one scan at most, not one each", async () => {
  const { peak, over } = await peakBuffered({ a: { periodMs: 100, tags: 60 }, b: { periodMs: 100, tags: 60 } }, 100);
  expect(peak).toBeGreaterThan(0);
  expect(peak).toBeLessThanOrEqual(100 + 60);
  expect(peak).toBeLessThanOrEqual(100 + over);
});

test("(sibling) under block, a group of more logged tags than the bound keeps polling while the buffer is never emptied, and so does a small fast group beside it (adv16n H1, M1)", async () => {
  const { skipped, peak, over } = await peakBuffered(
    { big: { periodMs: 100, tags: 120 }, fast: { periodMs: 100, tags: 2 } },
    100,
  );
  expect(skipped.big).toBeLessThan(20);
  expect(skipped.fast).toBeLessThan(20);
  expect(peak).toBeLessThanOrEqual(100 + over);
});

test("(sibling) under block, a group none of whose tags is logged never waits for room: it keeps its period beside a blocked logged group", async () => {
  const { peak, waits, skipped } = await peakBuffered(
    { slow: { periodMs: 100, tags: 150 }, fast: { periodMs: 10, tags: 20, unlogged: true } },
    200,
  );
  expect(peak).toBeLessThanOrEqual(200 + 150);
  expect(waits).toBeGreaterThan(0);
  expect(skipped.fast).toBe(0);
});

/**
 * A store that refuses every write and a link that drops `flaps` times (each time after the reconnect), then
 * the store back and a stop: the peak buffered, what passed the bound, and the end counts.
 */
async function flapping(flaps: number, tags: number, maxBufferedSamples: number, staleAfterPeriods = 0) {
  const part = counters("flap", tags, "flap");
  const { clock, plc, store, system } = simulatedSystem({
    tags: defineTags(part.tags),
    sources: part.sources,
    scanGroups: { flap: { periodMs: 100, staleAfterPeriods } },
    acquisition: { reconnect: { initialDelayMs: 50, maxDelayMs: 100 } },
    logging: {
      maxBatchSize: 10,
      maxLatencyMs: 50,
      maxBufferedSamples,
      overflow: "block",
      drainTimeoutMs: 100,
      retry: { initialDelayMs: 50, maxDelayMs: 200 },
      breaker: { failureThreshold: 5, recoveryTimeMs: 500 },
    },
  });
  store.faults.failWritesUntilCleared();
  const drops: string[] = [];
  system.bus.on("samples-drop", (event) => void drops.push(`${event.count} ${event.reason}`));
  await system.start();
  let peak = 0;
  const watch = async (ms: number) => {
    for (let step = 0; step < ms / 50; step++) {
      await clock.advance(50);
      peak = Math.max(peak, system.health().logging.buffered);
    }
  };
  await watch(1_000);
  let reconnects = 0;
  for (let flap = 0; flap < flaps; flap++) {
    plc.dropConnection();
    await watch(500);
    if (system.health().acquisition.link === "online") reconnects++;
  }
  const { samplesOverBound: over } = system.health().logging;
  store.faults.clear();
  await watch(5_000);
  const stopped = system.stop();
  await clock.advance(1_000);
  await stopped;
  const { samplesIn, samplesOut, samplesDropped, samplesAbandoned, buffered } = system.health().logging;
  return { drops, peak, over, reconnects, samplesIn, samplesOut, samplesDropped, samplesAbandoned, buffered };
}

test("under block, a flapping link with the store down adds nothing past the bound per flap: the probe read after a reconnect takes room like a poll, and a tag already marked lost is not marked again (adv16n M4)", async () => {
  const tags = 30;
  const bound = 100;
  const few = await flapping(2, tags, bound);
  const many = await flapping(20, tags, bound);
  expect(many.reconnects).toBe(20);
  // One scan let in below the bound, and one link-loss mark per tag whose value was good: never one per flap.
  for (const run of [few, many]) {
    expect(run.peak).toBeGreaterThan(bound);
    expect(run.peak).toBeLessThanOrEqual(bound + tags + tags);
    expect(run.peak).toBeLessThanOrEqual(bound + run.over);
  }
  expect(many.over).toBeLessThanOrEqual(few.over + tags);
  // Every sample taken in is stored or counted once the store is back.
  expect(many.buffered).toBe(0);
  expect(many.drops).toEqual([]);
  expect(many.samplesOut).toBe(many.samplesIn);
});

test("(sibling) under block, with staleness on, a flapping link with the store down still adds nothing per flap: a tag held back turns stale once and is marked lost once", async () => {
  const tags = 30;
  const bound = 100;
  const few = await flapping(2, tags, bound, 2);
  const many = await flapping(20, tags, bound, 2);
  expect(many.reconnects).toBe(20);
  for (const run of [few, many]) {
    // One scan, then per tag a staleness mark and a link-loss mark at most.
    expect(run.peak).toBeLessThanOrEqual(bound + tags + 2 * tags);
    expect(run.peak).toBeLessThanOrEqual(bound + run.over);
  }
  expect(many.over).toBeLessThanOrEqual(few.over + tags);
  expect(many.drops).toEqual([]);
  expect(many.samplesOut).toBe(many.samplesIn);
});
