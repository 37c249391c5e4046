import { defineTags } from "@kiln/core";
import {
  AttributeIds,
  BrowseDirection,
  type ClientSession,
  DataType,
  NodeClass,
  type NodeId,
  resolveNodeId,
  StatusCodes,
} from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { connect, makeTestPki, servedSystem, type ServedTestSystem, type TestPki, user } from "./support/opcua-fixture";

const tags = defineTags({
  "chamber.pressure": {
    dataType: "float64",
    unit: "mbar",
    range: { min: 0, max: 10 },
    description: "Chamber pressure, capacitance gauge",
  },
  "chamber.temperature": { dataType: "float32", unit: "degC" },
  "chamber.heater.setpoint": { dataType: "float64", unit: "°C", range: { min: 0, max: 400 }, access: "readwrite" },
  "valve.ald1": { dataType: "bool", access: "readwrite", description: "ALD valve 1" },
  "cycle.count": { dataType: "uint64" },
  "recipe.name": { dataType: "string" },
  flow: { dataType: "int32", unit: "sccm" },
  "flow.offset": { dataType: "int16", access: "readwrite" },
});

let pki: TestPki;
let served: ServedTestSystem;
let client: Awaited<ReturnType<typeof connect>>;

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({ tags, pki });
  client = await connect(served.server, pki.trusted, user("vic"));
});

afterAll(async () => {
  await client?.close();
  await served?.dispose();
  await pki?.dispose();
});

interface Found {
  readonly path: string;
  readonly nodeId: NodeId;
  readonly nodeClass: NodeClass;
}

/** Every Object and Variable below `start` reached by hierarchical references in our namespace, with its dotted browse path. */
async function browseTree(session: ClientSession, start: NodeId, namespace: number, prefix = ""): Promise<Found[]> {
  const result = await session.browse({
    nodeId: start,
    browseDirection: BrowseDirection.Forward,
    referenceTypeId: "HierarchicalReferences",
    includeSubtypes: true,
    nodeClassMask: NodeClass.Object | NodeClass.Variable,
    resultMask: 63,
  });
  expect(result.statusCode).toBe(StatusCodes.Good);
  const found: Found[] = [];
  for (const reference of result.references ?? []) {
    // Properties (EURange, EngineeringUnits) are not part of the tree.
    if (reference.referenceTypeId.toString() === resolveNodeId("HasProperty").toString()) continue;
    if (reference.nodeId.namespace !== namespace) continue;
    const path = prefix === "" ? reference.browseName.name! : `${prefix}.${reference.browseName.name!}`;
    found.push({ path, nodeId: reference.nodeId, nodeClass: reference.nodeClass });
    found.push(...(await browseTree(session, reference.nodeId, namespace, path)));
  }
  return found;
}

async function property(session: ClientSession, nodeId: NodeId, name: string): Promise<unknown> {
  const result = await session.translateBrowsePath({
    startingNode: nodeId,
    relativePath: {
      elements: [
        {
          referenceTypeId: resolveNodeId("HasProperty"),
          isInverse: false,
          includeSubtypes: true,
          targetName: { namespaceIndex: 0, name },
        },
      ],
    },
  });
  if (result.statusCode !== StatusCodes.Good) return undefined;
  const value = await session.read({ nodeId: result.targets![0]!.targetId, attributeId: AttributeIds.Value });
  return value.value.value;
}

