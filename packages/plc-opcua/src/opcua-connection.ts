import {
  AttributeIds,
  MessageSecurityMode,
  OPCUAClient,
  PublishRequest,
  SecurityPolicy,
  ServiceFault,
  StatusCodes,
  TransferSubscriptionsResponse,
  UserTokenType,
  VariableIds,
  resolveNodeId,
  type ClientSession,
  type DataValue,
  type NodeId,
  type UserIdentityInfo,
} from "node-opcua-client";
import { createConnection, type Socket } from "node:net";
import { OPCUACertificateManager } from "node-opcua-certificate-manager";
import {
  defaultClientTransportFactory,
  type IClientTransport,
  type IClientTransportFactory,
} from "node-opcua-transport";
import { KilnError, KilnValidationError, type Clock, type ValidationIssue } from "@kiln/core";
import { raceAbort } from "@kiln/core/driver-kit";
import {
  certificateDer,
  isPem,
  keyMatchesCertificate,
  PkiContentError,
  privateKeyOf,
  privateKeyPem,
} from "./opcua-certificates";
import { parseEndpointUrl, type OpcTcpEndpoint } from "./opcua-endpoint-url";
import { forgetRejectedCopiesOfTrusted, keepTrustedCertificates } from "./opcua-kept-trust";
import { boundPublishRequests } from "./opcua-publish-engine";
import type { ResolvedOpcuaDriverOptions } from "./opcua-driver-options";
import { connectError, isConnectionLoss, statusOfError } from "./opcua-errors";
import { markReplayedNotifications } from "./opcua-replayed-notifications";
import { isApplicationRequest, markApplicationRequests } from "./opcua-request-origin";
import { endRequestsWith } from "./opcua-session-lifetime";
import { trackWireFates } from "./opcua-wire-fate";
import { effectiveKeepAliveMs, linkSilenceMs } from "./opcua-subscription-timing";
import type { SubscriptionConnection } from "./opcua-tag-subscription";

/** The operation limits the driver honours: the server's, capped by the options (0: none). */
export interface OperationLimits {
  readonly maxNodesPerRead: number;
  readonly maxNodesPerWrite: number;
  readonly maxNodesPerBrowse: number;
  readonly maxMonitoredItemsPerCall: number;
}

/** A request the server has not answered yet on a connection (for the link watchdog). */
export interface OutstandingRequest {
  /** When it was sent, clock ms. */
  readonly sentAt: number;
  /** Until when silence is no stall while it is out, clock ms; `-Infinity` for upkeep never waited for. */
  readonly deadline: number;
  /** The purpose of an upkeep request sent inside `asUpkeepCall` (docs/adr/0022, amendment fix13w). */
  readonly purpose?: string | undefined;
}

export interface Connection extends SubscriptionConnection {
  readonly client: OPCUAClient;
  readonly session: ClientSession;
  readonly certificateManager: OPCUACertificateManager;
  /** The server's NamespaceArray as last read Good on this session (only ns 0 before any such read). */
  namespaceArray: readonly string[];
  /**
   * Set while the NamespaceArray has not been read Good on this session: why (its status or the
   * Read's error). Every `nsu=` tag is then bad with that reason and writes to one are refused;
   * the driver retries the read on its backoff (docs/adr/0022, amendment fix13t).
   */
  namespacesUnread: string | undefined;
  limits: OperationLimits;
  maxMonitoredItemsPerCall: number;
  generation: number;
  /**
   * The session keep-alive period in effect, ms: `timeouts.keepAliveMs`, or half the session
   * timeout the server granted when that is shorter ({@link effectiveKeepAliveMs}).
   */
  keepAliveMs: number;
  /** When the server last answered anything on this connection (clock ms); the link watchdog's reference. */
  heardAt: number;
  /** The link watchdog declared this connection's link stalled and broke its channel: its loss is already reported. */
  stalled: boolean;
  /**
   * Requests sent on this connection, except Publish (which the server holds on purpose), by
   * request handle: when each was sent and its deadline (sent + `timeouts.requestMs`, the bound an
   * application's call gets; an upkeep request has none: `linkRequestKind`), clock ms. Silence
   * while an application's request is outstanding is no stall before its deadline.
   */
  readonly outstanding: Map<number, OutstandingRequest>;
  /** Smoothed maximum of the server's response times, ms: part of the link silence bound. */
  responseMs: number;
  /**
   * Publish requests in flight, by request handle: when each was sent (clock ms). Their round
   * trips only ever lower {@link responseMs} (the server holds a Publish, so its round trip is
   * at least the link's). Cleared when the connection is lost.
   */
  readonly publishes: Map<number, number>;
  /** The link silence bound in effect, ms (updated by the link watchdog). */
  silenceBoundMs: number;
  /** The bound of each connect stage of node-opcua's reconnect attempts, ms (`connectStageMs`). */
  connectStageMs: number;
  /** node-opcua's reconnect attempts that timed out at their bound since the channel was last open: each doubles {@link connectStageMs}. */
  failedConnectAttempts: number;
  /**
   * How long node-opcua's next repair of the lost channel waits before it starts, ms, on top of its own delay: the
   * driver kit's wait after a loss before the connection proved itself (`delayRepairs`). Taken by that repair.
   */
  repairWaitMs: number;
  /**
   * node-opcua repaired the connection (the session re-activated or re-created) and the driver is reconciling it,
   * not yet `connected`: a loss now counts on the driver kit's backoff (`ConnectionLifecycle.repaired`, adv13f F5).
   */
  repaired: boolean;
}

