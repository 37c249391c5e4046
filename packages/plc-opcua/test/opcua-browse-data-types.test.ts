import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { defineTags } from "@kiln/core";
import { DataType, Variant } from "node-opcua-client";
import { nodesets } from "node-opcua-nodesets";
import { OPCUAServer } from "node-opcua-server";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OpcuaDriver } from "../src/index";

// adv13za LOW (issue 13): browse proposed no dataType for a variable whose DataType is a standard
// subtype (UtcTime, Duration, an enumeration) or a vendor's subtype of a built-in type, nor for
// DateTime, though the driver reads all of them; its nativeType was a bare "i=294". Now a subtype
// is mapped by its built-in base, DateTime as float64 ms, and nativeType names the standard type.
const NS = "urn:kiln:test:browse-data-types";
const WHEN = new Date(Date.UTC(2026, 11, 4, 12, 0, 0, 250));

let workDir: string;
let server: OPCUAServer;
let driver: OpcuaDriver;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-browse-types-"));
  server = new OPCUAServer({ port: 0, nodeset_filename: [nodesets.standard], allowAnonymous: true });
  await server.initialize();
  const addressSpace = server.engine.addressSpace!;
  const namespace = addressSpace.registerNamespace(NS);
  const celsius = namespace.createDataType({ browseName: "Celsius", subtypeOf: "Double", isAbstract: false });
  const folder = namespace.addFolder(addressSpace.rootFolder.objects, { browseName: "T", nodeId: "s=T" });
  const variable = (name: string, dataType: unknown, value: Variant): void => {
    namespace.addVariable({
      componentOf: folder,
      browseName: name,
      nodeId: `s=T.${name}`,
      dataType: dataType as never,
      value: { get: () => value },
    });
  };
  variable("when", "UtcTime", new Variant({ dataType: DataType.DateTime, value: WHEN }));
  variable("stamp", "DateTime", new Variant({ dataType: DataType.DateTime, value: WHEN }));
  variable("period", "Duration", new Variant({ dataType: DataType.Double, value: 1500 }));
  variable("state", "ServerState", new Variant({ dataType: DataType.Int32, value: 0 }));
  variable("chamber", celsius.nodeId, new Variant({ dataType: DataType.Double, value: 215.5 }));
  variable("range", "Range", new Variant({ dataType: DataType.ExtensionObject, value: null }));
  await server.start();
  const port = (server as unknown as { endpoints: { port: number }[] }).endpoints[0]!.port;
  driver = new OpcuaDriver({
    endpointUrl: `opc.tcp://127.0.0.1:${port}`,
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    timeouts: { keepAliveMs: 1_000, requestMs: 5_000 },
  });
  await driver.connect();
});

afterAll(async () => {
  await driver?.close();
  await server?.shutdown(0);
  await rm(workDir, { recursive: true, force: true });
});

describe("browse maps DataType subtypes by their built-in base (adv13za LOW)", () => {
  test("standard subtypes, an enumeration, a vendor subtype and DateTime propose a Kiln dataType; nativeType names the type", async () => {
    const browsed = await driver.browse(`nsu=${NS};s=T`);
    const byName = new Map(browsed.map((variable) => [variable.name, variable]));
    expect(byName.get("when")).toMatchObject({ dataType: "float64", nativeType: "UtcTime" });
    expect(byName.get("stamp")).toMatchObject({ dataType: "float64", nativeType: "DateTime" });
    expect(byName.get("period")).toMatchObject({ dataType: "float64", nativeType: "Duration" });
    expect(byName.get("state")).toMatchObject({ dataType: "int32", nativeType: "ServerState" });
    expect(byName.get("chamber")).toMatchObject({ dataType: "float64" });
    expect(byName.get("chamber")!.nativeType).toMatch(new RegExp(`^nsu=${NS};`));
    // Sibling: a structure has no Kiln data type; it is still listed, by its standard name.
    expect(byName.get("range")).toMatchObject({ nativeType: "Range" });
    expect(byName.get("range")!.dataType).toBeUndefined();
  });

  test("a tag made from each proposal reads good: the proposal is one the driver can carry", async () => {
    const browsed = await driver.browse(`nsu=${NS};s=T`);
    const tags = defineTags(
      Object.fromEntries(
        browsed
          .filter((variable) => variable.dataType !== undefined)
          .map((variable) => [`t.${variable.name}`, { dataType: variable.dataType!, address: variable.address }]),
      ),
    );
    const samples = await driver.read(tags.list());
    expect(samples.map((sample) => [sample.tag, sample.quality.severity, sample.value])).toEqual([
      ["t.when", "good", WHEN.getTime()],
      ["t.stamp", "good", WHEN.getTime()],
      ["t.period", "good", 1500],
      ["t.state", "good", 0],
      ["t.chamber", "good", 215.5],
    ]);
  });
});
