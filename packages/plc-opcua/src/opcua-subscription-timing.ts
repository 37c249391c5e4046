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
  /** The publishing interval was lowered below the group's (bounded) period to fit the session timeout the server granted. */
  readonly limitedBySession: boolean;
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
 * with NODE-OPCUA-W09; a session idle that long would time out). When the server grants a session
 * timeout shorter than three publishing intervals, the publishing interval is lowered to a third
 * of it, so the subscription still has its 3 keep-alive intervals (`limitedBySession` true; the
 * server may revise it up again), instead of being refused (docs/adr/0022, amendment fix13e).
 */
export function subscriptionTiming(
  samplingIntervalMs: number,
  sessionTimeoutMs: number,
  options: SubscriptionTimingOptions,
): SubscriptionTiming {
  const keepAliveMs = Math.max(MIN_KEEP_ALIVE_COUNT, Math.min(options.keepAliveMs, sessionTimeoutMs));
  const wanted = Math.max(1, Math.min(samplingIntervalMs, options.maxPublishingIntervalMs));
  const publishingIntervalMs = Math.max(1, Math.min(wanted, Math.floor(keepAliveMs / MIN_KEEP_ALIVE_COUNT)));
  const maxKeepAliveCount = Math.max(MIN_KEEP_ALIVE_COUNT, Math.floor(keepAliveMs / publishingIntervalMs));
  return {
    publishingIntervalMs,
    maxKeepAliveCount,
    lifetimeCount: 3 * maxKeepAliveCount,
    limitedBySession: publishingIntervalMs < wanted,
  };
}

/**
 * The session keep-alive period for a session the server keeps for `sessionTimeoutMs` (its
 * revised timeout): `keepAliveMs`, or half the session timeout when that is shorter, so the
 * keep-alive reads of an idle session always reach the server before it expires the session
 * (docs/adr/0022, amendment fix13e). Never below 100 ms.
 */
export function effectiveKeepAliveMs(keepAliveMs: number, sessionTimeoutMs: number): number {
  return Math.max(100, Math.min(keepAliveMs, Math.floor(sessionTimeoutMs / 2)));
}

/** What the link silence bound depends on besides the keep-alive period ({@link linkSilenceMs}). */
export interface LinkSilenceFactors {
  /** `timeouts.requestMs`: the response-time term never exceeds it. */
  readonly requestMs: number;
  /** Measured response time of the server, ms ({@link smoothedMaxMs}): added so a slow link is not a stalled one. */
  readonly responseMs: number;
}

/**
 * How long the server may send nothing at all before the driver takes the link for stalled:
 * two keep-alive periods plus the server's response time. node-opcua sends a keep-alive read at
 * the latest one keep-alive period after the last answer, so a live server has answered
 * something within the second period, plus the time it takes to answer (`factors.responseMs`: a
 * 1.2 s round trip with a 1 s keep-alive made every keep-alive answer late). The response-time
 * term is capped at `requestMs`, so the bound is at most `2 × keepAliveMs + requestMs`. It is
 * never widened by a loss that "proved" a live server: the same session coming back on a new
 * connection proves the server alive, not the old path (docs/adr/0022, amendments fix13e,
 * fix13f and fix13g). Without `factors`: the bare two periods.
 */
export function linkSilenceMs(keepAliveMs: number, factors?: LinkSilenceFactors): number {
  const base = 2 * keepAliveMs;
  if (!factors) return base;
  return Math.round(base + Math.min(Math.max(0, factors.responseMs), factors.requestMs));
}

/**
 * A smoothed maximum of response times: a longer `sampleMs` is taken at once, a shorter one
 * lowers `previousMs` by an eighth of the difference, so one fast answer does not forget a slow
 * link but a slow burst fades over a few dozen answers. The driver also lowers it (never raises
 * it) by the round trips of Publish requests: the server holds those, so each is at least the
 * link's response time, and on a subscribe-only link they are the only answers measured
 * (docs/adr/0022, amendment fix13g).
 */
export function smoothedMaxMs(previousMs: number, sampleMs: number): number {
  if (!(sampleMs >= 0)) return previousMs;
  return sampleMs >= previousMs ? sampleMs : previousMs + (sampleMs - previousMs) / 8;
}