const SERVER_INFO_NODES = [
  VariableIds.Server_NamespaceArray,
  VariableIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
  VariableIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerWrite,
  VariableIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerBrowse,
  VariableIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
].map((id) => ({ nodeId: resolveNodeId(id), attributeId: AttributeIds.Value }));

const SECURITY_MODES = {
  None: MessageSecurityMode.None,
  Sign: MessageSecurityMode.Sign,
  SignAndEncrypt: MessageSecurityMode.SignAndEncrypt,
} as const;

const SECURITY_POLICIES = {
  Basic256Sha256: SecurityPolicy.Basic256Sha256,
  Aes128_Sha256_RsaOaep: SecurityPolicy.Aes128_Sha256_RsaOaep,
  Aes256_Sha256_RsaPss: SecurityPolicy.Aes256_Sha256_RsaPss,
} as const;

/** What {@link openOpcuaConnection} needs from the driver. */
export interface OpcuaConnectionSettings {
  /** The driver's checked options. */
  readonly options: ResolvedOpcuaDriverOptions;
  /** The driver's name, sent as the client name. */
  readonly name: string;
  /** The client's PKI folder. */
  readonly pkiDir: string;
  /** The password to keep out of errors, if any. */
  readonly secret: string | undefined;
  /** Source of time for the connect deadline. */
  readonly clock: Clock;
  /** Numbers the new connection's layout (namespaces, limits). */
  readonly generation: () => number;
  /**
   * The bound of each connect stage (TCP, HEL/ACK), ms; default `timeouts.connectMs` (a first
   * connect knows no response time). A rebuild passes the old connection's `connectStageMs`, so
   * an attempt sent into a link still stalled fails as soon as node-opcua's own would.
   */
  readonly connectStageMs?: number;
  /**
   * The driver's lifetime (aborted by `close()`): every request on the session ends with
   * `KILN_ABORTED` when it aborts ({@link endRequestsWith}).
   */
  readonly lifetime?: AbortSignal;
}

/**
 * Opens the secure channel and the session, and reads the server's namespace array and
 * operation limits; node-opcua gets the complete connection strategy (keep-alive, repair).
 *
 * @throws KilnValidationError `KILN_VALIDATION` (not retryable) when a file the options name cannot
 *   be read, before anything is dialled, naming the field (`pki.trustedServerCertificates[i]`,
 *   `identity.certificateFile`, `identity.privateKeyFile`).
 * @throws KilnError `KILN_AUTHENTICATION_FAILED`, `KILN_CONNECTION_FAILED` (retryable when the
 *   server cannot be reached or does not answer within `timeouts.connectMs`), `KILN_ABORTED`
 *   when `signal` aborts first. Everything opened is released on failure.
 */
