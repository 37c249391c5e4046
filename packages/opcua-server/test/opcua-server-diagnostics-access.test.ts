import { defineTags, defaultRoleTable } from "@kiln/core";
import { OPCUA_DIAGNOSTICS_PERMISSION } from "../src/index";
import {
  AttributeIds,
  BrowseDirection,
  CreateMonitoredItemsRequest,
  makeBrowsePath,
  MonitoringMode,
  type NodeId,
  StatusCodes,
  TimestampsToReturn,
  UserTokenType,
} from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  connect,
  identify,
  makeTestPki,
  servedSystem,
  type ServedTestSystem,
  type TestPki,
  user,
} from "./support/opcua-fixture";

// Issue 20, adversarial pass F4: every session could read every other session's diagnostics
// (SessionDiagnostics: client URI, session name, endpoint; SessionSecurityDiagnostics: the client
// certificate) and the server's diagnostics. Now a session reads its own; the rest needs
// `opcua.diagnostics` (OPC UA Part 5, 12.12: security diagnostics only for authorised users).

const tags = defineTags({ "chamber.pressure": { dataType: "float64" } });

/** ns=0 NodeIds of Server.ServerDiagnostics and what is under it. */
const DIAGNOSTICS = {
  serverDiagnosticsSummary: "ns=0;i=2275",
  subscriptionDiagnosticsArray: "ns=0;i=2290",
  enabledFlag: "ns=0;i=2294",
  sessionsDiagnosticsSummary: "ns=0;i=3706",
  sessionDiagnosticsArray: "ns=0;i=3707",
  sessionSecurityDiagnosticsArray: "ns=0;i=3708",
} as const;

type Client = Awaited<ReturnType<typeof connect>>;

let pki: TestPki;
let served: ServedTestSystem;
let viewer: Client;
let operator: Client;
let admin: Client;

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({
    tags,
    pki,
    // The default roles: only admin (`*`) holds opcua.diagnostics.
    system: { authorization: { roles: defaultRoleTable() } },
  });
  viewer = await connect(served.server, pki.trusted, user("vic"));
  operator = await connect(served.server, pki.trusted, user("olga"));
  admin = await connect(served.server, pki.trusted, user("ada"));
});

afterAll(async () => {
  await Promise.all([viewer?.close(), operator?.close(), admin?.close()]);
  await served?.dispose();
  await pki?.dispose();
});

/** The NodeId of `client`'s own session's SessionDiagnostics (found by the client itself). */
async function ownSessionDiagnostics(client: Client, child = "SessionDiagnostics"): Promise<NodeId> {
  const [result] = await client.session.translateBrowsePath([makeBrowsePath(client.session.sessionId, `.${child}`)]);
  expect(result!.statusCode).toBe(StatusCodes.Good);
  return result!.targets![0]!.targetId as NodeId;
}

async function readValue(client: Client, nodeId: NodeId | string) {
  return client.session.read({ nodeId, attributeId: AttributeIds.Value });
}

async function browseSessions(client: Client): Promise<string[]> {
  const result = await client.session.browse({
    nodeId: DIAGNOSTICS.sessionsDiagnosticsSummary,
    browseDirection: BrowseDirection.Forward,
    resultMask: 63,
  });
  return (result.references ?? []).map((reference) => reference.nodeId.toString());
}

