import { AsyncLocalStorage } from "node:async_hooks";
import { hostname } from "node:os";
import path from "node:path";
import {
  type Clock,
  type ControlSystem,
  type Disposer,
  KilnError,
  KilnValidationError,
  type Logger,
  type Principal,
  QualityCodes,
  type Sample,
  silentLogger,
  SystemClock,
  type Tag,
  type TagValue,
  type TimerHandle,
} from "@kiln/core";
import { auditablePrincipalId, endpointUrlHost } from "@kiln/core/driver-kit";
import type { Namespace, UAObject, UAVariable } from "node-opcua-address-space";
import type { BaseNode, ISessionBase, ISessionContext } from "node-opcua-address-space-base";
import type { OPCUACertificateManager } from "node-opcua-certificate-manager";
import type { DataValue } from "node-opcua-data-value";
import type { ServerSession } from "node-opcua-server";
import type { RefusedRefresh, RefusedRequest, ServedEvent } from "./opcua-authorizing-server";
import type { StatusCode } from "node-opcua-status-code";
import type { UserIdentityToken } from "node-opcua-types";
import type { Variant } from "node-opcua-variant";
import { serveAlarms, type ServedAlarms } from "./opcua-alarms";
import { addTagVariables, deriveChildNodeIds, folderIdentifier, OPCUA_DATA_TYPE_OF_TAG } from "./opcua-address-space";
import { addMachineNodes, machineIdentifier, type MachineMethods, type MachineVariable } from "./opcua-machine";
import {
  type OpcuaServerOptions,
  type OpcuaSessionInfo,
  type OpcuaUserIdentity,
  resolveOpcuaServerOptions,
  type ResolvedOpcuaServerOptions,
} from "./opcua-server-options";
import { loadServerRuntime, type ServerRuntime } from "./opcua-server-runtime-loader";
import {
  servedValueOf,
  ServerStatusCodes,
  statusCodeOfError,
  statusCodeOfSample,
  statusCodeOfServed,
} from "./opcua-status";
import { type DiagnosticsAccess, diagnosticsAccessOf, OPCUA_DIAGNOSTICS_PERMISSION } from "./opcua-diagnostics-access";
import { HistoryService } from "./opcua-history";
import { aggregateNameOf, serveHistory } from "./opcua-history-nodes";

/** The parts of a `ControlSystem` the server uses: its public, checked API only. */
export type ServedSystem = Pick<
  ControlSystem,
  | "machineId"
  | "can"
  | "refuseCommand"
  | "tags"
  | "cvt"
  | "history"
  | "bus"
  | "machineState"
  | "state"
  | "writeTag"
  | "startSavedRecipe"
  | "pauseProcess"
  | "resumeProcess"
  | "abortProcess"
  | "sendMachineCommand"
  | "listAlarms"
  | "acknowledgeAlarm"
  | "shelveAlarm"
  | "unshelveAlarm"
  | "setAlarmInService"
>;

/**
 * How long (ms) a Method waits for its command before answering `GoodCompletesAsynchronously`
 * (OPC UA Part 4, 7.39): a pause is taken at the next step boundary, an abort after the safe state.
 */
const METHOD_ANSWER_MS = 1_000;

/** How often (ms) the server looks whether the system runs (see `OpcuaServer.#watchSystem`). */
const SYSTEM_WATCH_MS = 500;
/** How many times `limits.maxFailedLogins` password failures of one address, across user names, throttle it. */
const ADDRESS_LOGIN_FACTOR = 4;

/**
 * How long (ms) repeated refusals of one kind from one principal are coalesced: the first is
 * audited at once, the others in the window are counted and audited as one summary entry at its end.
 */
const REFUSAL_AUDIT_WINDOW_MS = 10_000;

/**
 * How many refusals of one kind a scope has audited apart (each its own entry, naming its target)
 * within a window before the rest are only counted in the window's summary.
 */
const REFUSALS_AUDITED_APART = 10;

/** Most distinct targets a coalescing window counts exactly; beyond, its summary says "at least". */
const DISTINCT_TARGETS_COUNTED = 1_000;

/**
 * Most coalescing windows open at once, server-wide. Their keys hold no target, so this is reached
 * only by very many principals (or login addresses) refused at once; the refusals of a scope
 * without room are coalesced in one shared overflow scope, still counted and audited.
 */
const MAX_REFUSAL_WINDOWS = 4_096;

/** Most targets (or user names) an audit entry names; the rest are counted. */
const NAMED_IN_ENTRY = 5;

/** Most targets of one call's refusals of a kind that are kept to be counted (the rest are counted, not named). */
const MAX_TARGETS_KEYED = 100_000;

/** Most characters of `system.refuseCommand`'s comment. */
const COMMENT_MAX_LENGTH = 1_000;

/** Most login-audit scopes (remote addresses) kept at once: cleared when full (they only coalesce audit entries). */
const MAX_LOGIN_SCOPES = 100_000;

/** Most characters of an audit source (Kiln's principal `source` rule). */
const SOURCE_MAX_LENGTH = 256;

type AuthorizingServer = InstanceType<ServerRuntime["AuthorizingServer"]>;

/**
 * Test-only: sets the most coalescing windows a server keeps open (default `MAX_REFUSAL_WINDOWS`),
 * so the overflow scope can be reached without thousands of principals. Not exported by the package.
 * @internal
 */
export let setRefusalWindowCap: (server: OpcuaServer, cap: number) => void;

/**
 * An OPC UA server (node-opcua) that exposes a Kiln `ControlSystem` to SCADA, HMI and MES
 * clients:
 *
 * - **Address space**: one variable per tag under `Objects/<machineId>`, in folders by the
 *   dotted tag name, NodeId `ns=<namespace of namespaceUri>;s=<tag name>`, with DataType,
 *   ValueRank, AccessLevel, Description, and EURange/EngineeringUnits (AnalogItemType) from the
 *   tag's range and unit.
 * - **Values** come from the current value table as it changes (an observer, no polling): the
 *   sample's quality as StatusCode (the device's own code kept; never a good status on a bad
 *   value), its source timestamp as SourceTimestamp, the time the server took it as
 *   ServerTimestamp; while the system is not running, a good value is served
 *   `UncertainNoCommunicationLastUsableValue`. Reads and subscriptions are served by node-opcua from those values, which
 *   honours each client's sampling interval, queue and deadband filter.
 * - **Reading is authorized**: a Read of a tag's Value, a monitored item on it and a HistoryRead
 *   of it need `read` on the tag for the session's principal (the system's role table through
 *   `system.can`, or the `authorizer` option); without it the Read answers
 *   `BadUserAccessDenied`, and so does the monitored item's create result (nothing sampled).
 * - **Diagnostics are private**: a session reads, subscribes to and browses its own session's
 *   diagnostics under `Server/ServerDiagnostics` and `EnabledFlag`; the rest (the summary, the
 *   arrays of every session and subscription, other sessions' objects) needs
 *   {@link OPCUA_DIAGNOSTICS_PERMISSION} (`opcua.diagnostics`) on the machine: without it
 *   `BadUserAccessDenied`, and Browse leaves them out (OPC UA Part 5, 12.12; issue 20, adv F4);
 *   other sessions' objects and the nodes under them do not exist for it (`BadNodeIdUnknown` for
 *   every service, no Browse reference, no TranslateBrowsePaths target).
 * - **Writes** go through `system.writeTag` (authorization, range, access, machine state, audit
 *   with the OPC UA session as `source`); a refusal answers the StatusCode of its `KilnError`
 *   (`BadUserAccessDenied`, `BadOutOfRange`, `BadNotWritable`, `BadInvalidState`...) and nothing
 *   reaches the PLC. A request the server refuses before it becomes a Kiln command (a Write with
 *   an IndexRange, an Acknowledge naming an unknown EventId, Confirm or AddComment, which Kiln's
 *   alarm engine does not have) is audited all the same, through `system.refuseCommand`.
 * - **Security**: SignAndEncrypt only by default (Basic256Sha256, Aes128_Sha256_RsaOaep,
 *   Aes256_Sha256_RsaPss); no None endpoint and no anonymous user unless enabled; client
 *   certificates must be trusted in the PKI folder; user identities (user name and password,
 *   X.509, anonymous) are mapped to Kiln principals by the host's `identify`.
 *
 * Nothing runs until {@link OpcuaServer.start}; node-opcua is loaded then.
 *
 * @example
 * const server = new OpcuaServer(system, {
 *   port: 4840,
 *   pki: { dir: "./pki" },
 *   identify: async (identity) =>
 *     identity.type === "username" && (await checkPassword(identity.userName, identity.password))
 *       ? { id: identity.userName, roles: rolesOf(identity.userName) }
 *       : undefined,
 * });
 * await server.start();
 * console.log(server.endpointUrl); // opc.tcp://plant-pc:4840
 * await server.stop();
 * @see docs/northbound/opcua-server.md
 */
export class OpcuaServer {
  readonly #system: ServedSystem;
  readonly #options: ResolvedOpcuaServerOptions;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #namespaceUri: string;
  readonly #principals = new WeakMap<object, Principal>();
  /** Sessions whose context asks {@link OpcuaServer.#canRead} for `Read` of a tag variable. */
  readonly #guardedSessions = new WeakSet<object>();
  readonly #variables = new Map<string, UAVariable>();
  /** Every node of every alarm condition (the condition and all under it) → the alarm's source tag. */
  readonly #conditionNodes = new Map<BaseNode, string>();
  /** Sessions refused because their principal already holds `limits.maxSessionsPerPrincipal` sessions. */
  readonly #tooManySessions = new WeakSet<object>();
  /** Marks, per Method call, whether a Kiln handler took it (and audited it). */
  readonly #callReached = new AsyncLocalStorage<{ reached: boolean }>();
  /**
   * Per scope (a principal, a login address), per kind of refusal: the open coalescing window (see
   * {@link OpcuaServer.#refuseCoalesced}). A window is removed when it ends; at most
   * {@link MAX_REFUSAL_WINDOWS} are open.
   */
  readonly #refusalWindows = new Map<object | string, Map<string, RefusalWindow>>();
  /** The number of windows open in {@link OpcuaServer.#refusalWindows}. */
  #openWindows = 0;
  /** Most windows open at once ({@link MAX_REFUSAL_WINDOWS}; smaller only in tests, see `setRefusalWindowCap`). */
  #maxRefusalWindows = MAX_REFUSAL_WINDOWS;
  static {
    setRefusalWindowCap = (server, cap) => {
      server.#maxRefusalWindows = cap;
    };
  }
  /** Failed logins per remote address and per user name in the current window (see {@link OpcuaServer.#identify}). */
  readonly #loginFailures = new Map<string, { count: number; since: number }>();
  /** The coalescing scope of each remote address's failed logins. */
  readonly #loginScopes = new Map<string, object>();
  /** The refusals of the service call under way (see {@link OpcuaServer.#refuse}). */
  readonly #callRefusals = new AsyncLocalStorage<CallRefusals>();
  /** The HistoryRead service of the running server. */
  #history: HistoryService | undefined;
  #runtime: ServerRuntime | undefined;
  #server: AuthorizingServer | undefined;
  #certificateManagers: OPCUACertificateManager[] = [];
  #statusCodes = new Map<number, StatusCode>();
  #disposers: Disposer[] = [];
  /** Whether the system was running at the last look: its values are current only then. */
  #systemRunning = false;
  /** The alarm conditions being served (while started and the system has alarms). */
  #alarms: ServedAlarms | undefined;
  #watch: TimerHandle | undefined;
  #namespaceIndex = -1;
  #port: number;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;

