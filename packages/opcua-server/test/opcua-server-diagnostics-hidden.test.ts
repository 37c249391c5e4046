import { defineTags, defaultRoleTable } from "@kiln/core";
import {
  AttributeIds,
  BrowseDirection,
  CreateMonitoredItemsRequest,
  makeBrowsePath,
  MonitoringMode,
  type NodeId,
  resolveNodeId,
  StatusCodes,
  TimestampsToReturn,
  Variant,
  DataType,
} from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { connect, makeTestPki, servedSystem, type ServedTestSystem, type TestPki, user } from "./support/opcua-fixture";

// Issue 20 (fix20e): another session's diagnostics were refused by value but still discoverable:
// TranslateBrowsePathsToNodeIds (no session context in node-opcua) returned their NodeIds, their
// BrowseName and DisplayName (the SessionName a client chose) were readable, and reading ns=1
// BrowseNames counted the sessions. Now, without `opcua.diagnostics`, they do not exist for a
// session: every service answers as for an unknown NodeId; its own stay visible.

const tags = defineTags({ "chamber.pressure": { dataType: "float64" } });
const SESSIONS_DIAGNOSTICS_SUMMARY = "ns=0;i=3706";
const SESSION_DIAGNOSTICS_OBJECT_TYPE = "ns=0;i=2029";
const HAS_TYPE_DEFINITION = "ns=0;i=40";

type Client = Awaited<ReturnType<typeof connect>>;

let pki: TestPki;
let served: ServedTestSystem;
let viewer: Client;
let operator: Client;
let admin: Client;
/** Every node of the operator's session diagnostics (its object first), as the admin browses them. */
let operatorNodes: NodeId[];

/** node-opcua's ClientSession hides the raw service calls its implementation has. */
interface RawCalls {
  createMonitoredItems(request: CreateMonitoredItemsRequest): Promise<{ results?: { statusCode: unknown }[] | null }>;
  registerNodes(nodes: NodeId[]): Promise<NodeId[]>;
}
const raw = (client: Client): RawCalls => client.session as unknown as RawCalls;

async function subtreeOf(client: Client, root: NodeId): Promise<NodeId[]> {
  const found: NodeId[] = [root];
  for (let index = 0; index < found.length && found.length < 500; index += 1) {
    const result = await client.session.browse({
      nodeId: found[index]!,
      browseDirection: BrowseDirection.Forward,
      referenceTypeId: "HierarchicalReferences",
      includeSubtypes: true,
      resultMask: 63,
    });
    for (const reference of result.references ?? []) {
      const nodeId = reference.nodeId as unknown as NodeId;
      if (nodeId.namespace !== 0 && !found.some((known) => known.toString() === nodeId.toString())) found.push(nodeId);
    }
  }
  return found;
}

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({ tags, pki, system: { authorization: { roles: defaultRoleTable() } } });
  viewer = await connect(served.server, pki.trusted, user("vic"));
  operator = await connect(served.server, pki.trusted, user("olga"));
  admin = await connect(served.server, pki.trusted, user("ada"));
  operatorNodes = await subtreeOf(admin, operator.session.sessionId);
});

afterAll(async () => {
  await Promise.all([viewer?.close(), operator?.close(), admin?.close()]);
  await served?.dispose();
  await pki?.dispose();
});

