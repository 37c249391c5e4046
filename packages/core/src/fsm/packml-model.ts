import { defineMachineModel, type MachineModel } from "./state-machine";

/** Every state of the {@link packmlModel} (ISA-TR88.00.02 / PackML), in the standard's order. */
export const PACKML_STATES = [
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
] as const satisfies readonly PackmlState[];

/** Every command of the {@link packmlModel}. */
export const PACKML_COMMANDS = [
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
] as const satisfies readonly PackmlCommand[];

/** A state of the {@link packmlModel} (TR88 "Complete" is spelt `completed`). */
export type PackmlState =
  | "stopped"
  | "starting"
  | "idle"
  | "suspended"
  | "execute"
  | "stopping"
  | "aborting"
  | "aborted"
  | "holding"
  | "held"
  | "unholding"
  | "suspending"
  | "unsuspending"
  | "resetting"
  | "completing"
  | "completed"
  | "clearing";

/** A command of the {@link packmlModel}; `stateComplete` is the standard's "SC". */
export type PackmlCommand =
  | "reset"
  | "start"
  | "stop"
  | "hold"
  | "unhold"
  | "suspend"
  | "unsuspend"
  | "abort"
  | "clear"
  | "complete"
  | "stateComplete";

/**
 * The PackML base state model of ANSI/ISA-TR88.00.02-2015, "Machine and Unit States: An
 * Implementation Example of ISA-88" (PackML v3 state model), as an alternative to
 * {@link kilnMachineModel} on the same {@link StateMachine}. A machine starts in `stopped`.
 *
 * Acting states (`starting`, `resetting`, `holding`, `unholding`, `suspending`,
 * `unsuspending`, `completing`, `stopping`, `aborting`, `clearing`) move on with
 * `stateComplete` (SC) when their work is done:
 *
 * | state          | reset       | start      | stop       | hold      | unhold      | suspend      | unsuspend      | abort      | clear      | complete     | stateComplete |
 * |----------------|-------------|------------|------------|-----------|-------------|--------------|----------------|------------|------------|--------------|---------------|
 * | `stopped`      | `resetting` |            |            |           |             |              |                | `aborting` |            |              |               |
 * | `resetting`    |             |            | `stopping` |           |             |              |                | `aborting` |            |              | `idle`        |
 * | `idle`         |             | `starting` | `stopping` |           |             |              |                | `aborting` |            |              |               |
 * | `starting`     |             |            | `stopping` |           |             |              |                | `aborting` |            |              | `execute`     |
 * | `execute`      |             |            | `stopping` | `holding` |             | `suspending` |                | `aborting` |            | `completing` |               |
 * | `holding`      |             |            | `stopping` |           |             |              |                | `aborting` |            |              | `held`        |
 * | `held`         |             |            | `stopping` |           | `unholding` |              |                | `aborting` |            |              |               |
 * | `unholding`    |             |            | `stopping` |           |             |              |                | `aborting` |            |              | `execute`     |
 * | `suspending`   |             |            | `stopping` |           |             |              |                | `aborting` |            |              | `suspended`   |
 * | `suspended`    |             |            | `stopping` |           |             |              | `unsuspending` | `aborting` |            |              |               |
 * | `unsuspending` |             |            | `stopping` |           |             |              |                | `aborting` |            |              | `execute`     |
 * | `completing`   |             |            | `stopping` |           |             |              |                | `aborting` |            |              | `completed`   |
 * | `completed`    | `resetting` |            | `stopping` |           |             |              |                | `aborting` |            |              |               |
 * | `stopping`     |             |            |            |           |             |              |                | `aborting` |            |              | `stopped`     |
 * | `aborting`     |             |            |            |           |             |              |                |            |            |              | `aborted`     |
 * | `aborted`      |             |            |            |           |             |              |                |            | `clearing` |              |               |
 * | `clearing`     |             |            |            |           |             |              |                | `aborting` |            |              | `stopped`     |
 *
 * Empty cells are rejected with `KILN_INVALID_TRANSITION`. Two choices to know about:
 * - The standard ends `execute` with its own state complete; here `execute` leaves for
 *   `completing` on the explicit `complete` command, so `stateComplete` only ever means
 *   "acting state done".
 * - The 2015 figure draws some Hold transitions dashed, as optional extensions (e.g.
 *   `suspended` + `hold` → `holding`; see OPC 30050, OPC UA for PackML, §6.3.5). They are not
 *   in this model; a machine that needs them can extend it with {@link defineMachineModel}:
 *
 * @example
 * const packmlWithSuspendedHold = defineMachineModel({
 *   ...packmlModel,
 *   transitions: {
 *     ...packmlModel.transitions,
 *     suspended: { ...packmlModel.transitions.suspended, hold: "holding" },
 *   },
 * });
 */
export const packmlModel: MachineModel<PackmlState, PackmlCommand> = defineMachineModel({
  name: "packml",
  initial: "stopped",
  states: PACKML_STATES,
  commands: PACKML_COMMANDS,
  transitions: {
    stopped: { reset: "resetting", abort: "aborting" },
    resetting: { stateComplete: "idle", stop: "stopping", abort: "aborting" },
    idle: { start: "starting", stop: "stopping", abort: "aborting" },
    starting: { stateComplete: "execute", stop: "stopping", abort: "aborting" },
    execute: { hold: "holding", suspend: "suspending", complete: "completing", stop: "stopping", abort: "aborting" },
    holding: { stateComplete: "held", stop: "stopping", abort: "aborting" },
    held: { unhold: "unholding", stop: "stopping", abort: "aborting" },
    unholding: { stateComplete: "execute", stop: "stopping", abort: "aborting" },
    suspending: { stateComplete: "suspended", stop: "stopping", abort: "aborting" },
    suspended: { unsuspend: "unsuspending", stop: "stopping", abort: "aborting" },
    unsuspending: { stateComplete: "execute", stop: "stopping", abort: "aborting" },
    completing: { stateComplete: "completed", stop: "stopping", abort: "aborting" },
    completed: { reset: "resetting", stop: "stopping", abort: "aborting" },
    stopping: { stateComplete: "stopped", abort: "aborting" },
    aborting: { stateComplete: "aborted" },
    aborted: { clear: "clearing" },
    clearing: { stateComplete: "stopped", abort: "aborting" },
  },
});
