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
  /**
   * No Publish request is sent while `nbPendingPublishRequests` is at least this (node-opcua's
   * default 1000; node-opcua lowers it itself when a server answers BadTooManyPublishRequests).
   */
  nbMaxPublishRequestsAcceptedByServer?: unknown;
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
 * node-opcua's own pipeline: the Publish requests it sends at each subscription's registration and
 * after each repair (`ClientSidePublishEngine.publishRequestCountInPipeline`, 5 in 2.182).
 */
const NODE_OPCUA_PIPELINE = 5;

/** Outstanding Publish requests allowed per session beyond one per subscription. */
const PUBLISH_MARGIN = 2;

/**
 * The most Publish requests a session with `subscriptions` subscriptions keeps outstanding:
 * node-opcua's pipeline of 5, or one per subscription and 2 more when that is larger, so each
 * subscription due at once has a request and the answer's round trip is covered.
 */
export function publishRequestBound(subscriptions: number): number {
  return Math.max(NODE_OPCUA_PIPELINE, subscriptions + PUBLISH_MARGIN);
}

/** The bound last set on each engine, and the lowest limit node-opcua learnt from the server. */
const boundSet = new WeakMap<object, { readonly set: number; readonly learnt: number }>();

/**
 * Caps the Publish requests node-opcua's publish engine of `session` keeps outstanding at
 * {@link publishRequestBound} of the subscriptions it holds, through the engine's own limit
 * (`nbMaxPublishRequestsAcceptedByServer`: no request is sent while that many are outstanding).
 * node-opcua sends five more Publish requests after every repair of the session
 * (`replenish_publish_request_queue`) without counting those still outstanding, which it sends
 * again on the new channel: +5 per channel cut, never drained, until a small PLC answers
 * BadTooManyPublishRequests (docs/adr/0022, amendment fix13i). Above the bound, answers are not
 * renewed until the count is back under it. A lower limit node-opcua learnt from a
 * BadTooManyPublishRequests answer (it lowers the member itself) is kept for the engine's life.
 * Best effort: an engine without the member is left alone.
 */
export function boundPublishRequests(session: ClientSession): void {
  const engine = (session as unknown as { getPublishEngine?: () => PublishEngineInternals }).getPublishEngine?.();
  if (!engine) return;
  const held = engine.subscriptionCount;
  const current = engine.nbMaxPublishRequestsAcceptedByServer;
  if (typeof current !== "number" || typeof held !== "number") return;
  const previous = boundSet.get(engine);
  const learnt =
    previous === undefined
      ? Number.POSITIVE_INFINITY
      : Math.min(previous.learnt, current < previous.set ? current : Number.POSITIVE_INFINITY);
  const bound = Math.min(publishRequestBound(held), learnt);
  boundSet.set(engine, { set: bound, learnt });
  engine.nbMaxPublishRequestsAcceptedByServer = bound;
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
 * - the Publish requests outstanding are capped ({@link boundPublishRequests}).
 *
 * Only for a session node-opcua is not repairing (the caller checks). Best effort: an engine
 * without these members is left alone.
 */
export function primePublishEngine(session: ClientSession, options: PrimePublishEngineOptions): string[] {
  const engine = (session as unknown as { getPublishEngine?: () => PublishEngineInternals }).getPublishEngine?.();
  if (!engine) return [];
  const held = engine.subscriptionCount;
  if (typeof held !== "number" || !Number.isInteger(held)) return [];
  boundPublishRequests(session);
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