export async function openOpcuaConnection(settings: OpcuaConnectionSettings, signal: AbortSignal): Promise<Connection> {
  const { options, pkiDir, secret, clock } = settings;
  const { endpointUrl, security, pki, timeouts, connectionStrategy } = options;
  const mode = security.mode;
  const context = {
    endpointUrl,
    securityMode: mode,
    securityPolicy: mode === "None" ? "None" : security.policy,
    pkiDir: pkiDir,
    secret: secret,
  };
  // Before anything is opened: a file named in the options that cannot be read is a
  // configuration error, not a connection failure to retry (docs/adr/0022, amendment fix13d).
  const { trusted, identity } = await configuredFiles(options);
  const certificateManager = new OPCUACertificateManager({
    rootFolder: pkiDir,
    automaticallyAcceptUnknownCertificate: pki.automaticallyAcceptUnknownCertificate,
  });
  keepTrustedCertificates(certificateManager);
  let client: OPCUAClient | undefined;
  // The stage a failure comes from: a security refusal of CreateSession is not one of the channel (adv13 LOW).
  let stage: "channel" | "session" = "channel";
  try {
    // Before initialize(), which indexes the folders: a copy left in rejected/ would win.
    await forgetRejectedCopiesOfTrusted(certificateManager);
    await certificateManager.initialize();
    for (const certificate of trusted) await certificateManager.trustCertificate(certificate);
    const endpoint = parseEndpointUrl(endpointUrl) as OpcTcpEndpoint;
    const transports = trackedTransports(endpoint);
    // node-opcua fetches a secure endpoint's server certificate through a client of its own that
    // never gets the driver's transport, so it cannot dial an IPv6 literal: fetched here instead.
    const serverCertificate =
      endpoint.ipv6 && mode !== "None"
        ? await raceAbort(
            serverCertificateOf(endpoint, SECURITY_MODES[mode], SECURITY_POLICIES[security.policy], {
              certificateManager,
              applicationName: options.applicationName,
              stageMs: settings.connectStageMs ?? timeouts.connectMs,
            }),
            signal,
            "connecting",
          )
        : undefined;
    client = OPCUAClient.create({
      ...(serverCertificate === undefined ? {} : { serverCertificate }),
      applicationName: options.applicationName,
      ...(options.applicationUri ? { applicationUri: options.applicationUri } : {}),
      clientName: settings.name,
      endpointMustExist: false,
      securityMode: SECURITY_MODES[mode],
      securityPolicy: mode === "None" ? SecurityPolicy.None : SECURITY_POLICIES[security.policy],
      clientCertificateManager: certificateManager,
      // Complete on purpose: node-opcua fills a partial strategy with maxRetry 10.
      connectionStrategy: {
        maxRetry: connectionStrategy.maxRetry,
        initialDelay: connectionStrategy.initialDelayMs,
        maxDelay: connectionStrategy.maxDelayMs,
        randomisationFactor: connectionStrategy.randomisationFactor,
      },
      keepSessionAlive: true,
      keepAliveInterval: timeouts.keepAliveMs,
      requestedSessionTimeout: timeouts.sessionMs,
      defaultTransactionTimeout: timeouts.requestMs,
      // Bounds each stage of node-opcua's connect (TCP, HEL/ACK: a stalled link answers neither,
      // and without a bound a repair attempt waited 60 s). connectMs for the first connect, not
      // the keep-alive silence bound: a link slower than that must still connect (adv13c M4);
      // reconnect attempts and rebuilds get connectStageMs (set by the driver).
      // The driver turns the socket idle timeout it also sets off once the channel is open.
      transportTimeout: settings.connectStageMs ?? timeouts.connectMs,
      // node-opcua's retries of one repair reuse one transport: the driver reaches it to give
      // each retry the bound it grew to (setConnectStageMs; docs/adr/0022, amendment fix13x).
      transportFactory: transports.factory,
    });
    transportsOf.set(client, transports);
    relayServiceFaults(client);
    let openedSession: ClientSession | undefined;
    releaseLateContinuationPoints(client, () => openedSession);
    const opened = client;
    trackWireFates(opened, (listener) => onServiceFault(opened, listener));
    const attempt = (async () => {
      // An IPv6 zone is left out of what node-opcua parses; the socket keeps it (socketsTo).
      await opened.connect(endpoint.clientUrl);
      stage = "session";
      const session = await opened.createSession(identity);
      openedSession = session;
      refuseSubscriptionTransfers(session);
      boundPublishRequests(session);
      markReplayedNotifications(session);
      markApplicationRequests(session);
      if (settings.lifetime)
        endRequestsWith(session, settings.lifetime, {
          requestMs: timeouts.requestMs,
          applies: isApplicationRequest,
          clock,
        });
      try {
        const readAt = clock.now();
        const info = await readServerInfo(session, options.limits);
        // One round trip: the first measure of the server's response time (link silence bound).
        return { session, info, responseMs: clock.now() - readAt };
      } catch (error) {
        await session.close().catch(() => undefined);
        throw error;
      }
    })();
    attempt.catch(() => undefined);
    const deadline = new AbortController();
    const timer = clock.setTimeout(
      () =>
        deadline.abort(
          new KilnError(
            "KILN_CONNECTION_FAILED",
            `Connecting timed out after ${timeouts.connectMs} ms (timeouts.connectMs).`,
            {
              retryable: true,
              details: { timeoutMs: timeouts.connectMs },
            },
          ),
        ),
      timeouts.connectMs,
    );
    const { session, info, responseMs } = await raceAbort(
      attempt,
      AbortSignal.any([signal, deadline.signal]),
      "connecting",
    ).finally(() => clock.clearTimeout(timer));
    const connection: Connection = {
      client: opened,
      session,
      certificateManager,
      namespaceArray: info.namespaceArray ?? [OPC_UA_NAMESPACE],
      namespacesUnread: info.namespacesUnread,
      limits: info.limits,
      maxMonitoredItemsPerCall: info.limits.maxMonitoredItemsPerCall,
      generation: settings.generation(),
      keepAliveMs: adaptKeepAlive(opened, session, timeouts.keepAliveMs),
      heardAt: clock.now(),
      stalled: false,
      outstanding: new Map(),
      responseMs,
      publishes: new Map(),
      silenceBoundMs: 0,
      connectStageMs: connectStageMs(timeouts.keepAliveMs, responseMs, timeouts.connectMs),
      failedConnectAttempts: 0,
      repairWaitMs: 0,
      repaired: false,
      ...(settings.lifetime ? { retired: settings.lifetime } : {}),
    };
    connection.silenceBoundMs = linkSilenceMs(connection.keepAliveMs);
    setConnectStageMs(opened, connection.connectStageMs);
    return connection;
  } catch (error) {
    if (client) await client.disconnect().catch(() => undefined);
    await certificateManager.dispose().catch(() => undefined);
    throw connectError(error, { ...context, stage });
  }
}

/**
 * The certificate of `endpoint`'s server for `mode` and `policy`, read from its endpoints over
 * the driver's own transport (security None, one attempt) and checked by `certificateManager` as
 * node-opcua checks the one it fetches itself (its errors have the same text, so
 * `connectError` reads them alike). For IPv6 literals only: node-opcua's own fetch dials them
 * as names (adversarial review adv13z, MEDIUM-1).
 */
