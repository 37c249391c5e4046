import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { defineTags, type TagValue } from "../domain/tags";
import { CheckedTagWriter } from "./checked-write";
import { admin, hostile, sleep } from "../../test/support/late-landing-system";

// fix15s. adv15p M2: after a safe-state write failed, a machine reset cleared the health() line
// that named it although the device still held the old, unsafe value (nothing had written the safe
// value since). adv15q: each press of stop/fault/abort while a safe-state write failed queued a
// safe-state write of its own behind the one still out, and health() named the latest attempt,
// not what the device held.

const refused = (value: number) =>
  new KilnError("KILN_WRITE_REJECTED", `device refused ${value}`, { details: { sent: false } });

const NOT_CONFIRMED = "safe state not confirmed on heater.setpoint: last write failed KILN_WRITE_REJECTED";

/** A system whose fault's safe write of heater.setpoint = 0 was refused, the device holding 200. */
async function refusedFault() {
  const parts = await hostile();
  await parts.system.writeTag(admin, "heater.setpoint", 200);
  let refuse = true;
  parts.setHold((tag, value) => (tag === "heater.setpoint" && value === 0 && refuse ? refused(0) : false));
  expect(await parts.system.sendMachineCommand(admin, "fault")).toBe("error");
  await sleep(60);
  expect(parts.problems()).toContain(NOT_CONFIRMED);
  return { ...parts, stopRefusing: () => void (refuse = false) };
}

describe("a reset does not clear an unconfirmed safe state (fix15s, adv15p M2)", () => {
  test("the line stays after the reset, the reset's entry names the tag; a later write of the tag that lands clears it", async () => {
    const parts = await refusedFault();
    const { system } = parts;
    // Operators can still reset (decided, ADR 0042 fix15s)...
    expect(await system.sendMachineCommand(admin, "reset")).toBe("idle");
    await sleep(60);
    // ...but the device still holds 200: health keeps saying so (before: the line was gone).
    expect(parts.values("heater.setpoint")).toEqual([200]);
    expect(parts.problems()).toContain(NOT_CONFIRMED);
    expect(parts.problems()).toContain("safe-state write of heater.setpoint failed");
    expect(parts.problems()).toContain("the device last read back 200 (good)");
    expect(system.health().status).toBe("degraded");
    const reset = parts.recorded.find((entry) => entry.action === "machine.reset");
    expect(reset).toMatchObject({
      outcome: "allowed",
      newValue: { command: "reset", safeStateUnconfirmed: ["heater.setpoint"] },
    });
    // A deliberate write of the tag that lands is evidence: the device holds a known value now.
    parts.stopRefusing();
    await system.writeTag(admin, "heater.setpoint", 150);
    expect(parts.problems()).not.toContain("safe state not confirmed");
    await system.stop();
  });

  test("(sibling) a good read-back of the safe value clears the line with no write; another value does not", async () => {
    const parts = await refusedFault();
    const { system } = parts;
    await system.sendMachineCommand(admin, "reset");
    // Read back, but not the safe value: stays.
    parts.plc.set("heater.setpoint", 120);
    await sleep(80);
    expect(parts.problems()).toContain(NOT_CONFIRMED);
    expect(parts.problems()).toContain("the device last read back 120 (good)");
    // The device now reads 0 (set at its panel): the safe state is confirmed, nothing was written.
    parts.plc.set("heater.setpoint", 0);
    await sleep(80);
    expect(parts.problems()).not.toContain("safe state not confirmed");
    expect(parts.values("heater.setpoint")).toEqual([200]);
    await system.stop();
  });

  test("(sibling) a write that was refused again is no evidence: the line stays, naming the latest failure", async () => {
    const parts = await refusedFault();
    const { system } = parts;
    await system.sendMachineCommand(admin, "reset");
    await expect(system.writeTag(admin, "heater.setpoint", 0)).rejects.toMatchObject({ code: "KILN_WRITE_REJECTED" });
    expect(parts.problems()).toContain(NOT_CONFIRMED);
    await system.stop();
  });
});

