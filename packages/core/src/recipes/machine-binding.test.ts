import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { kilnMachineModel } from "../fsm/kiln-machine-model";
import { packmlModel } from "../fsm/packml-model";
import { StateMachine } from "../fsm/state-machine";
import { SimulatedClock } from "../memory/simulated-clock";
import { kilnMachineBinding, packmlMachineBinding } from "./machine-binding";

const clock = new SimulatedClock({ start: 0 });

describe("kilnMachineBinding", () => {
  test("begin → processing, pause/resume, end → idle; fault → error (from idle too), a no-op in maintenance and error", async () => {
    const machine = new StateMachine(kilnMachineModel, { machineId: "m", clock });
    const binding = kilnMachineBinding(machine);
    await binding.begin();
    expect(machine.state).toBe("processing");
    await binding.pause();
    expect(machine.state).toBe("paused");
    await binding.resume();
    await binding.end("completed");
    expect(machine.state).toBe("idle");
    // A trip with no process still faults the machine: it needs a reset (review 15z, H2).
    await binding.fault("nothing running");
    expect(machine.state).toBe("error");
    await machine.send("enterMaintenance");
    await binding.fault("in maintenance");
    expect(machine.state).toBe("maintenance");
    await machine.send("exitMaintenance");
    await binding.begin();
    await binding.fault("overpressure");
    expect(machine.state).toBe("error");
    await binding.fault("again");
    await binding.end("aborted");
    expect(machine.state).toBe("error");
  });

  test("when `started` is refused, begin stops the machine again and rejects", async () => {
    const machine = new StateMachine(kilnMachineModel, {
      machineId: "m",
      clock,
      guards: { started: () => ({ allowed: false, reason: "door open" }) },
    });
    const error: unknown = await kilnMachineBinding(machine)
      .begin()
      .then(
        () => undefined,
        (reason: unknown) => reason,
      );
    expect(KilnError.is(error, "KILN_INVALID_TRANSITION")).toBe(true);
    expect(machine.state).toBe("idle");
  });
});

describe("packmlMachineBinding", () => {
  test("begin from stopped resets then starts; end(aborted) stops; fault aborts", async () => {
    const machine = new StateMachine(packmlModel, { machineId: "m", clock });
    const binding = packmlMachineBinding(machine);
    await binding.begin();
    expect(machine.state).toBe("execute");
    await binding.end("aborted");
    expect(machine.state).toBe("stopped");
    await binding.begin();
    await binding.pause();
    expect(machine.state).toBe("held");
    await binding.fault("overpressure");
    expect(machine.state).toBe("aborted");
    await binding.fault("again");
    expect(machine.state).toBe("aborted");
  });
});
