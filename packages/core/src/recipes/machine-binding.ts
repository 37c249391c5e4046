import type { KilnMachineCommand, KilnMachineState } from "../fsm/kiln-machine-model";
import type { PackmlCommand, PackmlState } from "../fsm/packml-model";

/**
 * How a recipe executor drives a machine's state machine. The executor calls these at the
 * process's status changes; a binding translates them into the commands of its machine model.
 * Every method rejects (typically with `KILN_INVALID_TRANSITION`) when the machine cannot
 * follow.
 *
 * Write your own for a machine model other than {@link kilnMachineBinding} and
 * {@link packmlMachineBinding}, or when acting states (`starting`, `stopping`) must wait for
 * the PLC instead of completing at once.
 */
export interface MachineBinding {
  /** The machine's id. */
  readonly machineId: string;
  /** Takes the machine from its ready state to its running state. Rejects when it is not ready. */
  begin(): Promise<void>;
  /**
   * Whether {@link begin} would be accepted now (the machine is in a state a process starts
   * from). The executor asks before it saves a process, so a start the machine refuses leaves no
   * process record and no `process-end` (adversarial review 15y, L8). Optional: without it a
   * refusal surfaces from `begin()`, after the process was saved (then recorded `failed`, with no
   * process events). Synchronous, no side effect.
   */
  canBegin?(): boolean;
  /** Moves the running machine to its paused state. */
  pause(): Promise<void>;
  /** Moves the paused machine back to its running state. */
  resume(): Promise<void>;
  /** Brings the machine back to its ready state after a completed or aborted process. */
  end(outcome: "completed" | "aborted"): Promise<void>;
  /**
   * Moves the machine to its error state (failed process, interlock trip). Does nothing when it
   * is already there, or where its model has no fault transition (nothing is running there).
   * A machine another fault took there meanwhile (two trips in one scan) is success, not a
   * refusal (adversarial review 15w, M5).
   */
  fault(reason: string): Promise<void>;
}

/** The part of a `StateMachine` a binding uses. */
export interface DrivableMachine<TState extends string, TCommand extends string> {
  /** The machine's id. */
  readonly machineId: string;
  /** The current state. */
  readonly state: TState;
  /** True when the current state accepts `command`. */
  can(command: TCommand): boolean;
  /** Sends `command`; resolves with the new state, rejects when refused. */
  send(command: TCommand): Promise<TState>;
}

/**
 * Binds a machine on the {@link kilnMachineModel}:
 *
 * | executor            | commands                                   |
 * |---------------------|--------------------------------------------|
 * | `begin`             | `start`, `started` (idle → processing)     |
 * | `pause` / `resume`  | `pause` / `resume`                         |
 * | `end`               | `stop`, `stopped` (→ idle)                 |
 * | `fault`             | `fault` (→ error) where the model has it (`idle` too); nothing in `maintenance`, `error` |
 *
 * `starting` and `stopping` complete at once. When `started` is refused, the binding stops the
 * machine again before rejecting, so it is not left in `starting`.
 */
export function kilnMachineBinding(machine: DrivableMachine<KilnMachineState, KilnMachineCommand>): MachineBinding {
  return {
    machineId: machine.machineId,
    canBegin: () => machine.can("start"),
    async begin() {
      await machine.send("start");
      try {
        await machine.send("started");
      } catch (error) {
        await bestEffort(async () => {
          if (machine.can("stop")) await machine.send("stop");
          if (machine.can("stopped")) await machine.send("stopped");
        });
        throw error;
      }
    },
    async pause() {
      await machine.send("pause");
    },
    async resume() {
      await machine.send("resume");
    },
    async end() {
      if (machine.state === "idle" || machine.state === "error") return;
      if (machine.can("stop")) await machine.send("stop");
      await machine.send("stopped");
    },
    async fault() {
      // maintenance and error have no `fault` transition: nothing runs there to stop.
      if (!machine.can("fault")) return;
      try {
        await machine.send("fault");
      } catch (error) {
        // Sends are queued: another fault (a second trip in the same scan) may have taken the
        // machine to `error` before this one's turn. Faulted is what was asked: success, not a
        // false failure (adversarial review 15w, M5).
        if (machine.state === "error" || machine.state === "maintenance") return;
        throw error;
      }
    },
  };
}

/**
 * Binds a machine on the {@link packmlModel}. Acting states complete at once
 * (`stateComplete` is sent right after each command):
 *
 * | executor            | commands                                                          |
 * |---------------------|-------------------------------------------------------------------|
 * | `begin`             | from `stopped`/`completed`: `reset`, SC; then `start`, SC (→ execute) |
 * | `pause` / `resume`  | `hold`, SC (→ held) / `unhold`, SC (→ execute)                    |
 * | `end("completed")`  | `complete`, SC (→ completed)                                      |
 * | `end("aborted")`    | `stop`, SC (→ stopped): a controlled stop, the safe state is already written |
 * | `fault`             | `abort`, SC (→ aborted; `clear` brings it back), unless already aborting/aborted |
 */
export function packmlMachineBinding(machine: DrivableMachine<PackmlState, PackmlCommand>): MachineBinding {
  const step = async (command: PackmlCommand): Promise<void> => {
    await machine.send(command);
    await machine.send("stateComplete");
  };
  return {
    machineId: machine.machineId,
    canBegin: () =>
      machine.state === "stopped" || machine.state === "completed" ? machine.can("reset") : machine.can("start"),
    async begin() {
      if (machine.state === "stopped" || machine.state === "completed") await step("reset");
      await step("start");
    },
    async pause() {
      await step("hold");
    },
    async resume() {
      await step("unhold");
    },
    async end(outcome) {
      if (outcome === "completed") await step("complete");
      else if (machine.state !== "stopped" && machine.state !== "aborted") await step("stop");
    },
    async fault() {
      // Sends are queued: another fault (a second trip in the same scan) may abort the machine
      // before this one's turn. Aborting or aborted is what was asked: success (review 15w, M5).
      // Read afresh each time: another fault moves the machine while this one waits its turn.
      const state = (): PackmlState => machine.state;
      const faulted = (): boolean => state() === "aborted";
      if (faulted()) return;
      if (state() !== "aborting") {
        try {
          await machine.send("abort");
        } catch (error) {
          if (state() !== "aborting" && !faulted()) throw error;
        }
      }
      if (faulted()) return;
      try {
        await machine.send("stateComplete");
      } catch (error) {
        if (!faulted()) throw error;
      }
    },
  };
}

async function bestEffort(action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch {
    // The original error is the one to report; this rollback is only an attempt.
  }
}
