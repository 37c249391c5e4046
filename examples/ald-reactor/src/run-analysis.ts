import type { AlarmHistoryEntry } from "@kiln/core/driver-kit";
import type { AldPhaseKind } from "./ald-recipe";

/**
 * One recipe step as it ran, from its `step-end` event: times in ms since epoch, durations in ms.
 * `actualMs` is the executor's measured duration (for a pulse: from the valve-open write to the
 * valve-close write), `errorMs` = `actualMs − plannedMs` for completed pulses and waits.
 */
export interface StepRecord {
  /** The run-time path, e.g. `steps[2].loop[7].steps[0]`. */
  readonly path: string;
  /** What the step does in the ALD recipe (`tma`, `h2o`, `purge`, `hold`...). */
  readonly kind: AldPhaseKind;
  readonly label: string;
  /** `step-start` time (`step-end.startedAt`). */
  readonly start: number;
  /** `step-end` time. */
  readonly end: number;
  readonly plannedMs?: number;
  readonly actualMs: number;
  readonly errorMs?: number;
  readonly outcome: "completed" | "timeout" | "aborted" | "failed";
}

/** A PLC communication outage: from a `plc-connection-lose` event to the next `plc-connection-restore`. */
export interface LinkOutage {
  /** The `plc-connection-lose` event's time, ms since epoch. */
  readonly start: number;
  /** The `plc-connection-restore` event's time, or the end of the run when the link never came back. */
  readonly end: number;
  /** `end − start`, ms: the one outage length the summary, the charts and the notes all show. */
  readonly durationMs: number;
  /** False when the run ended with the link still down. */
  readonly restored: boolean;
}

/** A link event as the demo records it from the bus. */
export interface LinkEvent {
  readonly at: number;
  readonly type: "lose" | "restore";
}

/**
 * The PLC link outages of a run: each from a `plc-connection-lose` event to the following
 * `plc-connection-restore` event (the same span as the restore event's `downtimeMs`). An outage
 * still open at `until` ends there, `restored: false`. Repeated loses while down extend the
 * open outage; a restore without a preceding lose is ignored.
 *
 * This is the outage definition the report uses everywhere: it belongs to the link, not to any
 * one tag, so it does not depend on scan periods (a tag's first good sample after the restore
 * comes at its next scan, up to one scan period later).
 */
export function linkOutages(events: readonly LinkEvent[], until: number): LinkOutage[] {
  const outages: LinkOutage[] = [];
  let lostAt: number | undefined;
  for (const event of [...events].sort((a, b) => a.at - b.at)) {
    if (event.type === "lose") lostAt ??= event.at;
    else if (lostAt !== undefined) {
      outages.push({ start: lostAt, end: event.at, durationMs: event.at - lostAt, restored: true });
      lostAt = undefined;
    }
  }
  if (lostAt !== undefined) {
    const end = Math.max(lostAt, until);
    outages.push({ start: lostAt, end, durationMs: end - lostAt, restored: false });
  }
  return outages;
}

/** An outage length as every part of the report prints it: seconds with two decimals. */
export function formatOutage(durationMs: number): string {
  return `${(durationMs / 1_000).toFixed(2)} s`;
}

/** The pulse with the largest timing error, located in the run. */
export interface WorstPulse {
  readonly step: StepRecord;
  /** The cycle it belongs to (1, 2, ...), when it is inside one. */
  readonly cycle?: number;
  /** When the valve-open write completed: `end − actualMs`, ms since epoch. */
  readonly openAt: number;
  /** `step.errorMs`. */
  readonly errorMs: number;
}

/**
 * The pulse whose timing error (`errorMs`, open time − planned) is the largest, the earliest on
 * ties: the pulse behind the `max` of the process result's pulse `TimingStats` (which is the
 * largest signed error, the same values), so the summary's figure names a pulse the report can
 * mark. Undefined when no completed pulse was measured.
 */
export function worstPulse(steps: readonly StepRecord[]): WorstPulse | undefined {
  let found: StepRecord | undefined;
  for (const step of steps) {
    if (step.errorMs === undefined || (step.kind !== "tma" && step.kind !== "h2o")) continue;
    if (
      found === undefined ||
      step.errorMs > found.errorMs! ||
      (step.errorMs === found.errorMs && step.start < found.start)
    ) {
      found = step;
    }
  }
  if (found === undefined) return undefined;
  const worst = found;
  const cycle = cycleTimeline(steps).find((row) => row.steps.includes(worst))?.cycle;
  return {
    step: worst,
    openAt: worst.end - worst.actualMs,
    errorMs: worst.errorMs!,
    ...(cycle === undefined ? {} : { cycle }),
  };
}

/** One ALD cycle as it ran: its steps with their durations against their setpoints. */
export interface CycleTimelineRow {
  /** 1, 2, ... in run order. */
  readonly cycle: number;
  /** Start of its TMA pulse step, ms since epoch. */
  readonly start: number;
  /** End of its last step. */
  readonly end: number;
  /** TMA pulse, purge, H2O pulse, purge (as far as the cycle got), in order. */
  readonly steps: readonly StepRecord[];
  /** The step with the largest |errorMs|, when any was measured. */
  readonly worst?: StepRecord;
}

const IN_CYCLE: ReadonlySet<AldPhaseKind> = new Set(["tma", "h2o", "purge"]);

