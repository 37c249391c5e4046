import { describe, expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import { MemoryStore } from "../memory/memory-store";
import { simulatedSystem } from "../../test/support/simulated-system";
import { admin } from "../../test/support/safety-harness";

// Older note of review 15r: a tripped machine came back untripped (idle) after a host restart,
// and nothing said so. A restart still does not restore the latch (ADR 0042, 15t §4), but
// health() now names the machine state last recorded until the machine next changes state.

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", range: { min: 0, max: 100 }, scanGroup: "fast" },
  "valve.h2o": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
});

/** A host process: its own clock and system, on the one store that outlives it. */
function host(shared: { store?: MemoryStore }, pressure: { value: number }) {
  return simulatedSystem({
    tags,
    sources: { "chamber.pressure": () => pressure.value },
    scanGroups: { fast: { periodMs: 50 } },
    machine: { safeState: [{ tag: "valve.h2o", value: false }] },
    alarms: [
      { tag: "chamber.pressure", kind: "HIHI", setpoint: 20, priority: 1, message: "Overpressure", interlock: true },
    ],
    store: (clock) => (shared.store ??= new MemoryStore({ clock })),
  });
}

describe("a restart names the machine state it did not restore (review 15r)", () => {
  test("(the example) tripped, host restarted: health() names the trip; a fault latches it again and clears the note", async () => {
    const pressure = { value: 25 };
    const store = {};
    const before = host(store, pressure);
    await before.system.start();
    await before.clock.advance(400);
    expect(before.system.machineState).toBe("error");
    await before.system.stop();
    const after = host(store, pressure);
    await after.system.start();
    expect(after.system.machineState).toBe("idle");
    expect(after.system.health().problems).toContainEqual(
      expect.stringMatching(/^machine was "error" when last recorded .* and restarted "idle"/),
    );
    await after.system.sendMachineCommand(admin, "fault");
    expect(after.system.health().problems.filter((problem) => problem.startsWith("machine was"))).toEqual([]);
    await after.system.stop();
  });

  test("(sibling) a clean stop in idle names nothing after the restart", async () => {
    const pressure = { value: 1 };
    const store = {};
    const before = host(store, pressure);
    await before.system.start();
    await before.clock.advance(200);
    await before.system.stop();
    const after = host(store, pressure);
    await after.system.start();
    await after.clock.advance(200);
    expect(after.system.health().problems).toEqual([]);
    await after.system.stop();
  });
});
