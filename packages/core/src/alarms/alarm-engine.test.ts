import { describe, expect, it } from "vitest";
import { KilnError } from "../domain/errors";
import { GOOD, quality, type QualitySeverity } from "../domain/quality";
import { defineTags, type TagValue } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { SimulatedClock } from "../memory/simulated-clock";
import type { AlarmHistory, AlarmHistoryEntry, TimeRange } from "../ports/alarm-history";
import type { AlarmDefinitionInput } from "./alarm-definition";
import { AlarmEngine, type AlarmEngineOptions } from "./alarm-engine";

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", unit: "mbar", range: { min: 0, max: 10 } },
  "chamber.temperature": { dataType: "float64" },
  "door.open": { dataType: "bool" },
  "pump.running": { dataType: "bool" },
  "machine.mode": { dataType: "string" },
});

const PRESSURE_HI = "chamber.pressure:HI";

/** A tiny in-memory AlarmHistory; `fail` makes every write reject, `hold` keeps writes pending. */
class FakeAlarmHistory implements AlarmHistory {
  readonly entries: AlarmHistoryEntry[] = [];
  fail = false;
  hold = false;

  record(entry: AlarmHistoryEntry): Promise<void> {
    if (this.hold) return new Promise(() => undefined);
    if (this.fail) return Promise.reject(new Error("history store down"));
    this.entries.push(entry);
    return Promise.resolve();
  }

  query(range: TimeRange): Promise<AlarmHistoryEntry[]> {
    return Promise.resolve(this.entries.filter((entry) => entry.at >= range.from && entry.at < range.to));
  }
}

type Recorded = { [TType in keyof KilnEvents]: { type: TType; event: KilnEvents[TType] } }[keyof KilnEvents];

const DAYS_365 = 365 * 24 * 60 * 60 * 1_000;

function setup(definitions: AlarmDefinitionInput[], options: Partial<AlarmEngineOptions> = {}) {
  const clock = new SimulatedClock();
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  const history = new FakeAlarmHistory();
  const engine = new AlarmEngine({ clock, bus, history, tags, definitions, ...options });
  const events: Recorded[] = [];
  bus.tap((type, event) => {
    events.push({ type, event } as Recorded);
  });
  const feed = (tag: string, value: TagValue | null, severity: QualitySeverity = "good"): void =>
    engine.observe({
      tag,
      value,
      timestamp: clock.now(),
      quality: severity === "good" ? GOOD : quality(severity, "test"),
    });
  const of = <TType extends keyof KilnEvents>(type: TType): KilnEvents[TType][] =>
    events.filter((recorded) => recorded.type === type).map((recorded) => recorded.event as KilnEvents[TType]);
  const transitions = (): string[] =>
    of("alarm-state-change").map((event) => `${event.from}->${event.to}:${event.cause}`);
  return { clock, bus, history, engine, events, feed, of, transitions, start: clock.now() };
}

function expectCode(action: () => unknown, code: KilnError["code"]): void {
  let thrown: unknown;
  try {
    action();
  } catch (error) {
    thrown = error;
  }
  expect(KilnError.is(thrown, code)).toBe(true);
}

const pressureHigh = (extra: Partial<AlarmDefinitionInput> = {}): AlarmDefinitionInput =>
  ({ tag: "chamber.pressure", kind: "HI", setpoint: 5, priority: 2, ...extra }) as AlarmDefinitionInput;

