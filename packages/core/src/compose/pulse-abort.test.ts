import { describe, expect, test } from "vitest";
import type { RecipeInput } from "../recipes/recipe-schema";
import { heldWriteSystem as build } from "../../test/support/held-write-system";
import { admin, engineer, settled } from "../../test/support/safety-harness";

// Adversarial review 15t. H1: an abort while a pulse's `on` write was in flight sent the `off`
// at once, so the `on` could land last (the PLC received 0 then 50; no problem reported). M2: an
// aborted pulse awaited its `off` write, so a stuck `off` to a tag outside the safe state held
// the whole safe state (and the machine) for the write timeout.

const FAULTED = { kiln: "error", packml: "aborted" } as const;
const STOPPED = { kiln: "idle", packml: "stopped" } as const;
const RESET = { kiln: "reset", packml: "clear" } as const;

const STIR: RecipeInput = {
  name: "stir",
  version: 1,
  steps: [{ pulse: { tag: "stirrer.speed", on: 50, off: 0, durationMs: 5000 } }],
};

describe("a pulse's off value is never overtaken by its own on write (review 15t, H1)", () => {
  for (const model of ["kiln", "packml"] as const) {
    test(`${model} (the example): a stop while the pulse's on write is in flight; off lands after on`, async () => {
      const parts = await build(model, { tag: "stirrer.speed", value: 50 });
      const process = await parts.system.startRecipe(engineer, STIR);
      await parts.scans(2);
      const stop = settled(parts.system.sendMachineCommand(admin, "stop"));
      await parts.scans(2);
      // The stop is done: the safe state is written; the stirrer's off waits behind its on.
      expect(stop).toMatchObject({ done: true, value: STOPPED[model] });
      expect(parts.events).toEqual(["sent stirrer.speed=50", "wrote heater.setpoint=0", "wrote valve.h2o=false"]);
      parts.release();
      await parts.scans(2);
      expect(parts.events.slice(3)).toEqual(["landed stirrer.speed=50", "wrote stirrer.speed=0"]);
      expect(parts.values("stirrer.speed")).toEqual([50, 0]);
      const result = await process.finished;
      expect(result).toMatchObject({ status: "aborted", problems: [] });
      await parts.system.stop();
    });

    test(`${model} (sibling): a trip during a pulse on a safe-state tag: on, then off, then the safe value`, async () => {
      const parts = await build(model, { tag: "heater.setpoint", value: 300 });
      const process = await parts.system.startRecipe(engineer, {
        name: "heat",
        version: 1,
        steps: [{ pulse: { tag: "heater.setpoint", on: 300, off: 10, durationMs: 5000 } }],
      });
      await parts.scans(2);
      await parts.trip();
      // valve.h2o does not wait; heater.setpoint's off and safe value wait behind its on.
      expect(parts.events).toEqual(["sent heater.setpoint=300", "wrote valve.h2o=false"]);
      parts.release();
      await parts.scans(2);
      expect(parts.values("heater.setpoint")).toEqual([300, 10, 0]);
      expect(parts.system.machineState).toBe(FAULTED[model]);
      expect((await process.finished).status).toBe("aborted");
      await parts.system.stop();
    });
  }
});

describe("an aborted pulse's stuck off write holds nothing outside its tag (review 15t, M2)", () => {
  for (const model of ["kiln", "packml"] as const) {
    test(`${model} (the example): a stop while the pulse's off write is stuck answers at once, safe state written`, async () => {
      const parts = await build(model, { tag: "stirrer.speed", value: 0 });
      const process = await parts.system.startRecipe(engineer, STIR);
      await parts.scans(2);
      const stop = settled(parts.system.sendMachineCommand(admin, "stop"));
      await parts.scans(2);
      expect(stop).toMatchObject({ done: true, value: STOPPED[model] });
      expect(parts.events).toEqual([
        "wrote stirrer.speed=50",
        "sent stirrer.speed=0",
        "wrote heater.setpoint=0",
        "wrote valve.h2o=false",
      ]);
      // The result waits for the off write (its outcome belongs in the result).
      const finished = settled(process.finished);
      await parts.scans(2);
      expect(finished.done).toBe(false);
      parts.release();
      await parts.scans(2);
      expect(await process.finished).toMatchObject({ status: "aborted", problems: [] });
      expect(parts.values("stirrer.speed")).toEqual([50, 0]);
      await parts.system.stop();
    });

    test(`${model} (sibling): a trip while the off write is stuck faults at once; the off's failure is reported and named by health() until a write of the tag lands`, async () => {
      const parts = await build(model, { tag: "stirrer.speed", value: 0 }, { failHeld: true });
      const process = await parts.system.startRecipe(engineer, STIR);
      await parts.scans(2);
      await parts.trip();
      expect(parts.system.machineState).toBe(FAULTED[model]);
      expect(parts.events.slice(1)).toEqual([
        "sent stirrer.speed=0",
        "wrote heater.setpoint=0",
        "wrote valve.h2o=false",
      ]);
      parts.release();
      await parts.scans(2);
      const result = await process.finished;
      expect(result.status).toBe("aborted");
      expect(result.problems).toMatchObject([{ stage: "pulse-off", tag: "stirrer.speed" }]);
      const named = (): string[] =>
        parts.system.health().problems.filter((problem) => problem.includes("pulse off write of stirrer.speed failed"));
      expect(named()).toHaveLength(1);
      expect(named()[0]).toContain("device refused the write");
      parts.pressure.value = 1;
      await parts.scans(4);
      expect(named()).toHaveLength(1);
      // A reset does not clear it: the stirrer may still run (fix15s); a write of the tag that lands does.
      await parts.system.sendMachineCommand(admin, RESET[model]);
      expect(named()).toHaveLength(1);
      await parts.system.writeTag(admin, "stirrer.speed", 5);
      expect(named()).toHaveLength(0);
      await parts.system.stop();
    });
  }
});

