import { z } from "zod";
import { KilnError } from "../domain/errors";
import type { Quality } from "../domain/quality";
import type { Sample } from "../domain/sample";
import type { TagCatalog, TagValue } from "../domain/tags";
import { parseOrThrow } from "../domain/validation";
import type { KilnEvents } from "../events/catalogue";
import type { EventBus } from "../events/event-bus";
import type { AlarmHistory, AlarmHistoryEntry } from "@kiln/core/driver-kit";
import type { Clock, TimerHandle } from "../ports/clock";
import {
  defineAlarms,
  isHighAlarmKind,
  type AlarmConditionContext,
  type AlarmDefinition,
  type AlarmDefinitionInput,
  type AlarmKind,
  type AlarmPriority,
} from "./alarm-definition";
import {
  NORMAL_ALARM_STATE,
  alarmShelf,
  isAlarmInEffect,
  nextAlarmState,
  type AlarmShelf,
  type AlarmState,
  type AlarmTrigger,
} from "./alarm-state";

/** Why an alarm changed state, as recorded in history and published in `alarm-state-change`. */
export const ALARM_TRANSITION_CAUSES = [
  "process-activate",
  "process-clear",
  "acknowledge",
  "shelve",
  "unshelve",
  "shelve-expire",
  "suppress",
  "unsuppress",
  "suppress-condition",
  "unsuppress-condition",
  "remove-from-service",
  "return-to-service",
] as const;

/** Why an alarm changed state. */
export type AlarmTransitionCause = (typeof ALARM_TRANSITION_CAUSES)[number];

/** Who sent a command: a principal id, or any object with an `id` (such as an authorized principal). */
export type AlarmPrincipal = string | { readonly id: string };

/**
 * How to shelve: for `durationMs` on the engine's clock (a whole number of ms, 1 ms to 365 days:
 * ISA-18.2 shelving is time-limited), or one-shot (until the alarm next returns to normal, or
 * 365 days, whichever comes first).
 */
export type AlarmShelveOptions = { readonly durationMs: number } | { readonly oneShot: true };

/** Options of {@link AlarmEngine}. */
export interface AlarmEngineOptions {
  /** Source of time for delays, shelf timers and event timestamps. */
  readonly clock: Clock;
  /** The tags the definitions are checked against. */
  readonly tags: TagCatalog;
  /** The alarms to evaluate; validated with {@link defineAlarms}. */
  readonly definitions: readonly AlarmDefinitionInput[];
  /** Where transitions, raises, clears, interlock trips and failures are published. */
  readonly bus?: EventBus<KilnEvents>;
  /** Where every transition is recorded. Failures are counted and published, never thrown. */
  readonly history?: AlarmHistory;
  /**
   * Bound on history writes waiting for the store. Beyond it a transition is not recorded and
   * counts as a history failure (`KILN_BUFFER_FULL`). @default 10_000
   */
  readonly maxPendingHistoryWrites?: number;
}

