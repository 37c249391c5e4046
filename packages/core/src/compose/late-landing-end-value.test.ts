import { describe, expect, test } from "vitest";
import { admin, hostile, sleep, TIMEOUT } from "../../test/support/late-landing-system";

// Adversarial review 15j (ADR 0042, amendment 15j). M1: a tag outside the safe state whose newest
// write was issued before a fault was not written again when an older write landed late after
// the fault (the epoch rule of 15h assumed the safe state writes every tag): the valve stayed
// open, and health said "writing again failed" though nothing was tried. The rule now: a tag must
// end with the safe-state value when the safe state in force writes it, else with its
// latest-issued value; a late landing of anything else is followed by a write of that value.

describe("a tag ends with what it must end with (review 15j, M1)", () => {
  test("M1: outside the safe state, an older 'on' lands late after a fault: the newer 'off' is written again", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) => tag === "stirrer.speed" && value === 50);
    // A pulse by hand: on (given up at its timeout, still out), then off (lands).
    expect(await system.writeTag(admin, "stirrer.speed", 50).catch((error: unknown) => error)).toMatchObject({
      code: "KILN_TIMEOUT",
    });
    await system.writeTag(admin, "stirrer.speed", 0);
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    parts.heldValue(50).release(); // the old "on" lands after the fault
    await sleep(TIMEOUT * 2);
    expect(parts.values("stirrer.speed")).toEqual([0, 50, 0]);
    const reasserts = parts.recorded.filter((entry) => entry.action === "tag.reassert");
    expect(reasserts).toMatchObject([{ outcome: "allowed", newValue: { late: 50, reasserted: 0 } }]);
    // Nothing failed, so health does not say so.
    expect(parts.problems()).not.toContain("again failed");
    expect(parts.problems()).not.toContain("stirrer.speed");
    await system.stop();
  });

  test("(sibling) one fault, two tags landing late: the safe-state tag ends at its safe value, the other at its latest value", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold(
      (tag, value) => (tag === "stirrer.speed" && value === 80) || (tag === "heater.setpoint" && value === 399),
    );
    await system.writeTag(admin, "stirrer.speed", 80).catch(() => undefined);
    await system.writeTag(admin, "heater.setpoint", 399).catch(() => undefined);
    await system.writeTag(admin, "stirrer.speed", 10);
    await system.writeTag(admin, "heater.setpoint", 200);
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    parts.heldValue(80).release();
    parts.heldValue(399).release();
    await sleep(TIMEOUT * 2);
    expect(parts.values("stirrer.speed").at(-1)).toBe(10);
    expect(parts.values("heater.setpoint").at(-1)).toBe(0);
    expect(parts.values("heater.setpoint").slice(parts.values("heater.setpoint").indexOf(399))).not.toContain(200);
    expect(parts.problems()).not.toContain("again failed");
    await system.stop();
  });

  test("(sibling) the re-write itself is refused by the device: health says writing again was tried and failed", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) => tag === "stirrer.speed" && value === 50);
    await system.writeTag(admin, "stirrer.speed", 50).catch(() => undefined);
    await system.writeTag(admin, "stirrer.speed", 0);
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    parts.setHold((tag, value) => (tag === "stirrer.speed" && value === 0 ? new Error("device refused") : false));
    parts.heldValue(50).release();
    await sleep(TIMEOUT * 2);
    expect(parts.problems()).toContain("writing the tag's latest value again failed");
    await system.stop();
  });
});
