import { defaultRoleTable, defineTags } from "@kiln/core";
import { AttributeIds, BrowseDirection, type DataValue, type NodeId, TimestampsToReturn } from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { connect, makeTestPki, servedSystem, type ServedTestSystem, type TestPki, user } from "./support/opcua-fixture";

// Issue 20, adversarial pass adv20e F1 (HIGH): a monitored item on a diagnostics node node-opcua
// disposes later (a subscription's own diagnostics element once the subscription is deleted; another
// session's once it closes) made Kiln's per-value checks read the disposed node at the next publish:
// node-opcua's accessors throw on it, from a timer, an uncaught TypeError that ended the process.
// Now a disposed node exists for nobody: its item delivers BadNodeIdUnknown, nothing is thrown.

const tags = defineTags({ "chamber.pressure": { dataType: "float64" } });
let pki: TestPki;
let served: ServedTestSystem;
const uncaught: unknown[] = [];
const onUncaught = (error: unknown): void => void uncaught.push(error);

beforeAll(async () => {
  process.prependListener("uncaughtException", onUncaught);
  pki = await makeTestPki();
  served = await servedSystem({ tags, pki, system: { authorization: { roles: defaultRoleTable() } } });
}, 60_000);

afterAll(async () => {
  await served?.dispose();
  await pki?.dispose();
  process.removeListener("uncaughtException", onUncaught);
});

describe("a monitored item on a diagnostics node that is disposed", () => {
  for (const [attribute, attributeId] of [
    ["DisplayName (sibling: a non-Value attribute)", AttributeIds.DisplayName],
    ["Value", AttributeIds.Value],
  ] as const) {
    test(`a viewer's item on its own subscription's diagnostics ${attribute}: the subscription deleted, the item answers BadNodeIdUnknown and the server runs on`, async () => {
      const viewer = await connect(served.server, pki.trusted, user("vic"));
      const before = uncaught.length;
      try {
        const parameters = {
          requestedPublishingInterval: 50,
          requestedLifetimeCount: 600,
          requestedMaxKeepAliveCount: 10,
          publishingEnabled: true,
        };
        const target = await viewer.session.createSubscription2(parameters);
        const watcher = await viewer.session.createSubscription2(parameters);
        const [path] = await viewer.session.translateBrowsePath([
          {
            startingNode: viewer.session.sessionId,
            relativePath: {
              elements: [
                {
                  referenceTypeId: "ns=0;i=47",
                  isInverse: false,
                  includeSubtypes: true,
                  targetName: { namespaceIndex: 0, name: "SubscriptionDiagnosticsArray" },
                },
              ],
            },
          } as never,
        ]);
        const array = path!.targets![0]!.targetId as unknown as NodeId;
        // The element appears once node-opcua has added the subscription's diagnostics.
        let element: NodeId | undefined;
        for (let attempt = 0; attempt < 50 && element === undefined; attempt++) {
          const browsed = await viewer.session.browse({
            nodeId: array,
            browseDirection: BrowseDirection.Forward,
            resultMask: 63,
          });
          element = browsed.references?.find((reference) => reference.browseName.name === String(target.subscriptionId))
            ?.nodeId as unknown as NodeId | undefined;
          if (element === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
        }
        expect(element).toBeDefined();
        let nodeId = element!;
        if (attributeId === AttributeIds.Value) {
          const children = await viewer.session.browse({
            nodeId: element!,
            browseDirection: BrowseDirection.Forward,
            resultMask: 63,
          });
          nodeId = children.references!.find((reference) => reference.browseName.name === "PublishRequestCount")!
            .nodeId as unknown as NodeId;
        }
        const item = await watcher.monitor(
          { nodeId, attributeId },
          { samplingInterval: 50, queueSize: 1, discardOldest: true },
          TimestampsToReturn.Both,
        );
        const seen: DataValue[] = [];
        item.on("changed", (value: DataValue) => void seen.push(value));
        await expect.poll(() => seen.some((value) => value.statusCode.isGood())).toBe(true);
        await target.terminate();
        await expect.poll(() => seen.at(-1)?.statusCode.name, { timeout: 5_000 }).toBe("BadNodeIdUnknown");
        // Publish cycles go on after it: nothing escapes, the session still reads.
        await new Promise((resolve) => setTimeout(resolve, 500));
        expect(uncaught.slice(before)).toEqual([]);
        const status = await viewer.session.read({ nodeId: "ns=0;i=2256", attributeId: AttributeIds.Value });
        expect(status.statusCode.isGood()).toBe(true);
        await watcher.terminate();
      } finally {
        await viewer.close();
      }
    }, 30_000);
  }
});