async function serverCertificateOf(
  endpoint: OpcTcpEndpoint,
  mode: MessageSecurityMode,
  policy: SecurityPolicy,
  settings: { certificateManager: OPCUACertificateManager; applicationName: string; stageMs: number },
): Promise<Buffer> {
  const fetcher = OPCUAClient.create({
    applicationName: settings.applicationName,
    clientName: "EndpointFetcher",
    endpointMustExist: false,
    securityMode: MessageSecurityMode.None,
    securityPolicy: SecurityPolicy.None,
    connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200, randomisationFactor: 0 },
    transportTimeout: settings.stageMs,
    transportFactory: trackedTransports(endpoint).factory,
  });
  let endpoints;
  try {
    await fetcher.connect(endpoint.clientUrl);
    endpoints = await fetcher.getEndpoints();
  } catch (error) {
    throw new Error(
      `Fail to connect to server at ${endpoint.clientUrl} to collect server's certificate: ${(error as Error).message}`,
      { cause: error },
    );
  } finally {
    await fetcher.disconnect().catch(() => undefined);
  }
  const match = endpoints.find(
    (candidate) => candidate.securityMode === mode && candidate.securityPolicyUri === policy,
  );
  if (match?.serverCertificate === undefined || match.serverCertificate === null) {
    throw new Error(`cannot find endpoint for securityMode=${MessageSecurityMode[mode]} policy = ${policy}`);
  }
  const certificate = Buffer.from(match.serverCertificate);
  const status = await settings.certificateManager.checkCertificate(certificate);
  if (!status.isGood()) throw new Error(`server Certificate verification failed with err ${status.toString()}`);
  return certificate;
}

/**
 * Sets the session's keep-alive to {@link effectiveKeepAliveMs} for the session timeout the
 * server granted (half of it when below twice `keepAliveMs`), for this session and node-opcua's
 * repairs of it, and restarts the keep-alive when its period changes; returns the period in
 * effect. Called when the session is opened and after every repair (a restarted server may grant
 * another timeout to the re-created session, and node-opcua restarts the keep-alive with the
 * period it had: docs/adr/0022, amendment fix13f).
 */
export function adaptKeepAlive(client: OPCUAClient, session: ClientSession, keepAliveMs: number): number {
  const effective = effectiveKeepAliveMs(keepAliveMs, session.timeout);
  const internals = client as unknown as { keepAliveInterval?: number };
  const before = internals.keepAliveInterval ?? keepAliveMs;
  internals.keepAliveInterval = effective;
  if (effective === before) return effective;
  const keepAlive = session as unknown as {
    stopKeepAliveManager?: () => void;
    startKeepAliveManager?: (intervalMs: number) => void;
  };
  keepAlive.stopKeepAliveManager?.();
  keepAlive.startKeepAliveManager?.(effective);
  return effective;
}

/**
 * The bound of each stage (TCP connect, HEL/ACK) of node-opcua's reconnect attempts on a link
 * whose keep-alive is `keepAliveMs` and whose measured response time is `responseMs`: two
 * keep-alive periods plus two response times (a stage is one round trip; a slow link must still
 * reconnect, adv13c M4), doubled for each of `failedAttempts` in a row (a link whose round trip
 * grew past what was measured: adv13s L1), at most `connectMs` (which bounds the first
 * connect's stages). A stalled link still fails an attempt within it, so the next one can succeed
 * once the link resumes.
 */
export function connectStageMs(keepAliveMs: number, responseMs: number, connectMs: number, failedAttempts = 0): number {
  const base = linkSilenceMs(keepAliveMs) + 2 * Math.max(0, responseMs);
  return Math.round(Math.min(connectMs, base * 2 ** Math.min(Math.max(0, failedAttempts), 30)));
}

/** The responses of the services node-opcua's repair of a session sends (by schema name). */
const REPAIR_RESPONSES: ReadonlySet<string> = new Set([
  "OpenSecureChannelResponse",
  "CreateSessionResponse",
  "ActivateSessionResponse",
  "RepublishResponse",
  "TransferSubscriptionsResponse",
  "CreateSubscriptionResponse",
  "CreateMonitoredItemsResponse",
]);

/**
 * Whether `response` answers a request node-opcua's repair of a connection sends (opening the
 * channel, re-activating or re-creating the session, Republish of missed notifications,
 * re-creating subscriptions): a sign the repair progresses. Keep-alive reads and Publish are not:
 * they are answered on a channel whose repair may still be stuck (docs/adr/0022, amendment fix13x).
 */
export function isRepairResponse(response: unknown): boolean {
  const name = (response as { schema?: { name?: unknown } } | null)?.schema?.name;
  return typeof name === "string" && REPAIR_RESPONSES.has(name);
}

/** The transports node-opcua built for a client, through the factory the client was given. */
export interface TrackedTransports {
  readonly factory: IClientTransportFactory;
  /** The one built last: the open channel's, or the one node-opcua's current repair retries with. */
  latest: IClientTransport | undefined;
  /** The bound {@link setConnectStageMs} asked for: applied when a connect attempt starts. */
  stageMs: number | undefined;
  /**
   * Whether the last connect attempt that failed ran into its stage bound ({@link attemptTimedOut})
   * rather than being refused or reset at once; undefined before any failed.
   */
  lastFailureTimedOut: boolean | undefined;
}

const transportsOf = new WeakMap<OPCUAClient, TrackedTransports>();

/**
 * A transport factory (node-opcua's default) that remembers the transport it built last and gives
 * each of its connect attempts the bound asked for last, when the attempt starts. Never while an
 * attempt runs: node-opcua's `timeout` setter asserts that no handshake timer is armed, and that
 * assertion thrown from the driver's link check (a timer callback) ended the process
 * (adversarial review adv13b, HIGH-1).
 */
