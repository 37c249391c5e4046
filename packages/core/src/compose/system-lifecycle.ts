/** Where a control system is in its life. */
export type SystemState = "stopped" | "starting" | "running" | "stopping";

/**
 * The control system's lifecycle state, shared with the parts that must refuse work while it is
 * not running (the checked write path). Only the control system changes it.
 */
export class SystemLifecycle {
  /** The current state. */
  state: SystemState = "stopped";
}