describe("AlarmEngine: evaluation", () => {
  it("raises a HI alarm above its setpoint, publishes the transition and records it", async () => {
    const { engine, feed, of, history, start } = setup([pressureHigh()]);
    feed("chamber.pressure", 4.9);
    feed("chamber.pressure", 5);
    expect(engine.get(PRESSURE_HI).active).toBe(false);
    feed("chamber.pressure", 5.5);
    const snapshot = engine.get(PRESSURE_HI);
    expect(snapshot).toMatchObject({
      state: { name: "unacknowledged" },
      active: true,
      lastValue: 5.5,
      raisedAt: start,
      setpoint: 5, // the definition's limit, for a northbound server's HighLimit
    });
    expect(of("alarm-state-change")).toEqual([
      {
        at: start,
        alarmId: PRESSURE_HI,
        tag: "chamber.pressure",
        kind: "HI",
        priority: 2,
        from: "normal",
        to: "unacknowledged",
        cause: "process-activate",
        value: 5.5,
      },
    ]);
    expect(of("alarm-raise")).toEqual([expect.objectContaining({ alarmId: PRESSURE_HI, state: "unacknowledged" })]);
    await engine.flush();
    expect(history.entries).toEqual([expect.objectContaining({ from: "normal", to: "unacknowledged", value: 5.5 })]);
  });

  it("raises nothing for a value chattering inside the deadband below the setpoint", () => {
    const { feed, events } = setup([pressureHigh({ deadband: 0.5 })]);
    for (const value of [4.6, 4.95, 4.7, 5, 4.55, 4.99]) feed("chamber.pressure", value);
    expect(events).toEqual([]);
  });

  it("raises once for a value chattering across the setpoint and clears only past the deadband", () => {
    const { engine, feed, of, transitions } = setup([pressureHigh({ deadband: 0.5 })]);
    for (const value of [5.1, 4.8, 5.2, 4.6, 5.05, 4.51]) feed("chamber.pressure", value);
    expect(of("alarm-raise")).toHaveLength(1);
    expect(engine.get(PRESSURE_HI).active).toBe(true);
    feed("chamber.pressure", 4.5);
    expect(of("alarm-clear")).toEqual([expect.objectContaining({ value: 4.5, state: "rtn-unacknowledged" })]);
    expect(transitions()).toEqual([
      "normal->unacknowledged:process-activate",
      "unacknowledged->rtn-unacknowledged:process-clear",
    ]);
  });

  it("mirrors the deadband for LO alarms", () => {
    const { engine, feed, of } = setup([
      { tag: "chamber.pressure", kind: "LO", setpoint: 1, deadband: 0.2, priority: 3 },
    ]);
    feed("chamber.pressure", 0.9);
    feed("chamber.pressure", 1.1);
    feed("chamber.pressure", 0.95);
    expect(engine.get("chamber.pressure:LO").active).toBe(true);
    feed("chamber.pressure", 1.2);
    expect(engine.get("chamber.pressure:LO").active).toBe(false);
    expect(of("alarm-raise")).toHaveLength(1);
    expect(of("alarm-clear")).toHaveLength(1);
  });

  it("raises nothing for an excursion shorter than the on-delay", async () => {
    const { engine, feed, clock, events } = setup([pressureHigh({ onDelayMs: 2_000 })]);
    feed("chamber.pressure", 6);
    expect(engine.get(PRESSURE_HI).pendingDelay).toEqual({ kind: "on-delay", dueAt: clock.now() + 2_000 });
    await clock.advance(1_999);
    feed("chamber.pressure", 4);
    expect(engine.get(PRESSURE_HI).pendingDelay).toBeUndefined();
    await clock.advance(10_000);
    expect(events).toEqual([]);
    expect(clock.pendingTimers).toBe(0);
  });

  it("raises exactly at the on-delay when the condition holds continuously", async () => {
    const { engine, feed, clock, of } = setup([pressureHigh({ onDelayMs: 2_000 })]);
    const excursionStart = clock.now();
    feed("chamber.pressure", 6);
    await clock.advance(1_000);
    feed("chamber.pressure", 7); // still above: the delay is not restarted
    await clock.advance(999);
    expect(engine.get(PRESSURE_HI).active).toBe(false);
    await clock.advance(1);
    expect(engine.get(PRESSURE_HI)).toMatchObject({ active: true, raisedAt: excursionStart + 2_000, lastValue: 7 });
    expect(of("alarm-raise")).toEqual([expect.objectContaining({ at: excursionStart + 2_000, value: 7 })]);
  });

  it("clears only after the return-to-normal condition held for the off-delay", async () => {
    const { engine, feed, clock, transitions } = setup([pressureHigh({ offDelayMs: 3_000 })]);
    feed("chamber.pressure", 6);
    feed("chamber.pressure", 4);
    await clock.advance(2_000);
    feed("chamber.pressure", 6); // back above before the off-delay ran out
    await clock.advance(5_000);
    expect(engine.get(PRESSURE_HI).active).toBe(true);
    const returnStart = clock.now();
    feed("chamber.pressure", 4);
    await clock.advance(2_999);
    expect(engine.get(PRESSURE_HI).active).toBe(true);
    await clock.advance(1);
    expect(engine.get(PRESSURE_HI)).toMatchObject({
      active: false,
      clearedAt: returnStart + 3_000,
      state: { name: "rtn-unacknowledged" },
    });
    expect(transitions()).toEqual([
      "normal->unacknowledged:process-activate",
      "unacknowledged->rtn-unacknowledged:process-clear",
    ]);
  });

  it("neither raises nor clears on bad quality, and a bad sample cancels a pending delay", async () => {
    const { engine, feed, clock, of } = setup([pressureHigh({ onDelayMs: 1_000 })]);
    feed("chamber.pressure", 9, "bad");
    feed("chamber.pressure", null, "bad");
    await clock.advance(5_000);
    expect(engine.get(PRESSURE_HI)).toMatchObject({ active: false, lastValue: null });

    feed("chamber.pressure", 9);
    await clock.advance(500);
    feed("chamber.pressure", 9, "bad");
    await clock.advance(5_000);
    expect(engine.get(PRESSURE_HI).active).toBe(false);

    feed("chamber.pressure", 9);
    await clock.advance(1_000);
    expect(engine.get(PRESSURE_HI).active).toBe(true);
    feed("chamber.pressure", 0, "bad");
    expect(engine.get(PRESSURE_HI)).toMatchObject({ active: true, lastValue: 9, lastQuality: { severity: "bad" } });
    feed("chamber.pressure", 0, "uncertain");
    expect(engine.get(PRESSURE_HI).active).toBe(false);
    expect(of("alarm-raise")).toHaveLength(1);
  });

  it("says whether the current sample was evaluated: lastValue is older when it was not (review 15s, M2)", () => {
    const { engine, feed } = setup([pressureHigh()]);
    expect(engine.get(PRESSURE_HI)).toMatchObject({ lastSampleUsable: false, lastValue: null });
    feed("chamber.pressure", 3);
    expect(engine.get(PRESSURE_HI)).toMatchObject({ lastSampleUsable: true, lastValue: 3 });
    feed("chamber.pressure", Number.NaN, "uncertain");
    expect(engine.get(PRESSURE_HI)).toMatchObject({
      lastSampleUsable: false,
      lastValue: 3,
      lastQuality: { severity: "uncertain" },
    });
    feed("chamber.pressure", Number.NaN);
    expect(engine.get(PRESSURE_HI)).toMatchObject({ lastSampleUsable: false, lastQuality: { severity: "good" } });
    feed("chamber.pressure", 4, "uncertain");
    expect(engine.get(PRESSURE_HI)).toMatchObject({ lastSampleUsable: true, lastValue: 4 });
  });

  it("evaluates BOOL alarms against their alarm value", () => {
    const { engine, feed } = setup([{ tag: "pump.running", kind: "BOOL", alarmValue: false, priority: 2 }]);
    feed("pump.running", true);
    expect(engine.get("pump.running:BOOL").active).toBe(false);
    feed("pump.running", false);
    expect(engine.get("pump.running:BOOL")).toMatchObject({ active: true, state: { name: "unacknowledged" } });
    feed("pump.running", true);
    expect(engine.get("pump.running:BOOL")).toMatchObject({ active: false, state: { name: "rtn-unacknowledged" } });
    expect(engine.get("pump.running:BOOL")).not.toHaveProperty("setpoint");
  });

  it("ignores samples of tags outside the catalog and lists alarms in definition order", () => {
    const { engine, events } = setup([
      pressureHigh(),
      { tag: "chamber.pressure", kind: "HIHI", setpoint: 8, priority: 1 },
    ]);
    engine.observe({ tag: "not.a.tag", value: 100, timestamp: 0, quality: GOOD });
    expect(events).toEqual([]);
    expect(engine.list().map((alarm) => alarm.id)).toEqual([PRESSURE_HI, "chamber.pressure:HIHI"]);
  });

  it("rejects invalid definitions in the constructor", () => {
    expectCode(() => setup([pressureHigh({ setpoint: 50 })]), "KILN_VALIDATION");
  });
});

