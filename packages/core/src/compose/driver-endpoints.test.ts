import { describe, expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import type { EndpointHealthSnapshot } from "../driver-kit/endpoint-health";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import { SimulatedPlc } from "../memory/simulated-plc";
import { createControlSystem } from "./create-control-system";

const tags = defineTags({ "unit1.level": { dataType: "float64", address: "level" } });

/** A simulated PLC that reports the health of two endpoints behind its connection. */
class GatewayPlc extends SimulatedPlc {
  unit2: EndpointHealthSnapshot = { endpoint: "unit 2", state: "online", consecutiveFailures: 0 };

  endpoints(): readonly EndpointHealthSnapshot[] {
    return [{ endpoint: "unit 1", state: "online", consecutiveFailures: 0 }, this.unit2];
  }
}

describe("a driver that reports endpoint health", () => {
  test("health() lists the endpoints, names an offline one with its next probe, and says degraded", async () => {
    const clock = new SimulatedClock({ start: Date.UTC(2026, 10, 30) });
    const plc = new GatewayPlc({ tags, clock });
    const system = createControlSystem({
      machineId: "gw",
      tags,
      driver: plc,
      store: new MemoryStore({ clock }),
      clock,
    });
    await system.start();
    await clock.advance(1_000);
    expect(system.health()).toMatchObject({ status: "ok", problems: [] });
    expect(system.health().acquisition.endpoints).toHaveLength(2);

    const nextProbeAt = clock.now() + 4_000;
    plc.unit2 = {
      endpoint: "unit 2",
      state: "offline",
      consecutiveFailures: 3,
      lastError: "no reply within 1000 ms",
      nextProbeAt,
    };
    const health = system.health();
    expect(health.status).toBe("degraded");
    expect(health.acquisition.endpoints).toContainEqual(plc.unit2);
    expect(health.problems).toEqual([
      `PLC ${plc.name} unit 2 offline: no reply within 1000 ms, next probe at ${new Date(nextProbeAt).toISOString()}`,
    ]);
    await system.stop();
  });

  test("a driver without endpoints() adds no endpoints to health()", async () => {
    const clock = new SimulatedClock({ start: Date.UTC(2026, 10, 30) });
    const plc = new SimulatedPlc({ tags, clock });
    const system = createControlSystem({
      machineId: "gw",
      tags,
      driver: plc,
      store: new MemoryStore({ clock }),
      clock,
    });
    await system.start();
    expect(system.health().acquisition).not.toHaveProperty("endpoints");
    await system.stop();
  });

  test("an endpoint going offline, coming back, or leaving the list while offline publishes plc-endpoint-change", async () => {
    const clock = new SimulatedClock({ start: Date.UTC(2026, 10, 30) });
    const plc = new GatewayPlc({ tags, clock });
    const system = createControlSystem({
      machineId: "gw",
      tags,
      driver: plc,
      store: new MemoryStore({ clock }),
      clock,
      scanGroups: { default: { periodMs: 1_000 } },
    });
    const events: { endpoint: string; from: string; to: string; reason?: string; nextProbeAt?: number }[] = [];
    system.bus.on("plc-endpoint-change", ({ endpoint, from, to, reason, nextProbeAt }) => {
      events.push({
        endpoint,
        from,
        to,
        ...(reason === undefined ? {} : { reason }),
        ...(nextProbeAt === undefined ? {} : { nextProbeAt }),
      });
    });
    await system.start();
    await clock.advance(2_000);
    expect(events).toEqual([]);
    const nextProbeAt = clock.now() + 4_000;
    plc.unit2 = { endpoint: "unit 2", state: "offline", consecutiveFailures: 3, lastError: "no reply", nextProbeAt };
    await clock.advance(2_000);
    expect(events).toEqual([{ endpoint: "unit 2", from: "online", to: "offline", reason: "no reply", nextProbeAt }]);
    plc.unit2 = { endpoint: "unit 2", state: "online", consecutiveFailures: 0 };
    await clock.advance(2_000);
    expect(events.at(-1)).toEqual({ endpoint: "unit 2", from: "offline", to: "online" });
    // Sibling: an endpoint that exists only while offline (a held shape) and leaves the list is reported online.
    plc.unit2 = { endpoint: "held shape holding-register/2", state: "offline", consecutiveFailures: 1 };
    await clock.advance(2_000);
    plc.unit2 = { endpoint: "unit 2", state: "online", consecutiveFailures: 0 };
    await clock.advance(2_000);
    expect(events.slice(2)).toEqual([
      { endpoint: "held shape holding-register/2", from: "online", to: "offline" },
      { endpoint: "held shape holding-register/2", from: "offline", to: "online" },
    ]);
    await system.stop();
  });
});
