import { KilnError } from "../domain/errors";
import type { AlarmEngine } from "../alarms/alarm-engine";

/**
 * The commands that reset a trip: Kiln `reset` (`error` → `idle`), PackML `clear` (`aborted` →
 * `clearing`) and `reset` (`stopped`/`completed` → `resetting`). Like `start`, they are refused
 * while an interlock alarm is active (ISA-84 / IEC 61511: a trip is not reset while its
 * condition persists; adversarial review 15u, ADR 0042).
 */
export const INTERLOCKED_COMMANDS: ReadonlySet<string> = new Set(["start", "reset", "clear"]);

/** The ids of the interlock alarms whose condition is active now (acknowledged or not). */
export function activeInterlocks(alarms: Pick<AlarmEngine, "list">): string[] {
  return alarms
    .list()
    .filter((alarm) => alarm.interlock && alarm.active)
    .map((alarm) => alarm.id);
}

/** The words of a refusal naming the active interlocks: "interlock a is active", "interlocks a, b are active". */
export function interlocksActiveReason(ids: readonly string[]): string {
  return ids.length === 1 ? `interlock ${ids[0]} is active` : `interlocks ${ids.join(", ")} are active`;
}

/**
 * The refusal of an interlocked command while interlocks are active: `KILN_INVALID_TRANSITION`,
 * `details: { machineId, command, state, stage: "guard", reason, interlocks }` (the active
 * interlock alarms' ids); undefined when the command is not interlocked or none is active.
 */
export function interlockRefusal(
  alarms: Pick<AlarmEngine, "list">,
  machine: { readonly machineId: string; readonly state: string },
  command: string,
): KilnError | undefined {
  if (!INTERLOCKED_COMMANDS.has(command)) return undefined;
  const interlocks = activeInterlocks(alarms);
  if (interlocks.length === 0) return undefined;
  const reason = interlocksActiveReason(interlocks);
  return new KilnError(
    "KILN_INVALID_TRANSITION",
    `Machine "${machine.machineId}" refused command "${command}" in state "${machine.state}": ${reason}. ` +
      `A trip is reset once its condition has cleared.`,
    { details: { machineId: machine.machineId, command, state: machine.state, stage: "guard", reason, interlocks } },
  );
}
