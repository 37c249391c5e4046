import { describe, expect, test } from "vitest";
import type { RecipeInput } from "../recipes/recipe-schema";
import { heldWriteSystem } from "../../test/support/held-write-system";
import { engineer } from "../../test/support/safety-harness";

// Adversarial review 15e (LOW, earlier): a recipe's waitUntil took any good sample, so a tag whose
// source had stopped advancing (the device stuck, a gateway serving a cached value) met its
// condition with a value of minutes ago, while the interlocks refused to trust the same sample.
// waitUntil now follows the same source-age rule (the scan group's maxSourceAgeMs).

const WAIT: RecipeInput = {
  name: "wait-low",
  version: 1,
  steps: [{ waitUntil: { condition: { tag: "stirrer.speed", op: "<", value: 50 }, timeoutMs: 500 } }],
};

/** A held-write system (limit 150 ms) whose stirrer.speed source timestamp the test can freeze. */
async function build(scanGroup: { maxSourceAgeMs?: number } = { maxSourceAgeMs: 150 }) {
  const device: { frozenAt?: number } = {};
  const parts = await heldWriteSystem(
    "kiln",
    { tag: "none", value: -1 },
    {
      scanGroup,
      mapRead: (sample) =>
        sample.tag === "stirrer.speed" && device.frozenAt !== undefined
          ? { ...sample, timestamp: device.frozenAt }
          : sample,
    },
  );
  return { ...parts, device };
}

describe("a waitUntil is not met by a stale value (review 15e)", () => {
  test("(the example) the tag's source frozen past maxSourceAgeMs: the condition's good-looking value does not meet it; the step times out", async () => {
    const parts = await build();
    const { system, clock } = parts;
    await parts.scans(2);
    expect(system.cvt.get("stirrer.speed")).toMatchObject({ quality: { severity: "good" } });
    parts.device.frozenAt = clock.now();
    await parts.scans(6);
    const process = await system.startRecipe(engineer, WAIT);
    await parts.scans(12);
    expect(await process.finished).toMatchObject({ status: "failed", reason: expect.stringContaining("KILN_TIMEOUT") });
    await system.stop();
  });

  test("(sibling) the source advances again while waiting: the condition is met then", async () => {
    const parts = await build();
    const { system, clock } = parts;
    await parts.scans(2);
    parts.device.frozenAt = clock.now();
    await parts.scans(6);
    const process = await system.startRecipe(engineer, WAIT);
    await parts.scans(2);
    expect(process.status).toBe("running");
    parts.device.frozenAt = undefined;
    await parts.scans(3);
    expect(await process.finished).toMatchObject({ status: "completed" });
    await system.stop();
  });

  test("(sibling) a fresh source meets it at once; without maxSourceAgeMs a frozen one does too", async () => {
    const fresh = await build();
    await fresh.scans(2);
    const first = await fresh.system.startRecipe(engineer, WAIT);
    await fresh.scans(1);
    expect(await first.finished).toMatchObject({ status: "completed" });
    await fresh.system.stop();
    const unlimited = await build({});
    await unlimited.scans(2);
    unlimited.device.frozenAt = unlimited.clock.now();
    await unlimited.scans(6);
    const second = await unlimited.system.startRecipe(engineer, WAIT);
    await unlimited.scans(1);
    expect(await second.finished).toMatchObject({ status: "completed" });
    await unlimited.system.stop();
  });
});