/**
 * Groups the recipe's steps into ALD cycles: a cycle starts with a TMA pulse and takes the H2O
 * pulse and purges after it, up to the next TMA pulse or any other step (the purge hold, the end
 * of the run). The same rule as `cycleWindows`; steps before the first TMA pulse belong to none.
 */
export function cycleTimeline(steps: readonly StepRecord[]): CycleTimelineRow[] {
  const rows: CycleTimelineRow[] = [];
  let open: StepRecord[] | undefined;
  const close = (): void => {
    if (open && open.length > 0) {
      const measured = open.filter((step) => step.errorMs !== undefined);
      const worst = measured.reduce<StepRecord | undefined>(
        (best, step) => (best === undefined || Math.abs(step.errorMs!) > Math.abs(best.errorMs!) ? step : best),
        undefined,
      );
      rows.push({
        cycle: rows.length + 1,
        start: open[0]!.start,
        end: Math.max(...open.map((step) => step.end)),
        steps: open,
        ...(worst ? { worst } : {}),
      });
    }
    open = undefined;
  };
  for (const step of [...steps].sort((a, b) => a.start - b.start)) {
    if (step.kind === "tma") {
      close();
      open = [step];
    } else if (open && IN_CYCLE.has(step.kind)) open.push(step);
    else close();
  }
  close();
  return rows;
}

/** One alarm occurrence: from its activation to its clearing, with its acknowledgement. */
export interface AlarmOccurrence {
  readonly alarmId: string;
  readonly tag: string;
  readonly kind: string;
  /** 1 highest. */
  readonly priority: number;
  /** The activation (`cause: process-activate`), ms since epoch. */
  readonly raisedAt: number;
  /** The value that raised it. */
  readonly value?: number | boolean | null;
  /** The state it went to when raised: `unacknowledged` when annunciated. */
  readonly raisedTo: string;
  /** The return to normal (`cause: process-clear`), when it happened. */
  readonly clearedAt?: number;
  /** The acknowledgement (`cause: acknowledge`), when it happened. */
  readonly acknowledgedAt?: number;
  /** Who acknowledged it (the history entry's `principal`). */
  readonly acknowledgedBy?: string;
}

/**
 * Pairs the alarm history's transitions (`store.alarms.query`, oldest first) into occurrences:
 * each `process-activate` opens one for its alarm; the next `process-clear` of that alarm sets
 * `clearedAt`, the next `acknowledge` `acknowledgedAt` and `acknowledgedBy` (an acknowledgement
 * may come before or after the clear). Transitions of an alarm with no open occurrence (an
 * acknowledgement of an alarm raised before the range) are not lost: they start an occurrence
 * whose `raisedAt` is the transition's time and `raisedTo` its `from` state.
 */
export function alarmOccurrences(entries: readonly AlarmHistoryEntry[]): AlarmOccurrence[] {
  type Mutable = { -readonly [K in keyof AlarmOccurrence]: AlarmOccurrence[K] };
  const occurrences: Mutable[] = [];
  const latest = new Map<string, Mutable>();
  for (const entry of entries) {
    if (entry.cause === "process-activate") {
      const occurrence: Mutable = {
        alarmId: entry.alarmId,
        tag: entry.tag,
        kind: entry.kind,
        priority: entry.priority,
        raisedAt: entry.at,
        raisedTo: entry.to,
        ...(entry.value === undefined ? {} : { value: entry.value }),
      };
      occurrences.push(occurrence);
      latest.set(entry.alarmId, occurrence);
      continue;
    }
    if (entry.cause !== "process-clear" && entry.cause !== "acknowledge") continue;
    let occurrence = latest.get(entry.alarmId);
    const taken = entry.cause === "process-clear" ? occurrence?.clearedAt : occurrence?.acknowledgedAt;
    if (occurrence === undefined || taken !== undefined) {
      occurrence = {
        alarmId: entry.alarmId,
        tag: entry.tag,
        kind: entry.kind,
        priority: entry.priority,
        raisedAt: entry.at,
        raisedTo: entry.from,
      };
      occurrences.push(occurrence);
      latest.set(entry.alarmId, occurrence);
    }
    if (entry.cause === "process-clear") occurrence.clearedAt = entry.at;
    else {
      occurrence.acknowledgedAt = entry.at;
      if (entry.principal !== undefined) occurrence.acknowledgedBy = entry.principal;
    }
  }
  return occurrences;
}

/** A span during which a valve was open, from its logged samples. */
export interface ValveSpan {
  readonly start: number;
  readonly end: number;
  /** False when any sample of the span was not of good quality. */
  readonly good: boolean;
}

/**
 * The spans a valve was open, from its logged samples in time order (`true` = open): each from a
 * sample reading open to the next sample reading closed (or `until`). Samples logged on change
 * mark each transition, so this is the valve state the PLC reported, at the scan's resolution.
 */
export function valveSpans(
  samples: readonly { readonly t: number; readonly open: boolean; readonly good: boolean }[],
  until: number,
): ValveSpan[] {
  const spans: ValveSpan[] = [];
  let open: { start: number; good: boolean } | undefined;
  for (const sample of samples) {
    if (sample.open) {
      if (open) open.good &&= sample.good;
      else open = { start: sample.t, good: sample.good };
    } else if (open) {
      spans.push({ start: open.start, end: sample.t, good: open.good });
      open = undefined;
    }
  }
  if (open) spans.push({ start: open.start, end: Math.max(open.start, until), good: open.good });
  return spans;
}
