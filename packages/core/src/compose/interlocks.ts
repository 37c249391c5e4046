import { KilnError } from "../domain/errors";
import { sayingLess } from "../domain/refusal-disclosure";
import type { Sample } from "../domain/sample";
import type { TagCatalog } from "../domain/tags";
import type { AlarmEngine } from "../alarms/alarm-engine";
import { auditedText } from "../security/command-input";
import type { Clock } from "../ports/clock";
import { monotonicNow } from "../runtime/system-clock";
import type { CvtChange } from "../cvt/current-value-table";
import { QualityCodes } from "../domain/quality";

/**
 * The commands that reset a trip: Kiln `reset` (`error` → `idle`) and `exitMaintenance`
 * (`maintenance` → `idle`: after `enterMaintenance` from `error` it is a reset too; review 15r),
 * PackML `clear` (`aborted` → `clearing`) and `reset` (`stopped`/`completed` → `resetting`). Like
 * `start`, they are refused while an interlock alarm is active (ISA-84 / IEC 61511: a trip is not
 * reset while its condition persists; adversarial review 15u, ADR 0042), or its state is unknown
 * or stale (reviews 15t, 15r).
 */
export const INTERLOCKED_COMMANDS: ReadonlySet<string> = new Set(["start", "reset", "clear", "exitMaintenance"]);

/** An interlock that does not permit a start or a reset now, and why. */
export interface InterlockHold {
  /** The interlock alarm's id. */
  readonly id: string;
  /**
   * `active`, `state unknown: no sample yet`, `state unknown: no usable value` (a good sample
   * whose value is not of the alarm's kind, NaN), `bad quality: <reason>` or
   * `uncertain quality: <reason>`. The device's reason is shown with control and format
   * characters written out and cut to {@link QUALITY_REASON_MAX_LENGTH} code units; or
   * `stale: tag <tag> source not advanced for <age> ms (max <limit> ms)` ({@link staleSource}).
   */
  readonly reason: string;
}

/**
 * What an interlock needs to judge a good sample's age: the current sample of a tag (the current
 * value table's), how long (ms, the host's monotonic clock) since the tag's current sample last
 * advanced (undefined: not observed yet), and how long a source may stay unadvanced for the tag
 * (0: no limit).
 */
export interface SourceFreshness {
  readonly current: (tag: string) => Sample | undefined;
  readonly sinceAdvancedMs: (tag: string) => number | undefined;
  readonly maxAgeMs: (tag: string) => number;
}

/** How many of a source's last distinct delivered timestamps a new one must differ from to count as an advance (review 15f, M1). */
const RECENT_TIMESTAMPS = 8;

/**
 * The host-side record of when each limited tag's source last advanced: what the driver delivered
 * changed: its value, or its source timestamp to one not among its last few distinct ones (in
 * either direction). Quality alone is not an advance, nor a timestamp bouncing between a few
 * fixed values (review 15f, M1). Judged on the delivered timestamp
 * (`CvtChange.sourceTimestamp`), not on the current value table's sample, whose timestamp only
 * advances: after a device clock stepped back the table keeps a steady value as a repeat of the
 * sample stamped before the step, so that sample would show the source frozen for the size of the
 * step (review 15e). A step back is reported through `onStepBack`. Measured on the host's
 * monotonic clock only: the device's clock is never subtracted from the host's, so a device clock
 * set an hour off neither ages a fresh value nor freshens a frozen one (review 15c, M3).
 * Fed every current value table change (repeats included) by the control system.
 */
export class SourceAdvances implements SourceFreshness {
  /** Per limited tag: when (host monotonic ms) its source last advanced, and the timestamp it last delivered. */
  readonly #sources = new Map<string, { advancedAt: number; delivered: number; recent: number[] }>();
  readonly #clock: Pick<Clock, "now" | "monotonicNow">;
  readonly #onStepBack: ((tag: string, stepMs: number) => void) | undefined;
  readonly current: (tag: string) => Sample | undefined;
  readonly maxAgeMs: (tag: string) => number;

