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
