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

/**
 * The issues of the timing fields of the `mqtt` pass-through options (MQTT.js's), which reach a
 * timer or the CONNECT packet as they are: `connectTimeout` as a duration above (1 ms to 1 hour;
 * 30 days overflowed MQTT.js's timer: "connack timeout" at once, forever), `keepalive` a whole
 * number of seconds from 0 to 65,535 (MQTT's two-byte Keep Alive; 0 turns it off).
 * (`reconnectPeriod` is not taken: Kiln reconnects itself.) Review adv19k.
 */
export function mqttTimingIssues(
  mqtt: { readonly connectTimeout?: unknown; readonly keepalive?: unknown } | undefined,
): ValidationIssue[] {
  if (mqtt === undefined) return [];
  const issues = durationIssues([["mqtt.connectTimeout", mqtt.connectTimeout as number | undefined, 1]]);
  const keepalive = mqtt.keepalive;
  if (
    keepalive !== undefined &&
    !(Number.isInteger(keepalive) && (keepalive as number) >= 0 && (keepalive as number) <= 65_535)
  )
    issues.push({
      path: "mqtt.keepalive",
      message: "must be a whole number of seconds from 0 to 65535 (MQTT Keep Alive)",
    });
  return issues;
}