export function trackedTransports(endpoint?: OpcTcpEndpoint): TrackedTransports {
  const tracked: TrackedTransports = {
    factory: {
      create: (transportSettings) => {
        const transport = defaultClientTransportFactory.create(transportSettings);
        if (endpoint?.ipv6 === true) socketsTo(transport, endpoint);
        const connect = transport.connect.bind(transport);
        transport.connect = (endpointUrl: string, callback: (error?: Error | null) => void) => {
          applyStageMs(transport, tracked.stageMs);
          const startedAt = performance.now();
          const boundMs = (transport as unknown as { timeout?: unknown }).timeout;
          return connect(endpointUrl, (error?: Error | null) => {
            if (error) {
              const tookMs = performance.now() - startedAt;
              tracked.lastFailureTimedOut = typeof boundMs === "number" && attemptTimedOut(tookMs, boundMs);
            }
            callback(error);
          });
        };
        tracked.latest = transport;
        return transport;
      },
    },
    latest: undefined,
    stageMs: undefined,
    lastFailureTimedOut: undefined,
  };
  return tracked;
}

/**
 * Makes `transport` open its TCP socket to `endpoint`'s IPv6 address. node-opcua's transport hands
 * the URL's WHATWG host to `net.createConnection`, brackets included (`[::1]`), which looks it up
 * as a name and fails ENOTFOUND: no IPv6 literal URL ever connected (adversarial review adv13,
 * LOW). The transport installs the socket it created synchronously in `connect()`, before the
 * name lookup ran; the one it is given instead goes to the address without brackets (and with its
 * zone), with the settings node-opcua's own socket had (its stage bound, Nagle, keep-alive, the
 * half-bound connect timeout that breaks the attempt). Only IPv6 literal endpoints take this path.
 */
function socketsTo(transport: IClientTransport, endpoint: OpcTcpEndpoint): void {
  const internals = transport as unknown as {
    timeout: number;
    _install_socket: (socket: Socket) => void;
    forceConnectionBreak: () => void;
  };
  const install = internals._install_socket.bind(transport);
  internals._install_socket = (unreachable: Socket) => {
    unreachable.destroy();
    const timeout = internals.timeout;
    const socket = createConnection({ host: endpoint.socketHost, port: endpoint.port, timeout });
    socket.setNoDelay(false);
    socket.setKeepAlive(true, timeout >> 1);
    socket.setTimeout(timeout >> 1, () => internals.forceConnectionBreak());
    install(socket);
  };
}

/**
 * Whether a failed connect attempt that took `tookMs` ran into its stage bound `boundMs` (docs/adr/0022,
 * amendment fix13z): node-opcua ends a TCP connect unanswered after half the bound and a HEL/ACK
 * unanswered after the whole bound, so an attempt that failed sooner than nine tenths of half the
 * bound was refused or reset (ECONNREFUSED, a port closed while the server restarts) and must not
 * grow the bound.
 */
export function attemptTimedOut(tookMs: number, boundMs: number): boolean {
  return tookMs >= 0.45 * boundMs;
}

/**
 * Whether `client`'s last failed connect attempt timed out at its stage bound
 * ({@link attemptTimedOut}); false when none failed or it was refused at once.
 */
export function lastConnectTimedOut(client: OPCUAClient): boolean {
  return transportsOf.get(client)?.lastFailureTimedOut === true;
}

/** Sets `transport`'s connect stage bound; left as it is while node-opcua's handshake timer is armed (it asserts). */
export function applyStageMs(transport: IClientTransport, stageMs: number | undefined): void {
  const settable = transport as unknown as { timeout?: number };
  if (stageMs === undefined || settable.timeout === stageMs) return;
  try {
    settable.timeout = stageMs;
  } catch {
    // An attempt is under way: the bound applies from the next one.
  }
}

/**
 * Sets the bound of each connect stage (TCP, HEL/ACK) of `client`'s next connect attempt
 * ({@link connectStageMs}): on the secure channel node-opcua builds next (its `_transportTimeout`,
 * read when a repair starts) and on the transport its current repair retries with (node-opcua
 * builds one transport per repair and calls `connect()` on it for every retry; each call reads
 * the transport's `timeout`, which the factory sets as each attempt starts: never during one,
 * adv13b HIGH-1). Without the latter a link whose round trip grew past the bound never
 * reconnected: every retry of the repair timed out at the bound of its start (docs/adr/0022,
 * amendments fix13w and fix13x). Changing the bound of an open channel's transport changes
 * nothing on it (its socket's idle timeout is off: the link watchdog judges silence).
 */
export function setConnectStageMs(client: OPCUAClient, stageMs: number): void {
  (client as unknown as { _transportTimeout?: number })._transportTimeout = stageMs;
  const tracked = transportsOf.get(client);
  if (tracked !== undefined) tracked.stageMs = stageMs;
}

/**
 * The connect stage bound `client`'s current connect attempts are given, ms: the `timeout` of the
 * transport node-opcua built last (the one its repair retries with); undefined when it built none.
 */
export function appliedConnectStageMs(client: OPCUAClient): number | undefined {
  const transport = transportsOf.get(client)?.latest as { timeout?: unknown } | undefined;
  return typeof transport?.timeout === "number" ? transport.timeout : undefined;
}

/** The client event {@link relayServiceFaults} emits for each ServiceFault the server answers. */
const SERVICE_FAULT_EVENT = "kiln_service_fault";

type FaultEmitter = {
  emit(event: string, answer: ServiceFaultAnswer): boolean;
  on(event: string, listener: (answer: ServiceFaultAnswer) => void): unknown;
};

