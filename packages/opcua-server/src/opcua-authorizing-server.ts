import type { BaseNode } from "node-opcua-address-space-base";
import type { Message, ServerSecureChannelLayer } from "node-opcua-secure-channel";
import { DataValue } from "node-opcua-data-value";
import { type MonitoredItem, OPCUAServer, type ServerSession, type Subscription } from "node-opcua-server";
import { type StatusCode, StatusCodes } from "node-opcua-status-code";
import {
  type CreateMonitoredItemsRequest,
  type HistoryReadRequest,
  HistoryReadResponse,
  MonitoredItemCreateResult,
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

  readonly #guardedSubscriptions = new WeakSet<Subscription>();

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
    if (session && subscription) this.#guardMonitoredItems(session, subscription);
    super._on_CreateMonitoredItemsRequest(message, channel);
  }

  #guardMonitoredItems(session: ServerSession, subscription: Subscription): void {
    if (this.#guardedSubscriptions.has(subscription)) return;
    this.#guardedSubscriptions.add(subscription);
    const create = subscription.preCreateMonitoredItem.bind(subscription);
    subscription.preCreateMonitoredItem = (addressSpace, timestampsToReturn, itemRequest) => {
      const item = itemRequest.itemToMonitor;
      const refuse = (statusCode: StatusCode) => ({
        createResult: new MonitoredItemCreateResult({ statusCode }),
        monitoredItemCreateRequest: itemRequest,
      });
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
      const created = create(addressSpace, timestampsToReturn, itemRequest);
      if (guarded && created.monitoredItem) guardRecordedValues(session, guarded, created.monitoredItem);
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

/**
 * Makes a monitored item on a variable's Value ask the session's context for `Read` of it on
 * every value it records (sampled or pushed on change, with sampling interval 0): node-opcua
 * checks only when it samples, and a session's principal can change (ActivateSession with another
 * identity) as can its grants. A refused value is recorded as `BadUserAccessDenied`, no value.
 */
function guardRecordedValues(session: ServerSession, node: BaseNode, item: MonitoredItem): void {
  const record = item.recordValue.bind(item);
  item.recordValue = (dataValue, skipChangeTest, indexRange) =>
    session.sessionContext.checkPermission(node, PermissionType.Read)
      ? record(dataValue, skipChangeTest, indexRange)
      : record(
          new DataValue({ statusCode: StatusCodes.BadUserAccessDenied, serverTimestamp: dataValue.serverTimestamp }),
          skipChangeTest,
          indexRange,
        );
}
