import type { ClientSession } from "node-opcua-client";

/**
 * The members of node-opcua's ClientSidePublishEngine (node-opcua-client, client_publish_engine)
 * read and corrected here: internals, so each is checked before use.
 */
interface PublishEngineInternals {
  /** What node-opcua counts as subscriptions to publish for; a Publish answer is followed by a new request only while above 0. */
  activeSubscriptionCount?: unknown;
  /** Publish requests sent and not yet answered. */
  nbPendingPublishRequests?: unknown;
  /** Set while node-opcua re-creates the session; no Publish request is sent meanwhile. */
  isSuspended?: unknown;
  /** The subscriptions the engine holds (its map's size). */
  readonly subscriptionCount?: unknown;
  suspend?: (suspended: boolean) => void;
  replenish_publish_request_queue?: () => void;
}

/** Options of {@link primePublishEngine}. */
export interface PrimePublishEngineOptions {
  /**
   * Also send Publish requests when none is outstanding. Only where the engine has been silent a
   * while (the keep-alive watchdog): right after a subscription is registered its requests are
   * still queued (node-opcua sends them on `setImmediate`) and would be doubled.
   */
  readonly whenIdle: boolean;
}

/**
 * Makes node-opcua's publish engine of `session` send Publish requests for the subscriptions it
 * holds, and says what was wrong (empty: nothing). node-opcua renews a Publish request after each
 * answer only while its `activeSubscriptionCount` is above 0, and that count drifts from the
 * subscriptions it holds: its repair of a dropped session unregisters a subscription before
 * re-creating it, and when that CreateSubscription fails (a link frozen at that moment) the
 * subscription keeps its old id, so deleting it later unregisters it a second time. The count then
 * stays one below the truth: each new subscription gets node-opcua's first five Publish requests
 * answered and then none, its values frozen (docs/adr/0022, amendment fix13r). Corrected here:
 *
 * - the count is set to the subscriptions held;
 * - an engine still suspended (a failed re-creation of the session leaves it so, and a later repair
 *   by re-activation does not resume it) is resumed, which sends Publish requests;
 * - with `whenIdle`, Publish requests are sent when none is outstanding.
 *
 * Only for a session node-opcua is not repairing (the caller checks). Best effort: an engine
 * without these members is left alone.
 */
export function primePublishEngine(session: ClientSession, options: PrimePublishEngineOptions): string[] {
  const engine = (session as unknown as { getPublishEngine?: () => PublishEngineInternals }).getPublishEngine?.();
  if (!engine) return [];
  const held = engine.subscriptionCount;
  if (typeof held !== "number" || !Number.isInteger(held)) return [];
  const found: string[] = [];
  const active = engine.activeSubscriptionCount;
  if (typeof active === "number" && active !== held) {
    found.push(`node-opcua counted ${active} active subscription(s) for ${held} held`);
    engine.activeSubscriptionCount = held;
  }
  if (held === 0) return found;
  if (engine.isSuspended === true && typeof engine.suspend === "function") {
    found.push("its publish engine was still suspended after a repair");
    // Resuming sends the Publish requests.
    engine.suspend(false);
    return found;
  }
  if (
    options.whenIdle &&
    engine.nbPendingPublishRequests === 0 &&
    typeof engine.replenish_publish_request_queue === "function"
  ) {
    found.push("no Publish request was outstanding");
    engine.replenish_publish_request_queue();
  }
  return found;
}
