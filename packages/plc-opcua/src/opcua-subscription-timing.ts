import { KilnValidationError } from "@kiln/core";

/** The `subscriptions` driver options a subscription's timing is computed from (both ms). */
export interface SubscriptionTimingOptions {
  readonly maxPublishingIntervalMs: number;
  readonly keepAliveMs: number;
}

/** The CreateSubscription parameters Kiln requests for one scan group. */
export interface SubscriptionTiming {
  /** Requested publishing interval, ms: the group's period, at most `maxPublishingIntervalMs`. */
  readonly publishingIntervalMs: number;
  /** Publishing intervals per keep-alive (3 or more). */
  readonly maxKeepAliveCount: number;
  /** Publishing intervals without a Publish request before the server deletes the subscription: 3 keep-alives. */
  readonly lifetimeCount: number;
}

/** node-opcua's client raises a keep-alive count below 3 to 3 itself (client_subscription_impl). */
const MIN_KEEP_ALIVE_COUNT = 3;

/**
 * The publishing interval, keep-alive and lifetime counts of the subscription of a scan group
 * sampled every `samplingIntervalMs` on a session the server keeps for `sessionTimeoutMs` (its
 * revised timeout). The publishing interval is decoupled from the sampling interval (which the
 * monitored items keep) and bounded by `maxPublishingIntervalMs`, so the keep-alive period stays
 * about `keepAliveMs` and the lifetime about 3 × `keepAliveMs` whatever the group's period: a
 * subscription left behind on the server expires within that bound once its session is gone
 * (docs/adr/0022, amendment fix13c).
 *
 * The keep-alive period never exceeds the session timeout (node-opcua refuses such a subscription
 * with NODE-OPCUA-W09; a session idle that long would time out).
 *
 * @throws KilnValidationError (`KILN_VALIDATION`, not retryable) naming
 *   `subscriptions.maxPublishingIntervalMs` when the session timeout is shorter than three
 *   publishing intervals: no subscription can be created on that session until the option (or
 *   the server's session timeout) changes.
 */
export function subscriptionTiming(
  samplingIntervalMs: number,
  sessionTimeoutMs: number,
  options: SubscriptionTimingOptions,
): SubscriptionTiming {
  const publishingIntervalMs = Math.max(1, Math.min(samplingIntervalMs, options.maxPublishingIntervalMs));
  const keepAliveMs = Math.min(options.keepAliveMs, sessionTimeoutMs);
  const maxKeepAliveCount = Math.floor(keepAliveMs / publishingIntervalMs);
  if (maxKeepAliveCount < MIN_KEEP_ALIVE_COUNT) {
    throw new KilnValidationError(
      "OPC UA subscription timing",
      [
        {
          path: "subscriptions.maxPublishingIntervalMs",
          message: `a publishing interval of ${publishingIntervalMs} ms needs a session timeout of at least ${MIN_KEEP_ALIVE_COUNT * publishingIntervalMs} ms (3 publishing intervals per keep-alive), but the server keeps the session for ${sessionTimeoutMs} ms; lower subscriptions.maxPublishingIntervalMs or raise timeouts.sessionMs`,
        },
      ],
      { retryable: false, details: { publishingIntervalMs, sessionTimeoutMs } },
    );
  }
  return { publishingIntervalMs, maxKeepAliveCount, lifetimeCount: 3 * maxKeepAliveCount };
}
