import { describe, expect, it } from "vitest";
import type { AlarmHistoryEntry } from "../ports/alarm-history";
import { computeAlarmKpis, isAlarmRaise } from "./alarm-kpis";

const T0 = Date.UTC(2026, 0, 1);
const SECOND = 1_000;
const MINUTE = 60 * SECOND;

function raise(alarmId: string, at: number): AlarmHistoryEntry {
  return {
    alarmId,
    tag: alarmId.split(":")[0]!,
    kind: "HI",
    priority: 2,
    from: "normal",
    to: "unacknowledged",
    cause: "process-activate",
    value: 6,
    at,
  };
}

function other(alarmId: string, at: number, from: string, to: string, cause: string): AlarmHistoryEntry {
  return { ...raise(alarmId, at), from, to, cause };
}

describe("isAlarmRaise", () => {
  it("counts annunciated activations only", () => {
    expect(isAlarmRaise(raise("a:HI", T0))).toBe(true);
    expect(isAlarmRaise(other("a:HI", T0, "rtn-unacknowledged", "unacknowledged", "process-activate"))).toBe(true);
    expect(isAlarmRaise(other("a:HI", T0, "shelved", "shelved", "process-activate"))).toBe(false);
    expect(isAlarmRaise(other("a:HI", T0, "shelved", "unacknowledged", "shelve-expire"))).toBe(false);
    expect(isAlarmRaise(other("a:HI", T0, "unacknowledged", "acknowledged", "acknowledge"))).toBe(false);
  });
});

describe("computeAlarmKpis", () => {
  const hour = { from: T0, to: T0 + 60 * MINUTE };

  it("computes raises per 10 minutes: fixed buckets, average and sliding peak", () => {
    const entries = [
      raise("a:HI", T0 + 1 * MINUTE),
      other("a:HI", T0 + 2 * MINUTE, "unacknowledged", "acknowledged", "acknowledge"),
      raise("b:HI", T0 + 9 * MINUTE),
      raise("c:HI", T0 + 10.5 * MINUTE),
      raise("a:HI", T0 + 35 * MINUTE),
      raise("a:HI", T0 + 59 * MINUTE),
      raise("a:HI", T0 + 61 * MINUTE), // outside the range
      raise("a:HI", T0 - 1), // outside the range
    ];
    const kpis = computeAlarmKpis(entries, hour);
    expect(kpis.raised).toBe(5);
    expect(kpis.buckets.map((bucket) => bucket.raised)).toEqual([2, 1, 0, 1, 0, 1]);
    expect(kpis.buckets[0]).toEqual({ from: T0, to: T0 + 10 * MINUTE, raised: 2 });
    expect(kpis.averagePerWindow).toBeCloseTo(5 / 6);
    expect(kpis.peakPerWindow).toBe(3); // minutes 1, 9 and 10.5 fall within one 10-minute window
    expect(kpis.floods).toEqual([]);
    expect(kpis.chattering).toEqual([]);
  });

  it("finds a flood when more than 10 alarms are raised within 10 minutes", () => {
    const start = T0 + 20 * MINUTE;
    const entries = Array.from({ length: 12 }, (_, index) => raise(`tag${index}:HI`, start + index * 50 * SECOND));
    const kpis = computeAlarmKpis(entries, hour);
    expect(kpis.floods).toEqual([{ from: start, to: start + 11 * 50 * SECOND, raised: 12, peak: 12 }]);
  });

  it("does not call 10 alarms in 10 minutes, or 11 spread over exactly 10 minutes, a flood", () => {
    const ten = Array.from({ length: 10 }, (_, index) => raise(`tag${index}:HI`, T0 + index * SECOND));
    expect(computeAlarmKpis(ten, hour).floods).toEqual([]);
    const spread = Array.from({ length: 11 }, (_, index) => raise(`tag${index}:HI`, T0 + index * MINUTE));
    expect(computeAlarmKpis(spread, hour).floods).toEqual([]);
    expect(computeAlarmKpis(spread, hour).peakPerWindow).toBe(10);
  });

  it("reports two separate floods separately", () => {
    const burst = (start: number, prefix: string): AlarmHistoryEntry[] =>
      Array.from({ length: 11 }, (_, index) => raise(`${prefix}${index}:HI`, start + index * SECOND));
    const kpis = computeAlarmKpis([...burst(T0, "x"), ...burst(T0 + 40 * MINUTE, "y")], hour);
    expect(kpis.floods.map((flood) => [flood.from, flood.raised])).toEqual([
      [T0, 11],
      [T0 + 40 * MINUTE, 11],
    ]);
  });

  it("finds chattering alarms: at least 3 raises of one alarm within 60 seconds", () => {
    const entries = [
      raise("chatty:HI", T0 + 10 * SECOND),
      raise("chatty:HI", T0 + 30 * SECOND),
      raise("chatty:HI", T0 + 50 * SECOND),
      raise("chatty:HI", T0 + 55 * SECOND),
      raise("slow:HI", T0),
      raise("slow:HI", T0 + 30 * SECOND),
      raise("slow:HI", T0 + 60 * SECOND), // the first raise is exactly 60 s back: outside the window
    ];
    const kpis = computeAlarmKpis(entries, hour);
    expect(kpis.chattering).toEqual([{ alarmId: "chatty:HI", tag: "chatty", raised: 4, peakInWindow: 4 }]);
    expect(computeAlarmKpis(entries, hour, { chatterThreshold: 2 }).chattering.map((alarm) => alarm.alarmId)).toEqual([
      "chatty:HI",
      "slow:HI",
    ]);
  });

  it("rejects an empty range and non-positive thresholds", () => {
    expect(() => computeAlarmKpis([], { from: T0, to: T0 })).toThrow(RangeError);
    expect(() => computeAlarmKpis([], hour, { windowMs: 0 })).toThrow(RangeError);
  });
});
