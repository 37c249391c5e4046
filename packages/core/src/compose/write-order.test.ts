import { describe, expect, test } from "vitest";
import type { RecipeInput } from "../recipes/recipe-schema";
import { heldWriteSystem as build } from "../../test/support/held-write-system";
import { admin, engineer, settled } from "../../test/support/safety-harness";

// Adversarial review 15s, M3: a stopped process's step write still in flight landed after later
// writes to the same tag (an operator's write after the stop: the PLC received [0, 50] and ended
// at 50), and a late failure of it was reported nowhere. The order of a tag's writes was kept per
// process only; now the system's write path keeps it for every writer.

const STOPPED = { kiln: "idle", packml: "stopped" } as const;
const STIR: RecipeInput = {
  name: "stir",
  version: 1,
  steps: [{ set: { tag: "stirrer.speed", value: 50 } }, { wait: { durationMs: 60_000 } }],
};

describe("writes to one tag land in the order they were made, by any writer (review 15s, M3)", () => {
  for (const model of ["kiln", "packml"] as const) {
    test(`${model} (the example): an operator's write after a stop lands after the stopped process's write in flight`, async () => {
      const parts = await build(model, { tag: "stirrer.speed", value: 50 });
      const { system } = parts;
      const process = await system.startRecipe(engineer, STIR);
      await parts.scans(2);
      expect(await system.sendMachineCommand(admin, "stop")).toBe(STOPPED[model]);
      const manual = settled(system.writeTag(engineer, "stirrer.speed", 0));
      await parts.scans(2);
      // Held behind the stopped process's write, not sent before it.
      expect(manual.done).toBe(false);
      expect(parts.values("stirrer.speed")).toEqual([]);
      parts.release();
      await parts.scans(2);
      expect(manual).toMatchObject({ done: true });
      expect(parts.values("stirrer.speed")).toEqual([50, 0]);
      expect(parts.plc.peek("stirrer.speed")).toBe(0);
      expect(await process.finished).toMatchObject({ status: "aborted", problems: [] });
      await system.stop();
    });

    test(`${model} (the example): the stopped process's write failing late is a step-write problem, named by health() until a later write of the tag`, async () => {
      const parts = await build(model, { tag: "stirrer.speed", value: 50 }, { failHeld: true });
      const { system } = parts;
      const process = await system.startRecipe(engineer, STIR);
      await parts.scans(2);
      expect(await system.sendMachineCommand(admin, "stop")).toBe(STOPPED[model]);
      const finished = settled(process.finished);
      await parts.scans(2);
      // The result waits for the write's outcome (it belongs in it); the stop did not.
      expect(finished.done).toBe(false);
      parts.release();
      await parts.scans(2);
      const result = await process.finished;
      expect(result.status).toBe("aborted");
      expect(result.problems).toMatchObject([{ stage: "step-write", tag: "stirrer.speed" }]);
      const named = (): string[] =>
        system.health().problems.filter((problem) => problem.includes("step write of stirrer.speed"));
      expect(named()).toEqual([expect.stringContaining("device refused the write")]);
      // A later write of the tag by a process clears it.
      await system.startRecipe(engineer, {
        name: "s",
        version: 1,
        steps: [{ set: { tag: "stirrer.speed", value: 5 } }],
      });
      await parts.scans(2);
      expect(named()).toEqual([]);
      await system.stop();
    });

    test(`${model} (sibling): a trip without a process while an operator's write to a safe-state tag is in flight: the safe value lands last, the other tag at once`, async () => {
      const parts = await build(model, { tag: "heater.setpoint", value: 300 });
      const { system } = parts;
      const manual = settled(system.writeTag(engineer, "heater.setpoint", 300));
      await parts.scans(1);
      await parts.trip();
      expect(parts.events).toEqual(["sent heater.setpoint=300", "wrote valve.h2o=false"]);
      parts.release();
      await parts.scans(2);
      expect(manual).toMatchObject({ done: true });
      expect(parts.values("heater.setpoint")).toEqual([300, 0]);
      expect(parts.plc.peek("heater.setpoint")).toBe(0);
      await system.stop();
    });

    test(`${model} (sibling): the next process starts once the stopped one's write in flight has settled, and its value lands last`, async () => {
      const parts = await build(model, { tag: "stirrer.speed", value: 50 });
      const { system } = parts;
      const first = await system.startRecipe(engineer, STIR);
      await parts.scans(2);
      await system.sendMachineCommand(admin, "stop");
      // The stopped process has not finished while its write is in flight (bounded by the write
      // timeout): the next start waits for it (review 15r, M2; it was refused before).
      let started = false;
      const next = system
        .startRecipe(engineer, { name: "b", version: 1, steps: [{ set: { tag: "stirrer.speed", value: 10 } }] })
        .then((process) => ((started = true), process));
      await parts.scans(2);
      expect(started).toBe(false);
      parts.release();
      await parts.scans(2);
      await first.finished;
      const second = await next;
      expect(await second.finished).toMatchObject({ status: "completed" });
      expect(parts.values("stirrer.speed")).toEqual([50, 10]);
      expect(parts.plc.peek("stirrer.speed")).toBe(10);
      await system.stop();
    });
  }
});
