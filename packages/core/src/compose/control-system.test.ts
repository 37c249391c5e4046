import { describe, expect, test } from "vitest";
import { KilnError, type KilnValidationError } from "../domain/errors";
import { GOOD } from "../domain/quality";
import { defineTags } from "../domain/tags";
import { MemoryMetrics } from "../memory/memory-metrics";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import { SimulatedPlc } from "../memory/simulated-plc";
import { resolveControlSystemOptions } from "./control-system-options";
import { createControlSystem } from "./create-control-system";
import { simulatedSystem } from "../../test/support/simulated-system";
import { Tokens } from "./tokens";

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", unit: "mbar", range: { min: 0, max: 10 }, scanGroup: "fast" },
  "seq.counter": { dataType: "uint32", scanGroup: "fast" },
  "heater.temperature": { dataType: "float64", unit: "°C", scanGroup: "slow" },
  "valve.ald1": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
});
const scanGroups = { fast: { periodMs: 100 }, slow: { periodMs: 1_000 } };

function build() {
  return simulatedSystem({
    tags,
    sources: {
      "chamber.pressure": { kind: "sine", amplitude: 1, offset: 2, periodMs: 2_000 },
      "seq.counter": { kind: "counter" },
      "heater.temperature": { kind: "constant", value: 250 },
    },
    scanGroups,
    logging: { maxBatchSize: 50, maxLatencyMs: 200 },
  });
}

/** Wraps `target[method]` (which returns a disposer, or a promise of one) to count the live registrations. */
function countLive<T extends object>(target: T, method: keyof T & string): { readonly active: number } {
  const original = (target[method] as (...args: unknown[]) => unknown).bind(target);
  const count = { active: 0 };
  const track = (dispose: () => unknown) => {
    count.active++;
    let done = false;
    return () => {
      if (!done) count.active--;
      done = true;
      return dispose();
    };
  };
  (target as Record<string, unknown>)[method] = (...args: unknown[]) => {
    const result = original(...args);
    return result instanceof Promise
      ? result.then((dispose: () => unknown) => track(dispose))
      : track(result as () => unknown);
  };
  return count;
}

