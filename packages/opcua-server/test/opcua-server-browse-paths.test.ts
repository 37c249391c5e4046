import { defineTags } from "@kiln/core";
import { AddressSpace } from "node-opcua-address-space";
import {
  BrowsePath,
  type BrowsePathResult,
  QualifiedName,
  RelativePath,
  RelativePathElement,
  resolveNodeId,
  StatusCodes,
} from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { connect, makeTestPki, servedSystem, type ServedTestSystem, type TestPki, user } from "./support/opcua-fixture";

/**
 * TranslateBrowsePathsToNodeIds is answered by Kiln breadth first over distinct nodes (ADR 0036,
 * amendment fix20u): node-opcua followed every route separately, 2^16 routes for 32 elements.
 */

const tags = defineTags({
  "line0.temp": { dataType: "float64", range: { min: 0, max: 100 } },
  "line0.motor.speed": { dataType: "float64" },
});

/** node-opcua's own AddressSpace of the served system, to compare its answers with Kiln's. */
let addressSpace: { browsePath(path: BrowsePath): BrowsePathResult } | undefined;
const findNode = (
  (AddressSpace as unknown as { prototype: unknown }).prototype as { findNode(this: never, ...a: unknown[]): unknown }
).findNode;
(
  (AddressSpace as unknown as { prototype: unknown }).prototype as { findNode(this: never, ...a: unknown[]): unknown }
).findNode = function (this: never, ...args: unknown[]) {
  addressSpace ??= this as unknown as typeof addressSpace;
  return findNode.apply(this, args);
};

let pki: TestPki;
let served: ServedTestSystem;
let tight: ServedTestSystem;
let vic: Awaited<ReturnType<typeof connect>>;
let tightVic: Awaited<ReturnType<typeof connect>>;
let ns: number;

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({ tags, pki });
  vic = await connect(served.server, pki.trusted, user("vic"));
  tight = await servedSystem({
    tags,
    pki,
    server: { limits: { maxBrowsePathTargets: 1, maxBrowsePathNodesPerCall: 6 } },
  });
  tightVic = await connect(tight.server, pki.trusted, user("vic"));
  ns = served.server.namespaceIndex;
}, 60_000);

afterAll(async () => {
  await vic?.close();
  await tightVic?.close();
  await served?.dispose();
  await tight?.dispose();
  await pki?.dispose();
});

type Step = [reference: string, inverse: boolean, name: string, namespace?: number];

const pathOf = (start: string, steps: readonly Step[], includeSubtypes = false): BrowsePath =>
  new BrowsePath({
    startingNode: resolveNodeId(start),
    relativePath: new RelativePath({
      elements: steps.map(
        ([reference, isInverse, name, namespaceIndex]) =>
          new RelativePathElement({
            referenceTypeId: resolveNodeId(reference),
            isInverse,
            includeSubtypes,
            targetName: new QualifiedName({ name, namespaceIndex: namespaceIndex ?? 0 }),
          }),
      ),
    }),
  });

/** A result as status and its distinct targets, sorted (node-opcua repeated a target reached twice). */
const summary = (result: BrowsePathResult) => ({
  status: result.statusCode.name,
  targets: [...new Set((result.targets ?? []).map((t) => `${t.targetId.toString()}@${t.remainingPathIndex}`))].sort(),
});

/** Minimum (i=2346) is organized by AggregateFunctions twice (the server's and the history's): 2 routes per pair. */
const aggregatePairs = (pairs: number): Step[] =>
  Array.from({ length: pairs }, (): Step[] => [
    ["Organizes", true, "AggregateFunctions"],
    ["Organizes", false, "Minimum"],
  ]).flat();

