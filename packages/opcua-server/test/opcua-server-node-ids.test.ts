import { type AlarmDefinitionInput, createControlSystem, defineTags, MemoryStore, SimulatedPlc } from "@kiln/core";
import fc from "fast-check";
import { AttributeIds, BrowseDirection, type ClientSession } from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OpcuaServer } from "../src/index";
import { connect, identify, makeTestPki, type TestPki, user } from "./support/opcua-fixture";

// Every NodeId the server gives (tags, folders, properties, condition children, methods, HA
// Configuration) is derived so that it cannot equal another's for any valid catalog: node-opcua
// named a child `<parent>-<BrowseName>`, so a tag `p-EURange` (or an alarm id `x-EnabledState`)
// took the NodeId of p's EURange (x's EnabledState) and the server did not start.

let pki: TestPki;

beforeAll(async () => {
  pki = await makeTestPki();
}, 60_000);

afterAll(async () => {
  await pki?.dispose();
});

type TagDefinitions = Parameters<typeof defineTags>[0];

/** Starts a server on a (not started) system with these tags and alarms; browses its namespace with a client; stops. */
async function servedNodeIds(
  definitions: TagDefinitions,
  alarms: readonly AlarmDefinitionInput[],
  check?: (session: ClientSession, server: OpcuaServer) => Promise<void>,
): Promise<string[]> {
  const tags = defineTags(definitions);
  const system = createControlSystem({
    machineId: "m-1",
    tags,
    driver: new SimulatedPlc({ tags }),
    store: new MemoryStore(),
    alarms: [...alarms],
  });
  const server = new OpcuaServer(system, { port: 0, host: "127.0.0.1", pki: { dir: pki.serverDir }, identify });
  await server.start();
  const client = await connect(server, pki.trusted, user("ada"));
  try {
    const ns = server.namespaceIndex;
    const seen = new Set<string>();
    const queue = [`ns=${ns};s=@`];
    while (queue.length > 0) {
      const nodeId = queue.shift()!;
      if (seen.has(nodeId)) continue;
      seen.add(nodeId);
      const browsed = await client.session.browse({
        nodeId,
        browseDirection: BrowseDirection.Forward,
        referenceTypeId: "ns=0;i=33", // HierarchicalReferences
        includeSubtypes: true,
        resultMask: 63,
      });
      for (const reference of browsed.references ?? []) {
        if (reference.nodeId.namespace === ns) queue.push(reference.nodeId.toString());
      }
    }
    await check?.(client.session, server);
    return [...seen];
  } finally {
    await client.close();
    await server.stop();
  }
}

async function browseNameOf(session: ClientSession, nodeId: string): Promise<string> {
  const read = await session.read({ nodeId, attributeId: AttributeIds.BrowseName });
  return (read.value.value as { name: string }).name;
}

describe("NodeIds the server derives never collide", () => {
  test("a tag named like another tag's property, and alarm ids named like a condition's child, start", async () => {
    const ids = await servedNodeIds(
      {
        p: { dataType: "float64", range: { min: 0, max: 1 }, unit: "mbar" },
        "p-EURange": { dataType: "float64" },
        "p-EngineeringUnits": { dataType: "float64" },
        "p-HAConfiguration": { dataType: "float64" },
        t: { dataType: "float64" },
        u: { dataType: "float64" },
      },
      [
        { tag: "t", kind: "HI", setpoint: 1, priority: 1, id: "x" },
        { tag: "u", kind: "HI", setpoint: 1, priority: 1, id: "x-EnabledState" },
        { tag: "u", kind: "LO", setpoint: 0, priority: 1, id: "x|EnabledState" },
      ],
      async (session, server) => {
        const ns = server.namespaceIndex;
        expect(await browseNameOf(session, server.nodeIdOf("p-EURange"))).toBe("p-EURange");
        expect(await browseNameOf(session, `ns=${ns};s=p|EURange`)).toBe("EURange");
        expect(await browseNameOf(session, `ns=${ns};s=@Alarm.x`)).toBe("x");
        expect(await browseNameOf(session, `ns=${ns};s=@Alarm.x-EnabledState`)).toBe("x-EnabledState");
        // An alarm id with a character a tag name may not have is percent-encoded.
        expect(await browseNameOf(session, `ns=${ns};s=@Alarm.x%7CEnabledState`)).toBe("x|EnabledState");
        expect(await browseNameOf(session, `ns=${ns};s=@Alarm.x|EnabledState`)).toBe("EnabledState");
      },
    );
    expect(new Set(ids).size).toBe(ids.length);
  }, 60_000);

  test("property: random valid tag names and alarm ids → the server starts, each tag and condition at its own NodeId", async () => {
    const segment = fc.constantFrom("p", "q", "EURange", "EngineeringUnits", "HAConfiguration", "EnabledState", "a_1");
    const suffix = fc.constantFrom(
      "",
      "-EURange",
      "-EngineeringUnits",
      "-HAConfiguration",
      "-ShelvingState",
      ":x",
      "/y",
    );
    const tagName = fc
      .tuple(fc.array(segment, { minLength: 1, maxLength: 3 }), suffix)
      .map(([segments, end]) => segments.join(".") + end);
    const alarmId = fc.oneof(
      fc.string({ minLength: 1, maxLength: 12 }),
      fc
        .tuple(segment, fc.constantFrom("-EnabledState", "|EnabledState", "-ShelvingState", "%7C", " ", ""))
        .map(([base, end]) => base + end),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(tagName, { minLength: 1, maxLength: 6 }),
        fc.uniqueArray(alarmId, { minLength: 0, maxLength: 4 }),
        async (names, alarmIds) => {
          const definitions = Object.fromEntries(
            names.map((name) => [name, { dataType: "float64", range: { min: 0, max: 10 }, unit: "bar" }]),
          ) as TagDefinitions;
          const alarms = alarmIds.map((id) => ({
            tag: names[0]!,
            kind: "HI" as const,
            setpoint: 5,
            priority: 2 as const,
            id,
          }));
          const ids = await servedNodeIds(definitions, alarms, async (session, server) => {
            for (const name of names) {
              expect(await browseNameOf(session, server.nodeIdOf(name))).toBe(name.split(".").at(-1));
            }
          });
          expect(new Set(ids).size).toBe(ids.length);
          // Every condition is reached under the Alarms folder: one node per alarm id.
          const conditions = ids.filter((id) => /;s=@Alarm\.[^|]*$/u.test(id));
          expect(conditions).toHaveLength(alarmIds.length);
        },
      ),
      { numRuns: 5 },
    );
  }, 240_000);
});