/** Calls `listener` for each ServiceFault the server answers on `client` ({@link relayServiceFaults}). */
export function onServiceFault(client: OPCUAClient, listener: (answer: ServiceFaultAnswer) => void): void {
  (client as unknown as FaultEmitter).on(SERVICE_FAULT_EVENT, listener);
}

/** A ServiceFault the server answered: which request (its handle) and the service result's name. */
export interface ServiceFaultAnswer {
  readonly requestHandle: number;
  readonly statusName: string;
}

/**
 * Makes `client` emit {@link SERVICE_FAULT_EVENT} with a {@link ServiceFaultAnswer} for every
 * ServiceFault the server answers, on every secure channel it opens (first connect and each
 * reconnect). node-opcua turns a ServiceFault into an error for the caller and emits
 * `receive_response` only for answers without error (client_secure_channel_layer.js), so without
 * this the link watchdog saw a faulted request (the Republish of each re-activation, answered
 * BadMessageNotAvailable; a Publish answered BadSessionClosed) as still outstanding and the server
 * as silent (docs/adr/0022, amendment fix13g). The secure channel emits `message` for each decoded
 * answer before it settles the request.
 */
function relayServiceFaults(client: OPCUAClient): void {
  type Channel = { on(event: "message", listener: (response: unknown) => void): unknown };
  const internals = client as unknown as { _install_secure_channel_event_handlers?: (channel: Channel) => void };
  const install = internals._install_secure_channel_event_handlers;
  if (typeof install !== "function") return;
  internals._install_secure_channel_event_handlers = function (this: unknown, channel: Channel): void {
    install.call(this, channel);
    channel.on("message", (response: unknown) => {
      if (!(response instanceof ServiceFault)) return;
      const answer: ServiceFaultAnswer = {
        requestHandle: response.responseHeader.requestHandle,
        statusName: response.responseHeader.serviceResult.name,
      };
      (client as unknown as FaultEmitter).emit(SERVICE_FAULT_EVENT, answer);
    });
  };
}

/** Timed-out Browse/BrowseNext requests remembered per channel at most (a late answer comes soon or never). */
const LATE_BROWSE_MEMORY = 256;

/**
 * Gives back the continuation points a Browse or BrowseNext answer names when node-opcua had
 * already failed its request on its own transaction timeout (at least 5 s,
 * `ClientSecureChannelLayer.minTransactionTimeout`). node-opcua drops such a late answer; the
 * driver's browse, failing on the timeout, releases only the points it knew, and a server that
 * issues a new point for each page (Part 4 §5.8.3 leaves that to the server) had consumed the one
 * sent and made a new one, which stayed until the session ended: with few points per session
 * (small PLCs: 1–5) every later browse was refused BadNoContinuationPoints (docs/adr/0022,
 * amendment fix13ag). The secure channel emits `timed_out_request` with the request and `message`
 * with every decoded answer before it settles its request; the points of an answer to a request
 * that timed out are released with BrowseNext `releaseContinuationPoints: true` on `session()`,
 * best effort. Installed on every channel the client opens, like {@link relayServiceFaults}.
 */
function releaseLateContinuationPoints(client: OPCUAClient, session: () => ClientSession | undefined): void {
  type Channel = { on(event: "message" | "timed_out_request", listener: (message: unknown) => void): unknown };
  const internals = client as unknown as { _install_secure_channel_event_handlers?: (channel: Channel) => void };
  const install = internals._install_secure_channel_event_handlers;
  if (typeof install !== "function") return;
  internals._install_secure_channel_event_handlers = function (this: unknown, channel: Channel): void {
    install.call(this, channel);
    const timedOut = new Set<number>();
    channel.on("timed_out_request", (request: unknown) => {
      const browse = request as {
        schema?: { name?: unknown };
        releaseContinuationPoints?: unknown;
        requestHeader?: { requestHandle?: unknown };
      } | null;
      const name = browse?.schema?.name;
      if (name !== "BrowseRequest" && name !== "BrowseNextRequest") return;
      if (browse?.releaseContinuationPoints === true) return;
      const handle = browse?.requestHeader?.requestHandle;
      if (typeof handle !== "number") return;
      timedOut.add(handle);
      if (timedOut.size > LATE_BROWSE_MEMORY) timedOut.delete(timedOut.values().next().value!);
    });
    channel.on("message", (response: unknown) => {
      const answer = response as {
        schema?: { name?: unknown };
        responseHeader?: { requestHandle?: unknown };
        results?: readonly { continuationPoint?: Buffer | null }[] | null;
      } | null;
      const name = answer?.schema?.name;
      if (name !== "BrowseResponse" && name !== "BrowseNextResponse") return;
      const handle = answer?.responseHeader?.requestHandle;
      if (typeof handle !== "number" || !timedOut.delete(handle)) return;
      const points = (answer?.results ?? []).flatMap((result) =>
        result.continuationPoint?.length ? [result.continuationPoint] : [],
      );
      const owner = session();
      if (points.length === 0 || owner === undefined) return;
      owner.browseNext(points, true).catch(() => undefined);
    });
  };
}

/**
 * What a request is to the link watchdog: a `publish` (the server holds it until it has something
 * to send: not waited for, not a response time), an `application` request (sent inside an
 * application's call to the driver, `isApplicationRequest`: the caller allowed it
 * `timeouts.requestMs`, so silence is no stall before that deadline), or `upkeep` (every request
 * the driver or node-opcua sends on its own behalf: keep-alive reads, Republish, subscriptions
 * re-created, modified or deleted, items created again, reads after a repair, namespace table
 * reads: a response time, never waited for beyond the stall bound). Upkeep requests in flight
 * when the link froze held the stall bound at `requestMs` (docs/adr/0022, amendments fix13n and
 * fix13u).
 */