  /**
   * @param system the control system to serve (its public API: tag catalog, current value
   *   table, checked `writeTag`).
   * @throws KilnValidationError (`KILN_VALIDATION`) naming each bad option (see {@link OpcuaServerOptions}),
   *   and each array tag of the system's catalog (`tags.<name>.arrayLength`: not served yet, ADR 0038).
   * @throws TypeError when `system` is not a control system.
   */
  constructor(system: ServedSystem, options: OpcuaServerOptions) {
    if (
      typeof system !== "object" ||
      system === null ||
      typeof system.writeTag !== "function" ||
      typeof system.cvt?.observeAll !== "function"
    ) {
      throw new TypeError("OpcuaServer expects a ControlSystem (from createControlSystem)");
    }
    // Array tags (ADR 0038) are not served yet (ValueRank 1 variables, history and writes of
    // arrays): said at construction, never as a wrong scalar at run time.
    const arrays = system.tags.list().filter((tag) => tag.arrayLength !== undefined);
    if (arrays.length > 0) {
      throw new KilnValidationError(
        "OPC UA server",
        arrays.map((tag) => ({
          path: `tags.${tag.name}.arrayLength`,
          message: "the OPC UA server does not serve array tags yet (ADR 0038)",
        })),
      );
    }
    this.#system = system;
    this.#options = resolveOpcuaServerOptions(options);
    this.#clock = this.#options.clock ?? new SystemClock();
    this.#logger = this.#options.logger ?? silentLogger;
    this.#namespaceUri = this.#options.namespaceUri ?? `urn:kiln:machine:${encodeURIComponent(system.machineId)}`;
    this.#port = this.#options.port;
  }

  /** True between a successful {@link OpcuaServer.start} and {@link OpcuaServer.stop}. */
  get running(): boolean {
    return this.#server !== undefined;
  }

  /** The namespace URI of the tag variables (`urn:kiln:machine:<machineId>` unless set). */
  get namespaceUri(): string {
    return this.#namespaceUri;
  }

  /**
   * The namespace index of {@link OpcuaServer.namespaceUri} in this server's NamespaceArray.
   * @throws KilnError `KILN_LIFECYCLE` before the first start.
   */
  get namespaceIndex(): number {
    if (this.#namespaceIndex < 0) throw new KilnError("KILN_LIFECYCLE", "The OPC UA server has not been started yet.");
    return this.#namespaceIndex;
  }

  /** The TCP port the server listens on (chosen at the first start when `port` was 0). */
  get port(): number {
    return this.#port;
  }

  /**
   * The endpoint URL clients connect to, e.g. `opc.tcp://plant-pc:4840`; an IPv6 `host` in brackets
   * (`opc.tcp://[::1]:4840`, RFC 3986 §3.2.2), as the endpoints the server advertises (GetEndpoints).
   * @throws KilnError `KILN_LIFECYCLE` before the first start.
   */
  get endpointUrl(): string {
    if (this.#namespaceIndex < 0) throw new KilnError("KILN_LIFECYCLE", "The OPC UA server has not been started yet.");
    return `opc.tcp://${endpointUrlHost(this.#options.host ?? hostname())}:${this.#port}`;
  }

  /**
   * The server's certificate (PEM), for clients to trust: `certificateFile` when given, else the
   * one node-opcua created in `pki.dir/own/certs`.
   */
  get certificateFile(): string {
    return this.#options.certificateFile ?? path.join(this.#options.pki.dir, "own", "certs", "certificate.pem");
  }

  /**
   * The NodeId of a tag's variable, `ns=<index>;s=<tag name>`.
   * @throws KilnError `KILN_TAG_UNKNOWN` for a tag not in the catalog; `KILN_LIFECYCLE` before the first start.
   */
  nodeIdOf(tag: string): string {
    if (!this.#system.tags.has(tag)) {
      throw new KilnError("KILN_TAG_UNKNOWN", `No tag named "${tag}" in the catalog.`, { details: { tag } });
    }
    return `ns=${this.namespaceIndex};s=${tag}`;
  }

  /**
   * Builds the address space and starts listening. Resolves when clients can connect. Idempotent
   * while running.
   * @throws KilnError `KILN_LIFECYCLE` when the server cannot start (port in use, unreadable PKI
   *   or certificate), with the cause.
   */
  start(): Promise<void> {
    if (this.#server) return Promise.resolve();
    this.#starting ??= this.#start().finally(() => (this.#starting = undefined));
    return this.#starting;
  }

  /**
   * Stops observing the current value table, shuts the server down (every session and
   * subscription closed, no timer left) and releases the PKI. Idempotent; a stopped server can
   * be started again. Never rejects.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop().finally(() => (this.#stopping = undefined));
    return this.#stopping;
  }

  /** Same as {@link OpcuaServer.stop}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  async #start(): Promise<void> {
    const runtime = (this.#runtime ??= await loadServerRuntime());
    this.#statusCodes = statusCodeTable(runtime);
    const options = this.#options;
    const serverCertificateManager = new runtime.OPCUACertificateManager({
      rootFolder: options.pki.dir,
      automaticallyAcceptUnknownCertificate: options.pki.acceptUnknownClientCertificates,
    });
    const userCertificateManager = new runtime.OPCUACertificateManager({
      rootFolder: path.join(options.pki.dir, "users"),
      automaticallyAcceptUnknownCertificate: false,
    });
    this.#certificateManagers = [serverCertificateManager, userCertificateManager];
    const modes = options.securityModes.map((mode) => runtime.MessageSecurityMode[mode]);
    const policies: (typeof runtime.SecurityPolicy)[keyof typeof runtime.SecurityPolicy][] =
      options.securityPolicies.map((policy) => runtime.SecurityPolicy[policy]);
    if (options.securityModes.includes("None")) policies.unshift(runtime.SecurityPolicy.None);
    const server = new runtime.AuthorizingServer({
      port: this.#port,
      ...(options.host === undefined ? {} : { host: options.host }),
      // node-opcua writes its endpoints' URLs (GetEndpoints) as opc.tcp://<hostname>:<port>.
      hostname: endpointUrlHost(options.host ?? hostname()),
      nodeset_filename: [runtime.nodesets.standard],
      serverCertificateManager,
      userCertificateManager,
      ...(options.certificateFile === undefined
        ? {}
        : { certificateFile: options.certificateFile, privateKeyFile: options.privateKeyFile }),
      securityModes: modes,
      securityPolicies: policies,
      allowAnonymous: options.allowAnonymous,
      userManager: {
        isValidUserAsync: isValidUserAsyncOf((session, userName, password) =>
          this.#identify(session, { type: "username", userName, password }),
        ),
      },
      buildInfo: { productName: options.productName, manufacturerName: "Kiln" },
      serverInfo: { applicationName: { text: `${options.productName} (${this.#system.machineId})` } },
      isAuditing: false,
      // node-opcua's default (10 secure channels per endpoint) would bound sessions tighter than maxSessions.
      maxConnectionsPerEndpoint: options.limits.maxSessions + options.limits.maxUnactivatedSessions,
      // Without this, node-opcua takes the MaxMessageSize a client's Hello states (16 MB when it
      // states none) as the most it receives: a 10 MB request was read and decoded before any check.
      transportSettings: {
        adjustTransportLimits: (hello) => transportLimitsOf(hello, options.limits),
      },
      serverCapabilities: {
        maxSelectClauseParameters: options.limits.maxEventFilterSelectClauses,
        maxWhereClauseParameters: options.limits.maxEventFilterOperands,
        maxBrowseContinuationPoints: options.limits.maxBrowseContinuationPoints,
        maxSessions: options.limits.maxSessions,
        maxSubscriptions: options.limits.maxSubscriptions,
        maxSubscriptionsPerSession: options.limits.maxSubscriptionsPerSession,
        maxMonitoredItems: options.limits.maxMonitoredItems,
        maxMonitoredItemsPerSubscription: options.limits.maxMonitoredItemsPerSubscription,
        operationLimits: {
          maxMonitoredItemsPerCall: options.limits.maxMonitoredItemsPerCall,
          maxNodesPerRead: options.limits.maxNodesPerCall,
          maxNodesPerWrite: options.limits.maxNodesPerCall,
          maxNodesPerBrowse: options.limits.maxNodesPerCall,
          maxNodesPerTranslateBrowsePathsToNodeIds: options.limits.maxNodesPerCall,
          maxNodesPerMethodCall: options.limits.maxNodesPerCall,
          maxNodesPerRegisterNodes: options.limits.maxNodesPerCall,
        },
      },
    });
    server.maxMonitoredItemsPerSession = options.limits.maxMonitoredItemsPerSession;
    server.maxHistoryReadTimes = options.limits.maxHistoryReadTimes;
    server.maxBrowsePathElements = options.limits.maxBrowsePathElements;
    server.maxBrowsePathElementsPerCall = options.limits.maxBrowsePathElementsPerCall;
    server.maxBrowsePathTargets = options.limits.maxBrowsePathTargets;
    server.maxBrowsePathNodesPerCall = options.limits.maxBrowsePathNodesPerCall;
    server.maxQueueSize = options.limits.maxQueueSize;
    server.maxUnactivatedSessions = options.limits.maxUnactivatedSessions;
    server.unactivatedSessionTimeoutMs = options.limits.unactivatedSessionTimeoutMs;
    server.eventFilterBounds = {
      maxElements: options.limits.maxEventFilterElements,
      maxDepth: options.limits.maxEventFilterDepth,
      maxOperands: options.limits.maxEventFilterOperands,
      maxSelectClauses: options.limits.maxEventFilterSelectClauses,
    };
    server.maxEventFilterCostPerSession = options.limits.maxEventFilterCostPerSession;
    server.maxReferencesPerBrowse = options.limits.maxReferencesPerBrowse;
    server.maxReferencesPerNode = options.limits.maxReferencesPerNode;
    server.minConditionRefreshIntervalMs = options.limits.minConditionRefreshIntervalMs;
    server.onRefusedRefresh = (session, refused) => this.#refuseRefresh(session, refused);
    server.refusalOf = (session) =>
      this.#tooManySessions.has(session) ? runtime.StatusCodes.BadTooManySessions : undefined;
    server.authorizeSession = (session, token) => this.#identify(session, this.#identityOf(runtime, token));
    server.principalKeyOf = (session) => principalKeyOf(this.#principals.get(session));
    server.mayReceiveEvent = (session, event) => this.#mayReceiveEvent(session, event);
    server.hidesNode = (session, node) => this.#diagnosticsAccess(session, node) === "hidden";
    server.onRefusedRequest = (session, refused) => this.#refuseRequest(session, refused);
    server.onHistoryUnsent = (session, points) => this.#history?.releaseUnsent(session, points);
    server.serveCall = (session, call) => this.#serveCall(session, call);
    server.onServiceError = (service, error) =>
      this.#logger.error(
        { service, error: String(error) },
        "a request failed inside node-opcua; answered BadInternalError",
      );
    try {
      await server.initialize();
      const addressSpace = server.engine.addressSpace!;
      const namespace = addressSpace.registerNamespace(this.#namespaceUri);
      deriveChildNodeIds(namespace);
      this.#namespaceIndex = namespace.index;
      const machineFolder: UAObject = namespace.addObject({
        browseName: this.#system.machineId,
        displayName: this.#system.machineId,
        nodeId: "s=@",
        typeDefinition: "FolderType",
        organizedBy: addressSpace.rootFolder.objects,
      });
      const tagsFolder: UAObject = namespace.addObject({
        browseName: "Tags",
        nodeId: `s=${folderIdentifier("")}`,
        typeDefinition: "FolderType",
        organizedBy: machineFolder,
      });
      this.#systemRunning = this.#system.state === "running";
      const variables = addTagVariables(runtime, namespace, tagsFolder, this.#system.tags);
      for (const [name, variable] of variables) {
        const tag = this.#system.tags.get(name);
        this.#variables.set(name, variable);
        this.#interceptWrites(tag, variable);
        this.#userAccessLevelPerSession(tag, variable);
        this.#publish(tag, variable, this.#system.cvt.get(name));
      }
      this.#disposers.push(
        this.#system.cvt.observeAll((change) => {
          const variable = this.#variables.get(change.sample.tag);
          const tag = this.#system.tags.find(change.sample.tag);
          if (variable && tag) this.#publish(tag, variable, change.sample);
        }),
      );
      this.#refuseOtherWrites(server);
      this.#auditRefusedCalls(server);
      this.#serveMachine(runtime, namespace, machineFolder);
      this.#alarms = serveAlarms({
        runtime,
        namespace,
        notifier: machineFolder,
        variables: this.#variables,
        system: this.#system,
        principalOf: (session) => {
          this.#markCallReached();
          return this.#principalOf(session);
        },
        refuse: (principal, request) => this.#refuse(principal, request),
        guardCondition: (condition, tag) => this.#guardCondition(condition, tag),
        can: (principal, permission, target) => this.#can(principal, permission, target),
        qualityOf: (tag) => this.#dataValueOf(this.#system.tags.get(tag), this.#system.cvt.get(tag)).statusCode,
        clock: this.#clock,
        logger: this.#logger,
      });
      server.guardConditionRefresh();
      this.#history = this.#historyService(runtime);
      serveHistory(addressSpace, server.engine as never, this.#system.tags, this.#variables, this.#history);
      server.guardHiddenNodes();
      this.#watchSystem();
      this.#server = server;
      await server.start();
      this.#port = server.endpoints[0]?.port ?? this.#port;
      this.#logger.info({ endpointUrl: this.endpointUrl }, "OPC UA server started");
    } catch (error) {
      this.#server = undefined;
      this.#unwire();
      await server.shutdown(0).catch(() => undefined);
      await this.#disposeCertificateManagers();
      throw new KilnError("KILN_LIFECYCLE", `The OPC UA server could not start: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }

  async #stop(): Promise<void> {
    await this.#starting?.catch(() => undefined);
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    this.#unwire();
    try {
      await server.shutdown(0);
      server.dispose();
    } catch (error) {
      this.#logger.error({ error: String(error) }, "OPC UA server shutdown failed");
    }
    await this.#disposeCertificateManagers();
    this.#logger.info({}, "OPC UA server stopped");
  }

  #unwire(): void {
    for (const dispose of this.#disposers.splice(0)) dispose();
    this.#alarms?.dispose();
    this.#alarms = undefined;
    this.#history = undefined;
    for (const windows of [...this.#refusalWindows.values()]) {
      for (const window of [...windows.values()]) this.#endWindow(window);
    }
    if (this.#watch) this.#clock.clearTimeout(this.#watch);
    this.#watch = undefined;
    this.#variables.clear();
    this.#conditionNodes.clear();
  }

  /**
   * Looks at the system's lifecycle every {@link SYSTEM_WATCH_MS}: while it is not running its
   * current value table is frozen (nothing is acquired, nothing goes stale), so every good value
   * is served `UncertainNoCommunicationLastUsableValue` until it runs again. (The event bus
   * announces no start or stop.)
   */
  #watchSystem(): void {
    this.#watch = this.#clock.setTimeout(() => {
      const running = this.#system.state === "running";
      if (running !== this.#systemRunning) {
        this.#systemRunning = running;
        this.#logger.info({ running }, "control system state changed; republishing every value");
        for (const [name, variable] of this.#variables) {
          this.#publish(this.#system.tags.get(name), variable, this.#system.cvt.get(name));
        }
      }
      if (this.#server) this.#watchSystem();
    }, SYSTEM_WATCH_MS);
  }

  /** HistoryRead of the tag variables from `system.history`, for principals with `read` on the tag (see opcua-history.ts). */
  #historyService(runtime: ServerRuntime): HistoryService {
    return new HistoryService(runtime, {
      history: this.#system.history,
      principalOf: (context) => this.#principalOf(context?.session),
      canRead: (principal, tag) => this.#canRead(principal, tag),
      variantOf: (tag, value) => variantOf(runtime, tag, value),
      reportError: (error, tag) => this.#logger.error({ tag, error: String(error) }, "OPC UA HistoryRead failed"),
      aggregateNameOf,
    });
  }

