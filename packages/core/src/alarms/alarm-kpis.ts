import type { AlarmHistoryEntry, TimeRange } from "@kiln/core/driver-kit";

/** Thresholds of {@link computeAlarmKpis}; the defaults follow ISA-18.2 and EEMUA 191. */
export interface AlarmKpiOptions {
  /** Length of the rate window. @default 600_000 (10 minutes) */
  readonly windowMs?: number;
  /** A flood is more than this many alarms within one window. @default 10 */
  readonly floodThreshold?: number;
  /** Length of the chattering window. @default 60_000 (1 minute) */
  readonly chatterWindowMs?: number;
  /** An alarm chatters when it is raised at least this many times within one chattering window. @default 3 */
  readonly chatterThreshold?: number;
}

/** Simple alarm-system performance figures over one time range. */
export interface AlarmKpis {
  /** The analysed range `[from, to)`. */
  readonly range: TimeRange;
  /** Alarms raised in the range. */
  readonly raised: number;
  /** Average alarms per window (per 10 minutes by default). ISA-18.2 aims at about 1, at most 2. */
  readonly averagePerWindow: number;
  /** The most alarms raised within any sliding window. */
  readonly peakPerWindow: number;
  /** Alarms raised per consecutive fixed window from `range.from` (one entry per window). */
  readonly buckets: readonly {
    /** Window start, ms since epoch (inclusive). */
    readonly from: number;
    /** Window end (exclusive; the range end for the last, possibly shorter, window). */
    readonly to: number;
    /** Alarms raised in it. */
    readonly raised: number;
  }[];
  /** Every flood (a period in which alarms came faster than the operator can handle), oldest first. */
  readonly floods: readonly {
    /** Time of the first alarm of the first window that exceeded the threshold. */
    readonly from: number;
    /** Time of the last alarm that still had more than the threshold in its trailing window. */
    readonly to: number;
    /** Alarms raised from `from` to `to`, inclusive. */
    readonly raised: number;
    /** The most alarms found in one sliding window during the flood. */
    readonly peak: number;
  }[];
  /**
   * Every chattering alarm (raised repeatedly in a short time: a candidate for a larger deadband
   * or delay), most raises first.
   */
  readonly chattering: readonly {
    /** The alarm's id. */
    readonly alarmId: string;
    /** The tag it watches. */
    readonly tag: string;
    /** Times raised in the analysed range. */
    readonly raised: number;
    /** The most raises found in one sliding chattering window. */
    readonly peakInWindow: number;
  }[];
}

// The element types by name, for this module (ADR 0027: a host receives them inside AlarmKpis).
type AlarmRateBucket = AlarmKpis["buckets"][number];
type AlarmFlood = AlarmKpis["floods"][number];
type ChatteringAlarm = AlarmKpis["chattering"][number];

/**
 * True when a history entry is an alarm raised to the operator: a process activation that left
 * the alarm `unacknowledged`. Activations of shelved, suppressed or out-of-service alarms are
 * not annunciated, and re-annunciations (shelf expiry, return to service) are not new alarms;
 * neither counts.
 */
export function isAlarmRaise(entry: AlarmHistoryEntry): boolean {
  return entry.cause === "process-activate" && entry.to === "unacknowledged";
}

/**
 * Computes alarm KPIs from history entries (as returned by `AlarmHistory.query(range)`).
 * Only raises ({@link isAlarmRaise}) inside `range` count.
 *
 * - Rate: raises per fixed window, their average, and the peak over any sliding window.
 * - Flood: more than `floodThreshold` raises within any window of `windowMs`, i.e. raise `j` is
 *   in flood when the raises in `(t_j - windowMs, t_j]` exceed the threshold. A flood runs from
 *   the first raise of its first such window to its last flooding raise; overlapping ones merge.
 * - Chattering: an alarm raised at least `chatterThreshold` times within `(t - chatterWindowMs, t]`.
 *
 * @example
 * const kpis = computeAlarmKpis(await history.query(range), range);
 * if (kpis.floods.length > 0) console.warn("alarm floods", kpis.floods);
 * @throws RangeError when the range is empty or a threshold is not a positive number.
 */
