import { defineMachineModel, type MachineModel } from "./state-machine";

/** Every state of the {@link kilnMachineModel}. */
export const KILN_MACHINE_STATES = [
  "idle",
  "starting",
  "processing",
  "paused",
  "stopping",
  "error",
  "maintenance",
] as const satisfies readonly KilnMachineState[];

/** Every command of the {@link kilnMachineModel}. */
export const KILN_MACHINE_COMMANDS = [
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
] as const satisfies readonly KilnMachineCommand[];

/** A state of the {@link kilnMachineModel}. */
export type KilnMachineState = "idle" | "starting" | "processing" | "paused" | "stopping" | "error" | "maintenance";

/** A command of the {@link kilnMachineModel}. */
export type KilnMachineCommand =
  | "start"
  | "started"
  | "pause"
  | "resume"
  | "stop"
  | "stopped"
  | "fault"
  | "reset"
  | "enterMaintenance"
  | "exitMaintenance";

/**
 * Kiln's default machine model, from the founding blueprint. A machine starts in `idle`.
 * `started` and `stopped` are "state complete" signals that end the `starting` and `stopping`
 * phases; `fault` is sent by whatever detects a failure.
 *
 * | state         | command            | next state    |
 * |---------------|--------------------|---------------|
 * | `idle`        | `start`            | `starting`    |
 * | `idle`        | `enterMaintenance` | `maintenance` |
 * | `idle`        | `fault`            | `error`       |
 * | `starting`    | `started`          | `processing`  |
 * | `starting`    | `stop`             | `stopping`    |
 * | `starting`    | `fault`            | `error`       |
 * | `processing`  | `pause`            | `paused`      |
 * | `processing`  | `stop`             | `stopping`    |
 * | `processing`  | `fault`            | `error`       |
 * | `paused`      | `resume`           | `processing`  |
 * | `paused`      | `stop`             | `stopping`    |
 * | `paused`      | `fault`            | `error`       |
 * | `stopping`    | `stopped`          | `idle`        |
 * | `stopping`    | `fault`            | `error`       |
 * | `error`       | `reset`            | `idle`        |
 * | `error`       | `enterMaintenance` | `maintenance` |
 * | `maintenance` | `exitMaintenance`  | `idle`        |
 *
 * Every other state/command pair is rejected with `KILN_INVALID_TRANSITION`.
 */
export const kilnMachineModel: MachineModel<KilnMachineState, KilnMachineCommand> = defineMachineModel({
  name: "kiln",
  initial: "idle",
  states: KILN_MACHINE_STATES,
  commands: KILN_MACHINE_COMMANDS,
  transitions: {
    // `fault` from idle: an interlock trip with no process running still leaves the machine
    // needing a `reset` before the next process (adversarial review 15z, H1/H2).
    idle: { start: "starting", enterMaintenance: "maintenance", fault: "error" },
    starting: { started: "processing", stop: "stopping", fault: "error" },
    processing: { pause: "paused", stop: "stopping", fault: "error" },
    paused: { resume: "processing", stop: "stopping", fault: "error" },
    stopping: { stopped: "idle", fault: "error" },
    error: { reset: "idle", enterMaintenance: "maintenance" },
    maintenance: { exitMaintenance: "idle" },
  },
});