  /** The machine object: its state and process as variables (from the event bus), its commands as Methods. */
  #serveMachine(runtime: ServerRuntime, namespace: Namespace, parent: UAObject): void {
    const system = this.#system;
    const methods: MachineMethods = {
      StartRecipe: (inputs, context) =>
        this.#command(
          context,
          "StartRecipe",
          MACHINE_METHOD_PERMISSIONS.StartRecipe,
          async (principal) => {
            const [name, version] = inputs;
            if (typeof name !== "string" || typeof version !== "number") {
              const statusCode = await this.#refuse(principal, {
                permission: "recipe.start",
                target: typeof name === "string" ? name : "(no recipe name)",
                reason: new KilnValidationError("OPC UA StartRecipe", [
                  {
                    path: "inputArguments",
                    message: "StartRecipe takes a recipe name (String) and a version (UInt32)",
                  },
                ]),
                statusCode: ServerStatusCodes.BadInvalidArgument,
              });
              return { statusCode };
            }
            // Authorized and audited before Kiln looks the recipe up: a caller without rights cannot probe which exist.
            const process = await system.startSavedRecipe(principal, name, version);
            return { statusCode: QualityCodes.Good, outputs: [process.id] };
          },
          typeof inputs[0] === "string" ? inputs[0] : undefined,
        ),
      Pause: (_inputs, context) =>
        this.#command(context, "Pause", MACHINE_METHOD_PERMISSIONS.Pause, (principal) =>
          this.#settled(system.pauseProcess(principal)),
        ),
      Resume: (_inputs, context) =>
        this.#command(context, "Resume", MACHINE_METHOD_PERMISSIONS.Resume, (principal) =>
          this.#settled(system.resumeProcess(principal)),
        ),
      Abort: (inputs, context) =>
        this.#command(context, "Abort", MACHINE_METHOD_PERMISSIONS.Abort, (principal) => {
          const reason = inputs[0];
          return this.#settled(
            system.abortProcess(principal, typeof reason === "string" && reason !== "" ? reason : undefined),
          );
        }),
      SendCommand: (inputs, context) =>
        this.#command(context, "SendCommand", MACHINE_METHOD_PERMISSIONS.SendCommand, async (principal) => {
          const state = await system.sendMachineCommand(principal, inputs[0] as string);
          return { statusCode: QualityCodes.Good, outputs: [state] };
        }),
    };
    const set = addMachineNodes(runtime, namespace, parent, methods, (name, context) =>
      this.#can(this.#principalOf(context?.session), MACHINE_METHOD_PERMISSIONS[name], system.machineId),
    );
    const apply = (values: Partial<Record<MachineVariable, string>>): void => {
      for (const [name, value] of Object.entries(values)) set(name as MachineVariable, value);
    };
    apply({ State: system.machineState });
    this.#disposers.push(
      system.bus.on("machine-state-change", (event) => apply({ State: event.to })),
      system.bus.on("process-start", (event) =>
        apply({
          ProcessId: event.processId,
          Recipe: `${event.recipe.name} v${event.recipe.version}`,
          ProcessStatus: "running",
        }),
      ),
      system.bus.on("process-pause", () => apply({ ProcessStatus: "paused" })),
      system.bus.on("process-resume", () => apply({ ProcessStatus: "running" })),
      system.bus.on("process-end", (event) => apply({ ProcessId: "", Recipe: "", ProcessStatus: event.reason })),
    );
  }

  /**
   * `Good` once `command` has done, or `GoodCompletesAsynchronously` when it is still running
   * after {@link METHOD_ANSWER_MS} (a pause is taken at the process's next step boundary, an abort
   * waits for the safe state): the refusals Kiln makes (authorization, state) come at once, and
   * the machine variables show when it is done. A failure after the answer is logged.
   */
  async #settled(command: Promise<unknown>): Promise<{ readonly statusCode: number }> {
    const timer = new AbortController();
    const later = this.#clock.sleep(METHOD_ANSWER_MS, timer.signal).then(
      () => "later" as const,
      () => "later" as const,
    );
    try {
      const outcome = await Promise.race([command.then(() => "done" as const), later]);
      if (outcome === "done") return { statusCode: QualityCodes.Good };
      command.catch((error: unknown) =>
        this.#logger.warn({ error: String(error) }, "OPC UA method failed after its answer"),
      );
      return { statusCode: ServerStatusCodes.GoodCompletesAsynchronously };
    } finally {
      timer.abort();
    }
  }

  /**
   * Runs a Method's command for the session's principal; a refusal answers the StatusCode of its
   * error. A machine Method called on any object but the machine object (e.g. Pause with the
   * Server object as ObjectId) runs nothing: `BadMethodInvalid` (OPC UA Part 4, 5.11.2), audited
   * through `system.refuseCommand` (authorized first: `BadUserAccessDenied` without `permission`).
   */
  async #command(
    context: ISessionContext,
    name: string,
    permission: string,
    run: (principal: Principal) => Promise<{ readonly statusCode: number; readonly outputs?: readonly unknown[] }>,
    target: string = this.#system.machineId,
  ): Promise<{ readonly statusCode: number; readonly outputs?: readonly unknown[] }> {
    this.#markCallReached();
    const principal = this.#principalOf(context?.session);
    const object = (context as { object?: { nodeId: { namespace: number; value: unknown; toString(): string } } })
      ?.object;
    if (object?.nodeId.namespace !== this.#namespaceIndex || object.nodeId.value !== machineIdentifier()) {
      const target = object?.nodeId.toString() ?? "(no object)";
      const statusCode = await this.#refuse(principal, {
        permission,
        action: `opcua.${name}`,
        target,
        reason: new KilnValidationError(`OPC UA ${name}`, [
          { path: "objectId", message: `${name} is a Method of the machine object, not of ${target}` },
        ]),
        statusCode: ServerStatusCodes.BadMethodInvalid,
      });
      return { statusCode };
    }
    if (!this.#can(principal, permission, target)) {
      // Refused as the command would refuse it (the Method's UserExecutable says the same), but
      // through the server's refusal path: a client calling it in a loop leaves one entry per 10 s.
      const statusCode = await this.#refuse(principal, {
        permission,
        target,
        reason: new KilnError("KILN_FORBIDDEN", `Not allowed to call ${name} (${permission}).`),
        statusCode: ServerStatusCodes.BadUserAccessDenied,
      });
      return { statusCode };
    }
    try {
      return await run(principal);
    } catch (error) {
      this.#logger.info(
        { principal: principal.id, error: KilnError.is(error) ? error.code : String(error) },
        "OPC UA method call refused",
      );
      return { statusCode: statusCodeOfError(error) };
    }
  }

  async #disposeCertificateManagers(): Promise<void> {
    await Promise.all(this.#certificateManagers.map((manager) => manager.dispose().catch(() => undefined)));
    this.#certificateManagers = [];
  }

  /**
   * Asks the host's `identify` for the session's principal; true (and remembered) when it gives
   * one. A refused identity is a failed login: counted per remote address and per (remote address,
   * user name); after `limits.maxFailedLogins` failures of one user name from one address (or of
   * certificate or anonymous logins from one address), or {@link ADDRESS_LOGIN_FACTOR} times as
   * many password failures of one address across user names, within `limits.failedLoginWindowMs`,
   * `identify` is not asked until the window ends (the activation is refused, `BadUserAccessDenied`
   * for a password). One user's wrong passwords lock out neither the other users behind the same
   * address nor that user from elsewhere. An attempt counts from before `identify` is
   * asked until it succeeds, so attempts in flight count too (an `identify` that throws counts as
   * a failure). Failed and throttled logins are audited
   * (action `opcua.ActivateSession`), coalesced per remote address.
   */
  async #identify(session: ServerSession, identity: OpcuaUserIdentity | undefined): Promise<boolean> {
    this.#tooManySessions.delete(session);
    if (identity === undefined) return false;
    const info = sessionInfoOf(this.#runtime!, session);
    const address = session.channel?.remoteAddress ?? "unknown";
    const userName = identity.type === "username" ? identity.userName : undefined;
    const limit = this.#options.limits.maxFailedLogins;
    // A user name's failures lock out that name from that address; the address alone, for
    // guesses across names, only at ADDRESS_LOGIN_FACTOR times as many (clients behind one NAT).
    const limits = new Map(
      userName === undefined
        ? [[`address ${address}`, limit]]
        : [
            [`address ${address}`, limit * ADDRESS_LOGIN_FACTOR],
            [`user ${address} ${userName}`, limit],
          ],
    );
    const keys = [...limits.keys()];
    if (keys.some((key) => this.#loginThrottled(key, limits.get(key)!))) {
      await this.#refuseLogin(
        info,
        address,
        "throttled",
        userName,
        `throttled: too many failed logins for this user name from this address (${limit} within ${this.#options.limits.failedLoginWindowMs} ms) or from this address (${userName === undefined ? limit : limit * ADDRESS_LOGIN_FACTOR}); identify not asked`,
      );
      return false;
    }
    // Each attempt is counted as failed before `identify` is awaited (and the count given back
    // when it succeeds): attempts in flight count against the limit, so concurrent logins cannot
    // all pass the check above before any of them has failed.
    const reserved = keys.map((key) => this.#countFailedLogin(key));
    if (reserved.some((failures) => failures === undefined)) {
      // The table of failed logins is full of pairs still in their window: an attempt it cannot count
      // could be repeated without limit (adv20 F1: 480 source addresses filled it, then one user's
      // password was guessed 60 times). Fail closed: refused without asking identify, until entries expire.
      giveBack(reserved);
      this.#logger.error(
        { tracked: this.#loginFailures.size, windowMs: this.#options.limits.failedLoginWindowMs },
        "OPC UA login refused: the failed-login table is full (many failing clients); logins not yet tracked are refused until entries expire",
      );
      await this.#refuseLogin(
        info,
        address,
        "throttled",
        userName,
        `throttled: the failed-login table is full (${this.#options.limits.maxTrackedLogins} address and user name pairs failed within ${this.#options.limits.failedLoginWindowMs} ms); logins it cannot count are refused until entries expire; identify not asked`,
      );
      return false;
    }
    try {
      const principal = await this.#options.identify(identity, info);
      if (principal === undefined || principal === null) {
        await this.#refuseLogin(
          info,
          address,
          "refused",
          userName,
          `${identity.type} identity refused by identify (wrong password, unknown user or certificate)`,
        );
        return false;
      }
      giveBack(reserved);
      // Every session of the principal counts, those whose secure channel is gone too (they hold one of
      // the server's maxSessions slots until node-opcua times them out, up to 50 min: uncounted, one user
      // crashing sessions filled every slot, adv20b). At the limit, the principal's own sessions whose
      // channel is gone (a crashed or power-cycled panel) are closed, oldest first, to make room: before,
      // counted and kept, they locked their user out meanwhile (adv20 F2). Live sessions are never closed.
      const { held, closed } = this.#server ? this.#makeRoomFor(session, principal.id) : { held: 0, closed: 0 };
      if (held >= this.#options.limits.maxSessionsPerPrincipal) {
        this.#tooManySessions.add(session);
        this.#logger.warn(
          { principal: principal.id, session: info.sessionId, held, closed },
          "OPC UA session refused: too many sessions for this principal",
        );
        await this.#refuseSessionLimit(info, principal, held, closed);
        return false;
      }
      const before = principalKeyOf(this.#principals.get(session));
      this.#principals.set(session, { id: principal.id, roles: principal.roles, source: sourceOf(info) });
      this.#guardReads(session);
      // ActivateSession with another identity: nothing queued or sent for the former principal
      // may reach the new one (Republish, pending Publish); node-opcua resends current values.
      if (before !== undefined && before !== principalKeyOf(this.#principals.get(session))) {
        this.#server?.dropUndelivered(session);
      }
      return true;
    } catch (error) {
      this.#logger.warn({ error: String(error), session: info.sessionId }, "identify failed; session refused");
      return false;
    }
  }

  /**
   * The sessions `principalId` holds besides `session`, after closing (oldest first) as many of its
   * sessions whose secure channel is gone as it takes to bring them under `limits.maxSessionsPerPrincipal`
   * (their subscriptions deleted; a client that comes back gets BadSessionIdInvalid and opens a new one).
   */
  #makeRoomFor(session: ServerSession, principalId: string): { held: number; closed: number } {
    const engine = this.#server!.engine;
    const own = engine
      .getSessions()
      .filter((other) => other !== session && this.#principals.get(other)?.id === principalId);
    let held = own.length;
    for (const other of own) {
      if (held < this.#options.limits.maxSessionsPerPrincipal) break;
      if (!(other as { aborted?: boolean }).aborted) continue;
      try {
        engine.closeSession(other.authenticationToken, true, "Forcing");
        held -= 1;
        this.#logger.info(
          { principal: principalId, session: other.nodeId?.toString() },
          "OPC UA session closed to make room: its secure channel was gone",
        );
      } catch (error) {
        this.#logger.warn({ error: String(error) }, "an OPC UA session whose channel was gone could not be closed");
      }
    }
    return { held, closed: own.length - held };
  }

  /**
   * Audits a session refused at `limits.maxSessionsPerPrincipal` under the principal refused:
   * `identify` authenticated it (that is why its sessions are counted), so the entry names it, its
   * roles and the client's address (source), never `unauthenticated`; the reason names the limit,
   * the live sessions it holds, and how many of its sessions whose channel was gone were closed
   * first (only when some were). Coalesced per principal like its other refusals (the first at
   * once, the rest of the window in one counted summary), so no summary counts one principal's
   * refusals under another's name.
   */
  async #refuseSessionLimit(info: OpcuaSessionInfo, principal: Principal, held: number, closed: number): Promise<void> {
    const limit = this.#options.limits.maxSessionsPerPrincipal;
    const refused: Principal = {
      id: auditablePrincipalId(principal.id),
      roles: principal.roles,
      source: sourceOf(info),
    };
    const made = closed === 0 ? "" : `; ${closed} of its sessions whose channel was gone were closed first`;
    await this.#refuseCoalesced(
      principalScopeOf(refused),
      "login:limited",
      {
        permission: "read",
        action: "opcua.ActivateSession",
        target: this.#system.machineId,
        reason: new KilnValidationError("OPC UA ActivateSession", [
          {
            path: "limits.maxSessionsPerPrincipal",
            message: `"${principal.id.slice(0, 64)}" already holds ${held} live sessions, the most limits.maxSessionsPerPrincipal (${limit}) allows${made}`,
          },
        ]),
        statusCode: ServerStatusCodes.BadTooManySessions,
        count: 1,
        names: [],
        // Kept in the entry even when the principal lacks `read` on the machine (then the reason is
        // KILN_FORBIDDEN, the runner authorizing first): the limit and the count are never lost.
        detail: `session limit: ${held} live sessions held, limits.maxSessionsPerPrincipal ${limit}`,
      },
      refused,
      1,
    );
  }

  /** Whether logins of `key` (an address, or an address and user name) are refused for now: `limit` failures in the window. */
  #loginThrottled(key: string, limit: number): boolean {
    const failures = this.#loginFailures.get(key);
    if (!failures) return false;
    if (this.#clock.now() - failures.since >= this.#options.limits.failedLoginWindowMs) {
      this.#loginFailures.delete(key);
      return false;
    }
    return failures.count >= limit;
  }

  /** Counts a failed login of `key`; the window's entry it was counted in (none when untracked: the table is full). */
  #countFailedLogin(key: string): { count: number; since: number } | undefined {
    const now = this.#clock.now();
    const window = this.#options.limits.failedLoginWindowMs;
    if (this.#loginFailures.size >= this.#options.limits.maxTrackedLogins) {
      for (const [other, failures] of this.#loginFailures) {
        if (now - failures.since >= window) this.#loginFailures.delete(other);
      }
    }
    const failures = this.#loginFailures.get(key);
    if (failures && now - failures.since < window) {
      failures.count += 1;
      return failures;
    }
    if (this.#loginFailures.size >= this.#options.limits.maxTrackedLogins) return undefined;
    const counted = { count: 1, since: now };
    this.#loginFailures.set(key, counted);
    return counted;
  }

  /**
   * Audits a failed or throttled login ({@link OpcuaServer.#refuseCoalesced}, per remote address
   * and per kind: `refused` by `identify`, `throttled`): principal `unauthenticated` (no identity
   * was established; a session refused at `limits.maxSessionsPerPrincipal` is audited under its
   * principal instead, {@link OpcuaServer.#refuseSessionLimit}), the client
   * and address in its source, the user name (never the password) and the reason in the entry's
   * reason, and the user names of the coalesced ones in its summary.
   */
  async #refuseLogin(
    info: OpcuaSessionInfo,
    address: string,
    kind: "refused" | "throttled",
    userName: string | undefined,
    detail: string,
  ): Promise<void> {
    let scope = this.#loginScopes.get(address);
    if (!scope) {
      if (this.#loginScopes.size >= MAX_LOGIN_SCOPES) this.#loginScopes.clear();
      this.#loginScopes.set(address, (scope = {}));
    }
    const who = userName === undefined ? "" : `user "${userName.slice(0, 64)}"`;
    await this.#refuseCoalesced(
      scope,
      `login:${kind}`,
      {
        permission: "read",
        action: "opcua.ActivateSession",
        target: this.#system.machineId,
        reason: new KilnValidationError("OPC UA ActivateSession", [{ path: "userIdentityToken", message: detail }]),
        statusCode: ServerStatusCodes.BadUserAccessDenied,
        count: 1,
        names: who === "" ? [] : [who],
        detail: `login ${kind}${who === "" ? "" : ` for ${who}`}: ${detail}`,
      },
      { id: "unauthenticated", roles: [], source: sourceOf(info) },
      1,
    );
  }

  /** `system.can`, false for a principal it cannot judge. */
  #can(principal: Principal, permission: string, target?: string): boolean {
    try {
      return this.#system.can(principal, permission, target);
    } catch {
      return false;
    }
  }

  /**
   * Makes a tag variable's UserAccessLevel what the reading session's principal may do: no
   * CurrentWrite without `tag.write` on the tag, no CurrentRead or HistoryRead without `read`.
   * Only the attribute is computed so: a Write is still judged (and audited) by Kiln's checked path.
   */
  #userAccessLevelPerSession(tag: Tag, variable: UAVariable): void {
    const internal = variable as unknown as { _readUserAccessLevel(context: ISessionContext): DataValue };
    const read = internal._readUserAccessLevel.bind(variable);
    Object.defineProperty(variable, "_readUserAccessLevel", {
      configurable: true,
      value: (context: ISessionContext) => {
        const dataValue = read(context);
        const principal = this.#principalOf(context?.session);
        let level = Number(dataValue.value.value);
        if (!this.#can(principal, "tag.write", tag.name)) level &= ~CURRENT_WRITE;
        if (!this.#canRead(principal, tag.name)) level &= ~(CURRENT_READ | HISTORY_READ);
        dataValue.value.value = level;
        return dataValue;
      },
    });
  }

  /**
   * Whether a principal may read a tag (`read`): the one decision behind Read, monitored items and
   * HistoryRead of tag values. The `authorizer` option when given, else the system's role table.
   */
  #canRead(principal: Principal, tag: string): boolean {
    try {
      const authorizer = this.#options.authorizer;
      return authorizer ? authorizer.can(principal, "read", tag) : this.#system.can(principal, "read", tag);
    } catch {
      return false; // a principal the authorizer cannot judge reads nothing
    }
  }

  /**
   * Makes the session's context (which node-opcua asks on every Read of a Value and on every
   * sample and creation of a monitored item, see `AuthorizingServer`) grant `Read` of a tag
   * variable only when {@link OpcuaServer.#canRead} says so; a refusal reads `BadUserAccessDenied`.
   * And `Read` and `Browse` of the server's diagnostics only as {@link OpcuaServer.#mayDiagnose}
   * says: other sessions' diagnostics are refused `BadUserAccessDenied` and left out of Browse.
   */
  #guardReads(session: ServerSession): void {
    const context = session.sessionContext;
    if (this.#guardedSessions.has(context)) return;
    this.#guardedSessions.add(context);
    const permits = context.checkPermission.bind(context);
    const { Read: read, Browse: browse } = this.#runtime!.PermissionType;
    context.checkPermission = (node, permission) => {
      if (!permits(node, permission)) return false;
      if ((permission & (read | browse)) === 0) return true;
      if (!this.#mayDiagnose(session, node)) return false;
      if ((permission & read) === 0) return true;
      const tag = this.#guardingTagOf(node);
      return tag === undefined || this.#canRead(this.#principalOf(session), tag);
    };
  }

  /**
   * Whether `session` may read and browse `node` as far as the server's diagnostics go (issue 20,
   * adv F4): any node that is not a diagnostics node; ServerDiagnostics and
   * SessionsDiagnosticsSummary themselves and EnabledFlag; its own session's diagnostics object and
   * all under it; anything else under ServerDiagnostics (summaries, the arrays of every session and
   * subscription, other sessions' objects) only with {@link OPCUA_DIAGNOSTICS_PERMISSION} on the
   * machine, asked of the system's role table at each check (a principal changed by
   * ActivateSession is judged as it is now).
   */
  #mayDiagnose(session: ServerSession, node: BaseNode): boolean {
    return this.#diagnosticsAccess(session, node) === "allowed";
  }

  /** {@link diagnosticsAccessOf} for `session` (its principal's permission asked of the system now). */
  #diagnosticsAccess(session: ServerSession, node: BaseNode): DiagnosticsAccess {
    if (node.nodeId.namespace === this.#namespaceIndex) return "allowed"; // Kiln's own nodes
    return diagnosticsAccessOf(node, session.nodeId.toString(), () =>
      this.#can(this.#principalOf(session), OPCUA_DIAGNOSTICS_PERMISSION, this.#system.machineId),
    );
  }

  /** The tag whose `read` guards a node: a tag variable's own tag, an alarm condition node's source tag, else none. */
  #guardingTagOf(node: BaseNode): string | undefined {
    const name = node.nodeId.namespace === this.#namespaceIndex ? node.nodeId.value : undefined;
    if (typeof name === "string" && this.#variables.get(name) === node) return name;
    return this.#conditionNodes.get(node);
  }

  /**
   * Makes an alarm condition's nodes (the condition and every node under it: ActiveState and its
   * Id, LimitState, Quality, Message, the limits…) readable only by principals that may read the
   * alarm's source tag: they mirror the tag's value (ADR 0036, condition addendum).
   */
  #guardCondition(condition: BaseNode, tag: string): void {
    const pending: BaseNode[] = [condition];
    for (let node = pending.pop(); node !== undefined; node = pending.pop()) {
      if (this.#conditionNodes.has(node)) continue;
      this.#conditionNodes.set(node, tag);
      pending.push(...node.getAggregates());
    }
  }

  /**
   * Whether a session may be sent an event: not one about an alarm condition or a tag (its
   * source a condition, or its SourceNode a tag variable or a condition's node) whose tag its
   * principal may not read. Other events go to all.
   */
  #mayReceiveEvent(session: ServerSession, event: ServedEvent): boolean {
    let tag = this.#conditionNodes.get(event.getEventDataSource());
    const sourceNode = event.sourceNode?.value;
    if (tag === undefined && sourceNode !== undefined && sourceNode !== null) {
      let node: BaseNode | null | undefined;
      try {
        node = this.#server?.engine.addressSpace?.findNode(sourceNode as Parameters<AddressSpaceFind>[0]);
      } catch {
        node = undefined; // not a NodeId: no node of Kiln's
      }
      tag = node ? this.#guardingTagOf(node) : undefined;
    }
    return tag === undefined || this.#canRead(this.#principalOf(session), tag);
  }

  /**
   * Audits a request node-opcua refused whole (`BadTooManyOperations`: more operations than the
   * per-call bound) through {@link OpcuaServer.#refuseCoalesced}, counting its operations
   * (`read`, or `tag.write` for a Write; action `opcua.<Service>`, target the machine: a principal
   * without the permission there is recorded `denied` as forbidden, the count in the reason all
   * the same). The answer stays `BadTooManyOperations` for every principal: the request is
   * refused for its size, whoever sent it.
   */
  async #refuseRequest(session: ServerSession, refused: RefusedRequest): Promise<StatusCode> {
    const principal = this.#principalOf(session);
    await this.#refuseCoalesced(
      principalScopeOf(principal),
      `${refused.service}:${refused.statusCode.name}`,
      {
        permission: refused.service === "Write" ? "tag.write" : "read",
        action: `opcua.${refused.service}`,
        target: this.#system.machineId,
        reason: new KilnValidationError(`OPC UA ${refused.service}`, [
          {
            path: "request",
            message: `more operations in one call than the server's limit per call (${refused.statusCode.name})`,
          },
        ]),
        statusCode: refused.statusCode.value,
        count: refused.operations,
        names: [],
        detail: `1 request of ${refused.operations} operations refused whole`,
      },
      principal,
      1,
    );
    return refused.statusCode;
  }

  /** Audits a refused ConditionRefresh(2) through {@link OpcuaServer.#refuse} (one entry per call and kind, coalesced per session). */
  async #refuseRefresh(session: ServerSession, refused: RefusedRefresh): Promise<StatusCode> {
    const code = await this.#refuse(this.#principalOf(session), {
      permission: "read",
      action: `opcua.${refused.method}`,
      target: this.#system.machineId,
      reason: new KilnValidationError(`OPC UA ${refused.method}`, [
        { path: "inputArguments", message: `${refused.detail} (${refused.statusCode.name})` },
      ]),
      statusCode: refused.statusCode.value,
      kind: refused.statusCode.name,
    });
    return code === refused.statusCode.value ? refused.statusCode : this.#statusCode(code);
  }

  /**
   * Runs one service call of a session with a place for the refusals its operations make
   * ({@link OpcuaServer.#refuse}); `settle` audits them (one entry per kind, through
   * {@link OpcuaServer.#refuseCoalesced}) before the call's response is sent.
   */
  #serveCall(
    session: ServerSession,
    call: (settle: () => Promise<void>) => void | Promise<void>,
  ): void | Promise<void> {
    const refusals: CallRefusals = { session, kinds: new Map() };
    return this.#callRefusals.run(refusals, () => call(() => this.#settleCall(refusals)));
  }

  async #settleCall(refusals: CallRefusals): Promise<void> {
    const kinds = [...refusals.kinds.values()];
    refusals.kinds.clear();
    await Promise.all(
      kinds.map((kind) => {
        const targets = [...new Set(kind.targets)].sort();
        const named = targets.slice(0, NAMED_IN_ENTRY);
        const request: CoalescedRefusal = {
          ...kind.request,
          target: targets.length === 1 ? kind.request.target : this.#system.machineId,
          count: kind.count,
          names: named,
          targets,
          detail: kind.count === 1 ? "" : `${kind.count} refused in one call${namesOf(named, targets.length)}`,
        };
        // The first refusal of a kind has its own entry, as a refused command of the API has; the
        // refusals of that kind by the same principal within the window, whatever their targets and
        // from whichever of its sessions, are counted in the window's summary: a loop of refused
        // calls cannot flood the trail (and push an operator's entries out of a bounded store) by
        // rotating what it targets.
        return this.#refuseCoalesced(
          principalScopeOf(kind.principal),
          kind.windowKey,
          request,
          kind.principal,
          apartOf(kind.request),
        );
      }),
    );
  }

  /**
   * The server's one way to refuse and audit: a refusal is gathered with those of the same kind
   * (action, permission, StatusCode, reason) in the service call it belongs to, answered at once
   * (`statusCode`, or `BadUserAccessDenied` for a principal without `permission` on `target`, the
   * code `system.refuseCommand` would give), and audited when the call settles, one entry per
   * kind naming the count and the first targets ({@link OpcuaServer.#settleCall}). An entry
   * standing for more than one operation, or of a kind clients repeat in loops (`kind` given:
   * ConditionRefresh), goes through the session's coalescing windows
   * ({@link OpcuaServer.#refuseCoalesced}, keyed by the kind and the set of targets: the same
   * refused call repeated is coalesced); a single refused operation has its own entry, as a
   * refused command of the API has. A Write of 1,000 tags a viewer may not write leaves one entry
   * counting 1,000, not 1,000 entries. Outside a service call, the refusal is audited on its own.
   */
  async #refuse(principal: Principal, request: RefusalRequest): Promise<number> {
    const refusals = this.#callRefusals.getStore();
    if (!refusals) {
      const single = { ...request, count: 1, names: [], detail: "" };
      return this.#refuseCoalesced(
        principalScopeOf(principal),
        windowKeyOf(request),
        single,
        principal,
        apartOf(request),
      );
    }
    const key = JSON.stringify([
      principalKeyOf(principal),
      request.action ?? request.permission,
      request.permission,
      request.statusCode,
      // Refusals that differ only in the target they name are of one kind.
      request.kind ?? [request.reason.code, request.reason.message.split(request.target).join("<target>")],
    ]);
    let kind = refusals.kinds.get(key);
    if (!kind) {
      refusals.kinds.set(
        key,
        (kind = { key, windowKey: windowKeyOf(request), request, principal, count: 0, targets: [] }),
      );
    }
    kind.count += 1;
    if (kind.targets.length < MAX_TARGETS_KEYED) kind.targets.push(request.target);
    return this.#can(principal, request.permission, request.target)
      ? request.statusCode
      : ServerStatusCodes.BadUserAccessDenied;
  }

  /**
   * Audits a refusal ({@link OpcuaServer.#refuseNow}), coalesced: the first refusal of a kind
   * (`key`: what is refused, never which target) in a scope (a principal, a remote address) is
   * audited at once and opens a window of {@link REFUSAL_AUDIT_WINDOW_MS}; the refusals of that
   * kind in the window have an entry of their own up to `apart` in all (default
   * {@link REFUSALS_AUDITED_APART}; 1 for logins and whole-request refusals), the others are
   * answered the same StatusCode without an entry each, and audited as one summary entry when the
   * window ends (or the server stops): the number of operations and calls they stood for, the
   * number of distinct targets, the first names, the first and last time. Every entry's reason
   * carries its count (`comment` of `system.refuseCommand`, kept even when the principal is refused
   * as forbidden): nothing refused goes uncounted, and a scope cannot leave more than `apart` + 1
   * entries per kind per window whatever it targets. A window is removed when it
   * ends; with {@link MAX_REFUSAL_WINDOWS} open, a new scope's refusals share one overflow scope.
   */
  async #refuseCoalesced(
    scope: object | string,
    key: string,
    request: CoalescedRefusal,
    principal: Principal,
    apart: number = REFUSALS_AUDITED_APART,
  ): Promise<number> {
    let windows = this.#refusalWindows.get(scope);
    if (!windows && this.#openWindows >= this.#maxRefusalWindows)
      windows = this.#refusalWindows.get((scope = OVERFLOW_SCOPE));
    const now = this.#clock.now();
    const open = windows?.get(key);
    if (open && open.apart < apart) {
      open.apart += 1;
      return this.#refuseNow(principal, request, request.detail);
    }
    const who = refuserOf(principal);
    if (open && scope === OVERFLOW_SCOPE && who !== refuserOf(open.principal)) {
      // A window shared by several principals (the overflow scope) keeps each one's count apart:
      // its first refusal here is audited at once under it, the rest in a summary of its own.
      const tally = open.others.get(who);
      if (tally) {
        tally.suppressed += request.count;
        tally.calls += 1;
        tally.last = now;
        return tally.answer;
      }
      if (open.others.size >= DISTINCT_TARGETS_COUNTED) return this.#refuseNow(principal, request, request.detail);
      const counted: RefusalTally = { principal, suppressed: 0, calls: 0, first: now, last: now, answer: 0 };
      open.others.set(who, counted);
      counted.answer = await this.#refuseNow(principal, request, request.detail);
      return counted.answer;
    }
    if (open) {
      open.suppressed += request.count;
      open.calls += 1;
      open.last = now;
      for (const name of request.names) if (open.names.size < NAMED_IN_ENTRY) open.names.add(name);
      for (const target of request.targets ?? [request.target]) {
        if (open.targets.size >= DISTINCT_TARGETS_COUNTED) break;
        open.targets.add(target);
      }
      return open.answer;
    }
    if (!windows) this.#refusalWindows.set(scope, (windows = new Map()));
    const window: RefusalWindow = {
      scope,
      key,
      first: now,
      last: now,
      apart: 1,
      suppressed: 0,
      calls: 0,
      names: new Set(),
      targets: new Set(),
      others: new Map(),
      answer: request.statusCode,
      principal,
      request,
      timer: undefined,
    };
    windows.set(key, window);
    this.#openWindows += 1;
    window.timer = this.#clock.setTimeout(() => this.#endWindow(window), REFUSAL_AUDIT_WINDOW_MS);
    window.answer = await this.#refuseNow(principal, request, request.detail);
    return window.answer;
  }

  /** Ends a coalescing window: removes it, and audits the one summary entry of its suppressed refusals (if any). */
  #endWindow(window: RefusalWindow): void {
    const windows = this.#refusalWindows.get(window.scope);
    if (windows?.get(window.key) !== window) return;
    windows.delete(window.key);
    if (windows.size === 0) this.#refusalWindows.delete(window.scope);
    this.#openWindows -= 1;
    if (window.timer) this.#clock.clearTimeout(window.timer);
    const within = (calls: number, first: number, last: number) =>
      `in ${calls} more ${calls === 1 ? "call" : "calls"} within ${REFUSAL_AUDIT_WINDOW_MS} ms, coalesced (from ${new Date(first).toISOString()} to ${new Date(last).toISOString()})`;
    for (const tally of window.others.values()) {
      if (tally.calls === 0) continue;
      void this.#refuseNow(
        tally.principal,
        window.request,
        `${tally.suppressed} more refused of the same kind ${within(tally.calls, tally.first, tally.last)}`,
      );
    }
    if (window.calls === 0) return;
    const names = [...window.names];
    const distinct = `${window.targets.size >= DISTINCT_TARGETS_COUNTED ? "at least " : ""}${window.targets.size}`;
    void this.#refuseNow(
      window.principal,
      window.request,
      `${window.suppressed} more refused of the same kind in ${window.calls} more ${window.calls === 1 ? "call" : "calls"} within ${REFUSAL_AUDIT_WINDOW_MS} ms, coalesced (${distinct} distinct ${window.targets.size === 1 ? "target" : "targets"}, from ${new Date(window.first).toISOString()} to ${new Date(window.last).toISOString()})${namesOf(names, names.length)}`,
    );
  }

  /**
   * Audits a request refused before it became a Kiln command (`system.refuseCommand`, with
   * `comment`) and answers its StatusCode: `statusCode` for `reason`, else the code of the error
   * Kiln refused it with (`BadUserAccessDenied` for a principal without `permission`).
   */
  async #refuseNow(principal: Principal, request: RefusalRequest, comment: string): Promise<number> {
    const { statusCode, permission, action, target, reason } = request;
    try {
      await this.#system.refuseCommand(principal, {
        permission,
        ...(action === undefined ? {} : { action }),
        target,
        reason,
        ...(comment === "" ? {} : { comment: comment.slice(0, COMMENT_MAX_LENGTH) }),
      });
    } catch (error) {
      this.#logger.info(
        {
          target,
          action: action ?? permission,
          principal: principal.id,
          error: KilnError.is(error) ? error.code : String(error),
        },
        "OPC UA request refused",
      );
      return error === reason ? statusCode : statusCodeOfError(error);
    }
    return statusCode; // never reached: refuseCommand never resolves
  }

  #identityOf(runtime: ServerRuntime, token: UserIdentityToken): OpcuaUserIdentity | undefined {
    if (token instanceof runtime.AnonymousIdentityToken) return { type: "anonymous" };
    if (token instanceof runtime.X509IdentityToken && token.certificateData) {
      return { type: "certificate", certificate: Buffer.from(token.certificateData) };
    }
    return undefined;
  }

  /** The principal a session acts as: the one `identify` gave, else one with no role (every command refused and audited). */
  #principalOf(session: ISessionBase | undefined): Principal {
    const known = session ? this.#principals.get(session) : undefined;
    if (known) return known;
    const info = session ? sessionInfoOf(this.#runtime!, session as ServerSession) : undefined;
    return { id: "anonymous", roles: [], source: info ? sourceOf(info) : "opcua" };
  }

  /**
   * Pushes a sample into its variable, as node-opcua serves it to reads and monitored items,
   * and tells the tag's alarm conditions, whose Quality is the StatusCode served here.
   */
  #publish(tag: Tag, variable: UAVariable, sample: Sample | undefined): void {
    // setValueFromSource would stamp the ServerTimestamp with the source time; the DataValue
    // is set as is (node-opcua's own path under setValueFromSource, notifying monitored items).
    (variable as unknown as { _internal_set_dataValue(value: DataValue): void })._internal_set_dataValue(
      this.#dataValueOf(tag, sample),
    );
    this.#alarms?.followQuality(tag.name);
  }

  /**
   * The DataValue a tag's variable serves for `sample` (undefined: none yet): its value, its
   * StatusCode (a good one `UncertainNoCommunicationLastUsableValue` while the system is not
   * running; `BadTypeMismatch` when the value does not fit the DataType), its SourceTimestamp.
   */
  #dataValueOf(tag: Tag, sample: Sample | undefined): DataValue {
    const runtime = this.#runtime!;
    const now = new Date(this.#clock.now());
    const bad = (code: number, sourceTimestamp?: Date): DataValue =>
      new runtime.DataValue({
        value: { dataType: runtime.DataType.Null },
        statusCode: this.#statusCode(code),
        ...(sourceTimestamp ? { sourceTimestamp } : {}),
        serverTimestamp: now,
      });
    if (sample === undefined) return bad(QualityCodes.BadWaitingForInitialData);
    const sourceTimestamp = new Date(sample.timestamp);
    const code = statusCodeOfSample(sample);
    const served =
      !this.#systemRunning && code < QualityCodes.Uncertain
        ? QualityCodes.UncertainNoCommunicationLastUsableValue
        : code;
    try {
      // A Bad sample is served with no value (Part 4, 7.7.1), as from history: `servedValueOf`.
      const { code: encodedCode, variant } = servedValueOf(sample, (value) => variantOf(runtime, tag, value));
      if (variant === undefined) return bad(encodedCode, sourceTimestamp);
      return new runtime.DataValue({
        value: variant,
        statusCode: this.#statusCode(served),
        sourceTimestamp,
        serverTimestamp: now,
      });
    } catch (error) {
      this.#logger.error({ tag: tag.name, error: String(error) }, "value could not be served; served as bad");
      return bad(statusCodeOfServed(sample, false), sourceTimestamp);
    }
  }

  /** The node-opcua StatusCode of a 32-bit code (its info bits kept); an unknown code as the generic one of its severity. */
  #statusCode(code: number): StatusCode {
    const runtime = this.#runtime!;
    const base = (code & 0xffff0000) >>> 0;
    if (this.#statusCodes.has(base)) return runtime.getStatusCodeFromCode(code >>> 0);
    const severity = (code & 0xc0000000) >>> 0;
    return this.#statusCodes.get(severity >= QualityCodes.Bad ? QualityCodes.Bad : severity)!;
  }

  /**
   * The server's one write hook: a Write of a tag variable's Value goes on (to
   * {@link OpcuaServer.#interceptWrites}); a Write of any other attribute or node the server
   * serves (EURange, EngineeringUnits, Historizing, Description, machine and alarm variables...)
   * is refused `BadNotWritable` and audited through `system.refuseCommand` (`BadUserAccessDenied`
   * for a principal without `tag.write`): clients read the address space, they do not edit it.
   * A Write of an unknown node is answered by node-opcua (`BadNodeIdUnknown`).
   */
  #refuseOtherWrites(server: AuthorizingServer): void {
    const accessor = server.engine.addressSpaceAccessor as unknown as {
      writeNode(context: ISessionContext, writeValue: WriteValueLike): Promise<StatusCode>;
    } | null;
    if (!accessor) throw new Error("node-opcua server engine has no address space accessor");
    const writeNode = accessor.writeNode.bind(accessor);
    const addressSpace = server.engine.addressSpace!;
    accessor.writeNode = async (context, writeValue) => {
      const node = addressSpace.findNode(writeValue.nodeId);
      const name = node?.nodeId.namespace === this.#namespaceIndex ? node.nodeId.value : undefined;
      const tagValue =
        writeValue.attributeId === VALUE_ATTRIBUTE && typeof name === "string" && this.#variables.get(name) === node;
      if (!node) return writeNode(context, writeValue);
      if (tagValue) {
        // Straight to Kiln's checked path: node-opcua's own checks on the way (a missing Variant,
        // the session's UserAccessLevel) would answer before Kiln audits.
        return this.#statusCode(
          await this.#write(this.#system.tags.get(name), context, writeValue.value, writeValue.indexRange),
        );
      }
      const target = node.nodeId.toString();
      const attribute = writeValue.attributeId;
      const code = await this.#refuse(this.#principalOf(context?.session), {
        permission: "tag.write",
        action: "opcua.write-attribute",
        target,
        reason: new KilnError(
          "KILN_TAG_NOT_WRITABLE",
          `Attribute ${attribute} of ${target} is read-only to OPC UA clients.`,
          {
            details: { nodeId: target, attribute },
          },
        ),
        statusCode: ServerStatusCodes.BadNotWritable,
      });
      return this.#statusCode(code);
    };
  }

  #markCallReached(): void {
    const call = this.#callReached.getStore();
    if (call) call.reached = true;
  }

  /**
   * node-opcua checks a Method call before any handler runs: its input arguments (count and
   * DataType against the Method's InputArguments: `BadArgumentsMissing`, `BadTooManyArguments`,
   * `BadTypeMismatch`, `BadInvalidArgument`) and its object (`BadNodeIdInvalid` for a variable,
   * `BadNodeIdUnknown`...). The engine's `addressSpaceAccessor.callMethod` is wrapped: a refused
   * call of one of Kiln's command Methods ({@link KILN_METHOD_PERMISSIONS}, by BrowseName) that no
   * Kiln handler took is audited through
   * `system.refuseCommand` (authorized first: `BadUserAccessDenied` without the Method's
   * permission), so every refused call leaves one entry.
   */
  #auditRefusedCalls(server: AuthorizingServer): void {
    const accessor = server.engine.addressSpaceAccessor as unknown as {
      callMethod(context: ISessionContext, request: CallRequestLike): Promise<CallResultLike>;
    } | null;
    if (!accessor) throw new Error("node-opcua server engine has no address space accessor");
    const callMethod = accessor.callMethod.bind(accessor);
    const addressSpace = server.engine.addressSpace!;
    accessor.callMethod = async (context, request) => {
      const call = { reached: false };
      const result = await this.#callReached.run(call, () => callMethod(context, request));
      const code = (result.statusCode as StatusCode | undefined)?.value ?? 0;
      if (call.reached || (code & 0x80000000) === 0) return result;
      const method = addressSpace.findNode(request.methodId);
      const name = method?.browseName.name ?? "";
      const permission = Object.hasOwn(KILN_METHOD_PERMISSIONS, name) ? KILN_METHOD_PERMISSIONS[name] : undefined;
      if (!method || permission === undefined) return result;
      const target = request.objectId?.toString() ?? "(no object)";
      const refused = await this.#refuse(this.#principalOf(context?.session), {
        permission,
        action: `opcua.${name}`,
        target,
        reason: new KilnValidationError(`OPC UA ${name}`, [
          {
            path: "inputArguments",
            message: `node-opcua refused the call before Kiln saw it (${(result.statusCode as StatusCode).name}: input arguments, or an object the Method does not apply to)`,
          },
        ]),
        statusCode: code >>> 0,
      });
      return refused === code >>> 0 ? result : { statusCode: this.#statusCode(refused) };
    };
  }

  /**
   * Routes OPC UA Writes of the variable's Value to Kiln's checked command path, with the
   * session's principal, instead of node-opcua's own setter (which knows nothing of Kiln's
   * roles, machine state or audit trail).
   */
  #interceptWrites(tag: Tag, variable: UAVariable): void {
    const write = (context: ISessionContext, dataValue: DataValue, indexRange: unknown): Promise<StatusCode> =>
      this.#write(tag, context, dataValue, indexRange).then((code) => this.#statusCode(code));
    Object.defineProperty(variable, "writeValue", {
      configurable: true,
      writable: true,
      value: (context: ISessionContext, dataValue: DataValue, ...rest: unknown[]) => {
        const callback = typeof rest.at(-1) === "function" ? (rest.at(-1) as WriteCallback) : undefined;
        const indexRange = rest.length === 2 || (rest.length === 1 && callback === undefined) ? rest[0] : undefined;
        const result = write(context, dataValue, indexRange);
        if (!callback) return result;
        result.then(
          (statusCode) => callback(null, statusCode),
          (error: unknown) => callback(error as Error),
        );
        return undefined;
      },
    });
  }

  async #write(tag: Tag, context: ISessionContext, dataValue: DataValue, indexRange: unknown): Promise<number> {
    const principal = this.#principalOf(context?.session);
    if (!this.#can(principal, "tag.write", tag.name)) {
      // Refused as system.writeTag would (the same role table, in the machine's current state),
      // but audited with the call's other refusals: one entry for a Write of 1,000 such tags.
      return this.#refuse(principal, {
        permission: "tag.write",
        target: tag.name,
        reason: new KilnError("KILN_FORBIDDEN", `Not allowed to write ${tag.name}.`),
        statusCode: ServerStatusCodes.BadUserAccessDenied,
      });
    }
    if (!isEmptyRange(indexRange)) {
      return this.#refuse(principal, {
        permission: "tag.write",
        target: tag.name,
        reason: new KilnValidationError("OPC UA Write", [
          { path: "indexRange", message: "Kiln tags are scalars: a Write with an IndexRange is not accepted" },
        ]),
        statusCode: ServerStatusCodes.BadIndexRangeInvalid,
      });
    }
    if (carriesMoreThanAValue(dataValue)) {
      return this.#refuse(principal, {
        permission: "tag.write",
        target: tag.name,
        reason: new KilnValidationError("OPC UA Write", [
          {
            path: "value",
            message:
              "a Write sets a value only: Kiln takes no StatusCode, SourceTimestamp or ServerTimestamp from a client (OPC UA Part 4, 5.10.4)",
          },
        ]),
        statusCode: ServerStatusCodes.BadWriteNotSupported,
      });
    }
    const value = tagValueOf(this.#runtime!, tag, dataValue.value);
    if (value === undefined) {
      const variant = dataValue.value;
      const typeName = this.#runtime!.DataType[variant?.dataType ?? 0] ?? "unknown";
      const written =
        variant?.value === null || variant?.value === undefined
          ? `${typeName} Variant holding null (no value)`
          : `${variant.arrayType === this.#runtime!.VariantArrayType.Scalar ? "scalar" : "array"} ${typeName}`;
      return this.#refuse(principal, {
        permission: "tag.write",
        target: tag.name,
        reason: new KilnValidationError("OPC UA Write", [
          {
            path: "value",
            message: `a ${tag.dataType} tag takes a scalar ${OPCUA_DATA_TYPE_OF_TAG[tag.dataType]} Variant, not a ${written}`,
          },
        ]),
        statusCode: QualityCodes.BadTypeMismatch,
      });
    }
    try {
      await this.#system.writeTag(principal, tag.name, value as TagValue, { comment: "OPC UA Write" });
      return QualityCodes.Good;
    } catch (error) {
      const code = statusCodeOfError(error);
      this.#logger.info(
        { tag: tag.name, principal: principal.id, error: KilnError.is(error) ? error.code : String(error) },
        "OPC UA write refused",
      );
      return code;
    }
  }
}

