import { describe, expect, test } from "vitest";
import { admin, hostile, sleep, TIMEOUT } from "../../test/support/late-landing-system";

// Adversarial review 15j (ADR 0042, amendment 15j), M2: a process that failed on its own (a step
// failed) left no audit entry, only health and the process record. It is now the system's
// `recipe.fail` entry naming the process, its recipe, who started it and why.

describe("a process that fails on its own is audited (review 15j, M2)", () => {
  test("M2: a step write the device refuses fails the process: one recipe.fail entry naming recipe, starter and reason", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) => (tag === "stirrer.speed" && value === 77 ? new Error("device refused 77") : false));
    const started = await system.startRecipe(admin, {
      name: "stir",
      version: 3,
      steps: [{ set: { tag: "stirrer.speed", value: 77 } }, { wait: { durationMs: 60_000 } }],
    });
    expect((await started.finished).status).toBe("failed");
    await sleep(TIMEOUT);
    const fails = parts.recorded.filter((entry) => entry.action === "recipe.fail" && !entry.id.includes(":"));
    expect(fails).toMatchObject([
      {
        principal: "(system)",
        outcome: "allowed",
        newValue: { processId: started.id, recipe: { name: "stir", version: 3 }, startedBy: { id: "ada" } },
      },
    ]);
    expect(fails[0]?.reason).toContain("device refused 77");
    expect(fails[0]?.reason).toContain("started by ada");
    // Not also a :fail: its safe state was written.
    expect(parts.recorded.filter((entry) => entry.id === `${fails[0]?.id}:fail`)).toEqual([]);
    await system.stop();
  });

  test("(sibling) it fails and its safe-state write is refused too: the entry's :fail names the safe-state problem; an abort adds no recipe.fail", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) =>
      (tag === "stirrer.speed" && value === 77) || (tag === "heater.setpoint" && value === 0)
        ? new Error("device refused")
        : false,
    );
    const started = await system.startRecipe(admin, {
      name: "stir",
      version: 1,
      steps: [{ set: { tag: "stirrer.speed", value: 77 } }],
    });
    await started.finished;
    await sleep(TIMEOUT);
    const fail = parts.recorded.find((entry) => entry.action === "recipe.fail")!;
    expect(parts.recorded.filter((entry) => entry.id === `${fail.id}:fail`)).toMatchObject([
      { outcome: "failed", reason: expect.stringContaining("safe-state heater.setpoint") },
    ]);
    // An abort is its command's entry, not a recipe.fail.
    expect(await system.sendMachineCommand(admin, "reset")).toBe("idle");
    parts.setHold(() => false);
    await system.startRecipe(admin, { name: "wait", version: 1, steps: [{ wait: { durationMs: 60_000 } }] });
    await system.abortProcess(admin, "enough");
    await sleep(TIMEOUT);
    expect(parts.recorded.filter((entry) => entry.action === "recipe.fail" && !entry.id.includes(":"))).toHaveLength(1);
    await system.stop();
  });
});