/** A point-in-time view of one alarm. */
export interface AlarmSnapshot {
  /** The alarm's id. */
  readonly id: string;
  /** The watched tag. */
  readonly tag: string;
  /** HI, LO, HIHI, LOLO or BOOL. */
  readonly kind: AlarmKind;
  /** 1 (critical) to 4 (low). */
  readonly priority: AlarmPriority;
  /** What the operator reads. */
  readonly message: string;
  /**
   * The limit of a numeric alarm (HI, HIHI, LO, LOLO), in the tag's engineering unit, from its
   * definition; absent for a BOOL alarm. (Served, e.g., as an OPC UA LimitAlarm's HighLimit.)
   */
  readonly setpoint?: number;
  /** Whether activation publishes `interlock-trip`. */
  readonly interlock: boolean;
  /** The full ISA-18.2 state, overlays and underlying state included. */
  readonly state: AlarmState;
  /** Whether the alarm condition holds (after deadband and delays), whatever the state shows. */
  readonly active: boolean;
  /** The last usable value evaluated, or null before any (older than the current sample when {@link AlarmSnapshot.lastSampleUsable} is false). */
  readonly lastValue: number | boolean | null;
  /** Quality of the last sample observed for the tag. */
  readonly lastQuality?: Quality;
  /**
   * Whether the last sample observed for the tag was evaluated: not bad, with a value of the
   * alarm's kind (a number, not NaN; a boolean for BOOL). False before any sample, and when the
   * current sample was not usable (`lastValue` is then an older value, not the current one).
   */
  readonly lastSampleUsable: boolean;
  /** When the condition last became active. */
  readonly raisedAt?: number;
  /** When the condition last returned to normal. */
  readonly clearedAt?: number;
  /** When the current activation was acknowledged (cleared on the next activation). */
  readonly ackedAt?: number;
  /** Who acknowledged it. */
  readonly ackedBy?: string;
  /** The delay running, if any: an on-delay (waiting to activate) or off-delay (waiting to clear). */
  readonly pendingDelay?: {
    readonly kind: "on-delay" | "off-delay";
    /** When it will fire if the condition keeps holding, ms since epoch. */
    readonly dueAt: number;
  };
}

/** A pending on-delay or off-delay, by name for this module. */
type AlarmPendingDelay = NonNullable<AlarmSnapshot["pendingDelay"]>;

/** Counters an alarm engine keeps about its own health. */
export interface AlarmEngineStats {
  /** Transitions the history failed to record (or that could not be queued). */
  readonly historyFailures: number;
  /** History writes not yet settled. */
  readonly pendingHistoryWrites: number;
  /** Evaluations of a `suppressWhen` function that threw. */
  readonly conditionFailures: number;
}

interface AlarmRecord {
  readonly definition: AlarmDefinition;
  state: AlarmState;
  active: boolean;
  lastValue: number | boolean | null;
  lastQuality: Quality | undefined;
  lastSampleUsable: boolean;
  raisedAt: number | undefined;
  clearedAt: number | undefined;
  ackedAt: number | undefined;
  ackedBy: string | undefined;
  delay: (AlarmPendingDelay & { readonly handle: TimerHandle }) | undefined;
  shelfTimer: { readonly handle: TimerHandle; readonly until: number } | undefined;
  conditionSuppressed: boolean;
  conditionFailing: boolean;
}

/** An operator command on one alarm, for {@link AlarmEngine.prepare}. */
export type AlarmCommand =
  | { readonly type: "acknowledge" }
  | { readonly type: "shelve"; readonly options: AlarmShelveOptions }
  | { readonly type: "unshelve" }
  | { readonly type: "suppress" }
  | { readonly type: "unsuppress" }
  | { readonly type: "remove-from-service" }
  | { readonly type: "return-to-service" };

/** The longest timed shelve, ms: 365 days (ISA-18.2: shelving is temporary and time-limited). */
const MAX_SHELVE_MS = 365 * 24 * 60 * 60 * 1_000;

const timedShelveSchema = z.strictObject({
  durationMs: z
    .number()
    .int()
    .positive()
    .max(MAX_SHELVE_MS, { message: `must be at most ${MAX_SHELVE_MS} ms (365 days): shelving is time-limited` }),
});
const oneShotShelveSchema = z.strictObject({ oneShot: z.literal(true) });

