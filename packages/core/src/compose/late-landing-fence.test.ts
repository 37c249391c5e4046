import { describe, expect, test } from "vitest";
import { defineTags, KilnError, type Principal } from "../index";
import { CheckedTagWriter } from "./checked-write";

// Adversarial review 15h (ADR 0042, amendment 15h): re-asserts of pre-fault values sent after a
// fault was decided (H1), a stop that did not wait for a queued re-assert (H2), a storm of
// re-asserts (M1). Helpers as in late-landing-order.test.ts. Review 15g: the late-landing mechanism (ADR 0042, amendments 15e/15f) only counted
// writes that succeeded within their timeout, so two given-up calls settling in reverse order
// left the device at the older value (H1), a late landing re-wrote a value older than a hung
// safe-state write (H2), a re-assert's failure was cleared by its own late settle (H3), a stop
// closed over calls still out (H4), a rejection after the request was sent counted as "did not
// land" (M1), a manual safe state refused by the device left no `:fail` (M2), and a process's
// late landing was not audited (M3). Real timers, small timeouts, a driver whose writes are held.

import { admin, hostile, sleep, TIMEOUT } from "../../test/support/late-landing-system";

const isKilnTimeout = { code: "KILN_TIMEOUT" };

describe("no value issued before a safe state is written again after it (review 15h, H1)", () => {
  test("H1: a manual write lands late after a fault was decided: its later manual value is not re-asserted, 0 ends", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) => tag === "heater.setpoint" && value === 399);
    const first = system.writeTag(admin, "heater.setpoint", 399).catch((error: unknown) => error);
    await sleep(5);
    parts.setHold((tag, value) => tag === "heater.setpoint" && (value === 399 || value === 300));
    const second = system.writeTag(admin, "heater.setpoint", 300).catch((error: unknown) => error);
    expect(await first).toMatchObject(isKilnTimeout);
    expect(await second).toMatchObject(isKilnTimeout);
    const fault = system.sendMachineCommand(admin, "fault");
    await sleep(5);
    parts.heldValue(399).release(); // lands after the fault was decided, before its safe write
    expect(await fault).toBe("error");
    await sleep(TIMEOUT * 2);
    parts.setHold(() => false);
    parts.heldValue(300).release(false);
    await sleep(TIMEOUT * 2);
    // 300 (issued before the fault) is never sent after it; the safe 0 ends.
    expect(parts.values("heater.setpoint")).toEqual([399, 0]);
    const reasserts = (await parts.trail()).filter((entry) => entry.action === "tag.reassert");
    for (const entry of reasserts) expect(entry.newValue).not.toMatchObject({ reasserted: 300 });
    await system.stop();
  });

  test("H1 (sibling): late landings released one by one do not starve the fault's safe write", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) => tag === "heater.setpoint" && value !== 0);
    for (const value of [100, 110, 120, 130, 140])
      expect(await system.writeTag(admin, "heater.setpoint", value).catch((error: unknown) => error)).toMatchObject(
        isKilnTimeout,
      );
    const begun = Date.now();
    let answeredAfter = Number.NaN;
    const fault = system.sendMachineCommand(admin, "fault").finally(() => void (answeredAfter = Date.now() - begun));
    await sleep(TIMEOUT * 0.5);
    for (const call of parts.held.slice(0, 4)) {
      call.release();
      await sleep(TIMEOUT * 1.5);
    }
    expect(await fault).toBe("error");
    // Bounded by the late-write wait of the calls out when the fault was decided, not by every landing.
    expect(answeredAfter).toBeLessThan(TIMEOUT * 3);
    const values = parts.values("heater.setpoint");
    expect(values).not.toContain(140);
    expect(values.at(-1)).toBe(0);
    for (const call of parts.held.splice(0)) call.release(false);
    await system.stop();
  });
});

describe("one command, at most one :fail (review 15h, H3)", () => {
  test("H3: two concurrent faults with the safe write refused: each has one :fail, the one telling what happened", async () => {
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
    expect(results.map((result) => result.status).sort()).toEqual(["fulfilled", "rejected"]);
    await sleep(TIMEOUT);
    const fails = parts.recorded.filter((entry) => entry.id.endsWith(":fail"));
    expect(new Set(fails.map((entry) => entry.id)).size).toBe(fails.length);
    expect(fails).toHaveLength(2);
    for (const entry of fails)
      expect(entry).toMatchObject({ outcome: "failed", reason: expect.stringContaining("safe-state") });
    await system.stop();
  });

  test("(sibling) a single fault with the safe write refused: one :fail, no second from the runner", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) =>
      tag === "heater.setpoint" && value === 0 ? new Error("device refused safe write") : false,
    );
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    await sleep(TIMEOUT);
    expect(parts.recorded.filter((entry) => entry.id.endsWith(":fail"))).toHaveLength(1);
    await system.stop();
  });
});

