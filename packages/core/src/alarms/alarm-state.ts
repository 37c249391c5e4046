import { KilnError } from "../domain/errors";

/** Every ISA-18.2 alarm state name Kiln uses, as published in `alarm-state-change` events. */
export const ALARM_STATE_NAMES = [
  "normal",
  "unacknowledged",
  "acknowledged",
  "rtn-unacknowledged",
  "shelved",
  "suppressed",
  "out-of-service",
] as const;

/** An ISA-18.2 alarm state name. */
export type AlarmStateName = (typeof ALARM_STATE_NAMES)[number];

/**
 * The four annunciation states that the overlays (shelved, suppressed, out of service) hide. A
 * host narrows by `name`; one state is `Extract<AlarmBaseState, { name: "normal" }>`.
 */
export type AlarmBaseState =
  /** Inactive and acknowledged: nothing to show. */
  | { readonly name: "normal" }
  /** Active and not yet acknowledged: the operator must respond. */
  | { readonly name: "unacknowledged" }
  /** Active and acknowledged: the operator knows, the condition persists. */
  | { readonly name: "acknowledged" }
  /** Returned to normal before anyone acknowledged it. */
  | { readonly name: "rtn-unacknowledged" };

/**
 * How an alarm is shelved: `timed` until `until` (ms since epoch, on the engine's clock), or
 * `one-shot` until the alarm next returns to normal or `until` (the shelve time plus 365 days,
 * the longest shelve; ISA-18.2 shelving is time-limited), whichever comes first.
 */
export type AlarmShelf =
  | { readonly mode: "timed"; readonly until: number; readonly durationMs: number }
  | { readonly mode: "one-shot"; readonly until: number };

/**
 * An ISA-18.2 alarm state. The overlays nest in a fixed order: out-of-service over suppressed
 * over shelved over one of the four {@link AlarmBaseState}s, so ending an overlay reveals the
 * next one still in force. A host narrows by `name` (`state.name === "shelved"`); one variant is
 * `Extract<AlarmState, { name: "shelved" }>`.
 */
export type AlarmState =
  | AlarmBaseState
  /**
   * Shelved by an operator: not annunciated. `underlying` is the annunciation state the alarm
   * would be in if it were not shelved; process activations and clears keep updating it.
   */
  | { readonly name: "shelved"; readonly shelf: AlarmShelf; readonly underlying: AlarmBaseState }
  /**
   * Suppressed by design (logic-driven): not annunciated while any source in `by` holds (an
   * explicit engine `command`, or the alarm's `suppressWhen` `condition`). `underlying` is what
   * shows again when the suppression ends if it was shelved underneath.
   */
  | {
      readonly name: "suppressed";
      readonly by: readonly ("command" | "condition")[];
      readonly underlying: AlarmBaseState | Extract<AlarmState, { readonly name: "shelved" }>;
    }
  /** Removed from service (maintenance, instrument fault): not annunciated, no interlock trip. */
  | {
      readonly name: "out-of-service";
      readonly underlying: Exclude<AlarmState, { readonly name: "out-of-service" }>;
    };

// The variants by name, for this module (ADR 0027: the public surface names only the unions).
type NormalAlarmState = Extract<AlarmBaseState, { readonly name: "normal" }>;
type UnacknowledgedAlarmState = Extract<AlarmBaseState, { readonly name: "unacknowledged" }>;
type AcknowledgedAlarmState = Extract<AlarmBaseState, { readonly name: "acknowledged" }>;
type RtnUnacknowledgedAlarmState = Extract<AlarmBaseState, { readonly name: "rtn-unacknowledged" }>;
type ShelvedAlarmState = Extract<AlarmState, { readonly name: "shelved" }>;
type SuppressedAlarmState = Extract<AlarmState, { readonly name: "suppressed" }>;

/** What suppresses an alarm by design: an explicit engine command, or its `suppressWhen` condition. */
export type AlarmSuppressionSource = SuppressedAlarmState["by"][number];

/**
 * What can move an alarm. `activate`/`clear` come from the process value (after deadband and
 * delays); the others are commands, or the shelf timer (`unshelve` by `timer`). Triggers that
 * end an overlay carry `active`: whether the alarm condition holds at that moment.
 */
export type AlarmTrigger =
  | { readonly type: "activate" }
  | { readonly type: "clear" }
  | { readonly type: "acknowledge" }
  | { readonly type: "shelve"; readonly shelf: AlarmShelf }
  | { readonly type: "unshelve"; readonly by: "operator" | "timer"; readonly active: boolean }
  | { readonly type: "suppress"; readonly source: AlarmSuppressionSource }
  | { readonly type: "unsuppress"; readonly source: AlarmSuppressionSource; readonly active: boolean }
  | { readonly type: "remove-from-service" }
  | { readonly type: "return-to-service"; readonly active: boolean };

