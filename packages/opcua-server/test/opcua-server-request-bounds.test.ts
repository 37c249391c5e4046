import { defineTags } from "@kiln/core";
import {
  AttributeIds,
  BrowseDescription,
  BrowseDirection,
  BrowseRequest,
  type BrowseResponse,
  type ClientSession,
  constructEventFilter,
  ContentFilter,
  ContentFilterElement,
  type ContentFilterResult,
  CreateMonitoredItemsRequest,
  CreateSubscriptionRequest,
  DataType,
  DeleteMonitoredItemsRequest,
  ElementOperand,
  type EventFilter,
  EventFilterResult,
  FilterOperator,
  LiteralOperand,
  ModifyMonitoredItemsRequest,
  NodeClassMask,
  resolveNodeId,
  MonitoringMode,
  StatusCodes,
  type StatusCode,
  TimestampsToReturn,
  Variant,
} from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  connect,
  makeTestPki,
  servedSystem,
  type ServedTestSystem,
  type TestPki,
  user,
  USERS,
} from "./support/opcua-fixture";
import { rawSession, sendRawMessage } from "./support/opcua-raw";

/**
 * An EventFilter's WhereClause is evaluated by node-opcua recursively from element 0 for every
 * event: a WhereClause whose elements share operands (a DAG) costs 2^n evaluations per event,
 * and stalls the whole process. The server accepts only trees within `limits` (ADR 0039).
 */

const tags = defineTags({
  "chamber.pressure": { dataType: "float64" },
  "chamber.temperature": { dataType: "float64" },
  "chamber.flow": { dataType: "float64" },
  "chamber.valve": { dataType: "bool" },
  "chamber.heater": { dataType: "bool" },
});

/** The failed-login window of the server under test (ms). */
const LOGIN_WINDOW_MS = 5_000;

let pki: TestPki;
let served: ServedTestSystem;
let olga: Awaited<ReturnType<typeof connect>>;
let subscriptionId: number;

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({
    tags,
    pki,
    server: {
      limits: {
        maxEventFilterElements: 40,
        maxEventFilterDepth: 8,
        maxEventFilterOperands: 60,
        maxEventFilterSelectClauses: 20,
        maxEventFilterCostPerSession: 200,
        maxReferencesPerNode: 3,
        maxReferencesPerBrowse: 40,
        maxMessageSize: 1_048_576,
        maxBrowseContinuationPoints: 2,
        maxBrowsePathElements: 8,
        maxBrowsePathElementsPerCall: 40,
        maxFailedLogins: 3,
        // Long enough for four logins (each a Basic256Sha256 handshake) on a loaded 2-core CI machine.
        failedLoginWindowMs: LOGIN_WINDOW_MS,
      },
    },
  });
  olga = await connect(served.server, pki.trusted, user("olga"));
  subscriptionId = await rawSubscription(olga.session);
}, 60_000);

afterAll(async () => {
  await olga?.close();
  await served?.dispose();
  await pki?.dispose();
});

/** A raw subscription publishing every 100 ms; its id. */
async function rawSubscription(session: ClientSession): Promise<number> {
  const { subscriptionId: id } = await rawSession(session).createSubscription(
    new CreateSubscriptionRequest({
      requestedPublishingInterval: 100,
      requestedLifetimeCount: 600,
      requestedMaxKeepAliveCount: 10,
      publishingEnabled: true,
    }),
  );
  return id;
}

const literal = (value: number) => new LiteralOperand({ value: new Variant({ dataType: DataType.Int32, value }) });
const element = (index: number) => new ElementOperand({ index });
/** An operand whose IndexRange is `text` (node-opcua-client does not export NumericRange: the operand's empty one's class). */
function withRange<T extends { indexRange: unknown }>(operand: T, text: string): T {
  const NumericRange = (operand.indexRange as object).constructor as new (text: string) => unknown;
  operand.indexRange = new NumericRange(text);
  return operand;
}

/** A SimpleAttributeOperand naming the event's EventType field. */
const eventType = () => constructEventFilter(["EventType"]).selectClauses![0]!;
const equals = () =>
  new ContentFilterElement({ filterOperator: FilterOperator.Equals, filterOperands: [literal(1), literal(2)] });

