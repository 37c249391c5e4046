import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { SimulatedClock } from "../memory/simulated-clock";
import { kilnMachineModel, type KilnMachineCommand, type KilnMachineState } from "./kiln-machine-model";
import { StateMachine } from "./state-machine";

// The founding blueprint's table, written out independently of the model object.
const STATES: readonly KilnMachineState[] = [
  "idle",
  "starting",
  "processing",
  "paused",
  "stopping",
  "error",
  "maintenance",
];
const COMMANDS: readonly KilnMachineCommand[] = [
  "start",
  "started",
  "pause",
  "resume",
  "stop",
  "stopped",
  "fault",
  "reset",
  "enterMaintenance",
  "exitMaintenance",
];
const ALLOWED: readonly (readonly [KilnMachineState, KilnMachineCommand, KilnMachineState])[] = [
  ["idle", "start", "starting"],
  ["starting", "started", "processing"],
  ["processing", "pause", "paused"],
  ["paused", "resume", "processing"],
  ["processing", "stop", "stopping"],
  ["paused", "stop", "stopping"],
  ["starting", "stop", "stopping"],
  ["stopping", "stopped", "idle"],
  ["starting", "fault", "error"],
  ["processing", "fault", "error"],
  ["paused", "fault", "error"],
  ["stopping", "fault", "error"],
  ["error", "reset", "idle"],
  ["idle", "enterMaintenance", "maintenance"],
  ["idle", "fault", "error"],
  ["error", "enterMaintenance", "maintenance"],
  ["maintenance", "exitMaintenance", "idle"],
];
const EXPECTED = new Map(ALLOWED.map(([from, command, to]) => [`${from} + ${command}`, to]));

describe("kilnMachineModel", () => {
  test("has exactly the blueprint's states and commands, starting in idle", () => {
    expect([...kilnMachineModel.states].sort()).toEqual([...STATES].sort());
    expect([...kilnMachineModel.commands].sort()).toEqual([...COMMANDS].sort());
    expect(kilnMachineModel.initial).toBe("idle");
    expect(kilnMachineModel.name).toBe("kiln");
  });

  describe("transition table, cell by cell", () => {
    for (const from of STATES) {
      for (const command of COMMANDS) {
        const to = EXPECTED.get(`${from} + ${command}`);
        test(`kiln: ${from} + ${command} → ${to ?? "KILN_INVALID_TRANSITION"}`, async () => {
          const machine = new StateMachine(kilnMachineModel, {
            machineId: "cell",
            clock: new SimulatedClock(),
            initial: from,
          });
          expect(machine.can(command)).toBe(to !== undefined);
          const outcome: unknown = await machine.send(command).catch((error: unknown) => error);
          if (to === undefined) {
            expect(KilnError.is(outcome, "KILN_INVALID_TRANSITION")).toBe(true);
            expect(machine.state).toBe(from);
          } else {
            expect(outcome).toBe(to);
            expect(machine.state).toBe(to);
          }
        });
      }
    }
  });
});
