import { describe, expect, test } from "vitest";
import type { RecipeInput } from "../recipes/recipe-schema";
import { heldWriteSystem } from "../../test/support/held-write-system";
import { engineer } from "../../test/support/safety-harness";

// Adversarial review 15u, M1: the safe state waited for every step write in flight, whatever its
// tag, so a stuck write to an unrelated tag delayed it by the whole write timeout. Only a
// safe-state tag's own in-flight step writes hold that tag's safe value back.

const FAULTED = { kiln: "error", packml: "aborted" } as const;

describe("the safe state does not wait for a stuck write to another tag (review 15u, M1)", () => {
  for (const model of ["kiln", "packml"] as const) {
    test(`${model} (the example): a stuck step write to a tag outside the safe state; a trip writes the safe state at once`, async () => {
      const recipe: RecipeInput = {
        name: "stir",
        version: 1,
        steps: [{ set: { tag: "stirrer.speed", value: 50 } }, { wait: { durationMs: 5000 } }],
      };
      const parts = await heldWriteSystem(model, { tag: "stirrer.speed", value: 50 }, { timeoutMs: 30_000 });
      await parts.system.startRecipe(engineer, recipe);
      await parts.clock.advance(100);
      expect(parts.events).toEqual(["sent stirrer.speed=50"]);
      await parts.trip();
      // The stirrer's write has not settled (not released, far from its 30 s timeout), yet the
      // safe state is written and the machine faulted.
      expect(parts.events).toEqual(["sent stirrer.speed=50", "wrote heater.setpoint=0", "wrote valve.h2o=false"]);
      expect(parts.system.machineState).toBe(FAULTED[model]);
      parts.release();
      for (let tick = 0; tick < 4; tick++) await parts.clock.advance(50);
      expect(parts.events.at(-1)).toBe("landed stirrer.speed=50");
      await parts.system.stop();
    });

    test(`${model} (sibling): a stuck step write to a safe-state tag holds only that tag; its safe value lands after it`, async () => {
      const recipe: RecipeInput = {
        name: "heat",
        version: 1,
        steps: [{ set: { tag: "heater.setpoint", value: 300 } }, { wait: { durationMs: 5000 } }],
      };
      const parts = await heldWriteSystem(model, { tag: "heater.setpoint", value: 300 }, { timeoutMs: 30_000 });
      await parts.system.startRecipe(engineer, recipe);
      await parts.clock.advance(100);
      await parts.trip();
      // heater.setpoint comes first in the safe state, but its wait does not hold valve.h2o back.
      expect(parts.events).toEqual(["sent heater.setpoint=300", "wrote valve.h2o=false"]);
      parts.release();
      for (let tick = 0; tick < 4; tick++) await parts.clock.advance(50);
      expect(parts.events).toEqual([
        "sent heater.setpoint=300",
        "wrote valve.h2o=false",
        "landed heater.setpoint=300",
        "wrote heater.setpoint=0",
      ]);
      const heater = parts.plc.writes.filter((entry) => entry.tag === "heater.setpoint").map((entry) => entry.value);
      expect(heater).toEqual([300, 0]);
      expect(parts.system.machineState).toBe(FAULTED[model]);
      await parts.system.stop();
    });

    test(`${model} (sibling): a step write to a safe-state tag that never settles: the safe value goes out at its write timeout, plus one more for the driver's call (review 15e)`, async () => {
      const recipe: RecipeInput = {
        name: "heat",
        version: 1,
        steps: [{ set: { tag: "heater.setpoint", value: 300 } }, { wait: { durationMs: 5000 } }],
      };
      const parts = await heldWriteSystem(model, { tag: "heater.setpoint", value: 300 }, { timeoutMs: 1_000 });
      await parts.system.startRecipe(engineer, recipe);
      await parts.clock.advance(100);
      await parts.trip();
      expect(parts.events).toEqual(["sent heater.setpoint=300", "wrote valve.h2o=false"]);
      for (let tick = 0; tick < 20; tick++) await parts.clock.advance(50);
      // Given up at its timeout, the write may still land: the safe value waits for the driver's
      // call, at most one more write timeout, so it lands last (review 15e).
      expect(parts.events).toEqual(["sent heater.setpoint=300", "wrote valve.h2o=false"]);
      for (let tick = 0; tick < 20; tick++) await parts.clock.advance(50);
      expect(parts.events).toEqual(["sent heater.setpoint=300", "wrote valve.h2o=false", "wrote heater.setpoint=0"]);
      expect(parts.system.machineState).toBe(FAULTED[model]);
      parts.release();
      await parts.system.stop();
    });
  }
});
