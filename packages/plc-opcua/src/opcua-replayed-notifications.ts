import { quality, QualityCodes, type Sample } from "@kiln/core";
import type { ClientSession, DataValue } from "node-opcua-client";

/**
 * The NotificationMessages the server sent again with Republish, and their DataValues. Keyed by object
 * identity: node-opcua hands each monitored item the DataValue object of the message it decoded,
 * so a value is found here exactly when it came from a Republish answer. Weak: nothing is kept
 * once node-opcua and the driver let go of it.
 */
const replayed = new WeakSet<object>();

/** The reason a replayed value carries (docs/adr/0022, amendment fix13k). */
export const REPLAYED_REASON =
  "replayed by the OPC UA server after the link was repaired (Republish): sampled before the repair, not a current value";

interface RepublishAnswer {
  readonly notificationMessage?: {
    readonly notificationData?:
      readonly ({ readonly monitoredItems?: readonly { readonly value?: unknown }[] | null } | null)[] | null;
  } | null;
}

/**
 * Marks every DataValue of every RepublishResponse `session` receives as replayed.
 *
 * Why: while the server→client direction is lost (a stall, a cut) the server keeps answering the
 * Publish requests it holds, and those answers are lost. When node-opcua re-activates the session
 * it asks for them again with Republish (OPC UA Part 4 5.13.6; node-opcua's
 * `client_publish_engine_reconnection.js`) and hands them to the monitored items like live ones.
 * They are history, as old as the outage (adv13j HIGH-1: 6 s old, delivered good). The tag
 * subscription delivers such values `uncertain` ({@link replayedSample}); a live notification or
 * the values the server resends on re-activation make a tag good again.
 */
export function markReplayedNotifications(session: ClientSession): void {
  const target = session as unknown as { republish?: (...args: unknown[]) => unknown };
  const republish = target.republish;
  if (typeof republish !== "function") return;
  const mark = (response: unknown): void => {
    const message = (response as RepublishAnswer | undefined)?.notificationMessage;
    if (message) replayed.add(message);
    const data = message?.notificationData ?? [];
    for (const notification of data) {
      for (const item of notification?.monitoredItems ?? []) {
        if (typeof item.value === "object" && item.value !== null) replayed.add(item.value);
      }
    }
  };
  const wrapped = function (this: unknown, request: unknown, callback?: unknown): unknown {
    if (typeof callback === "function") {
      return republish.call(this, request, (error: unknown, response: unknown) => {
        mark(response);
        (callback as (error: unknown, response: unknown) => void)(error, response);
      });
    }
    const answer = republish.call(this, request);
    if (answer instanceof Promise) return answer.then((response: unknown) => (mark(response), response));
    return answer;
  };
  Object.defineProperty(session, "republish", { value: wrapped, configurable: true, writable: true });
}

/** True when `message` (a NotificationMessage) came from a Republish answer ({@link markReplayedNotifications}). */
export function isReplayedMessage(message: object): boolean {
  return replayed.has(message);
}

/** True when `dataValue` came from a Republish answer ({@link markReplayedNotifications}). */
export function isReplayed(dataValue: DataValue): boolean {
  return replayed.has(dataValue);
}

/**
 * A replayed value as history: never `good`. A good (or uncertain) sample becomes `uncertain`
 * (UncertainLastUsableValue unless the server said uncertain) with {@link REPLAYED_REASON}; a bad
 * one stays bad. Value and source timestamp are kept, so it is logged as what it was.
 */
export function replayedSample(sample: Sample): Sample {
  if (sample.quality.severity === "bad") return sample;
  const code = sample.quality.severity === "uncertain" ? sample.quality.code : QualityCodes.UncertainLastUsableValue;
  const reason = sample.quality.reason ? `${sample.quality.reason}; ${REPLAYED_REASON}` : REPLAYED_REASON;
  return { ...sample, quality: quality("uncertain", reason, code) };
}