/** An EventFilter selecting EventId, with `elements` as its WhereClause. */
function filterOf(elements: ContentFilterElement[]): EventFilter {
  const filter = constructEventFilter(["EventId"]);
  filter.whereClause = new ContentFilter({ elements });
  return filter;
}

/** The chained Or DAG: element i is Or(element i+1, element i+2), the last two Equals. */
function orChain(length: number): ContentFilterElement[] {
  return Array.from({ length }, (_, index) =>
    index < length - 2
      ? new ContentFilterElement({
          filterOperator: FilterOperator.Or,
          filterOperands: [element(index + 1), element(index + 2)],
        })
      : equals(),
  );
}

/** A linear chain of `length` elements: Not(next) ... Equals. */
function notChain(length: number): ContentFilterElement[] {
  return Array.from({ length }, (_, index) =>
    index < length - 1
      ? new ContentFilterElement({ filterOperator: FilterOperator.Not, filterOperands: [element(index + 1)] })
      : equals(),
  );
}

interface FilterAnswer {
  statusCode: StatusCode;
  monitoredItemId: number;
  filterResult?: unknown;
}

async function createEventItem(
  filter: EventFilter,
  on: { session: typeof olga.session; subscriptionId: number } = { session: olga.session, subscriptionId },
): Promise<FilterAnswer> {
  const created = (await rawSession(on.session).createMonitoredItems(
    new CreateMonitoredItemsRequest({
      subscriptionId: on.subscriptionId,
      timestampsToReturn: TimestampsToReturn.Neither,
      itemsToCreate: [
        {
          itemToMonitor: { nodeId: "ns=0;i=2253", attributeId: AttributeIds.EventNotifier },
          monitoringMode: MonitoringMode.Reporting,
          requestedParameters: { clientHandle: 7, samplingInterval: 0, queueSize: 10, discardOldest: true, filter },
        },
      ],
    }),
  )) as { results?: FilterAnswer[] | null };
  return created.results![0]!;
}

async function modifyEventItem(monitoredItemId: number, filter: EventFilter): Promise<FilterAnswer> {
  const session = olga.session as unknown as {
    modifyMonitoredItems(request: ModifyMonitoredItemsRequest): Promise<{ results?: FilterAnswer[] | null }>;
  };
  const modified = await session.modifyMonitoredItems(
    new ModifyMonitoredItemsRequest({
      subscriptionId,
      timestampsToReturn: TimestampsToReturn.Neither,
      itemsToModify: [
        {
          monitoredItemId,
          requestedParameters: { clientHandle: 7, samplingInterval: 0, queueSize: 10, discardOldest: true, filter },
        },
      ],
    }),
  );
  return modified.results![0]!;
}

/** The per-element StatusCodes of a refused filter's WhereClause result. */
function elementCodes(answer: FilterAnswer): StatusCode[] {
  expect(answer.filterResult).toBeInstanceOf(EventFilterResult);
  const where = (answer.filterResult as EventFilterResult).whereClauseResult as ContentFilterResult;
  return (where.elementResults ?? []).map((result) => result.statusCode);
}

