import { homedir } from "node:os";
import path from "node:path";
import {
  type Clock,
  type DriverStatus,
  KilnError,
  KilnValidationError,
  type Logger,
  type PlcDriver,
  QualityCodes,
  type Sample,
  silentLogger,
  SystemClock,
  type Tag,
  type TagValue,
  type TimerHandle,
  type ValidationIssue,
} from "@kiln/core";
import {
  abortError,
  afterEventLoopTurn,
  type BrowsedVariable,
  checkTagValue,
  ConnectionLifecycle,
  type Disposer,
  type DriverStatusChange,
  parseOrThrow,
  type PlcDriverCapabilities,
  raceAbort,
  reconnectDelay,
  severityOfStatusCode,
  type SubscriptionOptions,
  TagListCache,
} from "@kiln/core/driver-kit";
import type { DataValue, NodeId, ReadValueIdOptions } from "node-opcua-client";
import type { Connection, OutstandingRequest, ServerInfo, ServiceFaultAnswer } from "./opcua-connection";
import type { ConnectErrorContext } from "./opcua-errors";
import {
  opcuaDriverOptionsSchema,
  type OpcuaDriverOptions,
  type ResolvedOpcuaDriverOptions,
} from "./opcua-driver-options";
import { verifiedNamespaces } from "./opcua-namespace-table";
import type { OpcuaNodeAddress } from "./opcua-node-id";
import { deleteSubscriptions, heldSubscriptionIds, OrphanSubscriptionSweeper } from "./opcua-orphan-subscriptions";
import type { ReadPlan } from "./opcua-read-plan";
import { parseEndpointUrl, type OpcTcpEndpoint } from "./opcua-endpoint-url";
import { delayRepairs } from "./opcua-repair-delay";
import { asApplicationCall, upkeepPurpose } from "./opcua-request-origin";
import { loadOpcuaRuntime, type OpcuaRuntime } from "./opcua-runtime-loader";
import { NODE_OPCUA_MIN_TRANSACTION_MS } from "./opcua-session-lifetime";
import { linkSilenceMs, smoothedMaxMs } from "./opcua-subscription-timing";
import type { OpcuaTagSubscription } from "./opcua-tag-subscription";
import type { OpcuaWriteTarget } from "./opcua-values";

/** Service results that say the server no longer has the session (it closed or dropped it). */
const SESSION_FAULTS: ReadonlySet<string> = new Set(["BadSessionClosed", "BadSessionIdInvalid"]);

/** Requests of node-opcua's repair itself: their session fault is its normal path (re-activate, else re-create). */
const REPAIR_OWN_REQUESTS: ReadonlySet<string> = new Set([
  "ActivateSessionRequest",
  "CreateSessionRequest",
  "CloseSessionRequest",
]);

/**
 * How long a subscription id seen in a PublishResponse must stay unknown to node-opcua before
 * the driver deletes it as an orphan: node-opcua registers one it has just created a moment
 * after the server answers.
 */
const ORPHAN_GRACE_MS = 1_000;

