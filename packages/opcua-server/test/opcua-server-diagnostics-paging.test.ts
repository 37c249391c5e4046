import { defineTags, defaultRoleTable } from "@kiln/core";
import { BrowseDirection, StatusCodes } from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { connect, makeTestPki, servedSystem, type ServedTestSystem, type TestPki, user } from "./support/opcua-fixture";

// Issue 20 (adv20e F2, fix20g): a viewer that cannot see other sessions' diagnostics could still
// count them: Browse decided whether a node needs a continuation point from node-opcua's
// unfiltered reference count, and the pieces of a node ended with an empty one carrying a point
// where hidden references were left. Page sizes, continuation points and BadNoContinuationPoints
// must be the same whether 1 or 5 other sessions are open.

const tags = defineTags({ "chamber.pressure": { dataType: "float64" } });
const SERVER = "ns=0;i=2253";
const SESSIONS_DIAGNOSTICS_SUMMARY = "ns=0;i=3706";
const SESSION_DIAGNOSTICS_OBJECT_TYPE = "ns=0;i=2029";
const SESSION_DIAGNOSTICS_VARIABLE_TYPE = "ns=0;i=2197";
const HAS_TYPE_DEFINITION = "ns=0;i=40";
const OBJECTS = "ns=0;i=85";
const MAX_POINTS = 2;

const DESCRIPTIONS = [
  { nodeId: SESSIONS_DIAGNOSTICS_SUMMARY, browseDirection: BrowseDirection.Forward },
  { nodeId: SESSIONS_DIAGNOSTICS_SUMMARY, browseDirection: BrowseDirection.Both },
  { nodeId: SERVER, browseDirection: BrowseDirection.Both },
  {
    nodeId: SESSION_DIAGNOSTICS_OBJECT_TYPE,
    browseDirection: BrowseDirection.Inverse,
    referenceTypeId: HAS_TYPE_DEFINITION,
  },
  { nodeId: SESSION_DIAGNOSTICS_VARIABLE_TYPE, browseDirection: BrowseDirection.Both },
] as const;

type Client = Awaited<ReturnType<typeof connect>>;

let pki: TestPki;
let served: ServedTestSystem;
let viewer: Client;
const others: Client[] = [];

function setPerNode(client: Client, perNode: number): void {
  (client.session as unknown as { requestedMaxReferencesPerNode: number }).requestedMaxReferencesPerNode = perNode;
}

/** The pieces of one Browse followed to its end: each piece's size and whether it carried a point. */
async function pagesOf(client: Client, description: (typeof DESCRIPTIONS)[number], perNode: number): Promise<string[]> {
  setPerNode(client, perNode);
  const first = await client.session.browse({ ...description, resultMask: 63 });
  setPerNode(client, 0);
  const pages = [`${first.statusCode.name} ${first.references?.length ?? 0}${first.continuationPoint ? "+" : ""}`];
  let point = first.continuationPoint;
  while (point && point.length > 0 && pages.length < 200) {
    const next = await client.session.browseNext(point, false);
    pages.push(`${next.statusCode.name} ${next.references?.length ?? 0}${next.continuationPoint ? "+" : ""}`);
    point = next.continuationPoint ?? null;
  }
  return pages;
}

/** Each description paged 1 and 2 references at a time, then browsed while the viewer holds all its points. */
async function probe(): Promise<Record<string, string[]>> {
  const seen: Record<string, string[]> = {};
  for (const [index, description] of DESCRIPTIONS.entries()) {
    for (const perNode of [1, 2, 3]) seen[`${index}/${perNode}`] = await pagesOf(viewer, description, perNode);
  }
  // Hold every continuation point (pieces of Objects, one reference each), then browse each node.
  setPerNode(viewer, 1);
  const held: Buffer[] = [];
  for (let index = 0; index < MAX_POINTS; index += 1) {
    const result = await viewer.session.browse({
      nodeId: OBJECTS,
      browseDirection: BrowseDirection.Both,
      resultMask: 0,
    });
    expect(result.continuationPoint?.length).toBeGreaterThan(0);
    held.push(result.continuationPoint!);
  }
  for (const [index, description] of DESCRIPTIONS.entries()) {
    for (const perNode of [1, 2, 3, 4, 5, 8, 13, 21, 40]) {
      setPerNode(viewer, perNode);
      const result = await viewer.session.browse({ ...description, resultMask: 63 });
      seen[`${index}/${perNode}/full`] = [
        `${result.statusCode.name} ${result.references?.length ?? 0}${result.continuationPoint ? "+" : ""}`,
      ];
    }
  }
  setPerNode(viewer, 0);
  for (const point of held) await viewer.session.browseNext(point, true);
  return seen;
}

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({
    tags,
    pki,
    system: { authorization: { roles: defaultRoleTable() } },
    server: { limits: { maxBrowseContinuationPoints: MAX_POINTS, maxSessionsPerPrincipal: 10 } },
  });
  viewer = await connect(served.server, pki.trusted, user("vic"));
  others.push(await connect(served.server, pki.trusted, user("olga")));
});

afterAll(async () => {
  await Promise.all([viewer?.close(), ...others.map((other) => other.close())]);
  await served?.dispose();
  await pki?.dispose();
});

describe("OpcuaServer: Browse pieces do not tell how many other sessions exist", () => {
  test("pieces, continuation points and BadNoContinuationPoints are the same with 1 and 5 other sessions", async () => {
    const withOne = await probe();
    for (let index = 0; index < 4; index += 1) {
      others.push(await connect(served.server, pki.trusted, user(index % 2 === 0 ? "olga" : "ada")));
    }
    const withFive = await probe();
    expect(withFive).toEqual(withOne);
    // No piece is empty with a point, and a node whose references fit one piece carries none.
    for (const pages of Object.values(withOne)) {
      for (const page of pages) expect(page).not.toMatch(/^Good 0\+$/);
    }
  });

  test("BrowseNext goes on unchanged when other sessions open and close between pieces", async () => {
    const reference = await pagesOf(viewer, DESCRIPTIONS[0], 1);
    setPerNode(viewer, 1);
    const first = await viewer.session.browse({ ...DESCRIPTIONS[0], resultMask: 63 });
    setPerNode(viewer, 0);
    const pages = [`${first.statusCode.name} ${first.references?.length ?? 0}${first.continuationPoint ? "+" : ""}`];
    const listed = (first.references ?? []).map((item) => String(item.nodeId));
    let point = first.continuationPoint;
    let step = 0;
    while (point && point.length > 0 && pages.length < 200) {
      // between pieces: one session opens, then one closes
      if (step % 2 === 0) others.push(await connect(served.server, pki.trusted, user("olga")));
      else await others.shift()!.close();
      step += 1;
      const next = await viewer.session.browseNext(point, false);
      pages.push(`${next.statusCode.name} ${next.references?.length ?? 0}${next.continuationPoint ? "+" : ""}`);
      listed.push(...(next.references ?? []).map((item) => String(item.nodeId)));
      point = next.continuationPoint ?? null;
    }
    expect(pages).toEqual(reference);
    expect(listed).toContain(viewer.session.sessionId.toString());
    for (const other of others) expect(listed).not.toContain(other.session.sessionId.toString());
    expect(StatusCodes.Good.name).toBe("Good");
  });
});
