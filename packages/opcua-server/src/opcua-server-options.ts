import { existsSync } from "node:fs";
import type { Authorizer, Clock, Logger, Principal } from "@kiln/core";
import { parseOrThrow } from "@kiln/core/driver-kit";
import { z } from "zod";

/**
 * Who a client says it is when it activates its session (OPC UA Part 4, 7.41 UserIdentityToken),
 * after the server checked it: a password is handed over as the client sent it (decrypted), for
 * the host to verify; a certificate has passed the user PKI (`pki.dir/users`) and the client
 * proved it holds its private key.
 */
export type OpcuaUserIdentity =
  | { readonly type: "anonymous" }
  | { readonly type: "username"; readonly userName: string; readonly password: string }
  | { readonly type: "certificate"; readonly certificate: Buffer };

/** The OPC UA session an identity comes with. */
export interface OpcuaSessionInfo {
  /** The session's NodeId as text (e.g. `ns=1;g=...`). */
  readonly sessionId: string;
  /** The session name the client gave. */
  readonly sessionName: string;
  /**
   * The client's ApplicationUri: the one in its certificate (checked by the secure channel), else (a
   * None channel without a certificate) the one it states, which anyone can forge: see
   * {@link OpcuaSessionInfo.clientApplicationUriVerified} before trusting it.
   */
  readonly clientApplicationUri?: string;
  /** Whether {@link OpcuaSessionInfo.clientApplicationUri} comes from the client's certificate (true) or only from what the client states (false). Absent with the URI. */
  readonly clientApplicationUriVerified?: boolean;
  /** The client's network address as the server's socket sees it (`10.0.0.7:51234`, `::1:51234`), where known. */
  readonly remoteAddress?: string;
  /** `None`, `Sign` or `SignAndEncrypt`. */
  readonly securityMode: string;
  /** The security policy URI of the secure channel. */
  readonly securityPolicy: string;
}

/**
 * Maps an OPC UA user identity to the Kiln principal the session acts as (its id and roles; the
 * server sets `source` to the OPC UA session). Return `undefined` to refuse the session
 * (`BadUserAccessDenied` for a password, `BadIdentityTokenRejected` otherwise). May be async (a
 * directory lookup); a function that throws or rejects refuses the session.
 */
export type OpcuaIdentityMapper = (
  identity: OpcuaUserIdentity,
  session: OpcuaSessionInfo,
) => Principal | undefined | Promise<Principal | undefined>;

/**
 * Decides the `read` permission of a session's principal on a tag, in place of the system's own
 * role table (`system.can`): Kiln's `Authorizer`, or any object with the same `can`.
 */
export type OpcuaReadAuthorizer = Pick<Authorizer, "can">;

const MESSAGE_SECURITY_MODES = ["None", "Sign", "SignAndEncrypt"] as const;
const SECURE_POLICIES = ["Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"] as const;

