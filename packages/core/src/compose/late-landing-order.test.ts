import { describe, expect, test } from "vitest";
import { KilnError } from "../index";

// Adversarial review 15g: the late-landing mechanism (ADR 0042, amendments 15e/15f) only counted
// writes that succeeded within their timeout, so two given-up calls settling in reverse order
// left the device at the older value (H1), a late landing re-wrote a value older than a hung
// safe-state write (H2), a re-assert's failure was cleared by its own late settle (H3), a stop
// closed over calls still out (H4), a rejection after the request was sent counted as "did not
// land" (M1), a manual safe state refused by the device left no `:fail` (M2), and a process's
// late landing was not audited (M3). Real timers, small timeouts, a driver whose writes are held.

import { admin, hostile, sleep, TIMEOUT } from "../../test/support/late-landing-system";

describe("the device ends with the latest-issued write that may have landed (review 15g, H1/H2)", () => {
  test("H1: two given-up calls settle in reverse order (the safe 0 first, then the older 399): 0 is written again", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) => tag === "heater.setpoint" && (value === 399 || value === 0));
    expect(await system.writeTag(admin, "heater.setpoint", 399).catch((error: unknown) => error)).toMatchObject({
      code: "KILN_TIMEOUT",
    });
    const fault = system.sendMachineCommand(admin, "fault");
    await sleep(TIMEOUT * 3);
    expect(await fault).toBe("error");
    parts.setHold(() => false);
    parts.heldValue(0).release();
    await sleep(10);
    parts.heldValue(399).release();
    await sleep(TIMEOUT * 2);
    expect(parts.values("heater.setpoint")).toEqual([0, 399, 0]);
    const reasserts = (await parts.trail()).filter((entry) => entry.action === "tag.reassert");
    expect(reasserts).toMatchObject([
      { principal: "(system)", outcome: "allowed", newValue: { late: 399, reasserted: 0 } },
    ]);
    await system.stop();
  });

  test("(sibling) the older call fails at the device, the safe 0 lands late: nothing is written again", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) => tag === "heater.setpoint" && (value === 399 || value === 0));
    await system.writeTag(admin, "heater.setpoint", 399).catch(() => undefined);
    const fault = system.sendMachineCommand(admin, "fault");
    await sleep(TIMEOUT * 3);
    await fault;
    parts.setHold(() => false);
    parts.heldValue(399).release(false);
    await sleep(10);
    parts.heldValue(0).release();
    await sleep(TIMEOUT * 2);
    expect(parts.values("heater.setpoint")).toEqual([0]);
    expect((await parts.trail()).filter((entry) => entry.action === "tag.reassert")).toEqual([]);
    await system.stop();
  });

  test("H2: 399 given up, 200 written, the safe 0 hangs; 399 lands: 0 is written again, never 200", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) => tag === "heater.setpoint" && value === 399);
    await system.writeTag(admin, "heater.setpoint", 399).catch(() => undefined);
    await sleep(TIMEOUT); // the late wait of the tag
    await system.writeTag(admin, "heater.setpoint", 200);
    parts.setHold((tag, value) => tag === "heater.setpoint" && (value === 399 || value === 0));
    const fault = system.sendMachineCommand(admin, "fault");
    await sleep(TIMEOUT * 2);
    expect(await fault).toBe("error");
    parts.setHold(() => false);
    parts.heldValue(399).release();
    await sleep(TIMEOUT * 2);
    parts.heldValue(0).release();
    await sleep(TIMEOUT * 2);
    const values = parts.values("heater.setpoint");
    expect(values.slice(values.indexOf(200) + 1)).not.toContain(200);
    expect(values.at(-1)).toBe(0);
    const reasserts = (await parts.trail()).filter((entry) => entry.action === "tag.reassert");
    expect(reasserts.map((entry) => entry.newValue)).toEqual([{ late: 399, reasserted: 0 }]);
    await system.stop();
  });
});

