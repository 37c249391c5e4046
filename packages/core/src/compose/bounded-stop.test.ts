import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import { MemoryStore } from "../memory/memory-store";
import type { SimulatedClock } from "../memory/simulated-clock";
import { SampleJournal } from "../logging/sample-journal";
import { simulatedSystem } from "../../test/support/simulated-system";
import { STOP_CLOSE_MARGIN_MS } from "./control-system";

const tags = defineTags({ "seq.counter": { dataType: "uint32" } });
const DRAIN_MS = 1_000;

/** A memory store whose `close` never settles (a frozen database holding the pool's end). */
class HungCloseStore extends MemoryStore {
  override close(): Promise<void> {
    return new Promise(() => undefined);
  }
}

let directory: string;
beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), "kiln-stop-"));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

function build(spoolPath?: string) {
  return simulatedSystem({
    tags,
    sources: { "seq.counter": { kind: "counter" } },
    store: (clock) => new HungCloseStore({ clock }),
    scanGroups: { default: { periodMs: 50 } },
    lifecycleTimeoutMs: 30_000,
    storePolicies: { events: { timeoutMs: 30_000 }, alarms: { timeoutMs: 30_000 } },
    logging: {
      maxBatchSize: 10,
      maxLatencyMs: 100,
      writeTimeoutMs: 30_000,
      drainTimeoutMs: DRAIN_MS,
      ...(spoolPath ? { overflow: "spool" as const, spoolPath } : {}),
    },
  });
}

/** Advances simulated time in 10 ms steps until `done()` or `limitMs`; returns the simulated time it took. */
async function timeUntil(clock: SimulatedClock, done: () => boolean, limitMs: number): Promise<number> {
  const start = clock.monotonicNow();
  while (!done() && clock.monotonicNow() - start < limitMs) {
    await clock.advance(10);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return clock.monotonicNow() - start;
}

test("stop() with sample writes and the store's close hanging ends within drainTimeoutMs + the close margin, reporting the abandoned close", async () => {
  const { clock, store, system } = build();
  const failedSteps: string[] = [];
  system.bus.on("lifecycle-step-fail", (event) => void failedSteps.push(event.step));
  await system.start();
  await clock.advance(500);
  store.faults.hang("samples");
  await clock.advance(500);
  let stopped = false;
  void system.stop().then(() => (stopped = true));
  const took = await timeUntil(clock, () => stopped, 60_000);
  expect(stopped).toBe(true);
  expect(took).toBeLessThanOrEqual(DRAIN_MS + STOP_CLOSE_MARGIN_MS + 20);
  expect(failedSteps).toContain("store.close");
  expect(system.health().logging.samplesDropped).toBeGreaterThan(0); // counted, not lost silently
});

test("with a spool and a failing store, stop() journals the buffer at once, before trying to drain", async () => {
  const spoolPath = join(directory, "samples.journal");
  const { clock, store, system } = build(spoolPath);
  await system.start();
  await clock.advance(500);
  store.faults.failWritesUntilCleared();
  await clock.advance(300); // a write has failed and is being retried
  const acquired = system.health().logging.samplesIn;
  let stopped = false;
  void system.stop().then(() => (stopped = true));
  // No simulated time passes: what was buffered is in the journal already.
  await new Promise((resolve) => setTimeout(resolve, 50));
  const health = system.health().logging;
  expect(health.samplesOut + health.samplesSpooled).toBe(acquired);
  await timeUntil(clock, () => stopped, 60_000);
  const { journal } = await SampleJournal.open(spoolPath, {});
  expect(journal.samples + system.health().logging.samplesOut).toBe(acquired);
  await journal.close();
});

test("with a spool and sample writes hanging (a frozen database answers nothing), stop() journals the buffer at once", async () => {
  const spoolPath = join(directory, "samples.journal");
  const { clock, store, system } = build(spoolPath);
  await system.start();
  await clock.advance(500);
  store.faults.hang("samples");
  await clock.advance(500); // a write has hung for longer than maxLatencyMs (100 ms); none has failed
  const acquired = system.health().logging.samplesIn;
  void system.stop();
  await new Promise((resolve) => setTimeout(resolve, 50)); // no simulated time passes
  const health = system.health().logging;
  expect(health.samplesSpooled + health.samplesOut).toBe(acquired);
  await timeUntil(clock, () => system.state === "stopped", 60_000);
});