/** zod schema of {@link OpcuaServerOptions}. */
export const opcuaServerOptionsSchema = z
  .object({
    port: z.number().int().min(0).max(65535).default(4840),
    host: z.string().min(1).optional(),
    namespaceUri: z.string().min(1).optional(),
    pki: z
      .object({
        dir: z.string().min(1),
        acceptUnknownClientCertificates: z.boolean().default(false),
      })
      .strict(),
    certificateFile: z.string().min(1).optional(),
    privateKeyFile: z.string().min(1).optional(),
    securityModes: z.array(z.enum(MESSAGE_SECURITY_MODES)).min(1).default(["SignAndEncrypt"]),
    securityPolicies: z
      .array(z.enum(SECURE_POLICIES))
      .min(1)
      .default([...SECURE_POLICIES]),
    allowAnonymous: z.boolean().default(false),
    identify: z.custom<OpcuaIdentityMapper>((value) => typeof value === "function", "must be a function"),
    productName: z.string().min(1).default("Kiln OPC UA server"),
    limits: z
      .object({
        maxSessions: z.number().int().min(1).max(10_000).default(50),
        maxSessionsPerPrincipal: z.number().int().min(1).max(10_000).default(4),
        maxSubscriptionsPerSession: z.number().int().min(1).max(1_000).default(10),
        maxSubscriptions: z.number().int().min(1).max(100_000).default(200),
        maxMonitoredItemsPerSession: z.number().int().min(1).max(1_000_000).default(2_000),
        maxMonitoredItemsPerSubscription: z.number().int().min(1).max(1_000_000).default(1_000),
        maxMonitoredItems: z.number().int().min(1).max(10_000_000).default(20_000),
        maxMonitoredItemsPerCall: z.number().int().min(1).max(100_000).default(1_000),
        maxNodesPerCall: z.number().int().min(1).max(100_000).default(1_000),
        maxHistoryReadTimes: z.number().int().min(1).max(1_000_000).default(10_000),
        maxBrowsePathElements: z.number().int().min(1).max(1_000).default(32),
        maxBrowsePathElementsPerCall: z.number().int().min(1).max(1_000_000).default(10_000),
        maxBrowsePathTargets: z.number().int().min(1).max(1_000_000).default(1_000),
        maxBrowsePathNodesPerCall: z.number().int().min(1).max(10_000_000).default(100_000),
        maxQueueSize: z.number().int().min(1).max(5_000).default(100),
        maxUnactivatedSessions: z.number().int().min(1).max(10_000).default(5),
        unactivatedSessionTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
        maxEventFilterElements: z.number().int().min(1).max(1_024).default(64),
        maxEventFilterDepth: z.number().int().min(1).max(64).default(16),
        maxEventFilterOperands: z.number().int().min(1).max(4_096).default(128),
        maxEventFilterSelectClauses: z.number().int().min(1).max(1_024).default(64),
        maxEventFilterCostPerSession: z.number().int().min(1).max(10_000_000).default(10_000),
        minConditionRefreshIntervalMs: z.number().int().min(0).max(600_000).default(1_000),
        maxBrowseContinuationPoints: z.number().int().min(1).max(1_000).default(10),
        maxReferencesPerNode: z.number().int().min(1).max(100_000).default(1_000),
        maxReferencesPerBrowse: z.number().int().min(1).max(1_000_000).default(2_500),
        maxMessageSize: z.number().int().min(131_072).max(134_217_728).default(4_194_304),
        maxChunkCount: z.number().int().min(1).max(9_000).default(1_024),
        maxFailedLogins: z.number().int().min(1).max(1_000).default(5),
        failedLoginWindowMs: z.number().int().min(1_000).max(86_400_000).default(60_000),
        maxTrackedLogins: z.number().int().min(10).max(10_000_000).default(100_000),
      })
      .strict()
      .default({
        maxSessions: 50,
        maxSessionsPerPrincipal: 4,
        maxSubscriptionsPerSession: 10,
        maxSubscriptions: 200,
        maxMonitoredItemsPerSession: 2_000,
        maxMonitoredItemsPerSubscription: 1_000,
        maxMonitoredItems: 20_000,
        maxMonitoredItemsPerCall: 1_000,
        maxNodesPerCall: 1_000,
        maxHistoryReadTimes: 10_000,
        maxBrowsePathElements: 32,
        maxBrowsePathElementsPerCall: 10_000,
        maxBrowsePathTargets: 1_000,
        maxBrowsePathNodesPerCall: 100_000,
        maxQueueSize: 100,
        maxUnactivatedSessions: 5,
        unactivatedSessionTimeoutMs: 10_000,
        maxEventFilterElements: 64,
        maxEventFilterDepth: 16,
        maxEventFilterOperands: 128,
        maxEventFilterSelectClauses: 64,
        maxEventFilterCostPerSession: 10_000,
        minConditionRefreshIntervalMs: 1_000,
        maxBrowseContinuationPoints: 10,
        maxReferencesPerNode: 1_000,
        maxReferencesPerBrowse: 2_500,
        maxMessageSize: 4_194_304,
        maxChunkCount: 1_024,
        maxFailedLogins: 5,
        failedLoginWindowMs: 60_000,
        maxTrackedLogins: 100_000,
      }),
    authorizer: z
      .custom<OpcuaReadAuthorizer>(
        (value) =>
          typeof value === "object" && value !== null && typeof (value as OpcuaReadAuthorizer).can === "function",
        "must be an Authorizer (an object with can(principal, permission, target))",
      )
      .optional(),
    clock: z
      .custom<Clock>(
        (value) => typeof value === "object" && value !== null && typeof (value as Clock).now === "function",
        "must be a Clock",
      )
      .optional(),
    logger: z
      .custom<Logger>(
        (value) => typeof value === "object" && value !== null && typeof (value as Logger).warn === "function",
        "must be a Logger",
      )
      .optional(),
  })
  .strict()
  .superRefine((options, context) => {
    if ((options.certificateFile === undefined) !== (options.privateKeyFile === undefined)) {
      context.addIssue({
        code: "custom",
        path: [options.certificateFile === undefined ? "certificateFile" : "privateKeyFile"],
        message: "certificateFile and privateKeyFile go together: give both or neither",
      });
    }
    for (const field of ["certificateFile", "privateKeyFile"] as const) {
      const file = options[field];
      if (file !== undefined && !existsSync(file)) {
        context.addIssue({ code: "custom", path: [field], message: `no such file: ${file}` });
      }
    }
  });