describe("TranslateBrowsePathsToNodeIds over nodes reached by several routes", () => {
  test("32 elements alternating between an aggregate and its two parents answer its one node (node-opcua: 2^16 targets)", async () => {
    const results = await vic.session.translateBrowsePath([pathOf("i=2346", aggregatePairs(16))] as never[]);
    expect(results.map(summary)).toEqual([{ status: "Good", targets: ["ns=0;i=2346@4294967295"] }]);
    // Each distinct target once: node-opcua answered the one node 65,536 times.
    expect(results[0]!.targets).toHaveLength(1);
  });

  test("ordinary paths answer as node-opcua's own AddressSpace.browsePath does", async () => {
    const paths = [
      pathOf("i=85", [
        ["Organizes", false, "Server"],
        ["HasComponent", false, "ServerStatus"],
        ["HasComponent", false, "State"],
      ]),
      pathOf(
        "i=84",
        [
          ["HierarchicalReferences", false, "Objects"],
          ["HierarchicalReferences", false, "Server"],
        ],
        true,
      ),
      pathOf("i=2256", [["HasComponent", true, "Server"]]),
      pathOf("i=2346", aggregatePairs(2)),
      pathOf(
        `ns=${ns};s=line0.motor.speed`,
        [
          ["HierarchicalReferences", true, "motor", ns],
          ["HierarchicalReferences", true, "line0", ns],
        ],
        true,
      ),
      pathOf(`ns=${ns};s=line0.temp`, [["HasProperty", false, "EURange"]]),
      pathOf(`ns=${ns};s=line0.temp`, [["HasComponent", false, "EURange"]]),
      pathOf(`ns=${ns};s=line0.temp`, [["HasProperty", false, "NoSuch"]]),
      pathOf(`ns=${ns};s=line0.temp`, [["HasProperty", false, ""]]),
      pathOf(`ns=${ns};s=line0.temp`, [
        ["HasTypeDefinition", false, ""],
        ["HasSubtype", true, "DataItemType"],
      ]),
      pathOf(`ns=${ns};s=no.such`, [["HasProperty", false, "EURange"]]),
      pathOf("i=85", []),
    ];
    const results = await vic.session.translateBrowsePath(paths as never[]);
    expect(addressSpace).toBeDefined();
    const own = paths.map((path) => summary(addressSpace!.browsePath(path)));
    expect(results.map(summary)).toEqual(own);
    // The set covers every StatusCode node-opcua gives, and matches.
    expect(new Set(own.map((o) => o.status))).toEqual(
      new Set(["Good", "BadNoMatch", "BadBrowseNameInvalid", "BadNodeIdUnknown", "BadNothingToDo"]),
    );
  });

  test("a path reaching more than maxBrowsePathTargets distinct nodes answers BadQueryTooComplex; the call's other paths are followed", async () => {
    // The aggregate's inverse Organizes "AggregateFunctions" reaches 2 distinct nodes (the bound is 1).
    const results = await tightVic.session.translateBrowsePath([
      pathOf("i=2346", aggregatePairs(1)),
      pathOf("i=85", [["Organizes", false, "Server"]]),
    ] as never[]);
    expect(results.map(summary)).toEqual([
      { status: "BadQueryTooComplex", targets: [] },
      { status: "Good", targets: ["ns=0;i=2253@4294967295"] },
    ]);
  });

  test("a call expanding more than maxBrowsePathNodesPerCall nodes: the path passing it and later paths BadQueryTooComplex", async () => {
    // Each path expands 2 nodes (Objects, then Server): the bound of 6 answers three.
    const serverStatus = pathOf("i=85", [
      ["Organizes", false, "Server"],
      ["HasComponent", false, "ServerStatus"],
    ]);
    const results = await tightVic.session.translateBrowsePath(
      Array.from({ length: 5 }, () => serverStatus) as never[],
    );
    expect(results.map((result) => result.statusCode.name)).toEqual([
      "Good",
      "Good",
      "Good",
      "BadQueryTooComplex",
      "BadQueryTooComplex",
    ]);
  });

  test("a step that scans every reference of its node (inverse, untyped) is charged its references, not one (adversarial review 20t)", async () => {
    // Objects (i=85) has more than 5 references; an inverse step scans all of them.
    const inverse = pathOf("i=85", [["Organizes", true, "Root"]]);
    const untyped = new BrowsePath({
      startingNode: resolveNodeId("i=85"),
      relativePath: new RelativePath({
        elements: [
          new RelativePathElement({
            referenceTypeId: resolveNodeId("i=0"),
            isInverse: false,
            includeSubtypes: false,
            targetName: new QualifiedName({ name: "Server", namespaceIndex: 0 }),
          }),
        ],
      }),
    });
    // With the default budget both answer as before.
    expect((await vic.session.translateBrowsePath([inverse, untyped] as never[])).map(summary)).toEqual([
      { status: "Good", targets: ["ns=0;i=84@4294967295"] },
      { status: "Good", targets: ["ns=0;i=2253@4294967295"] },
    ]);
    // With a budget of 6, one scan of Objects' references is over it, each path alone.
    for (const path of [inverse, untyped])
      expect((await tightVic.session.translateBrowsePath([path] as never[])).map(summary)).toEqual([
        { status: "BadQueryTooComplex", targets: [] },
      ]);
    // Sibling: the forward hierarchical step from the same node is answered by the child index, charged 1.
    expect(
      (await tightVic.session.translateBrowsePath([pathOf("i=85", [["Organizes", false, "Server"]])] as never[])).map(
        summary,
      ),
    ).toEqual([{ status: "Good", targets: ["ns=0;i=2253@4294967295"] }]);
  });
});