describe("EventFilter WhereClause bounds", () => {
  test("a chained Or whose elements share operands is refused BadEventFilterInvalid, naming the elements", async () => {
    const answer = await createEventItem(filterOf(orChain(24)));
    expect(answer.statusCode).toBe(StatusCodes.BadEventFilterInvalid);
    const codes = elementCodes(answer);
    expect(codes).toHaveLength(24);
    expect(codes[0]).toBe(StatusCodes.Good); // element 0 is the first to reference 1 and 2
    expect(codes[1]).toBe(StatusCodes.BadFilterOperandInvalid); // its reference to 2 is a second one
  });

  test("a backward ElementOperand (an element referencing an earlier one) is refused", async () => {
    const elements = [
      new ContentFilterElement({ filterOperator: FilterOperator.Not, filterOperands: [element(2)] }),
      equals(),
      new ContentFilterElement({ filterOperator: FilterOperator.Not, filterOperands: [element(1)] }),
    ];
    const answer = await createEventItem(filterOf(elements));
    expect(answer.statusCode).toBe(StatusCodes.BadEventFilterInvalid);
    expect(elementCodes(answer)).toEqual([StatusCodes.Good, StatusCodes.Good, StatusCodes.BadFilterOperandInvalid]);
  });

  test("more elements than maxEventFilterElements, or a chain deeper than maxEventFilterDepth, is refused", async () => {
    const tooMany = await createEventItem(filterOf(Array.from({ length: 41 }, equals)));
    expect(tooMany.statusCode).toBe(StatusCodes.BadEventFilterInvalid);
    expect(elementCodes(tooMany)).toEqual([]);
    const tooDeep = await createEventItem(filterOf(notChain(9)));
    expect(tooDeep.statusCode).toBe(StatusCodes.BadEventFilterInvalid);
    expect(elementCodes(tooDeep)[8]).toBe(StatusCodes.BadFilterElementInvalid);
  });

  test("a tree within the bounds is accepted; modifying it to a DAG is refused and changes nothing", async () => {
    const tree = [
      new ContentFilterElement({ filterOperator: FilterOperator.Or, filterOperands: [element(1), element(2)] }),
      equals(),
      ...notChain(6),
    ];
    // element 2 starts a Not chain of 6 (indices 2..7), each referencing the next.
    for (let index = 2; index < 7; index += 1) {
      tree[index] = new ContentFilterElement({
        filterOperator: FilterOperator.Not,
        filterOperands: [element(index + 1)],
      });
    }
    const created = await createEventItem(filterOf(tree));
    expect(created.statusCode).toBe(StatusCodes.Good);
    const modified = await modifyEventItem(created.monitoredItemId, filterOf(orChain(20)));
    expect(modified.statusCode).toBe(StatusCodes.BadEventFilterInvalid);
    expect(elementCodes(modified)).toHaveLength(20);
    const kept = await modifyEventItem(created.monitoredItemId, filterOf(notChain(3)));
    expect(kept.statusCode).toBe(StatusCodes.Good);
  });
});

/** An EventFilter of `selects` SelectClauses whose WhereClause is one InList of `operands` operands. */
function inListFilter(selects: number, operands: number): EventFilter {
  const filter = constructEventFilter(Array.from({ length: selects }, () => "EventId"));
  filter.whereClause = new ContentFilter({
    elements: [
      new ContentFilterElement({
        filterOperator: FilterOperator.InList,
        filterOperands: Array.from({ length: operands }, (_, index) => (index === 0 ? eventType() : literal(index))),
      }),
    ],
  });
  return filter;
}

