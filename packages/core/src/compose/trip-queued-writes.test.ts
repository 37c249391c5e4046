import { describe, expect, test } from "vitest";
import { heldWriteSystem } from "../../test/support/held-write-system";
import { admin, engineer } from "../../test/support/safety-harness";

// Adversarial review 15r, M3: admin and engineer writes queued behind the state turn before an
// interlock trip were sent after the trip had written the safe state, undoing it (the PLC ended
// with the heater on and the valve open on a tripped machine). A write issued before a trip is
// now refused once the trip has begun, audited with the reason; one issued after it is judged in
// the tripped state like any other.

const TRIPPED = "safe state in force";

describe("writes queued before a trip are not sent after its safe state (review 15r, M3)", () => {
  for (const model of ["kiln", "packml"] as const) {
    test(`${model} (the example): queued admin writes are refused and audited; the PLC ends at the safe state`, async () => {
      const parts = await heldWriteSystem(model, { tag: "heater.setpoint", value: 50 }, { timeoutMs: 10_000 });
      const { system, clock } = parts;
      const from = clock.now();
      // The first write holds the state turn (on the wire); the next ones queue behind it.
      const holding = system.writeTag(admin, "heater.setpoint", 50);
      const queued = [
        system.writeTag(admin, "valve.h2o", true).catch((error: unknown) => error),
        system.writeTag(admin, "heater.setpoint", 300).catch((error: unknown) => error),
        system.writeTag(engineer, "heater.setpoint", 200).catch((error: unknown) => error),
      ];
      await parts.scans(1);
      expect(parts.events).toEqual(["sent heater.setpoint=50"]);
      await parts.trip();
      parts.release();
      await holding;
      const refusals = await Promise.all(queued);
      await parts.scans(4);
      // The admin's writes: refused for the trip. The engineer's: refused for the trip, or (PackML,
      // whose faulted states an engineer may not write in while `aborting`) by the role table.
      for (const refusal of refusals.slice(0, 2)) {
        expect(refusal).toMatchObject({ code: "KILN_INVALID_TRANSITION", details: { stage: "trip", tripped: true } });
        expect(String((refusal as Error).message)).toContain(TRIPPED);
      }
      expect((refusals[2] as { code: string }).code).toMatch(/^KILN_(INVALID_TRANSITION|FORBIDDEN)$/);
      // The write already sent lands before the safe state; nothing after it.
      expect(parts.values("heater.setpoint")).toEqual([50, 0]);
      expect(parts.values("valve.h2o")).toEqual([false]);
      const audit = (await system.history.audit.query({ from, to: clock.now() + 1 })).filter(
        (entry) => entry.action === "tag.write",
      );
      const refused = audit.filter((entry) => entry.outcome !== "allowed");
      expect(refused.map((entry) => [entry.target, entry.outcome])).toEqual([
        ["valve.h2o", "denied"],
        ["heater.setpoint", "denied"],
        ["heater.setpoint", "denied"],
      ]);
      for (const entry of refused.slice(0, 2)) expect(entry.reason).toContain(TRIPPED);
      await system.stop();
    });

    test(`${model} (sibling): a write issued after the trip is judged by the role table in the tripped state`, async () => {
      const parts = await heldWriteSystem(model, { tag: "none", value: -1 });
      const { system } = parts;
      await parts.trip();
      expect(system.machineState).toBe(model === "kiln" ? "error" : "aborted");
      // An engineer may write any tag in the faulted state (default role table): sent.
      await system.writeTag(engineer, "stirrer.speed", 5);
      expect(parts.values("stirrer.speed")).toEqual([5]);
      await system.stop();
    });
  }
});

// Adversarial review 15 (second pass), M2: the trip check ran before the write joined its tag's
// order; a manual write queued there behind a process's write still on the wire was sent after
// the trip. The check is now the last thing before the driver write.
describe("a manual write waiting behind its tag's earlier write is not sent after a trip (review 15-2, M2)", () => {
  for (const model of ["kiln", "packml"] as const) {
    test(`${model} (the example): refused for the trip, never sent`, async () => {
      const parts = await heldWriteSystem(model, { tag: "stirrer.speed", value: 40 }, { timeoutMs: 10_000 });
      const { system } = parts;
      await system.startRecipe(engineer, {
        name: "hold",
        version: 1,
        steps: [{ set: { tag: "stirrer.speed", value: 40 } }, { wait: { durationMs: 60_000 } }],
      });
      await parts.scans(2);
      // Committed before the trip; waits in the tag's order behind the step write on the wire.
      const queued = system.writeTag(admin, "stirrer.speed", 99).catch((error: unknown) => error);
      await parts.scans(2);
      await parts.trip();
      await parts.scans(4);
      parts.release();
      expect(await queued).toMatchObject({
        code: "KILN_INVALID_TRANSITION",
        details: { stage: "trip", tripped: true },
      });
      await parts.scans(6);
      expect(parts.values("stirrer.speed")).not.toContain(99);
      // Committed `allowed`, then refused by a check with nothing sent: its follow-up `<id>:fail`
      // is `denied`, as docs/concepts/security.md says (review 15c, LOW).
      const trail = (await system.history.audit.query({ from: 0, to: parts.clock.now() + 1 })).filter(
        (entry) => entry.action === "tag.write" && entry.target === "stirrer.speed",
      );
      expect(trail.map((entry) => [entry.id.endsWith(":fail"), entry.outcome])).toEqual([
        [false, "allowed"],
        [true, "denied"],
      ]);
      await system.stop();
    });
  }

  test("(sibling) a manual write waiting behind its tag's write with no trip is sent, in order", async () => {
    const parts = await heldWriteSystem("kiln", { tag: "stirrer.speed", value: 40 }, { timeoutMs: 10_000 });
    const { system } = parts;
    const first = system.writeTag(admin, "stirrer.speed", 40);
    await parts.scans(1);
    const second = system.writeTag(admin, "stirrer.speed", 99);
    await parts.scans(2);
    parts.release();
    await first;
    await second;
    await parts.scans(2);
    expect(parts.values("stirrer.speed")).toEqual([40, 99]);
    await system.stop();
  });
});