describe("AlarmEngine: commands and the ISA-18.2 state model", () => {
  it("walks normal → unacknowledged → acknowledged → normal and records who acknowledged", async () => {
    const { engine, feed, clock, history, transitions } = setup([pressureHigh()]);
    feed("chamber.pressure", 6);
    await clock.advance(1_000);
    const acked = engine.acknowledge(PRESSURE_HI, { id: "olivia" });
    expect(acked).toMatchObject({ state: { name: "acknowledged" }, ackedAt: clock.now(), ackedBy: "olivia" });
    feed("chamber.pressure", 3);
    expect(engine.get(PRESSURE_HI).state).toEqual({ name: "normal" });
    expect(transitions()).toEqual([
      "normal->unacknowledged:process-activate",
      "unacknowledged->acknowledged:acknowledge",
      "acknowledged->normal:process-clear",
    ]);
    await engine.flush();
    expect(history.entries.map((entry) => entry.principal)).toEqual([undefined, "olivia", undefined]);
  });

  it("walks unacknowledged → rtn-unacknowledged → normal on acknowledge, or back to unacknowledged", () => {
    const { engine, feed, transitions } = setup([pressureHigh()]);
    feed("chamber.pressure", 6);
    feed("chamber.pressure", 4);
    feed("chamber.pressure", 6);
    feed("chamber.pressure", 4);
    engine.acknowledge(PRESSURE_HI, "olivia");
    expect(transitions()).toEqual([
      "normal->unacknowledged:process-activate",
      "unacknowledged->rtn-unacknowledged:process-clear",
      "rtn-unacknowledged->unacknowledged:process-activate",
      "unacknowledged->rtn-unacknowledged:process-clear",
      "rtn-unacknowledged->normal:acknowledge",
    ]);
  });

  it("rejects an invalid command with KILN_INVALID_TRANSITION and changes nothing", async () => {
    const { engine, history, events } = setup([pressureHigh()]);
    const before = engine.get(PRESSURE_HI);
    expectCode(() => engine.acknowledge(PRESSURE_HI), "KILN_INVALID_TRANSITION");
    expectCode(() => engine.unshelve(PRESSURE_HI), "KILN_INVALID_TRANSITION");
    expectCode(() => engine.unsuppress(PRESSURE_HI), "KILN_INVALID_TRANSITION");
    expectCode(() => engine.returnToService(PRESSURE_HI), "KILN_INVALID_TRANSITION");
    expect(engine.get(PRESSURE_HI)).toEqual(before);
    await engine.flush();
    expect(events).toEqual([]);
    expect(history.entries).toEqual([]);
  });

  it("rejects unknown alarms and bad shelve options", () => {
    const { engine } = setup([pressureHigh()]);
    expectCode(() => engine.acknowledge("nope"), "KILN_NOT_FOUND");
    expectCode(() => engine.get("nope"), "KILN_NOT_FOUND");
    expectCode(() => engine.shelve(PRESSURE_HI, { durationMs: -5 }), "KILN_VALIDATION");
    // Shelving is time-limited (ISA-18.2): at most 365 days; 1e15 ms (31,000 years) is refused.
    expectCode(() => engine.shelve(PRESSURE_HI, { durationMs: 1e15 }), "KILN_VALIDATION");
    expectCode(() => engine.shelve(PRESSURE_HI, { durationMs: 365 * 86_400_000 + 1 }), "KILN_VALIDATION");
    expect(engine.shelve(PRESSURE_HI, { durationMs: 365 * 86_400_000 }).state.name).toBe("shelved");
    expectCode(() => engine.shelve(PRESSURE_HI, { oneShot: false as true }), "KILN_VALIDATION");
    expect(engine.get(PRESSURE_HI).state.name).toBe("shelved"); // only the 365-day shelve above took
  });

  it("a timed shelf expires on the clock and the alarm shows unacknowledged if still active", async () => {
    const { engine, feed, clock, transitions } = setup([pressureHigh()]);
    feed("chamber.pressure", 6);
    engine.acknowledge(PRESSURE_HI, "olivia");
    const shelvedAt = clock.now();
    const shelved = engine.shelve(PRESSURE_HI, { durationMs: 60_000 }, "olivia");
    expect(shelved.state).toEqual({
      name: "shelved",
      shelf: { mode: "timed", until: shelvedAt + 60_000, durationMs: 60_000 },
      underlying: { name: "acknowledged" },
    });
    await clock.advance(59_999);
    expect(engine.get(PRESSURE_HI).state.name).toBe("shelved");
    await clock.advance(1);
    expect(engine.get(PRESSURE_HI).state).toEqual({ name: "unacknowledged" });
    expect(transitions().slice(-2)).toEqual(["acknowledged->shelved:shelve", "shelved->unacknowledged:shelve-expire"]);
  });

  it("a timed shelf that expires after the condition cleared returns to normal", async () => {
    const { engine, feed, clock } = setup([pressureHigh()]);
    feed("chamber.pressure", 6);
    engine.shelve(PRESSURE_HI, { durationMs: 10_000 });
    feed("chamber.pressure", 4);
    expect(engine.get(PRESSURE_HI).state).toMatchObject({
      name: "shelved",
      underlying: { name: "rtn-unacknowledged" },
    });
    await clock.advance(10_000);
    expect(engine.get(PRESSURE_HI).state).toEqual({ name: "normal" });
    expect(clock.pendingTimers).toBe(0);
  });

  it("a manual unshelve returns acknowledged while active and normal otherwise, cancelling the timer", async () => {
    const { engine, feed, clock, transitions } = setup([pressureHigh()]);
    feed("chamber.pressure", 6);
    engine.shelve(PRESSURE_HI, { durationMs: 60_000 });
    expect(clock.pendingTimers).toBe(1);
    expect(engine.unshelve(PRESSURE_HI, "olivia")).toMatchObject({
      state: { name: "acknowledged" },
      ackedBy: "olivia",
    });
    expect(clock.pendingTimers).toBe(0);
    feed("chamber.pressure", 4);
    engine.shelve(PRESSURE_HI, { durationMs: 60_000 });
    expect(engine.unshelve(PRESSURE_HI).state).toEqual({ name: "normal" });
    await clock.advance(120_000);
    expect(transitions()).toEqual([
      "normal->unacknowledged:process-activate",
      "unacknowledged->shelved:shelve",
      "shelved->acknowledged:unshelve",
      "acknowledged->normal:process-clear",
      "normal->shelved:shelve",
      "shelved->normal:unshelve",
    ]);
  });

  it("a one-shot shelf holds while active and ends when the alarm next returns to normal", () => {
    const { engine, feed, of, transitions, start } = setup([pressureHigh()]);
    feed("chamber.pressure", 6);
    engine.shelve(PRESSURE_HI, { oneShot: true });
    feed("chamber.pressure", 7);
    expect(engine.get(PRESSURE_HI).state).toEqual({
      name: "shelved",
      shelf: { mode: "one-shot", until: start + DAYS_365 },
      underlying: { name: "unacknowledged" },
    });
    feed("chamber.pressure", 4);
    expect(engine.get(PRESSURE_HI).state).toEqual({ name: "normal" });
    feed("chamber.pressure", 6);
    expect(engine.get(PRESSURE_HI).state).toEqual({ name: "unacknowledged" });
    expect(transitions()).toEqual([
      "normal->unacknowledged:process-activate",
      "unacknowledged->shelved:shelve",
      "shelved->normal:process-clear",
      "normal->unacknowledged:process-activate",
    ]);
    expect(of("alarm-raise").map((event) => event.state)).toEqual(["unacknowledged", "unacknowledged"]);
  });

  // Issue 15, fifth review: a one-shot shelf had no time limit (an alarm that never clears stayed hidden for ever).
  it("a one-shot shelf of an alarm that never clears ends at 365 days, like the longest timed shelf", async () => {
    const { engine, feed, clock, transitions } = setup([pressureHigh()]);
    feed("chamber.pressure", 6);
    engine.shelve(PRESSURE_HI, { oneShot: true });
    await clock.advance(DAYS_365 - 1);
    expect(engine.get(PRESSURE_HI).state.name).toBe("shelved");
    await clock.advance(1);
    expect(engine.get(PRESSURE_HI).state).toEqual({ name: "unacknowledged" });
    expect(transitions().slice(-2)).toEqual([
      "unacknowledged->shelved:shelve",
      "shelved->unacknowledged:shelve-expire",
    ]);
  });

  it("a one-shot shelf that ends because the alarm cleared leaves no timer to fire later", async () => {
    const { engine, feed, clock, transitions } = setup([pressureHigh()]);
    feed("chamber.pressure", 6);
    engine.shelve(PRESSURE_HI, { oneShot: true });
    feed("chamber.pressure", 4);
    feed("chamber.pressure", 6);
    engine.acknowledge(PRESSURE_HI);
    await clock.advance(DAYS_365 + 1);
    expect(engine.get(PRESSURE_HI).state).toEqual({ name: "acknowledged" });
    expect(transitions().at(-1)).toBe("unacknowledged->acknowledged:acknowledge");
  });

  it("records activations of a shelved alarm without annunciating them", async () => {
    const { engine, feed, of, history } = setup([pressureHigh()]);
    engine.shelve(PRESSURE_HI, { durationMs: 60_000 });
    feed("chamber.pressure", 6);
    expect(of("alarm-raise")).toEqual([expect.objectContaining({ state: "shelved" })]);
    await engine.flush();
    expect(history.entries.at(-1)).toMatchObject({ from: "shelved", to: "shelved", cause: "process-activate" });
    expect(engine.get(PRESSURE_HI).state).toMatchObject({ underlying: { name: "unacknowledged" } });
  });

  it("suppresses by design while a tag rule holds, and annunciates an active alarm when it ends", () => {
    const { engine, feed, transitions } = setup([
      {
        tag: "chamber.pressure",
        kind: "LO",
        setpoint: 1,
        priority: 3,
        suppressWhen: { tag: "pump.running", equals: false },
      },
    ]);
    feed("pump.running", false);
    feed("chamber.pressure", 0.2);
    expect(engine.get("chamber.pressure:LO")).toMatchObject({ active: true, state: { name: "suppressed" } });
    feed("pump.running", true);
    expect(engine.get("chamber.pressure:LO").state).toEqual({ name: "unacknowledged" });
    expect(transitions()).toEqual([
      "normal->suppressed:suppress-condition",
      "suppressed->suppressed:process-activate",
      "suppressed->unacknowledged:unsuppress-condition",
    ]);
  });

  it("evaluates suppression functions with the last good values, and on demand for host state", () => {
    let maintenance = false;
    const { engine, feed } = setup([
      pressureHigh({
        suppressWhen: (context) => maintenance || context.value("machine.mode") === "idle",
      }),
    ]);
    feed("machine.mode", "idle");
    expect(engine.get(PRESSURE_HI).state.name).toBe("suppressed");
    feed("machine.mode", "bogus", "bad"); // bad quality: the last good value still counts
    expect(engine.get(PRESSURE_HI).state.name).toBe("suppressed");
    feed("machine.mode", "processing");
    expect(engine.get(PRESSURE_HI).state.name).toBe("normal");
    maintenance = true;
    engine.evaluateSuppression();
    expect(engine.get(PRESSURE_HI).state.name).toBe("suppressed");
  });

  it("treats a throwing suppression function as not suppressing and reports it once", () => {
    const { engine, feed, of } = setup([
      pressureHigh({
        suppressWhen: () => {
          throw new Error("bug in condition");
        },
      }),
    ]);
    feed("chamber.pressure", 6);
    feed("chamber.pressure", 7);
    expect(engine.get(PRESSURE_HI).state.name).toBe("unacknowledged");
    expect(engine.stats.conditionFailures).toBe(2);
    expect(of("alarm-condition-fail")).toEqual([expect.objectContaining({ alarmId: PRESSURE_HI })]);
  });

  it("combines command and condition suppression: suppressed until both end", () => {
    const { engine, feed } = setup([pressureHigh({ suppressWhen: { tag: "door.open", equals: true } })]);
    engine.suppress(PRESSURE_HI, "logic");
    feed("door.open", true);
    expect(engine.get(PRESSURE_HI).state).toMatchObject({ name: "suppressed", by: ["command", "condition"] });
    expectCode(() => engine.suppress(PRESSURE_HI), "KILN_INVALID_TRANSITION");
    feed("chamber.pressure", 6);
    engine.unsuppress(PRESSURE_HI, "logic");
    expect(engine.get(PRESSURE_HI).state).toMatchObject({ name: "suppressed", by: ["condition"] });
    feed("door.open", false);
    expect(engine.get(PRESSURE_HI).state).toEqual({ name: "unacknowledged" });
  });

  it("removes from service and returns by the current condition", () => {
    const { engine, feed, transitions } = setup([pressureHigh()]);
    engine.removeFromService(PRESSURE_HI, "tech");
    expectCode(() => engine.removeFromService(PRESSURE_HI), "KILN_INVALID_TRANSITION");
    expectCode(() => engine.acknowledge(PRESSURE_HI), "KILN_INVALID_TRANSITION");
    feed("chamber.pressure", 6);
    expect(engine.get(PRESSURE_HI)).toMatchObject({ active: true, state: { name: "out-of-service" } });
    engine.returnToService(PRESSURE_HI, "tech");
    expect(engine.get(PRESSURE_HI).state).toEqual({ name: "unacknowledged" });
    engine.removeFromService(PRESSURE_HI, "tech");
    feed("chamber.pressure", 4);
    engine.returnToService(PRESSURE_HI, "tech");
    expect(transitions()).toEqual([
      "normal->out-of-service:remove-from-service",
      "out-of-service->out-of-service:process-activate",
      "out-of-service->unacknowledged:return-to-service",
      "unacknowledged->out-of-service:remove-from-service",
      "out-of-service->out-of-service:process-clear",
      "out-of-service->normal:return-to-service",
    ]);
  });
});