describe("EventFilter operators node-opcua cannot evaluate (OPC UA Part 4, 7.7.3)", () => {
  const of = (filterOperator: FilterOperator, filterOperands: unknown[]) =>
    filterOf([new ContentFilterElement({ filterOperator, filterOperands: filterOperands as never })]);
  const text = (value: string) => new LiteralOperand({ value: new Variant({ dataType: DataType.String, value }) });
  const double = (value: number) => new LiteralOperand({ value: new Variant({ dataType: DataType.Double, value }) });
  const nothing = () => new LiteralOperand({ value: new Variant({ dataType: DataType.Null }) });

  test("Like, Cast, BitwiseAnd, BitwiseOr and IsNull are refused BadFilterOperatorUnsupported, on create and modify", async () => {
    for (const operator of [
      FilterOperator.Like,
      FilterOperator.Cast,
      FilterOperator.BitwiseAnd,
      FilterOperator.BitwiseOr,
    ]) {
      const answer = await createEventItem(of(operator, [eventType(), text("[")]));
      expect(answer.statusCode).toBe(StatusCodes.BadEventFilterInvalid);
      expect(elementCodes(answer)).toEqual([StatusCodes.BadFilterOperatorUnsupported]);
    }
    const isNull = await createEventItem(of(FilterOperator.IsNull, [eventType()]));
    expect(elementCodes(isNull)).toEqual([StatusCodes.BadFilterOperatorUnsupported]);
    const created = await createEventItem(of(FilterOperator.Not, [literal(0)]));
    expect(created.statusCode).toBe(StatusCodes.Good);
    const modified = await modifyEventItem(created.monitoredItemId, of(FilterOperator.Like, [eventType(), text("%")]));
    expect(modified.statusCode).toBe(StatusCodes.BadEventFilterInvalid);
    expect(elementCodes(modified)).toEqual([StatusCodes.BadFilterOperatorUnsupported]);
  });

  test("operands that can never match are refused BadFilterOperandInvalid, naming the operand", async () => {
    const ofType = await createEventItem(of(FilterOperator.OfType, [text("BaseEventType")]));
    expect(ofType.statusCode).toBe(StatusCodes.BadEventFilterInvalid);
    expect(elementCodes(ofType)).toEqual([StatusCodes.BadFilterOperandInvalid]);
    const where = (ofType.filterResult as EventFilterResult).whereClauseResult!;
    expect(where.elementResults![0]!.operandStatusCodes).toEqual([StatusCodes.BadFilterOperandInvalid]);
    const between = await createEventItem(of(FilterOperator.Between, [eventType(), double(Number.NaN), nothing()]));
    expect(between.statusCode).toBe(StatusCodes.BadEventFilterInvalid);
    const codes = (between.filterResult as EventFilterResult).whereClauseResult!.elementResults![0]!.operandStatusCodes;
    expect(codes).toEqual([StatusCodes.Good, StatusCodes.BadFilterOperandInvalid, StatusCodes.BadFilterOperandInvalid]);
    const inList = await createEventItem(of(FilterOperator.InList, [literal(1), literal(1)]));
    expect(elementCodes(inList)).toEqual([StatusCodes.BadFilterOperandInvalid]);
    const count = await createEventItem(of(FilterOperator.Between, [eventType(), double(1)]));
    expect(elementCodes(count)).toEqual([StatusCodes.BadFilterOperandCountMismatch]);
  });

  test("a SelectClause with an IndexRange is refused, naming the clause BadIndexRangeInvalid; one without is accepted", async () => {
    const filter = constructEventFilter(["EventId", "Message"]);
    withRange(filter.selectClauses![1]!, "0:1");
    const answer = await createEventItem(filter);
    expect(answer.statusCode).toBe(StatusCodes.BadEventFilterInvalid);
    expect((answer.filterResult as EventFilterResult).selectClauseResults).toEqual([
      StatusCodes.Good,
      StatusCodes.BadIndexRangeInvalid,
    ]);
    const where = await createEventItem(of(FilterOperator.Equals, [withRange(eventType(), "0"), literal(1)]));
    expect(elementCodes(where)).toEqual([StatusCodes.BadFilterOperandInvalid]);
    expect((await createEventItem(constructEventFilter(["EventId", "Message"]))).statusCode).toBe(StatusCodes.Good);
  });

  test("the operands node-opcua evaluates are accepted: OfType of a NodeId, InList of no list (the CTT's alarm collector)", async () => {
    const nodeId = new LiteralOperand({
      value: new Variant({ dataType: DataType.NodeId, value: resolveNodeId("ns=0;i=2041") }),
    });
    expect((await createEventItem(of(FilterOperator.OfType, [nodeId]))).statusCode).toBe(StatusCodes.Good);
    expect((await createEventItem(of(FilterOperator.InList, [eventType()]))).statusCode).toBe(StatusCodes.Good);
    expect((await createEventItem(of(FilterOperator.Between, [eventType(), double(0), double(1)]))).statusCode).toBe(
      StatusCodes.Good,
    );
  });
});

