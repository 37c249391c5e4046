import { describe, expect, test } from "vitest";
import type { RecipeInput } from "../recipes/recipe-schema";
import { heldWriteSystem } from "../../test/support/held-write-system";
import { engineer } from "../../test/support/safety-harness";

// Adversarial review 15r, M2: a start right after an abort was refused "already running a
// process" while the machine was already idle, for as long as a step write the aborted process
// had sent (still on the wire) took to settle: an invisible reason. ADR 0042 (15s §3) said the
// next start waits for it. It now does, bounded; past the bound it is refused naming the write,
// and health() names the write meanwhile.

const HOLD: RecipeInput = {
  name: "hold",
  version: 1,
  steps: [{ set: { tag: "stirrer.speed", value: 40 } }, { wait: { durationMs: 60_000 } }],
};
const NEXT: RecipeInput = { name: "next", version: 1, steps: [{ set: { tag: "stirrer.speed", value: 10 } }] };

describe("a start after an abort waits for the aborted process's write in flight (review 15r, M2)", () => {
  test("(the example) idle machine, step write still on the wire: the start waits, then runs after it, in order", async () => {
    const parts = await heldWriteSystem("kiln", { tag: "stirrer.speed", value: 40 }, { timeoutMs: 10_000 });
    const { system } = parts;
    const first = await system.startRecipe(engineer, HOLD);
    await parts.scans(2);
    expect(parts.events).toEqual(["sent stirrer.speed=40"]);
    // Its answer (the process's result) waits for the write; the machine does not.
    const aborted = system.abortProcess(engineer);
    await parts.scans(1);
    expect(system.machineState).toBe("idle");
    // The write is named while the machine is idle and it has not settled.
    expect(system.health().problems).toEqual([
      expect.stringMatching(/^process .+ is ending: its write of stirrer\.speed sent before its abort has not settled/),
    ]);
    let outcome = "waiting";
    const next = system.startRecipe(engineer, NEXT).then(
      () => (outcome = "started"),
      (error: unknown) => (outcome = String(error)),
    );
    await parts.scans(4);
    expect(outcome).toBe("waiting");
    parts.release();
    await next;
    expect(outcome).toBe("started");
    await first.finished;
    await aborted;
    await parts.scans(4);
    expect(parts.values("stirrer.speed")).toEqual([40, 10]);
    expect(system.health().problems).toEqual([]);
    await system.stop();
  });

  test("(sibling) a write that never answers: the start waits for the driver's write timeout, then runs (the write is reported failed)", async () => {
    const parts = await heldWriteSystem("kiln", { tag: "stirrer.speed", value: 40 }, { timeoutMs: 2_000 });
    const { system } = parts;
    await system.startRecipe(engineer, HOLD);
    await parts.scans(2);
    const aborted = system.abortProcess(engineer);
    await parts.scans(1);
    expect(system.machineState).toBe("idle");
    let outcome = "waiting";
    const next = system.startRecipe(engineer, NEXT).then(
      () => (outcome = "started"),
      (error: unknown) => (outcome = String(error)),
    );
    await parts.scans(20);
    expect(outcome).toBe("waiting");
    await parts.scans(30);
    await next;
    expect(outcome).toBe("started");
    // The write gave up at the driver's timeout: a problem of the aborted process, not lost.
    expect((await aborted).problems).toEqual([
      expect.objectContaining({
        stage: "step-write",
        tag: "stirrer.speed",
        error: expect.objectContaining({ code: "KILN_TIMEOUT" }),
      }),
    ]);
    expect(parts.values("stirrer.speed")).toEqual([10]);
    parts.release();
    await system.stop();
  });
});