/** AttributeId of the Value attribute (OPC UA Part 6, A.1). */
const VALUE_ATTRIBUTE = 13;

/** The permission each machine Method's command needs (SendCommand: `machine.maintenance` for a maintenance command). */
const MACHINE_METHOD_PERMISSIONS: Readonly<Record<keyof MachineMethods, string>> = {
  StartRecipe: "recipe.start",
  Pause: "recipe.pause",
  Resume: "recipe.resume",
  Abort: "recipe.abort",
  SendCommand: "machine.mode",
};

/** The permission of each Kiln command Method, machine and condition, by BrowseName (checked before auditing a call node-opcua refused). */
const KILN_METHOD_PERMISSIONS: Readonly<Record<string, string>> = {
  ...MACHINE_METHOD_PERMISSIONS,
  Acknowledge: "alarm.acknowledge",
  Confirm: "alarm.acknowledge",
  AddComment: "alarm.acknowledge",
  TimedShelve: "alarm.shelve",
  OneShotShelve: "alarm.shelve",
  Unshelve: "alarm.unshelve",
  Enable: "alarm.out-of-service",
  Disable: "alarm.out-of-service",
};

/** What the server reads of a node-opcua CallMethodRequest and its result. */
interface CallRequestLike {
  readonly objectId?: { toString(): string } | null;
  readonly methodId: Parameters<Namespace["addressSpace"]["findNode"]>[0];
}
interface CallResultLike {
  readonly statusCode?: unknown;
}