describe("OpcuaServer address space", () => {
  test("browsing the machine's Tags folder gives one variable per tag, in folders by the dotted name, NodeId s=<tag name>", async () => {
    const namespace = served.server.namespaceIndex;
    const namespaces = (await client.session.readNamespaceArray()) as string[];
    expect(namespaces[namespace]).toBe("urn:kiln:machine:reactor-1");
    const machineFolder = await client.session.read({
      nodeId: `ns=${namespace};s=@`,
      attributeId: AttributeIds.BrowseName,
    });
    expect(machineFolder.value.value.name).toBe("reactor-1");
    const root = resolveNodeId(`ns=${namespace};s=#`);
    const rootName = await client.session.read({ nodeId: root, attributeId: AttributeIds.BrowseName });
    expect(rootName.value.value.name).toBe("Tags");

    const found = await browseTree(client.session, root, namespace);
    const variables = found.filter((node) => node.nodeClass === NodeClass.Variable);
    expect(variables.map((node) => node.path).sort()).toEqual([...tags.names].sort());
    for (const variable of variables) {
      expect(variable.nodeId.toString()).toBe(`ns=${namespace};s=${variable.path}`);
      expect(served.server.nodeIdOf(variable.path)).toBe(variable.nodeId.toString());
    }
    const folders = found.filter((node) => node.nodeClass === NodeClass.Object).map((node) => node.path);
    expect(folders.sort()).toEqual(["chamber", "chamber.heater", "cycle", "recipe", "valve"]);
  });

  test("DataType, ValueRank, AccessLevel and Description follow each tag", async () => {
    const expectedType = {
      "chamber.pressure": DataType.Double,
      "chamber.temperature": DataType.Float,
      "chamber.heater.setpoint": DataType.Double,
      "valve.ald1": DataType.Boolean,
      "cycle.count": DataType.UInt64,
      "recipe.name": DataType.String,
      flow: DataType.Int32,
      "flow.offset": DataType.Int16,
    } as const;
    for (const tag of tags.list()) {
      const nodeId = served.server.nodeIdOf(tag.name);
      const [dataType, valueRank, accessLevel, userAccessLevel, description] = await client.session.read([
        { nodeId, attributeId: AttributeIds.DataType },
        { nodeId, attributeId: AttributeIds.ValueRank },
        { nodeId, attributeId: AttributeIds.AccessLevel },
        { nodeId, attributeId: AttributeIds.UserAccessLevel },
        { nodeId, attributeId: AttributeIds.Description },
      ]);
      expect(dataType!.value.value.toString(), tag.name).toBe(resolveNodeId(expectedType[tag.name]).toString());
      expect(valueRank!.value.value, tag.name).toBe(-1);
      const writable = tag.access === "readwrite" ? 0b11 : 0b01; // CurrentRead | CurrentWrite
      expect(accessLevel!.value.value & 0b11, tag.name).toBe(writable);
      // The viewer's own rights: CurrentRead, never CurrentWrite (see the writes tests for an operator's).
      expect(userAccessLevel!.value.value & 0b11, tag.name).toBe(0b01);
      expect(description!.value.value?.text ?? undefined, tag.name).toBe(tag.description);
    }
  });

  test("EURange comes from the range, EngineeringUnits from the unit (UNECE code when known, else the unit text)", async () => {
    const pressure = resolveNodeId(served.server.nodeIdOf("chamber.pressure"));
    const range = (await property(client.session, pressure, "EURange")) as { low: number; high: number };
    expect({ low: range.low, high: range.high }).toEqual({ low: 0, high: 10 });
    const mbar = (await property(client.session, pressure, "EngineeringUnits")) as {
      unitId: number;
      displayName: { text: string };
    };
    expect(mbar.displayName.text).toBe("mbar");
    expect(mbar.unitId).toBe(unitId("MBR"));

    const temperature = resolveNodeId(served.server.nodeIdOf("chamber.temperature"));
    expect(await property(client.session, temperature, "EURange")).toBeUndefined(); // no range
    const celsius = (await property(client.session, temperature, "EngineeringUnits")) as { unitId: number };
    expect(celsius.unitId).toBe(unitId("CEL"));

    const flow = resolveNodeId(served.server.nodeIdOf("flow"));
    const sccm = (await property(client.session, flow, "EngineeringUnits")) as {
      unitId: number;
      displayName: { text: string };
    };
    expect(sccm.unitId).toBe(-1);
    expect(sccm.displayName.text).toBe("sccm");

    const valve = resolveNodeId(served.server.nodeIdOf("valve.ald1"));
    expect(await property(client.session, valve, "EngineeringUnits")).toBeUndefined();
  });
});

/** UNECE Recommendation 20 common code as EUInformation.unitId (OPC UA Part 8, 5.6.3). */
function unitId(code: string): number {
  let id = 0;
  for (const character of code) id = (id << 8) | character.charCodeAt(0);
  return id;
}
