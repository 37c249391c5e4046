import { describe, expect, it } from "vitest";
import { KilnError } from "../domain/errors";
import {
  NORMAL_ALARM_STATE,
  alarmBaseState,
  alarmShelf,
  alarmSuppressionSources,
  isAlarmInEffect,
  nextAlarmState,
  type AlarmShelf,
  type AlarmState,
  type AlarmTrigger,
} from "./alarm-state";

const ACTIVATE: AlarmTrigger = { type: "activate" };
const CLEAR: AlarmTrigger = { type: "clear" };
const ACK: AlarmTrigger = { type: "acknowledge" };
const TIMED: AlarmShelf = { mode: "timed", until: 1_000, durationMs: 1_000 };
const ONE_SHOT: AlarmShelf = { mode: "one-shot", until: Number.MAX_SAFE_INTEGER };

/** Applies triggers in order from normal. */
function run(...triggers: AlarmTrigger[]): AlarmState {
  return triggers.reduce<AlarmState>((state, trigger) => nextAlarmState(state, trigger), NORMAL_ALARM_STATE);
}

function expectInvalid(state: AlarmState, trigger: AlarmTrigger): void {
  let thrown: unknown;
  try {
    nextAlarmState(state, trigger);
  } catch (error) {
    thrown = error;
  }
  expect(KilnError.is(thrown, "KILN_INVALID_TRANSITION")).toBe(true);
}

describe("nextAlarmState: the four annunciation states", () => {
  it("normal → unacknowledged on activation", () => {
    expect(run(ACTIVATE)).toEqual({ name: "unacknowledged" });
  });

  it("unacknowledged → acknowledged on acknowledge", () => {
    expect(run(ACTIVATE, ACK)).toEqual({ name: "acknowledged" });
  });

  it("unacknowledged → rtn-unacknowledged when the condition clears", () => {
    expect(run(ACTIVATE, CLEAR)).toEqual({ name: "rtn-unacknowledged" });
  });

  it("rtn-unacknowledged → normal on acknowledge", () => {
    expect(run(ACTIVATE, CLEAR, ACK)).toEqual({ name: "normal" });
  });

  it("rtn-unacknowledged → unacknowledged when the condition returns", () => {
    expect(run(ACTIVATE, CLEAR, ACTIVATE)).toEqual({ name: "unacknowledged" });
  });

  it("acknowledged → normal when the condition clears", () => {
    expect(run(ACTIVATE, ACK, CLEAR)).toEqual({ name: "normal" });
  });

  it("returns the same object when a process trigger changes nothing", () => {
    const active = run(ACTIVATE);
    expect(nextAlarmState(active, ACTIVATE)).toBe(active);
    expect(nextAlarmState(NORMAL_ALARM_STATE, CLEAR)).toBe(NORMAL_ALARM_STATE);
  });

  it("rejects acknowledging an alarm that is normal or already acknowledged", () => {
    expectInvalid(NORMAL_ALARM_STATE, ACK);
    expectInvalid(run(ACTIVATE, ACK), ACK);
  });
});

describe("nextAlarmState: shelving", () => {
  it.each([
    ["normal", [] as AlarmTrigger[]],
    ["unacknowledged", [ACTIVATE]],
    ["acknowledged", [ACTIVATE, ACK]],
    ["rtn-unacknowledged", [ACTIVATE, CLEAR]],
  ])("shelves from %s and remembers it as the underlying state", (name, before) => {
    const state = nextAlarmState(run(...before), { type: "shelve", shelf: TIMED });
    expect(state).toEqual({ name: "shelved", shelf: TIMED, underlying: { name } });
  });

  it("keeps the underlying state current while shelved", () => {
    const shelved = run({ type: "shelve", shelf: TIMED }, ACTIVATE);
    expect(shelved).toEqual({ name: "shelved", shelf: TIMED, underlying: { name: "unacknowledged" } });
    expect(nextAlarmState(shelved, CLEAR)).toEqual({
      name: "shelved",
      shelf: TIMED,
      underlying: { name: "rtn-unacknowledged" },
    });
  });

  it("operator unshelve returns acknowledged while active, normal otherwise", () => {
    const shelved = run(ACTIVATE, { type: "shelve", shelf: TIMED });
    expect(nextAlarmState(shelved, { type: "unshelve", by: "operator", active: true })).toEqual({
      name: "acknowledged",
    });
    expect(nextAlarmState(shelved, { type: "unshelve", by: "operator", active: false })).toEqual({ name: "normal" });
  });

  it("timer unshelve returns unacknowledged while active, normal otherwise", () => {
    const shelved = run(ACTIVATE, ACK, { type: "shelve", shelf: TIMED });
    expect(nextAlarmState(shelved, { type: "unshelve", by: "timer", active: true })).toEqual({
      name: "unacknowledged",
    });
    expect(nextAlarmState(shelved, { type: "unshelve", by: "timer", active: false })).toEqual({ name: "normal" });
  });

  it("a one-shot shelf ends when the alarm next returns to normal; a timed one does not", () => {
    expect(run(ACTIVATE, { type: "shelve", shelf: ONE_SHOT }, CLEAR)).toEqual({ name: "normal" });
    expect(run({ type: "shelve", shelf: ONE_SHOT }, ACTIVATE)).toMatchObject({ name: "shelved" });
    expect(run({ type: "shelve", shelf: ONE_SHOT }, ACTIVATE, CLEAR)).toEqual({ name: "normal" });
    expect(run(ACTIVATE, { type: "shelve", shelf: TIMED }, CLEAR)).toMatchObject({ name: "shelved" });
  });

  it("rejects acknowledging, re-shelving and unshelving where not allowed", () => {
    const shelved = run(ACTIVATE, { type: "shelve", shelf: TIMED });
    expectInvalid(shelved, ACK);
    expectInvalid(shelved, { type: "shelve", shelf: ONE_SHOT });
    expectInvalid(NORMAL_ALARM_STATE, { type: "unshelve", by: "operator", active: false });
    expectInvalid(NORMAL_ALARM_STATE, { type: "unshelve", by: "timer", active: false });
    expectInvalid(run({ type: "suppress", source: "command" }), { type: "shelve", shelf: TIMED });
    expectInvalid(run({ type: "remove-from-service" }), { type: "shelve", shelf: TIMED });
  });

  it("a timed shelf can expire underneath a suppression or out-of-service", () => {
    const suppressed = run(ACTIVATE, { type: "shelve", shelf: TIMED }, { type: "suppress", source: "condition" });
    expect(nextAlarmState(suppressed, { type: "unshelve", by: "timer", active: true })).toEqual({
      name: "suppressed",
      by: ["condition"],
      underlying: { name: "unacknowledged" },
    });
    const outOfService = nextAlarmState(suppressed, { type: "remove-from-service" });
    expect(nextAlarmState(outOfService, { type: "unshelve", by: "timer", active: false })).toEqual({
      name: "out-of-service",
      underlying: { name: "suppressed", by: ["condition"], underlying: { name: "normal" } },
    });
    // A manual unshelve only acts on a visibly shelved alarm.
    expectInvalid(suppressed, { type: "unshelve", by: "operator", active: true });
  });
});

