import { describe, expect, test } from "vitest";
import type { Principal } from "../index";
import { admin, hostile, sleep, TIMEOUT } from "../../test/support/late-landing-system";

// Adversarial review 15j (ADR 0042, amendment 15j). M3: a refused pulse-off on a manual stop,
// fault or abort recorded no `:fail` for the command (only problems of stage "safe-state" were
// kept; a trip kept all). M4: with two concurrent faults the first `:fail` won, so a command
// answered KILN_INVALID_TRANSITION read in the audit as failed in the other's way only.

const PULSE = {
  name: "pulse",
  version: 1,
  steps: [{ pulse: { tag: "stirrer.speed", on: 50, off: 0, durationMs: 60_000 } }],
};

describe("every safe-state path records the same problems in its command's :fail (review 15j, M3)", () => {
  for (const command of ["stop", "fault"] as const) {
    test(`M3: a manual ${command} whose pulse-off write the device refuses records a :fail naming it`, async () => {
      const parts = await hostile();
      const { system } = parts;
      parts.setHold((tag, value) => (tag === "stirrer.speed" && value === 0 ? new Error("device refused off") : false));
      await system.startRecipe(admin, PULSE);
      await sleep(20);
      await system.sendMachineCommand(admin, command);
      await sleep(TIMEOUT);
      const fails = parts.recorded.filter(
        (entry) => entry.action === `machine.${command}` && entry.id.endsWith(":fail"),
      );
      expect(fails).toMatchObject([{ outcome: "failed", reason: expect.stringContaining("pulse-off stirrer.speed") }]);
      await system.stop();
    });
  }

  test("(sibling) abortProcess whose pulse-off write the device refuses records a :fail naming it", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) => (tag === "stirrer.speed" && value === 0 ? new Error("device refused off") : false));
    await system.startRecipe(admin, PULSE);
    await sleep(20);
    await system.abortProcess(admin, "x");
    await sleep(TIMEOUT);
    const fails = parts.recorded.filter((entry) => entry.action === "recipe.abort" && entry.id.endsWith(":fail"));
    expect(fails).toMatchObject([{ outcome: "failed", reason: expect.stringContaining("pulse-off stirrer.speed") }]);
    await system.stop();
  });
});

describe("each command's entries tell what happened to it (review 15j, M4)", () => {
  test("M4: two concurrent faults, safe write refused: the one answered KILN_INVALID_TRANSITION says so in its :fail", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) =>
      tag === "heater.setpoint" && value === 0 ? new Error("device refused safe write") : false,
    );
    const bob: Principal = { id: "bob", roles: ["admin"] };
    const results = await Promise.allSettled([
      system.sendMachineCommand(admin, "fault"),
      system.sendMachineCommand(bob, "fault"),
    ]);
    await sleep(TIMEOUT);
    const refused = results.findIndex((result) => result.status === "rejected");
    expect(refused).toBeGreaterThanOrEqual(0);
    expect((results[refused] as PromiseRejectedResult).reason).toMatchObject({ code: "KILN_INVALID_TRANSITION" });
    const who = refused === 0 ? "ada" : "bob";
    const intent = parts.recorded.find(
      (entry) =>
        entry.action === "machine.fault" &&
        !entry.id.includes(":") &&
        (entry as { principal?: string }).principal === who,
    )!;
    const fails = parts.recorded.filter((entry) => entry.id === `${intent.id}:fail`);
    expect(fails).toHaveLength(1);
    // Its own safe-state write failed, and its fault was not sent: both said, in that order.
    expect(fails[0]?.reason).toMatch(/safe-state heater\.setpoint.*KILN_INVALID_TRANSITION/s);
    const other = parts.recorded.filter((entry) => entry.id.endsWith(":fail") && entry.id !== `${intent.id}:fail`);
    expect(other).toHaveLength(1);
    expect(other[0]?.reason).not.toContain("KILN_INVALID_TRANSITION");
    await system.stop();
  });

  test("(sibling) two concurrent faults, safe write fine: the refused one's :fail is denied, naming KILN_INVALID_TRANSITION only", async () => {
    const parts = await hostile();
    const { system } = parts;
    const bob: Principal = { id: "bob", roles: ["admin"] };
    const results = await Promise.allSettled([
      system.sendMachineCommand(admin, "fault"),
      system.sendMachineCommand(bob, "fault"),
    ]);
    await sleep(TIMEOUT);
    const fails = parts.recorded.filter((entry) => entry.id.endsWith(":fail"));
    expect(fails).toHaveLength(results.filter((result) => result.status === "rejected").length);
    for (const entry of fails) {
      expect(entry.outcome).toBe("denied");
      expect(entry.reason).toContain("KILN_INVALID_TRANSITION");
      expect(entry.reason).not.toContain("safe-state");
    }
    await system.stop();
  });
});
