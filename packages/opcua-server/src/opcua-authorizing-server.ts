import type { BaseNode } from "node-opcua-address-space-base";
import type { Message, ServerSecureChannelLayer } from "node-opcua-secure-channel";
import { DataValue } from "node-opcua-data-value";
import { type MonitoredItem, OPCUAServer, type ServerSession, type Subscription } from "node-opcua-server";
import { StatusCode, StatusCodes } from "node-opcua-status-code";
// node-opcua's own filter check (exported by no entry of the package): run before a modify applies anything.
import { validateFilter } from "node-opcua-server/dist/validate_filter.js";
import { BrowsePages } from "./opcua-browse-pages";
import { isDisposedNode } from "./opcua-diagnostics-access";
import { costOfEventFilter, type EventFilterBounds, refusalOfEventFilter } from "./opcua-event-filter";
import { checkMonitoringParameters } from "./opcua-request-numbers";
import { DataType, sameVariant, Variant, VariantArrayType } from "node-opcua-variant";
import { isolateSampling, isolateValueSources } from "./opcua-value-sources";
import {
  type BrowsePath,
  BrowsePathResult,
  type RelativePathElement,
  type BrowseNextRequest,
  BrowseNextResponse,
  type BrowseRequest,
  BrowseResponse,
  type CreateMonitoredItemsRequest,
  DataChangeFilter,
  DataChangeNotification,
  type EventFieldList,
  type EventFilterResult,
  EventNotificationList,
  type HistoryReadRequest,
  HistoryReadResponse,
  HistoryReadResult,
  MonitoredItemCreateResult,
  MonitoredItemModifyResult,
  MonitoredItemNotification,
  NodeClass,
  NotificationMessage,
  PermissionType,
  ReadProcessedDetails,
  TransferResult,
  type TranslateBrowsePathsToNodeIdsRequest,
  TranslateBrowsePathsToNodeIdsResponse,
  type UserIdentityToken,
  UserNameIdentityToken,
} from "node-opcua-types";

/** The ExpandedNodeId of a BrowsePathTarget (node-opcua-nodeid is not a dependency of its own). */
type ExpandedNodeIdOf = NonNullable<ConstructorParameters<typeof BrowsePathResult>[0]>["targets"] extends
  (infer T)[] | null | undefined
  ? T extends { targetId?: infer I }
    ? I
    : never
  : never;

/** AttributeId of the Value attribute (OPC UA Part 6, A.1). */
const VALUE_ATTRIBUTE = 13;
/** node-opcua's `NumericRangeType` values: Empty (no range), MatrixRange (two dimensions) and InvalidRange. */
const EMPTY_RANGE = 0;
const MATRIX_RANGE = 3;
const INVALID_RANGE = 4;

/** The basic DataTypes whose scalar values an IndexRange applies to (OPC UA Part 4, 7.27), and BaseDataType (any value). */
const BASE_DATA_TYPE = 24;
const RANGEABLE_SCALARS: ReadonlySet<number> = new Set([12, 15, BASE_DATA_TYPE]); // String, ByteString, BaseDataType

/** A service operation that names a node and may carry an IndexRange (node-opcua's decoded NumericRange). */
interface RangedOperation {
  readonly nodeId?: unknown;
  readonly attributeId?: number;
  readonly indexRange?: { type: number; value: unknown } | null;
}

/** Answers `BadIndexRangeInvalid` (no value) for the Read results at `indices` (see `#invalidateRanges`). */
function refuseReads(response: unknown, indices: readonly number[]): void {
  const results = (response as { results?: unknown[] | null }).results;
  if (!results) return;
  for (const index of indices) {
    if (results[index] instanceof DataValue)
      results[index] = new DataValue({ statusCode: StatusCodes.BadIndexRangeInvalid });
  }
}

/** AttributeId of the EventNotifier attribute: a monitored item on it receives events (OPC UA Part 6, A.1). */
const EVENT_NOTIFIER_ATTRIBUTE = 12;

/** The event node-opcua hands a monitored item (its EventData); only its source is looked at. */
export interface ServedEvent {
  /** The node the event is about: a condition for a condition event (node-opcua's EventData). */
  getEventDataSource(): BaseNode;
  /** The event's SourceNode field (a Variant holding a NodeId), when it has one. */
  readonly sourceNode?: { readonly value?: unknown } | null;
}

/** A request refused as a whole before any of its operations ran (e.g. `BadTooManyOperations`). */
export interface RefusedRequest {
  /** The OPC UA service, e.g. `Read`, `Write`, `CreateMonitoredItems`. */
  readonly service: string;
  /** How many operations (nodes, items, methods, subscriptions) the request held. */
  readonly operations: number;
  readonly statusCode: StatusCode;
}

/** A ConditionRefresh or ConditionRefresh2 call refused by {@link AuthorizingServer.guardConditionRefresh}. */
export interface RefusedRefresh {
  /** `ConditionRefresh` or `ConditionRefresh2`. */
  readonly method: string;
  /** `BadSubscriptionIdInvalid`, `BadMonitoredItemIdInvalid` or `BadRefreshInProgress`. */
  readonly statusCode: StatusCode;
  /** What was wrong, for the audit entry. */
  readonly detail: string;
}

type RefreshCallback = (error: Error | null, result: { statusCode: StatusCode }) => void;

/** The members of node-opcua's UAMethod the refresh guard uses (its bound function is private in its typings). */
interface RefreshMethod {
  _asyncExecutionFunction?: (
    inputArguments: { value: unknown }[],
    context: RefreshContext,
    callback: RefreshCallback,
  ) => void;
  bindMethod(
    handler: (inputArguments: { value: unknown }[], context: RefreshContext, callback: RefreshCallback) => void,
  ): void;
}

interface RefreshContext {
  readonly session?: unknown;
}

/** The node-opcua members the delivery checks use (private in its typings). */
interface SubscriptionInternals {
  _pending_notifications: {
    size: number;
    values(): Iterable<{ notification: unknown }>;
    filterOut(predicate: (entry: { notification: unknown }) => boolean): number;
  };
  _popNotificationToSend(): NotificationMessage;
  _flushSentNotifications(): NotificationMessage[];
  getMessageForSequenceNumber(sequenceNumber: number): NotificationMessage | null;
  readonly monitoredItems: Map<number, MonitoredItem>;
  readonly subscriptionDiagnostics?: { unacknowledgedMessageCount: number } | null;
}

interface MonitoredItemInternals {
  _on_opcua_event(eventData: ServedEvent): void;
  _makeEventFieldList(eventFields: unknown[]): EventFieldList;
  _empty_queue(): void;
}

