import net from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { defineTags } from "@kiln/core";
import { DataType, StatusCodes, Variant } from "node-opcua-client";
import { nodesets } from "node-opcua-nodesets";
import { OPCUAServer } from "node-opcua-server";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OpcuaDriver } from "../src/index";
import { waitFor } from "./support/wait-for";

// adv13s M3: the DataType the driver reads once per node was never forgotten within a
// connection: after a server restart with node W changed Int16 -> Double (same namespaces,
// repaired by node-opcua) every write failed. Now a BadTypeMismatch reply makes the driver read
// the node again (and write once more), and a repaired session forgets every node read.
const NS = "urn:kiln:test:type-change";
const tags = defineTags({
  "w.int": { dataType: "int32", address: `nsu=${NS};s=W`, access: "readwrite" },
  "w.real": { dataType: "float64", address: `nsu=${NS};s=W`, access: "readwrite" },
});

let workDir: string;
let port: number;
let server: OPCUAServer | undefined;
let variable:
  ReturnType<ReturnType<NonNullable<OPCUAServer["engine"]["addressSpace"]>["getNamespace"]>["addVariable"]> | undefined;
let stored: Variant;

/** Starts a server whose node W is of `dataType`; a write of another type is refused BadTypeMismatch. */
async function startServer(dataType: DataType): Promise<void> {
  server = new OPCUAServer({ port, nodeset_filename: [nodesets.standard], allowAnonymous: true });
  await server.initialize();
  server.engine.addressSpace!.registerNamespace(NS);
  addW(dataType);
  await server.start();
}

function addW(dataType: DataType): void {
  const addressSpace = server!.engine.addressSpace!;
  const namespace = addressSpace.getNamespace(NS)!;
  stored = new Variant({ dataType, value: 0 });
  variable = namespace.addVariable({
    organizedBy: addressSpace.rootFolder.objects,
    browseName: "W",
    nodeId: "s=W",
    dataType: DataType[dataType],
    minimumSamplingInterval: 100,
    accessLevel: "CurrentRead | CurrentWrite",
    userAccessLevel: "CurrentRead | CurrentWrite",
    value: {
      get: () => stored,
      set: (variant: Variant) => {
        if (variant.dataType !== dataType) return StatusCodes.BadTypeMismatch;
        stored = variant;
        return StatusCodes.Good;
      },
    },
  });
}

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-type-change-"));
  port = await new Promise<number>((resolve) => {
    const probe = net.createServer().listen(0, "127.0.0.1", () => {
      const { port: free } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(free));
    });
  });
});

afterAll(async () => {
  await server?.shutdown(0);
  await rm(workDir, { recursive: true, force: true });
});

const newDriver = () =>
  new OpcuaDriver({
    endpointUrl: `opc.tcp://127.0.0.1:${port}`,
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    connectionStrategy: { maxRetry: 1_000, initialDelayMs: 100, maxDelayMs: 400, randomisationFactor: 0.1 },
    timeouts: { keepAliveMs: 1_000, requestMs: 3_000 },
  });

describe("a node whose type changed (adv13s M3)", () => {
  test("after a server restart with W Int16 -> Double: the repaired session reads W again", async () => {
    await startServer(DataType.Int16);
    const driver = newDriver();
    await driver.connect();
    try {
      await driver.write(tags.get("w.int"), 5);
      expect(stored.dataType).toBe(DataType.Int16);
      await server!.shutdown(0);
      await waitFor(() => driver.status === "reconnecting", { what: "reconnecting" });
      await startServer(DataType.Double);
      await waitFor(() => driver.status === "connected", { what: "connected again", timeoutMs: 30_000 });
      // 2.5 would be refused locally for the Int16 the driver had read.
      await driver.write(tags.get("w.real"), 2.5);
      expect(stored).toMatchObject({ dataType: DataType.Double, value: 2.5 });
    } finally {
      await driver.close();
      await server?.shutdown(0);
      server = undefined;
    }
  }, 60_000);

  test("sibling: W replaced by a Double node on a live server: the BadTypeMismatch reply makes the driver read it again", async () => {
    await startServer(DataType.Int16);
    const driver = newDriver();
    await driver.connect();
    try {
      await driver.write(tags.get("w.int"), 5);
      server!.engine.addressSpace!.deleteNode(variable!);
      addW(DataType.Double);
      await driver.write(tags.get("w.int"), 7);
      expect(stored).toMatchObject({ dataType: DataType.Double, value: 7 });
    } finally {
      await driver.close();
      await server?.shutdown(0);
      server = undefined;
    }
  }, 60_000);
});
