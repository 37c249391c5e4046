import { expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import type { Tag } from "../domain/tags";
import { defineTags } from "../domain/tags";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import { SimulatedPlc } from "../memory/simulated-plc";
import type { KilnEvents } from "../events/catalogue";
import { createControlSystem } from "./create-control-system";

const tags = defineTags({ "seq.counter": { dataType: "uint32", scanGroup: "fast" } });
const LIFECYCLE_TIMEOUT_MS = 1_000;

/** A memory store whose `open` / `close` can be slowed (on the clock), made to hang, or to throw. */
class SlowStore extends MemoryStore {
  openDelayMs = 0;
  closeHangs = false;
  constructor(readonly simulatedClock: SimulatedClock) {
    super({ clock: simulatedClock });
  }
  override async open(list: readonly Tag[]): Promise<void> {
    if (this.openDelayMs > 0) await this.simulatedClock.sleep(this.openDelayMs);
    await super.open(list);
  }
  override async close(): Promise<void> {
    if (this.closeHangs) return new Promise<void>(() => undefined);
    await super.close();
  }
}

/** A simulated PLC whose `connect` can be slowed and whose `close` can throw or hang. */
class SlowPlc extends SimulatedPlc {
  connectDelayMs = 0;
  closeFault: "none" | "throw" | "hang" = "none";
  constructor(readonly simulatedClock: SimulatedClock) {
    super({ tags, clock: simulatedClock, sources: { "seq.counter": { kind: "counter" } } });
  }
  override async connect(signal?: AbortSignal): Promise<void> {
    if (this.connectDelayMs > 0) await this.simulatedClock.sleep(this.connectDelayMs);
    await super.connect(signal);
  }
  override async close(): Promise<void> {
    if (this.closeFault === "throw") throw new Error("ECONNRESET on close");
    if (this.closeFault === "hang") return new Promise<void>(() => undefined);
    await super.close();
  }
}

function build() {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 10, 22) });
  const store = new SlowStore(clock);
  const plc = new SlowPlc(clock);
  const system = createControlSystem({
    machineId: "m1",
    tags,
    driver: plc,
    store,
    clock,
    scanGroups: { fast: { periodMs: 100 } },
    acquisition: { timeoutMs: 5_000 },
    logging: { maxBatchSize: 10, maxLatencyMs: 200 },
    lifecycleTimeoutMs: LIFECYCLE_TIMEOUT_MS,
  });
  const failures: KilnEvents["lifecycle-step-fail"][] = [];
  system.bus.on("lifecycle-step-fail", (event) => void failures.push(event));
  return { clock, store, plc, system, failures };
}

/** Settles `promise` by advancing the clock in steps; returns how it settled. */
async function settle(clock: SimulatedClock, promise: Promise<unknown>, stepMs = 100, steps = 100): Promise<string> {
  let outcome: string | undefined;
  promise.then(
    () => (outcome = "ok"),
    (error: unknown) => (outcome = KilnError.is(error) ? error.code : String(error)),
  );
  for (let step = 0; step < steps && outcome === undefined; step++) await clock.advance(stepMs);
  return outcome ?? "pending";
}

async function expectStoreClosed(store: MemoryStore): Promise<void> {
  await expect(store.events.version("x")).rejects.toMatchObject({ code: "KILN_LIFECYCLE" });
}

test.each(["store.open", "driver.connect"] as const)(
  "stop() during a slow %s: the start gives up, the end state is stopped, nothing connected and no values flow",
  async (slow) => {
    const { clock, store, plc, system } = build();
    if (slow === "store.open") store.openDelayMs = 500;
    else plc.connectDelayMs = 500;
    const starting = system.start();
    const startOutcome = settle(clock, starting);
    const stopOutcome = await settle(clock, system.stop());
    expect(stopOutcome).toBe("ok");
    expect(system.state).toBe("stopped");
    expect(["KILN_ABORTED", "ok"]).toContain(await startOutcome);
    await clock.advance(1_000);
    expect(system.state).toBe("stopped");
    expect(plc.status === "connected").toBe(false);
    const before = plc.readCalls;
    await clock.advance(1_000);
    expect(plc.readCalls).toBe(before);
    expect(store.sampleCount).toBe(0);
    expect(system.health().status).toBe("stopped");
    await expectStoreClosed(store);
    // start works again afterwards
    store.openDelayMs = 0;
    plc.connectDelayMs = 0;
    expect(await settle(clock, system.start())).toBe("ok");
    expect(system.state).toBe("running");
    expect(await settle(clock, system.stop())).toBe("ok");
  },
);

test("a second concurrent stop() resolves only when the drain and the closes are done", async () => {
  const { clock, store, plc, system } = build();
  await system.start();
  await clock.advance(1_000);
  store.faults.delayWrites(2_000);
  const first = system.stop();
  let secondDone = false;
  const second = system.stop().then(() => (secondDone = true));
  await clock.advance(1_000);
  expect(secondDone).toBe(false);
  expect(await settle(clock, second)).toBe("ok");
  await first;
  expect(system.state).toBe("stopped");
  expect(store.sampleCount).toBe(plc.readCalls);
  await expectStoreClosed(store);
});

test.each(["throw", "hang"] as const)(
  "driver.close that %ss: stop() still closes the store, reports the failure and ends stopped; start works again",
  async (fault) => {
    const { clock, store, plc, system, failures } = build();
    await system.start();
    await clock.advance(500);
    plc.closeFault = fault;
    expect(await settle(clock, system.stop())).toBe("ok");
    expect(system.state).toBe("stopped");
    await expectStoreClosed(store);
    expect(failures.map((event) => event.step)).toEqual(["driver.close"]);
    expect(system.health().lifecycle.lastError).toMatch(
      fault === "throw" ? /^driver\.close: .*ECONNRESET/ : /KILN_TIMEOUT/,
    );
    plc.closeFault = "none";
    await plc.close();
    expect(await settle(clock, system.start())).toBe("ok");
    expect(system.health().lifecycle.lastError).toBeUndefined();
    expect(await settle(clock, system.stop())).toBe("ok");
  },
);

test("store.close that hangs: stop() ends stopped after lifecycleTimeoutMs, reported; store.open that hangs fails the start", async () => {
  const { clock, store, system, failures } = build();
  await system.start();
  store.closeHangs = true;
  expect(await settle(clock, system.stop())).toBe("ok");
  expect(system.state).toBe("stopped");
  expect(failures.map((event) => event.step)).toEqual(["store.close"]);
  expect(system.health().lifecycle.lastError).toMatch(/^store\.close: KILN_TIMEOUT/);

  store.openDelayMs = 10 * LIFECYCLE_TIMEOUT_MS;
  expect(await settle(clock, system.start())).toBe("KILN_TIMEOUT");
  expect(system.state).toBe("stopped");
  expect(failures.map((event) => event.step)).toContain("store.open");
});