describe("EventFilter size bounds", () => {
  test("an InList of more operands than maxEventFilterOperands, or more SelectClauses than maxEventFilterSelectClauses, is refused", async () => {
    const operands = await createEventItem(inListFilter(1, 61));
    expect(operands.statusCode).toBe(StatusCodes.BadEventFilterInvalid);
    expect(elementCodes(operands)).toEqual([]); // the answer does not grow with the request
    const selects = await createEventItem(inListFilter(21, 2));
    expect(selects.statusCode).toBe(StatusCodes.BadEventFilterInvalid);
    const within = await createEventItem(inListFilter(20, 60));
    expect(within.statusCode).toBe(StatusCodes.Good);
  });

  test("the operand bound holds over all elements together: two InLists of 30 under an And are refused", async () => {
    const filter = filterOf([
      new ContentFilterElement({ filterOperator: FilterOperator.And, filterOperands: [element(1), element(2)] }),
      inListFilter(1, 30).whereClause!.elements![0]!,
      inListFilter(1, 30).whereClause!.elements![0]!,
    ]);
    expect((await createEventItem(filter)).statusCode).toBe(StatusCodes.BadEventFilterInvalid);
  });

  test("a session's event filters together stay within maxEventFilterCostPerSession; deleting an item frees its share", async () => {
    // A viewer (read-only) can create event items: the budget is per session, whoever it is.
    const vic = await connect(served.server, pki.trusted, user("vic"));
    try {
      const own = await rawSubscription(vic.session);
      const on = { session: vic.session, subscriptionId: own };
      // Each costs 20 SelectClauses + 1 element + 40 operands = 61: three fit in 200, a fourth does not.
      const created = [];
      for (let index = 0; index < 3; index += 1) created.push(await createEventItem(inListFilter(20, 40), on));
      expect(created.map((answer) => answer.statusCode)).toEqual([
        StatusCodes.Good,
        StatusCodes.Good,
        StatusCodes.Good,
      ]);
      expect((await createEventItem(inListFilter(20, 40), on)).statusCode).toBe(StatusCodes.BadTooManyMonitoredItems);
      // A filter-less item costs nothing, and another session's budget is its own.
      expect((await createEventItem(constructEventFilter([]) as EventFilter, on)).statusCode).toBe(StatusCodes.Good);
      const session = vic.session as unknown as {
        deleteMonitoredItems(request: DeleteMonitoredItemsRequest): Promise<{ results?: StatusCode[] | null }>;
      };
      const deleted = await session.deleteMonitoredItems(
        new DeleteMonitoredItemsRequest({ subscriptionId: own, monitoredItemIds: [created[0]!.monitoredItemId] }),
      );
      expect(deleted.results).toEqual([StatusCodes.Good]);
      expect((await createEventItem(inListFilter(20, 40), on)).statusCode).toBe(StatusCodes.Good);
    } finally {
      await vic.close();
    }
  });

  test("a modify that would take the session beyond its budget is refused and changes nothing", async () => {
    const vic = await connect(served.server, pki.trusted, user("vic"));
    try {
      const own = await rawSubscription(vic.session);
      const on = { session: vic.session, subscriptionId: own };
      const big = await createEventItem(inListFilter(20, 60), on); // 81
      const small = await createEventItem(inListFilter(1, 2), on); // 4
      expect([big.statusCode, small.statusCode]).toEqual([StatusCodes.Good, StatusCodes.Good]);
      const modify = (
        vic.session as unknown as {
          modifyMonitoredItems(request: ModifyMonitoredItemsRequest): Promise<{ results?: FilterAnswer[] | null }>;
        }
      ).modifyMonitoredItems.bind(vic.session);
      const grow = (monitoredItemId: number, filter: EventFilter) =>
        modify(
          new ModifyMonitoredItemsRequest({
            subscriptionId: own,
            timestampsToReturn: TimestampsToReturn.Neither,
            itemsToModify: [
              {
                monitoredItemId,
                requestedParameters: {
                  clientHandle: 7,
                  samplingInterval: 0,
                  queueSize: 10,
                  discardOldest: true,
                  filter,
                },
              },
            ],
          }),
        ).then((answer) => answer.results![0]!.statusCode);
      expect(await grow(small.monitoredItemId, inListFilter(20, 60))).toBe(StatusCodes.Good); // 81 + 81
      expect(await grow(small.monitoredItemId, inListFilter(20, 60))).toBe(StatusCodes.Good); // same again: its own share is replaced
      expect((await createEventItem(inListFilter(20, 40), on)).statusCode).toBe(StatusCodes.BadTooManyMonitoredItems);
    } finally {
      await vic.close();
    }
  });
});

