import type { Clock, Logger } from "@kiln/core";
import type { TimerHandle } from "@kiln/core";
import type { ClientSession } from "node-opcua-client";

/** node-opcua's subscriptionId while it (re-)creates a subscription (node-opcua-client, client_subscription_impl). */
export const PENDING_SUBSCRIPTION_ID = 0xc0cac01a;

/** The calls used here are on node-opcua's ClientSessionImpl, not on its public ClientSession interface. */
interface SessionInternals {
  getPublishEngine?: () => { getSubscriptionIds(): number[] };
  deleteSubscriptions(request: { subscriptionIds: number[] }): Promise<unknown>;
  performMessageTransaction(request: object, callback: (error: Error | null, response?: unknown) => void): void;
}

/** The server-side ids of the subscriptions node-opcua holds on `session` (its publish engine's). */
export function heldSubscriptionIds(session: ClientSession): Set<number> {
  return new Set((session as unknown as SessionInternals).getPublishEngine?.().getSubscriptionIds() ?? []);
}

/** Deletes `subscriptionIds` on the server through `session` (DeleteSubscriptions). */
export async function deleteSubscriptions(session: ClientSession, subscriptionIds: number[]): Promise<void> {
  await (session as unknown as SessionInternals).deleteSubscriptions({ subscriptionIds });
}

/** What an {@link OrphanSubscriptionSweeper} needs from the driver. */
export interface OrphanSweeperContext {
  readonly clock: Clock;
  readonly logger: Logger;
  /** The session to check and delete on now, or undefined while there is no working one. */
  readonly session: () => ClientSession | undefined;
  /** How long an unknown id must stay unknown before it is deleted (ms). */
  readonly graceMs: number;
  /** Called after an orphan was deleted: a slot it held on the server is free again. */
  readonly deleted?: () => void;
  /** A new PublishRequest with no acknowledgements (node-opcua's, from the loaded runtime). */
  readonly publishRequest?: () => object;
  /** How long a probing Publish may wait for an answer (ms). */
  readonly probeTimeoutMs?: number;
}

/**
 * Finds and deletes subscriptions the server holds on the driver's session that nothing on the
 * client owns.
 *
 * They arise when the server created a subscription but the reply was lost with the connection
 * (CreateSubscription answered just as the link was cut): the client never learns the id, and
 * after the session is repaired the server still holds the subscription next to the one the
 * driver creates again. No service lists a session's subscriptions on every server (the
 * diagnostics nodes are optional), but every subscription announces itself: it answers one of
 * the session's Publish requests at least every keep-alive period (OPC UA Part 4, 5.13.1). A
 * PublishResponse naming an id node-opcua does not hold, and still does not hold after
 * `graceMs` (node-opcua registers a subscription it has just created or re-created a little
 * after the server answers), is an orphan: it is deleted.
 *
 * While the session has no subscription at all, node-opcua sends no Publish requests and an
 * orphan stays silent. When the server then refuses a creation (BadTooManySubscriptions: the
 * orphans may hold every slot), {@link OrphanSubscriptionSweeper.probe} sends one Publish request
 * itself: an orphan answers it (a late subscription at once, else within its keep-alive period),
 * the answer reaches {@link OrphanSubscriptionSweeper.published} like any other, and the orphan is
 * deleted; `deleted` then lets the refused creation be retried at once (docs/adr/0022, amendment
 * fix13k-slots).
 */
export class OrphanSubscriptionSweeper {
  readonly #context: OrphanSweeperContext;
  readonly #suspects = new Map<number, TimerHandle>();
  readonly #probing = new WeakSet<ClientSession>();

  constructor(context: OrphanSweeperContext) {
    this.#context = context;
  }

  /** A PublishResponse for `subscriptionId` arrived on `session`. */
  published(session: ClientSession, subscriptionId: number): void {
    if (!this.#isUnknown(session, subscriptionId) || this.#suspects.has(subscriptionId)) return;
    const timer = this.#context.clock.setTimeout(() => {
      this.#suspects.delete(subscriptionId);
      void this.#check(session, subscriptionId);
    }, this.#context.graceMs);
    this.#suspects.set(subscriptionId, timer);
  }

  /**
   * The server refused a subscription on `session` for its limit: when node-opcua holds no
   * subscription there (so sends no Publish request an orphan could answer), sends one Publish
   * request; its answer goes through {@link OrphanSubscriptionSweeper.published} (the driver's
   * response hook). One at a time per session; answered or not, it is forgotten after
   * `probeTimeoutMs`. Not while node-opcua holds a subscription: its own Publish requests find the
   * orphans, and the probe's answer could carry that subscription's notifications.
   */
  probe(session: ClientSession): void {
    const makeRequest = this.#context.publishRequest;
    if (!makeRequest || this.#probing.has(session) || this.#context.session() !== session) return;
    if (heldSubscriptionIds(session).size > 0) return;
    this.#probing.add(session);
    const timeoutMs = this.#context.probeTimeoutMs ?? 10_000;
    const timer = this.#context.clock.setTimeout(() => this.#probing.delete(session), timeoutMs);
    try {
      (session as unknown as SessionInternals).performMessageTransaction(makeRequest(), (error) => {
        this.#context.clock.clearTimeout(timer);
        this.#probing.delete(session);
        if (error) this.#context.logger.debug({ err: error }, "no OPC UA subscription answered the probing Publish");
      });
      this.#context.logger.info(
        "the OPC UA server refused a subscription for its limit while this session holds none of its own: asking for a Publish answer to find subscriptions left by lost creation replies",
      );
    } catch (error) {
      this.#context.clock.clearTimeout(timer);
      this.#probing.delete(session);
      this.#context.logger.debug({ err: error }, "sending a probing Publish failed");
    }
  }

  /** Forgets every suspect (the session is gone or the driver closes). */
  clear(): void {
    for (const timer of this.#suspects.values()) this.#context.clock.clearTimeout(timer);
    this.#suspects.clear();
  }

  #isUnknown(session: ClientSession, subscriptionId: number): boolean {
    if (!Number.isInteger(subscriptionId) || subscriptionId <= 0 || subscriptionId === PENDING_SUBSCRIPTION_ID) {
      return false;
    }
    const held = heldSubscriptionIds(session);
    // node-opcua is re-creating one: the id it will get is not known yet.
    return !held.has(subscriptionId) && !held.has(PENDING_SUBSCRIPTION_ID);
  }

  async #check(session: ClientSession, subscriptionId: number): Promise<void> {
    // A session replaced meanwhile took its subscriptions with it.
    if (this.#context.session() !== session || !this.#isUnknown(session, subscriptionId)) return;
    try {
      await deleteSubscriptions(session, [subscriptionId]);
      this.#context.logger.info(
        { subscriptionId },
        "deleted an OPC UA subscription the server held for this session but no subscriber owns (its creation reply was lost in an outage)",
      );
      this.#context.deleted?.();
    } catch (error) {
      this.#context.logger.debug({ err: error, subscriptionId }, "deleting an orphaned OPC UA subscription failed");
    }
  }
}