// Adversarial review 15s, M1: a pulse that ran its time awaited its off write without the step's
// signal, so a stuck off (to a tag outside the safe state) held a stop or a trip: the machine
// stayed processing, the interlock active, until the write timed out.
describe("a finished pulse's stuck off write holds nothing outside its tag (review 15s, M1)", () => {
  const STIR_THEN_WAIT: RecipeInput = {
    name: "stir",
    version: 1,
    steps: [{ pulse: { tag: "stirrer.speed", on: 50, off: 0, durationMs: 100 } }, { wait: { durationMs: 5000 } }],
  };

  for (const model of ["kiln", "packml"] as const) {
    test(`${model} (the example): a stop while the finished pulse's off write is stuck answers at once, safe state written`, async () => {
      const parts = await build(model, { tag: "stirrer.speed", value: 0 });
      const process = await parts.system.startRecipe(engineer, STIR_THEN_WAIT);
      await parts.scans(4);
      expect(parts.events).toEqual(["wrote stirrer.speed=50", "sent stirrer.speed=0"]);
      const stop = settled(parts.system.sendMachineCommand(admin, "stop"));
      await parts.scans(2);
      expect(stop).toMatchObject({ done: true, value: STOPPED[model] });
      expect(parts.events.slice(2)).toEqual(["wrote heater.setpoint=0", "wrote valve.h2o=false"]);
      const finished = settled(process.finished);
      await parts.scans(2);
      expect(finished.done).toBe(false);
      parts.release();
      await parts.scans(2);
      expect(await process.finished).toMatchObject({ status: "aborted", problems: [] });
      expect(parts.values("stirrer.speed")).toEqual([50, 0]);
      await parts.system.stop();
    });

    test(`${model} (sibling): a trip while the finished pulse's off write is stuck faults at once; its failure is a pulse-off problem`, async () => {
      const parts = await build(model, { tag: "stirrer.speed", value: 0 }, { failHeld: true });
      const process = await parts.system.startRecipe(engineer, STIR_THEN_WAIT);
      await parts.scans(4);
      await parts.trip();
      expect(parts.system.machineState).toBe(FAULTED[model]);
      expect(parts.events).toEqual([
        "wrote stirrer.speed=50",
        "sent stirrer.speed=0",
        "wrote heater.setpoint=0",
        "wrote valve.h2o=false",
      ]);
      parts.release();
      await parts.scans(2);
      const result = await process.finished;
      expect(result.status).toBe("aborted");
      expect(result.problems).toMatchObject([{ stage: "pulse-off", tag: "stirrer.speed" }]);
      expect(
        parts.system.health().problems.some((problem) => problem.includes("pulse off write of stirrer.speed failed")),
      ).toBe(true);
      await parts.system.stop();
    });

    test(`${model} (sibling): a stop while a finished pulse's off write to a safe-state tag is stuck: the safe value waits for it and lands last`, async () => {
      const parts = await build(model, { tag: "heater.setpoint", value: 10 });
      const process = await parts.system.startRecipe(engineer, {
        name: "heat",
        version: 1,
        steps: [
          { pulse: { tag: "heater.setpoint", on: 300, off: 10, durationMs: 100 } },
          { wait: { durationMs: 5000 } },
        ],
      });
      await parts.scans(4);
      const stop = settled(parts.system.sendMachineCommand(admin, "stop"));
      await parts.scans(2);
      expect(stop.done).toBe(false);
      expect(parts.events.slice(2)).toEqual(["wrote valve.h2o=false"]);
      parts.release();
      await parts.scans(2);
      expect(stop).toMatchObject({ done: true, value: STOPPED[model] });
      expect(parts.values("heater.setpoint")).toEqual([300, 10, 0]);
      expect((await process.finished).status).toBe("aborted");
      await parts.system.stop();
    });
  }
});
