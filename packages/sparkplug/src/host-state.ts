import { KilnValidationError } from "@kiln/core";

/**
 * A host application's STATE (Sparkplug 3.0.0, 5.6.1 / 5.6.2): the retained JSON message on
 * `spBv1.0/STATE/<host id>`. `timestamp` is ms since the Unix epoch; a host's birth and death
 * (its Will) carry the same timestamp so that an edge node can tell an old death from the
 * current session.
 */
export interface SparkplugHostState {
  /** True in the host's birth, false in its death (its Will). */
  readonly online: boolean;
  /** ms since the Unix epoch (UTC) of the host's CONNECT; the same in its birth and its Will. */
  readonly timestamp: number;
}

/** The UTF-8 JSON bytes of a STATE message. @throws TypeError when `timestamp` is not a whole number from 0. */
export function encodeHostState(state: SparkplugHostState): Uint8Array {
  if (!Number.isSafeInteger(state.timestamp) || state.timestamp < 0) {
    throw new TypeError("a STATE timestamp is a whole number of ms since the Unix epoch, from 0");
  }
  return new TextEncoder().encode(JSON.stringify({ online: state.online === true, timestamp: state.timestamp }));
}

/**
 * Parses a STATE message.
 * @throws KilnValidationError `KILN_VALIDATION` when it is not UTF-8 JSON `{ "online": boolean,
 *   "timestamp": number }` (issue path `online` or `timestamp`, or the root for bad JSON).
 */
export function decodeHostState(bytes: Uint8Array): SparkplugHostState {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (error) {
    throw new KilnValidationError("Sparkplug STATE", [{ path: "", message: "must be UTF-8 JSON" }], { cause: error });
  }
  const record = (typeof value === "object" && value !== null ? value : {}) as Record<string, unknown>;
  const issues = [];
  if (typeof record.online !== "boolean") issues.push({ path: "online", message: "must be a boolean" });
  if (typeof record.timestamp !== "number" || !Number.isSafeInteger(record.timestamp) || record.timestamp < 0) {
    issues.push({ path: "timestamp", message: "must be a whole number of ms since the Unix epoch" });
  }
  if (issues.length > 0) throw new KilnValidationError("Sparkplug STATE", issues);
  return { online: record.online as boolean, timestamp: record.timestamp as number };
}
