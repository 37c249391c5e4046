import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { KilnError } from "@kiln/core";
import { BrowseResult, DataType, StatusCodes, Variant, type StatusCode } from "node-opcua-client";
import { nodesets } from "node-opcua-nodesets";
import { OPCUAServer } from "node-opcua-server";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { OpcuaDriver } from "../src/index";
import { waitFor } from "./support/wait-for";

// Issue 13, adv13 after fix13ae (MEDIUM-2): a folder the server did not browse Good
// (BadNoContinuationPoints, BadUserAccessDenied) was dropped silently (21 variables became 1), a
// refused root was KILN_NOT_FOUND (not retryable) whatever the status, and node-opcua's browseAll
// never released continuation points. Now any node not browsed Good fails the browse, only
// BadNodeIdUnknown/Invalid of the root is KILN_NOT_FOUND, and a failed browse gives back every
// continuation point it holds (docs/adr/0022, amendment fix13af).
const NS = "urn:kiln:test:browse-refused";
const G = `nsu=${NS};s=G`;
const F2 = `nsu=${NS};s=F2`;

let workDir: string;
let server: OPCUAServer;
let driver: OpcuaDriver;
/** Nodes whose BrowseResult the server replaces by this status. */
const refusals = new Map<string, StatusCode>();

type Handler = (
  this: OPCUAServer,
  message: {
    request: { requestedMaxReferencesPerNode: number; nodesToBrowse?: { nodeId: { toString(): string } }[] };
  },
  channel: unknown,
) => void;

/** Continuation points the server holds, all sessions together. */
function serverContinuationPoints(): number {
  const sessions = (server.engine as unknown as { _sessions: Record<string, { continuationPointManager: unknown }> })
    ._sessions;
  return Object.values(sessions).reduce((sum, session) => {
    const manager = session.continuationPointManager as { _map?: Map<unknown, unknown> | Record<string, unknown> };
    const map = manager._map;
    return sum + (map instanceof Map ? map.size : Object.keys(map ?? {}).length);
  }, 0);
}

function forgetContinuationPoint(point: Buffer): void {
  const sessions = (
    server.engine as unknown as {
      _sessions: Record<string, { continuationPointManager: { clearContinuationPoint(point: Buffer): void } }>;
    }
  )._sessions;
  for (const session of Object.values(sessions)) session.continuationPointManager.clearContinuationPoint(point);
}

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-browse-refused-"));
  server = new OPCUAServer({
    port: 0,
    nodeset_filename: [nodesets.standard],
    allowAnonymous: true,
    serverCapabilities: { maxBrowseContinuationPoints: 1 } as never,
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace!;
  const namespace = addressSpace.registerNamespace(NS);
  const variable = (parent: object, name: string, value: number): void => {
    namespace.addVariable({
      componentOf: parent as never,
      browseName: name,
      nodeId: `s=${name}`,
      dataType: "Int32",
      value: { get: () => new Variant({ dataType: DataType.Int32, value }) },
    });
  };
  const g = namespace.addFolder(addressSpace.rootFolder.objects, { browseName: "G", nodeId: "s=G" });
  variable(g, "Top", 1);
  const f1 = namespace.addFolder(g, { browseName: "F1", nodeId: "s=F1" });
  const f2 = namespace.addFolder(g, { browseName: "F2", nodeId: "s=F2" });
  for (let index = 0; index < 20; index++) {
    variable(f1, `V${index}`, index);
    variable(f2, `W${index}`, index);
  }
  await server.start();
  // Small pages, so every folder of 20 variables needs continuation points; the result of a node
  // in `refusals` is replaced in the response, after the server made its continuation points.
  const target = server as unknown as Record<string, Handler>;
  const originalBrowse = (OPCUAServer.prototype as unknown as Record<string, Handler>)._on_BrowseRequest!;
  target._on_BrowseRequest = function (message, channel) {
    message.request.requestedMaxReferencesPerNode = 5;
    const nodes = message.request.nodesToBrowse ?? [];
    const sender = channel as { send_response(type: string, response: { results?: BrowseResult[] }, m: unknown): void };
    const send = sender.send_response.bind(sender);
    const wrapped = Object.create(sender) as typeof sender;
    wrapped.send_response = (type, response, m) => {
      response.results = response.results?.map((result, index) => {
        const status = refusals.get(nodes[index]!.nodeId.toString().replace(/^ns=\d+;/, ""));
        if (!status) return result;
        // A refusing server holds no continuation point for the node.
        if (result.continuationPoint?.length) forgetContinuationPoint(result.continuationPoint);
        return new BrowseResult({ statusCode: status });
      });
      send(type, response, m);
    };
    originalBrowse.call(this, message, wrapped);
  };
  const port = (server as unknown as { endpoints: { port: number }[] }).endpoints[0]!.port;
  driver = new OpcuaDriver({
    endpointUrl: `opc.tcp://127.0.0.1:${port}`,
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    timeouts: { keepAliveMs: 1_000, requestMs: 5_000 },
  });
  await driver.connect();
});

afterEach(() => {
  refusals.clear();
});

afterAll(async () => {
  await driver.close();
  await server.shutdown(0);
  await rm(workDir, { recursive: true, force: true });
});

async function browseError(root?: string): Promise<KilnError> {
  const error = await driver.browse(root).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!KilnError.is(error)) throw new Error(`expected a KilnError, got ${String(error)}`);
  return error;
}

describe("a node the server does not browse Good fails the browse (adv13 MEDIUM-2)", () => {
  test("all answered: every variable, though the server has one continuation point for two folders of 20", async () => {
    const variables = await driver.browse(G);
    expect(variables).toHaveLength(41);
    expect(serverContinuationPoints()).toBe(0);
  }, 30_000);

  test("a child folder refused BadNoContinuationPoints or BadUserAccessDenied fails the browse, naming it; none dropped silently", async () => {
    refusals.set("s=F2", StatusCodes.BadNoContinuationPoints);
    const shortage = await browseError(G);
    expect(shortage).toMatchObject({
      code: "KILN_DEVICE_ERROR",
      retryable: true,
      details: { statusName: "BadNoContinuationPoints" },
    });
    expect(String(shortage.details.node)).toContain("s=F2");

    refusals.set("s=F2", StatusCodes.BadUserAccessDenied);
    const denied = await browseError(G);
    expect(denied).toMatchObject({
      code: "KILN_DEVICE_ERROR",
      retryable: false,
      details: { statusName: "BadUserAccessDenied" },
    });
    expect(String(denied.details.node)).toContain("s=F2");
    // F1's continuation point, held when F2 was refused in the same Browse, is given back.
    await waitFor(() => serverContinuationPoints() === 0, { what: "no continuation point left", timeoutMs: 5_000 });
    refusals.clear();
    expect(await driver.browse(G)).toHaveLength(41);
  }, 30_000);

  test("sibling: a refused root is KILN_NOT_FOUND only for BadNodeIdUnknown/Invalid", async () => {
    refusals.set("s=F2", StatusCodes.BadNoContinuationPoints);
    expect(await browseError(F2)).toMatchObject({ code: "KILN_DEVICE_ERROR", retryable: true });
    refusals.set("s=F2", StatusCodes.BadUserAccessDenied);
    expect(await browseError(F2)).toMatchObject({
      code: "KILN_DEVICE_ERROR",
      retryable: false,
      details: { statusName: "BadUserAccessDenied" },
    });
    refusals.clear();
    expect(await browseError(`nsu=${NS};s=Nope`)).toMatchObject({
      code: "KILN_NOT_FOUND",
      details: { statusName: "BadNodeIdUnknown" },
    });
  }, 30_000);
});
