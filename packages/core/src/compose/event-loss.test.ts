import { describe, expect, test } from "vitest";
import { createControlSystem, defineTags, MemoryStore } from "../index";

// fix15z, adv15y (outside target): a machine-state-change the event store did not take (the store
// down, its breaker open) was appended once and lost with only a log line: health said nothing.

const admin = { id: "ada", roles: ["admin"] } as never;

describe("machine state changes the event store did not take are counted and named (fix15z)", () => {
  test("an append that fails is counted in health().events and named in problems; one that succeeds adds nothing", async () => {
    const tags = defineTags({ "heater.setpoint": { dataType: "float64", access: "readwrite", scanGroup: "fast" } });
    const store = new MemoryStore();
    const append = store.events.append.bind(store.events);
    let failing = false;
    store.events.append = async (...args: Parameters<typeof append>) => {
      if (failing) throw new Error("events table unavailable");
      return append(...args);
    };
    const system = createControlSystem({
      machineId: "m1",
      tags,
      store,
      scanGroups: { fast: { periodMs: 50 } },
      machine: { model: "kiln" },
    } as never);
    await system.start();
    expect(await system.sendMachineCommand(admin, "enterMaintenance")).toBe("maintenance");
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(system.health().events).toEqual({ notRecorded: 0 });
    failing = true;
    expect(await system.sendMachineCommand(admin, "exitMaintenance")).toBe("idle");
    await new Promise((resolve) => setTimeout(resolve, 50));
    const health = system.health();
    expect(health.events).toMatchObject({
      notRecorded: 1,
      lastError: expect.stringContaining("events table unavailable"),
    });
    expect(health.problems).toContainEqual(
      expect.stringContaining("1 machine state change(s) not stored in the event store"),
    );
    expect(health.status).toBe("degraded");
    await system.stop();
  });
});