const NORMAL: NormalAlarmState = Object.freeze({ name: "normal" });
const UNACKNOWLEDGED: UnacknowledgedAlarmState = Object.freeze({ name: "unacknowledged" });
const ACKNOWLEDGED: AcknowledgedAlarmState = Object.freeze({ name: "acknowledged" });
const RTN_UNACKNOWLEDGED: RtnUnacknowledgedAlarmState = Object.freeze({ name: "rtn-unacknowledged" });

/** The state every alarm starts in. */
export const NORMAL_ALARM_STATE: AlarmState = NORMAL;

/**
 * The ISA-18.2 transition function. Returns the next state, or the same object when the
 * trigger changes nothing (a process activation of an already active alarm).
 *
 * - `activate`: normal or rtn-unacknowledged → unacknowledged; inside an overlay the underlying
 *   state moves the same way and the overlay stays.
 * - `clear`: unacknowledged → rtn-unacknowledged; acknowledged → normal; a one-shot shelf ends
 *   (→ normal).
 * - `acknowledge`: unacknowledged → acknowledged; rtn-unacknowledged → normal.
 * - `shelve`: any of the four base states → shelved.
 * - `unshelve` by `operator`: shelved → acknowledged if active, else normal. By `timer`: the
 *   shelf ends even under another overlay → unacknowledged if active, else normal.
 * - `suppress` / `unsuppress`: adds or removes a suppression source; when the last one goes, the
 *   alarm returns to the shelf underneath if any, else unacknowledged if active, else normal.
 * - `remove-from-service` from any state but out-of-service; `return-to-service` reveals the
 *   overlay underneath if any, else unacknowledged if active, else normal.
 *
 * @throws KilnError `KILN_INVALID_TRANSITION` when the trigger is not allowed in `state`
 * (acknowledging a normal alarm, shelving a suppressed one...). Nothing changes then.
 */
export function nextAlarmState(state: AlarmState, trigger: AlarmTrigger): AlarmState {
  switch (trigger.type) {
    case "activate":
    case "clear":
      return onProcess(state, trigger.type === "activate");
    case "acknowledge":
      if (state.name === "unacknowledged") return ACKNOWLEDGED;
      if (state.name === "rtn-unacknowledged") return NORMAL;
      throw invalid(state, trigger, "only an unacknowledged or rtn-unacknowledged alarm can be acknowledged");
    case "shelve":
      if (isBase(state)) return Object.freeze({ name: "shelved", shelf: trigger.shelf, underlying: state });
      throw invalid(
        state,
        trigger,
        "only a normal, unacknowledged, acknowledged or rtn-unacknowledged alarm can be shelved",
      );
    case "unshelve":
      if (trigger.by === "operator") {
        if (state.name === "shelved") return trigger.active ? ACKNOWLEDGED : NORMAL;
        throw invalid(state, trigger, "the alarm is not shelved");
      }
      return endShelfByTimer(state, trigger);
    case "suppress":
      return suppress(state, trigger);
    case "unsuppress":
      return unsuppress(state, trigger);
    case "remove-from-service":
      if (state.name === "out-of-service") throw invalid(state, trigger, "the alarm is already out of service");
      return Object.freeze({ name: "out-of-service", underlying: state });
    case "return-to-service":
      if (state.name !== "out-of-service") throw invalid(state, trigger, "the alarm is in service");
      if (isBase(state.underlying)) return trigger.active ? UNACKNOWLEDGED : NORMAL;
      return state.underlying;
  }
}

/** The innermost annunciation state: what the alarm would show with every overlay removed. */
export function alarmBaseState(state: AlarmState): AlarmBaseState {
  return isBase(state) ? state : alarmBaseState(state.underlying);
}

/** The shelf in force, at any depth, or undefined. */
export function alarmShelf(state: AlarmState): AlarmShelf | undefined {
  if (state.name === "shelved") return state.shelf;
  if (isBase(state)) return undefined;
  return alarmShelf(state.underlying);
}

/** The suppression sources in force, at any depth (empty when not suppressed). */
export function alarmSuppressionSources(state: AlarmState): readonly AlarmSuppressionSource[] {
  if (state.name === "suppressed") return state.by;
  if (state.name === "out-of-service" && state.underlying.name === "suppressed") return state.underlying.by;
  return [];
}

/**
 * True when the alarm is in service and not suppressed by design: its condition is meaningful,
 * so an interlock on it may trip. Shelving does not change this: a shelf hides the alarm from
 * the operator but never bypasses an interlock.
 */
export function isAlarmInEffect(state: AlarmState): boolean {
  return state.name !== "out-of-service" && state.name !== "suppressed";
}

