import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { GOOD } from "../domain/quality";
import { defineTags } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import { SimulatedPlc } from "../memory/simulated-plc";
import type { AuditEntry } from "../ports/audit-log";
import type { StorePortName } from "../resilience/guarded-ports";
import { guardDriver, guardStore, type PortPolicy, type StorePolicies } from "./port-policies";

const tags = defineTags({
  "chamber.pressure": { dataType: "float64" },
  "valve.ald1": { dataType: "bool", access: "readwrite" },
});
const policy: PortPolicy = {
  timeoutMs: 100,
  breaker: { failureThreshold: 2, recoveryTimeMs: 10_000 },
  retry: { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 10, jitter: "none" },
};
const PORTS: StorePortName[] = ["samples", "history", "events", "processes", "recipes", "alarms", "audit"];
const policies = Object.fromEntries(PORTS.map((port) => [port, policy])) as StorePolicies;
const entry: AuditEntry = {
  id: "entry-1",
  principal: "olga",
  roles: ["operator"],
  action: "tag.write",
  target: "x",
  outcome: "allowed",
  at: 0,
};

async function setup() {
  const clock = new SimulatedClock({ start: 0 });
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  const changes: KilnEvents["breaker-state-change"][] = [];
  bus.on("breaker-state-change", (change) => void changes.push(change));
  const store = new MemoryStore({ clock });
  await store.open(tags.list());
  return { clock, bus, store, changes, guarded: guardStore(store, policies, { clock, bus }) };
}

const codeOf = (promise: Promise<unknown>): Promise<string | undefined> =>
  promise.then(
    () => undefined,
    (error: unknown) => (KilnError.is(error) ? error.code : String(error)),
  );

describe("guardStore", () => {
  test("a hung port times out, opens only its own breaker and publishes breaker-state-change", async () => {
    const { clock, store, guarded, changes } = await setup();
    store.faults.hang("audit");
    const first = codeOf(guarded.audit.record(entry));
    const second = codeOf(guarded.audit.record(entry));
    await clock.advance(100);
    expect([await first, await second]).toEqual(["KILN_TIMEOUT", "KILN_TIMEOUT"]);
    expect(await codeOf(guarded.audit.record(entry))).toBe("KILN_CIRCUIT_OPEN");
    expect(guarded.breakers.audit.state.state).toBe("open");
    expect(changes).toEqual([expect.objectContaining({ breaker: "store:audit", from: "closed", to: "open" })]);
    for (const port of PORTS.filter((name) => name !== "audit")) {
      expect(guarded.breakers[port].state.state).toBe("closed");
    }
    await guarded.samples.writeBatch([{ tag: "chamber.pressure", value: 1, timestamp: 1, quality: GOOD }]);
    await guarded.alarms.query({ from: 0, to: 10 });
    expect(store.sampleCount).toBe(1);
  });

  test("history queries run under the history port's timeout and breaker", async () => {
    const { clock, store, guarded } = await setup();
    await guarded.samples.writeBatch([{ tag: "chamber.pressure", value: 1, timestamp: 1, quality: GOOD }]);
    expect((await guarded.history!.valueAt(["chamber.pressure"], 5))[0]?.value).toBe(1);
    const slow: typeof store = Object.create(store) as typeof store;
    const never = () => new Promise<never>(() => undefined);
    Object.defineProperty(slow, "history", {
      value: { aggregate: never, valueAt: never, valuesAt: never, interpolated: never, downsample: never },
    });
    const guardedSlow = guardStore(slow, { ...policies, history: { ...policy, retry: undefined } }, { clock });
    const pending = codeOf(guardedSlow.history!.valueAt(["chamber.pressure"], 5));
    await clock.advance(100);
    expect(await pending).toBe("KILN_TIMEOUT");
    expect(guardedSlow.breakers.history.snapshot.failures).toBeGreaterThan(0);
  });

  test("writes that are not idempotent run once; idempotent calls are retried", async () => {
    const { clock, store } = await setup();
    const calls = { audit: 0, append: 0, version: 0, writeBatch: 0 };
    const failing = () => Promise.reject(new KilnError("KILN_STORE_ERROR", "down", { retryable: true }));
    const flaky: typeof store = Object.create(store) as typeof store;
    Object.defineProperties(flaky, {
      audit: { value: { ...store.audit, record: () => (calls.audit++, failing()) } },
      events: {
        value: {
          ...store.events,
          append: () => (calls.append++, failing()),
          version: () => (calls.version++, calls.version < 3 ? failing() : Promise.resolve(7)),
        },
      },
      samples: { value: { ...store.samples, writeBatch: () => (calls.writeBatch++, failing()) } },
    });
    const tolerant = { ...policy, breaker: { failureThreshold: 10, recoveryTimeMs: 10_000 } };
    const guarded = guardStore(flaky, Object.fromEntries(PORTS.map((port) => [port, tolerant])) as StorePolicies, {
      clock,
    });
    expect(await codeOf(guarded.audit.record(entry))).toBe("KILN_STORE_ERROR");
    expect(await codeOf(guarded.events.append("m", 0, []))).toBe("KILN_STORE_ERROR");
    const version = guarded.events.version("m");
    await clock.advance(100);
    expect(await version).toBe(7);
    const write = codeOf(guarded.samples.writeBatch([]));
    await clock.advance(100);
    expect(await write).toBe("KILN_STORE_ERROR");
    expect(calls).toEqual({ audit: 1, append: 1, version: 3, writeBatch: 3 });
  });
});

describe("guardDriver", () => {
  test("reads and writes share one breaker per device; the reconnect probe bypasses it", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const plc = new SimulatedPlc({ tags, clock });
    const driver = guardDriver(plc, policy, { clock });
    await driver.connect();
    plc.faults.unreachable = true;
    expect(await codeOf(driver.read(tags.list()))).not.toBeUndefined();
    expect(await codeOf(driver.write(tags.get("valve.ald1"), true))).not.toBeUndefined();
    expect(driver.breaker.state.state).toBe("open");
    expect(driver.breaker.name).toBe(`plc:${plc.name}`);
    expect(await codeOf(driver.write(tags.get("valve.ald1"), true))).toBe("KILN_CIRCUIT_OPEN");
    plc.faults.unreachable = false;
    expect(await codeOf(driver.read(tags.list()))).toBe("KILN_CIRCUIT_OPEN");
    if (plc.status !== "connected") await driver.connect();
    await expect(driver.probe(tags.list())).resolves.toHaveLength(2);
  });

  test("a hung device call times out with KILN_TIMEOUT", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const plc = new SimulatedPlc({ tags, clock });
    const driver = guardDriver(plc, policy, { clock });
    await driver.connect();
    plc.faults.latencyMs = 10_000;
    const read = codeOf(driver.read(tags.list()));
    await clock.advance(100);
    expect(await read).toBe("KILN_TIMEOUT");
    expect(driver.breaker.snapshot.failures).toBe(1);
  });
});
