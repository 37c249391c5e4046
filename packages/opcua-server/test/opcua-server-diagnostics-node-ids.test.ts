import { defineTags, defaultRoleTable } from "@kiln/core";
import { BrowseDirection, type NodeId } from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { connect, makeTestPki, servedSystem, type ServedTestSystem, type TestPki, user } from "./support/opcua-fixture";

// Issue 20 (adv20e F5, fix20g): node-opcua numbered the nodes of each session's diagnostics in the
// server's namespace (ns=1) one after another, 109 a session: a viewer that opened two sessions
// read from their NodeIds how many sessions others opened in between. They are random now.

const tags = defineTags({ "chamber.pressure": { dataType: "float64" } });

type Client = Awaited<ReturnType<typeof connect>>;

let pki: TestPki;
let served: ServedTestSystem;

/** The numeric identifiers of the nodes under a session's own diagnostics object, as it browses them. */
async function ownNumericIds(client: Client): Promise<number[]> {
  const found: NodeId[] = [client.session.sessionId];
  const ids: number[] = [];
  for (let index = 0; index < found.length && found.length < 500; index += 1) {
    const result = await client.session.browse({
      nodeId: found[index]!,
      browseDirection: BrowseDirection.Forward,
      referenceTypeId: "HierarchicalReferences",
      includeSubtypes: true,
      resultMask: 0,
    });
    for (const reference of result.references ?? []) {
      const nodeId = reference.nodeId as unknown as NodeId;
      if (nodeId.namespace === 0 || found.some((known) => known.toString() === nodeId.toString())) continue;
      found.push(nodeId);
      if (typeof nodeId.value === "number") ids.push(nodeId.value);
    }
  }
  return ids;
}

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({
    tags,
    pki,
    system: { authorization: { roles: defaultRoleTable() } },
    server: { limits: { maxSessionsPerPrincipal: 10 } },
  });
});

afterAll(async () => {
  await served?.dispose();
  await pki?.dispose();
});

describe("OpcuaServer: the NodeIds of a session's diagnostics do not count sessions", () => {
  test("a session's own diagnostics nodes have random numeric NodeIds, not a run after the previous session's", async () => {
    const first = await connect(served.server, pki.trusted, user("vic"));
    const between = [
      await connect(served.server, pki.trusted, user("olga")),
      await connect(served.server, pki.trusted, user("olga")),
    ];
    const second = await connect(served.server, pki.trusted, user("vic"));
    try {
      const before = await ownNumericIds(first);
      const after = await ownNumericIds(second);
      expect(before.length).toBeGreaterThan(20);
      expect(after.length).toBe(before.length);
      for (const ids of [before, after]) {
        // counted ids span the node count; random UInt32 ones span (almost surely) far more
        expect(Math.max(...ids) - Math.min(...ids)).toBeGreaterThan(1_000_000);
        expect(new Set(ids).size).toBe(ids.length);
      }
      // nothing to subtract: the second session's ids do not start where the first's ended
      expect(Math.min(...after) - Math.max(...before)).not.toBe(2 * 109 + 1);
    } finally {
      for (const client of [first, ...between, second]) await client.close();
    }
  });
});
