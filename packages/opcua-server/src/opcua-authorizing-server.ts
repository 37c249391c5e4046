import type { ServerSecureChannelLayer } from "node-opcua-secure-channel";
import { OPCUAServer, type ServerSession } from "node-opcua-server";
import { type StatusCode, StatusCodes } from "node-opcua-status-code";
import { type UserIdentityToken, UserNameIdentityToken } from "node-opcua-types";

/** Decides whether a session activated with an anonymous or X.509 token may proceed. */
export type SessionAuthorizer = (session: ServerSession, token: UserIdentityToken) => Promise<boolean>;

/**
 * node-opcua's server with one hook: sessions activated with an anonymous or X.509 user token
 * (already checked by node-opcua: token policy, user PKI, signature) are also put to
 * `authorizeSession`, which maps them to a Kiln principal or refuses them
 * (`BadIdentityTokenRejected`). User name tokens go through node-opcua's `userManager`.
 * Loaded only by the runtime loader.
 */
export class AuthorizingServer extends OPCUAServer {
  /** Set before `start()`; until then every anonymous and X.509 session is refused. */
  authorizeSession: SessionAuthorizer = () => Promise.resolve(false);

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