export function linkRequestKind(request: unknown): "publish" | "application" | "upkeep" {
  if (request instanceof PublishRequest) return "publish";
  return isApplicationRequest(request) ? "application" : "upkeep";
}

/**
 * The trusted server certificates and the user identity of `options`, with every file they name
 * read (`pki.trustedServerCertificates[i]` given as a path, `identity.certificateFile`,
 * `identity.privateKeyFile`). Read at each connect, not at construction: a file provisioned after
 * the driver was made (a secret mounted later) is found.
 *
 * Each is parsed too: a trusted certificate or the identity certificate must be a PEM block
 * labelled `CERTIFICATE` or DER that parses as an X.509 certificate, the identity key an
 * unencrypted private key matching the identity certificate. A file that holds something else (a
 * private key listed as a trusted certificate, garbage) is never handed to node-opcua: it would
 * file a key in `pki/trusted/certs/` (docs/adr/0022, amendment fix13af).
 *
 * @throws KilnValidationError `KILN_VALIDATION`, not retryable, one issue per file that cannot be
 *   read or does not hold what its field needs, at its field path, with the file and the reason
 *   (`ENOENT`, `EACCES`, "it holds no certificate (PEM "PRIVATE KEY"...)", ...): re-dialling
 *   would fail the same way until the configuration or the file changes.
 */
async function configuredFiles(
  options: ResolvedOpcuaDriverOptions,
): Promise<{ readonly trusted: readonly Buffer[]; readonly identity: UserIdentityInfo }> {
  const issues: ValidationIssue[] = [];
  const read = async <T>(field: string, file: string, load: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await load();
    } catch (error) {
      if (error instanceof PkiContentError) {
        issues.push({ path: field, message: `${file} cannot be used: ${error.message}` });
        return undefined;
      }
      const reason = (error as { code?: unknown }).code ?? (error as { message?: unknown }).message;
      issues.push({ path: field, message: `the file ${file} cannot be read (${String(reason)})` });
      return undefined;
    }
  };
  const trusted: Buffer[] = [];
  for (const [index, certificate] of options.pki.trustedServerCertificates.entries()) {
    const der = await read(`pki.trustedServerCertificates[${index}]`, describeSource(certificate), () =>
      certificateDer(certificate),
    );
    if (der) trusted.push(der);
  }
  let identity: UserIdentityInfo;
  const option = options.identity;
  switch (option.type) {
    case "anonymous":
      identity = { type: UserTokenType.Anonymous };
      break;
    case "username":
      identity = { type: UserTokenType.UserName, userName: option.userName, password: option.password };
      break;
    case "certificate": {
      const certificateData = await read("identity.certificateFile", option.certificateFile, () =>
        certificateDer(option.certificateFile),
      );
      const privateKey = await read("identity.privateKeyFile", option.privateKeyFile, () =>
        privateKeyPem(option.privateKeyFile),
      );
      if (certificateData && privateKey && !keyMatchesCertificate(certificateData, privateKeyOf(privateKey))) {
        issues.push({
          path: "identity.privateKeyFile",
          message: `${option.privateKeyFile} is not the private key of the certificate ${option.certificateFile} (identity.certificateFile)`,
        });
      }
      identity = { type: UserTokenType.Certificate, certificateData: certificateData!, privateKey: privateKey! };
      break;
    }
  }
  if (issues.length > 0) {
    throw new KilnValidationError("OPC UA driver options", issues, {
      retryable: false,
      details: { endpointUrl: options.endpointUrl },
    });
  }
  return { trusted, identity };
}

/** A trusted certificate as named in an issue: its path, or what kind of value it is. */
function describeSource(source: string | Uint8Array): string {
  if (typeof source !== "string") return `given as ${source.byteLength} bytes`;
  return isPem(source) ? "given as PEM text" : source;
}

/** Namespace 0, whose index is fixed by the standard. */
const OPC_UA_NAMESPACE = "http://opcfoundation.org/UA/";

export interface ServerInfo {
  /** The server's NamespaceArray; undefined when it was not read Good ({@link namespacesUnread} says why). */
  readonly namespaceArray: readonly string[] | undefined;
  /** Why the NamespaceArray was not read: its Bad status name, or the Read's error. Never replaced by a default table. */
  readonly namespacesUnread: string | undefined;
  readonly limits: OperationLimits;
}

/**
 * Reads the server's namespace array and operation limits (capped by `caps`; 0: no limit). In one
 * Read when the server allows it; a server whose MaxNodesPerRead is below the five values, or that
 * refuses the combined Read with another service-level status (a ServiceFault such as
 * BadTooManyOperations), gets them one Read each: the namespace array must be read, each limit is
 * optional (a refused or bad limit means "no limit", capped by `caps`). Nothing else can be
 * chunked before MaxNodesPerRead is known (docs/adr/0022, amendment fix13o). A NamespaceArray that
 * is not Good (BadWaitingForInitialData from a booting server...) or whose own Read the server
 * refuses is not replaced by a default: `namespaceArray` is undefined and `namespacesUnread` says
 * why (amendment fix13t).
 *
 * @throws the combined Read's error when it is a connection loss or carries no status, or the
 *   namespace array's own Read's error when it is one of those.
 */