describe("OpcuaServer: a session sees only its own diagnostics without opcua.diagnostics (F4)", () => {
  test("the permission's name is exported", () => {
    expect(OPCUA_DIAGNOSTICS_PERMISSION).toBe("opcua.diagnostics");
  });

  test("a viewer reads its own SessionDiagnostics but not the operator's: BadNodeIdUnknown (fix20e); the admin reads both", async () => {
    const own = await ownSessionDiagnostics(viewer);
    const operators = await ownSessionDiagnostics(operator);
    const mine = await readValue(viewer, own);
    expect(mine.statusCode).toBe(StatusCodes.Good);
    expect(String((mine.value.value as { sessionId: NodeId }).sessionId)).toBe(viewer.session.sessionId.toString());
    // fix20e: another session's diagnostics do not exist for it (not only their values refused).
    const theirs = await readValue(viewer, operators);
    expect(theirs.statusCode).toBe(StatusCodes.BadNodeIdUnknown);
    expect(theirs.value.value).toBeNull();
    // A field of it (a component variable), and its security diagnostics, the same.
    const [clientDescription] = await operator.session.translateBrowsePath([
      makeBrowsePath(operator.session.sessionId, ".SessionDiagnostics.ClientDescription"),
    ]);
    const field = clientDescription!.targets![0]!.targetId as NodeId;
    expect((await readValue(viewer, field)).statusCode).toBe(StatusCodes.BadNodeIdUnknown);
    expect((await readValue(operator, field)).statusCode).toBe(StatusCodes.Good);
    const operatorSecurity = await ownSessionDiagnostics(operator, "SessionSecurityDiagnostics");
    expect((await readValue(viewer, operatorSecurity)).statusCode).toBe(StatusCodes.BadNodeIdUnknown);
    // The admin holds opcua.diagnostics (`*`).
    expect((await readValue(admin, operators)).statusCode).toBe(StatusCodes.Good);
    expect((await readValue(admin, field)).statusCode).toBe(StatusCodes.Good);
  });

  test("the server-wide diagnostics (every session, every subscription, the summary) need opcua.diagnostics; EnabledFlag does not", async () => {
    for (const nodeId of [
      DIAGNOSTICS.sessionDiagnosticsArray,
      DIAGNOSTICS.sessionSecurityDiagnosticsArray,
      DIAGNOSTICS.serverDiagnosticsSummary,
      DIAGNOSTICS.subscriptionDiagnosticsArray,
    ]) {
      expect((await readValue(viewer, nodeId)).statusCode, nodeId).toBe(StatusCodes.BadUserAccessDenied);
      expect((await readValue(operator, nodeId)).statusCode, nodeId).toBe(StatusCodes.BadUserAccessDenied);
    }
    expect((await readValue(viewer, DIAGNOSTICS.enabledFlag)).statusCode).toBe(StatusCodes.Good);
    const all = await readValue(admin, DIAGNOSTICS.sessionDiagnosticsArray);
    expect(all.statusCode).toBe(StatusCodes.Good);
    const ids = (all.value.value as { sessionId: NodeId }[]).map((entry) => entry.sessionId.toString());
    expect(ids).toEqual(
      expect.arrayContaining([viewer, operator, admin].map((client) => client.session.sessionId.toString())),
    );
  });

  test("Browse of SessionsDiagnosticsSummary shows a viewer its own session only; the admin every session", async () => {
    const [vic, olga, ada] = [viewer, operator, admin].map((client) => client.session.sessionId.toString());
    const seenByViewer = await browseSessions(viewer);
    expect(seenByViewer).toContain(vic);
    expect(seenByViewer).not.toContain(olga);
    expect(seenByViewer).not.toContain(ada);
    expect(seenByViewer).not.toContain(DIAGNOSTICS.sessionDiagnosticsArray);
    expect(await browseSessions(admin)).toEqual(expect.arrayContaining([vic!, olga!, ada!]));
  });

  test("an admin's session switched to the viewer (ActivateSession) loses the other sessions' diagnostics at once; switched back, has them again", async () => {
    const client = await connect(served.server, pki.trusted, user("ada"));
    try {
      const operators = await ownSessionDiagnostics(operator);
      expect((await readValue(client, operators)).statusCode).toBe(StatusCodes.Good);
      expect(await client.session.changeUser(user("vic"))).toBe(StatusCodes.Good);
      expect((await readValue(client, operators)).statusCode).toBe(StatusCodes.BadNodeIdUnknown);
      expect((await readValue(client, DIAGNOSTICS.sessionDiagnosticsArray)).statusCode).toBe(
        StatusCodes.BadUserAccessDenied,
      );
      // Its own session's diagnostics stay its own, whoever the user.
      expect((await readValue(client, await ownSessionDiagnostics(client))).statusCode).toBe(StatusCodes.Good);
      expect(await client.session.changeUser(user("ada"))).toBe(StatusCodes.Good);
      expect((await readValue(client, operators)).statusCode).toBe(StatusCodes.Good);
    } finally {
      await client.close();
    }
  });

  test("a monitored item on another session's diagnostics is refused BadNodeIdUnknown (fix20e); on its own it is created", async () => {
    const subscription = await viewer.session.createSubscription2({
      requestedPublishingInterval: 100,
      requestedLifetimeCount: 600,
      requestedMaxKeepAliveCount: 10,
      publishingEnabled: true,
    });
    try {
      const session = viewer.session as unknown as {
        createMonitoredItems(request: CreateMonitoredItemsRequest): Promise<{
          results?: { statusCode: typeof StatusCodes.Good }[] | null;
        }>;
      };
      const targets = [await ownSessionDiagnostics(viewer), await ownSessionDiagnostics(operator)];
      const response = await session.createMonitoredItems(
        new CreateMonitoredItemsRequest({
          subscriptionId: subscription.subscriptionId,
          timestampsToReturn: TimestampsToReturn.Both,
          itemsToCreate: targets.map((nodeId, index) => ({
            itemToMonitor: { nodeId, attributeId: AttributeIds.Value },
            monitoringMode: MonitoringMode.Reporting,
            requestedParameters: { clientHandle: index + 1, samplingInterval: 2000, queueSize: 1, discardOldest: true },
          })),
        }),
      );
      expect((response.results ?? []).map((result) => result.statusCode)).toEqual([
        StatusCodes.Good,
        StatusCodes.BadNodeIdUnknown,
      ]);
    } finally {
      await subscription.terminate();
    }
  });
});