/**
 * A Kiln {@link PlcDriver} for OPC UA servers (Siemens S7-1500, Beckhoff TwinCAT, CODESYS,
 * open62541, node-opcua...), built on node-opcua.
 *
 * - Tags are addressed by NodeId in their `address`: `ns=2;s=Reactor.Pressure`, `ns=3;i=1001`,
 *   `ns=4;g=<guid>`, or `nsu=<namespace uri>;s=...` resolved against the server's namespace
 *   array after connecting (so an address survives servers that number namespaces differently).
 * - Secure by default: SignAndEncrypt with Basic256Sha256; an unknown server certificate is
 *   rejected unless trusted (`pki.trustedServerCertificates`); security `None` logs a warning
 *   once, and a second one with a `username` identity (the password is then encrypted for a
 *   server certificate nothing verifies). Passwords never appear in logs or errors.
 * - `read` sends one ReadRequest per scan, split by the server's MaxNodesPerRead (read once
 *   after connecting); the plan is cached per tag array.
 * - `write` reads each node's DataType, ValueRank and ArrayDimensions once per session (again
 *   after a `BadTypeMismatch` reply) and converts the value to it exactly or refuses; read-only tags
 *   fail with `KILN_TAG_NOT_WRITABLE` before any traffic; a server refusal fails with
 *   `KILN_WRITE_REJECTED` carrying `statusCode` and `statusName`.
 * - `subscribe` creates one OPC UA subscription per call, with monitored items created in
 *   batches of MaxMonitoredItemsPerCall.
 * - Reconnection: node-opcua gets a complete connection strategy; a dead session is detected by
 *   keep-alive; after a server restart the session, subscriptions and monitored items are
 *   re-created without user action, and items the server refuses (BadNodeIdUnknown while it
 *   starts) are retried with backoff. Subscribed tags turn `uncertain` while the link is down.
 *   A stalled link (TCP open, no bytes) counts as down once the server has answered nothing for
 *   2 × the session keep-alive (`timeouts.keepAliveMs`, or half a shorter granted session timeout)
 *   plus its measured response time (decaying with a half-life of 2 keep-alive periods, capped at
 *   `timeouts.requestMs`), and not before the deadline (`timeouts.requestMs`) of a request in
 *   flight, and is reconnected at once (docs/adr/0022, amendments fix13e, fix13f and fix13g). A
 *   request the server answers with a session fault (BadSessionClosed, BadSessionIdInvalid: the
 *   server dropped the session) turns subscribed tags `uncertain` at once and repairs the session.
 *   A subscription the server holds for the session but nothing owns (its creation reply was
 *   lost in an outage) is deleted once its keep-alive arrives (docs/adr/0022).
 * - node-opcua is loaded by the first `connect()` (and `OpcuaSimulator.start()`), not when the
 *   package is imported: importing `@kiln/plc-opcua` prints nothing and changes no global.
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
  /** Hit only while the array holds the same tags in the same order (an array changed in place is planned anew). */
  readonly #readPlans = new TagListCache<ReadPlan>();
  readonly #addresses = new WeakMap<Tag, OpcuaNodeAddress>();
  readonly #dataTypes = new Map<string, Promise<OpcuaWriteTarget>>();
  /**
   * Server-side ids of subscriptions closed while the connection was down, each with the session it
   * belongs to: deleted once that same session is re-activated (on another session the id is not
   * provably Kiln's).
   */
  readonly #deleteLater = new Map<number, string>();
  /** Deletes subscriptions the server holds for the session but nothing here owns (a creation reply lost in an outage). */
  readonly #orphans: OrphanSubscriptionSweeper;
  /** node-opcua and the modules built on it, loaded by the first `connect()`. */
  #runtime: OpcuaRuntime | undefined;
  #connection: Connection | undefined;
  /**
   * The repaired connection whose subscriptions are being re-created, before `connected` is reported,
   * with the subscriptions that failed to be re-created on it so far.
   */
  #reconciling: { readonly connection: Connection; readonly failures: unknown[] } | undefined;
  /**
   * The rebuild attempt in progress ({@link #rebuild}): its connection once opened, and what ends
   * the attempt (its deadline, or a loss of that connection before it reported `connected`).
   */
  #rebuildAttempt: { connection: Connection | undefined; readonly abandon: AbortController } | undefined;
  /**
   * Ends every request still out on a connection once it is disposed ({@link #dispose}): a request
   * node-opcua holds for a session the server closed under it is never settled otherwise, and a
   * subscription's serialised `ensure()` waiting for it would hold every later one (adv F2).
   */
  readonly #retired = new WeakMap<Connection, AbortController>();
  #repairing: Promise<void> | undefined;
  #repairAgain = false;
  /**
   * Stops the repair watchdog ({@link #armRepairWatchdog}) of the connection node-opcua is
   * repairing; undefined when none runs.
   */
  #repairWatchdog: AbortController | undefined;
  /** Whether the log told that node-opcua's repairs cannot be held back (`delayRepairs` found no method); once. */
  #repairDelayMissingTold = false;
  /** Counts session losses, so a repair overtaken by a new loss does not report `connected`. */
  #losses = 0;
  #warnedInsecure = false;
  /**
   * The trust check of the server certificate of each channel node-opcua re-opened: it does not
   * check it again itself, so a certificate the user removed from trusted/ would stay trusted.
   */
  readonly #certificateChecks = new WeakMap<Connection, Promise<boolean>>();
  /** Numbers each session layout (namespaces, limits), so plans and data types cached for an older one are not reused. */
  #generations = 0;
  /** Upkeep purposes given the application's deadline after a stall declared on them (fix13w). */
  readonly #slowUpkeep = new Set<string>();
  /**
   * The next read of the namespace table ({@link #keepNamespacesFresh}): its connection and timer,
   * and the attempt of its backoff.
   */
  #namespaceRead: { readonly connection: Connection; readonly timer: TimerHandle } | undefined;
  #namespaceAttempt = 0;
  /** The last refusal of the namespace table read that was warned about ({@link #readNamespaces}). */
  #namespaceRefusal: string | undefined;
  /** The namespace URIs of every `nsu=` tag address parsed (read, write, subscribe). */
  readonly #wantedNamespaces = new Set<string>();
  /** The link watchdog's next check of each open connection ({@link #watchLink}). */
  readonly #linkChecks = new WeakMap<Connection, TimerHandle>();
  /**
   * Per connection node-opcua is repairing: the session's authentication token when the loss was
   * reported, and the requests sent since (by handle: name and the token they carried), so a session
   * fault on a request of the session node-opcua re-created is told from one of its normal repair
   * ({@link #sessionClosedInRepair}; adv13g MEDIUM).
   */
  readonly #repairRequests = new WeakMap<
    Connection,
    { readonly lostToken: string; readonly sent: Map<number, { readonly name: string; readonly token: string }> }
  >();

  /**
   * Validates `options` and prepares the driver. No connection is opened: call {@link connect}.
   * @throws KilnValidationError naming each bad field (`security.mode`, `timeouts.requestMs`...).
   */
  constructor(options: OpcuaDriverOptions) {
    this.#options = parseOrThrow(opcuaDriverOptionsSchema, options, "OPC UA driver options");
    // The schema checked the URL (parseEndpointUrl); node-opcua is given clientUrl (an IPv6 zone left out).
    const url = new URL(
      (parseEndpointUrl(this.#options.endpointUrl) as OpcTcpEndpoint).clientUrl.replace(/^opc\.tcp:/i, "http:"),
    );
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
    this.#orphans = new OrphanSubscriptionSweeper({
      clock: this.#clock,
      logger: this.#logger,
      session: () => (this.status === "connected" ? this.#connection?.session : undefined),
      graceMs: ORPHAN_GRACE_MS,
      // A freed slot: groups the server refused for its limit try again at once (fix13k-slots).
      deleted: () => {
        for (const subscription of this.#subscriptions) subscription.retryNow();
      },
      publishRequest: () => new this.#rt.PublishRequest({ subscriptionAcknowledgements: [] }),
      probeTimeoutMs: this.#options.timeouts.requestMs,
    });
    this.#lifecycle.onStatusChange((change) => {
      if (change.to === "failed") {
        this.#logger.error(
          { code: change.code, reason: change.reason },
          "the OPC UA server refused the identity; not reconnecting (retrying a refused log-in can lock the account). Fix the identity option and call connect() again.",
        );
        // No more reconnects (node-opcua's repair or the driver's rebuild): the last values are no
        // longer "last usable" but bad, with the refusal as reason (adv13c L2).
        const reason = `the OPC UA server refused the identity; not reconnecting (${change.reason ?? change.code ?? "failed"})`;
        for (const subscription of this.#subscriptions) subscription.connectionFailed(reason);
      }
    });
  }

  /** The node-opcua dependent modules; loaded before any connection exists. */
  get #rt(): OpcuaRuntime {
    if (this.#runtime) return this.#runtime;
    throw new KilnError(
      "KILN_NOT_CONNECTED",
      `The OPC UA driver "${this.name}" is ${this.status}; call connect() first.`,
      {
        details: { driver: this.name, status: this.status },
      },
    );
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
        this.#runtime ??= await raceAbort(loadOpcuaRuntime(), lifetime, "loading node-opcua");
        this.#connection = await this.#open(lifetime);
      },
      signal,
      { connecting: `connecting to ${this.#options.endpointUrl}`, connected: "session open" },
    );
  }

  /** Closes subscriptions, the session and the connection, and stops reconnecting. Idempotent. */
  close(): Promise<void> {
    return this.#lifecycle.close(async () => {
      this.#disarmRepairWatchdog();
      if (this.#namespaceRead) this.#clock.clearTimeout(this.#namespaceRead.timer);
      this.#namespaceRead = undefined;
      const subscriptions = [...this.#subscriptions];
      this.#subscriptions.clear();
      await Promise.all(subscriptions.map((subscription) => subscription.close(false)));
      this.#orphans.clear();
      const connection = this.#connection;
      this.#connection = undefined;
      // Bounded like a rebuild's upkeep: a stalled link must not hold close() (and the system's
      // stop) for the whole requestMs, up to 60 s (adv13 M1).
      if (connection) {
        await this.#dispose(connection, Math.min(this.#options.timeouts.requestMs, this.#silenceBound(connection)));
      }
      await this.#repairing;
      this.#dataTypes.clear();
    }, "closed by the application");
  }

  /**
   * Reads `tags` in one ReadRequest (several when the server's MaxNodesPerRead requires) and
   * returns one sample per tag, in order. A tag the server cannot read comes back `bad` with
   * the server's status code; an `nsu=` tag whose namespace is not on the server `BadNodeIdUnknown`,
   * and while the namespace array is not read Good on this session `BadWaitingForInitialData`
   * ("namespace table not read yet: ...", docs/adr/0022, amendment fix13t).
   *
   * @throws KilnValidationError when a tag has no valid OPC UA address (`<tag>.address`).
   * @throws KilnError `KILN_NOT_CONNECTED`, `KILN_CONNECTION_FAILED` or `KILN_TIMEOUT`
   *   (retryable) when the call as a whole fails.
   */
  read(requested: readonly Tag[], signal?: AbortSignal): Promise<Sample[]> {
    // Refused without I/O while reconnecting: a caller's tight retry loop must still let the event
    // loop turn, or the driver's own reconnect timer never runs (sibling of adv12x LOW, issue 12).
    return afterEventLoopTurn(this.#read(requested, signal));
  }

  async #read(requested: readonly Tag[], signal?: AbortSignal): Promise<Sample[]> {
    const lifetime = this.#lifecycle.signal;
    const connection = this.#requireConnection();
    if (requested.length === 0) return [];
    const plan = this.#planFor(requested, connection);
    // The tags as planned: a caller changing its array while the read awaits must not rename the samples
    // (adv12b H1: another node's value under the new tag's name, marked good).
    const tags = requested.slice();
    let results: DataValue[][];
    try {
      // Ended by the caller's signal, or by close() (KILN_ABORTED at once, adv13 M1).
      results = await raceAbort(
        raceAbort(
          asApplicationCall(() =>
            Promise.all(
              plan.chunks.map((chunk) => connection.session.read(chunk.nodesToRead as ReadValueIdOptions[], 0)),
            ),
          ),
          signal,
          "the OPC UA read",
        ),
        lifetime,
        "the OPC UA read",
      );
    } catch (error) {
      throw this.#requestError(error, "read");
    }
    const now = this.#clock.now();
    const samples = new Array<Sample>(tags.length);
    plan.chunks.forEach((chunk, chunkIndex) => {
      const values = results[chunkIndex]!;
      chunk.indexes.forEach((tagIndex, position) => {
        const dataValue = values[position];
        samples[tagIndex] = dataValue
          ? this.#rt.sampleFromDataValue(tags[tagIndex]!, dataValue, now)
          : this.#rt.badSample(
              tags[tagIndex]!,
              QualityCodes.BadInternalError,
              "the server returned too few results",
              now,
            );
      });
    });
    for (const [index, { statusCode, reason }] of plan.unresolved) {
      samples[index] = this.#rt.badSample(tags[index]!, statusCode, reason, now);
    }
    if (plan.unresolved.size > 0) this.#keepNamespacesFresh(connection);
    return samples;
  }

  /**
   * Writes `value` to `tag`'s node, converted to the node's DataType and checked against its
   * ValueRank/ArrayDimensions (read once per node and session, in one request; read again after a
   * repaired session, and once more when the server answers `BadTypeMismatch`, the write then
   * re-sent once if the node's type had changed). The conversion is exact or refused (see the
   * package's `variantForWrite`: integers into Float/Double exactly, a float tag's value into a
   * Float rounded but never to 0 or ±Infinity, DateTime in whole ms).
   *
   * The value is first checked against the tag by the same rules as the control system's writes
   * (core's `checkTagValue`: the tag's data type, its `range`, its `arrayLength`), so a direct
   * write is refused exactly as one through the control system would be; an array tag's value may
   * be a plain array or a typed array (docs/adr/0038-array-tags.md).
   *
   * @throws KilnError `KILN_TAG_NOT_WRITABLE` for a read-only tag, before any traffic;
   *   `KILN_VALIDATION` when the value is not of the tag's type (a fraction or 70000 for an `int16`
   *   tag, a number for a `bool` tag, too many elements for the `arrayLength`; nothing is sent);
   *   `KILN_OUT_OF_RANGE` when a number is outside the tag's `range` (`details.min`, `details.max`;
   *   a bigint or an array element outside it is `KILN_VALIDATION`) or the value does not fit the
   *   node's type exactly (`details.value`, `details.nodeDataType`; nothing is sent);
   *   `KILN_WRITE_REJECTED` `BadTypeMismatch` when the value's shape does not fit the node's
   *   (`details.valueShape`, `details.nodeShape`; nothing is sent), or when the server refuses
   *   (BadNotWritable, BadUserAccessDenied, BadTypeMismatch, BadOutOfRange...) with
   *   `details.statusCode` and `details.statusName`; `KILN_CONNECTION_FAILED` (retryable) for an
   *   `nsu=` tag while the server's namespace array is not read Good on this session (after a
   *   reconnect, or answered Bad), with `details.tag`, `details.nodeId` and `details.reason`
   *   (nothing is sent: its index may be another namespace's; docs/adr/0022, amendment fix13t).
   */
  write(tag: Tag, value: TagValue, signal?: AbortSignal): Promise<void> {
    // As read(): refused at once while reconnecting, so it lets the event loop turn.
    return afterEventLoopTurn(this.#write(tag, value, signal));
  }

  async #write(tag: Tag, value: TagValue, signal?: AbortSignal): Promise<void> {
    if (tag.access !== "readwrite") {
      throw new KilnError("KILN_TAG_NOT_WRITABLE", `Tag "${tag.name}" is read-only; declare access "readwrite".`, {
        details: { tag: tag.name },
      });
    }
    const plain = plainTagValue(value);
    const problem = checkTagValue(tag, plain);
    if (problem !== undefined) {
      const { range } = tag;
      if (range && typeof plain === "number" && Number.isFinite(plain) && (plain < range.min || plain > range.max)) {
        throw new KilnError("KILN_OUT_OF_RANGE", `Cannot write ${tag.name}: ${problem}.`, {
          details: { tag: tag.name, value: plain, min: range.min, max: range.max },
        });
      }
      throw new KilnValidationError(`write to ${tag.name}`, [{ path: "value", message: problem }]);
    }
    // Whether a WriteRequest of this call may have reached the server: every failure says so in
    // `details.sent` (the driver contract; docs/adr/0022, amendment fix13y).
    let sent = false;
    try {
      await this.#writeChecked(tag, plain, signal, (value) => (sent = value));
    } catch (error) {
      throw error instanceof KilnValidationError ? error : this.#rt.withWriteSent(error, sent);
    }
  }

  /**
   * `write` after the value's checks. `sending(true)` right before a WriteRequest is handed to
   * `session.write`; `sending(false)` once it is known not applied (the server answered it, refused
   * it with a service fault, or node-opcua failed it before the wire).
   */
  async #writeChecked(
    tag: Tag,
    plain: ReturnType<typeof plainTagValue>,
    signal: AbortSignal | undefined,
    sending: (sent: boolean) => void,
  ): Promise<void> {
    // Aborted by close(): a call still out then rejects KILN_ABORTED at once (adv13 M1).
    const lifetime = this.#lifecycle.signal;
    const connection = this.#requireConnection();
    const address = this.#addressesOf([tag])[0]!;
    const unbound = this.#rt.namespaceProblem(address, connection);
    if (unbound?.unread) {
      // The indexes the address would bind to may be another namespace's on this server run.
      throw new KilnError(
        "KILN_CONNECTION_FAILED",
        `Cannot write tag "${tag.name}" (${address.text}) yet: ${unbound.reason}; the driver retries reading it.`,
        { retryable: true, details: { tag: tag.name, nodeId: address.text, reason: unbound.reason } },
      );
    }
    const nodeId = this.#rt.bindNodeAddress(address, connection);
    if (!nodeId) {
      this.#keepNamespacesFresh(connection);
      throw this.#rt.writeRejected(
        tag,
        address.text,
        QualityCodes.BadNodeIdUnknown,
        unbound?.reason ?? `namespace ${address.namespaceUri} is not on the server`,
      );
    }
    const send = async (target: OpcuaWriteTarget): Promise<number> => {
      const variant = this.#rt.variantForWrite(plain, target, tag, address.text);
      // Ended before it is sent: nothing goes out (raceAbort alone would still send it).
      if (signal?.aborted) throw abortError(signal, "the OPC UA write");
      if (lifetime.aborted) throw abortError(lifetime, "the OPC UA write");
      sending(true);
      // The WriteRequest node-opcua builds: whether it went on the wire decides `sent` (fix13z).
      let request: object | undefined;
      try {
        const status = await raceAbort(
          raceAbort(
            asApplicationCall(
              () =>
                connection.session.write({
                  nodeId,
                  attributeId: this.#rt.AttributeIds.Value,
                  value: { value: variant },
                }),
              (sent) => {
                if (sent.constructor.name === "WriteRequest") request = sent;
              },
            ),
            signal,
            "the OPC UA write",
          ),
          lifetime,
          "the OPC UA write",
        );
        // Answered: applied (Good) or refused with this status, either way known.
        sending(false);
        return status.value;
      } catch (error) {
        if (this.#rt.writeNotApplied(error, request && this.#rt.wireFate(request))) sending(false);
        throw this.#requestError(error, "write");
      }
    };
    const discover = (): Promise<OpcuaWriteTarget> =>
      raceAbort(
        raceAbort(
          asApplicationCall(() => this.#dataTypeOf(connection, nodeId, tag, address.text)),
          signal,
          "the OPC UA write",
        ),
        lifetime,
        "the OPC UA write",
      );
    const target = await discover();
    let status = await send(target);
    if (status >>> 0 === QualityCodes.BadTypeMismatch) {
      // The node may have changed type since it was read (a server restarted with a new
      // program keeps the session): read it again, and write once more if it did change.
      this.#forgetDataType(connection, nodeId);
      const fresh = await discover();
      if (!sameWriteTarget(fresh, target)) status = await send(fresh);
    }
    if (severityOfStatusCode(status) === "bad") {
      throw this.#rt.writeRejected(tag, address.text, status, undefined);
    }
  }

  /**
   * Delivers value changes of `tags` through one OPC UA subscription until the returned
   * disposer is called. Sampling interval, queue size and (absolute, numeric tags only)
   * deadband come from `options`. Items the server refuses, one by one or in a CreateMonitoredItems
   * refused as a whole or not answered (BadTooManyMonitoredItems, BadTimeout...), are reported
   * `bad` with the status and the reason, and retried on `monitoredItemRetry`.
   * The driver re-creates the subscription itself after a reconnect. When the server refuses to
   * re-create it (BadTooManySubscriptions, a timeout...), every tag of the call is delivered
   * `bad` with the server's status code and the reason, the repair's status change says so
   * (`reconnecting` with the reason, then `connected` with the subscriptions still missing), and
   * the subscription is retried on the `monitoredItemRetry` backoff until it is back.
   *
   * @throws KilnError `KILN_NOT_CONNECTED` before `connect()`; `KILN_DEVICE_ERROR` when the
   *   server refuses the subscription itself (BadTooManySubscriptions...).
   */
  subscribe(
    tags: readonly Tag[],
    options: SubscriptionOptions,
    onSamples: (samples: Sample[]) => void,
  ): Promise<Disposer> {
    // As read(): settled without I/O while reconnecting, it must still let the event loop turn.
    return afterEventLoopTurn(this.#subscribe(tags, options, onSamples));
  }

  async #subscribe(
    tags: readonly Tag[],
    options: SubscriptionOptions,
    onSamples: (samples: Sample[]) => void,
  ): Promise<Disposer> {
    if (this.status !== "reconnecting") this.#requireConnection();
    const addresses = this.#addressesOf(tags);
    if (tags.length === 0) return () => undefined;
    const subscription = new this.#rt.OpcuaTagSubscription(tags, addresses, options, onSamples, {
      logger: this.#logger,
      clock: this.#clock,
      retry: this.#options.monitoredItemRetry,
      timing: this.#options.subscriptions,
      ...(this.#options.random ? { random: this.#options.random } : {}),
      connection: () =>
        this.status === "connected" ||
        (this.#reconciling !== undefined && this.#reconciling.connection === this.#connection)
          ? this.#connection
          : undefined,
      deleteLater: (subscriptionId) => {
        const session = this.#connection?.session;
        if (session) this.#deleteLater.set(subscriptionId, session.sessionId.toString());
      },
      recreationFailed: (error) => this.#subscriptionFailed(error),
      publishingStalled: (reason) => this.#publishingStalled(reason),
      subscriptionsRefused: (session) => this.#orphans.probe(session),
    });
    this.#subscriptions.add(subscription);
    try {
      await asApplicationCall(() => subscription.ensure());
    } catch (error) {
      this.#subscriptions.delete(subscription);
      await subscription.close();
      throw this.#requestError(error, "subscribe");
    }
    if (this.#connection) this.#keepNamespacesFresh(this.#connection);
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
   * folders; a Variable root lists itself alone. Each result carries an `nsu=` address ready for a
   * tag definition.
   *
   * The list is complete or the call fails: a subtree the server does not browse is never left
   * out silently, and a failed browse releases its continuation points.
   *
   * @throws KilnValidationError when `root` is not a NodeId, or is a node that holds no variables
   *   (a Method, a DataType: the message names its NodeClass); `KILN_NOT_FOUND` when its
   *   namespace is not on the server or the node does not exist (BadNodeIdUnknown or
   *   BadNodeIdInvalid, in `details.statusName`), rather than an empty list;
   *   `KILN_DEVICE_ERROR` when the server does not browse a node Good (the root with another
   *   status, or any node below it: `details.node`, `details.statusName`), retryable for a
   *   shortage (BadNoContinuationPoints, BadServerTooBusy...), not for BadUserAccessDenied.
   */
  browse(root?: string): Promise<BrowsedVariable[]> {
    // As read(): refused without I/O while reconnecting, it must still let the event loop turn.
    return afterEventLoopTurn(this.#browse(root));
  }

  async #browse(root?: string): Promise<BrowsedVariable[]> {
    const connection = this.#requireConnection();
    // Every browsed address is formatted from the namespace table: refused, whatever the root,
    // until it is read Good on this session (docs/adr/0022, amendment fix13w).
    verifiedNamespaces(connection, "browse");
    let rootId: NodeId = this.#rt.resolveNodeId(this.#rt.ObjectIds.ObjectsFolder);
    if (root !== undefined) {
      let address: OpcuaNodeAddress;
      try {
        address = this.#rt.parseNodeAddress(root);
      } catch (error) {
        throw new KilnValidationError("browse root", [{ path: "root", message: (error as Error).message }]);
      }
      const resolved = this.#rt.bindNodeAddress(address, connection);
      if (!resolved) {
        throw new KilnError("KILN_NOT_FOUND", `Namespace ${address.namespaceUri} is not on the server.`, {
          details: { root },
        });
      }
      rootId = resolved;
    }
    try {
      return await asApplicationCall(() => this.#rt.browseVariables(connection, rootId, root === undefined));
    } catch (error) {
      throw this.#requestError(error, "browse");
    }
  }

  /** Opens the channel and the session; `signal` (the call's and the lifetime's) aborts it. */
  async #open(signal: AbortSignal, connectStageMs?: number): Promise<Connection> {
    const { endpointUrl, security } = this.#options;
    if (security.mode === "None" && !this.#warnedInsecure) {
      this.#warnedInsecure = true;
      this.#logger.warn(
        { endpointUrl },
        "OPC UA security mode is None: traffic is neither signed nor encrypted. Use Sign or SignAndEncrypt outside a lab.",
      );
      if (this.#options.identity.type === "username") {
        // The password is encrypted with the certificate the endpoint offers, which the secure
        // channel never checks in mode None: anyone answering at this address can read it.
        this.#logger.warn(
          { endpointUrl },
          "OPC UA security mode None with a user name: the password is encrypted for a server certificate that is not verified, so an impostor server can read it. Use Sign or SignAndEncrypt with a trusted server certificate.",
        );
      }
    }
    const retired = new AbortController();
    const connection = await this.#rt.openOpcuaConnection(
      {
        options: this.#options,
        name: this.name,
        pkiDir: this.#pkiDir,
        secret: this.#secret,
        clock: this.#clock,
        generation: () => ++this.#generations,
        lifetime: AbortSignal.any([this.#lifecycle.signal, retired.signal]),
        ...(connectStageMs === undefined ? {} : { connectStageMs }),
      },
      signal,
    );
    this.#retired.set(connection, retired);
    this.#wire(connection);
    this.#logger.info(
      {
        endpointUrl,
        securityMode: security.mode,
        namespaces: connection.namespacesUnread === undefined ? connection.namespaceArray.length : undefined,
        ...connection.limits,
      },
      "OPC UA session open",
    );
    if (connection.namespacesUnread !== undefined) {
      this.#logger.warn(
        { reason: connection.namespacesUnread },
        "the server's namespace table was not read; nsu= tags stay bad until it is, retrying on the backoff",
      );
    }
    this.#keepNamespacesFresh(connection);
    return connection;
  }

  #wire(connection: Connection): void {
    const { client, session } = connection;
    const current = (): boolean => this.#connection === connection && !this.#lifecycle.signal.aborted;
    client.on("connection_lost", () => {
      // Publish requests of the lost channel are never answered.
      connection.publishes.clear();
      this.#repairRequests.get(connection)?.sent.clear();
      if (connection.stalled) {
        // The link watchdog broke the channel and already reported the loss with its reason.
        connection.stalled = false;
        if (this.status === "reconnecting") return;
      }
      if (current()) this.#sessionLost("connection lost");
    });
    this.#watchLink(connection);
    releaseSocketTimeout(connection);
    // A loss that follows others in the kit's window holds node-opcua's repair back on the backoff (#sessionLost).
    const delayed = delayRepairs(
      client,
      () => {
        const waitMs = connection.repairWaitMs;
        connection.repairWaitMs = 0;
        return waitMs;
      },
      this.#clock,
      this.#lifecycle.signal,
    );
    if (!delayed && !this.#repairDelayMissingTold) {
      // An unknown node-opcua version without the internal method: its repairs start at its own first step.
      this.#repairDelayMissingTold = true;
      this.#logger.warn(
        "node-opcua's client has no _repairConnection: its repairs of a lost channel are not held back on the reconnect backoff (a server dropping every session is asked for a new one every ~1 s)",
      );
    }
    client.on("reconnection_attempt_has_failed", (error: unknown) => {
      // node-opcua's own reconnect loop (TCP, secure channel, certificate): each attempt's reason.
      if (!current()) return;
      this.#repairProgress(connection);
      const failure = this.#connectError(error);
      this.#lifecycle.attemptFailed(failure);
      // node-opcua backs off only while the TCP connect fails; once a channel is refused (an
      // untrusted or changed server certificate...) it tries again at once, hundreds of times a
      // second. Repeating cannot help until the configuration or trust changes: leave its loop
      // and reopen on the driver's capped backoff, each attempt with the PKI folders read afresh.
      if (!failure.retryable) this.#rebuild(connection, failure.message, { delayFirst: true });
    });
    client.on("after_reconnection", () => {
      releaseSocketTimeout(connection);
      connection.failedConnectAttempts = 0;
      // A channel opened: progress. The session's re-activation that follows takes a few round
      // trips, which on a slow link (seconds each) must not count against the repair watchdog
      // from the last failed attempt (docs/adr/0022, amendment fix13x).
      if (current()) this.#repairProgress(connection);
      if (current()) this.#certificateChecks.set(connection, this.#recheckServerCertificate(connection));
    });
    client.on("backoff", (retry: number, delay: number) => {
      if (!current()) return;
      this.#repairProgress(connection);
      this.#logger.debug({ retry, delayMs: delay }, "OPC UA reconnect attempt failed; backing off");
      // node-opcua backs off after a failed attempt to open the TCP connection or the secure
      // channel over it (refused, timed out, handshake unanswered) and does not pass on which or
      // why: the message claims no more than that (adv13s L5), but names the stage's time bound
      // (adv13c M4: a link slower than it could never connect and the reason did not say so):
      // 2 keep-alives + 2 response times, doubled per failed attempt, at most timeouts.connectMs
      // (connectStageMs). The bound named is the one the failed attempt was given: the timeout of
      // the transport node-opcua's retries reuse (fix13w, adv13v L3; fix13x).
      const appliedMs = this.#rt.appliedConnectStageMs(client) ?? connection.connectStageMs;
      this.#lifecycle.attemptFailed(
        new KilnError(
          "KILN_CONNECTION_FAILED",
          `Reconnecting to ${this.#options.endpointUrl} failed (attempt ${retry + 1}: no TCP connection or secure channel opened: refused, or timed out after ${appliedMs} ms); retrying in ${Math.round(delay)} ms`,
          {
            retryable: true,
            details: {
              endpointUrl: this.#options.endpointUrl,
              stage: "connect",
              timeoutMs: appliedMs,
            },
          },
        ),
      );
      // The next attempt's stages get twice as long (at most connectMs): set on the transport
      // node-opcua's next retry reuses, so a link whose round trip grew past the bound reconnects
      // with its session (docs/adr/0022, amendment fix13x: adv13v MEDIUM-1). Only after an attempt
      // that timed out at its bound: a refusal or reset says nothing about the link's round trip
      // (amendment fix13z).
      if (this.#rt.lastConnectTimedOut(client)) connection.failedConnectAttempts++;
      this.#silenceBound(connection);
    });
    client.on("receive_response", (response: unknown) => {
      const handle = (response as { responseHeader?: { requestHandle?: number } }).responseHeader?.requestHandle;
      if (handle !== undefined) this.#repairRequests.get(connection)?.sent.delete(handle);
      this.#answered(connection, (response as { responseHeader?: { requestHandle?: number } }).responseHeader);
      // An answer to the repair's own requests is progress: on a slow link node-opcua's
      // re-activation of the session (with one Republish per missed notification) takes many
      // round trips of seconds each before it reports the connection re-established (fix13x).
      if (current() && this.#rt.isRepairResponse(response)) this.#repairProgress(connection);
      if (response instanceof this.#rt.PublishResponse && current()) {
        this.#orphans.published(session, response.subscriptionId);
      }
    });
    this.#rt.onServiceFault(client, (fault: ServiceFaultAnswer) => {
      // A fault is an answer: the server is there (node-opcua emits no receive_response for it).
      this.#answered(connection, fault);
      const repair = this.#repairRequests.get(connection);
      const sent = repair?.sent.get(fault.requestHandle);
      repair?.sent.delete(fault.requestHandle);
      if (!current() || !SESSION_FAULTS.has(fault.statusName)) return;
      if (this.#abandonAttempt(connection, `the server dropped the session being reopened (${fault.statusName})`))
        return;
      if (this.status !== "connected") {
        // During node-opcua's repair: a fault on a request of the session it re-created (not its
        // ActivateSession of the old one, not a request of the old session) means the server closed
        // the new session too; node-opcua would hold the request and wait (adv13g MEDIUM).
        if (
          this.status === "reconnecting" &&
          repair !== undefined &&
          sent !== undefined &&
          !REPAIR_OWN_REQUESTS.has(sent.name) &&
          sent.token !== repair.lostToken &&
          sent.token === String(session.authenticationToken)
        ) {
          this.#sessionClosedInRepair(connection, fault.statusName);
        }
        return;
      }
      // The server dropped the session (a Publish it held, or any request, answered
      // BadSessionClosed / BadSessionIdInvalid): values are not live from now on. Repair it as
      // node-opcua's keep-alive does on the same fault (break the channel: it re-activates the
      // session, then re-creates it), instead of waiting up to one keep-alive for that.
      this.#breakChannel(connection, `the server dropped the session (${fault.statusName}); re-creating it`);
    });
    client.on("connection_reestablished", () => {
      if (!current()) return;
      this.#repairProgress(connection);
      this.#afterRepair(connection);
    });
    client.on("close", (error?: Error | null) => {
      // node-opcua gave up repairing the connection: rebuild it from scratch.
      if (error && current())
        this.#rebuild(connection, `connection closed: ${this.#rt.redact(error.message, this.#secret)}`);
    });
    session.on("session_closed", () => {
      if (current()) this.#rebuild(connection, "the server closed the session");
    });
    client.on("send_request", (request: unknown) => {
      this.#outstanding(connection, request);
      const repair = this.#repairRequests.get(connection);
      const header = (request as { requestHeader?: { requestHandle?: number; authenticationToken?: unknown } })
        .requestHeader;
      if (repair && current() && this.status !== "connected" && header?.requestHandle !== undefined) {
        const name = (request as { constructor?: { name?: unknown } }).constructor?.name;
        repair.sent.set(header.requestHandle, {
          name: typeof name === "string" ? name : "",
          token: String(header.authenticationToken),
        });
      }
      // node-opcua repairs a session the server dropped (BadSessionIdInvalid, seen on the next
      // keep-alive) by re-activating it, then re-creating it; the channel is up, so no
      // connection_lost. The first re-activation marks the loss: values are not live until the
      // repair ends (session_restored reports connected again).
      if (request instanceof this.#rt.ActivateSessionRequest && current()) {
        if (this.status === "connected") this.#sessionLost("the server dropped the session; re-creating it", false);
        // The session of a rebuild attempt in progress: that attempt fails, the loop goes on (adv F2).
        else this.#abandonAttempt(connection, "the server dropped the session being reopened");
      }
    });
    session.on("keepalive_failure", () => {
      if (current()) this.#logger.warn("OPC UA keep-alive failed; the session may be dead");
    });
    session.on("session_repaired_failed", (error: unknown) => {
      // node-opcua retries a failed repair every 2 s forever, whatever the refusal: a refused
      // identity stops reconnecting; any other (BadTooManySessions while another client holds the
      // server's only slot, a session refused while the server boots) leaves its loop and reopens
      // on the driver's capped backoff, as a refused channel does (adv13y MEDIUM-2: 21 CreateSession
      // requests in 40 s).
      if (!current()) return;
      this.#repairProgress(connection);
      if (this.#rt.isAuthenticationFailure(this.#rt.statusOfError(error))) {
        this.#refused(connection, error);
        return;
      }
      const failure = this.#connectError(error, "session");
      this.#lifecycle.attemptFailed(failure);
      this.#rebuild(connection, failure.message, { delayFirst: true });
    });
    session.on("session_restored", () => {
      // Also after a repair on a live channel (the server had dropped the session).
      if (!current()) return;
      this.#repairProgress(connection);
      this.#logger.info("OPC UA session restored");
      this.#namespacesToVerify(connection, "not read since the session was re-established");
      this.#sessionRenewed(connection);
      this.#afterRepair(connection);
    });
  }

  /**
   * Status `reconnecting` with `reason`, and every subscribed tag `uncertain` (last value) with the reason. Each loss
   * counts on the driver kit's window (`connectionLost`; the backoff's cap, docs/adr/0008 amendment fix13g): node-opcua's repair of the channel (`channelRepair`: not when node-opcua already re-activates
   * the session on a live channel) waits the kit's growing backoff first, where node-opcua alone started every repair
   * the same way after any connection that came up (issue 13 MEDIUM-2: a server dropping each session 200 ms after
   * activating it got a new one every ~1.2 s). The reason says so.
   */
  #sessionLost(reason: string, channelRepair = true): void {
    // The connection of a rebuild attempt in progress: that attempt fails, the loop goes on (adv F2).
    if (this.#abandonAttempt(this.#connection, reason)) return;
    this.#losses++;
    this.#logger.warn({ reason }, "OPC UA session lost; repairing it");
    const lost = this.#connection;
    if (lost) {
      this.#repairRequests.set(lost, { lostToken: String(lost.session.authenticationToken), sent: new Map() });
    }
    // Counted while connected, and while a connection node-opcua repaired is reconciled (adv13f F5: a server
    // breaking the channel at the first Read after ActivateSession got a session every ~1.1 s, never counted).
    if (lost && (this.status === "connected" || (this.status === "reconnecting" && lost.repaired))) {
      lost.repaired = false;
      const { initialDelayMs, maxDelayMs, randomisationFactor } = this.#options.connectionStrategy;
      const waitMs = this.#lifecycle.connectionLost({
        reason,
        backoff: { initialDelayMs, maxDelayMs, jitter: randomisationFactor },
      });
      if (channelRepair) lost.repairWaitMs = waitMs;
    } else this.#reconnectingBecause(reason);
    for (const subscription of this.#subscriptions) subscription.connectionLost(reason);
    const connection = this.#connection;
    if (connection) {
      this.#namespacesToVerify(connection, "not read since the connection was lost");
      this.#armRepairWatchdog(connection);
    }
  }

  /**
   * The server closed the session node-opcua re-created on `connection` during its repair (a request of
   * that session answered `statusName`: BadSessionClosed, BadSessionIdInvalid). node-opcua puts the
   * request back in its queue and waits; only the repair watchdog ended that, after
   * `connectionStrategy.maxDelayMs + timeouts.connectMs` (adv13g MEDIUM). It counts as a loss on the
   * kit's window (the re-created session was up: `repaired`, then `connectionLost`), and the
   * connection is rebuilt on the capped backoff, from the step reached, with this reason.
   */
  #sessionClosedInRepair(connection: Connection, statusName: string): void {
    const reason = `the server closed the session node-opcua had re-created (${statusName}); opening a new one`;
    const { initialDelayMs, maxDelayMs, randomisationFactor } = this.#options.connectionStrategy;
    this.#lifecycle.repaired();
    this.#lifecycle.connectionLost({ reason, backoff: { initialDelayMs, maxDelayMs, jitter: randomisationFactor } });
    this.#rebuild(connection, reason, { delayFirst: true });
  }

  /**
   * Status `reconnecting` with `reason`. Already `reconnecting` (a loss during node-opcua's repair, a
   * rebuild when it gave up), the status does not change but its reason does: the kit's
   * `attemptFailed` tells it (`setStatus` with the same status tells nothing, so the reason stayed
   * the first loss's, adv F3). The same reason again is not told twice.
   */
  #reconnectingBecause(reason: string): void {
    if (this.status !== "reconnecting") this.#lifecycle.setStatus("reconnecting", reason);
    else if (this.#lifecycle.reason !== reason) this.#lifecycle.attemptFailed(reconnectFailure(reason));
  }

  /**
   * The link watchdog of `connection` (docs/adr/0022, amendment fix13e). A link that stalls (the
   * TCP connection stays open, no bytes flow: a proxy or firewall that stops forwarding) gives no
   * error: node-opcua notices only when its keep-alive read times out (`timeouts.requestMs`, at
   * least 5 s, after up to one keep-alive period of silence: about 13 s by default), and values
   * stayed good meanwhile. node-opcua sends a keep-alive read at the latest one keep-alive period
   * after the server's last answer, so while `connected` a live server has answered something
   * (any response: a publish, a keep-alive, a read) within {@link linkSilenceMs} (two keep-alive
   * periods, `connection.keepAliveMs`). Silence for that long proves the link dead:
   * {@link #linkStalled}. While not `connected` the silence does not count (the repair owns it).
   */
  #watchLink(connection: Connection): void {
    const check = (): void => {
      this.#linkChecks.delete(connection);
      if (this.#lifecycle.signal.aborted) return;
      const now = this.#clock.now();
      const boundMs = this.#silenceBound(connection);
      const live = this.#connection === connection && this.status === "connected" && !connection.client.isReconnecting;
      if (!live) connection.heardAt = now;
      const stallAt = this.#stallAt(connection, boundMs);
      if (live && now >= stallAt) {
        this.#linkStalled(connection, now - connection.heardAt, boundMs);
        connection.heardAt = now;
      }
      const delay = Math.max(10, this.#stallAt(connection, boundMs) - now);
      this.#linkChecks.set(connection, this.#clock.setTimeout(check, live ? delay : boundMs / 2));
    };
    this.#linkChecks.set(connection, this.#clock.setTimeout(check, this.#silenceBound(connection)));
  }

  /**
   * The link silence bound of `connection` now ({@link linkSilenceMs}: 2 keep-alive periods,
   * widened after false losses, plus the measured response time), kept on the connection for the
   * subscriptions' keep-alive watchdogs.
   */
  #silenceBound(connection: Connection): number {
    connection.silenceBoundMs = linkSilenceMs(connection.keepAliveMs, {
      requestMs: this.#options.timeouts.requestMs,
      responseMs: connection.responseMs,
    });
    connection.connectStageMs = this.#rt.connectStageMs(
      connection.keepAliveMs,
      connection.responseMs,
      this.#options.timeouts.connectMs,
      connection.failedConnectAttempts,
    );
    this.#rt.setConnectStageMs(connection.client, connection.connectStageMs);
    return connection.silenceBoundMs;
  }

  /**
   * The server answered the request with `header.requestHandle` on `connection` (a response or a
   * ServiceFault): the link is live now, the request is no longer outstanding, and its round
   * trip updates the response time. A Publish's round trip (the server held it) only lowers it:
   * one slow answer on a subscribe-only link, where nothing else is measured, no longer keeps the
   * stall bound long (adv13c M3).
   */
  #answered(connection: Connection, header: { requestHandle?: number } | undefined): void {
    const now = this.#clock.now();
    connection.heardAt = now;
    const handle = header?.requestHandle;
    if (handle === undefined) return;
    const published = connection.publishes.get(handle);
    if (published !== undefined) {
      connection.publishes.delete(handle);
      const sampleMs = now - published;
      if (sampleMs < connection.responseMs) connection.responseMs = smoothedMaxMs(connection.responseMs, sampleMs);
      return;
    }
    const sent = connection.outstanding.get(handle);
    if (!sent) return;
    connection.outstanding.delete(handle);
    const roundTripMs = now - sent.sentAt;
    if (sent.purpose !== undefined && roundTripMs <= connection.silenceBoundMs) this.#slowUpkeep.delete(sent.purpose);
    connection.responseMs = smoothedMaxMs(connection.responseMs, roundTripMs);
  }

  /**
   * When the silence of `connection` proves its link stalled (clock ms): `boundMs` after the last
   * answer, or, while a request is outstanding that the caller allowed its timeout for (a 20,000
   * item CreateMonitoredItems, a read a one-request-at-a-time server takes 3 s to answer while it
   * answers nothing else), not before the deadline of the oldest such request that was sent
   * before the silence began or within its bound (later ones cannot extend it: a stalled link
   * polled every second would never be declared). Requests whose deadline passed before the last
   * answer are forgotten (node-opcua timed them out).
   */
  #stallAt(connection: Connection, boundMs: number): number {
    let stallAt = connection.heardAt + boundMs;
    let oldest: { readonly sentAt: number; readonly deadline: number } | undefined;
    for (const [handle, sent] of connection.outstanding) {
      if (sent.deadline === Number.NEGATIVE_INFINITY) {
        // An upkeep request: waited for only to measure its response time.
        if (sent.sentAt + this.#options.timeouts.requestMs < connection.heardAt) connection.outstanding.delete(handle);
      } else if (sent.deadline < connection.heardAt) connection.outstanding.delete(handle);
      else if (sent.sentAt <= stallAt && (!oldest || sent.sentAt < oldest.sentAt)) oldest = sent;
    }
    if (oldest) stallAt = Math.max(stallAt, oldest.deadline);
    return stallAt;
  }

  /**
   * Records `request` as outstanding on `connection` (for its response time), and as one the
   * link watchdog waits for until its deadline only when an application's call sent it; an
   * upkeep request (the driver's or node-opcua's own) never holds the stall bound; a Publish is
   * recorded apart, never waited for (the server holds it), its round trip only lowering the
   * response time (`linkRequestKind`, {@link #answered}; docs/adr/0022, amendment fix13u).
   */
  #outstanding(connection: Connection, request: unknown): void {
    const kind = this.#rt.linkRequestKind(request);
    const header = (request as { requestHeader?: { requestHandle?: number } }).requestHeader;
    if (header?.requestHandle === undefined) return;
    const now = this.#clock.now();
    if (kind === "publish") {
      connection.publishes.set(header.requestHandle, now);
      return;
    }
    const purpose = kind === "upkeep" ? upkeepPurpose(request) : undefined;
    // An upkeep purpose whose request was the oldest outstanding when a stall was declared gets the
    // application's deadline until it answers within the bound again (fix13w).
    const waited = kind === "application" || (purpose !== undefined && this.#slowUpkeep.has(purpose));
    connection.outstanding.set(header.requestHandle, {
      sentAt: now,
      // The driver bounds each application call by timeouts.requestMs (node-opcua's own timeout is at least 5 s).
      deadline: waited ? now + this.#options.timeouts.requestMs : Number.NEGATIVE_INFINITY,
      purpose,
    });
  }

  /**
   * node-opcua restored the session of `connection` (re-activated it, or re-created it on a
   * restarted server). The keep-alive is adapted to the session timeout granted now (a restarted
   * server may grant a shorter one, and node-opcua restarts the keep-alive with the old period:
   * the session expired between keep-alives and every poll logged in again). The link silence
   * bound is not widened when the same session comes back: that proves the server alive, not the
   * old path (a NAT that lost the idle flow forwards new connections; docs/adr/0022, amendment
   * fix13g).
   */
  #sessionRenewed(connection: Connection): void {
    const { client, session } = connection;
    connection.keepAliveMs = this.#rt.adaptKeepAlive(client, session, this.#options.timeouts.keepAliveMs);
  }

  /** Stops the link watchdog of `connection`. */
  #unwatchLink(connection: Connection): void {
    const timer = this.#linkChecks.get(connection);
    if (timer) this.#clock.clearTimeout(timer);
    this.#linkChecks.delete(connection);
  }

  /**
   * The server sent nothing for `silentMs` (at least `boundMs`) on a connection reported
   * `connected`: the status turns `reconnecting` and every subscribed tag `uncertain` with this
   * reason (polled reads fail with it), and the channel is broken at once, so pending requests
   * fail now and node-opcua's repair re-activates the session on its backoff (each attempt's
   * TCP and HEL/ACK bounded by the same silence: `transportTimeout`), instead of waiting for a
   * keep-alive read to time out and then for a connect that a stalled link never answers.
   */
  #linkStalled(connection: Connection, silentMs: number, boundMs: number): void {
    // The oldest request still out may be an upkeep one the server is slow at, not a dead link (a
    // one-request-at-a-time PLC busy with the read of current values after a repair): its answer
    // never arrives (the channel is broken first), so the response time cannot learn it, and the
    // same request after the repair would be declared a stall again. Its purpose gets the
    // application's deadline from now on, until it answers within the bound (fix13w, adv13v M3).
    // Only requests the server could still have answered within the bound count: one left from
    // before (a keep-alive lost with an earlier channel) is not what the server is silent on.
    let oldest: OutstandingRequest | undefined;
    for (const sent of connection.outstanding.values()) {
      if (sent.sentAt < connection.heardAt - boundMs) continue;
      if (!oldest || sent.sentAt < oldest.sentAt) oldest = sent;
    }
    if (oldest?.purpose !== undefined && oldest.deadline === Number.NEGATIVE_INFINITY) {
      this.#slowUpkeep.add(oldest.purpose);
      this.#logger.warn(
        { purpose: oldest.purpose, outstandingMs: Math.round(this.#clock.now() - oldest.sentAt), boundMs },
        "a link stall was declared while the driver's upkeep request was the oldest one out; it is given timeouts.requestMs from now on",
      );
    }
    const reason = `no answer from the OPC UA server for ${Math.round(silentMs)} ms (link stalled; bound ${boundMs} ms: 2 keep-alive periods and the server's response time)`;
    this.#breakChannel(connection, reason);
  }

  /**
   * Reports the loss of `connection` with `reason` ({@link #sessionLost}) and breaks its secure
   * channel, as node-opcua's keep-alive failure does: requests in flight fail at once and
   * node-opcua repairs the session (re-activates it, or re-creates it) on its backoff. The
   * `connection_lost` that follows is not reported again.
   */
  #breakChannel(connection: Connection, reason: string): void {
    connection.stalled = true;
    this.#sessionLost(reason);
    const channel = (connection.client as unknown as { _secureChannel?: { forceConnectionBreak?: () => void } })
      ._secureChannel;
    channel?.forceConnectionBreak?.();
  }

  /**
   * Watches node-opcua's repair of `connection`. node-opcua can stall after a burst of outages (a
   * session repair overlapping a channel loss logs "_repairConnection already in progress", then
   * neither dials nor fails nor emits anything), which left the driver `reconnecting` for good
   * (issue 13, HIGH-1). So: when no sign of progress (a reconnect attempt, a back-off step, a
   * channel opened, an answer to one of the repair's own requests (`isRepairResponse`: on a slow
   * link the session's re-activation takes many round trips, fix13x), a failed repair, the
   * connection re-established) has come for `connectionStrategy.maxDelayMs +
   * timeouts.connectMs` (node-opcua's longest back-off step plus one connect; 35 s by default)
   * while the status is still `reconnecting`, the connection is dropped and rebuilt on the
   * driver's capped backoff (one rebuild per stall; a refused identity stays fatal, as it stops the
   * repair first). Each progress event re-arms it; `connected`, a rebuild and `close()` stop it.
   */
  #armRepairWatchdog(connection: Connection): void {
    this.#repairWatchdog?.abort();
    const watchdog = new AbortController();
    this.#repairWatchdog = watchdog;
    const boundMs = this.#options.connectionStrategy.maxDelayMs + this.#options.timeouts.connectMs;
    this.#clock.sleep(boundMs, watchdog.signal).then(
      () => {
        if (this.#repairWatchdog !== watchdog) return;
        this.#repairWatchdog = undefined;
        if (this.#connection !== connection || this.#lifecycle.signal.aborted) return;
        if (this.status !== "reconnecting") return;
        // A re-established connection being reconciled is progress: look again one bound later.
        if (this.#repairing) {
          this.#armRepairWatchdog(connection);
          return;
        }
        this.#rebuild(connection, `node-opcua repair stalled: no reconnection progress for ${boundMs} ms`);
      },
      () => undefined,
    );
  }

  /** Re-arms the repair watchdog of `connection` after a sign of progress, while one runs. */
  #repairProgress(connection: Connection): void {
    if (this.#repairWatchdog && this.#connection === connection) this.#armRepairWatchdog(connection);
  }

  #disarmRepairWatchdog(): void {
    this.#repairWatchdog?.abort();
    this.#repairWatchdog = undefined;
  }

  /**
   * The server refused the identity while node-opcua repaired the session (a password changed
   * during a restart): stop here, with status `failed`, after this one log-in attempt.
   */
  #refused(connection: Connection, cause: unknown): void {
    this.#disarmRepairWatchdog();
    this.#connection = undefined;
    // Status `failed`: the status listener turns every subscribed tag bad with the reason.
    this.#lifecycle.fail(this.#connectError(cause));
    // Disconnecting makes the client unusable, which ends node-opcua's repair loop.
    void this.#dispose(connection);
  }

  /**
   * A failed request as a KilnError (`requestError`). A request that failed because the
   * connection was lost meanwhile (the link watchdog broke a stalled channel, node-opcua lost it)
   * is a retryable `KILN_CONNECTION_FAILED` naming why the connection is down, not node-opcua's
   * bare "Connection Break".
   */
  #requestError(error: unknown, operation: string): KilnError {
    const mapped = this.#rt.requestError(error, operation, this.#secret);
    const reason = this.#lifecycle.reason;
    if (mapped.code !== "KILN_CONNECTION_FAILED" || this.status !== "reconnecting" || !reason) return mapped;
    return new KilnError("KILN_CONNECTION_FAILED", `OPC UA ${operation} failed: the connection was lost (${reason}).`, {
      cause: error,
      retryable: true,
      details: { ...mapped.details, reason },
    });
  }

  /**
   * A connection failure as the KilnError `connect()` would throw (its code and specific message); `stage` when
   * known (a failed session repair: `"session"`).
   */
  #connectError(cause: unknown, stage?: "channel" | "session"): KilnError {
    return this.#rt.connectError(cause, { ...this.#connectContext(), ...(stage === undefined ? {} : { stage }) });
  }

  #connectContext(): ConnectErrorContext {
    const { endpointUrl, security } = this.#options;
    return {
      endpointUrl,
      securityMode: security.mode,
      securityPolicy: security.mode === "None" ? "None" : security.policy,
      pkiDir: this.#pkiDir,
      secret: this.#secret,
    };
  }

  /**
   * Checks the server certificate of a channel node-opcua has just re-opened against the PKI
   * folders as they are now (node-opcua checks it only on the first connect). Untrusted (the user
   * removed it from trusted/): the certificate is filed in rejected/, the status names it, and
   * the connection is reopened on the backoff until the user trusts it again. Resolves to
   * whether the certificate is trusted; {@link #reconcile} waits for it before `connected`.
   */
  async #recheckServerCertificate(connection: Connection): Promise<boolean> {
    const certificate = connection.client.serverCertificate;
    if (this.#options.security.mode === "None" || !certificate) return true;
    let status;
    try {
      status = await connection.certificateManager.checkCertificate(certificate);
    } catch (error) {
      this.#logger.warn({ err: error }, "checking the server certificate after a reconnect failed; not trusting it");
      status = undefined;
    }
    if (status?.isGood()) return true;
    if (this.#connection !== connection || this.#lifecycle.signal.aborted) return false;
    const failure = this.#rt.serverCertificateUntrusted(this.#connectContext(), status?.name, status);
    this.#lifecycle.attemptFailed(failure);
    this.#rebuild(connection, failure.message, { delayFirst: true });
    return false;
  }

  /** Runs {@link #reconcile} once node-opcua has repaired the session; coalesces bursts. */
  #afterRepair(connection: Connection): void {
    // Repaired, not connected until reconciled: a loss from now on counts (adv13f F5).
    if (this.status === "reconnecting") {
      connection.repaired = true;
      this.#lifecycle.repaired();
    }
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
    const losses = this.#losses;
    // A repaired session may face a restarted server whose nodes changed type: read them again.
    this.#dataTypes.clear();
    if (!(await (this.#certificateChecks.get(connection) ?? true))) return;
    // node-opcua re-created the monitored items with indexes bound to the old table: until this
    // session's table is read Good, no nsu= item is trusted (docs/adr/0022, amendment fix13t).
    // Marked unread at the loss and at session_restored (which comes before connection_reestablished,
    // whose coalesced second pass must not un-verify a table the first pass read).
    await this.#readNamespaces(connection, "after a reconnect");
    if (
      this.#connection !== connection ||
      this.#lifecycle.signal.aborted ||
      this.#losses !== losses ||
      connection.client.isReconnecting
    ) {
      return;
    }
    await this.#deleteClosedSubscriptions(connection);
    // Subscriptions first, so a group the server refuses to re-create is reported with the repair.
    const failures = await this.#recreateSubscriptions(connection);
    // Lost again while re-creating subscriptions (or its channel broke and node-opcua has not said so
    // yet, adv13g LOW): the next repair reports `connected`.
    if (
      this.#connection !== connection ||
      this.#lifecycle.signal.aborted ||
      this.#losses !== losses ||
      connection.client.isReconnecting ||
      channelBroken(connection)
    ) {
      return;
    }
    this.#disarmRepairWatchdog();
    const unread =
      connection.namespacesUnread === undefined
        ? ""
        : `; namespace table not read yet (${connection.namespacesUnread}), nsu= tags bad; retrying`;
    if (failures.length === 0) {
      this.#lifecycle.setStatus("connected", `connection re-established${unread}`);
      return;
    }
    // Reported as the repair's last failed step; the session itself works, so reads go on while
    // the groups' tags stay bad and their subscriptions are retried on the backoff. The failure
    // itself, not wrapped in the `reconnecting` reason (a wait that is over once connected, adv F4).
    const error = this.#rt.requestError(failures[0], "subscription re-creation", this.#secret);
    this.#lifecycle.attemptFailed(error);
    this.#lifecycle.setStatus(
      "connected",
      `connection re-established; ${failures.length} subscription(s) not re-created yet (${error.message}); retrying${unread}`,
    );
  }

  /**
   * Reads the namespace table and operation limits on `connection`'s session and applies them
   * ({@link #applyServerInfo}); a failed or Bad read leaves the table unread (never a default
   * one). Then schedules the next read when one is due ({@link #keepNamespacesFresh}). Resolves to
   * whether the table or limits changed (the generation was bumped).
   */
  async #readNamespaces(connection: Connection, when: string): Promise<boolean> {
    let info: ServerInfo;
    try {
      info = await this.#rt.readServerInfo(connection.session, this.#options.limits);
    } catch (error) {
      const reason = `reading it failed (${this.#requestError(error, "namespace table read").message})`;
      info = { namespaceArray: undefined, namespacesUnread: reason, limits: connection.limits };
    }
    // Ended by close() (KILN_ABORTED, fix13z): nothing to apply, log or schedule.
    if (this.#lifecycle.signal.aborted) return false;
    if (this.#connection !== undefined && this.#connection !== connection) return false;
    const changed = this.#applyServerInfo(connection, info);
    if (info.namespaceArray === undefined) {
      // Warned once per reason; each retry of the same refusal is logged at debug only.
      const repeat = this.#namespaceRefusal === info.namespacesUnread;
      this.#namespaceRefusal = info.namespacesUnread;
      this.#logger[repeat ? "debug" : "warn"](
        { reason: info.namespacesUnread, attempt: this.#namespaceAttempt },
        `reading the server's namespace table ${when} failed; nsu= tags stay bad until it is read, retrying on the backoff`,
      );
    } else {
      this.#namespaceRefusal = undefined;
    }
    this.#keepNamespacesFresh(connection);
    return changed;
  }

  /**
   * The session of `connection` may face another server run, whose namespace indexes may differ:
   * until {@link #reconcile} reads the table Good on it, `nsu=` tags are not bound (read plans and
   * data types are made anew by the generation bump).
   */
  #namespacesToVerify(connection: Connection, reason: string): void {
    if (connection.namespacesUnread !== undefined) return;
    connection.namespacesUnread = reason;
    connection.generation = ++this.#generations;
    this.#dataTypes.clear();
  }

  /**
   * Applies a read of the server's table and limits to `connection`. A table not read Good keeps
   * an unread table unread, with the new reason; a table already read Good on this session stays
   * (a session faces one server run, whose indexes cannot move; a later re-read refused, e.g. while
   * looking for a late namespace, changes nothing). A table read Good clears the unread state. Any
   * change bumps the generation: subscriptions re-resolve their items (nsu= ones dropped while
   * unread), read plans and data types are made anew. Returns whether it changed.
   */
  #applyServerInfo(connection: Connection, info: ServerInfo): boolean {
    if (info.namespaceArray === undefined) {
      if (connection.namespacesUnread === undefined) return false;
      const reason = info.namespacesUnread ?? "not read";
      if (connection.namespacesUnread === reason) return false;
      // A new reason: the tags' reason is updated by the re-resolution the bump causes.
      connection.namespacesUnread = reason;
    } else {
      // Compared with the last table read Good (maybe another server run's).
      const same = this.#rt.sameServerInfo(connection, info);
      if (same && connection.namespacesUnread === undefined) return false;
      if (same) this.#logger.debug("the server's namespace table was read; unchanged");
      else this.#logger.info("the server's namespaces or operation limits changed; re-planning");
      connection.namespaceArray = info.namespaceArray;
      connection.namespacesUnread = undefined;
      connection.limits = info.limits;
      connection.maxMonitoredItemsPerCall = info.limits.maxMonitoredItemsPerCall;
    }
    connection.generation = ++this.#generations;
    this.#dataTypes.clear();
    return true;
  }

  /**
   * Schedules the next read of `connection`'s namespace table when one is due: while it is unread,
   * on the connection strategy's backoff until it is read Good; while a tag's namespace is not in
   * it (a namespace the server registers late), on the `monitoredItemRetry` backoff, as items the
   * server refused are retried: one small Read per step, capped at its `maxDelayMs`
   * (docs/adr/0022, amendment fix13t). A repair reads the table itself and then reschedules.
   */
  #keepNamespacesFresh(connection: Connection): void {
    const pending = this.#namespaceRead;
    if (pending?.connection === connection) return;
    if (pending) {
      this.#clock.clearTimeout(pending.timer);
      this.#namespaceRead = undefined;
      this.#namespaceAttempt = 0;
    }
    if (this.#lifecycle.signal.aborted) return;
    const unread = connection.namespacesUnread !== undefined;
    const missing =
      !unread &&
      [...this.#wantedNamespaces].some((uri) => !verifiedNamespaces(connection, "check namespaces").includes(uri));
    if (!unread && !missing) {
      this.#namespaceAttempt = 0;
      return;
    }
    const backoff = unread ? this.#options.connectionStrategy : this.#options.monitoredItemRetry;
    const delay = reconnectDelay(
      ++this.#namespaceAttempt,
      { initialDelayMs: backoff.initialDelayMs, maxDelayMs: backoff.maxDelayMs, jitter: 0.2 },
      this.#options.random,
    );
    const timer = this.#clock.setTimeout(() => {
      if (this.#namespaceRead?.timer === timer) this.#namespaceRead = undefined;
      void this.#rereadNamespaces(connection);
    }, delay);
    this.#namespaceRead = { connection, timer };
  }

  async #rereadNamespaces(connection: Connection): Promise<void> {
    if (this.#connection !== connection || this.#lifecycle.signal.aborted) return;
    if (this.status !== "connected" || connection.client.isReconnecting) {
      // Not now: a repair in progress reads the table itself once the session is back; else try later.
      this.#keepNamespacesFresh(connection);
      return;
    }
    const wasUnread = connection.namespacesUnread !== undefined;
    const changed = await this.#readNamespaces(connection, "again");
    if (!changed || this.#connection !== connection || this.status !== "connected") return;
    this.#namespaceAttempt = 0;
    if (wasUnread && connection.namespacesUnread === undefined) {
      this.#lifecycle.setStatus("connected", "the server's namespace table was read");
    }
    await this.#reconcileSubscriptions();
  }

  /**
   * A subscription could not be re-created (its tags are already bad with the reason, and it
   * logged a warning): during a repair the failure is also reported on the status.
   */
  #subscriptionFailed(error: unknown): void {
    this.#reconciling?.failures.push(error);
  }

  /**
   * A subscription's keep-alive watchdog expired again after it was re-created on the same session,
   * with no Publish answer in between: node-opcua's publish engine of that session is not trusted
   * any more (docs/adr/0022, amendment fix13r). The connection is rebuilt: a new client and session
   * on the capped backoff, every subscription re-created there. Only while `connected`: during a
   * repair node-opcua's own path owns the session. The tag subscription spaces these out (its 2nd,
   * 4th, 8th, then every 16th expiry in a row), so a server that never answers Publish is not
   * stormed. Returns whether the connection is rebuilt.
   */
  #publishingStalled(reason: string): boolean {
    const connection = this.#connection;
    if (!connection || this.status !== "connected" || connection.client.isReconnecting) return false;
    this.#rebuild(connection, reason);
    return true;
  }

  /**
   * Deletes on the server the subscriptions closed while the connection was down, when node-opcua
   * re-activated the session they belong to (a server that stayed up kept them on it). After a
   * repair with a new session they are not deleted: that session never held them (node-opcua
   * transfers nothing into it: `refuseSubscriptionTransfers`), and after a restart the same
   * id may be another client's. Kiln's own then expire with their lifetime. Ids node-opcua holds
   * now are skipped too.
   */
  async #deleteClosedSubscriptions(connection: Connection): Promise<void> {
    const held = heldSubscriptionIds(connection.session);
    const sessionId = connection.session.sessionId.toString();
    const subscriptionIds = [...this.#deleteLater]
      .filter(([id, owner]) => owner === sessionId && !held.has(id))
      .map(([id]) => id);
    this.#deleteLater.clear();
    if (subscriptionIds.length === 0) return;
    try {
      await deleteSubscriptions(connection.session, subscriptionIds);
      this.#logger.debug({ subscriptionIds }, "deleted OPC UA subscriptions closed during the outage");
    } catch (error) {
      this.#logger.debug({ err: error, subscriptionIds }, "deleting subscriptions closed during the outage failed");
    }
  }

  async #reconcileSubscriptions(): Promise<void> {
    await Promise.all(
      [...this.#subscriptions].map((subscription) =>
        subscription.ensure().catch((error: unknown) => {
          this.#logger.debug({ err: error }, "re-creating an OPC UA subscription failed; will retry");
        }),
      ),
    );
  }

  /**
   * Drops `old` and opens new connections on the capped backoff until one works. `delayFirst`:
   * wait one backoff step before the first attempt (the failure that led here just happened).
   *
   * A server that stayed up would keep `old`'s session and subscriptions next to the new ones
   * (until the session times out), and a server-wide subscription limit could then refuse the
   * new ones: `old`'s session is closed with its subscriptions when its channel may still work
   * ({@link #dispose}). Failing that, they are left to expire with their lifetime (no session
   * sends them Publish requests): taking them over on the new session would need proof they are
   * still Kiln's, which no service gives before the takeover (docs/adr/0022, amendment fix13). A
   * group the server still refuses to re-create meanwhile (BadTooManySubscriptions) is named in
   * the `connected` reason and retried on the backoff, as after a repair.
   */
  #rebuild(old: Connection, reason: string, { delayFirst = false }: { readonly delayFirst?: boolean } = {}): void {
    // The connection of an attempt still in progress lost: that attempt fails now, the loop goes on.
    if (this.#abandonAttempt(old, reason)) return;
    if (this.#lifecycle.signal.aborted || this.#connection !== old) return;
    this.#logger.warn({ reason }, "OPC UA session lost; opening a new one");
    this.#disarmRepairWatchdog();
    this.#connection = undefined;
    this.#reconnectingBecause(reason);
    for (const subscription of this.#subscriptions) subscription.connectionLost();
    const { initialDelayMs, maxDelayMs, randomisationFactor } = this.#options.connectionStrategy;
    // They belong to the old session: never deleted on another one.
    this.#deleteLater.clear();
    // At once: a client still in node-opcua's own reconnect loop must stop dialling now.
    // Upkeep: a CloseSession into a stalled link is abandoned at the stall bound (fix13u).
    const disposed = this.#dispose(old, Math.min(this.#options.timeouts.requestMs, this.#silenceBound(old)));
    let failures: unknown[] = [];
    let losses = this.#losses;
    // Rebuild attempts that timed out at their stage bound (a refused one does not grow it, fix13z).
    let rebuildTimeouts = 0;
    void this.#lifecycle.reconnect({
      reason,
      delayFirst,
      backoff: { initialDelayMs, maxDelayMs, jitter: randomisationFactor },
      attempt: async (lifetime) => {
        if (!(await disposed)) {
          this.#logger.info(
            "the old OPC UA session could not be closed; the server deletes its subscriptions when their lifetime ends",
          );
        }
        // Each stage bounded as node-opcua's own reconnect attempts were, doubling per attempt that
        // timed out at it (not per refusal, fix13z) up to connectMs: an attempt into a link still stalled fails soon (adv13s L2: it waited the
        // full connectMs), a link slower than measured still connects after a few.
        const stageMs = this.#rt.connectStageMs(
          old.keepAliveMs,
          old.responseMs,
          this.#options.timeouts.connectMs,
          old.failedConnectAttempts + rebuildTimeouts,
        );
        const startedAt = performance.now();
        const attempt = { connection: undefined as Connection | undefined, abandon: new AbortController() };
        this.#rebuildAttempt = attempt;
        const signal = AbortSignal.any([lifetime, attempt.abandon.signal]);
        const deadline = this.#attemptDeadline(attempt, stageMs);
        try {
          let connection: Connection;
          try {
            // Bounded by `signal` itself: it releases what it opened when that aborts.
            connection = await this.#open(signal, stageMs);
          } catch (error) {
            if (this.#rt.attemptTimedOut(performance.now() - startedAt, stageMs)) rebuildTimeouts++;
            throw error;
          }
          if (signal.aborted) {
            await this.#dispose(connection);
            if (lifetime.aborted) return;
            throw abortError(signal, "reopening the OPC UA session");
          }
          attempt.connection = connection;
          deadline.recreating(connection);
          this.#connection = connection;
          this.#dataTypes.clear();
          losses = this.#losses;
          try {
            failures = await raceAbort(
              this.#recreateSubscriptions(connection),
              signal,
              "re-creating the OPC UA subscriptions",
            );
          } catch (error) {
            // Abandoned (its deadline, or its connection lost): nothing of it stays, on either side.
            if (this.#connection === connection) this.#connection = undefined;
            await this.#dispose(connection, Math.min(this.#options.timeouts.requestMs, this.#silenceBound(connection)));
            throw error;
          }
          // The channel broke under the re-creation (a CreateMonitoredItems answered by a broken
          // channel leaves its items to the background retry, and ensure() resolves before node-opcua
          // reports the loss): `connected` would be reported on a connection already lost, for ~1 ms
          // (adv13g LOW). The attempt fails instead; the loop goes on on its backoff.
          if (channelBroken(connection)) {
            if (this.#connection === connection) this.#connection = undefined;
            await this.#dispose(connection, Math.min(this.#options.timeouts.requestMs, this.#silenceBound(connection)));
            throw reconnectFailure(
              "the connection was lost while the subscriptions were re-created on the new session",
            );
          }
          if (failures.length > 0) {
            this.#lifecycle.attemptFailed(this.#rt.requestError(failures[0], "subscription re-creation", this.#secret));
          }
        } finally {
          deadline.stop();
          if (this.#rebuildAttempt === attempt) this.#rebuildAttempt = undefined;
        }
      },
      onAttemptFailed: (error, attempt) => {
        this.#logger.warn(
          {
            code: KilnError.is(error) ? error.code : undefined,
            reason: error instanceof Error ? error.message : String(error),
            attempt,
          },
          "opening a new OPC UA session failed; will retry",
        );
        return "retry";
      },
      // What happened, not a wait that is over (adv F4).
      connectedReason: (attempts) => {
        const done = `session re-created after ${attempts} attempt${attempts === 1 ? "" : "s"}`;
        return failures.length === 0
          ? done
          : `${done}; ${failures.length} subscription(s) not re-created yet (${this.#rt.requestError(failures[0], "subscription re-creation", this.#secret).message}); retrying`;
      },
      onConnected: () => {
        // Lost again while the subscriptions were re-created: node-opcua is repairing it.
        const connection = this.#connection;
        if (connection && this.#losses !== losses && connection.client.isReconnecting) {
          this.#lifecycle.setStatus("reconnecting", "connection lost");
        }
      },
    });
  }

  /**
   * The deadline of one rebuild attempt (adv F2: an attempt whose session the server closed under it
   * waited for ever, and the loop with it). Opening is bounded by `timeouts.connectMs` plus one
   * connect stage (`stageMs`; the open's own connect deadline comes first, this also bounds the steps
   * before it). Re-creating the subscriptions is bounded by the longest a request of it can take
   * (`timeouts.requestMs`, at least node-opcua's 5 s minimum) plus the link silence bound, counted
   * again from each answer to one of its requests (`isRepairResponse`: a subscription of many batches
   * goes on as long as the server answers them). At the deadline `attempt.abandon` aborts with a
   * retryable `KILN_TIMEOUT` naming the stage and its bound, and the attempt fails, is counted, and the
   * loop goes on on its backoff.
   */
  #attemptDeadline(
    attempt: { readonly abandon: AbortController },
    stageMs: number,
  ): { recreating(connection: Connection): void; stop(): void } {
    const { connectMs, requestMs } = this.#options.timeouts;
    let timer: TimerHandle | undefined;
    let stopped = false;
    const arm = (boundMs: number, stage: string): void => {
      if (timer !== undefined) this.#clock.clearTimeout(timer);
      timer = this.#clock.setTimeout(() => {
        timer = undefined;
        if (stopped) return;
        attempt.abandon.abort(
          new KilnError(
            "KILN_TIMEOUT",
            `Reconnecting to ${this.#options.endpointUrl} timed out: ${stage} made no progress for ${boundMs} ms; the attempt was abandoned and its session closed`,
            { retryable: true, details: { endpointUrl: this.#options.endpointUrl, stage, timeoutMs: boundMs } },
          ),
        );
      }, boundMs);
    };
    arm(connectMs + stageMs, "opening the session");
    return {
      recreating: (connection) => {
        const boundMs = (): number =>
          Math.max(requestMs, NODE_OPCUA_MIN_TRANSACTION_MS) + this.#silenceBound(connection);
        const stage = "re-creating the subscriptions";
        arm(boundMs(), stage);
        connection.client.on("receive_response", (response: unknown) => {
          if (!stopped && this.#rt.isRepairResponse(response)) arm(boundMs(), stage);
        });
      },
      stop: () => {
        stopped = true;
        if (timer !== undefined) this.#clock.clearTimeout(timer);
        timer = undefined;
      },
    };
  }

  /**
   * When `connection` is the one a rebuild attempt in progress opened (it has not reported
   * `connected` yet): the attempt fails now with `reason` and the reconnect loop goes on. A loss the
   * driver reports only while `connected` (a session fault, node-opcua's re-activation, a channel
   * loss) would otherwise leave the attempt waiting for requests that node-opcua never settles.
   * Returns whether it did.
   */
  #abandonAttempt(connection: Connection | undefined, reason: string): boolean {
    const attempt = this.#rebuildAttempt;
    if (connection === undefined || attempt?.connection !== connection || attempt.abandon.signal.aborted) return false;
    this.#logger.warn({ reason }, "the OPC UA session being reopened was lost; abandoning this attempt");
    attempt.abandon.abort(reconnectFailure(reason));
    return true;
  }

  /**
   * Brings every subscription back on `connection` (which the subscriptions use while it is
   * reconciled, before `connected` is reported); resolves to the re-creation failures.
   */
  async #recreateSubscriptions(connection: Connection): Promise<unknown[]> {
    const reconciling = { connection, failures: [] as unknown[] };
    this.#reconciling = reconciling;
    try {
      await this.#reconcileSubscriptions();
      return reconciling.failures;
    } finally {
      // An abandoned attempt's re-creation may end after the next attempt began its own.
      if (this.#reconciling === reconciling) this.#reconciling = undefined;
    }
  }

  /**
   * Disconnects `connection`, first closing its session with its subscriptions (both steps
   * together bounded by `boundMs`: the link stall bound, capped at `timeouts.requestMs`, for the
   * application's `close()` and a rebuild's upkeep; `timeouts.requestMs` otherwise) unless node-opcua is re-opening its channel (then nothing can reach the
   * server and the client must stop dialling at once). Resolves to whether the session was closed.
   */
  async #dispose(connection: Connection, boundMs = this.#options.timeouts.requestMs): Promise<boolean> {
    this.#unwatchLink(connection);
    connection.client.removeAllListeners();
    connection.session.removeAllListeners();
    // Nothing waits on it any more: requests still out end now (CloseSession is exempt).
    this.#retired.get(connection)?.abort(
      new KilnError("KILN_CONNECTION_FAILED", "the OPC UA session was given up (the driver dropped its connection)", {
        retryable: true,
        details: { driver: this.name },
      }),
    );
    // One budget for both steps: on a stalled link the disconnect waits for the CloseSession
    // still out, so bounding each step alone took twice the bound (adv13 M1). An abandoned step
    // still ends in node-opcua, at the CloseSession's own requestMs timeout at the latest.
    const until = this.#clock.now() + boundMs;
    const bound = async <T>(promise: Promise<T>): Promise<boolean> => {
      const deadline = new AbortController();
      const done = await Promise.race([
        promise.then(
          () => true,
          () => false,
        ),
        this.#clock.sleep(Math.max(0, until - this.#clock.now()), deadline.signal).then(
          () => false,
          () => false,
        ),
      ]);
      deadline.abort();
      return done;
    };
    const closed = connection.client.isReconnecting ? false : await bound(connection.session.close(true));
    await bound(connection.client.disconnect());
    await connection.certificateManager.dispose().catch(() => undefined);
    return closed;
  }

  #requireConnection(): Connection {
    const connection = this.#connection;
    const status = this.status;
    if (status === "connected" && connection) return connection;
    if (status === "reconnecting") {
      const reason = this.#lifecycle.reason;
      throw new KilnError(
        "KILN_CONNECTION_FAILED",
        `The OPC UA connection "${this.name}" is down; reconnecting${reason ? ` (${reason})` : ""}.`,
        { retryable: true, details: { driver: this.name, status, ...(reason ? { reason } : {}) } },
      );
    }
    if (status === "failed") {
      // Stopped by a refusal that must not be retried by itself (the identity): say which, so a
      // caller does not read "call connect() first" as a driver never started (adv13za LOW).
      const reason = this.#lifecycle.reason;
      throw new KilnError(
        "KILN_NOT_CONNECTED",
        `The OPC UA driver "${this.name}" stopped reconnecting${reason ? ` (${reason})` : ""}; fix the cause and call connect() again.`,
        { details: { driver: this.name, status, ...(reason ? { reason } : {}) } },
      );
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
        address = this.#rt.parseNodeAddress(tag.address);
      } catch (error) {
        issues.push({ path: `${tag.name}.address`, message: (error as Error).message });
        return undefined;
      }
      this.#addresses.set(tag, address);
      if (address.namespaceUri !== undefined) this.#wantedNamespaces.add(address.namespaceUri);
      return address;
    });
    if (issues.length > 0) throw new KilnValidationError("OPC UA tag addresses", issues);
    return addresses as OpcuaNodeAddress[];
  }

  #planFor(tags: readonly Tag[], connection: Connection): ReadPlan {
    const cached = this.#readPlans.get(tags);
    if (cached && cached.generation === connection.generation) return cached;
    const plan = this.#rt.planReads(
      this.#addressesOf(tags),
      connection,
      connection.limits.maxNodesPerRead,
      connection.generation,
    );
    this.#readPlans.set(tags, plan);
    return plan;
  }

  #forgetDataType(connection: Connection, nodeId: NodeId): void {
    this.#dataTypes.delete(`${connection.generation}|${nodeId.toString()}`);
  }

  #dataTypeOf(connection: Connection, nodeId: NodeId, tag: Tag, nodeText: string): Promise<OpcuaWriteTarget> {
    const key = `${connection.generation}|${nodeId.toString()}`;
    let dataType = this.#dataTypes.get(key);
    if (!dataType) {
      dataType = this.#rt.discoverDataType(connection.session, nodeId, tag, nodeText, this.#secret);
      this.#dataTypes.set(key, dataType);
      dataType.catch(() => this.#dataTypes.delete(key));
    }
    return dataType;
  }
}