/** AccessLevel bits (OPC UA Part 3, 8.57). */
const CURRENT_READ = 0x01;
const CURRENT_WRITE = 0x02;
const HISTORY_READ = 0x04;

/** What the server reads of a node-opcua WriteValue. */
interface WriteValueLike {
  readonly nodeId: Parameters<Namespace["addressSpace"]["findNode"]>[0];
  readonly attributeId: number;
  readonly value: DataValue;
  readonly indexRange?: unknown;
}

type WriteCallback = (error: Error | null, statusCode?: StatusCode) => void;

/**
 * node-opcua's `userManager.isValidUserAsync`, which it calls with the session as `this`: hands
 * the session to `check` (a refusal or a failure answers "not valid").
 */
function isValidUserAsyncOf(check: (session: ServerSession, userName: string, password: string) => Promise<boolean>) {
  return function (
    this: ServerSession,
    userName: string,
    password: string,
    callback: (error: Error | null, authorized?: boolean) => void,
  ): void {
    check(this, userName, password).then(
      (authorized) => callback(null, authorized),
      () => callback(null, false),
    );
  };
}

/**
 * Whether a written DataValue carries a StatusCode other than Good, a SourceTimestamp or a
 * ServerTimestamp: a server that does not take them answers `BadWriteNotSupported` (OPC UA Part 4,
 * 5.10.4), never a bad or stamped value taken as a good setpoint.
 */