describe("only a sample the device took after the failure confirms the safe state (fix15v, adv15u H1)", () => {
  test("an old sample of the safe value answered after the failure (a gateway cache, a redelivery) does not clear the line", async () => {
    const parts = await hostile();
    const { system } = parts;
    await sleep(60);
    // What the device read before the 200 write: 0, good, its own source timestamp.
    const old = parts.seen.filter((sample) => sample.tag === "heater.setpoint").at(-1)!;
    expect(old.value).toBe(0);
    await system.writeTag(admin, "heater.setpoint", 200);
    await sleep(60);
    parts.setHold((tag, value) => (tag === "heater.setpoint" && value === 0 ? refused(0) : false));
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    await sleep(60);
    expect(parts.problems()).toContain(NOT_CONFIRMED);
    // One read answers the old sample (before: the table restamped it with the receive time, and
    // that receipt stamp, after the failure, cleared the line while the device held 200).
    parts.inject(old);
    await sleep(80);
    expect(parts.problems()).toContain(NOT_CONFIRMED);
    // The re-drive still works: a stop writes the safe state again (refused, so a new :fail).
    expect(await system.sendMachineCommand(admin, "stop")).toBe("error");
    await sleep(40);
    expect(parts.problems()).toContain(NOT_CONFIRMED);
    // The device itself taking 0 (a local panel) is a new sample: it confirms.
    parts.plc.set("heater.setpoint", 0);
    await sleep(80);
    expect(parts.problems()).not.toContain("safe state not confirmed");
    await system.stop();
  });

  test("(sibling) a device clock far ahead: a replayed sample stamped after the failure by that clock does not clear; a new one does", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setClockAhead(3_600_000);
    await sleep(60);
    const old = parts.seen.filter((sample) => sample.tag === "heater.setpoint").at(-1)!;
    expect(old.value).toBe(0);
    expect(old.timestamp).toBeGreaterThan(Date.now() + 3_000_000);
    await system.writeTag(admin, "heater.setpoint", 200);
    await sleep(60);
    parts.setHold((tag, value) => (tag === "heater.setpoint" && value === 0 ? refused(0) : false));
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    await sleep(60);
    expect(parts.problems()).toContain(NOT_CONFIRMED);
    // Its source timestamp lies after the failure on the host's clock, but not after what the
    // device last delivered: it is old news, not a read-back.
    parts.inject(old);
    await sleep(80);
    expect(parts.problems()).toContain(NOT_CONFIRMED);
    parts.plc.set("heater.setpoint", 0);
    await sleep(80);
    expect(parts.problems()).not.toContain("safe state not confirmed");
    await system.stop();
  });
});

describe("concurrent re-drives join the safe-state write still waiting for its answer (fix15s, adv15q)", () => {
  test("a second press while the first's write is unanswered joins it: one call, both answered by its landing", async () => {
    const parts = await refusedFault();
    const { system } = parts;
    // The device now holds the safe write unanswered.
    parts.setHold((tag, value) => tag === "heater.setpoint" && value === 0);
    const first = system.sendMachineCommand(admin, "stop");
    await sleep(10);
    const second = system.sendMachineCommand(admin, "fault");
    await sleep(10);
    expect(parts.held.filter((call) => call.value === 0)).toHaveLength(1);
    parts.heldValue(0).release(true);
    // Before: the second press's write went out after the first landed, held again: unanswered.
    const answered = await Promise.race([Promise.all([first, second]), sleep(300).then(() => "pending" as const)]);
    expect(answered).toEqual(["error", "error"]);
    expect(parts.held.filter((call) => call.value === 0)).toHaveLength(1);
    expect(parts.values("heater.setpoint")).toEqual([200, 0]);
    expect(parts.problems()).not.toContain("safe state not confirmed");
    await sleep(20);
    // Each press has its own entry; the second says it joined.
    const joined = parts.recorded.filter((entry) => entry.id.endsWith(":joined"));
    expect(joined).toMatchObject([
      { action: "machine.fault", outcome: "allowed", reason: expect.stringContaining("heater.setpoint") },
    ]);
    const presses = parts.recorded.filter(
      (entry) =>
        (entry.action === "machine.stop" || entry.action === "machine.fault") && !/:(fail|joined)$/.test(entry.id),
    );
    expect(presses.map((entry) => [entry.action, entry.outcome])).toEqual([
      ["machine.fault", "allowed"],
      ["machine.stop", "allowed"],
      ["machine.fault", "allowed"],
    ]);
    await system.stop();
  });

  test("(sibling) the joined write is refused: both presses get a :fail, health names one failure; a press after the answer writes again", async () => {
    const parts = await refusedFault();
    const { system } = parts;
    parts.setHold((tag, value) => tag === "heater.setpoint" && value === 0);
    const first = system.sendMachineCommand(admin, "stop");
    await sleep(10);
    const second = system.sendMachineCommand(admin, "stop");
    await sleep(10);
    parts.heldValue(0).release(refused(0));
    expect(await Promise.all([first, second])).toEqual(["error", "error"]);
    await sleep(20);
    const fails = parts.recorded.filter((entry) => entry.action === "machine.stop" && entry.id.endsWith(":fail"));
    expect(fails).toHaveLength(2);
    for (const fail of fails) expect(fail.reason).toContain("KILN_WRITE_REJECTED");
    expect(system.health().problems.filter((line) => line.includes("safe state not confirmed"))).toHaveLength(1);
    // The write was answered: the next press writes again (a call of its own), and it lands.
    parts.setHold(() => false);
    const calls = parts.held.length;
    expect(await system.sendMachineCommand(admin, "stop")).toBe("error");
    expect(parts.held).toHaveLength(calls);
    expect(parts.values("heater.setpoint")).toEqual([200, 0]);
    expect(parts.problems()).not.toContain("safe state not confirmed");
    await system.stop();
  });
});

