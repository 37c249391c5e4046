import type { Message, ServerSecureChannelLayer } from "node-opcua-secure-channel";
import { OPCUAServer, type ServerSession, type Subscription } from "node-opcua-server";
import { type StatusCode, StatusCodes } from "node-opcua-status-code";
import {
  type CreateMonitoredItemsRequest,
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

  readonly #guardedSubscriptions = new WeakSet<Subscription>();

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
      const node = item.attributeId === VALUE_ATTRIBUTE ? addressSpace.findNode(item.nodeId) : null;
      if (
        node?.nodeClass === NodeClass.Variable &&
        !session.sessionContext.checkPermission(node, PermissionType.Read)
      ) {
        return {
          createResult: new MonitoredItemCreateResult({ statusCode: StatusCodes.BadUserAccessDenied }),
          monitoredItemCreateRequest: itemRequest,
        };
      }
      return create(addressSpace, timestampsToReturn, itemRequest);
    };
  }

  protected override isUserAuthorized(
    channel: ServerSecureChannelLayer,
    session: ServerSession,
    userIdentityToken: UserIdentityToken,
    callback: (err: Error | null, isAuthorized?: boolean, statusCode?: StatusCode) => void,
  ): void {
    if (userIdentityToken instanceof UserNameIdentityToken) {
      super.isUserAuthorized(channel, session, userIdentityToken, callback);
      return;
    }
    this.authorizeSession(session, userIdentityToken).then(
      (authorized) => callback(null, authorized, authorized ? undefined : StatusCodes.BadIdentityTokenRejected),
      () => callback(null, false, StatusCodes.BadIdentityTokenRejected),
    );
  }
}