function carriesMoreThanAValue(dataValue: DataValue): boolean {
  const status = (dataValue.statusCode as { value?: number } | null | undefined)?.value ?? 0;
  return status !== 0 || dataValue.sourceTimestamp != null || dataValue.serverTimestamp != null;
}

function isEmptyRange(indexRange: unknown): boolean {
  if (indexRange === undefined || indexRange === null || indexRange === "") return true;
  const range = indexRange as { isEmpty?: () => boolean };
  return typeof range.isEmpty === "function" ? range.isEmpty() : false;
}

/** Every StatusCode node-opcua knows, by value (no info bits). */
function statusCodeTable(runtime: ServerRuntime): Map<number, StatusCode> {
  const table = new Map<number, StatusCode>();
  for (const code of Object.values(runtime.StatusCodes) as unknown[]) {
    if (code instanceof runtime.StatusCode) table.set(code.value >>> 0, code);
  }
  return table;
}

/**
 * What the server knows of a session. The client's ApplicationUri is the one in its certificate
 * (checked by the secure channel) when it has one; only on a None channel is it the one the
 * client states.
 */
function sessionInfoOf(runtime: ServerRuntime, session: ServerSession): OpcuaSessionInfo {
  const channel = session.channel;
  let certified: string | null = null;
  try {
    certified = new runtime.SessionContext({ session }).clientApplicationUri;
  } catch {
    certified = null;
  }
  const applicationUri = certified ?? session.clientDescription?.applicationUri ?? undefined;
  const remote = channel?.remoteAddress;
  return {
    sessionId: session.nodeId?.toString() ?? "(unknown session)",
    sessionName: session.sessionName ?? "",
    ...(applicationUri
      ? { clientApplicationUri: applicationUri, clientApplicationUriVerified: certified !== null }
      : {}),
    ...(remote ? { remoteAddress: channel?.remotePort ? `${remote}:${channel.remotePort}` : remote } : {}),
    securityMode: channel ? String(securityModeName(channel.securityMode)) : "unknown",
    securityPolicy: channel ? String(channel.securityPolicy) : "unknown",
  };
}

