import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import type { Tag } from "../domain/tags";
import { defineTags } from "../domain/tags";
import { MemoryStore } from "../memory/memory-store";
import type { SimulatedClock } from "../memory/simulated-clock";
import { SIMULATED_START, simulatedSystem } from "../../test/support/simulated-system";

const tags = defineTags({ "seq.counter": { dataType: "uint32", scanGroup: "fast" } });

/** A memory store whose database is down: `open` fails (retryably) until `up` is set. */
class OutageStore extends MemoryStore {
  up = false;
  attempts = 0;
  override async open(list: readonly Tag[]): Promise<void> {
    this.attempts++;
    if (!this.up) throw new KilnError("KILN_STORE_ERROR", "connection refused", { retryable: true });
    await super.open(list);
  }
}

let directory: string;
beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), "kiln-degraded-"));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

function build(spoolPath: string | undefined) {
  const { clock, store, system } = simulatedSystem({
    tags,
    sources: { "seq.counter": { kind: "counter" } },
    store: (clock) => new OutageStore({ clock }),
    scanGroups: { fast: { periodMs: 100 } },
    logging: {
      maxBatchSize: 10,
      maxLatencyMs: 100,
      maxBufferedSamples: 100,
      ...(spoolPath ? { overflow: "spool" as const, spoolPath } : {}),
      retry: { initialDelayMs: 100, maxDelayMs: 1_000 },
    },
  });
  return { clock, store, system };
}

/** Advances simulated time in small steps, letting the real spool I/O keep up with it. */
async function advanceUntil(clock: SimulatedClock, condition: () => boolean): Promise<void> {
  for (let step = 0; step < 5_000 && !condition(); step++) {
    await clock.advance(10);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  expect(condition()).toBe(true);
}

test("with a spool, start during a database outage acquires into the spool and opens the store in the background", async () => {
  const { clock, store, system } = build(join(directory, "samples.journal"));
  await system.start();
  expect(system.state).toBe("running");
  await advanceUntil(clock, () => system.health().logging.samplesSpooled >= 10);
  expect(system.health()).toMatchObject({ status: "degraded", store: { state: "opening" } });
  expect(system.health().store.lastError).toContain("connection refused");
  expect(system.health().problems.join(" ")).toContain("store unavailable");
  await clock.advance(3_000);
  expect(store.attempts).toBeGreaterThan(2);
  store.up = true;
  await advanceUntil(clock, () => system.health().store.state === "open" && system.health().logging.mode === "memory");
  await system.stop();
  await store.open(tags.list());
  const counter = await store.samples.readSamples({ tag: "seq.counter", from: 0, to: Number.MAX_SAFE_INTEGER });
  const values = counter.map((sample) => sample.value);
  // Every value acquired since the start, during the outage included, once and in order.
  expect(values).toEqual(Array.from({ length: values.length }, (_, index) => index));
  expect(values.length).toBeGreaterThan(40);
  expect(system.health().logging.samplesDropped).toBe(0);
});

test("stop during the outage keeps what was acquired in the spool", async () => {
  const spoolPath = join(directory, "samples.journal");
  const { clock, system } = build(spoolPath);
  await system.start();
  await advanceUntil(clock, () => system.health().logging.samplesSpooled >= 10);
  await system.stop();
  expect(system.health().logging).toMatchObject({ samplesDropped: 0, samplesOut: 0 });
});

test("without a spool, start fails when the store cannot be opened", async () => {
  const { system } = build(undefined);
  await expect(system.start()).rejects.toMatchObject({ code: "KILN_STORE_ERROR" });
  expect(system.state).toBe("stopped");
});

/** A memory store whose database is frozen: `open` never settles until `thaw` is called. */
class FrozenStore extends MemoryStore {
  #thaw: (() => void) | undefined;
  override async open(list: readonly Tag[]): Promise<void> {
    if (this.#thaw === undefined) await new Promise<void>((resolve) => (this.#thaw = resolve));
    await super.open(list);
  }
  thaw(): void {
    this.#thaw?.();
    this.#thaw = () => undefined;
  }
}

test("with a spool, start against a frozen database does not wait on it: acquisition spools at once", async () => {
  const { clock, store, system } = simulatedSystem({
    tags,
    sources: { "seq.counter": { kind: "counter" } },
    store: (clock) => new FrozenStore({ clock }),
    scanGroups: { fast: { periodMs: 100 } },
    lifecycleTimeoutMs: 30_000,
    logging: { maxBatchSize: 10, maxLatencyMs: 100, overflow: "spool", spoolPath: join(directory, "samples.journal") },
  });
  let started = false;
  void system.start().then(() => (started = true));
  // Acquisition runs already while start waits for the store, 1 s at most (not lifecycleTimeoutMs).
  await advanceUntil(clock, () => system.health().logging.samplesIn >= 3);
  expect(started).toBe(false);
  await advanceUntil(clock, () => started);
  // About 1 s of simulated time; the spool's real file I/O lets the simulated clock run on a few steps
  // under load, so the bound is what tells 1 s from lifecycleTimeoutMs (30 s), not 1 s exactly.
  expect(clock.monotonicNow() - SIMULATED_START).toBeLessThanOrEqual(3_000);
  expect(system.health().store.state).toBe("opening");
  await advanceUntil(clock, () => system.health().logging.samplesSpooled >= 10);
  expect(system.health().problems.join(" ")).toContain("store unavailable");
  store.thaw();
  await advanceUntil(clock, () => system.health().store.state === "open" && system.health().logging.mode === "memory");
  await system.stop();
  await store.open(tags.list());
  const values = (await store.samples.readSamples({ tag: "seq.counter", from: 0, to: Number.MAX_SAFE_INTEGER })).map(
    (sample) => sample.value,
  );
  expect(values).toEqual(Array.from({ length: values.length }, (_, index) => index));
  expect(values.length).toBeGreaterThan(10);
});

test("with a spool, a store that opens at once is open when start returns and is not reported as a problem", async () => {
  const { clock, system } = simulatedSystem({
    tags,
    sources: { "seq.counter": { kind: "counter" } },
    scanGroups: { fast: { periodMs: 100 } },
    logging: { overflow: "spool", spoolPath: join(directory, "samples.journal") },
  });
  await system.start();
  expect(system.health().store.state).toBe("open");
  expect(system.health().problems).toEqual([]);
  await advanceUntil(clock, () => system.health().logging.mode === "memory");
  expect(system.health().status).toBe("ok");
  await system.stop();
});

test("the background store open spaces its attempts with the system's injected random source", async () => {
  const draws: number[] = [];
  const { clock, store, system } = simulatedSystem({
    tags,
    sources: { "seq.counter": { kind: "counter" } },
    store: (clock) => new OutageStore({ clock }),
    scanGroups: { fast: { periodMs: 100 } },
    logging: {
      overflow: "spool",
      spoolPath: join(directory, "samples.journal"),
      retry: { initialDelayMs: 100, maxDelayMs: 1_000 },
    },
    random: () => {
      draws.push(0.5);
      return 0.5;
    },
  });
  await system.start();
  await advanceUntil(clock, () => store.attempts > 3);
  // Every retry after the first attempt drew its jitter from the injected source.
  expect(store.attempts).toBeGreaterThan(2);
  expect(draws.length).toBeGreaterThanOrEqual(store.attempts - 1);
  await system.stop();
});
