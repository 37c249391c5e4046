import { describe, expect, test } from "vitest";
import { admin, hostile, sleep, TIMEOUT } from "../../test/support/late-landing-system";

// Adversarial review 15k (ADR 0042, amendment 15k). What a tag must end with is decided by the
// safe state's own writes, announced before they are deferred, never by the safe-state epoch
// alone: H1 a backlog of writes of the safe value made the per-tag bound refuse the fault's own
// safe write (device left hot); H2 a stop that wrote no safe state still counted as "a safe state
// in force", so an older value that landed late was never overwritten; M1 a safe write that
// failed after a late landing waited for it left the older value on the device.

describe("the safe state's own writes decide what a tag ends with (review 15k)", () => {
  test("H1: a backlog of writes at the bound, the safe value among them, cannot refuse the fault's safe write", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag) => tag === "heater.setpoint");
    for (let index = 0; index < 31; index++)
      await system.writeTag(admin, "heater.setpoint", 350).catch(() => undefined);
    await system.writeTag(admin, "heater.setpoint", 0).catch(() => undefined);
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    expect(parts.recorded.map((entry) => entry.reason ?? "").join("\n")).not.toContain("KILN_BUFFER_FULL");
    // The device answers the zeros first, then the stale 350s land one by one.
    const held = [...parts.held];
    for (const call of held.filter((call) => call.value === 0)) call.release();
    await sleep(5);
    for (const call of held.filter((call) => call.value !== 0)) {
      call.release();
      await sleep(1);
    }
    await sleep(TIMEOUT * 4);
    for (const call of parts.held.slice(held.length)) call.release(); // the re-write of 0
    await sleep(TIMEOUT * 4);
    expect(parts.values("heater.setpoint").at(-1)).toBe(0);
    await system.stop();
  });

  test("H2: a stop that only cancels a waiting start writes no safe state: an older value landing late is overwritten by the latest", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) => tag === "heater.setpoint" && value === 350);
    await system.writeTag(admin, "heater.setpoint", 350).catch(() => undefined);
    await system.writeTag(admin, "heater.setpoint", 100);
    // A start waits for its audit entry; the stop cancels it, with no process and no safe state to write.
    let releaseEntry!: () => void;
    const entryHeld = new Promise<void>((resolve) => (releaseEntry = resolve));
    parts.setAuditHold((entry) => (entry.action === "recipe.start" ? entryHeld : undefined));
    const start = system
      .startRecipe(admin, { name: "w", version: 1, steps: [{ wait: { durationMs: 60_000 } }] })
      .catch((error: unknown) => error);
    await sleep(10);
    await system.sendMachineCommand(admin, "stop").catch(() => undefined);
    parts.heldValue(350).release();
    await sleep(TIMEOUT * 4);
    releaseEntry();
    expect(await start).toMatchObject({ code: "KILN_ABORTED" });
    await sleep(TIMEOUT * 2);
    expect(parts.values("heater.setpoint")).toEqual([100, 350, 100]);
    expect(parts.problems()).not.toContain("until the safe state's write");
    await system.stop();
  });

  test("M1: the deferred safe write fails after an older value landed: the safe value is written again", async () => {
    const parts = await hostile();
    const { system } = parts;
    let refusals = 0;
    parts.setHold((tag, value) => {
      if (tag !== "heater.setpoint") return false;
      if (value === 0) return refusals++ === 0 ? new Error("device refused 0") : false;
      return value === 350;
    });
    await system.writeTag(admin, "heater.setpoint", 350).catch(() => undefined);
    const fault = system.sendMachineCommand(admin, "fault");
    // Within the safe write's wait for the given-up 350: the 350 lands, then the safe write is refused.
    await sleep(TIMEOUT / 3);
    parts.heldValue(350).release();
    await fault;
    await sleep(TIMEOUT * 3);
    expect(parts.values("heater.setpoint")).toEqual([350, 0]);
    expect(parts.problems()).not.toContain("nothing was written again yet");
    await system.stop();
  });

  test("(sibling M1) the safe write and its re-write both refused: health says writing again was tried and failed", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) =>
      tag !== "heater.setpoint" ? false : value === 0 ? new Error("device refused 0") : value === 350,
    );
    await system.writeTag(admin, "heater.setpoint", 350).catch(() => undefined);
    const fault = system.sendMachineCommand(admin, "fault");
    await sleep(TIMEOUT / 3);
    parts.heldValue(350).release();
    await fault;
    await sleep(TIMEOUT * 3);
    expect(parts.values("heater.setpoint")).toEqual([350]);
    expect(parts.problems()).toContain("heater.setpoint landed late and writing the tag's latest value again failed");
    await system.stop();
  });
});
