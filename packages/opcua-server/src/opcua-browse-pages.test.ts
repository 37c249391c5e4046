import type { BaseNode } from "node-opcua-address-space-base";
import { SessionContext } from "node-opcua-address-space";
import { nodesets } from "node-opcua-nodesets";
import { OPCUAServer, type ServerSession } from "node-opcua-server";
import { StatusCodes } from "node-opcua-status-code";
import { BrowseDescription, type BrowseResult, type ReferenceDescription } from "node-opcua-types";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { BrowsePages, referenceMapsOf, scanWeight } from "./opcua-browse-pages";

const FOLDER_SIZE = 4_000;
const FULL_MASK = 0x3f;

let server: OPCUAServer;
let folder: BaseNode;
let small: BaseNode;
/** The references each browseNode call of the folder was handed (BrowsePages scans a node through it). */
let scans: number[] = [];

beforeAll(async () => {
  server = new OPCUAServer({ port: 0, nodeset_filename: [nodesets.standard] });
  await server.initialize();
  const addressSpace = server.engine.addressSpace!;
  const namespace = addressSpace.registerNamespace("urn:kiln:browse-pages-test");
  const big = namespace.addFolder(addressSpace.rootFolder.objects, { browseName: "big", nodeId: "s=#big" });
  for (let index = 0; index < FOLDER_SIZE; index++) {
    namespace.addVariable({ organizedBy: big, browseName: `t${index}`, nodeId: `s=big.t${index}`, dataType: "Double" });
  }
  small = namespace.addFolder(addressSpace.rootFolder.objects, { browseName: "small", nodeId: "s=#small" });
  folder = big;
  const browseNode = big.browseNode; // unbound: BrowsePages calls it on a view of the node
  big.browseNode = function (this: BaseNode, ...args: Parameters<BaseNode["browseNode"]>) {
    scans.push(this.allReferences().length);
    return browseNode.call(this, ...args);
  } as BaseNode["browseNode"];
}, 60_000);

afterAll(async () => {
  await server?.shutdown(0);
  server?.dispose();
});

/** A session as BrowsePages sees one (its context: browse everything). */
const session = (): ServerSession => ({ sessionContext: SessionContext.defaultContext }) as unknown as ServerSession;

const pages = (maxWorkPerCall: number, maxContinuationPoints: number) =>
  new BrowsePages(
    () => server.engine.addressSpace as never,
    () => ({ maxWorkPerCall, maxContinuationPoints }),
  );

const everything = (node: BaseNode, resultMask = FULL_MASK) =>
  new BrowseDescription({
    nodeId: node.nodeId,
    browseDirection: 2,
    includeSubtypes: true,
    nodeClassMask: 0,
    resultMask,
  });

const text = (reference: ReferenceDescription) => JSON.stringify(reference.toJSON());