describe("transport message size", () => {
  test("a message larger than maxMessageSize is refused BadTcpMessageTooLarge as it arrives, without a session", async () => {
    const answer = await sendRawMessage(served.server.port, 2 * 1_048_576);
    expect(answer.maxMessageSize).toBe(1_048_576); // the Hello stated no limit: the server's is acknowledged
    expect(answer.error).toBe(StatusCodes.BadTcpMessageTooLarge.value);
  });

  test("a request of normal size still works, on the same server", async () => {
    const nodes = Array.from({ length: 500 }, () => ({
      nodeId: served.server.nodeIdOf("chamber.pressure"),
      attributeId: 13,
    }));
    const values = await olga.session.read(nodes);
    expect(values).toHaveLength(500);
    expect(values.every((value) => value.statusCode.isGoodish())).toBe(true);
  });
});

describe("Browse bounds", () => {
  /** The `chamber` folder's NodeId (its five tag variables are its references, with HasTypeDefinition). */
  const chamber = () => `ns=${served.server.namespaceIndex};s=#chamber`;

  test("a Browse asking unlimited references per node (0) gets maxReferencesPerNode and a continuation point", async () => {
    // As a raw client may: 0 asks for every reference (node-opcua's client sends 10000 unless told).
    (olga.session as unknown as { requestedMaxReferencesPerNode: number }).requestedMaxReferencesPerNode = 0;
    const [result] = await olga.session.browse([
      {
        nodeId: chamber(),
        browseDirection: 0,
        resultMask: 63,
        includeSubtypes: true,
        referenceTypeId: "HierarchicalReferences",
      },
    ]);
    expect(result!.statusCode).toBe(StatusCodes.Good);
    expect(result!.references).toHaveLength(3);
    expect(result!.continuationPoint?.length).toBeGreaterThan(0);
    await olga.session.browseNext([result!.continuationPoint!], true);
  });

  /** Every reference of a node, both directions, all types (BrowseNext past maxReferencesPerNode). */
  async function referencesOf(nodeId: string): Promise<number> {
    const [first] = await olga.session.browse([
      { nodeId, browseDirection: 2, resultMask: 0, includeSubtypes: true, referenceTypeId: "References" },
    ]);
    let count = first!.references?.length ?? 0;
    let point = first!.continuationPoint;
    while (point?.length) {
      const [next] = await olga.session.browseNext([point], false);
      count += next!.references?.length ?? 0;
      point = next!.continuationPoint;
    }
    return count;
  }

  /** `count` copies of a Browse of `nodeId` (NodeClassMask `mask`, RequestedMaxReferencesPerNode `perNode`), sent raw. */
  async function browseCopies(nodeId: string, count: number, mask: number, perNode: number) {
    const request = new BrowseRequest({
      requestedMaxReferencesPerNode: perNode,
      nodesToBrowse: Array.from(
        { length: count },
        () =>
          new BrowseDescription({
            nodeId: resolveNodeId(nodeId),
            referenceTypeId: resolveNodeId("References"),
            includeSubtypes: true,
            browseDirection: BrowseDirection.Both,
            nodeClassMask: mask,
            resultMask: 63,
          }),
      ),
    });
    // As a raw client sends it: node-opcua's ClientSession.browse would replace RequestedMaxReferencesPerNode.
    const transact = (
      olga.session as unknown as {
        performMessageTransaction(
          request: BrowseRequest,
          callback: (error: Error | null, response?: BrowseResponse) => void,
        ): void;
      }
    ).performMessageTransaction.bind(olga.session);
    const response = await new Promise<BrowseResponse>((resolve, reject) =>
      transact(request, (error, answer) =>
        error || !answer ? reject(error ?? new Error("no response")) : resolve(answer),
      ),
    );
    return response.results ?? [];
  }

  test("one Browse call scans at most maxReferencesPerBrowse work units, each reference charged before it is scanned whatever the NodeClassMask returns: the node reached with the budget spent answers BadNoContinuationPoints (adversarial review 20s)", async () => {
    // The chamber folder: 7 references (5 tags, its type definition, its parent). With the full
    // ResultMask a reference costs 5 units: a budget of 40 scans 8 of them in one call.
    expect(await referencesOf(chamber())).toBe(7);
    const results = await browseCopies(chamber(), 4, NodeClassMask.Method, 0);
    expect(results.every((result) => (result.references?.length ?? 0) === 0)).toBe(true);
    expect(results.map((result) => result.statusCode)).toEqual([
      StatusCodes.Good, // all 7 scanned (35 units), none a Method: no continuation point
      StatusCodes.Good, // 1 scanned with the 5 units left; a continuation point holds the other 6
      StatusCodes.BadNoContinuationPoints,
      StatusCodes.BadNoContinuationPoints,
    ]);
    expect(results[0]!.continuationPoint?.length ?? 0).toBe(0);
    expect(results[1]!.continuationPoint?.length).toBeGreaterThan(0);
    await olga.session.browseNext([results[1]!.continuationPoint!], true);
    // Browsed again in a call of its own, a refused node answers.
    const [again] = await browseCopies(chamber(), 1, NodeClassMask.Method, 0);
    expect(again!.statusCode).toBe(StatusCodes.Good);
  });

  test("RequestedMaxReferencesPerNode 1: every piece holds at most one reference and following the points serves every reference once", async () => {
    const server = "ns=0;i=2253";
    const all = await referencesOf(server);
    expect(all).toBeGreaterThan(20);
    const [first] = await browseCopies(server, 1, 0, 1);
    expect(first!.references).toHaveLength(1);
    const seen = [first!.references![0]!.nodeId.toString()];
    let point = first!.continuationPoint;
    while (point?.length) {
      const [next] = await olga.session.browseNext([point], false);
      expect(next!.statusCode).toBe(StatusCodes.Good);
      expect(next!.references?.length ?? 0).toBeLessThanOrEqual(1);
      seen.push(...(next!.references ?? []).map((reference) => reference.nodeId.toString()));
      point = next!.continuationPoint;
    }
    expect(seen).toHaveLength(all);
  });

  test("a BrowseNext of several points scans within the budget too: a point reached with it spent answers Good, no references and the same point", async () => {
    const description = {
      nodeId: chamber(),
      browseDirection: 2,
      resultMask: 63,
      includeSubtypes: true,
      referenceTypeId: "References",
    };
    // Two Browses of one node each (3 references a piece, 15 units): two points, 4 references left behind each.
    const [one] = await olga.session.browse([description]);
    const [two] = await olga.session.browse([description]);
    const points = [one!.continuationPoint!, two!.continuationPoint!];
    // 40 units: the first point's 3 (15), the second's 3 (15), then 2 units: nothing more fits.
    const first = await olga.session.browseNext(points, false);
    expect(first.map((result) => result.references?.length ?? 0)).toEqual([3, 3]);
    const second = await olga.session.browseNext(points, false);
    expect(second.map((result) => result.references?.length ?? 0)).toEqual([1, 1]);
    expect(second.map((result) => result.continuationPoint?.length ?? 0)).toEqual([0, 0]);
  });

  test("a session holds at most maxBrowseContinuationPoints: the next node answers BadNoContinuationPoints", async () => {
    const description = {
      nodeId: chamber(),
      browseDirection: 0,
      resultMask: 63,
      includeSubtypes: true,
      referenceTypeId: "HierarchicalReferences",
    };
    const results = await olga.session.browse([description, description, description]);
    expect(results.map((result) => result.statusCode)).toEqual([
      StatusCodes.Good,
      StatusCodes.Good,
      StatusCodes.BadNoContinuationPoints,
    ]);
    await olga.session.browseNext(
      results.flatMap((result) => (result.continuationPoint ? [result.continuationPoint] : [])),
      true,
    );
  });
});

