// Homed in "@kiln/core/advanced" (ADR 0027): what the main entry's names these declarations
// mention are imported by package name.
import type { KilnEvents, PlcDriver, Store } from "@kiln/core";
import type { CurrentValueTable } from "../cvt/current-value-table";
import type { EventBus } from "../events/event-bus";
import type { StateMachine } from "../fsm/state-machine";

/** The machine's state machine: the founding Kiln model or PackML. */
export type MachineStateMachine = StateMachine<string, string>;

/**
 * The raw parts of a `ControlSystem`, reached through `system.unchecked`. Every call on them
 * bypasses authorization and the audit trail.
 */
export interface UncheckedParts {
  /**
   * The PLC driver as registered (not even its device policy: no timeout, no breaker). Its writes
   * are **not ordered with the checked path**: the system sends a tag's writes (a process's steps,
   * `writeTag`, the safe state of an abort or an interlock trip) one after the other per tag, and
   * a write made here is not in that order. It can reach the device before a checked write still
   * in flight on the same tag, or after the safe state, undoing it; a trip does not refuse it.
   */
  readonly driver: PlcDriver;
  /** The store as registered (no port policies). */
  readonly store: Store;
  /** The machine's state machine: `send` changes the mode with no role check. */
  readonly machine: MachineStateMachine;
  /**
   * The event bus itself: `publish` delivers whatever it is given to every handler and to the
   * event recorder, which stores machine-state events as fact; a published `alarm-raise` looks
   * like a real alarm to every subscriber.
   */
  readonly bus: EventBus<KilnEvents>;
  /**
   * The current value table itself: `update` and `degrade` set values and qualities that alarms,
   * the logging pipeline and recipe conditions take as the device's.
   */
  readonly cvt: CurrentValueTable;
}
