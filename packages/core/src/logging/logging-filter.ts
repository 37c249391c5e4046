import type { Tag } from "../domain/tags";
import type { Sample } from "../domain/sample";

interface TagLogState {
  readonly mode: "change" | "periodic" | "none";
  readonly deadband: number;
  readonly periodMs: number;
  logged: boolean;
  lastValue: Sample["value"];
  lastAt: number;
  lastQualityCode: number;
  lastSeverity: string;
}

/**
 * Decides which CVT updates are logged, per tag policy:
 * - `change`: log when the value moved by more than the deadband since the last LOGGED value
 *   (absolute, or percent of the tag's range span), so slow drift is still recorded;
 *   non-numeric values are logged on any change. NaN compares equal to NaN and differs from every
 *   number, whatever the deadband, so a NaN period is logged once at its start and once at its end.
 * - `periodic`: log when `periodMs` has passed since the last logged sample.
 * - `none`: never log.
 * A tag's first sample and every quality change are always logged (except under `none`).
 */
export class LoggingFilter {
  readonly #states = new Map<string, TagLogState>();

  constructor(tags: readonly Tag[]) {
    for (const tag of tags) {
      const policy = tag.logging;
      let deadband = 0;
      if (policy.mode === "change" && policy.deadband) {
        deadband =
          policy.deadband.kind === "absolute"
            ? policy.deadband.value
            : (policy.deadband.value / 100) * (tag.range ? tag.range.max - tag.range.min : 0);
      }
      this.#states.set(tag.name, {
        mode: policy.mode,
        deadband,
        periodMs: policy.mode === "periodic" ? policy.periodMs : 0,
        logged: false,
        lastValue: null,
        lastAt: 0,
        lastQualityCode: 0,
        lastSeverity: "",
      });
    }
  }

  /** True when `sample` should be logged; records it as the last logged sample when so. */
  accept(sample: Sample): boolean {
    const state = this.#states.get(sample.tag);
    if (state === undefined || state.mode === "none") return false;
    if (state.logged && !this.#qualityChanged(state, sample) && !this.#due(state, sample)) return false;
    state.logged = true;
    state.lastValue = sample.value;
    state.lastAt = sample.timestamp;
    state.lastQualityCode = sample.quality.code;
    state.lastSeverity = sample.quality.severity;
    return true;
  }

  #qualityChanged(state: TagLogState, sample: Sample): boolean {
    return state.lastQualityCode !== sample.quality.code || state.lastSeverity !== sample.quality.severity;
  }

  #due(state: TagLogState, sample: Sample): boolean {
    if (state.mode === "periodic") return sample.timestamp - state.lastAt >= state.periodMs;
    const value = sample.value;
    const last = state.lastValue;
    if (typeof value === "number" && typeof last === "number") {
      // NaN (a sensor asleep, an inverter at night) is a value of its own: NaN to NaN is no change,
      // NaN to a number or back is a change whatever the deadband (Object.is semantics).
      if (Number.isNaN(value) || Number.isNaN(last)) return Number.isNaN(value) !== Number.isNaN(last);
      return state.deadband > 0 ? Math.abs(value - last) > state.deadband : value !== last;
    }
    return !Object.is(value, last);
  }
}
