import type { Clock, Logger } from "@kiln/core";
import type { TimerHandle } from "@kiln/core";
import type { ClientSession } from "node-opcua-client";

/** node-opcua's subscriptionId while it (re-)creates a subscription (node-opcua-client, client_subscription_impl). */
export const PENDING_SUBSCRIPTION_ID = 0xc0cac01a;

/** The calls used here are on node-opcua's ClientSessionImpl, not on its public ClientSession interface. */
interface SessionInternals {
  getPublishEngine?: () => { getSubscriptionIds(): number[] };
  deleteSubscriptions(request: { subscriptionIds: number[] }): Promise<unknown>;
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
 * orphan stays silent; the server then deletes it when its lifetime expires.
 */
export class OrphanSubscriptionSweeper {
  readonly #context: OrphanSweeperContext;
  readonly #suspects = new Map<number, TimerHandle>();

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
    } catch (error) {
      this.#context.logger.debug({ err: error, subscriptionId }, "deleting an orphaned OPC UA subscription failed");
    }
  }
}
