import { KilnError } from "../domain/errors";
import type { AlarmEngine } from "../alarms/alarm-engine";

/**
 * The commands that reset a trip: Kiln `reset` (`error` → `idle`), PackML `clear` (`aborted` →
 * `clearing`) and `reset` (`stopped`/`completed` → `resetting`). Like `start`, they are refused
 * while an interlock alarm is active (ISA-84 / IEC 61511: a trip is not reset while its
 * condition persists; adversarial review 15u, ADR 0042), or its state is unknown (review 15t).
 */
export const INTERLOCKED_COMMANDS: ReadonlySet<string> = new Set(["start", "reset", "clear"]);

/** An interlock that does not permit a start or a reset now, and why. */
export interface InterlockHold {
  /** The interlock alarm's id. */
  readonly id: string;
  /** `active`, `state unknown: no sample yet` or `bad quality: <reason>`. */
  readonly reason: string;
}

/**
 * The interlock alarms that are not permissive now (IEC 61511: fail-safe, an unknown state is
 * not a permissive): those whose condition is active (acknowledged or not), those whose tag has
 * had no usable (good or uncertain) sample yet, and those whose current sample is bad (bad
 * quality neither activates nor clears an alarm, so its state is unknown; adversarial review
 * 15t, H3). In definition order, whatever the alarm's service state.
 */
export function interlockHolds(alarms: Pick<AlarmEngine, "list">): InterlockHold[] {
  const holds: InterlockHold[] = [];
  for (const alarm of alarms.list()) {
    if (!alarm.interlock) continue;
    if (alarm.active) holds.push({ id: alarm.id, reason: "active" });
    else if (alarm.lastQuality?.severity === "bad") {
      holds.push({ id: alarm.id, reason: `bad quality: ${alarm.lastQuality.reason ?? "no reason given"}` });
    } else if (alarm.lastValue === null) holds.push({ id: alarm.id, reason: "state unknown: no sample yet" });
  }
  return holds;
}

/** The words of a refusal naming the interlocks that hold: "interlock a is active; interlock b state unknown: no sample yet". */
export function interlockHoldsReason(holds: readonly InterlockHold[]): string {
  return holds
    .map((hold) =>
      hold.reason === "active" ? `interlock ${hold.id} is active` : `interlock ${hold.id} ${hold.reason}`,
    )
    .join("; ");
}

/**
 * The refusal of an interlocked command while interlocks are not permissive ({@link interlockHolds}):
 * `KILN_INVALID_TRANSITION`, `details: { machineId, command, state, stage: "guard", reason,
 * interlocks, holds }` (`interlocks`: the holding interlock alarms' ids; `holds`: each with why);
 * undefined when the command is not interlocked or every interlock is permissive.
 */
export function interlockRefusal(
  alarms: Pick<AlarmEngine, "list">,
  machine: { readonly machineId: string; readonly state: string },
  command: string,
): KilnError | undefined {
  if (!INTERLOCKED_COMMANDS.has(command)) return undefined;
  const holds = interlockHolds(alarms);
  if (holds.length === 0) return undefined;
  const reason = interlockHoldsReason(holds);
  const interlocks = holds.map((hold) => hold.id);
  return new KilnError(
    "KILN_INVALID_TRANSITION",
    `Machine "${machine.machineId}" refused command "${command}" in state "${machine.state}": ${reason}. ` +
      `A trip is reset, and a machine started, once every interlock is known and clear.`,
    {
      details: {
        machineId: machine.machineId,
        command,
        state: machine.state,
        stage: "guard",
        reason,
        interlocks,
        holds,
      },
    },
  );
}