export function computeAlarmKpis(
  entries: readonly AlarmHistoryEntry[],
  range: TimeRange,
  options: AlarmKpiOptions = {},
): AlarmKpis {
  const windowMs = positive(options.windowMs ?? 600_000, "windowMs");
  const floodThreshold = positive(options.floodThreshold ?? 10, "floodThreshold");
  const chatterWindowMs = positive(options.chatterWindowMs ?? 60_000, "chatterWindowMs");
  const chatterThreshold = positive(options.chatterThreshold ?? 3, "chatterThreshold");
  if (!(range.to > range.from)) throw new RangeError("computeAlarmKpis needs a non-empty range (to > from)");

  const raises = entries
    .filter((entry) => isAlarmRaise(entry) && entry.at >= range.from && entry.at < range.to)
    .sort((a, b) => a.at - b.at);
  const times = raises.map((entry) => entry.at);

  const buckets: AlarmRateBucket[] = [];
  for (let from = range.from; from < range.to; from += windowMs) {
    buckets.push({ from, to: Math.min(from + windowMs, range.to), raised: 0 });
  }
  for (const at of times) {
    const index = Math.floor((at - range.from) / windowMs);
    const bucket = buckets[index]!;
    buckets[index] = { ...bucket, raised: bucket.raised + 1 };
  }

  const trailing = trailingCounts(times, windowMs);
  // Raise j floods when its trailing window holds more than the threshold; floods whose windows
  // overlap are one flood.
  const spans: { firstIndex: number; lastIndex: number; peak: number }[] = [];
  trailing.forEach(({ count, firstIndex }, index) => {
    if (count <= floodThreshold) return;
    const last = spans.at(-1);
    if (last && firstIndex <= last.lastIndex) {
      last.lastIndex = index;
      last.peak = Math.max(last.peak, count);
    } else {
      spans.push({ firstIndex, lastIndex: index, peak: count });
    }
  });
  const floods: AlarmFlood[] = spans.map((span) => ({
    from: times[span.firstIndex]!,
    to: times[span.lastIndex]!,
    raised: span.lastIndex - span.firstIndex + 1,
    peak: span.peak,
  }));

  const byAlarm = new Map<string, { tag: string; times: number[] }>();
  for (const entry of raises) {
    const alarm = byAlarm.get(entry.alarmId);
    if (alarm) alarm.times.push(entry.at);
    else byAlarm.set(entry.alarmId, { tag: entry.tag, times: [entry.at] });
  }
  const chattering: ChatteringAlarm[] = [];
  for (const [alarmId, alarm] of byAlarm) {
    const peakInWindow = Math.max(...trailingCounts(alarm.times, chatterWindowMs).map(({ count }) => count));
    if (peakInWindow >= chatterThreshold) {
      chattering.push({ alarmId, tag: alarm.tag, raised: alarm.times.length, peakInWindow });
    }
  }
  chattering.sort((a, b) => b.raised - a.raised || a.alarmId.localeCompare(b.alarmId));

  return {
    range: { from: range.from, to: range.to },
    raised: times.length,
    averagePerWindow: (times.length * windowMs) / (range.to - range.from),
    peakPerWindow: trailing.reduce((peak, { count }) => Math.max(peak, count), 0),
    buckets,
    floods,
    chattering,
  };
}

/** For each sorted time t_j: how many times fall in `(t_j - windowMs, t_j]`, and the first index among them. */
function trailingCounts(times: readonly number[], windowMs: number): { count: number; firstIndex: number }[] {
  const result: { count: number; firstIndex: number }[] = [];
  let first = 0;
  times.forEach((at, index) => {
    while (times[first]! <= at - windowMs) first++;
    result.push({ count: index - first + 1, firstIndex: first });
  });
  return result;
}

function positive(value: number, name: string): number {
  if (!(typeof value === "number" && value > 0 && Number.isFinite(value))) {
    throw new RangeError(`computeAlarmKpis: ${name} must be a positive number, got ${String(value)}`);
  }
  return value;
}