describe("createControlSystem", () => {
  test("runs end to end on the embedded defaults: PLC → CVT → logging → store, and stop drains", async () => {
    const { clock, store, system } = build();
    await system.start();
    await clock.advance(2_000);
    expect(system.read("seq.counter")?.quality.severity).toBe("good");
    expect(system.health()).toMatchObject({ status: "ok", machineState: "idle", problems: [] });
    await system.stop();
    await store.open(tags.list()); // stop closed it; history is read back as a host would
    const counter = await store.samples.readSamples({ tag: "seq.counter", from: 0, to: Number.MAX_SAFE_INTEGER });
    // Every polled counter value was logged (change policy, no deadband), in order, none lost at stop.
    expect(counter.map((sample) => sample.value)).toEqual(Array.from({ length: 21 }, (_, index) => index));
    const temperature = await store.samples.readSamples({
      tag: "heater.temperature",
      from: 0,
      to: Number.MAX_SAFE_INTEGER,
    });
    expect(temperature).toHaveLength(1); // a constant is logged once
    expect(system.health().status).toBe("stopped");
    expect(system.unchecked.driver.status).toBe("closed"); // closed only after the pipeline drained
  });

  test("needs only a machine id and tags", async () => {
    const system = createControlSystem({ machineId: "bare", tags, scanGroups });
    expect(system.unchecked.driver.name).toBe("simulated");
    expect(system.unchecked.store.storeApiVersion).toBe("1");
    await system.start();
    await system.stop();
  });

  test("the public object exposes only checked operations; the raw parts are behind `unchecked`", () => {
    const system = createControlSystem({ machineId: "bare", tags, scanGroups });
    for (const raw of ["driver", "store", "recipes", "alarms", "machine", "container"]) {
      expect(raw in system, raw).toBe(false);
    }
    // No raw recipe executor or alarm engine: recipes and alarm commands are always authorized and audited.
    expect(Object.keys(system.unchecked).sort()).toEqual(["bus", "cvt", "driver", "machine", "store"]);
    expect(Object.isFrozen(system.unchecked)).toBe(true);
    expect(system.machineState).toBe(system.unchecked.machine.state);
  });

  test("machine state changes are published and appended to the event store", async () => {
    const { clock, store, system } = build();
    await system.start();
    await system.unchecked.machine.send("start");
    await system.unchecked.machine.send("started");
    await clock.advance(0);
    await system.stop();
    await store.open(tags.list());
    const events = await store.events.read("ald-1");
    expect(events.map((event) => [event.version, event.payload.from, event.payload.to])).toEqual([
      [1, "idle", "starting"],
      [2, "starting", "processing"],
    ]);
  });

  test("a lost PLC shows as degraded health with the reason", async () => {
    const { clock, plc, system } = build();
    await system.start();
    await clock.advance(300);
    plc.faults.unreachable = true;
    await clock.advance(1_000);
    const health = system.health();
    expect(health.status).toBe("degraded");
    expect(health.problems[0]).toMatch(/^PLC simulated offline/);
    expect(system.read("chamber.pressure")?.quality.severity).toBe("uncertain");
    await system.stop();
  });

  test("a host can override any registration", async () => {
    const clock = new SimulatedClock();
    const replacement = new SimulatedPlc({ name: "replacement", tags, clock });
    const system = createControlSystem({
      machineId: "ald-2",
      tags,
      scanGroups,
      clock,
      register: (registry) => registry.override(Tokens.Driver, () => replacement),
    });
    expect(system.unchecked.driver).toBe(replacement);
    expect(system.health().acquisition.driver).toBe("replacement");
    expect("container" in system).toBe(false);
  });

  test("a host can override a part the container builds: the write path", async () => {
    const clock = new SimulatedClock({ start: 123_456 });
    const written: [string, unknown][] = [];
    const system = createControlSystem({
      machineId: "ald-3",
      tags,
      scanGroups,
      clock,
      register: (registry) =>
        registry.override(Tokens.TagWriter, () => ({
          write: async (tag, value) => void written.push([tag, value]),
        })),
    });
    await system.start();
    await system.writeTag({ id: "eng", roles: ["engineer"] }, "valve.ald1", true);
    await system.stop();
    expect(written).toEqual([["valve.ald1", true]]);
    expect(system.health().ports.driver.successes).toBe(system.health().acquisition.breaker.successes);
  });

  test("two systems in one process share nothing", () => {
    const first = createControlSystem({ machineId: "a", tags, scanGroups });
    const second = createControlSystem({ machineId: "b", tags, scanGroups });
    expect(first.bus).not.toBe(second.bus);
    expect(first.unchecked.store).not.toBe(second.unchecked.store);
    expect(first.health().ports.driver).not.toBe(second.health().ports.driver);
  });

  test("start twice is a lifecycle error; await using stops it", async () => {
    const { system } = build();
    {
      await using running = system;
      await running.start();
      await expect(running.start()).rejects.toMatchObject({ code: "KILN_LIFECYCLE" });
    }
    expect(system.state).toBe("stopped");
  });

  test("a stopped system starts again: values flow, breakers start closed, nothing is left behind", async () => {
    const clock = new SimulatedClock({ start: Date.UTC(2026, 10, 22) });
    const plc = new SimulatedPlc({ tags, clock, sources: { "seq.counter": { kind: "counter" } } });
    const store = new MemoryStore({ clock });
    // What a stop must give back: driver status listeners and subscriptions, CVT observers,
    // bus taps and handlers, clock timers.
    const statusListeners = countLive(plc, "onStatusChange");
    const subscriptions = countLive(plc, "subscribe");
    const system = createControlSystem({
      machineId: "ald-1",
      tags,
      driver: plc,
      store,
      clock,
      scanGroups: { fast: { periodMs: 100 }, slow: { periodMs: 1_000, mode: "subscribe" } },
      logging: { maxBatchSize: 50, maxLatencyMs: 200 },
    });
    const live = {
      statusListeners,
      subscriptions,
      observers: countLive(system.unchecked.cvt, "observeAll"),
      taps: countLive(system.unchecked.bus, "tap"),
    };
    const idle = { statusListeners: 0, subscriptions: 0, observers: 0, taps: 0 };
    for (const round of [1, 2, 3]) {
      await system.start();
      const startedAt = clock.now();
      expect(live.subscriptions.active).toBe(1);
      expect(system.health().ports.driver.state.state).toBe("closed");
      await clock.advance(1_000);
      expect(system.health()).toMatchObject({ status: "ok", problems: [] });
      const counter = system.read("seq.counter");
      expect(counter?.quality.severity).toBe("good");
      expect(counter?.timestamp).toBeGreaterThan(startedAt);
      if (round === 1) {
        // Leave the device breaker open at stop: the next start must not inherit it.
        plc.faults.hang = true;
        await clock.advance(10_000);
        expect(system.health().ports.driver.state.state).toBe("open");
        plc.faults.hang = false;
      }
      // A read hung in round 1 is still in flight: stop waits for its timeout.
      await Promise.all([system.stop(), clock.advance(5_000)]);
      expect(system.state).toBe("stopped");
      expect(Object.fromEntries(Object.entries(live).map(([name, count]) => [name, count.active]))).toEqual(idle);
      expect(system.unchecked.bus.listenerCount("interlock-trip")).toBe(0);
      expect(clock.pendingTimers).toBe(0);
      expect(Object.values(system.health().ports).map((port) => port.state.state)).toEqual(Array(8).fill("closed"));
    }
    // Every round's good counter values reached the store, each once, in order (the uncertain
    // ones in round 1 are the held value marked stale while the device hung).
    await store.open(tags.list());
    const logged = await store.samples.readSamples({ tag: "seq.counter", from: 0, to: Number.MAX_SAFE_INTEGER });
    const good = logged.filter((sample) => sample.quality.severity === "good").map((sample) => sample.value);
    expect(good).toEqual(Array.from({ length: good.length }, (_, index) => index));
    expect(good.length).toBeGreaterThanOrEqual(30); // three rounds of 1 s at 100 ms
  });

  test("bad options fail with KILN_VALIDATION naming every field, and build nothing", () => {
    let caught: unknown;
    try {
      createControlSystem({
        machineId: "has spaces",
        tags,
        scanGroups: { fast: { periodMs: -5 } },
        logging: { maxBatchSize: 0, overflow: "spool" },
        machine: { safeState: [{ tag: "chamber.pressure", value: 0 }] },
        driver: {} as never,
      });
    } catch (error) {
      caught = error;
    }
    expect(KilnError.is(caught, "KILN_VALIDATION")).toBe(true);
    expect((caught as KilnValidationError).issues.map((issue) => issue.path)).toEqual([
      "machineId",
      "driver",
      "scanGroups.fast.periodMs",
      "logging.maxBatchSize",
      "logging.spoolPath",
    ]);
  });

  test("store port policies have documented defaults and bad ones name their field", () => {
    const resolved = resolveControlSystemOptions({
      machineId: "m",
      tags,
      scanGroups,
      storePolicies: { audit: { timeoutMs: 1_000 } },
    });
    expect(resolved.storePolicies.audit).toEqual({
      timeoutMs: 1_000,
      breaker: { failureThreshold: 5, recoveryTimeMs: 2_000 },
      retry: { maxAttempts: 3, initialDelayMs: 100, maxDelayMs: 2_000, multiplier: 2, jitter: "full" },
    });
    expect(resolved.storePolicies.history.timeoutMs).toBe(30_000);
    expect(resolved.storePolicies.events.timeoutMs).toBe(5_000);
    let caught: unknown;
    try {
      createControlSystem({
        machineId: "m",
        tags,
        scanGroups,
        storePolicies: { alarms: { timeoutMs: 0, retry: { initialDelayMs: 500, maxDelayMs: 100 } } },
      });
    } catch (error) {
      caught = error;
    }
    expect((caught as KilnValidationError).issues.map((issue) => issue.path)).toEqual([
      "storePolicies.alarms.timeoutMs",
      "storePolicies.alarms.retry.maxDelayMs",
    ]);
  });

  test.each([
    ["acquisition.reconnect", { acquisition: { reconnect: { initialDelayMs: 500, maxDelayMs: 100 } } }],
    ["logging.retry", { logging: { retry: { initialDelayMs: 500, maxDelayMs: 100 } } }],
    [
      "storePolicies.history.retry",
      { storePolicies: { history: { retry: { initialDelayMs: 500, maxDelayMs: 100 } } } },
    ],
  ] as const)("every backoff (%s) refuses maxDelayMs below initialDelayMs", (path, options) => {
    let caught: unknown;
    try {
      resolveControlSystemOptions({ machineId: "m", tags, scanGroups, ...options });
    } catch (error) {
      caught = error;
    }
    expect(KilnError.is(caught, "KILN_VALIDATION")).toBe(true);
    expect((caught as KilnValidationError).issues).toEqual([
      { path: `${path}.maxDelayMs`, message: "maxDelayMs must be at least initialDelayMs" },
    ]);
  });

  test("a backoff whose initialDelayMs is too small to reach maxDelayMs in 1,000 attempts names initialDelayMs (adv13h)", () => {
    let caught: unknown;
    try {
      resolveControlSystemOptions({
        machineId: "m",
        tags,
        scanGroups,
        acquisition: { reconnect: { initialDelayMs: 1e-300 } },
      });
    } catch (error) {
      caught = error;
    }
    expect((caught as KilnValidationError).issues).toEqual([
      {
        path: "acquisition.reconnect.initialDelayMs",
        message: expect.stringMatching(/within 1000 attempts \(got 1e-300/),
      },
    ]);
  });

  test("every backoff keeps its documented defaults", () => {
    const resolved = resolveControlSystemOptions({ machineId: "m", tags, scanGroups });
    expect(resolved.acquisition.reconnect).toEqual({
      initialDelayMs: 500,
      maxDelayMs: 30_000,
      multiplier: 2,
      jitter: "full",
    });
    expect(resolved.logging.retry).toEqual({ initialDelayMs: 200, maxDelayMs: 10_000, multiplier: 2, jitter: "full" });
    expect(resolved.storePolicies.events.retry).toEqual({
      maxAttempts: 3,
      initialDelayMs: 100,
      maxDelayMs: 2_000,
      multiplier: 2,
      jitter: "full",
    });
  });

  test.each([
    ["acquisition.reconnect", (jitter: unknown) => ({ acquisition: { reconnect: { jitter } } })],
    ["logging.retry", (jitter: unknown) => ({ logging: { retry: { jitter } } })],
    ["storePolicies.audit.retry", (jitter: unknown) => ({ storePolicies: { audit: { retry: { jitter } } } })],
  ] as const)("every backoff (%s) takes a jitter kind and refuses anything else", (path, options) => {
    const resolved = resolveControlSystemOptions({ machineId: "m", tags, scanGroups, ...options("none") } as never);
    const backoff =
      path === "acquisition.reconnect"
        ? resolved.acquisition.reconnect
        : path === "logging.retry"
          ? resolved.logging.retry
          : resolved.storePolicies.audit.retry;
    expect(backoff.jitter).toBe("none");
    for (const bad of ["half", 0.5, null]) {
      let caught: unknown;
      try {
        resolveControlSystemOptions({ machineId: "m", tags, scanGroups, ...options(bad) } as never);
      } catch (error) {
        caught = error;
      }
      expect(KilnError.is(caught, "KILN_VALIDATION")).toBe(true);
      expect((caught as KilnValidationError).issues.map((issue) => issue.path)).toEqual([`${path}.jitter`]);
    }
  });

  test("cross-checks tags against scan groups and the safe state", () => {
    let caught: unknown;
    try {
      createControlSystem({
        machineId: "ald-3",
        tags,
        scanGroups: { fast: { periodMs: 100 } },
        machine: {
          safeState: [
            { tag: "chamber.pressure", value: 0 },
            { tag: "nope", value: 1 },
          ],
        },
      });
    } catch (error) {
      caught = error;
    }
    expect((caught as KilnValidationError).issues.map((issue) => issue.path)).toEqual([
      "tags.heater.temperature.scanGroup",
      "machine.safeState[0].tag",
      "machine.safeState[1].tag",
    ]);
  });
});

test("issue 16: a subscribe slower than the driver timeout leaves no subscription behind; one once it is fast enough; none after stop, and no value after stop", async () => {
  // The issue's case: creating the subscription (tens of thousands of monitored items) takes
  // 3 s against the 2 s default timeout. Before, every late subscription stayed alive: 6 after 20 s.
  const clock = new SimulatedClock({ start: Date.UTC(2026, 10, 22) });
  const plc = new SimulatedPlc({ tags, clock, sources: { "seq.counter": { kind: "counter" } } });
  plc.faults.subscribeLatencyMs = 3_000;
  const system = createControlSystem({
    machineId: "ald-1",
    tags,
    driver: plc,
    store: new MemoryStore({ clock }),
    clock,
    scanGroups: { fast: { periodMs: 1_000, mode: "subscribe" }, slow: { periodMs: 1_000, mode: "subscribe" } },
  });
  const started = system.start();
  await clock.advance(2_000); // the first subscribe times out; start returns with the link down
  await started;
  let most = 0;
  for (let second = 0; second < 20; second++) {
    await clock.advance(1_000);
    most = Math.max(most, plc.activeSubscriptions);
  }
  expect(most).toBe(0); // each late one disposed the moment it was made
  expect(system.read("seq.counter")?.quality.severity).not.toBe("good");
  plc.faults.subscribeLatencyMs = 0;
  await clock.advance(60_000);
  expect(system.health().acquisition.link).toBe("online");
  expect(plc.activeSubscriptions).toBe(2); // one per subscribed scan group
  expect(system.read("seq.counter")?.quality.severity).toBe("good");
  // A slow subscribe in flight at stop, from a link loss just before it.
  plc.faults.subscribeLatencyMs = 1_000;
  plc.dropConnection();
  await clock.advance(3_000);
  await system.stop();
  const after = system.read("seq.counter");
  await clock.advance(10_000);
  expect(plc.activeSubscriptions).toBe(0);
  expect(system.read("seq.counter")).toEqual(after);
});

test("a MemoryStore's retention evictions are published as store-evict, and the kept samples stay bounded", async () => {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 10, 22) });
  const plc = new SimulatedPlc({ tags, clock, sources: { "seq.counter": { kind: "counter" } } });
  const store = new MemoryStore({ clock, retention: { maxSamples: 20 } });
  const metrics = new MemoryMetrics();
  const system = createControlSystem({
    machineId: "ald-1",
    tags,
    driver: plc,
    store,
    clock,
    metrics,
    scanGroups,
    logging: { maxBatchSize: 50, maxLatencyMs: 200 },
  });
  // Published at 0 before the first eviction, so a scrape sees the series (#16 fix16b).
  expect(metrics.value("kiln_store_evicted_total", { port: "samples" })).toBe(0);
  expect(metrics.value("kiln_store_evicted_total", { port: "audit" })).toBe(0);
  let evicted = 0;
  system.bus.on("store-evict", (event) => {
    expect(event.port).toBe("samples");
    evicted += event.count;
  });
  await system.start();
  await clock.advance(5_000);
  await system.stop();
  expect(store.sampleCount).toBe(20);
  expect(evicted).toBeGreaterThan(0);
  expect(evicted).toBe(store.evicted.samples);
  expect(system.health().logging.samplesDropped).toBe(0);
  // Counted where a host looks: health() and the metrics; by design, so not a problem.
  const health = system.health();
  expect(health.store.retention).toEqual({ evicted: store.evicted, retainedFrom: store.retainedFrom });
  expect(health.store.retention?.retainedFrom).toBeGreaterThan(clock.now() - 5_000);
  expect(metrics.value("kiln_store_evicted_total", { port: "samples" })).toBe(evicted);
});

