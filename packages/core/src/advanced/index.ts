// @kiln/core/advanced: for integrators who go below the composed system: a custom machine model,
// a service-container override, or the raw parts behind `system.unchecked`. A host that only
// composes and runs a system (`createControlSystem`, its commands, `system.bus`, `system.cvt`,
// `health()`) never imports from here (ADR 0027).

// Machine models and the state machine that runs them (a custom model runs on a StateMachine
// registered with `Tokens.Machine`; a host picks a built-in one with `machine.model`).
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
} from "../fsm/state-machine";
export { kilnMachineModel, type KilnMachineCommand, type KilnMachineState } from "../fsm/kiln-machine-model";
export { packmlModel, type PackmlCommand, type PackmlState } from "../fsm/packml-model";

// Service-container overrides (`createControlSystem({ register: (registry) => registry.override(Tokens.X, ...) })`)
export { Tokens } from "../compose/tokens";
export type { Resolve, ServiceRegistry, ServiceToken } from "../compose/service-registry";

// The raw parts behind `system.unchecked`: every call on them bypasses authorization and the audit trail.
export type { MachineStateMachine, UncheckedParts } from "../compose/unchecked-parts";
export { EventBus, type EventTap } from "../events/event-bus";
export { CurrentValueTable } from "../cvt/current-value-table";