/**
 * Options of {@link OpcuaServer}.
 *
 * - `port`: the TCP port (0: a free one, see `endpointUrl`). @default 4840 (IANA "opcua-tcp")
 * - `host`: the interface to listen on. @default every interface
 * - `namespaceUri`: the namespace of the tag variables. @default `urn:kiln:machine:<machineId>`
 * - `pki.dir`: the server's PKI folder (node-opcua layout): its own certificate under `own/`,
 *   trusted client certificates in `trusted/certs/`, refused ones land in `rejected/`; X.509
 *   user certificates in `users/trusted/certs/`. `pki.acceptUnknownClientCertificates` trusts
 *   any client certificate (testing only). @default false: an unknown client is refused
 * - `certificateFile`, `privateKeyFile`: the server's application instance certificate and key
 *   (PEM), both or neither. @default a self-signed certificate created in `pki.dir/own`
 * - `securityModes`: the MessageSecurityModes offered. `None` must be listed explicitly (it adds
 *   the endpoint with SecurityPolicy None). @default ["SignAndEncrypt"]
 * - `securityPolicies`: the policies of the secure endpoints. @default Basic256Sha256,
 *   Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss
 * - `allowAnonymous`: offer the anonymous user token. @default false
 * - `identify`: maps a user identity to a Kiln principal ({@link OpcuaIdentityMapper}). Required.
 * - `authorizer`: overrides who may `read` a tag (Read and subscriptions of its Value,
 *   HistoryRead; docs/concepts/security.md): a session whose principal lacks `read` on a tag gets
 *   `BadUserAccessDenied`. @default the system's own role table (`system.can`, in the machine's
 *   current state), the one its commands are authorized by
 * - `limits`: what one client, one principal and all clients may hold, so that none can exhaust
 *   the server (OPC UA Part 5, 6.3.2 ServerCapabilities); beyond a limit the request answers
 *   `BadTooManySessions`, `BadTooManySubscriptions`, `BadTooManyMonitoredItems` or
 *   `BadTooManyOperations`. A request refused whole for its size (`BadTooManyOperations`) is
 *   audited with its operation count (`system.refuseCommand`, action `opcua.<Service>`), the same
 *   request repeated within 10 s coalesced into one counted summary, as every refusal is:
 *   - `maxSessions` (all clients) @default 50; `maxSessionsPerPrincipal` (sessions activated as
 *     one principal id; at the limit, that principal's sessions whose secure channel is gone, a
 *     crashed client's, are closed to make room, oldest first) @default 4
 *   - `maxSubscriptionsPerSession` @default 10; `maxSubscriptions` (all sessions) @default 200
 *   - `maxMonitoredItemsPerSession` @default 2000; `maxMonitoredItemsPerSubscription` @default
 *     1000; `maxMonitoredItems` (all sessions) @default 20000; `maxMonitoredItemsPerCall` (one
 *     Create/Modify/Delete/SetMonitoringMode call) @default 1000
 *   - `maxNodesPerCall`: the operations of one Read, Write, Browse, TranslateBrowsePathsToNodeIds,
 *     Call or RegisterNodes call (served as the OperationLimits MaxNodesPer…) @default 1000
 *   - `maxHistoryReadTimes`: ReqTimes × nodes of one HistoryRead AtTime @default 10000
 *   - `maxBrowsePathElements`: RelativePath elements of one browse path of a
 *     TranslateBrowsePathsToNodeIds (a longer path answers `BadQueryTooComplex`, OPC UA Part 4,
 *     5.9.4.4, and is not followed) @default 32; `maxBrowsePathElementsPerCall`: its paths'
 *     elements together (beyond: `BadTooManyOperations`, the whole call) @default 10000
 *   - `maxBrowsePathTargets`: distinct nodes one browse path reaches at any one element, its
 *     targets included (beyond: that path `BadQueryTooComplex`, Part 4, 5.9.4.4) @default 1000;
 *     `maxBrowsePathNodesPerCall`: work of one TranslateBrowsePathsToNodeIds call, its paths
 *     together: 1 per node expanded, plus every reference of the node when the step cannot use the
 *     node's child index (an inverse, untyped or non-hierarchical step scans them all); a step
 *     from an ObjectType or VariableType is charged so for the type and each of its supertypes
 *     (node-opcua tries each in turn when the type has no match); the path that passes it and the
 *     call's later paths: `BadQueryTooComplex` @default 100000
 *   - `maxQueueSize`: the largest QueueSize of one monitored item, value or event (a larger
 *     request is revised down to it, not refused) @default 100
 *   - `maxUnactivatedSessions`: sessions created and not yet activated, all clients together
 *     (the oldest is closed when another comes) @default 5; `unactivatedSessionTimeoutMs`: such a
 *     session is closed after this long, with its secure channel when no activated session uses
 *     it @default 10000. A client that never activates (no valid user) cannot take the places
 *     of users who do; `maxSessions` counts both.
 *   - `maxEventFilterElements`: the ContentFilterElements of one EventFilter's WhereClause
 *     (1..1024) @default 64; `maxEventFilterDepth`: the longest chain of ElementOperands from
 *     element 0 (1..64) @default 16. A WhereClause must also be a tree: each ElementOperand
 *     references a later element, and no element is referenced twice (ADR 0039). Otherwise the
 *     monitored item's create (or modify) result is `BadEventFilterInvalid` with a per-element
 *     ContentFilterResult, and nothing is created (or changed).
 *     `maxEventFilterOperands`: the FilterOperands of one WhereClause, all its elements together
 *     (1..4096) @default 128; `maxEventFilterSelectClauses`: the SelectClauses of one EventFilter
 *     (1..1024) @default 64 (both also served as the ServerCapabilities MaxWhereClauseParameters
 *     and MaxSelectClauseParameters; beyond: `BadEventFilterInvalid`, no per-element results).
 *     `maxEventFilterCostPerSession`: the SelectClauses + elements + operands of the filters of
 *     one session's live monitored items together (1..10000000) @default 10000; beyond, the
 *     create (or modify) result is `BadTooManyMonitoredItems` (OPC UA Part 4, 5.12.2.4) and
 *     nothing is created (or changed). node-opcua keeps each decoded filter with its item.
 *   - `minConditionRefreshIntervalMs`: least time between two ConditionRefresh(2) calls of one
 *     session (0..600000; sooner: `BadRefreshInProgress`) @default 1000. The subscription (and
 *     monitored item) a refresh names must be the calling session's (`BadSubscriptionIdInvalid`,
 *     `BadMonitoredItemIdInvalid`), and only its event items receive the refresh. Refusals are
 *     audited (`opcua.ConditionRefresh`), repeated ones from a session coalesced into one entry
 *     with their count per 10 s.
 *   - `maxBrowseContinuationPoints`: the continuation points one session may hold open
 *     (Browse; beyond: that node's result is `BadNoContinuationPoints`) @default 10;
 *     `maxReferencesPerNode`: the most references one Browse returns per node (a larger or
 *     unlimited (0) RequestedMaxReferencesPerNode is revised down to it; the rest comes with a
 *     continuation point) @default 1000. HistoryRead holds at most 10 per session.
 *     `maxReferencesPerBrowse`: the work units of one Browse or BrowseNext call, its nodes or
 *     continuation points together (1..1000000) @default 2500. Each reference of a node is
 *     charged before it is scanned, whatever its filters return: 2, plus 1 for each of
 *     BrowseName, DisplayName and TypeDefinition the ResultMask asks (5 with the full mask: the
 *     default scans 500 such references a call). Browse answers in pieces: what the budget or
 *     RequestedMaxReferencesPerNode leaves waits behind a continuation point, undescribed, for
 *     BrowseNext (a piece may hold fewer references, even none). A Browse node reached with the
 *     budget spent, or one that may need a continuation point while the session holds
 *     `maxBrowseContinuationPoints`, answers `BadNoContinuationPoints` (OPC UA Part 4, 5.8.2.4)
 *     before anything of it is scanned; the first node of a call always progresses.
 *   - `maxMessageSize`: the bytes of one message, request or response (131072..134217728)
 *     @default 4194304 (4 MiB); `maxChunkCount`: its chunks (1..9000) @default 1024. Acknowledged
 *     to every client whatever larger (or unlimited) size its Hello states; a larger message is
 *     refused as it arrives, before it is decoded or any session looked at
 *     (`BadTcpMessageTooLarge`, the connection closed: OPC UA Part 6, 7.1.2). A response that
 *     would be larger fails `BadResponseTooLarge`.
 *   - `maxFailedLogins` (1..1000) @default 5 within `failedLoginWindowMs` (1000..86400000)
 *     @default 60000: after that many refused passwords for one user name from one remote address
 *     (or refused certificate or anonymous identities from it), or four times that many refused
 *     passwords from one address across user names, further such activations are refused without
 *     asking `identify` (`BadUserAccessDenied` for a password) until the window ends. Failed and throttled logins
 *     are audited (action `opcua.ActivateSession`, principal `unauthenticated`, the client and
 *     address in its source, the user name (never the password) and the reason, refused by
 *     `identify` or throttled, in its reason), coalesced per remote address and reason per 10 s
 *     with a counted summary.
 *   - `maxTrackedLogins` (10..10000000) @default 100000: most remote addresses and (address, user
 *     name) pairs whose failed logins are counted at once (about 150 bytes each). When the table is
 *     full of pairs still in their window, a login it cannot count is refused without asking
 *     `identify` (fail closed; audited throttled) until entries expire: before, such logins went
 *     uncounted and a password could be guessed without limit (adv20 F1).
 *
 *   A session that ends (closed, or timed out) takes its subscriptions with it: none lives on
 *   as an orphan outside these limits (so a client that loses its session cannot transfer its
 *   subscriptions to a new one; it creates them again).
 * - `productName`: the BuildInfo product name. @default "Kiln OPC UA server"
 * - `clock`: the time of ServerTimestamps. @default SystemClock
 * - `logger`: where the server reports what it refused or could not serve. @default silent
 */
export type OpcuaServerOptions = z.input<typeof opcuaServerOptionsSchema>;

/** {@link OpcuaServerOptions} with every default applied. */
export type ResolvedOpcuaServerOptions = z.output<typeof opcuaServerOptionsSchema>;

/**
 * Validates server options.
 * @throws KilnValidationError (`KILN_VALIDATION`) naming every bad field, e.g. `port`,
 *   `pki.dir`, `certificateFile` (a file that does not exist), `identify`.
 */
export function resolveOpcuaServerOptions(options: OpcuaServerOptions): ResolvedOpcuaServerOptions {
  return parseOrThrow(opcuaServerOptionsSchema, options, "OPC UA server options");
}