describe("a failed re-assert stays named until a later write of the tag is confirmed (review 15g, H3)", () => {
  test("H3: the re-assert times out, then fails at the device: health still names it, and a reset does not clear it", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) => tag === "heater.setpoint" && value === 399);
    await system.writeTag(admin, "heater.setpoint", 399).catch(() => undefined);
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    await sleep(TIMEOUT * 2);
    parts.setHold((tag, value) => tag === "heater.setpoint" && value === 0);
    parts.heldValue(399).release();
    await sleep(TIMEOUT * 2);
    expect(parts.problems()).toContain("writing the tag's latest value again failed");
    parts.held.find((call) => call.value === 0)!.release(false);
    await sleep(20);
    expect(parts.problems()).toContain("writing the tag's latest value again failed");
    expect(system.health().status).not.toBe("ok");
    expect(await system.sendMachineCommand(admin, "reset")).toBe("idle");
    expect(parts.problems()).toContain("writing the tag's latest value again failed");
    // A later confirmed write of the tag resolves it.
    parts.setHold(() => false);
    await system.writeTag(admin, "heater.setpoint", 0);
    expect(parts.problems()).not.toContain("writing the tag's latest value again failed");
    await system.stop();
  });

  test("(sibling) the re-assert times out, then lands: no longer named", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) => tag === "heater.setpoint" && value === 399);
    await system.writeTag(admin, "heater.setpoint", 399).catch(() => undefined);
    await system.sendMachineCommand(admin, "fault");
    await sleep(TIMEOUT * 2);
    parts.setHold((tag, value) => tag === "heater.setpoint" && value === 0);
    parts.heldValue(399).release();
    await sleep(TIMEOUT * 2);
    expect(parts.problems()).toContain("writing the tag's latest value again failed");
    parts.held.find((call) => call.value === 0)!.release();
    await sleep(20);
    expect(parts.problems()).not.toContain("writing the tag's latest value again failed");
    expect(parts.values("heater.setpoint")).toEqual([0, 399, 0]);
    await system.stop();
  });
});

describe("stop waits, bounded, for driver calls still out (review 15g, H4)", () => {
  test("H4: a given-up write that lands while stop waits is audited `:landed`, not dropped as a refusal", async () => {
    const parts = await hostile();
    const { system } = parts;
    const drops: string[] = [];
    system.bus.on("audit-refusal-drop", (event) => void drops.push(event.id));
    parts.setHold((tag, value) => tag === "stirrer.speed" && value === 42);
    await system.writeTag(admin, "stirrer.speed", 42).catch(() => undefined);
    const stopping = system.stop();
    setTimeout(() => parts.heldValue(42).release(), TIMEOUT / 3);
    await stopping;
    expect(drops).toEqual([]);
    await system.start();
    const trail = await parts.trail();
    expect(trail.filter((entry) => entry.id.endsWith(":landed"))).toMatchObject([{ outcome: "allowed" }]);
    await system.stop();
  });

  test("(sibling) a call still out when the wait ends is recorded as the system's tag.unsettled (outcome unknown)", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) => tag === "stirrer.speed" && value === 42);
    await system.writeTag(admin, "stirrer.speed", 42).catch(() => undefined);
    await system.stop();
    parts.heldValue(42).release();
    await system.start();
    const unsettled = (await parts.trail()).filter((entry) => entry.action === "tag.unsettled");
    expect(unsettled).toMatchObject([{ principal: "(system)", target: "stirrer.speed", newValue: 42 }]);
    expect(unsettled[0]?.reason).toContain("outcome is unknown");
    await system.stop();
  });
});

describe("a driver call rejected after its request was sent may have landed (review 15g, M1)", () => {
  test("M1: KILN_ABORTED with details.sent true is `:landed` (may have reached the device), not `:lost`", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) => tag === "stirrer.speed" && value === 42);
    const write = system.writeTag(admin, "stirrer.speed", 42).catch((error: unknown) => error);
    await sleep(10);
    parts
      .heldValue(42)
      .release(new KilnError("KILN_ABORTED", "aborted after it was sent", { details: { sent: true } }));
    expect(await write).toMatchObject({ code: "KILN_ABORTED" });
    await sleep(20);
    const trail = await parts.trail();
    expect(trail.filter((entry) => entry.id.endsWith(":lost"))).toEqual([]);
    const landed = trail.filter((entry) => entry.id.endsWith(":landed"));
    expect(landed).toMatchObject([{ outcome: "allowed" }]);
    expect(landed[0]?.reason).toContain("may have reached the device");
    await system.stop();
  });

  test("(sibling) a rejection that says details.sent false is a plain failure: no follow-up entry", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) => tag === "stirrer.speed" && value === 42);
    const write = system.writeTag(admin, "stirrer.speed", 42).catch((error: unknown) => error);
    await sleep(10);
    parts.heldValue(42).release(new KilnError("KILN_ABORTED", "not sent", { details: { sent: false } }));
    expect(await write).toMatchObject({ code: "KILN_ABORTED" });
    await sleep(20);
    const trail = await parts.trail();
    expect(trail.filter((entry) => entry.id.endsWith(":landed") || entry.id.endsWith(":lost"))).toEqual([]);
    await system.stop();
  });
});

