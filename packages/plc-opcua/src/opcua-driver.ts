import { homedir } from "node:os";
import path from "node:path";
import {
  KilnError,
  KilnValidationError,
  QualityCodes,
  SystemClock,
  parseOrThrow,
  severityOfStatusCode,
  silentLogger,
  type BrowsedVariable,
  type Clock,
  type DriverStatus,
  type DriverStatusChange,
  type Logger,
  type PlcDriver,
  type PlcDriverCapabilities,
  type Sample,
  type SubscriptionOptions,
  type Tag,
  type TagValue,
  type ValidationIssue,
} from "@kiln/core";
import { ConnectionLifecycle, raceAbort, type Disposer } from "@kiln/core/driver-kit";
import {
  AttributeIds,
  BrowseDirection,
  DataType,
  MessageSecurityMode,
  NodeClass,
  NodeClassMask,
  type NodeId,
  OPCUACertificateManager,
  OPCUAClient,
  ObjectIds,
  ReferenceTypeIds,
  SecurityPolicy,
  UserTokenType,
  VariableIds,
  browseAll,
  findBasicDataType,
  resolveNodeId,
  type BrowseDescriptionOptions,
  type ClientSession,
  type DataValue,
  type ReadValueIdOptions,
  type ReferenceDescription,
  type UserIdentityInfo,
} from "node-opcua";
import { certificateDer, privateKeyPem } from "./opcua-certificates";
import {
  opcuaDriverOptionsSchema,
  type OpcuaDriverOptions,
  type ResolvedOpcuaDriverOptions,
} from "./opcua-driver-options";
import { connectError, redact, requestError, statusNameOf } from "./opcua-errors";
import { formatNodeAddress, parseNodeAddress, resolveNodeAddress, type OpcuaNodeAddress } from "./opcua-node-id";
import { planReads, type ReadPlan } from "./opcua-read-plan";
import { badSample, sampleFromDataValue } from "./opcua-samples";
import { OpcuaTagSubscription, type SubscriptionConnection } from "./opcua-tag-subscription";
import { tagDataTypeOf, variantForWrite } from "./opcua-values";

/** The operation limits the driver honours: the server's, capped by the options (0: none). */
interface OperationLimits {
  readonly maxNodesPerRead: number;
  readonly maxNodesPerWrite: number;
  readonly maxNodesPerBrowse: number;
  readonly maxMonitoredItemsPerCall: number;
}

interface Connection extends SubscriptionConnection {
  readonly client: OPCUAClient;
  readonly session: ClientSession;
  readonly certificateManager: OPCUACertificateManager;
  namespaceArray: readonly string[];
  limits: OperationLimits;
  maxMonitoredItemsPerCall: number;
  generation: number;
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

const MAX_BROWSED_NODES = 100_000;

/**
 * A Kiln {@link PlcDriver} for OPC UA servers (Siemens S7-1500, Beckhoff TwinCAT, CODESYS,
 * open62541, node-opcua...), built on node-opcua.
 *
 * - Tags are addressed by NodeId in their `address`: `ns=2;s=Reactor.Pressure`, `ns=3;i=1001`,
 *   `ns=4;g=<guid>`, or `nsu=<namespace uri>;s=...` resolved against the server's namespace
 *   array after connecting (so an address survives servers that number namespaces differently).
 * - Secure by default: SignAndEncrypt with Basic256Sha256; an unknown server certificate is
 *   rejected unless trusted (`pki.trustedServerCertificates`); security `None` logs a warning
 *   once. Passwords never appear in logs or errors.
 * - `read` sends one ReadRequest per scan, split by the server's MaxNodesPerRead (read once
 *   after connecting); the plan is cached per tag array.
 * - `write` discovers each node's DataType once and converts the value to it; read-only tags
 *   fail with `KILN_TAG_NOT_WRITABLE` before any traffic; a server refusal fails with
 *   `KILN_WRITE_REJECTED` carrying `statusCode` and `statusName`.
 * - `subscribe` creates one OPC UA subscription per call, with monitored items created in
 *   batches of MaxMonitoredItemsPerCall.
 * - Reconnection: node-opcua gets a complete connection strategy; a dead session is detected by
 *   keep-alive; after a server restart the session, subscriptions and monitored items are
 *   re-created without user action, and items the server refuses (BadNodeIdUnknown while it
 *   starts) are retried with backoff. Subscribed tags turn `uncertain` while the link is down.
 *
 * @example
 * const driver = new OpcuaDriver({
 *   endpointUrl: "opc.tcp://10.0.0.5:4840",
 *   identity: { type: "username", userName: "kiln", password: process.env.OPCUA_PASSWORD! },
 *   pki: { dir: "./pki", trustedServerCertificates: ["./pki/plc-cert.der"] },
 * });
 * await driver.connect();
 * const [pressure] = await driver.read([tags.get("reactor.pressure")]);
 *
 * @throws KilnValidationError (`KILN_VALIDATION`) from the constructor, naming each bad option.
 */
export class OpcuaDriver implements PlcDriver {
  /** The driver contract version this driver implements. */
  readonly driverApiVersion = "1" as const;
  /** The connection's name in events and breakers. */
  readonly name: string;
  /** Subscriptions and browsing are supported. */
  readonly capabilities: PlcDriverCapabilities = Object.freeze({ subscribe: true, browse: true });

