import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { KilnError } from "@kiln/core";
import { DataType, Variant } from "node-opcua-client";
import { nodesets } from "node-opcua-nodesets";
import { OPCUAServer } from "node-opcua-server";
import { afterAll, beforeAll, expect, test } from "vitest";
import { OpcuaDriver } from "../src/index";
import { waitFor } from "./support/wait-for";

// Issue 13, adv13 after fix13ae (open in fix13af): a BrowseNext the server executed but answered
// after node-opcua's own transaction timeout (at least 5 s) carried the next continuation point;
// node-opcua dropped the late answer, the driver's release named only the point it had sent (the
// server had consumed it already), and the new point stayed on the server until the session ended:
// with one continuation point per session every later browse was refused BadNoContinuationPoints.
// Now a late Browse/BrowseNext answer to a timed-out request gives its points back (docs/adr/0022,
// amendment fix13ag). A raw node-opcua server: one continuation point, pages of 5 references.
const NS = "urn:kiln:test:browse-late";
const F = `nsu=${NS};s=F`;

let workDir: string;
let server: OPCUAServer;
let driver: OpcuaDriver;
/** BrowseNext answers (not releases) the server holds back this long before sending, ms. */
let holdBrowseNextMs = 0;
/** Browse answers the server holds back this long before sending, ms. */
let holdBrowseMs = 0;
let lateAnswersSent = 0;

type Handler = (this: OPCUAServer, message: { request: Record<string, unknown> }, channel: unknown) => void;

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

/**
 * Gives each point of `results` a new identity, as servers that issue a fresh continuation point for
 * every page do (node-opcua's own server keeps one per browse, so releasing the point sent freed it).
 */
let renamed = 0;
function freshPoints(results: { continuationPoint?: Buffer | null }[] | undefined): void {
  const sessions = (server.engine as unknown as { _sessions: Record<string, { continuationPointManager: unknown }> })
    ._sessions;
  for (const result of results ?? []) {
    const old = result.continuationPoint;
    if (!old?.length) continue;
    for (const session of Object.values(sessions)) {
      const map = (session.continuationPointManager as { _map: Map<string, unknown> })._map;
      const data = map.get(old.toString("utf-8"));
      if (data === undefined) continue;
      const fresh = Buffer.from(`page-${++renamed}`);
      map.delete(old.toString("utf-8"));
      map.set(fresh.toString("utf-8"), data);
      result.continuationPoint = fresh;
    }
  }
}

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-browse-late-"));
  server = new OPCUAServer({
    port: 0,
    nodeset_filename: [nodesets.standard],
    allowAnonymous: true,
    serverCapabilities: { maxBrowseContinuationPoints: 1 } as never,
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace!;
  const namespace = addressSpace.registerNamespace(NS);
  const folder = namespace.addFolder(addressSpace.rootFolder.objects, { browseName: "F", nodeId: "s=F" });
  for (let index = 0; index < 20; index++) {
    namespace.addVariable({
      componentOf: folder,
      browseName: `V${index}`,
      nodeId: `s=V${index}`,
      dataType: "Int32",
      value: { get: () => new Variant({ dataType: DataType.Int32, value: index }) },
    });
  }
  await server.start();
  const target = server as unknown as Record<string, Handler>;
  const prototype = OPCUAServer.prototype as unknown as Record<string, Handler>;
  const originalBrowse = prototype._on_BrowseRequest!;
  target._on_BrowseRequest = function (message, channel) {
    message.request.requestedMaxReferencesPerNode = 5;
    const holdMs = holdBrowseMs;
    if (holdMs === 0) return originalBrowse.call(this, message, channel);
    const sender = channel as { send_response(type: string, response: unknown, m: unknown): void };
    const wrapped = Object.create(sender) as typeof sender;
    wrapped.send_response = (type, response, m) => {
      setTimeout(() => {
        lateAnswersSent += 1;
        sender.send_response(type, response, m);
      }, holdMs);
    };
    originalBrowse.call(this, message, wrapped);
  };
  // The server executes the BrowseNext at once (consuming the point it was given, making the next)
  // and sends the answer late: the answer was lost in time, not the request.
  const originalBrowseNext = prototype._on_BrowseNextRequest!;
  target._on_BrowseNextRequest = function (message, channel) {
    const holdMs = message.request.releaseContinuationPoints === true ? 0 : holdBrowseNextMs;
    const sender = channel as {
      send_response(type: string, response: { results?: { continuationPoint?: Buffer | null }[] }, m: unknown): void;
    };
    const wrapped = Object.create(sender) as typeof sender;
    wrapped.send_response = (type, response, m) => {
      freshPoints(response.results);
      if (holdMs === 0) return sender.send_response(type, response, m);
      setTimeout(() => {
        lateAnswersSent += 1;
        sender.send_response(type, response, m);
      }, holdMs);
    };
    originalBrowseNext.call(this, message, wrapped);
  };
  const port = (server as unknown as { endpoints: { port: number }[] }).endpoints[0]!.port;
  driver = new OpcuaDriver({
    endpointUrl: `opc.tcp://127.0.0.1:${port}`,
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    // node-opcua's own minimum transaction timeout (5 s) bounds a browse.
    timeouts: { keepAliveMs: 1_000, requestMs: 5_000 },
  });
  await driver.connect();
});

afterAll(async () => {
  await driver?.close();
  await server?.shutdown(0);
  await rm(workDir, { recursive: true, force: true });
});

test("a BrowseNext answered after node-opcua's timeout gives back the point its late answer names; the next browse is complete", async () => {
  expect(await driver.browse(F)).toHaveLength(20);
  expect(serverContinuationPoints()).toBe(0);

  holdBrowseNextMs = 6_500;
  const error = await driver.browse(F).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(KilnError.is(error) && error.code).toBe("KILN_TIMEOUT");
  await waitFor(() => lateAnswersSent >= 1, { what: "the late BrowseNext answer sent", timeoutMs: 10_000 });
  holdBrowseNextMs = 0;
  // Before: 1 for good (the session's only point), and the browse below failed BadNoContinuationPoints.
  await waitFor(() => serverContinuationPoints() === 0, { what: "no continuation point left", timeoutMs: 5_000 });
  expect(driver.status).toBe("connected");
  expect(await driver.browse(F)).toHaveLength(20);
}, 60_000);

test("sibling: a first Browse answered after the timeout gives back the point it names", async () => {
  const before = lateAnswersSent;
  holdBrowseMs = 6_500;
  const error = await driver.browse(F).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(KilnError.is(error) && error.code).toBe("KILN_TIMEOUT");
  await waitFor(() => lateAnswersSent > before, { what: "the late Browse answer sent", timeoutMs: 10_000 });
  holdBrowseMs = 0;
  await waitFor(() => serverContinuationPoints() === 0, { what: "no continuation point left", timeoutMs: 5_000 });
  expect(await driver.browse(F)).toHaveLength(20);
}, 60_000);