function isBase(state: AlarmState): state is AlarmBaseState {
  return (
    state.name === "normal" ||
    state.name === "unacknowledged" ||
    state.name === "acknowledged" ||
    state.name === "rtn-unacknowledged"
  );
}

function onBase(state: AlarmBaseState, activate: boolean): AlarmBaseState {
  switch (state.name) {
    case "normal":
    case "rtn-unacknowledged":
      return activate ? UNACKNOWLEDGED : state;
    case "unacknowledged":
      return activate ? state : RTN_UNACKNOWLEDGED;
    case "acknowledged":
      return activate ? state : NORMAL;
  }
}

function onShelved(state: ShelvedAlarmState, activate: boolean): AlarmBaseState | ShelvedAlarmState {
  if (!activate && state.shelf.mode === "one-shot") return NORMAL;
  const underlying = onBase(state.underlying, activate);
  return underlying === state.underlying ? state : Object.freeze({ ...state, underlying });
}

function onSuppressedOrBelow(
  state: AlarmBaseState | ShelvedAlarmState | SuppressedAlarmState,
  activate: boolean,
): AlarmBaseState | ShelvedAlarmState | SuppressedAlarmState {
  if (state.name === "shelved") return onShelved(state, activate);
  if (state.name === "suppressed") {
    const underlying =
      state.underlying.name === "shelved" ? onShelved(state.underlying, activate) : onBase(state.underlying, activate);
    return underlying === state.underlying ? state : Object.freeze({ ...state, underlying });
  }
  return onBase(state, activate);
}

function onProcess(state: AlarmState, activate: boolean): AlarmState {
  if (state.name !== "out-of-service") return onSuppressedOrBelow(state, activate);
  const underlying = onSuppressedOrBelow(state.underlying, activate);
  return underlying === state.underlying ? state : Object.freeze({ ...state, underlying });
}

function endShelfByTimer(state: AlarmState, trigger: AlarmTrigger & { type: "unshelve" }): AlarmState {
  const ended: AlarmBaseState = trigger.active ? UNACKNOWLEDGED : NORMAL;
  if (state.name === "shelved") return ended;
  if (state.name === "suppressed" && state.underlying.name === "shelved") {
    return Object.freeze({ ...state, underlying: ended });
  }
  if (state.name === "out-of-service") {
    const inner = state.underlying;
    if (inner.name === "shelved") return Object.freeze({ ...state, underlying: ended });
    if (inner.name === "suppressed" && inner.underlying.name === "shelved") {
      return Object.freeze({ ...state, underlying: Object.freeze({ ...inner, underlying: ended }) });
    }
  }
  throw invalid(state, trigger, "the alarm is not shelved");
}

function suppress(state: AlarmState, trigger: AlarmTrigger & { type: "suppress" }): AlarmState {
  const add = (inner: AlarmBaseState | ShelvedAlarmState | SuppressedAlarmState): SuppressedAlarmState => {
    if (inner.name !== "suppressed")
      return Object.freeze({ name: "suppressed", by: [trigger.source], underlying: inner });
    if (inner.by.includes(trigger.source)) {
      throw invalid(state, trigger, `the alarm is already suppressed by ${trigger.source}`);
    }
    return Object.freeze({ ...inner, by: [...inner.by, trigger.source] });
  };
  if (state.name === "out-of-service") return Object.freeze({ ...state, underlying: add(state.underlying) });
  return add(state);
}

function unsuppress(state: AlarmState, trigger: AlarmTrigger & { type: "unsuppress" }): AlarmState {
  const remove = (inner: SuppressedAlarmState): AlarmBaseState | ShelvedAlarmState | SuppressedAlarmState => {
    if (!inner.by.includes(trigger.source)) {
      throw invalid(state, trigger, `the alarm is not suppressed by ${trigger.source}`);
    }
    const by = inner.by.filter((source) => source !== trigger.source);
    if (by.length > 0) return Object.freeze({ ...inner, by });
    if (inner.underlying.name === "shelved") return inner.underlying;
    return trigger.active ? UNACKNOWLEDGED : NORMAL;
  };
  if (state.name === "suppressed") return remove(state);
  if (state.name === "out-of-service" && state.underlying.name === "suppressed") {
    return Object.freeze({ ...state, underlying: remove(state.underlying) });
  }
  throw invalid(state, trigger, "the alarm is not suppressed");
}

function invalid(state: AlarmState, trigger: AlarmTrigger, rule: string): KilnError {
  return new KilnError(
    "KILN_INVALID_TRANSITION",
    `Cannot ${trigger.type} an alarm in state "${state.name}": ${rule}. Check the alarm's state before sending the command.`,
    { details: { state: state.name, trigger: trigger.type } },
  );
}