describe("OpcuaServer: another session's diagnostics do not exist for a session without opcua.diagnostics", () => {
  test("the admin sees the operator's diagnostics object and the nodes under it (ns ≠ 0)", () => {
    expect(operatorNodes.length).toBeGreaterThan(5);
  });

  test("Read of every attribute of every node of another session's diagnostics: BadNodeIdUnknown; its own and the admin: readable", async () => {
    const attributes = Object.values(AttributeIds).filter(
      (id): id is number => typeof id === "number" && id > 0 && id < 28,
    );
    const reads = operatorNodes.flatMap((nodeId) => attributes.map((attributeId) => ({ nodeId, attributeId })));
    const seen = [];
    for (let index = 0; index < reads.length; index += 500)
      seen.push(...(await viewer.session.read(reads.slice(index, index + 500))));
    const unknown = seen.filter((value) => value.statusCode === StatusCodes.BadNodeIdUnknown);
    expect(unknown).toHaveLength(reads.length);
    expect(seen.every((value) => value.value.value === null)).toBe(true);
    const names = await admin.session.read(
      operatorNodes.map((nodeId) => ({ nodeId, attributeId: AttributeIds.BrowseName })),
    );
    expect(names.every((value) => value.statusCode === StatusCodes.Good)).toBe(true);
    const own = await subtreeOf(viewer, viewer.session.sessionId);
    expect(own.length).toBe(operatorNodes.length);
    const ownNames = await viewer.session.read(
      own.map((nodeId) => ({ nodeId, attributeId: AttributeIds.DisplayName })),
    );
    expect(ownNames.every((value) => value.statusCode === StatusCodes.Good)).toBe(true);
  });

  test("Browse of another session's object: BadNodeIdUnknown; Browse of the summary and of the type's instances lists only its own", async () => {
    const [object] = operatorNodes;
    expect((await viewer.session.browse({ nodeId: object!, resultMask: 63 })).statusCode).toBe(
      StatusCodes.BadNodeIdUnknown,
    );
    expect((await admin.session.browse({ nodeId: object!, resultMask: 63 })).statusCode).toBe(StatusCodes.Good);
    const others = new Set(operatorNodes.map(String));
    for (const description of [
      { nodeId: SESSIONS_DIAGNOSTICS_SUMMARY, browseDirection: BrowseDirection.Forward },
      {
        nodeId: SESSION_DIAGNOSTICS_OBJECT_TYPE,
        browseDirection: BrowseDirection.Inverse,
        referenceTypeId: HAS_TYPE_DEFINITION,
      },
    ]) {
      const result = await viewer.session.browse({ ...description, resultMask: 63 });
      const listed = (result.references ?? []).map((reference) => String(reference.nodeId));
      expect(listed.filter((nodeId) => others.has(nodeId))).toEqual([]);
    }
  });

  test("BrowseNext: a point in another session's object is invalid once the session may no longer see it; pieces of the summary never list it", async () => {
    const client = await connect(served.server, pki.trusted, user("ada"));
    try {
      // one reference per piece: a continuation point is held
      (client.session as unknown as { requestedMaxReferencesPerNode: number }).requestedMaxReferencesPerNode = 1;
      const first = await client.session.browse({
        nodeId: operatorNodes[0]!,
        browseDirection: BrowseDirection.Both,
        resultMask: 63,
      });
      expect(first.statusCode).toBe(StatusCodes.Good);
      const point = first.continuationPoint;
      expect(point?.length).toBeGreaterThan(0);
      expect(await client.session.changeUser(user("vic"))).toBe(StatusCodes.Good);
      const next = await client.session.browseNext(point!, false);
      expect(next.statusCode).toBe(StatusCodes.BadContinuationPointInvalid);
    } finally {
      await client.close();
    }
    // The viewer pages through the summary one reference at a time: no piece names the operator's.
    const session = viewer.session as unknown as { requestedMaxReferencesPerNode: number };
    session.requestedMaxReferencesPerNode = 1;
    const firstPiece = await viewer.session.browse({
      nodeId: SESSIONS_DIAGNOSTICS_SUMMARY,
      browseDirection: BrowseDirection.Forward,
      resultMask: 63,
    });
    session.requestedMaxReferencesPerNode = 0;
    const listed = (firstPiece.references ?? []).map((reference) => String(reference.nodeId));
    let point = firstPiece.continuationPoint;
    while (point && point.length > 0) {
      const next = await viewer.session.browseNext(point, false);
      listed.push(...(next.references ?? []).map((reference) => String(reference.nodeId)));
      point = next.continuationPoint ?? null;
    }
    expect(listed).toContain(viewer.session.sessionId.toString());
    expect(listed).not.toContain(operator.session.sessionId.toString());
  });

  test("TranslateBrowsePaths: from another session's object BadNodeIdUnknown; by its name it is not found; the admin and its own find theirs", async () => {
    const [name] = await admin.session.read([{ nodeId: operatorNodes[0]!, attributeId: AttributeIds.BrowseName }]);
    const browseName = name!.value.value as { namespaceIndex: number; name: string };
    const byName = makeBrowsePath(SESSIONS_DIAGNOSTICS_SUMMARY, `/${browseName.namespaceIndex}:${browseName.name}`);
    const fromObject = makeBrowsePath(operator.session.sessionId, ".SessionDiagnostics");
    const [viewerByName, viewerFromObject] = await viewer.session.translateBrowsePath([byName, fromObject]);
    // The test clients share one session name: by it the viewer finds its own object, never the operator's.
    const found = (viewerByName!.targets ?? []).map((target) => String(target.targetId));
    expect(found).not.toContain(operator.session.sessionId.toString());
    expect(found).toEqual(viewerByName!.statusCode === StatusCodes.Good ? [viewer.session.sessionId.toString()] : []);
    expect(viewerFromObject!.statusCode).toBe(StatusCodes.BadNodeIdUnknown);
    const [adminByName, adminFromObject] = await admin.session.translateBrowsePath([byName, fromObject]);
    expect(adminByName!.statusCode).toBe(StatusCodes.Good);
    expect(adminByName!.targets!.map((target) => String(target.targetId))).toContain(
      operator.session.sessionId.toString(),
    );
    expect(adminFromObject!.statusCode).toBe(StatusCodes.Good);
    const [own] = await viewer.session.translateBrowsePath([
      makeBrowsePath(viewer.session.sessionId, ".SessionDiagnostics"),
    ]);
    expect(own!.statusCode).toBe(StatusCodes.Good);
  });

  test("RegisterNodes gives back another session's NodeIds as given (as for an unknown node); its own get an alias", async () => {
    const unknown = resolveNodeId("ns=1;s=no-such-node");
    const registered = await raw(viewer).registerNodes([
      operatorNodes[0]!,
      operatorNodes[1]!,
      unknown,
      viewer.session.sessionId,
    ]);
    expect(registered.slice(0, 3).map(String)).toEqual([operatorNodes[0]!, operatorNodes[1]!, unknown].map(String));
    expect(String(registered[3])).not.toBe(viewer.session.sessionId.toString());
    const byAdmin = await raw(admin).registerNodes([operatorNodes[0]!]);
    expect(String(byAdmin[0])).not.toBe(String(operatorNodes[0]));
  });

  test("CreateMonitoredItems on any attribute of another session's diagnostics: BadNodeIdUnknown; on its own: Good", async () => {
    const subscription = await viewer.session.createSubscription2({
      requestedPublishingInterval: 100,
      requestedLifetimeCount: 600,
      requestedMaxKeepAliveCount: 10,
      publishingEnabled: true,
    });
    try {
      const targets = [
        { nodeId: operatorNodes[0]!, attributeId: AttributeIds.DisplayName },
        { nodeId: operatorNodes[1]!, attributeId: AttributeIds.Value },
        { nodeId: operatorNodes[1]!, attributeId: AttributeIds.BrowseName },
        { nodeId: viewer.session.sessionId, attributeId: AttributeIds.DisplayName },
      ];
      const response = await raw(viewer).createMonitoredItems(
        new CreateMonitoredItemsRequest({
          subscriptionId: subscription.subscriptionId,
          timestampsToReturn: TimestampsToReturn.Both,
          itemsToCreate: targets.map((itemToMonitor, index) => ({
            itemToMonitor,
            monitoringMode: MonitoringMode.Reporting,
            requestedParameters: { clientHandle: index + 1, samplingInterval: 2000, queueSize: 1, discardOldest: true },
          })),
        }),
      );
      expect((response.results ?? []).map((result) => result.statusCode)).toEqual([
        StatusCodes.BadNodeIdUnknown,
        StatusCodes.BadNodeIdUnknown,
        StatusCodes.BadNodeIdUnknown,
        StatusCodes.Good,
      ]);
    } finally {
      await subscription.terminate();
    }
  });

  test("Write, Call and HistoryRead naming another session's nodes answer BadNodeIdUnknown and leave no audit entry, as for an unknown node", async () => {
    const before = (await served.store.audit.query({ from: 0, to: Date.now() + 1 })).length;
    const [write] = await viewer.session.write([
      {
        nodeId: operatorNodes[0]!,
        attributeId: AttributeIds.DisplayName,
        value: { value: new Variant({ dataType: DataType.LocalizedText, value: { text: "x" } }) },
      },
    ]);
    expect(write).toBe(StatusCodes.BadNodeIdUnknown);
    const call = await viewer.session.call({
      objectId: operatorNodes[0]!,
      methodId: "ns=0;i=11492",
      inputArguments: [],
    });
    expect(call.statusCode).toBe(StatusCodes.BadNodeIdUnknown);
    const history = await viewer.session.readHistoryValue(operatorNodes[1]!, new Date(0), new Date());
    expect(history.statusCode).toBe(StatusCodes.BadNodeIdUnknown);
    const ownHistory = await viewer.session.readHistoryValue(
      (await subtreeOf(viewer, viewer.session.sessionId))[1]!,
      new Date(0),
      new Date(),
    );
    expect(ownHistory.statusCode).toBe(StatusCodes.BadHistoryOperationUnsupported);
    expect((await served.store.audit.query({ from: 0, to: Date.now() + 1 })).length).toBe(before);
  });

  test("an admin's item on the DisplayName of the operator's object delivers BadUserAccessDenied, no name, once its session switched to the viewer", async () => {
    const client = await connect(served.server, pki.trusted, user("ada"));
    try {
      const subscription = await client.session.createSubscription2({
        requestedPublishingInterval: 50,
        requestedLifetimeCount: 600,
        requestedMaxKeepAliveCount: 10,
        publishingEnabled: true,
      });
      const seen: { code: unknown; value: unknown }[] = [];
      const item = await subscription.monitor(
        { nodeId: operatorNodes[0]!, attributeId: AttributeIds.DisplayName },
        { samplingInterval: 50, queueSize: 1, discardOldest: true },
        TimestampsToReturn.Both,
      );
      item.on("changed", (dataValue) => seen.push({ code: dataValue.statusCode, value: dataValue.value.value }));
      const until = Date.now() + 3_000;
      while (seen.length === 0 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(seen[0]?.code).toBe(StatusCodes.Good);
      seen.length = 0;
      expect(await client.session.changeUser(user("vic"))).toBe(StatusCodes.Good);
      const later = Date.now() + 3_000;
      while (seen.length === 0 && Date.now() < later) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(seen.length).toBeGreaterThan(0);
      expect(seen.every((entry) => entry.code === StatusCodes.BadUserAccessDenied && entry.value === null)).toBe(true);
      await subscription.terminate();
    } finally {
      await client.close();
    }
  });

  test("an admin session switched to the viewer no longer finds the operator's object; switched back, it does", async () => {
    const client = await connect(served.server, pki.trusted, user("ada"));
    try {
      const name = { nodeId: operatorNodes[0]!, attributeId: AttributeIds.DisplayName };
      expect((await client.session.read(name)).statusCode).toBe(StatusCodes.Good);
      expect(await client.session.changeUser(user("vic"))).toBe(StatusCodes.Good);
      expect((await client.session.read(name)).statusCode).toBe(StatusCodes.BadNodeIdUnknown);
      expect(await client.session.changeUser(user("ada"))).toBe(StatusCodes.Good);
      expect((await client.session.read(name)).statusCode).toBe(StatusCodes.Good);
    } finally {
      await client.close();
    }
  });
});
