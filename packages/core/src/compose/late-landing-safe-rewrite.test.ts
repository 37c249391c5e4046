import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { defineTags, type TagValue } from "../domain/tags";
import { CheckedTagWriter, type DeviceOutcome } from "./checked-write";
import { admin, hostile, sleep, TIMEOUT } from "../../test/support/late-landing-system";

// Adversarial review 15m (ADR 0042, amendment 15n). H1: past the per-tag bound, a fault's safe
// write joined an earlier safe write of the same value that had already been answered (given up
// at its timeout): nothing was sent, the fault's `:fail` repeated the old KILN_TIMEOUT, and the
// device kept its old value. A safe state asked for again must write again once the last one
// failed or was given up; it joins only a safe write still waiting for its answer.

/** 32 writes of 250 the device never answers: the tag's bound of calls out (maxCallsOutPerTag) is reached. */
async function atTheBound(parts: Awaited<ReturnType<typeof hostile>>): Promise<void> {
  for (let index = 0; index < 32; index++)
    await parts.system.writeTag(admin, "heater.setpoint", 250).catch(() => undefined);
}

/** The faults' `:fail` entries (the operator writes that timed out have their own). */
const failsOf = (parts: Awaited<ReturnType<typeof hostile>>) =>
  parts.recorded.filter((entry) => entry.action === "machine.fault" && entry.id.endsWith(":fail"));

describe("a safe state asked for again writes again (review 15m, H1)", () => {
  test("H1: the first fault's safe write timed out; a second fault writes the safe value again and the device ends safe", async () => {
    const parts = await hostile();
    const { system } = parts;
    await system.writeTag(admin, "heater.setpoint", 200);
    let holdSafe = true;
    parts.setHold((tag, value) => tag === "heater.setpoint" && (value !== 0 || holdSafe));
    await atTheBound(parts);
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    await sleep(20); // its :fail is stored after it answers
    expect(failsOf(parts)).toHaveLength(1);
    expect(failsOf(parts)[0]!.reason).toContain("KILN_TIMEOUT");
    await system.sendMachineCommand(admin, "reset");
    holdSafe = false;
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    // The device refuses every call it held (the first safe write among them): nothing of them landed.
    for (const call of parts.held.splice(0)) call.release(false);
    await sleep(TIMEOUT * 3);
    // Before: the second fault joined the given-up write (its :fail repeating KILN_TIMEOUT), the device stayed at 200.
    expect(parts.values("heater.setpoint")).toEqual([200, 0]);
    expect(failsOf(parts)).toHaveLength(1);
    await system.stop();
  });

  test("(sibling) the second fault's safe write hangs too: it is a new call at the device, its :fail its own", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag) => tag === "heater.setpoint");
    await atTheBound(parts);
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    await system.sendMachineCommand(admin, "reset");
    const before = parts.held.filter((call) => call.value === 0).length;
    expect(before).toBe(1);
    const asked = Date.now();
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    // A second driver call of 0 was made, and the second fault waited for its own answer (the
    // write timeout), not answered at once with the first one's error.
    expect(parts.held.filter((call) => call.value === 0)).toHaveLength(2);
    expect(Date.now() - asked).toBeGreaterThanOrEqual(TIMEOUT - 5);
    await sleep(20);
    const fails = failsOf(parts);
    expect(fails).toHaveLength(2);
    expect(fails[1]!.reason).toContain("KILN_TIMEOUT");
    for (const call of parts.held.splice(0)) call.release(false);
    await system.stop();
  });

  test("(sibling) a safe write the device refused, then a second fault: the safe value is written and lands", async () => {
    const parts = await hostile();
    const { system } = parts;
    await system.writeTag(admin, "heater.setpoint", 200);
    let refuse = true;
    parts.setHold((tag, value) =>
      tag !== "heater.setpoint"
        ? false
        : value === 0
          ? refuse
            ? new KilnError("KILN_WRITE_REJECTED", "device refused 0", { details: { sent: false } })
            : false
          : true,
    );
    await atTheBound(parts);
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    await sleep(20);
    expect(failsOf(parts)[0]!.reason).toContain("device refused 0");
    await system.sendMachineCommand(admin, "reset");
    refuse = false;
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    for (const call of parts.held.splice(0)) call.release(false);
    await sleep(TIMEOUT * 3);
    expect(parts.values("heater.setpoint")).toEqual([200, 0]);
    expect(failsOf(parts)).toHaveLength(1);
    await system.stop();
  });
});