test("a sample stamped far ahead of the clock in a MemoryStore is a health problem, with how far ahead (#16 fix16b)", async () => {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 10, 22) });
  const store = new MemoryStore({ clock, retention: { maxSamples: 20 } });
  const system = createControlSystem({
    machineId: "ald-1",
    tags,
    driver: new SimulatedPlc({ tags, clock, sources: { "seq.counter": { kind: "counter" } } }),
    store,
    clock,
    scanGroups,
    logging: { maxBatchSize: 50, maxLatencyMs: 200 },
  });
  await system.start();
  try {
    // Within the tolerance (clock skew between a PLC and the host): not a problem.
    await store.samples.writeBatch([{ tag: "seq.counter", value: 1, timestamp: clock.now() + 30_000, quality: GOOD }]);
    expect(system.health().store.retention?.aheadOfClockMs).toBeUndefined();
    expect(system.health().problems.join("\n")).not.toContain("ahead of the clock");
    await store.samples.writeBatch([
      { tag: "seq.counter", value: 2, timestamp: clock.now() + 365 * 86_400_000, quality: GOOD },
    ]);
    const health = system.health();
    expect(health.store.retention?.aheadOfClockMs).toBe(365 * 86_400_000);
    expect(health.status).not.toBe("ok");
    expect(health.problems.join("\n")).toContain("stamped 31536000 s ahead of the clock");
  } finally {
    await system.stop();
  }
});