describe("OpcuaServer: a host grants opcua.diagnostics to a role of its own", () => {
  test("a `support` user (read + opcua.diagnostics) reads every session's diagnostics; the viewer still only its own", async () => {
    const own = await servedSystem({
      tags,
      pki,
      system: {
        authorization: { roles: { ...defaultRoleTable(), support: ["read", OPCUA_DIAGNOSTICS_PERMISSION] } },
      },
      server: {
        identify: (identity) =>
          identity.type === "username" && identity.userName === "sam" && identity.password === "support-Pa55"
            ? { id: "sam", roles: ["support"] }
            : identify(identity),
      },
    });
    const sam = await connect(own.server, pki.trusted, {
      type: UserTokenType.UserName,
      userName: "sam",
      password: "support-Pa55",
    });
    const vic = await connect(own.server, pki.trusted, user("vic"));
    try {
      const vics = await ownSessionDiagnostics(vic);
      const sams = await ownSessionDiagnostics(sam);
      expect((await readValue(sam, vics)).statusCode).toBe(StatusCodes.Good);
      expect((await readValue(sam, DIAGNOSTICS.sessionDiagnosticsArray)).statusCode).toBe(StatusCodes.Good);
      // SessionSecurityDiagnostics (and their array) node-opcua reserves to its SecurityAdmin role,
      // which Kiln gives no session: nobody reads them, not even the session itself.
      expect((await readValue(sam, DIAGNOSTICS.sessionSecurityDiagnosticsArray)).statusCode).toBe(
        StatusCodes.BadUserAccessDenied,
      );
      expect((await readValue(vic, await ownSessionDiagnostics(vic, "SessionSecurityDiagnostics"))).statusCode).toBe(
        StatusCodes.BadUserAccessDenied,
      );
      expect((await readValue(vic, sams)).statusCode).toBe(StatusCodes.BadNodeIdUnknown);
    } finally {
      await Promise.all([sam.close(), vic.close()]);
      await own.dispose();
    }
  });
});