/**
 * A writer of one tag `t` whose driver calls the test answers: `answer(value)` gives each call's
 * result (what the write is answered with) and device outcome (what became of the call).
 */
function writerOf(answer: (value: TagValue) => { result: Promise<void>; device: Promise<DeviceOutcome> }) {
  const catalog = defineTags({ t: { dataType: "float64", access: "readwrite" } });
  const calls: TagValue[] = [];
  const driver = {
    write: () => Promise.resolve(),
    writeTracked: (_tag: unknown, value: TagValue) => {
      calls.push(value);
      const answered = answer(value);
      answered.result.catch(() => undefined);
      return answered;
    },
  };
  const writer = new CheckedTagWriter({
    tags: catalog,
    driver: driver as never,
    lifecycle: { state: "running" } as never,
    clock: { now: () => Date.now(), sleep: () => Promise.resolve() },
    lateWriteWaitMs: 1,
  });
  /** The safe state's own write of `value` (announced, then made). */
  const safeWrite = (value: TagValue): Promise<unknown> =>
    writer.write("t", value, undefined, { reservation: writer.reserveSafeWrite("t", value) }).then(
      () => "ok",
      (error: unknown) => error,
    );
  return { writer, calls, safeWrite };
}

/** A call given up at once (KILN_TIMEOUT) whose device call never settles. */
const hung = () => ({
  result: Promise.reject(new KilnError("KILN_TIMEOUT", "given up")),
  device: new Promise<never>(() => undefined),
});

describe("the safe state's write joins only a write still waiting for its answer (review 15m, H1)", () => {
  test("H1: past the bound, a safe write given up at its timeout: the next safe write of that value is sent, with its own answer", async () => {
    const { writer, calls, safeWrite } = writerOf(hung);
    for (let index = 0; index < 32; index++) await writer.write("t", 250).catch(() => undefined);
    const first = await safeWrite(0);
    expect(first).toMatchObject({ code: "KILN_TIMEOUT" });
    const second = await safeWrite(0);
    // Before: it joined the given-up write: no call, answered with that write's very error.
    expect(calls.filter((value) => value === 0)).toHaveLength(2);
    expect(second).toMatchObject({ code: "KILN_TIMEOUT" });
    expect(second).not.toBe(first);
  });

  test("(sibling) a safe write still waiting for its answer is joined: no second call, both answered by it", async () => {
    const answers: (() => void)[] = [];
    const { writer, calls, safeWrite } = writerOf((value) => {
      if (value !== 0) return hung();
      let land!: () => void;
      const device = new Promise<DeviceOutcome>((resolve) => (land = () => resolve("landed")));
      answers.push(land);
      return { result: device.then(() => undefined), device };
    });
    for (let index = 0; index < 32; index++) await writer.write("t", 250).catch(() => undefined);
    const first = safeWrite(0);
    await sleep(5);
    const second = safeWrite(0);
    await sleep(5);
    expect(calls.filter((value) => value === 0)).toHaveLength(1);
    answers[0]!();
    expect(await first).toBe("ok");
    expect(await second).toBe("ok");
  });

  test("(bound) a device that never answers: past the bound, at most maxCallsOutPerTag more safe writes of the tag, then refused KILN_BUFFER_FULL naming the tag and rule", async () => {
    const { writer, calls, safeWrite } = writerOf(hung);
    for (let index = 0; index < 32; index++) await writer.write("t", 250).catch(() => undefined);
    const answers: unknown[] = [];
    for (let index = 0; index < 200; index++) answers.push(await safeWrite(0));
    expect(calls.filter((value) => value === 0)).toHaveLength(32);
    expect(writer.lateCalls()).toHaveLength(64);
    expect(answers.at(-1)).toMatchObject({
      code: "KILN_BUFFER_FULL",
      details: { tag: "t", rule: "maxCallsOutPerTag", limit: 32, safeState: true },
    });
  });
});

