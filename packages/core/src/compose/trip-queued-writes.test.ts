import { describe, expect, test } from "vitest";
import { heldWriteSystem } from "../../test/support/held-write-system";
import { admin, engineer } from "../../test/support/safety-harness";

// Adversarial review 15r, M3: admin and engineer writes queued behind the state turn before an
// interlock trip were sent after the trip had written the safe state, undoing it (the PLC ended
// with the heater on and the valve open on a tripped machine). A write issued before a trip is
// now refused once the trip has begun, audited with the reason; one issued after it is judged in
// the tripped state like any other.

const TRIPPED = "machine tripped; safe state in force";

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
