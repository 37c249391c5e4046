import type { BaseNode } from "node-opcua-address-space-base";
import type { Message, ServerSecureChannelLayer } from "node-opcua-secure-channel";
import { DataValue } from "node-opcua-data-value";
import { type MonitoredItem, OPCUAServer, type ServerSession, type Subscription } from "node-opcua-server";
import { type StatusCode, StatusCodes } from "node-opcua-status-code";
import {
  type CreateMonitoredItemsRequest,
  type HistoryReadRequest,
  type ModifyMonitoredItemsRequest,
  HistoryReadResponse,
  MonitoredItemCreateResult,
  MonitoredItemNotification,
  NodeClass,
  PermissionType,
  type UserIdentityToken,
  UserNameIdentityToken,
} from "node-opcua-types";

/** AttributeId of the Value attribute (OPC UA Part 6, A.1). */
const VALUE_ATTRIBUTE = 13;

/** Decides whether a session activated with an anonymous or X.509 token may proceed. */
export type SessionAuthorizer = (session: ServerSession, token: UserIdentityToken) => Promise<boolean>;

/**
 * node-opcua's server with one hook: sessions activated with an anonymous or X.509 user token
 * (already checked by node-opcua: token policy, user PKI, signature) are also put to
 * `authorizeSession`, which maps them to a Kiln principal or refuses them
 * (`BadIdentityTokenRejected`). User name tokens go through node-opcua's `userManager`.
 *
 * And one check node-opcua leaves out ("check that item can be read by current user session"
 * in `Subscription.preCreateMonitoredItem`): a monitored item on a variable's Value is created
 * only when the session's context grants `Read` on it (the same `checkPermission` a Read of the
 * Value asks); else its create result is `BadUserAccessDenied` and nothing is sampled.
 * Loaded only by the runtime loader.
 */
export class AuthorizingServer extends OPCUAServer {
  /** Set before `start()`; until then every anonymous and X.509 session is refused. */
  authorizeSession: SessionAuthorizer = () => Promise.resolve(false);

  /** Why a session `authorizeSession` (or the user manager) refused was refused, when not for its identity (e.g. `BadTooManySessions`). */
  refusalOf: (session: ServerSession) => StatusCode | undefined = () => undefined;

  /** Most monitored items of one session, over all its subscriptions (beyond: `BadTooManyMonitoredItems`). */
  maxMonitoredItemsPerSession = 1_000;

  /** Most ReqTimes × nodes of one HistoryRead AtTime (beyond: `BadTooManyOperations`, nothing read). */
  maxHistoryReadTimes = 10_000;

  /** Largest queue of one monitored item (a larger requested QueueSize is revised down to it). */
  maxQueueSize = 100;

  /** Most sessions created but not (yet) activated, all clients together; the oldest is closed to make room. */
  maxUnactivatedSessions = 5;

  /** How long (ms) a session may stay unactivated before it is closed, with its channel when no activated session uses it. */
  unactivatedSessionTimeoutMs = 10_000;

  readonly #guardedSubscriptions = new WeakSet<Subscription>();

  /**
   * A session is counted as unactivated until ActivateSession succeeds: at most
   * {@link AuthorizingServer.maxUnactivatedSessions} of them (the oldest is closed when a new
   * one comes, OPC UA Part 4, 5.6.2), each closed after
   * {@link AuthorizingServer.unactivatedSessionTimeoutMs}, with its secure channel when that
   * carries no activated session. A client that never activates (no valid user) cannot hold the
   * session or connection slots that authenticated users need.
   */
  protected override createSession(options: Parameters<OPCUAServer["createSession"]>[0]): ServerSession {
    const unactivated = this.engine.getSessions().filter((session) => session.status === "new");
    for (const oldest of unactivated.slice(0, Math.max(0, unactivated.length - this.maxUnactivatedSessions + 1))) {
      this.#closeUnactivated(oldest);
    }
    const session = super.createSession(options);
    setTimeout(() => {
      if (session.status === "new") this.#closeUnactivated(session);
    }, this.unactivatedSessionTimeoutMs).unref();
    return session;
  }