/** Gives back the failures a login attempt reserved before `identify` was asked (it did not fail, or was not asked). */
function giveBack(reserved: readonly ({ count: number } | undefined)[]): void {
  for (const failures of reserved) if (failures && failures.count > 0) failures.count -= 1;
}

function securityModeName(mode: number): string {
  return ["Invalid", "None", "Sign", "SignAndEncrypt"][mode] ?? String(mode);
}

/** Longest client ApplicationUri quoted in an audit `source`, in characters. */
const SOURCE_URI_MAX_LENGTH = 120;

/**
 * The audit `source` of a session, at most 256 characters, the parts the server made first so a
 * client cannot push them out (adv20 F3): `opcua:session <session id> from <address:port> client
 * <uri>`. The URI is the one the client's certificate carries, or, on a None channel without a
 * certificate, `unverified "<uri as stated>"`, quoted with control characters escaped and cut at
 * 120 characters; `unknown-client` when there is none.
 */
function sourceOf(info: OpcuaSessionInfo): string {
  const uri = info.clientApplicationUri;
  const quoted = (text: string): string => JSON.stringify(text.slice(0, SOURCE_URI_MAX_LENGTH));
  const client =
    uri === undefined
      ? "unknown-client"
      : info.clientApplicationUriVerified
        ? quoted(uri).slice(1, -1)
        : `unverified ${quoted(uri)}`;
  const from = info.remoteAddress === undefined ? "" : ` from ${info.remoteAddress}`;
  return `opcua:session ${info.sessionId}${from} client ${client}`.slice(0, SOURCE_MAX_LENGTH);
}

