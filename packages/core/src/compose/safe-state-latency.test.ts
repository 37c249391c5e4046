import { describe, expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import type { RecipeInput } from "../recipes/recipe-schema";
import { simulatedSystem } from "../../test/support/simulated-system";
import { engineer } from "../../test/support/safety-harness";

// Adversarial review 15u, M1: the safe state waited for every step write in flight, whatever its
// tag, so a stuck write to an unrelated tag delayed it by the whole write timeout. Only a
// safe-state tag's own in-flight step writes hold that tag's safe value back.

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", range: { min: 0, max: 100 }, scanGroup: "fast" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, scanGroup: "fast" },
  "valve.h2o": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
  "stirrer.speed": { dataType: "float64", access: "readwrite", range: { min: 0, max: 100 }, scanGroup: "fast" },
});

const FAULTED = { kiln: "error", packml: "aborted" } as const;

/** A system whose driver holds one step write (`stuck`) until released: it never settles before. */
async function build(model: "kiln" | "packml", stuck: { tag: string; value: number }, timeoutMs = 30_000) {
  const pressure = { value: 1 };
  const parts = simulatedSystem({
    tags,
    sources: { "chamber.pressure": () => pressure.value },
    scanGroups: { fast: { periodMs: 50 } },
    acquisition: { timeoutMs },
    machine: {
      model,
      safeState: [
        { tag: "heater.setpoint", value: 0 },
        { tag: "valve.h2o", value: false },
      ],
    },
    alarms: [
      { tag: "chamber.pressure", kind: "HIHI", setpoint: 20, priority: 1, message: "Overpressure", interlock: true },
    ],
  });
  const { plc, clock } = parts;
  const events: string[] = [];
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const write = plc.write.bind(plc);
  plc.write = async (tag, value, signal) => {
    if (tag.name === stuck.tag && value === stuck.value) {
      events.push(`sent ${tag.name}=${String(value)}`);
      await released;
      await write(tag, value);
      events.push(`landed ${tag.name}=${String(value)}`);
      return;
    }
    await write(tag, value, signal);
    events.push(`wrote ${tag.name}=${String(value)}`);
  };
  await parts.system.start();
  await clock.advance(100);
  const trip = async (): Promise<void> => {
    pressure.value = 25;
    for (let tick = 0; tick < 6; tick++) await clock.advance(50);
  };
  return { ...parts, events, release, trip };
}

describe("the safe state does not wait for a stuck write to another tag (review 15u, M1)", () => {
  for (const model of ["kiln", "packml"] as const) {
    test(`${model} (the example): a stuck step write to a tag outside the safe state; a trip writes the safe state at once`, async () => {
      const recipe: RecipeInput = {
        name: "stir",
        version: 1,
        steps: [{ set: { tag: "stirrer.speed", value: 50 } }, { wait: { durationMs: 5000 } }],
      };
      const parts = await build(model, { tag: "stirrer.speed", value: 50 });
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
      const parts = await build(model, { tag: "heater.setpoint", value: 300 });
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

    test(`${model} (sibling): a step write to a safe-state tag that never settles: the safe value goes out at its write timeout`, async () => {
      const recipe: RecipeInput = {
        name: "heat",
        version: 1,
        steps: [{ set: { tag: "heater.setpoint", value: 300 } }, { wait: { durationMs: 5000 } }],
      };
      const parts = await build(model, { tag: "heater.setpoint", value: 300 }, 1_000);
      await parts.system.startRecipe(engineer, recipe);
      await parts.clock.advance(100);
      await parts.trip();
      expect(parts.events).toEqual(["sent heater.setpoint=300", "wrote valve.h2o=false"]);
      for (let tick = 0; tick < 20; tick++) await parts.clock.advance(50);
      expect(parts.events).toEqual(["sent heater.setpoint=300", "wrote valve.h2o=false", "wrote heater.setpoint=0"]);
      expect(parts.system.machineState).toBe(FAULTED[model]);
      parts.release();
      await parts.system.stop();
    });
  }
});