describe("stop() waits for a queued re-assert, and what it leaves is recorded (review 15h, H2)", () => {
  const sentTrue = (): KilnError =>
    new KilnError("KILN_WRITE_REJECTED", "connection reset after send", { details: { sent: true } });

  test("H2: a late landing just before stop(): the latest value is written again before the system stops", async () => {
    const parts = await hostile();
    const { system } = parts;
    let refused = false;
    parts.setHold((tag, value) => {
      if (tag !== "heater.setpoint") return false;
      if (value === 399) return true;
      if (value === 200 && !refused) {
        refused = true;
        return sentTrue();
      }
      return false;
    });
    const first = system.writeTag(admin, "heater.setpoint", 399).catch((error: unknown) => error);
    await sleep(5);
    expect(await system.writeTag(admin, "heater.setpoint", 200).catch((error: unknown) => error)).toMatchObject({
      code: "KILN_WRITE_REJECTED",
    });
    expect(await first).toMatchObject(isKilnTimeout);
    parts.heldValue(399).release(); // lands late, after 200 may have landed
    await sleep(5);
    await system.stop();
    expect(parts.values("heater.setpoint")).toEqual([399, 200]);
    expect(parts.recorded.filter((entry) => entry.action === "tag.reassert")).toMatchObject([
      { outcome: "allowed", newValue: { late: 399, reasserted: 200 } },
    ]);
  });

  test("(sibling) the queued re-assert is refused by the device: its :fail is in the trail before the stop ends", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag, value) =>
      tag === "heater.setpoint" && value === 399
        ? true
        : tag === "heater.setpoint" && value === 200
          ? sentTrue()
          : false,
    );
    const first = system.writeTag(admin, "heater.setpoint", 399).catch((error: unknown) => error);
    await sleep(5);
    await system.writeTag(admin, "heater.setpoint", 200).catch(() => undefined);
    await first;
    parts.heldValue(399).release();
    await sleep(5);
    await system.stop();
    const reasserts = parts.recorded.filter((entry) => entry.action === "tag.reassert");
    expect(reasserts.map((entry) => entry.outcome)).toEqual(["allowed", "failed"]);
  });
});

