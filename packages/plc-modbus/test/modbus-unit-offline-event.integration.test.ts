import { afterEach, describe, expect, it } from "vitest";
import { MemoryStore, createControlSystem, defineTags, type KilnEvents } from "@kiln/core";
import { ModbusDriver, ModbusSimulator } from "../src/index";

// Issue 12 (fix12aa, item 2): a unit behind a gateway going offline raised no event on the system's bus (only the
// driver's own onUnitStatusChange listener, and health() naming it). The core now publishes `plc-endpoint-change`
// for each of a driver's endpoints (`driver.endpoints()`) that goes offline or comes back, like the connection's
// `plc-connection-lose` / `-restore`.

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const tags = defineTags({
  live: { dataType: "uint16", address: "HR0@1" },
  dead: { dataType: "uint16", address: "HR0@2" },
});

describe("a unit going offline and coming back is an event on the system's bus", () => {
  it("publishes plc-endpoint-change offline for the silent unit, then online when it answers again", async () => {
    const simulator = new ModbusSimulator({ tags, initialValues: { live: 1, dead: 2 } });
    const { host, port } = await simulator.start();
    cleanups.push(() => simulator.stop());
    const silence = simulator.injectSilence(2);
    const driver = new ModbusDriver({
      transport: { kind: "tcp", host, port },
      requestTimeoutMs: 100,
      unitHealth: { offlineAfter: 2, probeInitialDelayMs: 300, probeMaxDelayMs: 300 },
    });
    const system = createControlSystem({
      machineId: "gateway",
      tags,
      store: new MemoryStore(),
      driver,
      scanGroups: { default: { periodMs: 200 } },
      acquisition: { timeoutMs: 600 },
    });
    cleanups.push(() => system.stop());
    const events: KilnEvents["plc-endpoint-change"][] = [];
    system.bus.on("plc-endpoint-change", (event) => void events.push(event));
    await system.start();
    await sleep(1_500);
    const offline = events.filter((event) => event.endpoint === "unit 2" && event.to === "offline");
    expect(offline).toHaveLength(1);
    expect(offline[0]).toMatchObject({ driver: driver.name, from: "online", nextProbeAt: expect.any(Number) });
    expect(offline[0]!.reason).toMatch(/No reply|timed out/i);
    expect(events.some((event) => event.endpoint === "unit 1")).toBe(false);
    // Sibling: the unit answers again; its probe brings it back, reported once.
    silence();
    await sleep(1_500);
    const back = events.filter((event) => event.endpoint === "unit 2" && event.to === "online");
    expect(back).toHaveLength(1);
    expect(back[0]).toMatchObject({ from: "offline" });
  }, 10_000);
});