describe("failed logins", () => {
  const wrong = () => ({ ...user("olga"), password: "guess" });
  const audited = async () =>
    (await served.store.audit.query({ from: 0, to: Date.now() + 1 })).filter(
      (entry) => entry.action === "opcua.ActivateSession",
    );

  test("after maxFailedLogins refused passwords, even the right one is refused until the window ends; audited once per reason, naming the user and why, never the password", async () => {
    const before = (await audited()).length;
    for (let attempt = 0; attempt < 3; attempt++) {
      await expect(connect(served.server, pki.trusted, wrong())).rejects.toThrow(/BadUserAccessDenied/);
    }
    await expect(connect(served.server, pki.trusted, user("olga"))).rejects.toThrow(/BadUserAccessDenied/);
    const entries = (await audited()).slice(before);
    // The wrong passwords (one entry, the two after it coalesced) and the throttled login.
    expect(entries).toHaveLength(2);
    expect(entries.map((entry) => entry.principal)).toEqual(["unauthenticated", "unauthenticated"]);
    expect(entries[0]!.reason).toMatch(/login refused for user "olga": username identity refused by identify/);
    expect(entries[1]!.reason).toMatch(/login throttled for user "olga": throttled: too many failed logins/);
    for (const entry of entries) {
      expect(JSON.stringify(entry)).not.toContain("guess");
      expect(JSON.stringify(entry)).not.toContain(USERS.olga!.password);
    }
    await new Promise((resolve) => setTimeout(resolve, LOGIN_WINDOW_MS + 100));
    const back = await connect(served.server, pki.trusted, user("olga"));
    await back.close();
  });

  test("one user's wrong passwords lock out only that user from that address: another user there still logs in", async () => {
    await new Promise((resolve) => setTimeout(resolve, LOGIN_WINDOW_MS + 100));
    for (let attempt = 0; attempt < 3; attempt++) {
      await expect(connect(served.server, pki.trusted, wrong())).rejects.toThrow(/BadUserAccessDenied/);
    }
    await expect(connect(served.server, pki.trusted, user("olga"))).rejects.toThrow(/BadUserAccessDenied/);
    const other = await connect(served.server, pki.trusted, user("vic"));
    await other.close();
    await new Promise((resolve) => setTimeout(resolve, LOGIN_WINDOW_MS + 100));
  });
});

