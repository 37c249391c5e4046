// Fault switches of SimulatedPlc; exported from "@kiln/core/testing" (ADR 0027).

/** Faults a test can switch on and off at run time. */
export interface SimulatedPlcFaults {
  /** Connection refused: `connect` fails and reads/writes fail as not connected. */
  unreachable: boolean;
  /** Calls hang until their abort signal fires (as a dead peer would). */
  hang: boolean;
  /** Extra latency per call, in ms on the PLC's clock. */
  latencyMs: number;
  /**
   * Time a `subscribe` takes before its subscription exists, in ms on the PLC's clock (a server
   * creating tens of thousands of monitored items). Not cut short by the caller's timeout: the
   * subscription is made when it elapses, as a server's would be. @default 0
   */
  subscribeLatencyMs: number;
  /** Tags that come back with quality bad. */
  readonly badQuality: Set<string>;
}
