import { describe, expect, test } from "vitest";
import { quality, QualityCodes } from "../domain/quality";
import { heldWriteSystem } from "../../test/support/held-write-system";
import { admin, engineer } from "../../test/support/safety-harness";
import { auditTrailAfterStop } from "../../test/support/simulated-system";

// Adversarial review 15d. H1: a start slipped in while a manual fault/abort with no process wrote
// the safe state, and then ran on a faulted machine. H2: manual writes queued before (or issued
// during) a manual stop, fault or abort landed after its safe state and undid it. Both now meet the
// trip's fence (one mechanism): from the decision, starts are refused and earlier writes are not
// sent. M3: a bad interlock input tripped a process already aborted (an idle machine), once per flap.

const NEXT = {
  name: "n",
  version: 1,
  steps: [{ set: { tag: "stirrer.speed", value: 10 } }, { wait: { durationMs: 60_000 } }],
};

describe("a manual stop, fault or abort is fenced as a trip (review 15d, H1)", () => {
  for (const [model, command, end] of [
    ["kiln", "fault", "error"],
    ["packml", "abort", "aborted"],
  ] as const) {
    test(`${model} ${command} with no process, safe state held: a start issued meanwhile is refused, nothing runs`, async () => {
      const parts = await heldWriteSystem(model, { tag: "heater.setpoint", value: 0 }, { timeoutMs: 10_000 });
      const { system } = parts;
      const stopped = system.sendMachineCommand(admin, command);
      await parts.scans(1);
      const started = system.startRecipe(engineer, NEXT).then(
        () => "started",
        (error: unknown) => error,
      );
      await parts.scans(3);
      parts.release();
      expect(await stopped).toBe(end);
      expect(await started).toMatchObject({ code: "KILN_INVALID_TRANSITION", details: { tripping: true } });
      await parts.scans(4);
      expect(system.machineState).toBe(end);
      expect(parts.values("stirrer.speed")).toEqual([]);
      await system.stop();
    });
  }
});

describe("a manual write issued before a manual stop, fault or abort is not sent after its safe state (review 15d, H2)", () => {
  for (const [model, command, withProcess] of [
    ["kiln", "fault", false],
    ["packml", "abort", false],
    ["kiln", "fault", true],
  ] as const) {
    test(`${model} ${command}${withProcess ? " with a process" : ""}: the queued writes are refused, the safe state stays`, async () => {
      const parts = await heldWriteSystem(model, { tag: "heater.setpoint", value: 50 }, { timeoutMs: 10_000 });
      const { system } = parts;
      if (withProcess) {
        await system.startRecipe(admin, NEXT);
        await parts.scans(2);
      }
      const holding = system.writeTag(admin, "heater.setpoint", 50).catch((error: unknown) => error);
      const queued = [
        system.writeTag(admin, "valve.h2o", true).catch((error: unknown) => error),
        system.writeTag(admin, "heater.setpoint", 300).catch((error: unknown) => error),
      ];
      await parts.scans(1);
      const stopped = system.sendMachineCommand(admin, command);
      await parts.scans(2);
      parts.release();
      await holding;
      await stopped;
      for (const refused of await Promise.all(queued)) {
        expect(refused).toMatchObject({ code: "KILN_INVALID_TRANSITION", details: { stage: "trip" } });
      }
      await parts.scans(4);
      // The held 50, then the safe state's 0; never 300 after it.
      expect(parts.values("heater.setpoint").at(-1)).toBe(0);
      expect(parts.values("heater.setpoint")).not.toContain(300);
      expect(parts.values("valve.h2o")).not.toContain(true);
      await system.stop();
    });
  }
});

test("(sibling) a manual write issued while a manual fault writes the safe state is refused, not sent after it", async () => {
  const parts = await heldWriteSystem("kiln", { tag: "valve.h2o", value: false }, { timeoutMs: 10_000 });
  const { system } = parts;
  const stopped = system.sendMachineCommand(admin, "fault");
  await parts.scans(1);
  const written = system.writeTag(engineer, "heater.setpoint", 300).catch((error: unknown) => error);
  await parts.scans(2);
  parts.release();
  expect(await stopped).toBe("error");
  expect(await written).toMatchObject({ code: "KILN_INVALID_TRANSITION", details: { stage: "trip" } });
  await parts.scans(4);
  expect(parts.values("heater.setpoint")).toEqual([0]);
  await system.stop();
});