describe("failed safe writes do not pile up in the tag's ledger (review 15m, M3)", () => {
  /** A writer whose first call of `t` never settles and whose device refuses every later call. */
  const behindHung = () => {
    let first = true;
    return writerOf(() => {
      if (first) {
        first = false;
        return hung();
      }
      return {
        result: Promise.reject(new KilnError("KILN_WRITE_REJECTED", "refused", { details: { sent: false } })),
        device: Promise.resolve("failed" as const),
      };
    });
  };

  test("M3: 200 faults whose safe write the device refuses, behind a call that never settles: the ledger stays bounded", async () => {
    const { writer, safeWrite } = behindHung();
    await writer.write("t", 350).catch(() => undefined);
    for (let index = 0; index < 200; index++) expect(await safeWrite(0)).toMatchObject({ code: "KILN_WRITE_REJECTED" });
    // The hung call and the latest failed safe write: what the tag must end with (before: 201 entries).
    expect(writer.ledgerSize("t")).toBe(2);
  });

  test("(sibling) safe writes announced and withdrawn (never made) do not pile up either", async () => {
    const { writer } = behindHung();
    await writer.write("t", 350).catch(() => undefined);
    for (let index = 0; index < 200; index++) writer.reserveSafeWrite("t", 0).release();
    expect(writer.ledgerSize("t")).toBe(2);
  });

  test("(sibling) what is kept still decides: after 200 refused safe writes the hung 350 lands, and 0 is written again", async () => {
    let land!: () => void;
    let first = true;
    const { writer, calls, safeWrite } = writerOf(() => {
      if (first) {
        first = false;
        const device = new Promise<DeviceOutcome>((resolve) => (land = () => resolve("landed")));
        return { result: Promise.reject(new KilnError("KILN_TIMEOUT", "given up")), device };
      }
      return calls.length > 201
        ? { result: Promise.resolve(), device: Promise.resolve("landed" as const) }
        : {
            result: Promise.reject(new KilnError("KILN_WRITE_REJECTED", "refused", { details: { sent: false } })),
            device: Promise.resolve("failed" as const),
          };
    });
    await writer.write("t", 350).catch(() => undefined);
    for (let index = 0; index < 200; index++) await safeWrite(0);
    land();
    await sleep(20);
    expect(calls.at(-1)).toBe(0);
    expect(calls).toHaveLength(202);
    expect(writer.ledgerSize("t")).toBe(0);
  });
});

// Review 15m, LOW: a fault answered with the machine's faulted state although its safe write was
// refused. Kept (a rejection would say the fault did not act, and it did: the machine is
// faulted); what the answer means is documented (`sendMachineCommand`) and pinned here: the
// refusal is in the command's `:fail`, in health until the tag is written safe, never hidden.
describe("a stop or fault whose safe write was refused answers its state and tells the refusal elsewhere (review 15m, LOW)", () => {
  test("the fault resolves the faulted state; its :fail and health() name the refused safe write, a reset included, until the tag is written safe", async () => {
    const parts = await hostile();
    const { system } = parts;
    // The heater is on (the device reads back 200): a refused safe write leaves it there.
    await system.writeTag(admin, "heater.setpoint", 200);
    let refuse = true;
    parts.setHold((tag, value) =>
      tag === "heater.setpoint" && value === 0 && refuse
        ? new KilnError("KILN_WRITE_REJECTED", "device refused 0", { details: { sent: false } })
        : false,
    );
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    await sleep(20);
    expect(failsOf(parts)).toMatchObject([
      { outcome: "failed", reason: expect.stringContaining("safe-state heater.setpoint: KILN_WRITE_REJECTED") },
    ]);
    expect(parts.problems()).toContain("safe-state write of heater.setpoint failed");
    // A reset does not clear it: nothing wrote the safe value since (fix15s, adv15p M2).
    await system.sendMachineCommand(admin, "reset");
    expect(parts.problems()).toContain("safe-state write of heater.setpoint failed");
    refuse = false;
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    expect(parts.problems()).not.toContain("safe-state write of heater.setpoint failed");
    await system.stop();
  });
});