  readonly #options: ResolvedOpcuaDriverOptions;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #pkiDir: string;
  readonly #secret: string | undefined;
  readonly #lifecycle: ConnectionLifecycle;
  readonly #subscriptions = new Set<OpcuaTagSubscription>();
  readonly #readPlans = new WeakMap<readonly Tag[], ReadPlan>();
  readonly #addresses = new WeakMap<Tag, OpcuaNodeAddress>();
  readonly #dataTypes = new Map<string, Promise<DataType>>();
  #connection: Connection | undefined;
  #repairing: Promise<void> | undefined;
  #repairAgain = false;
  #warnedInsecure = false;
  /** Numbers each session layout (namespaces, limits), so plans and data types cached for an older one are not reused. */
  #generations = 0;

  /**
   * Validates `options` and prepares the driver. No connection is opened: call {@link connect}.
   * @throws KilnValidationError naming each bad field (`security.mode`, `timeouts.requestMs`...).
   */
  constructor(options: OpcuaDriverOptions) {
    this.#options = parseOrThrow(opcuaDriverOptionsSchema, options, "OPC UA driver options");
    const url = new URL(this.#options.endpointUrl.replace(/^opc\.tcp:/i, "http:"));
    this.name = this.#options.name ?? `opcua:${url.host}`;
    this.#logger = (this.#options.logger ?? silentLogger).child({ driver: this.name });
    this.#clock = this.#options.clock ?? new SystemClock();
    this.#pkiDir = path.resolve(this.#options.pki.dir ?? path.join(homedir(), ".kiln", "opcua", "pki"));
    this.#secret = this.#options.identity.type === "username" ? this.#options.identity.password : undefined;
    this.#lifecycle = new ConnectionLifecycle({
      name: this.name,
      clock: this.#clock,
      ...(this.#options.random ? { random: this.#options.random } : {}),
      onListenerError: (error) => this.#logger.error({ err: error }, "a status listener threw"),
    });
  }

  /** The current connection state. */
  get status(): DriverStatus {
    return this.#lifecycle.status;
  }

  /** Calls `listener` on every connection state change; returns a disposer. */
  onStatusChange(listener: (change: DriverStatusChange) => void): Disposer {
    return this.#lifecycle.onStatusChange(listener);
  }

  /**
   * Opens the secure channel and the session, and reads the server's namespace array and
   * operation limits. Concurrent calls share one attempt.
   *
   * @throws KilnError `KILN_AUTHENTICATION_FAILED` (not retryable) when the server refuses the
   *   identity; `KILN_CONNECTION_FAILED` when the server cannot be reached (retryable) or the
   *   certificates or endpoint do not match (not retryable: fix the configuration);
   *   `KILN_ABORTED` when `signal` aborts first.
   */
  connect(signal?: AbortSignal): Promise<void> {
    if (this.status === "reconnecting") return Promise.resolve();
    return this.#lifecycle.connect(
      async (lifetime) => {
        this.#connection = await this.#open(lifetime);
      },
      signal,
      { connecting: `connecting to ${this.#options.endpointUrl}`, connected: "session open" },
    );
  }

