import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { SimulatedClock } from "../memory/simulated-clock";
import { packmlModel, type PackmlCommand, type PackmlState } from "./packml-model";
import { StateMachine } from "./state-machine";

// ISA-TR88.00.02-2015 base state model, written as the standard states its rules (per command),
// independently of the model object, which is written per state.
const STATES: readonly PackmlState[] = [
  "stopped",
  "starting",
  "idle",
  "suspended",
  "execute",
  "stopping",
  "aborting",
  "aborted",
  "holding",
  "held",
  "unholding",
  "suspending",
  "unsuspending",
  "resetting",
  "completing",
  "completed",
  "clearing",
];
const COMMANDS: readonly PackmlCommand[] = [
  "reset",
  "start",
  "stop",
  "hold",
  "unhold",
  "suspend",
  "unsuspend",
  "abort",
  "clear",
  "complete",
  "stateComplete",
];
const except = (...excluded: PackmlState[]): PackmlState[] => STATES.filter((state) => !excluded.includes(state));

const RULES: readonly (readonly [PackmlCommand, readonly PackmlState[], PackmlState])[] = [
  ["abort", except("aborting", "aborted"), "aborting"],
  ["stop", except("stopped", "stopping", "aborting", "aborted", "clearing"), "stopping"],
  ["reset", ["completed", "stopped"], "resetting"],
  ["start", ["idle"], "starting"],
  ["hold", ["execute"], "holding"],
  ["unhold", ["held"], "unholding"],
  ["suspend", ["execute"], "suspending"],
  ["unsuspend", ["suspended"], "unsuspending"],
  ["clear", ["aborted"], "clearing"],
  ["complete", ["execute"], "completing"],
  ["stateComplete", ["starting"], "execute"],
  ["stateComplete", ["completing"], "completed"],
  ["stateComplete", ["resetting"], "idle"],
  ["stateComplete", ["holding"], "held"],
  ["stateComplete", ["unholding"], "execute"],
  ["stateComplete", ["suspending"], "suspended"],
  ["stateComplete", ["unsuspending"], "execute"],
  ["stateComplete", ["stopping"], "stopped"],
  ["stateComplete", ["aborting"], "aborted"],
  ["stateComplete", ["clearing"], "stopped"],
];

const EXPECTED = new Map<string, PackmlState>();
for (const [command, sources, to] of RULES) {
  for (const from of sources) {
    const key = `${from} + ${command}`;
    if (EXPECTED.has(key)) throw new Error(`expected table defines ${key} twice`);
    EXPECTED.set(key, to);
  }
}

describe("packmlModel", () => {
  test("has exactly the 17 PackML states and 11 commands, starting in stopped", () => {
    expect([...packmlModel.states].sort()).toEqual([...STATES].sort());
    expect([...packmlModel.commands].sort()).toEqual([...COMMANDS].sort());
    expect(packmlModel.initial).toBe("stopped");
    expect(packmlModel.name).toBe("packml");
  });

  test("runs a full production cycle from stopped back to idle", async () => {
    const clock = new SimulatedClock();
    const machine = new StateMachine(packmlModel, { machineId: "filler-1", clock });
    const visited: PackmlState[] = [machine.state];
    machine.onTransition(({ to }) => visited.push(to));
    const commands: PackmlCommand[] = ["reset", "stateComplete", "start", "stateComplete", "hold", "stateComplete"];
    commands.push("unhold", "stateComplete", "complete", "stateComplete", "reset", "stateComplete");
    for (const command of commands) await machine.send(command);
    expect(visited).toEqual([
      "stopped",
      "resetting",
      "idle",
      "starting",
      "execute",
      "holding",
      "held",
      "unholding",
      "execute",
      "completing",
      "completed",
      "resetting",
      "idle",
    ]);
  });

  describe("transition table, cell by cell", () => {
    for (const from of STATES) {
      for (const command of COMMANDS) {
        const to = EXPECTED.get(`${from} + ${command}`);
        test(`packml: ${from} + ${command} → ${to ?? "KILN_INVALID_TRANSITION"}`, async () => {
          const machine = new StateMachine(packmlModel, {
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
