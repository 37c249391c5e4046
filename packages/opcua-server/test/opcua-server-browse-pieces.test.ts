import { defineTags, type TagDefinitionInput } from "@kiln/core";
import { browseAll } from "node-opcua-client";
import { StatusCodes } from "node-opcua-status-code";
import type { ReferenceDescription } from "node-opcua-types";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { connect, makeTestPki, servedSystem, type ServedTestSystem, type TestPki, user } from "./support/opcua-fixture";

const FOLDER_SIZE = 4_000;
const definitions: Record<string, TagDefinitionInput> = {};
for (let index = 0; index < FOLDER_SIZE; index++) {
  definitions[`big.t${index}`] = { dataType: "float64", logging: { mode: "none" } };
}
const tags = defineTags(definitions);

let pki: TestPki;
let served: ServedTestSystem;
let olga: Awaited<ReturnType<typeof connect>>;

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({ tags, pki }); // default limits
  olga = await connect(served.server, pki.trusted, user("olga"));
}, 120_000);

afterAll(async () => {
  await olga?.close();
  await served?.dispose();
  await pki?.dispose();
});

describe("Browse of a 4,000-tag folder with the full ResultMask (adversarial review: one Browse held the event loop 150-900 ms)", () => {
  test("it answers in pieces of at most the default budget (2,500 units, 5 a reference: 500), with continuation points, the pieces together every reference exactly once", async () => {
    (olga.session as unknown as { requestedMaxReferencesPerNode: number }).requestedMaxReferencesPerNode = 0;
    const folder = `ns=${served.server.namespaceIndex};s=#big`;
    const [first] = await olga.session.browse([
      { nodeId: folder, browseDirection: 2, includeSubtypes: true, nodeClassMask: 0, resultMask: 0x3f },
    ]);
    expect(first!.statusCode).toBe(StatusCodes.Good);
    expect(first!.continuationPoint?.length).toBeGreaterThan(0);
    const pieces: ReferenceDescription[][] = [first!.references ?? []];
    let point = first!.continuationPoint;
    while (point?.length) {
      const [next] = await olga.session.browseNext([point], false);
      expect(next!.statusCode).toBe(StatusCodes.Good);
      pieces.push(next!.references ?? []);
      point = next!.continuationPoint;
    }
    expect(Math.max(...pieces.map((piece) => piece.length))).toBeLessThanOrEqual(500);
    const nodeIds = pieces.flat().map((reference) => reference.nodeId.toString());
    expect(new Set(nodeIds).size).toBe(nodeIds.length);
    for (let index = 0; index < FOLDER_SIZE; index++) {
      expect(nodeIds).toContain(served.server.nodeIdOf(`big.t${index}`));
    }
    // Its variables, its parent folder (inverse Organizes) and its type definition.
    expect(nodeIds).toHaveLength(FOLDER_SIZE + 2);
    const variable = pieces
      .flat()
      .find((reference) => reference.nodeId.toString() === served.server.nodeIdOf("big.t7"));
    expect(variable!.browseName.name).toBe("t7");
    expect(variable!.displayName.text).toBe("t7");
    expect(variable!.typeDefinition.toString()).toBe("ns=0;i=63"); // BaseDataVariableType
  }, 60_000);

  test("pieces that the filters leave empty still carry their continuation point, and node-opcua's browseAll follows them to the end", async () => {
    const folder = `ns=${served.server.namespaceIndex};s=#big`;
    // Forward references of NodeClass Object: none of the folder's 4,000 variables (nor its
    // ObjectType definition) matches, so each piece (500 references scanned) is empty.
    const description = {
      nodeId: folder,
      browseDirection: 0,
      includeSubtypes: true,
      nodeClassMask: 1,
      resultMask: 0x3f,
    };
    const [first] = await olga.session.browse([description]);
    expect(first!.statusCode).toBe(StatusCodes.Good);
    expect(first!.references ?? []).toHaveLength(0);
    expect(first!.continuationPoint?.length).toBeGreaterThan(0);
    await olga.session.browseNext([first!.continuationPoint], true);
    const [all] = await browseAll(olga.session, [description]);
    expect(all!.statusCode).toBe(StatusCodes.Good);
    expect(all!.references ?? []).toEqual([]);
    expect(all!.continuationPoint?.length ?? 0).toBe(0);
    // The session holds no point afterwards: a Browse needing one is still served.
    const [again] = await olga.session.browse([{ ...description, nodeClassMask: 0 }]);
    expect(again!.statusCode).toBe(StatusCodes.Good);
    if (again!.continuationPoint?.length) await olga.session.browseNext([again!.continuationPoint], true);
  }, 60_000);
});