  #closeUnactivated(session: ServerSession): void {
    const channel = session.channel;
    try {
      this.engine.closeSession(session.authenticationToken, true, "Forcing");
    } catch {
      return; // closed meanwhile
    }
    const inUse = this.engine.getSessions().some((other) => other.channel === channel && other.status === "active");
    if (channel && !inUse) channel.close();
  }

  override async initialize(): Promise<void> {
    await super.initialize();
    // A session that ends (CloseSession with DeleteSubscriptions false, or its timeout) takes its
    // subscriptions with it: node-opcua would keep them as orphans (until their lifetime ends)
    // outside every per-session and per-principal cap, queueing for no one.
    const engine = this.engine;
    const closeSession = engine.closeSession.bind(engine);
    engine.closeSession = (authenticationToken, _deleteSubscriptions, reason) =>
      closeSession(authenticationToken, true, reason);
  }

  protected override _on_ModifyMonitoredItemsRequest(message: Message, channel: ServerSecureChannelLayer): void {
    const request = message.request as ModifyMonitoredItemsRequest;
    for (const item of request.itemsToModify ?? []) this.#boundQueue(item.requestedParameters);
    super._on_ModifyMonitoredItemsRequest(message, channel);
  }

  #boundQueue(parameters: { queueSize: number } | null | undefined): void {
    if (parameters && parameters.queueSize > this.maxQueueSize) parameters.queueSize = this.maxQueueSize;
  }

  protected override _on_HistoryReadRequest(message: Message, channel: ServerSecureChannelLayer): void {
    const request = message.request as HistoryReadRequest;
    const details = request.historyReadDetails as { reqTimes?: readonly unknown[] | null } | null;
    const times = Array.isArray(details?.reqTimes) ? details.reqTimes.length : 0;
    if (times * (request.nodesToRead?.length ?? 0) > this.maxHistoryReadTimes) {
      void this._apply_on_SessionObject(HistoryReadResponse, message, channel, (_session, _send, sendError) =>
        sendError(StatusCodes.BadTooManyOperations),
      );
      return;
    }
    super._on_HistoryReadRequest(message, channel);
  }

  protected override _on_CreateMonitoredItemsRequest(message: Message, channel: ServerSecureChannelLayer): void {
    const request = message.request as CreateMonitoredItemsRequest;
    const session = this.engine.getSession(request.requestHeader.authenticationToken);
    const subscription = session?.getSubscription(request.subscriptionId);
    if (subscription) this.#guardMonitoredItems(subscription);
    super._on_CreateMonitoredItemsRequest(message, channel);
  }

  /**
   * Every decision on the subscription's items asks the subscription's CURRENT session (its
   * `$session`, which TransferSubscriptions and ActivateSession change), at the time of the
   * decision: never a session captured when the subscription was first seen.
   */
  #guardMonitoredItems(subscription: Subscription): void {
    if (this.#guardedSubscriptions.has(subscription)) return;
    this.#guardedSubscriptions.add(subscription);
    const create = subscription.preCreateMonitoredItem.bind(subscription);
    subscription.preCreateMonitoredItem = (addressSpace, timestampsToReturn, itemRequest) => {
      const item = itemRequest.itemToMonitor;
      const refuse = (statusCode: StatusCode) => ({
        createResult: new MonitoredItemCreateResult({ statusCode }),
        monitoredItemCreateRequest: itemRequest,
      });
      const session = currentSessionOf(subscription);
      if (!session) return refuse(StatusCodes.BadUserAccessDenied);
      if (session.currentMonitoredItemCount >= this.maxMonitoredItemsPerSession) {
        return refuse(StatusCodes.BadTooManyMonitoredItems);
      }
      const node = addressSpace.findNode(item.nodeId);
      // Every monitored item adds a listener to its node: node-opcua's own limit (5000 on a
      // variable) would raise Node's MaxListenersExceededWarning, whose inspection of the node
      // throws and ends the process. Kiln's item limits bound the listeners instead.
      node?.setMaxListeners(0);
      const guarded = item.attributeId === VALUE_ATTRIBUTE && node?.nodeClass === NodeClass.Variable ? node : null;
      if (guarded && !session.sessionContext.checkPermission(guarded, PermissionType.Read)) {
        return refuse(StatusCodes.BadUserAccessDenied);
      }
      this.#boundQueue(itemRequest.requestedParameters);
      const created = create(addressSpace, timestampsToReturn, itemRequest);
      if (guarded && created.monitoredItem) guardValues(guarded, created.monitoredItem);
      return created;
    };
  }

  protected override isUserAuthorized(
    channel: ServerSecureChannelLayer,
    session: ServerSession,
    userIdentityToken: UserIdentityToken,
    callback: (err: Error | null, isAuthorized?: boolean, statusCode?: StatusCode) => void,
  ): void {
    const answer = (error: Error | null, authorized?: boolean, statusCode?: StatusCode): void =>
      callback(error, authorized, authorized ? statusCode : (this.refusalOf(session) ?? statusCode));
    if (userIdentityToken instanceof UserNameIdentityToken) {
      super.isUserAuthorized(channel, session, userIdentityToken, answer);
      return;
    }
    this.authorizeSession(session, userIdentityToken).then(
      (authorized) => answer(null, authorized, authorized ? undefined : StatusCodes.BadIdentityTokenRejected),
      () => answer(null, false, StatusCodes.BadIdentityTokenRejected),
    );
  }
}