/**
 * Evaluates ISA-18.2 alarms on tag samples and runs their state model.
 *
 * - Feed it every sample with {@link AlarmEngine.observe} (typically from the current value table).
 * - Deadband: a HI alarm activates above its setpoint and clears only at or below
 *   `setpoint - deadband` (LO mirrors this), so a value chattering around the setpoint raises once.
 * - On-delay / off-delay: the activate (clear) condition must hold continuously for `onDelayMs`
 *   (`offDelayMs`) on the engine's clock; a sample that breaks it cancels the pending delay.
 * - Bad quality (or a value of the wrong type) neither activates nor clears an alarm: the state
 *   is kept, and a pending delay is cancelled because the condition can no longer be shown to
 *   hold continuously. Uncertain quality is evaluated like good.
 * - Every transition is published as `alarm-state-change` and recorded in the history; process
 *   activations and clears also publish `alarm-raise` / `alarm-clear`. An alarm with
 *   `interlock: true` publishes `interlock-trip` when it becomes active while in service and
 *   not suppressed (shelving never bypasses an interlock).
 *
 * Commands (`acknowledge`, `shelve`, ...) are synchronous and return the new snapshot; history
 * writes are queued in order, and {@link AlarmEngine.flush} waits for them.
 *
 * @example
 * const engine = new AlarmEngine({ clock, tags, bus, history, definitions: [
 *   { tag: "chamber.pressure", kind: "HI", setpoint: 5, deadband: 0.2, onDelayMs: 2_000, priority: 2 },
 * ] });
 * cvt.onSample((sample) => engine.observe(sample));
 * engine.acknowledge("chamber.pressure:HI", principal);
 */
export class AlarmEngine {
  readonly #clock: Clock;
  readonly #tags: TagCatalog;
  readonly #bus: EventBus<KilnEvents> | undefined;
  readonly #history: AlarmHistory | undefined;
  readonly #maxPendingHistory: number;
  readonly #definitions: readonly AlarmDefinition[];
  readonly #records = new Map<string, AlarmRecord>();
  readonly #recordsByTag = new Map<string, AlarmRecord[]>();
  readonly #suppressible: AlarmRecord[] = [];
  readonly #samples = new Map<string, Sample>();
  readonly #usableValues = new Map<string, TagValue>();
  #historyTail: Promise<void> = Promise.resolve();
  #pendingHistory = 0;
  #historyFailures = 0;
  #conditionFailures = 0;
  #disposed = false;
  #suspended = false;

  /** @throws KilnValidationError (`KILN_VALIDATION`) when a definition is invalid; see {@link defineAlarms}. */
  constructor(options: AlarmEngineOptions) {
    this.#clock = options.clock;
    this.#tags = options.tags;
    this.#bus = options.bus;
    this.#history = options.history;
    this.#maxPendingHistory = options.maxPendingHistoryWrites ?? 10_000;
    this.#definitions = defineAlarms(options.definitions, options.tags);
    for (const definition of this.#definitions) {
      const record: AlarmRecord = {
        definition,
        state: NORMAL_ALARM_STATE,
        active: false,
        lastValue: null,
        lastQuality: undefined,
        lastSampleUsable: false,
        raisedAt: undefined,
        clearedAt: undefined,
        ackedAt: undefined,
        ackedBy: undefined,
        delay: undefined,
        shelfTimer: undefined,
        conditionSuppressed: false,
        conditionFailing: false,
      };
      this.#records.set(definition.id, record);
      const onTag = this.#recordsByTag.get(definition.tag);
      if (onTag) onTag.push(record);
      else this.#recordsByTag.set(definition.tag, [record]);
      if (definition.suppressWhen !== undefined) this.#suppressible.push(record);
    }
  }

  /** The validated definitions, in the order given. */
  get definitions(): readonly AlarmDefinition[] {
    return this.#definitions;
  }

  /** Health counters. */
  get stats(): AlarmEngineStats {
    return {
      historyFailures: this.#historyFailures,
      pendingHistoryWrites: this.#pendingHistory,
      conditionFailures: this.#conditionFailures,
    };
  }