  /** Closes subscriptions, the session and the connection, and stops reconnecting. Idempotent. */
  close(): Promise<void> {
    return this.#lifecycle.close(async () => {
      const subscriptions = [...this.#subscriptions];
      this.#subscriptions.clear();
      await Promise.all(subscriptions.map((subscription) => subscription.close(false)));
      const connection = this.#connection;
      this.#connection = undefined;
      if (connection) await this.#dispose(connection);
      await this.#repairing;
      this.#dataTypes.clear();
    }, "closed by the application");
  }

  /**
   * Reads `tags` in one ReadRequest (several when the server's MaxNodesPerRead requires) and
   * returns one sample per tag, in order. A tag the server cannot read comes back `bad` with
   * the server's status code.
   *
   * @throws KilnValidationError when a tag has no valid OPC UA address (`<tag>.address`).
   * @throws KilnError `KILN_NOT_CONNECTED`, `KILN_CONNECTION_FAILED` or `KILN_TIMEOUT`
   *   (retryable) when the call as a whole fails.
   */
  async read(tags: readonly Tag[], signal?: AbortSignal): Promise<Sample[]> {
    const connection = this.#requireConnection();
    if (tags.length === 0) return [];
    const plan = this.#planFor(tags, connection);
    let results: DataValue[][];
    try {
      results = await raceAbort(
        Promise.all(plan.chunks.map((chunk) => connection.session.read(chunk.nodesToRead as ReadValueIdOptions[], 0))),
        signal,
        "the OPC UA read",
      );
    } catch (error) {
      throw requestError(error, "read", this.#secret);
    }
    const now = this.#clock.now();
    const samples = new Array<Sample>(tags.length);
    plan.chunks.forEach((chunk, chunkIndex) => {
      const values = results[chunkIndex]!;
      chunk.indexes.forEach((tagIndex, position) => {
        const dataValue = values[position];
        samples[tagIndex] = dataValue
          ? sampleFromDataValue(tags[tagIndex]!, dataValue, now)
          : badSample(tags[tagIndex]!, QualityCodes.BadInternalError, "the server returned too few results", now);
      });
    });
    for (const [index, reason] of plan.unresolved) {
      samples[index] = badSample(tags[index]!, QualityCodes.BadNodeIdUnknown, reason, now);
    }
    return samples;
  }

  /**
   * Writes `value` to `tag`'s node, converted to the node's DataType (discovered once per node).
   *
   * @throws KilnError `KILN_TAG_NOT_WRITABLE` for a read-only tag, before any traffic;
   *   `KILN_WRITE_REJECTED` when the server refuses (BadNotWritable, BadUserAccessDenied,
   *   BadTypeMismatch, BadOutOfRange...) with `details.statusCode` and `details.statusName`;
   *   `KILN_OUT_OF_RANGE` when the value does not fit the node's type.
   */
  async write(tag: Tag, value: TagValue, signal?: AbortSignal): Promise<void> {
    if (tag.access !== "readwrite") {
      throw new KilnError("KILN_TAG_NOT_WRITABLE", `Tag "${tag.name}" is read-only; declare access "readwrite".`, {
        details: { tag: tag.name },
      });
    }
    const connection = this.#requireConnection();
    const address = this.#addressesOf([tag])[0]!;
    const nodeId = resolveNodeAddress(address, connection.namespaceArray);
    if (!nodeId) {
      throw rejected(
        tag,
        address.text,
        QualityCodes.BadNodeIdUnknown,
        `namespace ${address.namespaceUri} is not on the server`,
      );
    }
    const dataType = await raceAbort(
      this.#dataTypeOf(connection, nodeId, tag, address.text),
      signal,
      "the OPC UA write",
    );
    const variant = variantForWrite(value, dataType, tag, address.text);
    let status;
    try {
      status = await raceAbort(
        connection.session.write({ nodeId, attributeId: AttributeIds.Value, value: { value: variant } }),
        signal,
        "the OPC UA write",
      );
    } catch (error) {
      throw requestError(error, "write", this.#secret);
    }
    if (severityOfStatusCode(status.value) === "bad") {
      throw rejected(tag, address.text, status.value, undefined);
    }
  }

  /**
   * Delivers value changes of `tags` through one OPC UA subscription until the returned
   * disposer is called. Sampling interval, queue size and (absolute, numeric tags only)
   * deadband come from `options`. Items the server refuses are reported `bad` and retried.
   * The driver re-creates the subscription itself after a reconnect.
   *
   * @throws KilnError `KILN_NOT_CONNECTED` before `connect()`; `KILN_DEVICE_ERROR` when the
   *   server refuses the subscription itself (BadTooManySubscriptions...).
   */
  async subscribe(
    tags: readonly Tag[],
    options: SubscriptionOptions,
    onSamples: (samples: Sample[]) => void,
  ): Promise<Disposer> {
    if (this.status !== "reconnecting") this.#requireConnection();
    const addresses = this.#addressesOf(tags);
    if (tags.length === 0) return () => undefined;
    const subscription = new OpcuaTagSubscription(tags, addresses, options, onSamples, {
      logger: this.#logger,
      clock: this.#clock,
      retry: this.#options.monitoredItemRetry,
      ...(this.#options.random ? { random: this.#options.random } : {}),
      connection: () => (this.status === "connected" ? this.#connection : undefined),
    });
    this.#subscriptions.add(subscription);
    try {
      await subscription.ensure();
    } catch (error) {
      this.#subscriptions.delete(subscription);
      await subscription.close();
      throw requestError(error, "subscribe", this.#secret);
    }
    return () => {
      if (!this.#subscriptions.delete(subscription)) return;
      subscription.close().catch((error: unknown) => {
        this.#logger.debug({ err: error }, "closing an OPC UA subscription failed");
      });
    };
  }

  /**
   * Lists the variables under `root` (a NodeId in any address form; default: the Objects
   * folder, without the Server object), following hierarchical references through objects and
   * folders. Each result carries an `nsu=` address ready for a tag definition.
   *
   * @throws KilnValidationError when `root` is not a NodeId; `KILN_NOT_FOUND` when its
   *   namespace is not on the server.
   */
  async browse(root?: string): Promise<BrowsedVariable[]> {
    const connection = this.#requireConnection();
    let rootId: NodeId = resolveNodeId(ObjectIds.ObjectsFolder);
    if (root !== undefined) {
      let address: OpcuaNodeAddress;
      try {
        address = parseNodeAddress(root);
      } catch (error) {
        throw new KilnValidationError("browse root", [{ path: "root", message: (error as Error).message }]);
      }
      const resolved = resolveNodeAddress(address, connection.namespaceArray);
      if (!resolved) {
        throw new KilnError("KILN_NOT_FOUND", `Namespace ${address.namespaceUri} is not on the server.`, {
          details: { root },
        });
      }
      rootId = resolved;
    }
    try {
      return await this.#browse(connection, rootId, root === undefined);
    } catch (error) {
      throw requestError(error, "browse", this.#secret);
    }
  }

  /** Opens the channel and the session; `signal` (the call's and the lifetime's) aborts it. */
  async #open(signal: AbortSignal): Promise<Connection> {
    const { endpointUrl, security, pki, timeouts, connectionStrategy } = this.#options;
    const mode = security.mode;
    if (mode === "None" && !this.#warnedInsecure) {
      this.#warnedInsecure = true;
      this.#logger.warn(
        { endpointUrl },
        "OPC UA security mode is None: traffic is neither signed nor encrypted. Use Sign or SignAndEncrypt outside a lab.",
      );
    }
    const context = {
      endpointUrl,
      securityMode: mode,
      securityPolicy: mode === "None" ? "None" : security.policy,
      pkiDir: this.#pkiDir,
      secret: this.#secret,
    };
    const certificateManager = new OPCUACertificateManager({
      rootFolder: this.#pkiDir,
      automaticallyAcceptUnknownCertificate: pki.automaticallyAcceptUnknownCertificate,
    });
    let client: OPCUAClient | undefined;
    try {
      await certificateManager.initialize();
      for (const certificate of pki.trustedServerCertificates) {
        await certificateManager.trustCertificate(await certificateDer(certificate));
      }
      const identity = await this.#identity();
      client = OPCUAClient.create({
        applicationName: this.#options.applicationName,
        ...(this.#options.applicationUri ? { applicationUri: this.#options.applicationUri } : {}),
        clientName: this.name,
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
        // The socket's idle timeout: keep-alives must land well within it.
        transportTimeout: Math.max(60_000, timeouts.keepAliveMs * 3),
      });
      const opened = client;
      const attempt = (async () => {
        await opened.connect(endpointUrl);
        const session = await opened.createSession(identity);
        try {
          const info = await readServerInfo(session, this.#options.limits);
          return { session, info };
        } catch (error) {
          await session.close().catch(() => undefined);
          throw error;
        }
      })();
      attempt.catch(() => undefined);
      const deadline = new AbortController();
      const timer = this.#clock.setTimeout(
        () =>
          deadline.abort(
            new KilnError("KILN_CONNECTION_FAILED", `Connecting took longer than ${timeouts.connectMs} ms.`, {
              retryable: true,
              details: { timeoutMs: timeouts.connectMs },
            }),
          ),
        timeouts.connectMs,
      );
      const { session, info } = await raceAbort(
        attempt,
        AbortSignal.any([signal, deadline.signal]),
        "connecting",
      ).finally(() => this.#clock.clearTimeout(timer));
      const connection: Connection = {
        client: opened,
        session,
        certificateManager,
        namespaceArray: info.namespaceArray,
        limits: info.limits,
        maxMonitoredItemsPerCall: info.limits.maxMonitoredItemsPerCall,
        generation: ++this.#generations,
      };
      this.#wire(connection);
      this.#logger.info(
        { endpointUrl, securityMode: mode, namespaces: info.namespaceArray.length, ...info.limits },
        "OPC UA session open",
      );
      return connection;
    } catch (error) {
      if (client) await client.disconnect().catch(() => undefined);
      await certificateManager.dispose().catch(() => undefined);
      throw connectError(error, context);
    }
  }

  async #identity(): Promise<UserIdentityInfo> {
    const identity = this.#options.identity;
    switch (identity.type) {
      case "anonymous":
        return { type: UserTokenType.Anonymous };
      case "username":
        return { type: UserTokenType.UserName, userName: identity.userName, password: identity.password };
      case "certificate":
        return {
          type: UserTokenType.Certificate,
          certificateData: await certificateDer(identity.certificateFile),
          privateKey: await privateKeyPem(identity.privateKeyFile),
        };
    }
  }

  #wire(connection: Connection): void {
    const { client, session } = connection;
    const current = (): boolean => this.#connection === connection && !this.#lifecycle.signal.aborted;
    client.on("connection_lost", () => {
      if (!current()) return;
      this.#logger.warn("OPC UA connection lost; reconnecting");
      this.#lifecycle.setStatus("reconnecting", "connection lost");
      for (const subscription of this.#subscriptions) subscription.connectionLost();
    });
    client.on("backoff", (retry: number, delay: number) => {
      if (current()) this.#logger.debug({ retry, delayMs: delay }, "OPC UA reconnect attempt failed; backing off");
    });
    client.on("connection_reestablished", () => {
      if (current()) this.#afterRepair(connection);
    });
    client.on("close", (error?: Error | null) => {
      // node-opcua gave up repairing the connection: rebuild it from scratch.
      if (error && current()) this.#rebuild(connection, `connection closed: ${redact(error.message, this.#secret)}`);
    });
    session.on("session_closed", () => {
      if (current()) this.#rebuild(connection, "the server closed the session");
    });
    session.on("keepalive_failure", () => {
      if (current()) this.#logger.warn("OPC UA keep-alive failed; the session may be dead");
    });
    session.on("session_restored", () => {
      // Also after a repair on a live channel (the server had dropped the session).
      if (!current()) return;
      this.#logger.info("OPC UA session restored");
      this.#afterRepair(connection);
    });
  }

  /** Runs {@link #reconcile} once node-opcua has repaired the session; coalesces bursts. */
  #afterRepair(connection: Connection): void {
    if (this.#repairing) {
      this.#repairAgain = true;
      return;
    }
    this.#repairing = (async () => {
      do {
        this.#repairAgain = false;
        await this.#reconcile(connection);
      } while (this.#repairAgain && this.#connection === connection && !this.#lifecycle.signal.aborted);
    })().finally(() => {
      this.#repairing = undefined;
    });
  }

  /**
   * After a repair: re-reads the namespace array and limits (a restarted server may number
   * namespaces differently), reports `connected`, and brings every subscription back to its
   * desired state.
   */
  async #reconcile(connection: Connection): Promise<void> {
    try {
      const info = await readServerInfo(connection.session, this.#options.limits);
      if (!sameServerInfo(connection, info)) {
        connection.namespaceArray = info.namespaceArray;
        connection.limits = info.limits;
        connection.maxMonitoredItemsPerCall = info.limits.maxMonitoredItemsPerCall;
        connection.generation = ++this.#generations;
        this.#dataTypes.clear();
        this.#logger.info("the server's namespaces or operation limits changed; re-planning");
      }
    } catch (error) {
      this.#logger.warn({ err: error }, "reading the server's namespaces after a reconnect failed");
    }
    if (this.#connection !== connection || this.#lifecycle.signal.aborted || connection.client.isReconnecting) return;
    this.#lifecycle.setStatus("connected", "connection re-established");
    await this.#reconcileSubscriptions();
  }

  async #reconcileSubscriptions(): Promise<void> {
    await Promise.all(
      [...this.#subscriptions].map((subscription) =>
        subscription.ensure().catch((error: unknown) => {
          this.#logger.warn({ err: error }, "re-creating an OPC UA subscription failed; will retry");
        }),
      ),
    );
  }

  #rebuild(old: Connection, reason: string): void {
    if (this.#lifecycle.signal.aborted || this.#connection !== old) return;
    this.#logger.warn({ reason }, "OPC UA session lost; opening a new one");
    this.#connection = undefined;
    this.#lifecycle.setStatus("reconnecting", reason);
    for (const subscription of this.#subscriptions) subscription.connectionLost();
    const { initialDelayMs, maxDelayMs, randomisationFactor } = this.#options.connectionStrategy;
    let disposed = false;
    void this.#lifecycle.reconnect({
      reason,
      backoff: { initialDelayMs, maxDelayMs, jitter: randomisationFactor },
      attempt: async (lifetime) => {
        if (!disposed) {
          disposed = true;
          await this.#dispose(old);
        }
        const connection = await this.#open(lifetime);
        if (lifetime.aborted) {
          await this.#dispose(connection);
          return;
        }
        this.#connection = connection;
        this.#dataTypes.clear();
      },
      onAttemptFailed: (error, attempt) => {
        this.#logger.warn(
          { code: KilnError.is(error) ? error.code : undefined, attempt },
          "opening a new OPC UA session failed; will retry",
        );
        return "retry";
      },
      connectedReason: () => "session re-created",
      onConnected: () => this.#reconcileSubscriptions(),
    });
  }

  async #dispose(connection: Connection): Promise<void> {
    connection.client.removeAllListeners();
    connection.session.removeAllListeners();
    const bound = async <T>(promise: Promise<T>): Promise<void> => {
      const deadline = new AbortController();
      await Promise.race([
        promise.catch(() => undefined),
        this.#clock.sleep(this.#options.timeouts.requestMs, deadline.signal).catch(() => undefined),
      ]);
      deadline.abort();
    };
    if (this.status === "connected") await bound(connection.session.close(true));
    await bound(connection.client.disconnect());
    await connection.certificateManager.dispose().catch(() => undefined);
  }

  #requireConnection(): Connection {
    const connection = this.#connection;
    const status = this.status;
    if (status === "connected" && connection) return connection;
    if (status === "reconnecting") {
      throw new KilnError("KILN_CONNECTION_FAILED", `The OPC UA connection "${this.name}" is down; reconnecting.`, {
        retryable: true,
        details: { driver: this.name, status },
      });
    }
    throw new KilnError("KILN_NOT_CONNECTED", `The OPC UA driver "${this.name}" is ${status}; call connect() first.`, {
      retryable: status === "connecting",
      details: { driver: this.name, status },
    });
  }

  #addressesOf(tags: readonly Tag[]): OpcuaNodeAddress[] {
    const issues: ValidationIssue[] = [];
    const addresses = tags.map((tag) => {
      let address = this.#addresses.get(tag);
      if (address) return address;
      if (tag.address === undefined) {
        issues.push({
          path: `${tag.name}.address`,
          message: "an OPC UA tag needs a NodeId address, e.g. ns=2;s=Reactor.Pressure",
        });
        return undefined;
      }
      try {
        address = parseNodeAddress(tag.address);
      } catch (error) {
        issues.push({ path: `${tag.name}.address`, message: (error as Error).message });
        return undefined;
      }
      this.#addresses.set(tag, address);
      return address;
    });
    if (issues.length > 0) throw new KilnValidationError("OPC UA tag addresses", issues);
    return addresses as OpcuaNodeAddress[];
  }

  #planFor(tags: readonly Tag[], connection: Connection): ReadPlan {
    const cached = this.#readPlans.get(tags);
    if (cached && cached.generation === connection.generation) return cached;
    const plan = planReads(
      this.#addressesOf(tags),
      connection.namespaceArray,
      connection.limits.maxNodesPerRead,
      connection.generation,
    );
    this.#readPlans.set(tags, plan);
    return plan;
  }

  #dataTypeOf(connection: Connection, nodeId: NodeId, tag: Tag, nodeText: string): Promise<DataType> {
    const key = `${connection.generation}|${nodeId.toString()}`;
    let dataType = this.#dataTypes.get(key);
    if (!dataType) {
      dataType = discoverDataType(connection.session, nodeId, tag, nodeText, this.#secret);
      this.#dataTypes.set(key, dataType);
      dataType.catch(() => this.#dataTypes.delete(key));
    }
    return dataType;
  }

  async #browse(connection: Connection, rootId: NodeId, skipServerObject: boolean): Promise<BrowsedVariable[]> {
    const serverObject = resolveNodeId(ObjectIds.Server).toString();
    const hasProperty = resolveNodeId(ReferenceTypeIds.HasProperty).toString();
    const visited = new Set<string>([rootId.toString()]);
    const variables: { nodeId: NodeId; name: string }[] = [];
    let frontier: NodeId[] = [rootId];
    const batch = connection.limits.maxNodesPerBrowse > 0 ? connection.limits.maxNodesPerBrowse : 500;
    while (frontier.length > 0 && visited.size < MAX_BROWSED_NODES) {
      const next: NodeId[] = [];
      for (let start = 0; start < frontier.length; start += batch) {
        const descriptions: BrowseDescriptionOptions[] = frontier.slice(start, start + batch).map((nodeId) => ({
          nodeId,
          browseDirection: BrowseDirection.Forward,
          referenceTypeId: resolveNodeId(ReferenceTypeIds.HierarchicalReferences),
          includeSubtypes: true,
          nodeClassMask: NodeClassMask.Object | NodeClassMask.Variable,
          resultMask: 0x3f,
        }));
        const results = await browseAll(connection.session, descriptions);
        for (const result of results) {
          for (const reference of result.references ?? []) {
            const child = reference.nodeId as unknown as NodeId;
            const key = child.toString();
            if (visited.has(key) || reference.referenceTypeId.toString() === hasProperty) continue;
            if (skipServerObject && key === serverObject) continue;
            visited.add(key);
            if (reference.nodeClass === NodeClass.Variable) variables.push({ nodeId: child, name: nameOf(reference) });
            else next.push(child);
          }
        }
      }
      frontier = next;
    }
    return this.#describeVariables(connection, variables);
  }

  async #describeVariables(
    connection: Connection,
    variables: readonly { nodeId: NodeId; name: string }[],
  ): Promise<BrowsedVariable[]> {
    const perRead =
      connection.limits.maxNodesPerRead > 0 ? Math.max(1, Math.floor(connection.limits.maxNodesPerRead / 2)) : 1_000;
    const out: BrowsedVariable[] = [];
    for (let start = 0; start < variables.length; start += perRead) {
      const slice = variables.slice(start, start + perRead);
      const values = await connection.session.read(
        slice.flatMap(({ nodeId }) => [
          { nodeId, attributeId: AttributeIds.DataType },
          { nodeId, attributeId: AttributeIds.UserAccessLevel },
        ]),
      );
      for (let index = 0; index < slice.length; index++) {
        const { nodeId, name } = slice[index]!;
        const dataTypeValue = values[index * 2];
        const accessValue = values[index * 2 + 1];
        const dataTypeId = dataTypeValue?.statusCode.isGood() ? (dataTypeValue.value.value as NodeId) : undefined;
        let builtIn: DataType | undefined;
        if (
          dataTypeId &&
          dataTypeId.namespace === 0 &&
          typeof dataTypeId.value === "number" &&
          dataTypeId.value <= 25
        ) {
          builtIn = dataTypeId.value as DataType;
        }
        const accessLevel = accessValue?.statusCode.isGood() ? Number(accessValue.value.value) : 1;
        const kilnType = builtIn === undefined ? undefined : tagDataTypeOf(builtIn);
        out.push({
          name,
          address: formatNodeAddress(nodeId, connection.namespaceArray),
          ...(kilnType ? { dataType: kilnType } : {}),
          ...(dataTypeId
            ? {
                nativeType:
                  builtIn === undefined ? formatNodeAddress(dataTypeId, connection.namespaceArray) : DataType[builtIn],
              }
            : {}),
          access: (accessLevel & 0x02) !== 0 ? "readwrite" : "read",
        });
      }
    }
    return out;
  }
}