describe("the writer joins a safe-state write still waiting for its answer at any count (fix15s)", () => {
  /** A writer of `t` whose driver calls wait until the test answers them. */
  function answeredByTest() {
    const catalog = defineTags({ t: { dataType: "float64", access: "readwrite" } });
    const calls: { value: TagValue; answer: (error?: Error) => void }[] = [];
    const driver = {
      write: (_tag: unknown, value: TagValue) =>
        new Promise<void>((resolve, reject) =>
          calls.push({ value, answer: (error) => (error === undefined ? resolve() : reject(error)) }),
        ),
    };
    const writer = new CheckedTagWriter({
      tags: catalog,
      driver: driver as never,
      lifecycle: { state: "running" } as never,
    });
    const safeWrite = (value: TagValue) => {
      const reservation = writer.reserveSafeWrite("t", value);
      const joinable = reservation.joinable;
      const done = writer.write("t", value, undefined, { reservation }).then(
        () => "ok",
        (error: unknown) => error,
      );
      return { reservation, joinable, done };
    };
    return { writer, calls, safeWrite };
  }

  test("below the bound: a second safe write of the value joins the first (no call), a third after its answer writes again", async () => {
    const { calls, safeWrite } = answeredByTest();
    const first = safeWrite(0);
    const second = safeWrite(0);
    expect(first.joinable).toBe(false);
    expect(second.joinable).toBe(true);
    await sleep(1);
    expect(calls).toHaveLength(1);
    expect(second.reservation.joined).toBe(true);
    calls[0]!.answer(refused(0));
    expect(await first.done).toMatchObject({ code: "KILN_WRITE_REJECTED" });
    expect(await second.done).toMatchObject({ code: "KILN_WRITE_REJECTED" });
    // Answered: the next safe state writes again, with its own answer.
    const third = safeWrite(0);
    expect(third.joinable).toBe(false);
    await sleep(1);
    expect(calls).toHaveLength(2);
    calls[1]!.answer();
    expect(await third.done).toBe("ok");
    expect(third.reservation.joined).toBe(false);
  });

  test("(sibling) another value, or an ordinary write after the pending safe write, is never joined", async () => {
    const { writer, calls, safeWrite } = answeredByTest();
    const first = safeWrite(0);
    const other = safeWrite(5);
    expect(other.joinable).toBe(false);
    const operator = writer.write("t", 7).catch((error: unknown) => error);
    const again = safeWrite(0);
    // The latest pending write asks 7: the safe state must write 0 after it.
    expect(again.joinable).toBe(false);
    for (let round = 0; round < 4; round++) {
      await sleep(1);
      calls.at(-1)?.answer();
    }
    await Promise.all([first.done, other.done, operator, again.done]);
    expect(calls.map((call) => call.value)).toEqual([0, 5, 7, 0]);
  });
});
