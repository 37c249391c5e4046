import { describe, expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import { auditTrailAfterStop, simulatedSystem } from "../../test/support/simulated-system";

const tags = defineTags({
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, scanGroup: "fast" },
});
const operator = { id: "olga", roles: ["operator"] };
const engineer = { id: "erik", roles: ["engineer"] };

async function build() {
  const parts = simulatedSystem({
    tags,
    scanGroups: { fast: { periodMs: 50 } },
    alarms: [{ tag: "heater.setpoint", kind: "HI", setpoint: 300, priority: 2, message: "hot" }],
  });
  const failures: KilnEvents["command-fail"][] = [];
  parts.system.bus.on("command-fail", (event) => void failures.push(event));
  await parts.system.start();
  await parts.clock.advance(100);
  const alarmId = parts.system.listAlarms()[0]!.id;
  return { ...parts, alarmId, failures, audit: () => auditTrailAfterStop(parts) };
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  return promise.then(
    () => "ok",
    (error: { code?: string }) => error.code,
  );
}

describe("a refused alarm command is recorded denied, not allowed (issue 15, second review)", () => {
  test("acknowledging a normal alarm, unshelving one not shelved, shelving with bad options", async () => {
    const { system, alarmId, failures, audit } = await build();
    expect(await codeOf(system.acknowledgeAlarm(operator, alarmId, "all good"))).toBe("KILN_INVALID_TRANSITION");
    expect(await codeOf(system.unshelveAlarm(operator, alarmId))).toBe("KILN_INVALID_TRANSITION");
    expect(await codeOf(system.shelveAlarm(operator, alarmId, { durationMs: -5 }))).toBe("KILN_VALIDATION");
    expect(await codeOf(system.shelveAlarm(operator, alarmId, { foo: 1 } as never))).toBe("KILN_VALIDATION");
    expect(system.listAlarms()[0]!.state.name).toBe("normal");
    expect(failures).toEqual([]);
    const trail = await audit();
    expect(trail.map((entry) => [entry.action, entry.outcome])).toEqual([
      ["alarm.acknowledge", "denied"],
      ["alarm.unshelve", "denied"],
      ["alarm.shelve", "denied"],
      ["alarm.shelve", "denied"],
    ]);
    expect(trail[0]?.reason).toMatch(/^KILN_INVALID_TRANSITION: .*\(comment: all good\)$/);
  });

  test("suppressing twice or taking out of service twice: the second is denied", async () => {
    const { system, alarmId, failures, audit } = await build();
    await system.suppressAlarm(engineer, alarmId, true);
    expect(await codeOf(system.suppressAlarm(engineer, alarmId, true))).toBe("KILN_INVALID_TRANSITION");
    await system.suppressAlarm(engineer, alarmId, false);
    await system.setAlarmInService(engineer, alarmId, false);
    expect(await codeOf(system.setAlarmInService(engineer, alarmId, false))).toBe("KILN_INVALID_TRANSITION");
    expect(failures).toEqual([]);
    const trail = await audit();
    expect(trail.map((entry) => [entry.action, entry.outcome])).toEqual([
      ["alarm.suppress", "allowed"],
      ["alarm.suppress", "denied"],
      ["alarm.suppress", "allowed"],
      ["alarm.out-of-service", "allowed"],
      ["alarm.out-of-service", "denied"],
    ]);
  });
});

describe("an alarm entry records what was requested (issue 15, second review, CR 2.8)", () => {
  test("suppress true/false, in service false/true and the shelve options are the entry's newValue", async () => {
    const { system, alarmId, audit } = await build();
    await system.suppressAlarm(engineer, alarmId, true);
    await system.suppressAlarm(engineer, alarmId, false);
    await system.setAlarmInService(engineer, alarmId, false);
    await system.setAlarmInService(engineer, alarmId, true);
    await system.shelveAlarm(operator, alarmId, { durationMs: 60_000 });
    await system.unshelveAlarm(operator, alarmId);
    await system.shelveAlarm(operator, alarmId, { oneShot: true });
    const trail = await audit();
    expect(trail.map((entry) => [entry.action, entry.newValue ?? null])).toEqual([
      ["alarm.suppress", true],
      ["alarm.suppress", false],
      ["alarm.out-of-service", false],
      ["alarm.out-of-service", true],
      ["alarm.shelve", { durationMs: 60_000 }],
      ["alarm.unshelve", null],
      ["alarm.shelve", { oneShot: true }],
    ]);
  });

  test.each([
    ["suppressAlarm", "suppressed"],
    ["setAlarmInService", "inService"],
  ] as const)(
    '%s with a string "false" is refused with KILN_VALIDATION naming %s, recorded denied',
    async (method, field) => {
      const { system, alarmId, audit } = await build();
      const error = await system[method](engineer, alarmId, "false" as never).then(
        () => undefined,
        (caught: { code?: string; message: string }) => caught,
      );
      expect(error?.code).toBe("KILN_VALIDATION");
      expect(error?.message).toContain(field);
      expect(system.listAlarms()[0]!.state.name).toBe("normal");
      const trail = await audit();
      expect(trail.map((entry) => [entry.outcome, entry.newValue])).toEqual([["denied", "false"]]);
    },
  );
});