describe("nextAlarmState: suppression by design", () => {
  it("suppresses from any annunciation state and returns unacknowledged if active, normal if not", () => {
    const suppressed = run(ACTIVATE, ACK, { type: "suppress", source: "condition" });
    expect(suppressed).toEqual({ name: "suppressed", by: ["condition"], underlying: { name: "acknowledged" } });
    expect(nextAlarmState(suppressed, { type: "unsuppress", source: "condition", active: true })).toEqual({
      name: "unacknowledged",
    });
    expect(nextAlarmState(suppressed, { type: "unsuppress", source: "condition", active: false })).toEqual({
      name: "normal",
    });
  });

  it("stays suppressed until every source has ended", () => {
    const both = run({ type: "suppress", source: "command" }, { type: "suppress", source: "condition" });
    expect(alarmSuppressionSources(both)).toEqual(["command", "condition"]);
    const one = nextAlarmState(both, { type: "unsuppress", source: "command", active: false });
    expect(one).toEqual({ name: "suppressed", by: ["condition"], underlying: { name: "normal" } });
    expectInvalid(one, { type: "unsuppress", source: "command", active: false });
    expectInvalid(one, { type: "suppress", source: "condition" });
  });

  it("returns to the shelf underneath when the suppression ends", () => {
    const state = run({ type: "shelve", shelf: TIMED }, { type: "suppress", source: "command" });
    expect(nextAlarmState(state, { type: "unsuppress", source: "command", active: true })).toEqual({
      name: "shelved",
      shelf: TIMED,
      underlying: { name: "normal" },
    });
  });

  it("rejects unsuppressing an alarm that is not suppressed", () => {
    expectInvalid(NORMAL_ALARM_STATE, { type: "unsuppress", source: "command", active: false });
  });
});

describe("nextAlarmState: out of service", () => {
  it.each([
    ["normal", [] as AlarmTrigger[], false, "normal"],
    ["unacknowledged", [ACTIVATE], true, "unacknowledged"],
    ["acknowledged", [ACTIVATE, ACK], true, "unacknowledged"],
    ["rtn-unacknowledged", [ACTIVATE, CLEAR], false, "normal"],
  ] as const)("removes from %s and returns by the current condition", (_name, before, active, after) => {
    const removed = nextAlarmState(run(...before), { type: "remove-from-service" });
    expect(removed.name).toBe("out-of-service");
    expect(nextAlarmState(removed, { type: "return-to-service", active })).toEqual({ name: after });
  });

  it("suppression can start and end while out of service, and shows again on return", () => {
    const removed = run({ type: "remove-from-service" }, { type: "suppress", source: "condition" });
    expect(removed).toEqual({
      name: "out-of-service",
      underlying: { name: "suppressed", by: ["condition"], underlying: { name: "normal" } },
    });
    expect(nextAlarmState(removed, { type: "return-to-service", active: false })).toMatchObject({
      name: "suppressed",
    });
    expect(nextAlarmState(removed, { type: "unsuppress", source: "condition", active: true })).toEqual({
      name: "out-of-service",
      underlying: { name: "unacknowledged" },
    });
  });

  it("rejects a second removal and a return of an alarm in service", () => {
    expectInvalid(run({ type: "remove-from-service" }), { type: "remove-from-service" });
    expectInvalid(NORMAL_ALARM_STATE, { type: "return-to-service", active: false });
    expectInvalid(run({ type: "remove-from-service" }), ACK);
  });
});

describe("state helpers", () => {
  it("find the base state, shelf and effect through every overlay", () => {
    const state = run(ACTIVATE, { type: "shelve", shelf: TIMED }, { type: "remove-from-service" });
    expect(alarmBaseState(state)).toEqual({ name: "unacknowledged" });
    expect(alarmShelf(state)).toEqual(TIMED);
    expect(isAlarmInEffect(state)).toBe(false);
    expect(isAlarmInEffect(run(ACTIVATE, { type: "shelve", shelf: TIMED }))).toBe(true);
    expect(isAlarmInEffect(run({ type: "suppress", source: "command" }))).toBe(false);
  });
});