test("a stopped system publishes no more store-evict events: systems built one after another on one MemoryStore do not pile observers up (adv16a F8)", async () => {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 10, 22) });
  const store = new MemoryStore({ clock, retention: { maxSamples: 20 } });
  const build = (machineId: string) =>
    createControlSystem({
      machineId,
      tags,
      driver: new SimulatedPlc({ tags, clock, sources: { "seq.counter": { kind: "counter" } } }),
      store,
      clock,
      scanGroups,
      logging: { maxBatchSize: 50, maxLatencyMs: 200 },
    });
  const first = build("ald-1");
  let firstAfterStop = 0;
  let stopped = false;
  first.bus.on("store-evict", (event) => {
    if (stopped) firstAfterStop += event.count;
  });
  await first.start();
  await clock.advance(2_000);
  await first.stop();
  stopped = true;
  const second = build("ald-2");
  let secondEvicted = 0;
  second.bus.on("store-evict", (event) => {
    secondEvicted += event.count;
  });
  const before = store.evicted.samples;
  await second.start();
  await clock.advance(2_000);
  await second.stop();
  expect(secondEvicted).toBeGreaterThan(0);
  expect(secondEvicted).toBe(store.evicted.samples - before);
  expect(firstAfterStop).toBe(0);
});

test("health() has no store retention section for a store that is not the MemoryStore", async () => {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 10, 22) });
  const memory = new MemoryStore({ clock });
  const store = {
    ...memory,
    storeApiVersion: memory.storeApiVersion,
    capabilities: memory.capabilities,
    open: (t: never) => memory.open(t),
    close: () => memory.close(),
  } as never;
  const system = createControlSystem({ machineId: "ald-1", tags, store, clock, scanGroups });
  expect(system.health().store).toEqual({ state: "closed" });
});