describe("AlarmEngine: interlocks", () => {
  const interlocked = (): AlarmDefinitionInput =>
    pressureHigh({ interlock: true, suppressWhen: { tag: "machine.mode", equals: "maintenance" } });

  it("trips once when an interlock alarm activates, even while shelved", () => {
    const { engine, feed, of, clock } = setup([interlocked()]);
    engine.shelve(PRESSURE_HI, { durationMs: 60_000 });
    feed("chamber.pressure", 8.5);
    feed("chamber.pressure", 9);
    expect(engine.unshelve(PRESSURE_HI).state.name).toBe("acknowledged");
    expect(of("interlock-trip")).toEqual([
      { at: clock.now(), alarmId: PRESSURE_HI, tag: "chamber.pressure", value: 8.5 },
    ]);
    feed("chamber.pressure", 2);
    feed("chamber.pressure", 9.5);
    expect(of("interlock-trip").map((event) => event.value)).toEqual([8.5, 9.5]);
  });

  it("does not trip while suppressed or out of service, and trips on return while still active", () => {
    const { engine, feed, of } = setup([interlocked()]);
    feed("machine.mode", "maintenance");
    feed("chamber.pressure", 9);
    engine.removeFromService(PRESSURE_HI);
    feed("machine.mode", "processing");
    expect(of("interlock-trip")).toEqual([]);
    engine.returnToService(PRESSURE_HI);
    expect(of("interlock-trip")).toHaveLength(1);
  });

  it("does not trip for alarms without the interlock flag", () => {
    const { feed, of } = setup([pressureHigh()]);
    feed("chamber.pressure", 9);
    expect(of("interlock-trip")).toEqual([]);
  });
});