/** The operations array of each service request node-opcua may refuse whole (`BadTooManyOperations`). */
const OPERATIONS_OF_REQUEST = [
  "nodesToRead",
  "nodesToWrite",
  "nodesToBrowse",
  "continuationPoints",
  "browsePaths",
  "methodsToCall",
  "nodesToRegister",
  "nodesToUnregister",
  "itemsToCreate",
  "itemsToModify",
  "monitoredItemIds",
  "subscriptionIds",
] as const;

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

  /** Most RelativePath elements of one TranslateBrowsePaths path (beyond: that path `BadQueryTooComplex`, not followed). */
  maxBrowsePathElements = 32;

  /** Most RelativePath elements of one TranslateBrowsePaths call, its paths together (beyond: `BadTooManyOperations`, nothing followed). */
  maxBrowsePathElementsPerCall = 10_000;

  /**
   * Most distinct nodes reached at any one element of one TranslateBrowsePaths path, targets
   * included (beyond: that path `BadQueryTooComplex`, its followed nodes dropped).
   */
  maxBrowsePathTargets = 1_000;

  /**
   * Most work of one TranslateBrowsePaths call, its paths together, in `stepCost` units (1 per node
   * expanded, and per supertype climbed from a type, plus the references scanned where the child
   * index cannot answer the step); a path that would pass it answers `BadQueryTooComplex`, as does
   * every later path of the call.
   */
  maxBrowsePathNodesPerCall = 100_000;

  /** Largest queue of one monitored item (a larger requested QueueSize is revised down to it). */
  maxQueueSize = 100;

  /** The bounds of an EventFilter's WhereClause (beyond: `BadEventFilterInvalid`, see `refusalOfEventFilter`). */
  eventFilterBounds: EventFilterBounds = { maxElements: 64, maxDepth: 16, maxOperands: 128, maxSelectClauses: 64 };

  /**
   * Most {@link costOfEventFilter} of one session's live monitored items together (beyond: the
   * create, or modify, answers `BadTooManyMonitoredItems` and nothing is created or changed).
   */
  maxEventFilterCostPerSession = 10_000;

  /**
   * Most work units of one Browse or BrowseNext call, its nodes or continuation points together
   * (each reference charged `scanWeight` of its ResultMask before it is scanned; beyond: the later
   * Browse nodes answer `BadNoContinuationPoints`, the later BrowseNext points an empty piece).
   * See {@link BrowsePages}.
   */
  maxReferencesPerBrowse = 2_500;

  /** Most sessions created but not (yet) activated, all clients together; the oldest is closed to make room. */
  maxUnactivatedSessions = 5;

  /** How long (ms) a session may stay unactivated before it is closed, with its channel when no activated session uses it. */
  unactivatedSessionTimeoutMs = 10_000;

  /**
   * Whether a session may be sent an event (set by the server; default: every event). Asked when
   * the event happens, and again at each Publish and Republish of it.
   */
  mayReceiveEvent: (session: ServerSession, event: ServedEvent) => boolean = () => true;

  /**
   * Whether a node does not exist for a session (set by the server: another session's diagnostics
   * without `opcua.diagnostics`, `diagnosticsAccessOf`). Asked at each service that names or
   * reaches a node: Read (every attribute), Write, Call, HistoryRead, Browse and BrowseNext,
   * TranslateBrowsePaths, RegisterNodes, CreateMonitoredItems, and every value a monitored item
   * records; each answers as for an unknown NodeId. @default no node is hidden
   */
  hidesNode: (session: ServerSession, node: BaseNode) => boolean = () => false;

  /**
   * Who a session acts for, as a key that differs when the principal (or its roles) differs (set
   * by the server). A subscription transferred to a session of another key loses what it had
   * queued and sent for the former one.
   */
  principalKeyOf: (session: ServerSession) => string | undefined = () => undefined;

  /**
   * Told of every request refused whole before any of its operations ran (`BadTooManyOperations`:
   * more operations than the per-call bound), once per request; answers the StatusCode to send.
   * Set by the server to audit the refusal. @default the refusal's own StatusCode
   */
  onRefusedRequest: (session: ServerSession, refused: RefusedRequest) => Promise<StatusCode> = (_session, refused) =>
    Promise.resolve(refused.statusCode);

  /**
   * Runs each service call of a session (set by the server, to gather the refusals the call's
   * operations make into one audit entry per kind); the call's response, or its error, is sent
   * once `settle` has resolved. @default runs the call as it is
   */
  serveCall: (
    session: ServerSession,
    call: (settle: () => Promise<void>) => void | Promise<void>,
  ) => void | Promise<void> = (_session, call) => call(() => Promise.resolve());

  /** Most references one Browse returns per node (a larger or unlimited RequestedMaxReferencesPerNode is revised down to it). */
  maxReferencesPerNode = 1_000;

  /** Least time (ms) between two ConditionRefresh(2) calls of one session (sooner: `BadRefreshInProgress`). */
  minConditionRefreshIntervalMs = 1_000;

  /**
   * Told of every ConditionRefresh or ConditionRefresh2 call refused (another session's
   * subscription or item, an unknown one, too soon after the last): set by the server to audit it.
   * Answers the StatusCode to send. @default the refusal's own StatusCode
   */
  onRefusedRefresh: (session: ServerSession, refused: RefusedRefresh) => Promise<StatusCode> = (_session, refused) =>
    Promise.resolve(refused.statusCode);

  readonly #guardedSubscriptions = new WeakSet<Subscription>();

  /** The {@link costOfEventFilter} of each live monitored item's filter. */
  readonly #filterCosts = new WeakMap<MonitoredItem, number>();

  /** While a ConditionRefresh(2) runs: the only event items its events may reach (the caller's). */
  #refreshTargets: ReadonlySet<MonitoredItem> | undefined;

  /** When each session's last ConditionRefresh(2) was accepted (`performance.now()`, ms). */
  readonly #lastRefresh = new WeakMap<ServerSession, number>();

  /**
   * Each notification a guarded monitored item produced → whether it may still be delivered (to
   * the subscription's current session, with its current grants). Asked at every Publish (the
   * subscription's pending notifications) and every Republish (its retransmission queue).
   */
  readonly #deliverable = new WeakMap<object, () => boolean>();

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
    // RegisterNodes gives an alias for a node that exists and the NodeId itself for an unknown one:
    // a hidden node is unknown.
    const register = session.registerNode.bind(session);
    session.registerNode = (nodeId) => (this.#visibleNode(session, nodeId) === null ? nodeId : register(nodeId));
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

  /** The node `nodeId` names as `session` may know it: null when unknown, or hidden from it ({@link AuthorizingServer.hidesNode}). */
  #visibleNode(session: ServerSession | undefined, nodeId: unknown): BaseNode | null {
    const node = nodeId ? (this.engine.addressSpace?.findNode(nodeId as never) ?? null) : null;
    return node && session && this.hidesNode(session, node) ? null : node;
  }

  /** `addressSpace` as `session` sees it: its `findNode` answers null for a node hidden from the session. */
  #visibleSpace<TSpace extends { findNode(nodeId: never): unknown }>(
    session: ServerSession,
    addressSpace: TSpace,
  ): TSpace {
    const findNode = addressSpace.findNode.bind(addressSpace);
    return Object.create(addressSpace, {
      findNode: {
        value: (nodeId: never) => {
          const node = findNode(nodeId) as BaseNode | null;
          return node && this.hidesNode(session, node) ? null : node;
        },
      },
    }) as TSpace;
  }

  /**
   * Makes the engine's Read (every attribute), Write, Call and HistoryRead of a node hidden from the
   * calling session ({@link AuthorizingServer.hidesNode}) answer as for an unknown NodeId
   * (`BadNodeIdUnknown`; a Call on a hidden method `BadMethodInvalid`, node-opcua's answer for an
   * unknown one), before anything else looks at it: nothing is audited, as for an unknown node.
   * Call once the server's own wraps of the engine's accessor are in place (this one is outermost).
   */
  guardHiddenNodes(): void {
    type Context = { session?: unknown } | undefined;
    type Guarded = "readNode" | "writeNode" | "callMethod" | "historyReadNode";
    const accessor = this.engine.addressSpaceAccessor as unknown as Record<
      Guarded,
      (context: Context, operation: Record<string, unknown> | undefined, ...rest: unknown[]) => Promise<unknown>
    > | null;
    if (!accessor) throw new Error("node-opcua server engine has no address space accessor");
    /** Whether the node exists but not for the context's session. */
    const hidden = (context: Context, nodeId: unknown): boolean => {
      const session = context?.session as ServerSession | undefined;
      const node = nodeId ? this.engine.addressSpace?.findNode(nodeId as never) : null;
      return !!node && !!session && this.hidesNode(session, node);
    };
    const guard = (
      name: Guarded,
      refusalOf: (context: Context, operation: Record<string, unknown>) => unknown,
    ): void => {
      const original = accessor[name].bind(accessor);
      accessor[name] = (context, operation, ...rest) => {
        const refusal = operation ? refusalOf(context, operation) : undefined;
        return refusal === undefined ? original(context, operation, ...rest) : Promise.resolve(refusal);
      };
    };
    guard("readNode", (context, { nodeId }) =>
      hidden(context, nodeId) ? new DataValue({ statusCode: StatusCodes.BadNodeIdUnknown }) : undefined,
    );
    guard("writeNode", (context, { nodeId }) => (hidden(context, nodeId) ? StatusCodes.BadNodeIdUnknown : undefined));
    guard("historyReadNode", (context, { nodeId }) =>
      hidden(context, nodeId) ? new HistoryReadResult({ statusCode: StatusCodes.BadNodeIdUnknown }) : undefined,
    );
    guard("callMethod", (context, { objectId, methodId }) =>
      hidden(context, objectId)
        ? { statusCode: StatusCodes.BadNodeIdUnknown }
        : hidden(context, methodId)
          ? { statusCode: StatusCodes.BadMethodInvalid }
          : undefined,
    );
  }

  /**
   * Drops what the session's subscriptions hold that was produced for its former principal: the
   * retransmission queue (Republish answers `BadMessageNotAvailable`), the notifications waiting
   * for a Publish and the queues of their monitored items. Called when the session changes
   * principal (ActivateSession with another identity); node-opcua then resends the current value
   * of every item, judged for the new principal.
   */
  dropUndelivered(session: ServerSession): void {
    for (const subscription of session.publishEngine?.subscriptions ?? []) dropUndeliveredOf(subscription);
  }

  /**
   * Every service call of a session runs through {@link AuthorizingServer.serveCall}, and its
   * response or error waits for the call to settle. A request refused whole
   * (`BadTooManyOperations`) is told to {@link AuthorizingServer.onRefusedRequest} once, with its
   * operation count, and answered with the StatusCode it gives. node-opcua makes these refusals
   * in each service handler, all through this one method's `sendError`.
   */
  protected override _apply_on_SessionObject(
    ...[ResponseClass, message, channel, actionToPerform]: Parameters<OPCUAServer["_apply_on_SessionObject"]>
  ): Promise<void> {
    const service = ResponseClass.schema.name.replace(/Response$/, "");
    let answered = false;
    const fault = (error: unknown, sendError: (statusCode: StatusCode) => void): void => {
      this.onServiceError(service, error);
      if (answered) return;
      answered = true;
      try {
        sendError(StatusCodes.BadInternalError);
      } catch {
        // the channel is gone: nothing to answer
      }
    };
    let refusedReads: number[] = [];
    const served = super._apply_on_SessionObject(
      ResponseClass,
      message,
      channel,
      (session, sendResponse, sendError) => {
        const respond = (send: () => void): void => {
          answered = true;
          send();
        };
        resolveRegisteredNodes(session, message.request);
        refusedReads = this.#invalidateRanges(message.request);
        const action = async (): Promise<void> =>
          this.serveCall(session, (settle) =>
            actionToPerform(
              session,
              (response) => {
                refuseReads(response, refusedReads);
                void settle().finally(() => respond(() => sendResponse(response)));
              },
              (statusCode) => {
                if (statusCode.value !== StatusCodes.BadTooManyOperations.value) {
                  void settle().finally(() => respond(() => sendError(statusCode)));
                  return;
                }
                const refused: RefusedRequest = { service, operations: operationsOf(message.request), statusCode };
                this.onRefusedRequest(session, refused).then(
                  (answer) => void settle().finally(() => respond(() => sendError(answer))),
                  () => void settle().finally(() => respond(() => sendError(statusCode))),
                );
              },
            ),
          );
        return action().catch((error: unknown) => fault(error, sendError));
      },
    );
    return served.catch((error: unknown) => this.onServiceError(service, error));
  }

  /**
   * The one check of an IndexRange (OPC UA Part 4, 7.27 NumericRange) for Read, Write and
   * CreateMonitoredItems: marks invalid every IndexRange that is not empty and is
   *
   * - not valid syntax (`"abc"`, `"-1"`, `"1:0"`: node-opcua decodes it as InvalidRange);
   * - two-dimensional (`"0,0"`) on a node that is not a matrix (a Variable of ValueRank < 2, a
   *   String included): node-opcua's matrix extraction assigned into a JS string and threw on an
   *   async path no catch reached, which ended the process;
   * - on the Value of a scalar Variable (ValueRank -1) whose DataType is not String, ByteString or
   *   BaseDataType: a Kiln tag's value among them. Part 4, 5.10.2.2 gives an IndexRange to "an
   *   array" (a String or ByteString is one, 7.27); on a scalar there is nothing to range over.
   *
   * Each such operation answers `BadIndexRangeInvalid` ("the syntax of the index range parameter
   * is invalid", Part 4, Table 183: Kiln answers it for a range that cannot apply to the node, and
   * keeps `BadIndexRangeNoData` for a valid range outside an array's bounds, as node-opcua does):
   * CreateMonitoredItems and Write by node-opcua and `OpcuaServer`'s Write refusing an invalid
   * range; a Read by the indices returned here, whose results the caller replaces (node-opcua's
   * Read ignored any range on a scalar and answered Good with the whole value).
   */
  #invalidateRanges(request: unknown): number[] {
    const operations = request as {
      nodesToRead?: readonly RangedOperation[] | null;
      nodesToWrite?: readonly RangedOperation[] | null;
      itemsToCreate?: readonly { itemToMonitor?: RangedOperation | null }[] | null;
    };
    const reads = operations.nodesToRead ?? [];
    const ranged = [
      ...reads,
      ...(operations.nodesToWrite ?? []),
      ...(operations.itemsToCreate ?? []).map((item) => item.itemToMonitor),
    ];
    for (const operation of ranged) {
      const range = operation?.indexRange;
      if (!range || range.type === EMPTY_RANGE || range.type === INVALID_RANGE) continue;
      if (this.#rangeable(operation, range.type)) continue;
      range.type = INVALID_RANGE;
      range.value = null;
    }
    return reads.flatMap((operation, index) => (operation?.indexRange?.type === INVALID_RANGE ? [index] : []));
  }

  /** Whether the operation's node can be ranged as `type` asks (see {@link AuthorizingServer.#invalidateRanges}). */
  #rangeable(operation: RangedOperation, type: number): boolean {
    const node = this.engine.addressSpace?.findNode(operation.nodeId as never) as
      { nodeClass?: NodeClass; valueRank?: number; getBasicDataType?: () => number } | null | undefined;
    const variable = node?.nodeClass === NodeClass.Variable;
    if (type === MATRIX_RANGE && !(variable && (node.valueRank ?? -1) >= 2)) return false;
    if (!variable || (operation.attributeId ?? VALUE_ATTRIBUTE) !== VALUE_ATTRIBUTE || node.valueRank !== -1)
      return true;
    return RANGEABLE_SCALARS.has(node.getBasicDataType?.() ?? BASE_DATA_TYPE);
  }

  /**
   * Told of an exception thrown while node-opcua served a session's request (the request is
   * answered `BadInternalError`; the process goes on), and of an error a variable's value source
   * raised (`Refresh`, `Read`, `MonitoredItem`: that one operation or item answers a Bad
   * StatusCode, see `isolateValueSources`). Set by the server to log it. The numeric
   * parameters node-opcua asserts on are checked before (`checkMonitoringParameters`): this is
   * the last line of defence, not the validation. @default ignores it
   */
  onServiceError: (service: string, error: unknown) => void = () => undefined;

  override async initialize(): Promise<void> {
    await super.initialize();
    isolateValueSources(this, (where, error) => this.onServiceError(where, error));
    this.#historyPerNode();
    this.#ownSubscriptionsOnly();
    // A session that ends (CloseSession with DeleteSubscriptions false, or its timeout) takes its
    // subscriptions with it: node-opcua would keep them as orphans (until their lifetime ends)
    // outside every per-session and per-principal cap, queueing for no one.
    const engine = this.engine;
    const closeSession = engine.closeSession.bind(engine);
    engine.closeSession = (authenticationToken, _deleteSubscriptions, reason) =>
      closeSession(authenticationToken, true, reason);
    // node-opcua transfers only between sessions of the same user token, and Kiln only between
    // sessions of the same principal: a subscription of another principal's session answers as an
    // unknown id (node-opcua's BadUserAccessDenied told that the id is live; ADR 0036, fix20i). An
    // orphaned one (none are kept, see above) taken by another principal carries nothing that was
    // queued or sent for the former one.
    const transferSubscription = engine.transferSubscription.bind(engine);
    engine.transferSubscription = async (session, subscriptionId, sendInitialValues): Promise<TransferResult> => {
      const subscription = engine.findSubscription(subscriptionId);
      const from = currentSessionOf(subscription ?? undefined);
      const before = from ? this.principalKeyOf(from) : undefined;
      if (subscription && from && before !== this.principalKeyOf(session)) {
        return new TransferResult({ statusCode: StatusCodes.BadSubscriptionIdInvalid });
      }
      const result = await transferSubscription(session, subscriptionId, sendInitialValues);
      if (result.statusCode.equals(StatusCodes.BadUserAccessDenied)) {
        return new TransferResult({ statusCode: StatusCodes.BadSubscriptionIdInvalid });
      }
      if (subscription && result.statusCode.isGood() && this.principalKeyOf(session) !== before) {
        dropUndeliveredOf(subscription);
        result.availableSequenceNumbers = [];
      }
      return result;
    };
  }

  /**
   * Makes the Server object's methods that take a subscription id (GetMonitoredItems, ResendData,
   * SetSubscriptionDurable; OPC UA Part 5, 9.1 to 9.3) answer `BadSubscriptionIdInvalid` for any
   * subscription that is not the calling session's, exactly as for an id never used. node-opcua
   * answered `BadUserAccessDenied` for another session's, so any session could tell which ids
   * other sessions hold right now (ids count up, one's own tells where to look): ADR 0036, fix20i.
   */
  #ownSubscriptionsOnly(): void {
    const server = this.engine.addressSpace?.rootFolder?.objects?.server as
      { getMethodByName(name: string): unknown } | undefined;
    for (const name of ["GetMonitoredItems", "ResendData", "SetSubscriptionDurable"]) {
      const method = server?.getMethodByName(name) as RefreshMethod | null | undefined;
      const original = method?._asyncExecutionFunction;
      if (!method || !original) continue;
      method.bindMethod((inputArguments, context, callback) => {
        const session = context.session as ServerSession | undefined;
        const subscriptionId = Number(inputArguments[0]?.value);
        if (!session?.getSubscription(subscriptionId)) {
          callback(null, { statusCode: StatusCodes.BadSubscriptionIdInvalid });
          return;
        }
        original.call(method, inputArguments, context, callback);
      });
    }
  }

  /**
   * Answers a HistoryRead per node, never as a whole: a node without history (an object or folder,
   * a method, a variable that is not Historizing such as the Server's CurrentTime) answers
   * `BadHistoryOperationUnsupported` (OPC UA Part 11, 6.4) without being asked, and a node whose
   * read throws answers `BadHistoryOperationInvalid` alone. node-opcua threw for a node without a
   * `historyRead` and failed the whole call, leaving the continuation points the call's other
   * nodes had opened held by the session and never handed out (12 calls: `BadNoContinuationPoints`).
   */
  #historyPerNode(): void {
    const accessor = this.engine.addressSpaceAccessor as unknown as {
      historyReadNode?: (...args: unknown[]) => Promise<HistoryReadResult>;
      addressSpace?: { findNode(nodeId: unknown): BaseNode | null };
    } | null;
    const readNode = accessor?.historyReadNode?.bind(accessor);
    if (!accessor || !readNode) return;
    accessor.historyReadNode = async (...args: unknown[]) => {
      const nodeToRead = args[1] as { nodeId?: unknown } | undefined;
      const node = accessor.addressSpace?.findNode(nodeToRead?.nodeId) as
        (BaseNode & { historizing?: boolean; historyRead?: unknown }) | null | undefined;
      if (
        node &&
        (node.nodeClass !== NodeClass.Variable || typeof node.historyRead !== "function" || node.historizing !== true)
      ) {
        return new HistoryReadResult({ statusCode: StatusCodes.BadHistoryOperationUnsupported });
      }
      try {
        return await readNode(...args);
      } catch (error) {
        this.onServiceError("HistoryRead", error);
        return new HistoryReadResult({ statusCode: StatusCodes.BadHistoryOperationInvalid });
      }
    };
  }

  /** Browse and BrowseNext, in pieces and within the per-call budget (see {@link BrowsePages}). */
  readonly #browsePages = new BrowsePages(
    () => this.engine.addressSpace as never,
    () => ({
      maxWorkPerCall: this.maxReferencesPerBrowse,
      maxContinuationPoints: this.engine.serverCapabilities.maxBrowseContinuationPoints || Infinity,
    }),
    (session, node) => this.hidesNode(session, node),
  );

  /**
   * Answers a Browse with {@link BrowsePages}: node-opcua's own handler described every reference
   * of each node before cutting at RequestedMaxReferencesPerNode, and checked the session's free
   * continuation points only after. A larger or unlimited RequestedMaxReferencesPerNode is revised
   * down to {@link AuthorizingServer.maxReferencesPerNode}.
   */
  protected override _on_BrowseRequest(message: Message, channel: ServerSecureChannelLayer): void {
    const request = message.request as BrowseRequest;
    const requested = request.requestedMaxReferencesPerNode;
    const perPiece = requested === 0 || requested > this.maxReferencesPerNode ? this.maxReferencesPerNode : requested;
    void this._apply_on_SessionObject(BrowseResponse, message, channel, async (session, sendResponse, sendError) => {
      const viewId = request.view?.viewId;
      if (viewId && !viewId.isEmpty() && this.engine.addressSpace?.findNode(viewId)?.nodeClass !== NodeClass.View) {
        return sendError(StatusCodes.BadViewIdUnknown);
      }
      const nodesToBrowse = request.nodesToBrowse ?? [];
      if (nodesToBrowse.length === 0) return sendError(StatusCodes.BadNothingToDo);
      const maxNodes = this.engine.serverCapabilities.operationLimits.maxNodesPerBrowse;
      if (maxNodes > 0 && nodesToBrowse.length > maxNodes) return sendError(StatusCodes.BadTooManyOperations);
      const results = await this.#browsePages.browse(session, nodesToBrowse, perPiece);
      sendResponse(new BrowseResponse({ results }));
    });
  }

  /** Answers a BrowseNext with {@link BrowsePages}: each continuation point's next piece, described now. */
  protected override _on_BrowseNextRequest(message: Message, channel: ServerSecureChannelLayer): void {
    const request = message.request as BrowseNextRequest;
    void this._apply_on_SessionObject(BrowseNextResponse, message, channel, (session, sendResponse, sendError) => {
      const points = request.continuationPoints ?? [];
      if (points.length === 0) return sendError(StatusCodes.BadNothingToDo);
      const results = this.#browsePages.browseNext(session, points, request.releaseContinuationPoints);
      sendResponse(new BrowseNextResponse({ results }));
    });
  }

  /**
   * Told of the continuation points of a HistoryRead response that could not be sent to the
   * session (node-opcua answered a ServiceFault instead, e.g. `BadResponseTooLarge`, or the channel
   * was gone), to release them. Set by the server. @default nothing
   */
  onHistoryUnsent: (session: ServerSession, points: readonly Buffer[]) => void = () => undefined;

  /** Channels whose `send_response` tells {@link AuthorizingServer.onHistoryUnsent}. */
  readonly #historyChannels = new WeakSet<ServerSecureChannelLayer>();

  /**
   * Wraps a channel's `send_response` once: a HistoryReadResponse carrying continuation points that
   * is replaced by a ServiceFault (node-opcua's path when the response cannot be chunked: larger
   * than the message size or chunk count the client accepts) or fails to go out releases them.
   */
  #releaseUnsentHistory(channel: ServerSecureChannelLayer): void {
    if (this.#historyChannels.has(channel)) return;
    this.#historyChannels.add(channel);
    type Send = (msgType: string, response: unknown, message: Message, callback?: (error?: Error) => void) => void;
    const target = channel as unknown as { send_response: Send };
    const send = target.send_response.bind(channel) as Send;
    const pending = new Map<Message, { session: ServerSession; points: Buffer[] }>();
    const release = (message: Message): void => {
      const unsent = pending.get(message);
      if (!unsent) return;
      pending.delete(message);
      this.onHistoryUnsent(unsent.session, unsent.points);
    };
    target.send_response = (msgType, response, message, callback) => {
      if ((response as { schema?: { name?: string } } | null)?.schema?.name === "ServiceFault") {
        release(message);
        send(msgType, response, message, callback);
        return;
      }
      if (!(response instanceof HistoryReadResponse)) {
        send(msgType, response, message, callback);
        return;
      }
      const points = (response.results ?? [])
        .map((result) => result.continuationPoint)
        .filter((point): point is Buffer => point !== null && point !== undefined && point.length > 0);
      const token = (message.request as HistoryReadRequest).requestHeader.authenticationToken;
      const session = points.length > 0 ? this.engine.getSession(token) : null;
      if (!session) {
        send(msgType, response, message, callback);
        return;
      }
      pending.set(message, { session, points });
      try {
        send(msgType, response, message, (error) => {
          if (error) release(message);
          callback?.(error);
        });
      } finally {
        pending.delete(message); // sent (chunking is synchronous for a session's messages)
      }
    };
  }

  protected override _on_HistoryReadRequest(message: Message, channel: ServerSecureChannelLayer): void {
    this.#releaseUnsentHistory(channel);
    const request = message.request as HistoryReadRequest;
    // Part 4, 5.10.3: a HistoryRead returns data with timestamps; Neither is refused for the
    // whole request (node-opcua answered it with the values and no timestamps).
    if ((request.timestampsToReturn as number) === 3 /* TimestampsToReturn.Neither */) {
      void this._apply_on_SessionObject(HistoryReadResponse, message, channel, (_session, _send, sendError) =>
        sendError(StatusCodes.BadTimestampsToReturnInvalid),
      );
      return;
    }
    const processed = request.historyReadDetails instanceof ReadProcessedDetails ? request.historyReadDetails : null;
    // Part 11, 6.5.4: a ReadProcessed names one aggregate per node of NodesToRead; another count
    // is BadAggregateListMismatch for the whole request (node-opcua answered BadInvalidArgument
    // for one node, or a ServiceFault BadHistoryOperationInvalid).
    if (
      processed &&
      (processed.aggregateType?.length ?? 0) !== (request.nodesToRead?.length ?? 0) &&
      (request.nodesToRead?.length ?? 0) > 0
    ) {
      void this._apply_on_SessionObject(HistoryReadResponse, message, channel, (_session, _send, sendError) =>
        sendError(StatusCodes.BadAggregateListMismatch),
      );
      return;
    }
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

  /**
   * Bounds the RelativePaths of a TranslateBrowsePathsToNodeIds before node-opcua follows them: it
   * recursed once per element (5,000 elements overflowed the stack: `BadInternalError`, logged as
   * an error per request) and 4 paths of 60,000 elements held the event loop for seconds. A call
   * whose paths hold more than {@link AuthorizingServer.maxBrowsePathElementsPerCall} elements
   * together answers `BadTooManyOperations` (Part 4, 5.9.4.3) and nothing is followed; a path
   * longer than {@link AuthorizingServer.maxBrowsePathElements} answers `BadQueryTooComplex`
   * (Part 4, 5.9.4.4: requires too many resources) and the call's other paths are followed.
   */
  protected override _on_TranslateBrowsePathsToNodeIdsRequest(
    message: Message,
    channel: ServerSecureChannelLayer,
  ): void {
    const request = message.request as TranslateBrowsePathsToNodeIdsRequest;
    const lengths = (request.browsePaths ?? []).map((path) => path?.relativePath?.elements?.length ?? 0);
    if (lengths.reduce((sum, length) => sum + length, 0) > this.maxBrowsePathElementsPerCall) {
      void this._apply_on_SessionObject(
        TranslateBrowsePathsToNodeIdsResponse,
        message,
        channel,
        (_session, _send, sendError) => sendError(StatusCodes.BadTooManyOperations),
      );
      return;
    }
    this.#boundBrowsePaths();
    // node-opcua's handler, with the calling session: a node hidden from it is not a step or a target.
    void this._apply_on_SessionObject(
      TranslateBrowsePathsToNodeIdsResponse,
      message,
      channel,
      (session, sendResponse, sendError) => {
        const paths = request.browsePaths ?? [];
        if (paths.length === 0) return sendError(StatusCodes.BadNothingToDo);
        const maxNodes = this.engine.serverCapabilities.operationLimits.maxNodesPerTranslateBrowsePathsToNodeIds;
        if (maxNodes > 0 && paths.length > maxNodes) return sendError(StatusCodes.BadTooManyOperations);
        const budget = { nodes: this.maxBrowsePathNodesPerCall };
        const results = paths.map((path) => this.#translateBrowsePath(path, budget, session));
        sendResponse(new TranslateBrowsePathsToNodeIdsResponse({ diagnosticInfos: null, results }));
      },
    );
  }

  /**
   * Replaces the engine's translateBrowsePaths once. node-opcua's AddressSpace.browsePath followed
   * a RelativePath depth first without merging the nodes reached by several routes, so 32 elements
   * alternating between a node organized twice under one name and its parents reached 2^16 targets
   * (seconds of a blocked event loop per path). Here each element is followed from the distinct
   * nodes the previous one reached (breadth first, work linear in nodes × elements), with
   * node-opcua's own per-node step (`browseNodeByTargetName`: referenceTypeId, isInverse,
   * includeSubtypes and targetName as Part 4, 7.26 defines) and its StatusCodes.
   */
  #boundBrowsePaths(): void {
    const engine = this.engine as unknown as {
      translateBrowsePaths(paths: BrowsePath[]): Promise<BrowsePathResult[]>;
      kilnBounded?: true;
    };
    if (engine.kilnBounded) return;
    engine.kilnBounded = true;
    engine.translateBrowsePaths = (paths) => {
      const budget = { nodes: this.maxBrowsePathNodesPerCall };
      return Promise.resolve(paths.map((path) => this.#translateBrowsePath(path, budget)));
    };
  }

  /**
   * One path of a TranslateBrowsePaths, followed breadth first over distinct nodes (see
   * `#boundBrowsePaths`), as `session` sees the address space: a node hidden from it
   * ({@link AuthorizingServer.hidesNode}) is neither a starting node (`BadNodeIdUnknown`), a step
   * nor a target. Without a session (an in-process caller of the engine) nothing is hidden.
   */
  #translateBrowsePath(path: BrowsePath, budget: { nodes: number }, session?: ServerSession): BrowsePathResult {
    const elements = path?.relativePath?.elements ?? [];
    if (elements.length > this.maxBrowsePathElements || budget.nodes <= 0) {
      return new BrowsePathResult({ statusCode: StatusCodes.BadQueryTooComplex });
    }
    const addressSpace = this.engine.addressSpace;
    const start = this.#visibleNode(session, path.startingNode);
    if (!addressSpace || !start) return new BrowsePathResult({ statusCode: StatusCodes.BadNodeIdUnknown });
    if (elements.length === 0) return new BrowsePathResult({ statusCode: StatusCodes.BadNothingToDo, targets: [] });
    // Part 4, 7.26: only the last element may omit its targetName, and TranslateBrowsePaths
    // (Part 4, 5.8.4) requires it there too: node-opcua's BadBrowseNameInvalid for both.
    if (elements.some((element) => !element?.targetName?.name)) {
      return new BrowsePathResult({ statusCode: StatusCodes.BadBrowseNameInvalid });
    }
    let current: BaseNode[] = [start];
    let reached: ReturnType<BaseNode["browseNodeByTargetName"]> = [];
    for (const [index, element] of elements.entries()) {
      const isLast = index === elements.length - 1;
      const next = new Map<string, (typeof reached)[number]>();
      for (const node of current) {
        budget.nodes -= stepCost(node, element);
        if (budget.nodes < 0) return new BrowsePathResult({ statusCode: StatusCodes.BadQueryTooComplex });
        for (const nodeId of node.browseNodeByTargetName(element, isLast)) {
          const target = session ? addressSpace.findNode(nodeId) : null;
          if (target && this.hidesNode(session!, target)) continue;
          next.set(nodeId.toString(), nodeId);
        }
        if (next.size > this.maxBrowsePathTargets) {
          return new BrowsePathResult({ statusCode: StatusCodes.BadQueryTooComplex });
        }
      }
      reached = [...next.values()];
      if (isLast) break;
      // A target outside this address space (another server's) is not followed, as node-opcua did.
      current = reached.map((nodeId) => addressSpace.findNode(nodeId)).filter((node) => node !== null);
    }
    if (reached.length === 0) return new BrowsePathResult({ statusCode: StatusCodes.BadNoMatch });
    return new BrowsePathResult({
      statusCode: StatusCodes.Good,
      // The field's initializer coerces a NodeId to the ExpandedNodeId it holds (coerceExpandedNodeId).
      targets: reached.map((nodeId) => ({
        targetId: nodeId as unknown as ExpandedNodeIdOf,
        remainingPathIndex: 0xffffffff, // Part 4, 7.5: the whole path matched
      })),
    });
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
    this.#guardDelivery(subscription);
    const create = subscription.preCreateMonitoredItem.bind(subscription);
    subscription.preCreateMonitoredItem = (addressSpace, timestampsToReturn, itemRequest) => {
      const item = itemRequest.itemToMonitor;
      const refuse = (statusCode: StatusCode, filterResult: EventFilterResult | null = null) => ({
        createResult: new MonitoredItemCreateResult({ statusCode, filterResult }),
        monitoredItemCreateRequest: itemRequest,
      });
      const session = currentSessionOf(subscription);
      if (!session) return refuse(StatusCodes.BadUserAccessDenied);
      // The address space as the session sees it: a node hidden from it is unknown to every check
      // below and to node-opcua's own (BadNodeIdUnknown, as for a NodeId that names nothing).
      addressSpace = this.#visibleSpace(session, addressSpace);
      const filter = itemRequest.requestedParameters?.filter;
      const filterRefusal = refusalOfEventFilter(filter, this.eventFilterBounds);
      if (filterRefusal) return refuse(filterRefusal.statusCode, filterRefusal.filterResult);
      const cost = costOfEventFilter(filter);
      if (cost > 0 && this.#filterCostOf(session) + cost > this.maxEventFilterCostPerSession) {
        return refuse(StatusCodes.BadTooManyMonitoredItems);
      }
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
      const numbers = checkMonitoringParameters(itemRequest.requestedParameters, {
        publishingInterval: subscription.publishingInterval,
        maxQueueSize: this.maxQueueSize,
        euRange: euRangeOf(node),
      });
      if (numbers) return refuse(numbers);
      const created = create(addressSpace, timestampsToReturn, itemRequest);
      if (created.monitoredItem && cost > 0) this.#filterCosts.set(created.monitoredItem, cost);
      if (created.monitoredItem) this.#guardFilterChanges(created.monitoredItem);
      if (guarded && created.monitoredItem) {
        guardValues(guarded, created.monitoredItem, this.#deliverable, mayRead);
        isolateSampling(created.monitoredItem, (where, error) => this.onServiceError(where, error));
      } else if (node && created.monitoredItem && item.attributeId !== EVENT_NOTIFIER_ATTRIBUTE) {
        // Any other attribute (BrowseName, DisplayName…) of a node that may become hidden from the
        // subscription's session (a change of user, a revoked grant, a transfer): checked per value.
        guardValues(node, created.monitoredItem, this.#deliverable, (monitored, watched) => {
          const current = currentSessionOf(monitored.$subscription as Subscription | undefined);
          return current !== undefined && !this.hidesNode(current, watched);
        });
      }
      if (item.attributeId === EVENT_NOTIFIER_ATTRIBUTE && created.monitoredItem)
        this.#guardEvents(created.monitoredItem);
      return created;
    };
  }

  /**
   * The {@link costOfEventFilter} of the session's live monitored items together, over all its
   * subscriptions now (asked at each create and modify: items deleted, or moved to another session
   * by TransferSubscriptions, count no more).
   */
  #filterCostOf(session: ServerSession): number {
    let cost = 0;
    for (const subscription of session.publishEngine?.subscriptions ?? []) {
      for (const item of (subscription as unknown as SubscriptionInternals).monitoredItems.values()) {
        cost += this.#filterCosts.get(item) ?? 0;
      }
    }
    return cost;
  }

  /**
   * Makes a ModifyMonitoredItems of the item check its new EventFilter as a create does
   * ({@link refusalOfEventFilter}, then the session's filter budget with this item's new cost in
   * place of its old), and node-opcua's own check of any filter against the item's attribute and
   * node (`validateFilter`: `BadFilterNotAllowed`, `BadMonitoredItemFilterUnsupported` for a
   * Percent deadband without EURange...), before node-opcua applies any of the new parameters:
   * its modify set the sampling interval, queue size and filter first and checked the filter
   * after. A refused filter answers `BadEventFilterInvalid` with its per-element result,
   * `BadTooManyMonitoredItems` or node-opcua's StatusCode, and changes nothing.
   */
  #guardFilterChanges(item: MonitoredItem): void {
    const modify = item.modify.bind(item);
    item.modify = (timestampsToReturn, parameters) => {
      const numbers = checkMonitoringParameters(parameters, {
        publishingInterval: (item.$subscription as Subscription | undefined)?.publishingInterval ?? 0,
        maxQueueSize: this.maxQueueSize,
        euRange: euRangeOf(item.node),
      });
      if (numbers) return new MonitoredItemModifyResult({ statusCode: numbers });
      const refusal = refusalOfEventFilter(parameters?.filter, this.eventFilterBounds);
      if (refusal) {
        return new MonitoredItemModifyResult({ statusCode: refusal.statusCode, filterResult: refusal.filterResult });
      }
      // With the bounds node-opcua's own modify checks after it has applied the parameters.
      const bounds = item.$subscription as
        { maxWhereClauseParameters?: number; maxSelectClauseParameters?: number } | undefined;
      const filterStatus =
        parameters?.filter && item.node
          ? validateFilter(parameters.filter, item.itemToMonitor, item.node as never, {
              maxWhereClauseParameters: bounds?.maxWhereClauseParameters,
              maxSelectClauseParameters: bounds?.maxSelectClauseParameters,
            })
          : StatusCodes.Good;
      if (filterStatus.isNotGood()) return new MonitoredItemModifyResult({ statusCode: filterStatus });
      const session = currentSessionOf(item.$subscription as Subscription | undefined);
      // node-opcua keeps the former filter when a modify names none.
      const cost = parameters?.filter ? costOfEventFilter(parameters.filter) : (this.#filterCosts.get(item) ?? 0);
      const others = session ? this.#filterCostOf(session) - (this.#filterCosts.get(item) ?? 0) : 0;
      if (cost > 0 && others + cost > this.maxEventFilterCostPerSession) {
        return new MonitoredItemModifyResult({ statusCode: StatusCodes.BadTooManyMonitoredItems });
      }
      const result = modify(timestampsToReturn, parameters);
      if (result.statusCode.isGood()) this.#filterCosts.set(item, cost);
      return result;
    };
  }

  /**
   * Makes every delivery of the subscription's notifications ask, at that moment, whether each
   * may still be delivered ({@link AuthorizingServer.#deliverable}): a Publish replaces a refused
   * value by `BadUserAccessDenied` (no value) and drops a refused event; a Republish of a message
   * holding any refused notification answers `BadMessageNotAvailable`. Grants can be revoked and
   * sessions change principal after a notification was produced and before it is (re)sent.
   */
  #guardDelivery(subscription: Subscription): void {
    const internals = subscription as unknown as SubscriptionInternals;
    const deliverable = (notification: unknown): boolean =>
      typeof notification !== "object" || notification === null || (this.#deliverable.get(notification)?.() ?? true);
    const pop = internals._popNotificationToSend.bind(subscription);
    internals._popNotificationToSend = () => {
      const pending = internals._pending_notifications;
      for (const entry of pending.values()) {
        if (deliverable(entry.notification)) continue;
        entry.notification =
          entry.notification instanceof MonitoredItemNotification ? deniedNotification(entry.notification) : undefined;
      }
      pending.filterOut((entry) => entry.notification === undefined);
      if (pending.size > 0) return pop();
      // Everything pending was refused: an empty message, which node-opcua does not send.
      return new NotificationMessage({ sequenceNumber: 0xffffffff, notificationData: [], publishTime: new Date() });
    };
    const message = internals.getMessageForSequenceNumber.bind(subscription);
    internals.getMessageForSequenceNumber = (sequenceNumber) => {
      const sent = message(sequenceNumber);
      if (!sent) return null;
      for (const data of sent.notificationData ?? []) {
        const notifications: readonly unknown[] =
          data instanceof DataChangeNotification
            ? (data.monitoredItems ?? [])
            : data instanceof EventNotificationList
              ? (data.events ?? [])
              : [];
        if (!notifications.every(deliverable)) return null;
      }
      return sent;
    };
  }

  /**
   * Makes an event monitored item deliver an event only to a subscription whose current session
   * {@link AuthorizingServer.mayReceiveEvent} (asked when the event happens, and again when it is
   * published or republished: the principal or its grants may have changed meanwhile).
   */
  #guardEvents(item: MonitoredItem): void {
    const internals = item as unknown as MonitoredItemInternals;
    const mayReceive = (event: ServedEvent): boolean => {
      const session = currentSessionOf(item.$subscription as Subscription | undefined);
      return session !== undefined && this.mayReceiveEvent(session, event);
    };
    let current: ServedEvent | undefined;
    const onEvent = internals._on_opcua_event.bind(item);
    internals._on_opcua_event = (event) => {
      if (this.#refreshTargets && !this.#refreshTargets.has(item)) return;
      if (!mayReceive(event)) return;
      current = event;
      try {
        onEvent(event);
      } finally {
        current = undefined;
      }
    };
    const make = internals._makeEventFieldList.bind(item);
    internals._makeEventFieldList = (eventFields) => {
      const list = make(eventFields);
      const event = current;
      if (event) this.#deliverable.set(list, () => mayReceive(event));
      return list;
    };
    const extract = item.extractMonitoredItemNotifications.bind(item);
    item.extractMonitoredItemNotifications = (force?: boolean) =>
      extract(force).filter((notification) => this.#deliverable.get(notification)?.() ?? true);
  }

  /**
   * Replaces node-opcua's ConditionRefresh and ConditionRefresh2 (OPC UA Part 9, 5.5.7 and 5.5.8)
   * on ConditionType, whose check of the subscription is a stub: any session could name any
   * subscription id, and the refresh went to every session's event items. Now the subscription
   * (and, for ConditionRefresh2, the event monitored item in it) must belong to the calling
   * session (`BadSubscriptionIdInvalid`, `BadMonitoredItemIdInvalid`); a session refreshes at most
   * once per {@link AuthorizingServer.minConditionRefreshIntervalMs} (`BadRefreshInProgress`); and
   * the RefreshStart event, the retained conditions and the RefreshEnd event reach only that
   * subscription's event items (that one item). Refusals go to
   * {@link AuthorizingServer.onRefusedRefresh}. Call once the Alarms & Conditions service is installed.
   */
  guardConditionRefresh(): void {
    const conditionType = this.engine.addressSpace?.findEventType("ConditionType") as
      (BaseNode & Partial<Record<"conditionRefresh" | "conditionRefresh2", RefreshMethod>>) | null | undefined;
    for (const name of ["conditionRefresh", "conditionRefresh2"] as const) {
      const method = conditionType?.[name];
      const original = method?._asyncExecutionFunction;
      if (!method || !original) continue;
      const twoIds = name === "conditionRefresh2";
      method.bindMethod((inputArguments, context, callback) => {
        const answer = (statusCode: StatusCode): void => callback(null, { statusCode });
        const session = context.session as ServerSession | undefined;
        const refused = (statusCode: StatusCode, detail: string): void => {
          if (!session) return answer(statusCode);
          const refusal = { method: twoIds ? "ConditionRefresh2" : "ConditionRefresh", statusCode, detail };
          this.onRefusedRefresh(session, refusal).then(answer, () => answer(statusCode));
        };
        const subscriptionId = Number(inputArguments[0]?.value);
        const subscription = session?.getSubscription(subscriptionId) ?? null;
        if (!session || !subscription) {
          return refused(StatusCodes.BadSubscriptionIdInvalid, `subscription ${subscriptionId} is not the caller's`);
        }
        let targets = [...(subscription as unknown as SubscriptionInternals).monitoredItems.values()].filter(
          (item) => item.itemToMonitor.attributeId === EVENT_NOTIFIER_ATTRIBUTE,
        );
        if (twoIds) {
          const itemId = Number(inputArguments[1]?.value);
          targets = targets.filter((item) => item.monitoredItemId === itemId);
          if (targets.length === 0) {
            return refused(
              StatusCodes.BadMonitoredItemIdInvalid,
              `monitored item ${itemId} is not an event item of subscription ${subscriptionId}`,
            );
          }
        }
        const now = performance.now();
        const last = this.#lastRefresh.get(session);
        if (last !== undefined && now - last < this.minConditionRefreshIntervalMs) {
          return refused(
            StatusCodes.BadRefreshInProgress,
            `a refresh ${Math.round(now - last)} ms after the last one (at most one per ${this.minConditionRefreshIntervalMs} ms)`,
          );
        }
        this.#lastRefresh.set(session, now);
        // node-opcua's refresh raises every event synchronously, before it calls back.
        this.#refreshTargets = new Set(targets);
        try {
          original.call(method, inputArguments, context, callback);
        } finally {
          this.#refreshTargets = undefined;
        }
      });
    }
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
 * Makes a monitored item ask `mayRead` (for a variable's Value: its subscription's current
 * session's context for `Read` of it, {@link mayRead}; for any other attribute: whether the node is
 * hidden from that session, `AuthorizingServer.hidesNode`) twice:
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
function guardValues(
  node: BaseNode,
  item: MonitoredItem,
  deliverable: WeakMap<object, () => boolean>,
  mayRead: (item: MonitoredItem, node: BaseNode) => boolean,
): void {
  (item as unknown as OverflowInternals)._setOverflowBit = (notification) => setOverflowBit(item, notification);
  // A node node-opcua disposed since (another session's diagnostics after it closed) no longer
  // exists: BadNodeIdUnknown, asked first (node-opcua's permission check throws on it, from a timer:
  // adv20e F1). Any other failure of the check refuses the value rather than escaping.
  const refusal = (): StatusCode | undefined => {
    if (isDisposedNode(node)) return StatusCodes.BadNodeIdUnknown;
    try {
      return mayRead(item, node) ? undefined : StatusCodes.BadUserAccessDenied;
    } catch {
      return StatusCodes.BadUserAccessDenied;
    }
  };
  const record = item.recordValue.bind(item);
  item.recordValue = (dataValue, skipChangeTest, indexRange) => {
    const refused = refusal();
    return refused === undefined
      ? recordThroughDeadband(item, record, dataValue, skipChangeTest, indexRange)
      : record(
          new DataValue({ statusCode: refused, serverTimestamp: dataValue.serverTimestamp }),
          skipChangeTest,
          indexRange,
        );
  };
  const extract = item.extractMonitoredItemNotifications.bind(item);
  item.extractMonitoredItemNotifications = (force?: boolean) => {
    const notifications = extract(force);
    if (notifications.length === 0) return notifications;
    const refused = refusal();
    if (refused === undefined) {
      const check = (): boolean => refusal() === undefined;
      for (const notification of notifications) deliverable.set(notification, check);
      return notifications;
    }
    return [deniedNotification(notifications.at(-1) as MonitoredItemNotification, refused)];
  };
}

/** node-opcua's hook that marks the oldest value left in an item's queue after a discard. */
interface OverflowInternals {
  _setOverflowBit(notification: object): void;
}

/**
 * Sets the Overflow bit (with InfoType DataValue) on the oldest value left in a monitored item's
 * queue after a value was discarded, whatever its StatusCode (OPC UA Part 4, 5.12.1.5 and 7.39.1),
 * and counts it in the subscription's diagnostics. Replaces node-opcua's own, which asserts that
 * value is Good: a Bad or Uncertain value at the head of a full queue (a device's NaN, a value
 * refused for a revoked grant) threw out of a value callback and ended the process.
 */
function setOverflowBit(item: MonitoredItem, notification: object): void {
  if (Object.hasOwn(notification, "value")) {
    const queued = notification as { value: DataValue };
    queued.value.statusCode = StatusCode.makeStatusCode(queued.value.statusCode, "Overflow | InfoTypeDataValue");
  }
  const diagnostics = (item.$subscription as Subscription | undefined)?.subscriptionDiagnostics;
  if (diagnostics) diagnostics.monitoringQueueOverflowCount++;
}

/**
 * Records a value on an item whose filter may be a deadband. Kiln decides every deadband itself
 * ({@link outsideDeadband}), never node-opcua: its check threw (ending the process) for a value
 * that is not a finite number and for a difference beyond `Number.MAX_VALUE`, and it compared
 * Int64/UInt64 values wrongly (the high-word difference times 2^32 − 1, then the low words alone),
 * so a 64-bit move larger than a deadband of about 2^32 or more was never notified. A change of
 * StatusCode is always reported (the deadband applies to the value, OPC UA Part 4, 7.22.2); with an
 * unchanged StatusCode nothing is reported when the trigger is Status; a change between two
 * values that are both finite numbers (or arrays of them, or Int64/UInt64 values) is reported when
 * it exceeds the deadband; any other change of value is reported, and an equal value (NaN equal to
 * NaN) is not. A value that is not reported leaves the last reported one as the deadband's base.
 */
function recordThroughDeadband(
  item: MonitoredItem,
  record: MonitoredItem["recordValue"],
  dataValue: DataValue,
  skipChangeTest: boolean | undefined,
  indexRange: Parameters<MonitoredItem["recordValue"]>[2],
): boolean {
  const filter = item.filter;
  if (skipChangeTest || !(filter instanceof DataChangeFilter) || (filter.deadbandType as number) === 0) {
    return record(dataValue, skipChangeTest, indexRange);
  }
  const old = item.oldDataValue as DataValue | undefined;
  if (old?.statusCode?.value !== dataValue.statusCode?.value) return record(dataValue, true, indexRange);
  if ((filter.trigger as number) === 0) return false; // DataChangeTrigger.Status: the StatusCode is unchanged
  const deadband = absoluteDeadbandOf(filter, item.node);
  if (deadband !== undefined && old?.value && deadbandApplies(old.value) && deadbandApplies(dataValue.value)) {
    return outsideDeadband(old.value, dataValue.value, deadband) ? record(dataValue, true, indexRange) : false;
  }
  if (sameValueOf(old?.value?.value, dataValue.value?.value)) return false;
  return record(dataValue, true, indexRange);
}

/**
 * The absolute deadband of a DataChangeFilter (OPC UA Part 4, 7.22.2): an Absolute deadband's
 * value; a Percent deadband's share of the node's EURange span, `(deadbandValue / 100) ×
 * (high − low)`; none for a Percent deadband on a node without EURange (refused when the item is
 * created or modified) or an unknown DeadbandType.
 */
function absoluteDeadbandOf(filter: DataChangeFilter, node: BaseNode | null | undefined): number | undefined {
  const type = filter.deadbandType as number;
  if (type === 1) return filter.deadbandValue;
  if (type !== 2) return undefined;
  const range = euRangeOf(node);
  return range ? (filter.deadbandValue / 100) * (range.high - range.low) : undefined;
}

/** Whether {@link outsideDeadband} can compare this Variant: finite numbers or [high, low] 64-bit words only. */
function deadbandApplies(variant: Variant | null | undefined): variant is Variant {
  if (!variant) return false;
  const pair = isWide(variant);
  const comparable = (element: unknown): boolean =>
    pair
      ? Array.isArray(element) && element.length === 2 && element.every((part) => Number.isInteger(part))
      : typeof element === "number" && Number.isFinite(element);
  if (variant.arrayType === VariantArrayType.Scalar) return comparable(variant.value);
  const value: unknown = variant.value;
  if (!Array.isArray(value) && !ArrayBuffer.isView(value)) return false;
  return Array.from(value as ArrayLike<unknown>).every(comparable);
}

/** Whether the Variant holds Int64 or UInt64 values ([high, low] 32-bit words each). */
function isWide(variant: Variant): boolean {
  return variant.dataType === DataType.Int64 || variant.dataType === DataType.UInt64;
}

/**
 * Kiln's one deadband rule (OPC UA Part 4, 7.22.2): a change is reported when `|after − before| >
 * deadband`, element by element for an array (any element outside reports the whole array); a
 * change of DataType, array kind or length is always reported. Differences are exact: Int64 and
 * UInt64 values as bigints (compared exactly with the Double deadband), Doubles as IEEE
 * differences, where one beyond `Number.MAX_VALUE` is +∞ and so outside any finite deadband. Both
 * Variants must satisfy {@link deadbandApplies}.
 */
function outsideDeadband(before: Variant, after: Variant, deadband: number): boolean {
  if (before.dataType !== after.dataType || before.arrayType !== after.arrayType) return true;
  const list = (variant: Variant): unknown[] =>
    variant.arrayType === VariantArrayType.Scalar ? [variant.value] : Array.from(variant.value as ArrayLike<unknown>);
  const a = list(before);
  const b = list(after);
  if (a.length !== b.length) return true;
  const wide = isWide(after);
  const signed = after.dataType === DataType.Int64;
  for (let index = 0; index < a.length; index += 1) {
    if (wide) {
      const difference = wideOf(b[index] as number[], signed) - wideOf(a[index] as number[], signed);
      if ((difference < 0n ? -difference : difference) > deadband) return true;
    } else if (Math.abs((b[index] as number) - (a[index] as number)) > deadband) {
      return true;
    }
  }
  return false;
}

/** An Int64/UInt64 value's [high, low] 32-bit words as a bigint (two's complement when signed). */
function wideOf(words: number[], signed: boolean): bigint {
  const whole = (BigInt((words[0] as number) >>> 0) << 32n) | BigInt((words[1] as number) >>> 0);
  return signed ? BigInt.asIntN(64, whole) : whole;
}

/** Value equality for change detection: NaN equals NaN, arrays element by element, else a Variant's own equality. */
function sameValueOf(before: unknown, after: unknown): boolean {
  if (Object.is(before, after)) return true;
  const list = (value: unknown): unknown[] | undefined =>
    Array.isArray(value)
      ? value
      : ArrayBuffer.isView(value)
        ? Array.from(value as unknown as ArrayLike<unknown>)
        : undefined;
  const first = list(before);
  const second = list(after);
  if (first && second) {
    return first.length === second.length && first.every((element, index) => sameValueOf(element, second[index]));
  }
  if (first || second || typeof before !== "object" || typeof after !== "object" || !before || !after) return false;
  return sameVariant(new Variant({ value: before }), new Variant({ value: after }));
}

/** The node's EURange (low, high), when it is a variable that has one. */
function euRangeOf(node: BaseNode | null | undefined): { low: number; high: number } | undefined {
  const range = node?.getChildByName("EURange") as { readValue?(): DataValue } | null | undefined;
  const value: unknown = range?.readValue?.().value?.value;
  if (typeof value !== "object" || value === null) return undefined;
  const { low, high } = value as { low?: unknown; high?: unknown };
  return typeof low === "number" && typeof high === "number" ? { low, high } : undefined;
}

/** A value notification's refusal: same clientHandle, `BadUserAccessDenied`, no value. */
function deniedNotification(
  notification: MonitoredItemNotification,
  statusCode: StatusCode = StatusCodes.BadUserAccessDenied,
): MonitoredItemNotification {
  return new MonitoredItemNotification({
    clientHandle: notification.clientHandle,
    value: new DataValue({
      statusCode,
      serverTimestamp: notification.value?.serverTimestamp ?? null,
    }),
  });
}

/** See {@link AuthorizingServer.dropUndelivered}. */
function dropUndeliveredOf(subscription: Subscription): void {
  const internals = subscription as unknown as SubscriptionInternals;
  internals._flushSentNotifications();
  internals._pending_notifications.filterOut(() => true);
  if (internals.subscriptionDiagnostics) internals.subscriptionDiagnostics.unacknowledgedMessageCount = 0;
  for (const item of internals.monitoredItems.values()) (item as unknown as MonitoredItemInternals)._empty_queue();
}

/** A NodeId that may be a RegisterNodes alias (node-opcua's decoded NodeId; ServerSession resolves it). */
type MaybeAlias = Parameters<ServerSession["resolveRegisteredNode"]>[0];

/**
 * Replaces, in place, every RegisterNodes alias (OPC UA Part 4, 5.8.5: valid for the session that
 * registered it) a request names by the NodeId it stands for, as node-opcua's own Read and Write do
 * (`ServerSession.resolveRegisteredNode`): the nodes to read (Read, HistoryRead), to write, to
 * browse, the starting nodes of TranslateBrowsePaths, the objects and methods of Call and the
 * nodes of monitored items to create. Run once per request before any check looks a node up: the
 * IndexRange check of a Read by alias found no node and let a range on a scalar pass (adversarial
 * review 20s), and HistoryRead, Call and CreateMonitoredItems answered `BadNodeIdUnknown` for an
 * alias. Anything that is not an alias of this session is left as it is.
 */
function resolveRegisteredNodes(session: ServerSession, request: unknown): void {
  const fields = request as {
    nodesToRead?: ({ nodeId?: MaybeAlias } | null)[] | null;
    nodesToWrite?: ({ nodeId?: MaybeAlias } | null)[] | null;
    nodesToBrowse?: ({ nodeId?: MaybeAlias } | null)[] | null;
    browsePaths?: ({ startingNode?: MaybeAlias } | null)[] | null;
    methodsToCall?: ({ objectId?: MaybeAlias; methodId?: MaybeAlias } | null)[] | null;
    itemsToCreate?: ({ itemToMonitor?: { nodeId?: MaybeAlias } | null } | null)[] | null;
  };
  const resolve = <TKey extends string>(holder: { [key in TKey]?: MaybeAlias } | null | undefined, key: TKey): void => {
    const nodeId = holder?.[key];
    if (holder && nodeId && typeof nodeId === "object") holder[key] = session.resolveRegisteredNode(nodeId);
  };
  for (const operation of fields.nodesToRead ?? []) resolve(operation, "nodeId");
  for (const operation of fields.nodesToWrite ?? []) resolve(operation, "nodeId");
  for (const operation of fields.nodesToBrowse ?? []) resolve(operation, "nodeId");
  for (const path of fields.browsePaths ?? []) resolve(path, "startingNode");
  for (const call of fields.methodsToCall ?? []) {
    resolve(call, "objectId");
    resolve(call, "methodId");
  }
  for (const item of fields.itemsToCreate ?? []) resolve(item?.itemToMonitor, "nodeId");
}

/** The number of operations of a service request (its largest operations array). */
function operationsOf(request: unknown): number {
  const fields = request as Record<string, unknown>;
  let count = 0;
  for (const field of OPERATIONS_OF_REQUEST) {
    const operations = fields[field];
    if (Array.isArray(operations)) count = Math.max(count, operations.length);
  }
  return count;
}

/**
 * What one step of a TranslateBrowsePath makes node-opcua examine from `node`
 * (`browseNodeByTargetName`), the unit of {@link AuthorizingServer.maxBrowsePathNodesPerCall}: for
 * the node and, when it is an ObjectType or VariableType, each of its supertypes (a step that finds
 * nothing on a type is tried again on its supertype, up to BaseObjectType or BaseVariableType; the
 * whole chain is charged, found or not), 1 plus the references scanned there: none when the child
 * index answers the step (a forward step through a hierarchical reference type, naming its
 * target), else every reference of that node (an inverse, untyped or non-hierarchical step scans
 * and resolves them all). A path stepping through a folder of thousands of tags by an inverse or
 * untyped reference costs what it makes the server do (adversarial review 20t: 312 such paths
 * held the event loop 13 s; 20s: one untyped step at a deep alarm type scanned ~200 references
 * and was charged 2).
 */
function stepCost(node: BaseNode, element: RelativePathElement): number {
  let cost = 0;
  const seen = new Set<BaseNode>();
  for (let level: BaseNode | null = node; level && !seen.has(level); level = supertypeOf(level)) {
    seen.add(level);
    const indexed = (
      level as unknown as {
        _hierarchicalStepCandidates?: (element: RelativePathElement) => readonly unknown[] | null;
      }
    )._hierarchicalStepCandidates?.(element);
    cost += 1 + (indexed === null || indexed === undefined ? level.allReferences().length : 0);
  }
  return cost;
}

/** The supertype `browseNodeByTargetName` goes on to from an ObjectType or VariableType (none for other nodes). */
function supertypeOf(node: BaseNode): BaseNode | null {
  if (node.nodeClass !== NodeClass.ObjectType && node.nodeClass !== NodeClass.VariableType) return null;
  const subtypeOf = (node as unknown as { subtypeOf?: unknown }).subtypeOf;
  return subtypeOf ? node.addressSpace.findNode(subtypeOf as never) : null;
}