function rejected(tag: Tag, nodeText: string, statusCode: number, reason: string | undefined): KilnError {
  const statusName = statusNameOf(statusCode);
  return new KilnError(
    "KILN_WRITE_REJECTED",
    `The OPC UA server refused the write of tag "${tag.name}" to ${nodeText}: ${statusName}${reason ? ` (${reason})` : ""}.`,
    { details: { tag: tag.name, nodeId: nodeText, statusCode: statusCode >>> 0, statusName } },
  );
}

async function discoverDataType(
  session: ClientSession,
  nodeId: NodeId,
  tag: Tag,
  nodeText: string,
  secret: string | undefined,
): Promise<DataType> {
  let dataValue: DataValue;
  try {
    dataValue = await session.read({ nodeId, attributeId: AttributeIds.DataType });
  } catch (error) {
    throw requestError(error, "write", secret);
  }
  if (!dataValue.statusCode.isGood()) throw rejected(tag, nodeText, dataValue.statusCode.value, "reading its DataType");
  const dataTypeId = dataValue.value.value as NodeId;
  if (dataTypeId.namespace === 0 && typeof dataTypeId.value === "number" && dataTypeId.value <= 25) {
    return dataTypeId.value as DataType;
  }
  try {
    return await findBasicDataType(session, dataTypeId);
  } catch (error) {
    throw requestError(error, "write", secret);
  }
}

