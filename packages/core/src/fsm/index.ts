export { kilnMachineModel, type KilnMachineCommand, type KilnMachineState } from "./kiln-machine-model";
export { packmlModel, type PackmlCommand, type PackmlState } from "./packml-model";
export {
  StateMachine,
  defineMachineModel,
  type GuardDenial,
  type GuardResult,
  type MachineModel,
  type MachineModelDefinition,
  type MachineSnapshot,
  type MachineTransition,
  type StateAction,
  type StateMachineOptions,
  type TransitionGuard,
  type TransitionListener,
  type TransitionRequest,
  type TransitionTable,
} from "./state-machine";