describe("TranslateBrowsePathsToNodeIds path bounds (adversarial review 20w, fault 4)", () => {
  /** A path from the chamber folder of `length` elements, bouncing folder → pressure → folder ... */
  const bouncing = (length: number) => {
    const ns = served.server.namespaceIndex;
    return {
      startingNode: `ns=${ns};s=#chamber`,
      relativePath: {
        elements: Array.from({ length }, (_, i) => ({
          referenceTypeId: "i=33",
          isInverse: i % 2 === 1,
          includeSubtypes: true,
          targetName: { namespaceIndex: ns, name: i % 2 === 0 ? "pressure" : "chamber" },
        })),
      },
    };
  };

  test("a path longer than maxBrowsePathElements answers BadQueryTooComplex; the call's other paths are followed, one of exactly the bound too", async () => {
    const results = await olga.session.translateBrowsePath([bouncing(9), bouncing(3), bouncing(8)] as never[]);
    expect(results.map((result) => result.statusCode.name)).toEqual(["BadQueryTooComplex", "Good", "Good"]);
    expect(results[1]!.targets![0]!.targetId.toString()).toBe(served.server.nodeIdOf("chamber.pressure").toString());
  });

  test("paths holding more than maxBrowsePathElementsPerCall elements together refuse the call BadTooManyOperations", async () => {
    await expect(
      olga.session.translateBrowsePath(Array.from({ length: 5 }, () => bouncing(9)) as never[]),
    ).rejects.toThrow(/BadTooManyOperations/);
    // 5 paths of 8 elements is exactly the bound: answered.
    const results = await olga.session.translateBrowsePath(Array.from({ length: 5 }, () => bouncing(8)) as never[]);
    expect(results.map((result) => result.statusCode.name)).toEqual(["Good", "Good", "Good", "Good", "Good"]);
  });
});
