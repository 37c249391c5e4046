import type { ValidationIssue } from "@kiln/core";
import { MAX_DRIVER_DURATION_MS } from "@kiln/core/driver-kit";

/**
 * The issues of duration options, in ms, that the host or edge node feeds to a timer or compares
 * with a time: each, when given, a finite number from `min` to `MAX_DRIVER_DURATION_MS` (1 hour),
 * the drivers' bound. A raw Node timer fires after 1 ms when given more than 2^31 − 1 ms (about
 * 24.8 days): `stopLingerMs` (a `setTimeout`) and `connectTimeoutMs` (MQTT.js's) would end at
 * once; a longer setting is a typo, not a choice.
 *
 * @param entries `[path, value, min]` per option; `value` undefined means the default.
 */
export function durationIssues(entries: readonly (readonly [string, number | undefined, number])[]): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  for (const [path, value, min] of entries) {
    if (value === undefined) continue;
    if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > MAX_DRIVER_DURATION_MS) {
      issues.push({ path, message: `must be a number of ms from ${min} to ${MAX_DRIVER_DURATION_MS} (1 hour)` });
    }
  }
  return issues;
}