  /**
   * @param options.onStepBack called when a limited tag's delivered source timestamp went back
   *   (`stepMs` > 0: how far): the device's clock stepped back. The source counts as alive.
   */
  constructor(options: {
    readonly clock: Pick<Clock, "now" | "monotonicNow">;
    readonly current: (tag: string) => Sample | undefined;
    readonly maxAgeMs: (tag: string) => number;
    readonly onStepBack?: (tag: string, stepMs: number) => void;
  }) {
    this.#clock = options.clock;
    this.current = options.current;
    this.maxAgeMs = options.maxAgeMs;
    this.#onStepBack = options.onStepBack;
  }

  /** Notes `change` of the current value table: an advance restarts the tag's age at 0. */
  observe(change: CvtChange): void {
    const tag = change.sample.tag;
    if (!(this.maxAgeMs(tag) > 0)) return;
    const delivered = change.sourceTimestamp;
    const source = this.#sources.get(tag);
    const now = monotonicNow(this.#clock);
    if (source === undefined) {
      this.#sources.set(tag, { advancedAt: now, delivered, recent: [delivered] });
      return;
    }
    const moved = !Object.is(delivered, source.delivered);
    // An advance is a changed value or a delivered timestamp the source has not delivered among
    // its last RECENT_TIMESTAMPS distinct ones: a quality that flaps alone is not (a frozen source
    // whose quality toggles stays frozen), nor a timestamp bouncing between a few fixed values
    // (review 15f, M1). A clock stepped back reaches new timestamps at once (or after at most
    // RECENT_TIMESTAMPS samples when it steps back less than that many periods).
    const fresh = !source.recent.some((seen) => Object.is(seen, delivered));
    if (fresh || change.previous === undefined || change.valueChanged) source.advancedAt = now;
    if (fresh) {
      source.recent.push(delivered);
      if (source.recent.length > RECENT_TIMESTAMPS) source.recent.shift();
    }
    if (moved && delivered < source.delivered) this.#onStepBack?.(tag, source.delivered - delivered);
    source.delivered = delivered;
  }

  sinceAdvancedMs(tag: string): number | undefined {
    const at = this.#sources.get(tag)?.advancedAt;
    return at === undefined ? undefined : Math.max(0, monotonicNow(this.#clock) - at);
  }
}

/**
 * Each tag's source-age limit (ms) from its scan group's `maxSourceAgeMs`; 0 (no limit) when
 * not given. Not derived from the scan period by default: many OPC UA servers keep a steady
 * value's source timestamp at its last change, and Modbus has none (review 15r, ADR 0042).
 */
export function sourceAgeLimits(
  tags: TagCatalog,
  scanGroups: Readonly<Record<string, { readonly maxSourceAgeMs?: number | undefined }>>,
): (tag: string) => number {
  // Only the limited tags: this is asked for every change of every tag, and a lookup in a map of
  // a whole large catalog costs a cache miss per sample (issue 16).
  const limits = new Map<string, number>();
  for (const tag of tags.list()) {
    const limit = scanGroups[tag.scanGroup]?.maxSourceAgeMs ?? 0;
    if (limit !== 0) limits.set(tag.name, limit);
  }
  if (limits.size === 0) return () => 0;
  return (tag) => limits.get(tag) ?? 0;
}

/**
 * The one source-age rule (reviews 15r M1, 15c M3): why a good current sample of `tag` is too old
 * to be trusted (its source has not advanced, by the host's monotonic clock, for longer than the
 * tag's limit: a device stuck, or a link serving a cached value), or undefined when it is fresh,
 * not good, absent or the tag has no limit. The device's timestamp is compared only with its own
 * earlier timestamps, never with the host's clock.
 */
export function staleSource(freshness: SourceFreshness, tag: string): string | undefined {
  const limit = freshness.maxAgeMs(tag);
  if (!(limit > 0)) return undefined;
  const sample = freshness.current(tag);
  if (sample === undefined || sample.quality.severity !== "good") return undefined;
  const age = freshness.sinceAdvancedMs(tag);
  if (age === undefined || !(age > limit)) return undefined;
  return `stale: tag ${tag} source not advanced for ${Math.round(age)} ms (max ${limit} ms)`;
}

/**
 * Why the current sample of an interlock's tag cannot be trusted to show the process now, so a
 * running process must be tripped (review 15c, M4): bad quality (no value to judge), or a last
 * usable value (`UncertainLastUsableValue`: Kiln's stale marker, or a device saying the same).
 * Not Kiln's link-loss marker, and not other uncertain samples (their value is still evaluated). The words name the tag and its quality.
 */
export function untrustedInput(sample: Sample): string | undefined {
  const { severity, code } = sample.quality;
  // Not the link-loss marker (`UncertainNoCommunicationLastUsableValue`): with the device
  // unreachable the safe state cannot be written either, and the recipe's own writes wait for the
  // link (the device's own interlocks act); the loss still holds starts and resets.
  const lastUsable = severity === "uncertain" && code === QualityCodes.UncertainLastUsableValue;
  if (severity !== "bad" && !lastUsable) return undefined;
  return `tag ${sample.tag} ${severity} quality: ${shownReason(sample.quality.reason)}`;
}

/** Longest device quality reason an interlock hold shows, in UTF-16 code units (longer: cut, with a marker). */
const QUALITY_REASON_MAX_LENGTH = 256;

/**
 * The interlock alarms that are not permissive now (IEC 61511: fail-safe, a permissive needs a
 * known, valid state): those whose condition is active (acknowledged or not), and those whose
 * tag's current sample is not good and usable: none yet, bad (bad quality neither activates nor
 * clears an alarm; review 15t, H3), uncertain of any kind (a sensor flagged inaccurate, Kiln's
 * own "no communication, last usable value" and "stale" markers: the value may not be the
 * process's now; review 15s, M2), or good without a usable value (NaN). Holds refuse starts and
 * resets; a running process is tripped by the control system only for an input it cannot trust
 * at all ({@link untrustedInput}: bad, or a last usable value; review 15c, M4): another uncertain
 * sample does not trip it (its value is still evaluated, so an uncertain value beyond the
 * setpoint does). A good sample whose source has not advanced within the tag's limit holds too
 * ({@link staleSource}; with `freshness`). In definition order, whatever the alarm's service state.
 */
export function interlockHolds(alarms: Pick<AlarmEngine, "list">, freshness?: SourceFreshness): InterlockHold[] {
  const holds: InterlockHold[] = [];
  for (const alarm of alarms.list()) {
    if (!alarm.interlock) continue;
    const quality = alarm.lastQuality;
    let reason: string | undefined;
    if (alarm.active) reason = "active";
    else if (quality === undefined) reason = "state unknown: no sample yet";
    else if (quality.severity !== "good") reason = `${quality.severity} quality: ${shownReason(quality.reason)}`;
    else if (!alarm.lastSampleUsable) reason = "state unknown: no usable value";
    else if (freshness !== undefined) reason = staleSource(freshness, alarm.tag);
    if (reason !== undefined) holds.push({ id: alarm.id, reason });
  }
  return holds;
}

/** A device's quality reason as a hold shows it: escaped and bounded (it reaches messages, audit and health()). */
function shownReason(reason: string | undefined): string {
  return reason === undefined || reason === "" ? "no reason given" : auditedText(reason, QUALITY_REASON_MAX_LENGTH);
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
 * interlocks, holds }` (`interlocks`: the holding interlock alarms' ids; `holds`: each with why;
 * `state` only to a caller who may know it, `disclosureFor`);
 * undefined when the command is not interlocked or every interlock is permissive.
 */
export function interlockRefusal(
  alarms: Pick<AlarmEngine, "list">,
  machine: { readonly machineId: string; readonly state: string },
  command: string,
  freshness?: SourceFreshness,
): KilnError | undefined {
  if (!INTERLOCKED_COMMANDS.has(command)) return undefined;
  const holds = interlockHolds(alarms, freshness);
  if (holds.length === 0) return undefined;
  const reason = interlockHoldsReason(holds);
  const interlocks = holds.map((hold) => hold.id);
  const refusal = (showState: boolean): { message: string; details: Record<string, unknown> } => ({
    message:
      `Machine "${machine.machineId}" refused command "${command}"${showState ? ` in state "${machine.state}"` : ""}: ${reason}. ` +
      `A trip is reset, and a machine started, once every interlock is known and clear.`,
    details: {
      machineId: machine.machineId,
      command,
      ...(showState ? { state: machine.state } : {}),
      stage: "guard",
      reason,
      interlocks,
      holds,
    },
  });
  const full = refusal(true);
  // The interlocks that hold are the reason, told to every caller; the state only to one who may know it (review 15e).
  return sayingLess(new KilnError("KILN_INVALID_TRANSITION", full.message, { details: full.details }), (disclosure) =>
    disclosure.machine ? undefined : refusal(false),
  );
}