describe("late landings coalesce into one re-assert per tag (review 15h, M1)", () => {
  /** A writer whose driver calls are held (given up at once, KILN_TIMEOUT) until released. */
  function heldWriter() {
    const catalog = defineTags({ t: { dataType: "float64", access: "readwrite" } });
    const releases: (() => void)[] = [];
    let holding = true;
    let after = 0;
    const driver = {
      write: () => Promise.resolve(),
      writeTracked: () => {
        if (!holding) {
          after++;
          return { result: Promise.resolve(), device: Promise.resolve("landed" as const) };
        }
        let release!: () => void;
        const device = new Promise<"landed">((resolve) => (release = () => resolve("landed")));
        releases.push(release);
        return { result: Promise.reject(new KilnError("KILN_TIMEOUT", "held")), device };
      },
    };
    const clock = {
      now: () => Date.now(),
      sleep: (ms: number, signal?: AbortSignal) =>
        new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, ms);
          signal?.addEventListener("abort", () => {
            clearTimeout(timer);
            resolve();
          });
        }),
    };
    const writer = new CheckedTagWriter({
      tags: catalog,
      driver: driver as never,
      lifecycle: { state: "running" } as never,
      clock,
      lateWriteWaitMs: 1,
    });
    return {
      writer,
      release: () => {
        holding = false;
        for (const release of releases) release();
      },
      writesAfter: () => after,
    };
  }

  test("M1: 30 hung writes released oldest first: one re-assert of the latest value, reported once", async () => {
    const { writer, release, writesAfter } = heldWriter();
    const reasserted: unknown[] = [];
    writer.onLateSettle((settle) => void (settle.reasserted === undefined || reasserted.push(settle.reasserted)));
    for (let index = 0; index < 30; index++) await writer.write("t", index).catch(() => undefined);
    release();
    await sleep(100);
    expect(writesAfter()).toBe(1);
    expect(reasserted).toEqual([29]);
  });

  test("H4: a driver that never settles: the 33rd write of a tag is refused KILN_BUFFER_FULL naming the tag and rule", async () => {
    const { writer } = heldWriter();
    for (let index = 0; index < 32; index++)
      expect(await writer.write("t", index).catch((error: unknown) => error)).toMatchObject({ code: "KILN_TIMEOUT" });
    expect(await writer.write("t", 1).catch((error: unknown) => error)).toMatchObject({
      code: "KILN_BUFFER_FULL",
      details: { tag: "t", rule: "maxCallsOutPerTag", limit: 32 },
    });
    expect(writer.lateCalls()).toHaveLength(32);
  });

  test("review 15k, H1/M2: past the bound only the safe state's own (announced) writes go, bounded on their own; anyone's write of the safe value is bounded", async () => {
    const { writer } = heldWriter();
    for (let index = 0; index < 32; index++) await writer.write("t", index + 1).catch(() => undefined);
    // Past the bound, any write is refused, the safe value included (review 15k M2: a tag listed
    // twice in the safe state made every write of either value "safe", 200 calls out)...
    expect(await writer.write("t", 7).catch((error: unknown) => error)).toMatchObject({ code: "KILN_BUFFER_FULL" });
    expect(await writer.write("t", 0).catch((error: unknown) => error)).toMatchObject({ code: "KILN_BUFFER_FULL" });
    // ...but the safe state's own write goes (review 15k H1: it was refused when the backlog asked the safe value)...
    const first = writer.reserveSafeWrite("t", 0);
    expect(
      await writer.write("t", 0, undefined, { reservation: first }).catch((error: unknown) => error),
    ).toMatchObject({
      code: "KILN_TIMEOUT",
    });
    expect(writer.lateCalls()).toHaveLength(33);
    // Sibling: a safe state writing another value past the bound goes too.
    const other = writer.reserveSafeWrite("t", -1);
    await writer.write("t", -1, undefined, { reservation: other }).catch(() => undefined);
    expect(writer.lateCalls()).toHaveLength(34);
    // Repeated safe states, each given up at once, write again (review 15m H1: joining an answered
    // write repeated its old error and sent nothing), at most maxCallsOutPerTag of the safe
    // state's own on top (review 15i H1: 232 calls out); past them, refused with their own error.
    let last: unknown;
    for (let index = 0; index < 200; index++) {
      const again = writer.reserveSafeWrite("t", 0);
      last = await writer.write("t", 0, undefined, { reservation: again }).catch((error: unknown) => error);
    }
    expect(writer.lateCalls()).toHaveLength(64);
    expect(last).toMatchObject({ code: "KILN_BUFFER_FULL", details: { tag: "t", safeState: true } });
  });

  test("review 15k, M3: writes the device refuses behind a call that never settles are not kept (each write stays O(1))", async () => {
    const catalog = defineTags({ t: { dataType: "float64", access: "readwrite" } });
    /** A writer whose device refuses every write; with `hung`, after a first call that never settles. */
    const refusingWriter = (hung: boolean) => {
      let first = hung;
      const driver = {
        write: () => Promise.resolve(),
        writeTracked: () => {
          if (first) {
            first = false;
            return {
              result: Promise.reject(new KilnError("KILN_TIMEOUT", "held")),
              device: new Promise<never>(() => undefined),
            };
          }
          const refused = Promise.reject(new KilnError("KILN_WRITE_REJECTED", "refused"));
          refused.catch(() => undefined);
          return { result: refused, device: Promise.resolve("failed" as const) };
        },
      };
      return new CheckedTagWriter({
        tags: catalog,
        driver: driver as never,
        lifecycle: { state: "running" } as never,
        clock: { now: () => Date.now(), sleep: () => Promise.resolve() },
        lateWriteWaitMs: 1,
      });
    };
    // The fastest of three batches of 2,000 after 12,000 writes: a load spike on the host slows one batch, not all
    // three (the single batch timed before failed under a loaded full run).
    const lastOf = async (writer: CheckedTagWriter): Promise<number> => {
      for (let index = 0; index < 12_000; index++) await writer.write("t", index).catch(() => undefined);
      const batches: number[] = [];
      for (let batch = 0; batch < 3; batch++) {
        const started = performance.now();
        for (let index = 0; index < 2_000; index++) await writer.write("t", index).catch(() => undefined);
        batches.push(performance.now() - started);
      }
      return Math.min(...batches);
    };
    const control = await lastOf(refusingWriter(false));
    const hung = refusingWriter(true);
    const behindHung = await lastOf(hung);
    // Before: every refused write was kept behind the hung one, each write scanning them all (4-20× here).
    expect(behindHung).toBeLessThan(control * 3 + 100);
    expect(hung.lateCalls()).toHaveLength(1);
  });

  test("(sibling H4) once the calls settle, the tag is written again", async () => {
    const { writer, release } = heldWriter();
    for (let index = 0; index < 32; index++) await writer.write("t", index).catch(() => undefined);
    release();
    await sleep(50);
    await expect(writer.write("t", 5)).resolves.toBeUndefined();
  });
});