  /**
   * Evaluates one sample: first every `suppressWhen` condition, then the alarms on the sample's
   * tag. Samples of tags outside the catalog are ignored.
   * @throws KilnError `KILN_LIFECYCLE` after {@link AlarmEngine.dispose} or while suspended.
   */
  observe(sample: Sample): void {
    this.#assertOpen();
    // The last samples are kept only for suppression conditions: with none, a tag without alarms
    // needs no work (every sample of a large catalog passes here).
    const records = this.#recordsByTag.get(sample.tag);
    if (records === undefined && this.#suppressible.length === 0) return;
    if (!this.#tags.has(sample.tag)) return;
    this.#samples.set(sample.tag, sample);
    if (sample.quality.severity !== "bad" && sample.value !== null) this.#usableValues.set(sample.tag, sample.value);
    this.#evaluateSuppression();
    if (records !== undefined) for (const record of records) this.#evaluate(record, sample);
  }

  /**
   * Re-evaluates every `suppressWhen` condition now. Call it when a condition reads state the
   * engine does not observe (a machine mode held by the host), and once after start.
   * @throws KilnError `KILN_LIFECYCLE` after {@link AlarmEngine.dispose} or while suspended.
   */
  evaluateSuppression(): void {
    this.#assertOpen();
    this.#evaluateSuppression();
  }

  /** Snapshots of every alarm, in definition order. */
  list(): AlarmSnapshot[] {
    return [...this.#records.values()].map((record) => this.#snapshot(record));
  }

  /** A snapshot of one alarm. @throws KilnError `KILN_NOT_FOUND` for an unknown id. */
  get(alarmId: string): AlarmSnapshot {
    return this.#snapshot(this.#find(alarmId));
  }

  /**
   * Acknowledges an alarm: unacknowledged → acknowledged, rtn-unacknowledged → normal.
   * @throws KilnError `KILN_NOT_FOUND` for an unknown id; `KILN_INVALID_TRANSITION` in any other state.
   */
  acknowledge(alarmId: string, principal?: AlarmPrincipal): AlarmSnapshot {
    return this.prepare(alarmId, { type: "acknowledge" }, principal)();
  }

  /**
   * Shelves an alarm (hides it from the operator) for `durationMs`, or one-shot until it next
   * returns to normal. When a timed shelf expires the alarm shows unacknowledged if still active.
   * @throws KilnValidationError (`KILN_VALIDATION`) for bad options; KilnError `KILN_NOT_FOUND`;
   * `KILN_INVALID_TRANSITION` unless the alarm is normal, unacknowledged, acknowledged or rtn-unacknowledged.
   */
  shelve(alarmId: string, options: AlarmShelveOptions, principal?: AlarmPrincipal): AlarmSnapshot {
    return this.prepare(alarmId, { type: "shelve", options }, principal)();
  }

  /**
   * Unshelves an alarm by hand: it shows acknowledged if still active (the operator has seen it),
   * normal otherwise.
   * @throws KilnError `KILN_NOT_FOUND`; `KILN_INVALID_TRANSITION` unless the alarm is shelved.
   */
  unshelve(alarmId: string, principal?: AlarmPrincipal): AlarmSnapshot {
    return this.prepare(alarmId, { type: "unshelve" }, principal)();
  }

  /**
   * Suppresses an alarm by design (control logic, e.g. a machine mode in which it is meaningless).
   * Combines with the definition's `suppressWhen`: the alarm stays suppressed while either holds.
   * @throws KilnError `KILN_NOT_FOUND`; `KILN_INVALID_TRANSITION` when already suppressed by command.
   */
  suppress(alarmId: string, principal?: AlarmPrincipal): AlarmSnapshot {
    return this.prepare(alarmId, { type: "suppress" }, principal)();
  }

  /**
   * Ends a suppression made by {@link AlarmEngine.suppress}. The alarm then shows its shelf if
   * shelved underneath, else unacknowledged if active, else normal (unless `suppressWhen` still holds).
   * @throws KilnError `KILN_NOT_FOUND`; `KILN_INVALID_TRANSITION` when not suppressed by command.
   */
  unsuppress(alarmId: string, principal?: AlarmPrincipal): AlarmSnapshot {
    return this.prepare(alarmId, { type: "unsuppress" }, principal)();
  }

  /**
   * Removes an alarm from service (instrument under maintenance). Its condition is still
   * evaluated, but it is not annunciated and cannot trip an interlock.
   * @throws KilnError `KILN_NOT_FOUND`; `KILN_INVALID_TRANSITION` when already out of service.
   */
  removeFromService(alarmId: string, principal?: AlarmPrincipal): AlarmSnapshot {
    return this.prepare(alarmId, { type: "remove-from-service" }, principal)();
  }

  /**
   * Returns an alarm to service: it shows its suppression or shelf if one is still in force,
   * else unacknowledged if active (and trips its interlock), else normal.
   * @throws KilnError `KILN_NOT_FOUND`; `KILN_INVALID_TRANSITION` unless out of service.
   */
  returnToService(alarmId: string, principal?: AlarmPrincipal): AlarmSnapshot {
    return this.prepare(alarmId, { type: "return-to-service" }, principal)();
  }

  /** Resolves when every history write queued so far has settled (successfully or reported). */
  async flush(): Promise<void> {
    let tail: Promise<void>;
    do {
      tail = this.#historyTail;
      await tail;
    } while (tail !== this.#historyTail);
  }

  /**
   * Cancels every delay and shelf timer until {@link AlarmEngine.resume}; samples and commands
   * are refused meanwhile (`KILN_LIFECYCLE`). Alarm states are kept. A pending on/off-delay is
   * dropped: the condition can no longer be shown to hold continuously, so the next sample
   * starts it again. Used by a control system while it is stopped.
   */
  suspend(): void {
    if (this.#suspended) return;
    this.#suspended = true;
    for (const record of this.#records.values()) {
      if (record.delay) this.#clock.clearTimeout(record.delay.handle);
      if (record.shelfTimer) this.#clock.clearTimeout(record.shelfTimer.handle);
      record.delay = undefined;
      record.shelfTimer = undefined;
    }
  }

  /**
   * Accepts samples and commands again after {@link AlarmEngine.suspend}, and re-arms every
   * timed shelf (one whose time ran out meanwhile expires at once). No-op when not suspended.
   * @throws KilnError `KILN_LIFECYCLE` after {@link AlarmEngine.dispose}.
   */
  resume(): void {
    if (this.#disposed) throw new KilnError("KILN_LIFECYCLE", "The alarm engine has been disposed; create a new one.");
    if (!this.#suspended) return;
    this.#suspended = false;
    for (const record of this.#records.values()) this.#syncShelfTimer(record);
  }

  /** Cancels every delay and shelf timer for good. The engine accepts no samples or commands afterwards. */
  dispose(): void {
    this.suspend();
    this.#disposed = true;
  }

  /** Same as {@link AlarmEngine.dispose}, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  #assertOpen(): void {
    if (this.#disposed) {
      throw new KilnError("KILN_LIFECYCLE", "The alarm engine has been disposed; create a new one.");
    }
    if (this.#suspended) {
      throw new KilnError("KILN_LIFECYCLE", "The alarm engine is suspended (its control system is stopped).");
    }
  }

  #find(alarmId: string): AlarmRecord {
    const record = this.#records.get(alarmId);
    if (!record) {
      throw new KilnError("KILN_NOT_FOUND", `No alarm with id "${alarmId}". Ids default to "<tag>:<kind>".`, {
        details: { alarmId },
      });
    }
    return record;
  }

  #timedShelf(durationMs: number): AlarmShelf {
    return Object.freeze({ mode: "timed", until: this.#clock.now() + durationMs, durationMs });
  }

  /**
   * Checks an operator command on an alarm without changing anything (the engine is running, the
   * alarm exists, the options are valid, the transition is allowed in the alarm's current state)
   * and returns what applies it. The control system checks here, then records the command's audit
   * entry, then applies, so a refused command is recorded `denied`. Applying checks again: the
   * alarm may have moved in between (then it throws and nothing changes).
   * @throws KilnError `KILN_LIFECYCLE` (suspended or disposed), `KILN_NOT_FOUND`,
   *   `KILN_VALIDATION` (shelve options), `KILN_INVALID_TRANSITION`; nothing changes.
   */
  prepare(alarmId: string, command: AlarmCommand, principal?: AlarmPrincipal): () => AlarmSnapshot {
    this.#assertOpen();
    const record = this.#find(alarmId);
    const { trigger, cause } = this.#triggerOf(command);
    this.#next(record, trigger(record));
    return () => {
      this.#assertOpen();
      this.#apply(record, trigger(record), cause, principalId(principal));
      return this.#snapshot(record);
    };
  }

  #triggerOf(command: AlarmCommand): {
    trigger: (record: AlarmRecord) => AlarmTrigger;
    cause: AlarmTransitionCause;
  } {
    switch (command.type) {
      case "acknowledge":
        return { trigger: () => ({ type: "acknowledge" }), cause: "acknowledge" };
      case "shelve": {
        const options: unknown = command.options;
        const isOneShot = typeof options === "object" && options !== null && "oneShot" in options;
        let durationMs = 0;
        if (isOneShot) parseOrThrow(oneShotShelveSchema, options, "shelve options");
        else durationMs = parseOrThrow(timedShelveSchema, options, "shelve options").durationMs;
        // A one-shot shelf is time-limited too: at most the longest timed shelve.
        const shelf = (): AlarmShelf =>
          isOneShot
            ? Object.freeze({ mode: "one-shot" as const, until: this.#clock.now() + MAX_SHELVE_MS })
            : this.#timedShelf(durationMs);
        return { trigger: () => ({ type: "shelve", shelf: shelf() }), cause: "shelve" };
      }
      case "unshelve":
        return {
          trigger: (record) => ({ type: "unshelve", by: "operator", active: record.active }),
          cause: "unshelve",
        };
      case "suppress":
        return { trigger: () => ({ type: "suppress", source: "command" }), cause: "suppress" };
      case "unsuppress":
        return {
          trigger: (record) => ({ type: "unsuppress", source: "command", active: record.active }),
          cause: "unsuppress",
        };
      case "remove-from-service":
        return { trigger: () => ({ type: "remove-from-service" }), cause: "remove-from-service" };
      case "return-to-service":
        return {
          trigger: (record) => ({ type: "return-to-service", active: record.active }),
          cause: "return-to-service",
        };
    }
  }

  /** The state `trigger` moves `record` to; throws (alarm id in the message) when it may not. */
  #next(record: AlarmRecord, trigger: AlarmTrigger): AlarmState {
    try {
      return nextAlarmState(record.state, trigger);
    } catch (error) {
      if (!KilnError.is(error)) throw error;
      throw new KilnError(error.code, `Alarm "${record.definition.id}": ${error.message}`, {
        cause: error,
        details: { ...error.details, alarmId: record.definition.id },
      });
    }
  }

  #evaluate(record: AlarmRecord, sample: Sample): void {
    record.lastQuality = sample.quality;
    const definition = record.definition;
    const value = usableValue(definition, sample);
    record.lastSampleUsable = value !== undefined;
    if (value === undefined) {
      this.#cancelDelay(record);
      return;
    }
    record.lastValue = value;
    if (!record.active) {
      if (!activates(definition, value)) this.#cancelDelay(record);
      else if (definition.onDelayMs === 0) this.#apply(record, { type: "activate" }, "process-activate");
      else if (!record.delay) this.#startDelay(record, "on-delay", definition.onDelayMs);
    } else {
      if (!returnsToNormal(definition, value)) this.#cancelDelay(record);
      else if (definition.offDelayMs === 0) this.#apply(record, { type: "clear" }, "process-clear");
      else if (!record.delay) this.#startDelay(record, "off-delay", definition.offDelayMs);
    }
  }

  #startDelay(record: AlarmRecord, kind: AlarmPendingDelay["kind"], delayMs: number): void {
    const handle = this.#clock.setTimeout(() => {
      record.delay = undefined;
      if (kind === "on-delay") this.#apply(record, { type: "activate" }, "process-activate");
      else this.#apply(record, { type: "clear" }, "process-clear");
    }, delayMs);
    record.delay = { kind, dueAt: this.#clock.now() + delayMs, handle };
  }

  #cancelDelay(record: AlarmRecord): void {
    if (!record.delay) return;
    this.#clock.clearTimeout(record.delay.handle);
    record.delay = undefined;
  }

  #evaluateSuppression(): void {
    if (this.#suppressible.length === 0) return;
    const context: AlarmConditionContext = {
      now: this.#clock.now(),
      value: (tag) => this.#usableValues.get(tag),
      sample: (tag) => this.#samples.get(tag),
    };
    for (const record of this.#suppressible) {
      const holds = this.#suppressionHolds(record, context);
      if (holds === record.conditionSuppressed) continue;
      record.conditionSuppressed = holds;
      if (holds) this.#apply(record, { type: "suppress", source: "condition" }, "suppress-condition");
      else {
        this.#apply(record, { type: "unsuppress", source: "condition", active: record.active }, "unsuppress-condition");
      }
    }
  }

  #suppressionHolds(record: AlarmRecord, context: AlarmConditionContext): boolean {
    const condition = record.definition.suppressWhen!;
    if (typeof condition !== "function") return context.value(condition.tag) === condition.equals;
    try {
      const holds = Boolean(condition(context));
      record.conditionFailing = false;
      return holds;
    } catch (error) {
      // Fail-safe: an alarm whose suppression cannot be decided stays visible.
      this.#conditionFailures++;
      if (!record.conditionFailing) {
        record.conditionFailing = true;
        this.#publish("alarm-condition-fail", { at: this.#clock.now(), alarmId: record.definition.id, error });
      }
      return false;
    }
  }

  #apply(record: AlarmRecord, trigger: AlarmTrigger, cause: AlarmTransitionCause, principal?: string): void {
    const definition = record.definition;
    const from = record.state;
    const trippedBefore = record.active && isAlarmInEffect(from);
    const to = this.#next(record, trigger);
    const now = this.#clock.now();
    if (trigger.type === "activate") {
      record.active = true;
      record.raisedAt = now;
      record.ackedAt = undefined;
      record.ackedBy = undefined;
      this.#cancelDelay(record);
    } else if (trigger.type === "clear") {
      record.active = false;
      record.clearedAt = now;
      this.#cancelDelay(record);
    } else if (trigger.type === "acknowledge" || (to.name === "acknowledged" && from.name !== "acknowledged")) {
      record.ackedAt = now;
      record.ackedBy = principal;
    }
    record.state = to;
    this.#syncShelfTimer(record);

    const value = record.lastValue;
    const identity = {
      alarmId: definition.id,
      tag: definition.tag,
      kind: definition.kind,
      priority: definition.priority,
    };
    if (to !== from) {
      const change = { at: now, ...identity, from: from.name, to: to.name, cause, value };
      this.#publish("alarm-state-change", principal === undefined ? change : { ...change, principal });
      this.#recordHistory(principal === undefined ? change : { ...change, principal });
    }
    if (trigger.type === "activate" || trigger.type === "clear") {
      this.#publish(trigger.type === "activate" ? "alarm-raise" : "alarm-clear", {
        at: now,
        ...identity,
        message: definition.message,
        value,
        state: to.name,
      });
    }
    if (definition.interlock && record.active && isAlarmInEffect(to) && !trippedBefore) {
      this.#publish("interlock-trip", { at: now, alarmId: definition.id, tag: definition.tag, value });
    }
  }