export async function readServerInfo(
  session: ClientSession,
  caps: ResolvedOpcuaDriverOptions["limits"],
): Promise<ServerInfo> {
  let values: readonly (DataValue | undefined)[];
  const refusals: string[] = [];
  try {
    values = await session.read(SERVER_INFO_NODES.map((node) => ({ ...node })));
  } catch (error) {
    const status = statusOfError(error);
    if (status === undefined || isConnectionLoss(status)) throw error;
    values = await readOneByOne(session, SERVER_INFO_NODES, refusals);
  }
  const namespaces = values[0];
  const good =
    namespaces?.statusCode.isGood() === true &&
    Array.isArray(namespaces.value.value) &&
    (namespaces.value.value as unknown[]).every((uri) => typeof uri === "string") &&
    namespaces.value.value[0] === OPC_UA_NAMESPACE;
  const namespaceArray = good ? (namespaces!.value.value as string[]) : undefined;
  const namespacesUnread = good
    ? undefined
    : namespaces === undefined
      ? `the server refused the Read of its NamespaceArray (${refusals[0] ?? "no result"})`
      : namespaces.statusCode.isGood()
        ? "the server's NamespaceArray is not an array of namespace URIs starting with the OPC UA namespace"
        : `the server answered its NamespaceArray ${namespaces.statusCode.name}`;
  const limit = (index: number, cap: number | undefined): number => {
    const value = values[index];
    const server = value?.statusCode.isGood() && typeof value.value.value === "number" ? value.value.value : 0;
    if (server > 0 && cap !== undefined) return Math.min(server, cap);
    return server > 0 ? server : (cap ?? 0);
  };
  return {
    namespaceArray,
    namespacesUnread,
    limits: {
      maxNodesPerRead: limit(1, caps.maxNodesPerRead),
      maxNodesPerWrite: limit(2, caps.maxNodesPerWrite),
      maxNodesPerBrowse: limit(3, caps.maxNodesPerBrowse),
      maxMonitoredItemsPerCall: limit(4, caps.maxMonitoredItemsPerCall),
    },
  };
}

/**
 * Reads each of `nodes` in a Read of its own ({@link readServerInfo}): one the server refuses
 * with a status yields `undefined` (the namespace array: not read; a limit: "no limit") and its
 * status name in `refusals`; a
 * connection loss or an error without a status is thrown.
 */
async function readOneByOne(
  session: ClientSession,
  nodes: readonly { readonly nodeId: NodeId; readonly attributeId: number }[],
  refusals: string[],
): Promise<(DataValue | undefined)[]> {
  const values: (DataValue | undefined)[] = [];
  for (const [index, node] of nodes.entries()) {
    try {
      values.push((await session.read([{ ...node }]))[0]);
    } catch (error) {
      const status = statusOfError(error);
      if (status === undefined || isConnectionLoss(status)) throw error;
      values.push(undefined);
      refusals[index] = status.statusName;
    }
  }
  return values;
}

export function sameServerInfo(connection: Connection, info: ServerInfo): boolean {
  const a = connection.limits;
  const b = info.limits;
  return (
    info.namespaceArray !== undefined &&
    connection.namespaceArray.length === info.namespaceArray.length &&
    connection.namespaceArray.every((uri, index) => uri === info.namespaceArray![index]) &&
    a.maxNodesPerRead === b.maxNodesPerRead &&
    a.maxNodesPerWrite === b.maxNodesPerWrite &&
    a.maxNodesPerBrowse === b.maxNodesPerBrowse &&
    a.maxMonitoredItemsPerCall === b.maxMonitoredItemsPerCall
  );
}

/**
 * Stops node-opcua from ever transferring a subscription into `session` (docs/adr/0022, amendment
 * fix13 2026-12-02).
 *
 * When node-opcua repairs a session by creating a new one (the old one is gone: the server
 * restarted, or dropped it), it asks the server to transfer the old subscription ids to it
 * (TransferSubscriptions, OPC UA Part 4 5.13.7) and keeps every one the server grants. After a
 * restart the server may have given those ids to other clients (numbering from the same value at
 * every boot), and nothing can prove before the transfer that an id is still Kiln's: the server's
 * StartTime is optional, constant on a PLC without a clock, or unreadable, and GetMonitoredItems
 * answers only the session that owns the subscription. A transfer cannot be undone: the other
 * client has lost its subscription. So every transfer is answered here, without asking the server,
 * as refused (BadUserAccessDenied, which a server may answer too): node-opcua then creates each
 * subscription anew with its monitored items, and Kiln's session only ever holds subscriptions it
 * created. Kiln's own old subscriptions left on a server that stayed up expire with their
 * lifetime (no session sends them Publish requests).
 */
export function refuseSubscriptionTransfers(session: ClientSession): void {
  const refuse = (
    request: { subscriptionIds?: number[] | null },
    callback?: (error: Error | null, response?: TransferSubscriptionsResponse) => void,
  ): Promise<TransferSubscriptionsResponse> | undefined => {
    const response = new TransferSubscriptionsResponse({
      results: (request.subscriptionIds ?? []).map(() => ({ statusCode: StatusCodes.BadUserAccessDenied })),
    });
    if (!callback) return Promise.resolve(response);
    setImmediate(() => callback(null, response));
    return undefined;
  };
  Object.defineProperty(session, "transferSubscriptions", { value: refuse, configurable: true, writable: true });
}