describe("an untrusted interlock input trips only a process actually running, once (review 15d, M3)", () => {
  const HOLD = {
    name: "hold",
    version: 1,
    steps: [{ set: { tag: "stirrer.speed", value: 40 } }, { wait: { durationMs: 60_000 } }],
  };
  async function flappingSystem() {
    const flag = { bad: false };
    const parts = await heldWriteSystem(
      "kiln",
      { tag: "stirrer.speed", value: 40 },
      {
        timeoutMs: 10_000,
        mapRead: (sample) =>
          sample.tag === "chamber.pressure" && flag.bad
            ? { ...sample, quality: quality("bad", "sensor broken", QualityCodes.BadDeviceFailure) }
            : sample,
      },
    );
    return { parts, flag };
  }

  test("(the example) a bad input after the abort, the process still ending: no trip, the machine stays idle", async () => {
    const { parts, flag } = await flappingSystem();
    await parts.system.startRecipe(engineer, HOLD);
    await parts.scans(2);
    void parts.system.abortProcess(engineer).catch(() => undefined);
    await parts.scans(1);
    flag.bad = true;
    await parts.scans(6);
    expect(parts.system.machineState).toBe("idle");
    parts.release();
    await parts.scans(4);
    const trail = await auditTrailAfterStop(parts);
    expect(trail.map((entry) => entry.action)).not.toContain("machine.trip");
  });

  test("(sibling) an input flapping bad/good while the process runs: one machine.trip for the process", async () => {
    const { parts, flag } = await flappingSystem();
    await parts.system.startRecipe(engineer, HOLD);
    await parts.scans(2);
    for (let flap = 0; flap < 10; flap++) {
      flag.bad = !flag.bad;
      await parts.scans(1);
    }
    flag.bad = false;
    expect(parts.system.machineState).toBe("error");
    parts.release();
    await parts.scans(4);
    const trail = await auditTrailAfterStop(parts);
    expect(trail.filter((entry) => entry.action === "machine.trip")).toHaveLength(1);
  });
});

// Adversarial review 15f, M2: a bad interlock input while a manual stop wrote its safe state was
// ignored without a trace, where a value trip in the same window escalated the stop to a fault
// (machine.trip audited, the next start needs a reset). Both now act the same.
describe("a bad interlock input while a stop or abort acts escalates it as a value trip does (review 15f, M2)", () => {
  for (const how of ["a manual stop (the example)", "abortProcess (sibling)"]) {
    test(`${how}: faulted, machine.trip audited, the next start refused until reset`, async () => {
      const flag = { bad: false };
      const parts = await heldWriteSystem(
        "kiln",
        { tag: "heater.setpoint", value: 0 },
        {
          timeoutMs: 2_000,
          mapRead: (sample) =>
            sample.tag === "chamber.pressure" && flag.bad
              ? { ...sample, quality: quality("bad", "sensor broken", QualityCodes.BadDeviceFailure) }
              : sample,
        },
      );
      const { system } = parts;
      await parts.scans(2);
      await system.startRecipe(admin, NEXT);
      await parts.scans(2);
      const stopping = how.startsWith("a manual")
        ? system.sendMachineCommand(admin, "stop")
        : system.abortProcess(admin).then((result) => result.status);
      await parts.scans(2);
      flag.bad = true;
      await parts.scans(4);
      flag.bad = false;
      await parts.scans(4);
      parts.release();
      await parts.scans(10);
      await stopping;
      expect(system.machineState).toBe("error");
      await expect(system.startRecipe(admin, NEXT)).rejects.toMatchObject({ code: "KILN_INVALID_TRANSITION" });
      const trail = await auditTrailAfterStop(parts);
      expect(trail.filter((entry) => entry.action === "machine.trip")).toHaveLength(1);
    });
  }
});