/** The session a subscription belongs to now (none while it is orphaned). */
function currentSessionOf(subscription: Subscription | undefined): ServerSession | undefined {
  return (subscription as { $session?: ServerSession } | undefined)?.$session ?? undefined;
}

/** Whether the item's subscription's current session may read `node` now (an orphaned item may not). */
function mayRead(item: MonitoredItem, node: BaseNode): boolean {
  const session = currentSessionOf(item.$subscription as Subscription | undefined);
  return session !== undefined && session.sessionContext.checkPermission(node, PermissionType.Read);
}

/**
 * Makes a monitored item on a variable's Value ask its subscription's current session's context
 * for `Read` of it twice (see {@link mayRead}):
 *
 * - on every value it records (sampled or pushed on change, with sampling interval 0): node-opcua
 *   checks only when it samples. A refused value is recorded as `BadUserAccessDenied`, no value.
 * - when its queued notifications are taken for a Publish: values queued while the principal could
 *   read, but sent after it no longer may (its grant revoked, the session switched user, the
 *   subscription transferred to another session, the values node-opcua resends after a transfer),
 *   are dropped and replaced by one `BadUserAccessDenied` notification, no value.
 *
 * A session's principal can change (ActivateSession with another identity), as can its grants and
 * the session the subscription belongs to.
 */
function guardValues(node: BaseNode, item: MonitoredItem): void {
  const record = item.recordValue.bind(item);
  item.recordValue = (dataValue, skipChangeTest, indexRange) =>
    mayRead(item, node)
      ? record(dataValue, skipChangeTest, indexRange)
      : record(
          new DataValue({ statusCode: StatusCodes.BadUserAccessDenied, serverTimestamp: dataValue.serverTimestamp }),
          skipChangeTest,
          indexRange,
        );
  const extract = item.extractMonitoredItemNotifications.bind(item);
  item.extractMonitoredItemNotifications = (force?: boolean) => {
    const notifications = extract(force);
    if (notifications.length === 0 || mayRead(item, node)) return notifications;
    const last = notifications.at(-1) as MonitoredItemNotification;
    return [
      new MonitoredItemNotification({
        clientHandle: item.clientHandle,
        value: new DataValue({
          statusCode: StatusCodes.BadUserAccessDenied,
          serverTimestamp: last.value?.serverTimestamp ?? null,
        }),
      }),
    ];
  };
}