/** The buffer sizes and message limits node-opcua agrees with a client in its Hello/Acknowledge (OPC UA Part 6, 7.1.2.3–7.1.2.4). */
interface TransportLimits {
  readonly receiveBufferSize: number;
  readonly sendBufferSize: number;
  readonly maxMessageSize: number;
  readonly maxChunkCount: number;
}

/** Smallest chunk (bytes) a Hello may ask for (OPC UA Part 6, 7.1.2.3). */
const MIN_BUFFER_SIZE = 8_192;
/** Largest chunk (bytes) the server agrees to, node-opcua's own bound. */
const MAX_BUFFER_SIZE = 8 * 64 * 1_024;

/**
 * The limits the server acknowledges a client's Hello with, and then holds it to: both ways, no
 * message larger than `limits.maxMessageSize` bytes nor of more than `limits.maxChunkCount`
 * chunks (a smaller limit the client states is kept: it is what the client can receive). A larger
 * message is refused as it arrives, before it is decoded: `BadTcpMessageTooLarge`, and the
 * connection is closed (OPC UA Part 6, 6.7.3 and 7.1.5).
 */
function transportLimitsOf(
  hello: TransportLimits,
  limits: Pick<ResolvedOpcuaServerOptions["limits"], "maxMessageSize" | "maxChunkCount">,
): TransportLimits {
  const buffer = (size: number): number =>
    Math.min(MAX_BUFFER_SIZE, Math.max(MIN_BUFFER_SIZE, size || MAX_BUFFER_SIZE / 8));
  const at = (stated: number, bound: number): number => (stated > 0 ? Math.min(stated, bound) : bound);
  return {
    receiveBufferSize: buffer(hello.receiveBufferSize),
    sendBufferSize: buffer(hello.sendBufferSize),
    maxMessageSize: at(hello.maxMessageSize, limits.maxMessageSize),
    maxChunkCount: at(hello.maxChunkCount, limits.maxChunkCount),
  };
}

/**
 * The Variant of a tag value (node-opcua carries a 64-bit integer as [high, low] 32-bit words);
 * undefined when the value cannot be encoded exactly in the tag's DataType: of another type, an
 * integer type's value that is not a whole number or out of its range (an int16's 70000, an
 * int32's 1.5: node-opcua's Variant threw for the one and truncated the other), a float32's finite
 * value beyond ±FLT_MAX. Never throws.
 */
function variantOf(runtime: ServerRuntime, tag: Tag, value: Sample["value"]): Variant | undefined {
  if (value === null) return undefined;
  const dataType = runtime.DataType[OPCUA_DATA_TYPE_OF_TAG[tag.dataType]];
  const arrayType = runtime.VariantArrayType.Scalar;
  switch (tag.dataType) {
    case "bool":
      return typeof value === "boolean" ? new runtime.Variant({ dataType, arrayType, value }) : undefined;
    case "string":
      return typeof value === "string" ? new runtime.Variant({ dataType, arrayType, value }) : undefined;
    case "int64":
    case "uint64": {
      if (typeof value !== "bigint" && (typeof value !== "number" || !Number.isSafeInteger(value))) return undefined;
      const whole = BigInt(value);
      const [low, high] = tag.dataType === "int64" ? [-(2n ** 63n), 2n ** 63n - 1n] : [0n, 2n ** 64n - 1n];
      if (whole < low || whole > high) return undefined;
      const words = BigInt.asUintN(64, whole);
      return new runtime.Variant({ dataType, arrayType, value: [Number(words >> 32n), Number(words & 0xffffffffn)] });
    }
    case "float32":
    case "float64": {
      if (typeof value !== "number") return undefined;
      if (tag.dataType === "float32" && Number.isFinite(value) && Math.abs(value) > FLOAT32_MAX) return undefined;
      return new runtime.Variant({ dataType, arrayType, value });
    }
    default: {
      const [low, high] = INTEGER_RANGE[tag.dataType];
      if (typeof value !== "number" || !Number.isInteger(value) || value < low || value > high) return undefined;
      return new runtime.Variant({ dataType, arrayType, value });
    }
  }
}

/** The largest finite float32 (FLT_MAX). */
const FLOAT32_MAX = 3.4028234663852886e38;

/** The values each 32-bit-or-smaller integer DataType holds (OPC UA Part 6, 5.2.2). */
const INTEGER_RANGE = {
  int16: [-32_768, 32_767],
  uint16: [0, 65_535],
  int32: [-2_147_483_648, 2_147_483_647],
  uint32: [0, 4_294_967_295],
} as const;

/**
 * The value a client wrote, as Kiln carries it, or `undefined` when its Variant is not a scalar
 * of exactly the tag's OPC UA DataType ({@link OPCUA_DATA_TYPE_OF_TAG}; no conversion: an Int64
 * -1 is not a UInt64, a String "5" is not an Int64, a UInt32 above 2^31 is not an Int32). A
 * 64-bit integer's [high, low] words become a bigint; Kiln's checked write then decides whether
 * the value fits the tag (range, `KILN_VALIDATION` → `BadInvalidArgument`).
 */
function tagValueOf(runtime: ServerRuntime, tag: Tag, variant: Variant | null | undefined): unknown {
  if (
    variant === undefined ||
    variant === null ||
    variant.arrayType !== runtime.VariantArrayType.Scalar ||
    variant.dataType !== runtime.DataType[OPCUA_DATA_TYPE_OF_TAG[tag.dataType]]
  ) {
    return undefined;
  }
  const value: unknown = variant.value;
  if (tag.dataType === "int64" || tag.dataType === "uint64") {
    if (typeof value === "bigint")
      return tag.dataType === "int64" ? BigInt.asIntN(64, value) : BigInt.asUintN(64, value);
    if (!Array.isArray(value) || value.length !== 2) return undefined;
    const words = (BigInt((value[0] as number) >>> 0) << 32n) | BigInt((value[1] as number) >>> 0);
    return tag.dataType === "int64" ? BigInt.asIntN(64, words) : words;
  }
  return value ?? undefined;
}

/** A refusal the server makes before a request becomes a Kiln command (see `OpcuaServer.#refuse`). */
interface RefusalRequest {
  readonly permission: string;
  /** The audit action. @default permission */
  readonly action?: string;
  readonly target: string;
  readonly reason: KilnError;
  /** The StatusCode to answer a principal who holds `permission` (one who does not gets `BadUserAccessDenied`). */
  readonly statusCode: number;
  /**
   * What makes refusals of one action the same kind, to be audited together; given, even a single
   * one is coalesced across calls (a refusal clients repeat in loops). @default the reason's code
   * and message (its target left out)
   */
  readonly kind?: string;
}

/** A refusal, or the refusals of one kind in one call, to audit through `OpcuaServer.#refuseCoalesced`. */
interface CoalescedRefusal extends RefusalRequest {
  /** How many operations it stands for (a call's refused nodes, a request's operations). */
  readonly count: number;
  /** What it names beyond its target (the first targets of a call, a login's user name). */
  readonly names: readonly string[];
  /** The entry's comment: its count and names ("" for none). */
  readonly detail: string;
  /** Every target it stands for, to count the distinct ones. @default [target] */
  readonly targets?: readonly string[];
}

/** The refusals of one service call of a session, by kind (see `OpcuaServer.#refuse`). */
interface CallRefusals {
  readonly session: ServerSession;
  readonly kinds: Map<
    string,
    {
      readonly key: string;
      /** The kind's coalescing key across calls: what is refused, not which target. */
      readonly windowKey: string;
      readonly request: RefusalRequest;
      readonly principal: Principal;
      count: number;
      readonly targets: string[];
    }
  >;
}

/** A coalescing window of one kind of refusal in one scope (see `OpcuaServer.#refuseCoalesced`). */
interface RefusalWindow {
  /** Refusals audited with an entry of their own in the window (at most `REFUSALS_AUDITED_APART`). */
  apart: number;
  /** Operations refused in the window without an audit entry of their own. */
  suppressed: number;
  /** The refusals (calls, logins) they came in. */
  calls: number;
  /** The first names of those refusals. */
  readonly names: Set<string>;
  /** Their distinct targets, up to `DISTINCT_TARGETS_COUNTED`. */
  readonly targets: Set<string>;
  /** The scope and key the window is filed under. */
  readonly scope: object | string;
  readonly key: string;
  /** When the window's first refusal came, and its last (clock ms). */
  readonly first: number;
  last: number;
  /**
   * The other principals (by id and source, up to `DISTINCT_TARGETS_COUNTED`; beyond, each refusal
   * has an entry of its own) refused in this window (the overflow scope): each one's refusals are
   * counted and summarised under it, never under the window's `principal`.
   */
  readonly others: Map<string, RefusalTally>;
  /** The StatusCode the first refusal got, given to the others. */
  answer: number;
  readonly principal: Principal;
  readonly request: CoalescedRefusal;
  timer: TimerHandle | undefined;
}

/** `: a, b, c and 7 more` for the first names of `total`. */
function namesOf(names: readonly string[], total: number): string {
  if (names.length === 0) return "";
  return `: ${names.join(", ")}${total > names.length ? ` and ${total - names.length} more` : ""}`;
}

type AddressSpaceFind = NonNullable<AuthorizingServer["engine"]["addressSpace"]>["findNode"];

/** The coalescing scope shared by the scopes refused while `MAX_REFUSAL_WINDOWS` windows are open. */
const OVERFLOW_SCOPE = "overflow";

/** One more principal's refusals in a shared window: its first audited at once, the rest counted here. */
interface RefusalTally {
  readonly principal: Principal;
  suppressed: number;
  calls: number;
  readonly first: number;
  last: number;
  /** The StatusCode its first refusal got, given to its others. */
  answer: number;
}

/** A principal as the shared overflow window tells principals apart: its id, roles and source. */
function refuserOf(principal: Principal): string {
  return JSON.stringify([principal.id, [...principal.roles].sort(), principal.source ?? null]);
}

/**
 * The coalescing key of a refusal across calls: what is refused (action, permission, StatusCode,
 * the reason's code or the given kind), never which target nor the reason's wording (which may
 * name a target): rotating targets cannot open a window per call.
 */
function windowKeyOf(request: RefusalRequest): string {
  return JSON.stringify([
    request.action ?? request.permission,
    request.permission,
    request.statusCode,
    request.kind ?? request.reason.code,
  ]);
}

/** How many refusals of its kind a window audits apart: one for a kind clients repeat in loops (`kind` given). */
function apartOf(request: RefusalRequest): number {
  return request.kind === undefined ? REFUSALS_AUDITED_APART : 1;
}

/** The coalescing scope of a principal's refusals: every session of it (its id and roles). */
function principalScopeOf(principal: Principal): string {
  return `principal:${principalKeyOf(principal)}`;
}

/** A key that differs when the principal (its id or roles) differs; none for a session not identified. */
function principalKeyOf(principal: Principal | undefined): string | undefined {
  return principal === undefined ? undefined : JSON.stringify([principal.id, [...principal.roles].sort()]);
}
