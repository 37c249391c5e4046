import { describe, expect, test } from "vitest";
import type { KilnEvents } from "../events/catalogue";
import { heldWriteSystem } from "../../test/support/held-write-system";
import { admin, engineer } from "../../test/support/safety-harness";

// Adversarial review 15f, H2: a driver call given up at its timeout that settled after the late
// write wait (one more timeout) landed after the safe state, undoing it, and nothing said so;
// health() named nothing while it was out. Now health() names such a call while it is out, and
// when it lands after a later write to its tag (the safe state), that later value is written
// again, published (`write-late-settle`) and audited (the system's `tag.reassert`).

const HEAT = {
  name: "heat",
  version: 1,
  steps: [{ set: { tag: "heater.setpoint", value: 40 } }, { wait: { durationMs: 60_000 } }],
};

describe("a given-up write that lands after the safe state is overwritten by it again (review 15f, H2)", () => {
  for (const how of ["a process step write (the example)", "a manual write, then a manual fault (sibling)"]) {
    test(`${how}: named by health() while out; on landing the safe value is written again, published and audited`, async () => {
      const parts = await heldWriteSystem("kiln", { tag: "heater.setpoint", value: 40 }, { timeoutMs: 500 });
      const { system, clock } = parts;
      const from = clock.now();
      const settles: KilnEvents["write-late-settle"][] = [];
      system.bus.on("write-late-settle", (event) => void settles.push(event));
      if (how.startsWith("a process")) {
        await system.startRecipe(engineer, HEAT);
        await parts.scans(30);
      } else {
        const write = system.writeTag(admin, "heater.setpoint", 40).catch((error: unknown) => error);
        await parts.scans(12);
        expect(await write).toMatchObject({ code: "KILN_TIMEOUT" });
        const faulted = system.sendMachineCommand(admin, "fault");
        await parts.scans(14);
        expect(await faulted).toBe("error");
      }
      expect(system.machineState).toBe("error");
      expect(parts.values("heater.setpoint")).toEqual([0]);
      expect(system.health().problems.join("\n")).toContain("write of heater.setpoint given up at");
      parts.release();
      await parts.scans(4);
      // The late 40, then the safe 0 again: the device ends safe.
      expect(parts.values("heater.setpoint")).toEqual([0, 40, 0]);
      expect(system.health().problems.join("\n")).not.toContain("heater.setpoint given up");
      expect(settles).toMatchObject([{ tag: "heater.setpoint", value: 40, landed: true, reasserted: 0 }]);
      const trail = await system.history.audit.query({ from, to: clock.now() + 1 });
      expect(trail.filter((entry) => entry.action === "tag.reassert")).toMatchObject([
        { principal: "(system)", target: "heater.setpoint", outcome: "allowed", newValue: { late: 40, reasserted: 0 } },
      ]);
      await system.stop();
    });
  }

  test("(sibling) a given-up write whose driver call fails later: nothing written again, published not landed, no longer named", async () => {
    const parts = await heldWriteSystem(
      "kiln",
      { tag: "heater.setpoint", value: 40 },
      { timeoutMs: 500, failHeld: true },
    );
    const { system } = parts;
    const settles: KilnEvents["write-late-settle"][] = [];
    system.bus.on("write-late-settle", (event) => void settles.push(event));
    const write = system.writeTag(admin, "heater.setpoint", 40).catch((error: unknown) => error);
    await parts.scans(12);
    expect(await write).toMatchObject({ code: "KILN_TIMEOUT" });
    const faulted = system.sendMachineCommand(admin, "fault");
    await parts.scans(14);
    expect(await faulted).toBe("error");
    expect(system.health().problems.join("\n")).toContain("write of heater.setpoint given up at");
    parts.release();
    await parts.scans(4);
    expect(parts.values("heater.setpoint")).toEqual([0]);
    expect(settles).toMatchObject([{ tag: "heater.setpoint", landed: false }]);
    expect(settles[0]).not.toHaveProperty("reasserted");
    expect(system.health().problems.join("\n")).not.toContain("given up");
    await system.stop();
  });
});

// Adversarial review 15f, LOW: a manual write answered KILN_TIMEOUT that later landed was audited
// failed only. What became of its driver call is now its own entry: `<id>:landed` or `<id>:lost`.
describe("a manual write answered KILN_TIMEOUT records what became of it (review 15f, LOW)", () => {
  for (const failHeld of [false, true]) {
    test(`${failHeld ? "(sibling) it fails later: <id>:lost, failed" : "(the example) it lands later: <id>:landed, allowed"}`, async () => {
      const parts = await heldWriteSystem("kiln", { tag: "stirrer.speed", value: 40 }, { timeoutMs: 500, failHeld });
      const { system, clock } = parts;
      const from = clock.now();
      const write = system.writeTag(admin, "stirrer.speed", 40).catch((error: unknown) => error);
      await parts.scans(12);
      expect(await write).toMatchObject({ code: "KILN_TIMEOUT" });
      parts.release();
      await parts.scans(4);
      const trail = (await system.history.audit.query({ from, to: clock.now() + 1 })).filter(
        (entry) => entry.action === "tag.write",
      );
      const intent = trail.find((entry) => entry.refersTo === undefined)!;
      expect(trail.map((entry) => [entry.id.slice(intent.id.length), entry.outcome])).toEqual([
        ["", "allowed"],
        [":fail", "failed"],
        [failHeld ? ":lost" : ":landed", failHeld ? "failed" : "allowed"],
      ]);
      await system.stop();
    });
  }
});