describe("TranslateBrowsePathsToNodeIds charges the climb up a type's supertypes (adversarial review 20s)", () => {
  /** An alarm type deep in the type tree: NonExclusiveLevelAlarmType (i=10060). */
  const deepType = "i=10060";
  const untypedStep = (start: string, name: string) =>
    new BrowsePath({
      startingNode: resolveNodeId(start),
      relativePath: new RelativePath({
        elements: [
          new RelativePathElement({
            referenceTypeId: resolveNodeId("i=0"),
            isInverse: false,
            includeSubtypes: false,
            targetName: new QualifiedName({ name, namespaceIndex: 0 }),
          }),
        ],
      }),
    });
  type TypeNode = { allReferences(): unknown[]; nodeClass: number; subtypeOf?: unknown };
  const nodeOf = (nodeId: unknown) =>
    (addressSpace as unknown as { findNode(nodeId: unknown): TypeNode | null }).findNode(nodeId);
  /** The references of the type and of each of its supertypes, and how many levels that is. */
  const chainOf = (nodeId: string) => {
    let references = 0;
    let levels = 0;
    for (let node = nodeOf(resolveNodeId(nodeId)); node; node = node.subtypeOf ? nodeOf(node.subtypeOf) : null) {
      references += node.allReferences().length;
      levels += 1;
    }
    return { own: nodeOf(resolveNodeId(deepType))!.allReferences().length, references, levels };
  };

  test("an untyped step that finds nothing on a type is charged every reference of the type and of its supertypes, not the type's alone", async () => {
    await vic.session.translateBrowsePath([pathOf("i=85", [["Organizes", false, "Server"]])] as never[]);
    const chain = chainOf(deepType);
    expect(chain.references).toBeGreaterThan(chain.own * 2);
    // A budget that the type's own scan fits (1 + own: the charge before) but the climb does not.
    const budgeted = await servedSystem({
      tags,
      pki,
      server: { limits: { maxBrowsePathNodesPerCall: 1 + chain.own } },
    });
    const viewer = await connect(budgeted.server, pki.trusted, user("vic"));
    try {
      const [result] = await viewer.session.translateBrowsePath([untypedStep(deepType, "NoSuchName")] as never[]);
      expect(result!.statusCode).toBe(StatusCodes.BadQueryTooComplex);
      // With the default budget node-opcua's climb answers as before: nothing named so anywhere up the chain.
      const [unbounded] = await vic.session.translateBrowsePath([untypedStep(deepType, "NoSuchName")] as never[]);
      expect(unbounded!.statusCode).toBe(StatusCodes.BadNoMatch);
    } finally {
      await viewer.close();
      await budgeted.dispose();
    }
  });

  test("a forward hierarchical step on a type costs 1 per level climbed (the child index answers each): a component declared on a supertype is found within a budget of the chain's levels", async () => {
    const chain = chainOf(deepType);
    const budgeted = await servedSystem({
      tags,
      pki,
      server: { limits: { maxBrowsePathNodesPerCall: chain.levels } },
    });
    const viewer = await connect(budgeted.server, pki.trusted, user("vic"));
    try {
      // EnabledState is declared by ConditionType, several levels up.
      const enabled = pathOf(deepType, [["HasComponent", false, "EnabledState"]]);
      const [found] = await viewer.session.translateBrowsePath([enabled] as never[]);
      expect(summary(found!)).toEqual(summary((await vic.session.translateBrowsePath([enabled] as never[]))[0]!));
      expect(found!.statusCode).toBe(StatusCodes.Good);
    } finally {
      await viewer.close();
      await budgeted.dispose();
    }
  });
});