/** `reason` as the retryable failure of a reconnect attempt (its message is the status reason). */
/**
 * Whether the secure channel of `connection` is known broken, though node-opcua may not have reported
 * the loss yet (its `connection_lost` comes after the failed request's callback): its session has no
 * open channel. False when node-opcua's session offers no such check.
 */
function channelBroken(connection: Connection): boolean {
  const session = connection.session as unknown as { isChannelValid?: () => boolean };
  return typeof session.isChannelValid === "function" && !session.isChannelValid();
}

function reconnectFailure(reason: string): KilnError {
  return new KilnError("KILN_CONNECTION_FAILED", reason, { retryable: true });
}

/** Whether two reads of a node found the same type and shape. */
function sameWriteTarget(a: OpcuaWriteTarget, b: OpcuaWriteTarget): boolean {
  return (
    a.dataType === b.dataType &&
    a.valueRank === b.valueRank &&
    (a.arrayDimensions ?? []).join() === (b.arrayDimensions ?? []).join()
  );
}

/** `value` with a typed array (an array tag's, docs/adr/0038-array-tags.md) as a plain array; anything else as is. */
function plainTagValue(value: TagValue): TagValue {
  const view: unknown = value;
  if (ArrayBuffer.isView(view) && !(view instanceof DataView)) {
    return Array.from(view as unknown as ArrayLike<number | bigint>) as TagValue;
  }
  return value;
}

/**
 * Turns off the idle timeout of the socket of `connection`'s open secure channel. node-opcua gives
 * the socket its connect-stage bound (`transportTimeout`, 2 keep-alive periods) as idle timeout,
 * so a live server busy with one long request (nothing sent either way meanwhile: node-opcua
 * waits for the pending keep-alive) was cut off after 2 keep-alive periods whatever the request's
 * timeout; on an open channel the link watchdog alone judges silence (docs/adr/0022, amendment
 * fix13f). Best effort: node-opcua internals.
 */
function releaseSocketTimeout(connection: Connection): void {
  const channel = (connection.client as unknown as { _secureChannel?: { getTransport?: () => unknown } })
    ._secureChannel;
  const transport = channel?.getTransport?.() as { _socket?: { setTimeout?: (ms: number) => void } | null } | undefined;
  transport?._socket?.setTimeout?.(0);
}