  #syncShelfTimer(record: AlarmRecord): void {
    const shelf = alarmShelf(record.state);
    const until = shelf?.until;
    if (record.shelfTimer && record.shelfTimer.until !== until) {
      this.#clock.clearTimeout(record.shelfTimer.handle);
      record.shelfTimer = undefined;
    }
    if (until === undefined || record.shelfTimer) return;
    const handle = this.#clock.setTimeout(
      () => {
        record.shelfTimer = undefined;
        this.#apply(record, { type: "unshelve", by: "timer", active: record.active }, "shelve-expire");
      },
      Math.max(0, until - this.#clock.now()),
    );
    record.shelfTimer = { handle, until };
  }

  #publish<TType extends keyof KilnEvents & string>(type: TType, event: KilnEvents[TType]): void {
    if (this.#bus) void this.#bus.publish(type, event);
  }

  #recordHistory(entry: AlarmHistoryEntry): void {
    const history = this.#history;
    if (!history) return;
    if (this.#pendingHistory >= this.#maxPendingHistory) {
      this.#reportHistoryFailure(
        entry,
        new KilnError("KILN_BUFFER_FULL", "Alarm history writes are backing up; this transition was not recorded.", {
          details: { alarmId: entry.alarmId, pending: this.#pendingHistory },
        }),
      );
      return;
    }
    this.#pendingHistory++;
    this.#historyTail = this.#historyTail
      .then(() => history.record(entry))
      .then(
        () => {
          this.#pendingHistory--;
        },
        (error: unknown) => {
          this.#pendingHistory--;
          this.#reportHistoryFailure(entry, error);
        },
      );
  }

  #reportHistoryFailure(entry: AlarmHistoryEntry, error: unknown): void {
    this.#historyFailures++;
    this.#publish("alarm-history-fail", { at: this.#clock.now(), alarmId: entry.alarmId, error });
  }

  #snapshot(record: AlarmRecord): AlarmSnapshot {
    const definition = record.definition;
    return {
      id: definition.id,
      tag: definition.tag,
      kind: definition.kind,
      priority: definition.priority,
      message: definition.message,
      ...(definition.kind === "BOOL" ? {} : { setpoint: definition.setpoint }),
      interlock: definition.interlock,
      state: record.state,
      active: record.active,
      lastValue: record.lastValue,
      lastQuality: record.lastQuality,
      lastSampleUsable: record.lastSampleUsable,
      raisedAt: record.raisedAt,
      clearedAt: record.clearedAt,
      ackedAt: record.ackedAt,
      ackedBy: record.ackedBy,
      pendingDelay: record.delay ? { kind: record.delay.kind, dueAt: record.delay.dueAt } : undefined,
    };
  }
}

function principalId(principal: AlarmPrincipal | undefined): string | undefined {
  if (principal === undefined) return undefined;
  return typeof principal === "string" ? principal : principal.id;
}

function usableValue(definition: AlarmDefinition, sample: Sample): number | boolean | undefined {
  if (sample.quality.severity === "bad") return undefined;
  const value = sample.value;
  if (definition.kind === "BOOL") return typeof value === "boolean" ? value : undefined;
  if (typeof value === "bigint") return Number(value);
  return typeof value === "number" && !Number.isNaN(value) ? value : undefined;
}

function activates(definition: AlarmDefinition, value: number | boolean): boolean {
  if (definition.kind === "BOOL") return value === definition.alarmValue;
  if (typeof value !== "number") return false;
  return isHighAlarmKind(definition.kind) ? value > definition.setpoint : value < definition.setpoint;
}

function returnsToNormal(definition: AlarmDefinition, value: number | boolean): boolean {
  if (definition.kind === "BOOL") return value !== definition.alarmValue;
  if (typeof value !== "number") return false;
  return isHighAlarmKind(definition.kind)
    ? value <= definition.setpoint - definition.deadband
    : value >= definition.setpoint + definition.deadband;
}