interface ServerInfo {
  readonly namespaceArray: readonly string[];
  readonly limits: OperationLimits;
}

async function readServerInfo(session: ClientSession, caps: ResolvedOpcuaDriverOptions["limits"]): Promise<ServerInfo> {
  const values = await session.read(SERVER_INFO_NODES.map((node) => ({ ...node })));
  const namespaces = values[0];
  const namespaceArray =
    namespaces?.statusCode.isGood() && Array.isArray(namespaces.value.value)
      ? (namespaces.value.value as string[])
      : ["http://opcfoundation.org/UA/"];
  const limit = (index: number, cap: number | undefined): number => {
    const value = values[index];
    const server = value?.statusCode.isGood() && typeof value.value.value === "number" ? value.value.value : 0;
    if (server > 0 && cap !== undefined) return Math.min(server, cap);
    return server > 0 ? server : (cap ?? 0);
  };
  return {
    namespaceArray,
    limits: {
      maxNodesPerRead: limit(1, caps.maxNodesPerRead),
      maxNodesPerWrite: limit(2, caps.maxNodesPerWrite),
      maxNodesPerBrowse: limit(3, caps.maxNodesPerBrowse),
      maxMonitoredItemsPerCall: limit(4, caps.maxMonitoredItemsPerCall),
    },
  };
}

function sameServerInfo(connection: Connection, info: ServerInfo): boolean {
  const a = connection.limits;
  const b = info.limits;
  return (
    connection.namespaceArray.length === info.namespaceArray.length &&
    connection.namespaceArray.every((uri, index) => uri === info.namespaceArray[index]) &&
    a.maxNodesPerRead === b.maxNodesPerRead &&
    a.maxNodesPerWrite === b.maxNodesPerWrite &&
    a.maxNodesPerBrowse === b.maxNodesPerBrowse &&
    a.maxMonitoredItemsPerCall === b.maxMonitoredItemsPerCall
  );
}

function nameOf(reference: ReferenceDescription): string {
  return reference.displayName?.text ?? reference.browseName?.name ?? reference.nodeId.toString();
}