describe("BrowsePages", () => {
  test("a 4,000-reference folder with the full ResultMask answers in pieces with continuation points, each call scanning at most its budget, the pieces together every reference exactly once and as node-opcua describes it", async () => {
    const browser = pages(2_500, 10);
    const owner = session();
    scans = [];
    const perCall: number[] = [];
    const served: ReferenceDescription[] = [];
    let [result]: (BrowseResult | undefined)[] = await browser.browse(owner, [everything(folder)], 1_000);
    perCall.push(scans.reduce((sum, size) => sum + size, 0));
    expect(result!.statusCode).toBe(StatusCodes.Good);
    expect(result!.continuationPoint?.length).toBeGreaterThan(0);
    served.push(...(result!.references ?? []));
    while (result?.continuationPoint?.length) {
      scans = [];
      [result] = browser.browseNext(owner, [result.continuationPoint], false);
      perCall.push(scans.reduce((sum, size) => sum + size, 0));
      expect(result!.statusCode).toBe(StatusCodes.Good);
      served.push(...(result!.references ?? []));
    }
    // 2,500 work units at 5 a reference (full mask): 500 references scanned per call, never the folder at once.
    expect(scanWeight(FULL_MASK)).toBe(5);
    expect(Math.max(...perCall)).toBeLessThanOrEqual(500);
    const whole = folder.browseNode(everything(folder), SessionContext.defaultContext).map(text);
    expect(whole.length).toBe(FOLDER_SIZE + 2); // its variables, its parent, its type definition
    expect(served.map(text)).toEqual(whole);
    expect(new Set(served.map(text)).size).toBe(served.length);
    // The point is spent: asked again, it is unknown.
    const [spent] = browser.browseNext(owner, [Buffer.from("b1")], false);
    expect(spent!.statusCode).toBe(StatusCodes.BadContinuationPointInvalid);
  });

  test("continuation points are random, not counted: a session's two points tell nothing of the paged Browses other sessions made between them; another session's point is unknown (adv20j F1)", async () => {
    const browser = pages(1_000_000, 10);
    const mine = session();
    const other = session();
    const [first] = await browser.browse(mine, [everything(folder)], 1);
    for (let index = 0; index < 5; index++) await browser.browse(other, [everything(folder)], 1);
    const [second] = await browser.browse(mine, [everything(folder)], 1);
    const points = [first!.continuationPoint!, second!.continuationPoint!];
    // Was "b1" then "b7": the five between were the other session's.
    for (const point of points) expect(point.length).toBe(16);
    expect(points[0]!.equals(points[1]!)).toBe(false);
    const [foreign] = browser.browseNext(other, [points[0]!], false);
    expect(foreign!.statusCode).toBe(StatusCodes.BadContinuationPointInvalid);
    const [own] = browser.browseNext(mine, [points[0]!], false);
    expect(own!.statusCode).toBe(StatusCodes.Good);
  });

  test("with every continuation point of the session held, a node whose references do not fit one piece answers BadNoContinuationPoints after scanning at most one piece and one reference (charged); a node that fits one piece is still browsed", async () => {
    const browser = pages(1_000_000, 1);
    const owner = session();
    const [held] = await browser.browse(owner, [everything(folder)], 1_000);
    expect(held!.continuationPoint?.length).toBeGreaterThan(0);
    scans = [];
    const [refused, fits] = await browser.browse(owner, [everything(folder), everything(small)], 1_000);
    expect(refused!.statusCode).toBe(StatusCodes.BadNoContinuationPoints);
    // Whether the references the session may see fit is found by scanning the piece (fix20g: the
    // maps' sizes count hidden references too), never more than the piece and one ahead.
    expect(scans.reduce((sum, size) => sum + size, 0)).toBeLessThanOrEqual(1_001);
    expect(fits!.statusCode).toBe(StatusCodes.Good);
    expect(fits!.references?.length).toBeGreaterThan(0);
    // Released, the point frees its place.
    browser.browseNext(owner, [held!.continuationPoint!], true);
    const [browsed] = await browser.browse(owner, [everything(folder)], 1_000);
    expect(browsed!.statusCode).toBe(StatusCodes.Good);
  });

  test("a Browse call's nodes after its budget is spent answer BadNoContinuationPoints; the first always progresses", async () => {
    const browser = pages(10, 10);
    const results = await browser.browse(session(), [everything(folder), everything(small)], 1_000);
    expect(results[0]!.statusCode).toBe(StatusCodes.Good);
    expect(results[0]!.references).toHaveLength(2); // 10 units at 5 a reference
    expect(results[0]!.continuationPoint?.length).toBeGreaterThan(0);
    expect(results[1]!.statusCode).toBe(StatusCodes.BadNoContinuationPoints);
  });
  test("one Browse naming the 4,000-reference folder 1,000 times copies none of its references and scans at most the call's budget of them (adversarial review, issue 20)", async () => {
    const browser = pages(2_500, 10);
    // node-opcua's maps are found: without them every copy would be counted by allReferences()
    expect(referenceMapsOf(server.engine.addressSpace as never, folder)).toBeDefined();
    let copies = 0;
    const allReferences = folder.allReferences;
    folder.allReferences = function (this: BaseNode) {
      copies += 1;
      return allReferences.call(this);
    };
    scans = [];
    try {
      const results = await browser.browse(
        session(),
        Array.from({ length: 1_000 }, () => everything(folder)),
        1_000,
      );
      expect(results[0]!.references).toHaveLength(500); // 2,500 units at 5 a reference
      expect(results.slice(1).every((result) => result.statusCode === StatusCodes.BadNoContinuationPoints)).toBe(true);
    } finally {
      folder.allReferences = allReferences;
    }
    expect(copies).toBe(0);
    expect(scans.reduce((sum, size) => sum + size, 0)).toBeLessThanOrEqual(500);
  });

  test("a budget left smaller than one reference's weight answers the next node BadNoContinuationPoints, not an empty piece holding a continuation point", async () => {
    const browser = pages(12, 10); // the folder takes 2 references at 5: 2 units left
    const owner = session();
    const [first, next] = await browser.browse(owner, [everything(folder), everything(small)], 1_000);
    expect(first!.references).toHaveLength(2);
    expect(next!.statusCode).toBe(StatusCodes.BadNoContinuationPoints);
    expect(next!.continuationPoint ?? null).toBeNull();
    // a node with a reference as cheap as the units left is still browsed (mask 0: 2 a reference)
    const [, cheap] = await browser.browse(owner, [everything(folder), everything(small, 0)], 1_000);
    expect(cheap!.statusCode).toBe(StatusCodes.Good);
    expect(cheap!.references?.length).toBeGreaterThan(0);
  });

  test("references added to a node between its pieces are served in a later piece; none is served twice", async () => {
    const addressSpace = server.engine.addressSpace!;
    const namespace = addressSpace.getNamespace("urn:kiln:browse-pages-test");
    const growing = namespace.addFolder(addressSpace.rootFolder.objects, {
      browseName: "growing",
      nodeId: "s=#growing",
    });
    for (let index = 0; index < 10; index++) {
      namespace.addVariable({
        organizedBy: growing,
        browseName: `g${index}`,
        nodeId: `s=growing.g${index}`,
        dataType: "Double",
      });
    }
    const browser = pages(1_000_000, 10);
    const owner = session();
    let [result]: (BrowseResult | undefined)[] = await browser.browse(owner, [everything(growing)], 4);
    const served = [...(result!.references ?? [])];
    namespace.addVariable({ organizedBy: growing, browseName: "late", nodeId: "s=growing.late", dataType: "Double" });
    while (result?.continuationPoint?.length) {
      [result] = browser.browseNext(owner, [result.continuationPoint], false);
      served.push(...(result!.references ?? []));
    }
    const ids = served.map((reference) => reference.nodeId.toString());
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toContain(`ns=${namespace.index};s=growing.late`);
    expect(ids.filter((id) => id.includes("growing.g"))).toHaveLength(10);
  });
});