describe("a safe-state write the device refuses makes the command's `:fail` (review 15g, M2)", () => {
  test("M2: a manual fault with no process", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) => tag === "heater.setpoint" && value === 0);
    const fault = system.sendMachineCommand(admin, "fault");
    await sleep(10);
    parts.heldValue(0).release(false);
    expect(await fault).toBe("error");
    await sleep(20);
    const fails = (await parts.trail()).filter(
      (entry) => entry.action === "machine.fault" && entry.id.endsWith(":fail"),
    );
    expect(fails).toMatchObject([{ outcome: "failed", principal: "ada" }]);
    expect(fails[0]?.reason).toContain("heater.setpoint");
    await system.stop();
  });

  test("(sibling) abortProcess of a running process", async () => {
    const parts = await hostile();
    const { system } = parts;
    await system.startRecipe(admin, {
      name: "stir",
      version: 1,
      steps: [{ set: { tag: "stirrer.speed", value: 5 } }, { wait: { durationMs: 60_000 } }],
    });
    await sleep(20);
    parts.setHold((tag, value) => tag === "heater.setpoint" && value === 0);
    const abort = system.abortProcess(admin, "x");
    await sleep(10);
    parts.heldValue(0).release(false);
    await abort;
    await sleep(20);
    const fails = (await parts.trail()).filter(
      (entry) => entry.action === "recipe.abort" && entry.id.endsWith(":fail"),
    );
    expect(fails).toMatchObject([{ outcome: "failed" }]);
    await system.stop();
  });
});

describe("a process's write that lands late is audited and named (review 15g, M3; L2)", () => {
  test("M3: a step write outside the safe state lands after the machine faulted", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) => tag === "stirrer.speed" && value === 77);
    const started = await system.startRecipe(admin, {
      name: "stir",
      version: 1,
      steps: [{ set: { tag: "stirrer.speed", value: 77 } }, { wait: { durationMs: 60_000 } }],
    });
    await started.finished;
    parts.heldValue(77).release();
    await sleep(20);
    const entries = (await parts.trail()).filter((entry) => entry.action === "tag.late-landing");
    expect(entries).toMatchObject([
      {
        principal: "(system)",
        target: "stirrer.speed",
        newValue: { late: 77, processId: started.id, principal: "ada" },
      },
    ]);
    expect(parts.problems()).toContain("the device took stirrer.speed = 77");
    expect(await system.sendMachineCommand(admin, "reset")).toBe("idle");
    expect(parts.problems()).not.toContain("the device took stirrer.speed");
    await system.stop();
  });

  test("(sibling) the line goes once a later write of the tag is confirmed, without a reset", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) => tag === "stirrer.speed" && value === 77);
    const started = await system.startRecipe(admin, {
      name: "stir",
      version: 1,
      steps: [{ set: { tag: "stirrer.speed", value: 77 } }, { wait: { durationMs: 60_000 } }],
    });
    await started.finished;
    parts.heldValue(77).release();
    await sleep(20);
    expect(parts.problems()).toContain("the device took stirrer.speed = 77");
    await system.writeTag(admin, "stirrer.speed", 0);
    expect(parts.problems()).not.toContain("the device took stirrer.speed");
    await system.stop();
  });

  test("L2: health names at most five calls still out, then summarises", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag) => tag.startsWith("aux."));
    await Promise.all(
      Array.from({ length: 8 }, (_, index) => system.writeTag(admin, `aux.${index}`, 1).catch(() => undefined)),
    );
    const lines = system.health().problems.filter((line) => line.includes("still out at the device"));
    expect(lines).toHaveLength(6);
    expect(lines[5]).toContain("3 more given-up writes");
    for (const call of parts.held) call.release();
    await system.stop();
  });
});