describe("AlarmEngine: history and lifecycle", () => {
  it("keeps running when the history fails, counting and publishing each failure", async () => {
    const { engine, feed, history, of } = setup([pressureHigh()]);
    history.fail = true;
    feed("chamber.pressure", 6);
    engine.acknowledge(PRESSURE_HI);
    await engine.flush();
    expect(engine.get(PRESSURE_HI).state.name).toBe("acknowledged");
    expect(engine.stats).toMatchObject({ historyFailures: 2, pendingHistoryWrites: 0 });
    expect(of("alarm-history-fail")).toHaveLength(2);
    history.fail = false;
    feed("chamber.pressure", 4);
    await engine.flush();
    expect(history.entries).toEqual([expect.objectContaining({ from: "acknowledged", to: "normal" })]);
  });

  it("bounds the history writes waiting for a slow store", async () => {
    const { engine, feed, history, of } = setup([pressureHigh()], { maxPendingHistoryWrites: 2 });
    history.hold = true;
    feed("chamber.pressure", 6);
    feed("chamber.pressure", 4);
    feed("chamber.pressure", 6);
    await Promise.resolve();
    expect(engine.stats).toMatchObject({ historyFailures: 1, pendingHistoryWrites: 2 });
    const failure = of("alarm-history-fail")[0]!;
    expect(KilnError.is(failure.error, "KILN_BUFFER_FULL")).toBe(true);
  });

  it("works without a bus or a history", () => {
    const clock = new SimulatedClock();
    const engine = new AlarmEngine({ clock, tags, definitions: [pressureHigh()] });
    engine.observe({ tag: "chamber.pressure", value: 6, timestamp: clock.now(), quality: GOOD });
    expect(engine.acknowledge(PRESSURE_HI).state.name).toBe("acknowledged");
  });

  it("dispose cancels every timer and refuses further work", () => {
    const { engine, feed, clock } = setup([pressureHigh({ onDelayMs: 1_000 })]);
    feed("chamber.pressure", 6);
    engine.shelve(PRESSURE_HI, { durationMs: 60_000 });
    expect(clock.pendingTimers).toBe(2);
    engine.dispose();
    expect(clock.pendingTimers).toBe(0);
    expectCode(() => feed("chamber.pressure", 6), "KILN_LIFECYCLE");
    expectCode(() => engine.unshelve(PRESSURE_HI), "KILN_LIFECYCLE");
    expectCode(() => engine.resume(), "KILN_LIFECYCLE");
  });

  it("suspend cancels every timer until resume, which re-arms timed shelves and drops pending delays", async () => {
    const { engine, feed, clock, transitions } = setup([pressureHigh({ onDelayMs: 1_000 })]);
    feed("chamber.pressure", 6);
    engine.shelve(PRESSURE_HI, { durationMs: 60_000 });
    engine.suspend();
    expect(clock.pendingTimers).toBe(0);
    expectCode(() => feed("chamber.pressure", 6), "KILN_LIFECYCLE");
    expectCode(() => engine.unshelve(PRESSURE_HI), "KILN_LIFECYCLE");
    await clock.advance(120_000); // the shelf ran out while suspended
    expect(engine.get(PRESSURE_HI).state.name).toBe("shelved");
    engine.resume();
    await clock.advance(0);
    expect(engine.get(PRESSURE_HI).state.name).toBe("normal"); // expired at once, the on-delay did not survive
    expect(transitions()).toEqual(["normal->shelved:shelve", "shelved->normal:shelve-expire"]);
    feed("chamber.pressure", 6);
    await clock.advance(1_000); // the next sample starts the on-delay again
    expect(engine.get(PRESSURE_HI).active).toBe(true);
  });
});
