import { describe, expect, test } from "vitest";
import type { RecipeInput } from "../recipes/recipe-schema";
import { heldWriteSystem } from "../../test/support/held-write-system";
import { engineer } from "../../test/support/safety-harness";

// Adversarial review 15r, M1: an interlock was evaluated on a current value whose quality was
// good but whose source timestamp had stopped advancing (the device stuck, a gateway serving a
// cached value): the repeats kept the tag "heard from", so it never went stale, and the
// permissive stayed true on a value of minutes ago. A good sample older than the tag's limit
// (the scan group's maxSourceAgeMs, here 150 ms = 3 scans) is now not permissive, and trips a
// running process.

const STIR: RecipeInput = { name: "stir", version: 1, steps: [{ set: { tag: "stirrer.speed", value: 40 } }] };
const LONG: RecipeInput = {
  name: "long",
  version: 1,
  steps: [{ set: { tag: "stirrer.speed", value: 40 } }, { wait: { durationMs: 60_000 } }],
};

/** A held-write system whose pressure's source timestamp the test can freeze (the value stays as read). */
async function build(model: "kiln" | "packml", scanGroup: { maxSourceAgeMs?: number } = { maxSourceAgeMs: 150 }) {
  const parts = await heldWriteSystem(model, { tag: "none", value: -1 }, { scanGroup });
  const frozen: { at?: number } = {};
  const read = parts.plc.read.bind(parts.plc);
  parts.plc.read = async (tags, signal) =>
    (await read(tags, signal)).map((sample) =>
      sample.tag === "chamber.pressure" && frozen.at !== undefined ? { ...sample, timestamp: frozen.at } : sample,
    );
  return { ...parts, frozen };
}

describe("an interlock does not trust a good value whose source timestamp stopped (review 15r, M1)", () => {
  for (const model of ["kiln", "packml"] as const) {
    test(`${model} (the example): a frozen source timestamp refuses a start, naming the tag and its age; a fresh one permits it`, async () => {
      const parts = await build(model);
      const { system, clock } = parts;
      await parts.scans(2);
      parts.frozen.at = clock.now();
      await parts.scans(10);
      const refused = system.startRecipe(engineer, STIR);
      await expect(refused).rejects.toMatchObject({
        code: "KILN_INVALID_TRANSITION",
        details: {
          holds: [
            {
              id: "chamber.pressure:HIHI",
              reason: expect.stringMatching(
                /^stale: tag chamber\.pressure source timestamp \d+ ms old \(max 150 ms\)$/,
              ),
            },
          ],
        },
      });
      expect(parts.values("stirrer.speed")).toEqual([]);
      expect(system.health().problems.filter((problem) => problem.includes("interlock chamber.pressure:HIHI"))).toEqual(
        [expect.stringContaining("stale: tag chamber.pressure source timestamp")],
      );
      // Sibling: once the timestamp advances again the interlock is permissive.
      parts.frozen.at = undefined;
      await parts.scans(2);
      const process = await system.startRecipe(engineer, STIR);
      await process.finished;
      expect(parts.values("stirrer.speed")).toEqual([40]);
      await system.stop();
    });

    test(`${model} (sibling): a frozen source timestamp while a process runs trips it: safe state written, machine faulted, audited`, async () => {
      const parts = await build(model);
      const { system, clock } = parts;
      await parts.scans(2);
      const from = clock.now();
      const process = await system.startRecipe(engineer, LONG);
      await parts.scans(2);
      parts.frozen.at = clock.now();
      await parts.scans(10);
      expect(system.machineState).toBe(model === "kiln" ? "error" : "aborted");
      expect(await process.finished).toMatchObject({
        status: "aborted",
        reason: expect.stringContaining("stale: tag chamber.pressure"),
      });
      expect(parts.values("heater.setpoint")).toEqual([0]);
      expect(parts.values("valve.h2o")).toEqual([false]);
      const trips = (await system.history.audit.query({ from, to: clock.now() + 1 })).filter(
        (entry) => entry.action === "machine.trip",
      );
      expect(trips).toHaveLength(1);
      expect(trips[0]!.reason).toContain("stale: tag chamber.pressure source timestamp");
      await system.stop();
    });
  }

  test("(sibling) without maxSourceAgeMs (the default) a steady source timestamp holds nothing", async () => {
    const parts = await build("kiln", {});
    const { system, clock } = parts;
    await parts.scans(2);
    parts.frozen.at = clock.now();
    await parts.scans(10);
    const process = await system.startRecipe(engineer, STIR);
    await process.finished;
    expect(parts.values("stirrer.speed")).toEqual([40]);
    await system.stop();
  });
});
