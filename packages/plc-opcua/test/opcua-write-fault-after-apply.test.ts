import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { defineTags, KilnError } from "@kiln/core";
import { DataType, StatusCodes, Variant, WriteResponse } from "node-opcua-client";
import { nodesets } from "node-opcua-nodesets";
import { OPCUAServer } from "node-opcua-server";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { OpcuaDriver } from "../src/index";

// Issue 13, adv13 (fresh review) MEDIUM-1: a write the server applied and then faulted (node-opcua's
// server answers the whole WriteRequest BadInternalError when the variable's setter fails after it
// stored the value) was reported `details.sent: false`, "(not sent)": every service fault but a
// timeout counted as "not executed". Now only a fault that refuses the request before execution
// says not applied (docs/adr/0022, amendment fix13d).
const NS = "urn:kiln:test:fault-after-apply";
const tags = defineTags({ w: { dataType: "int32", address: `nsu=${NS};s=W`, access: "readwrite" } });

let workDir: string;
let server: OPCUAServer;
let port: number;
/** Values the server's setter stored (applied), in order. */
const applied: number[] = [];
/** What the setter does after storing: answer Good, or fail. */
let afterStore: "good" | "throw" = "good";

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-fault-after-apply-"));
  server = new OPCUAServer({ port: 0, nodeset_filename: [nodesets.standard], allowAnonymous: true });
  await server.initialize();
  const addressSpace = server.engine.addressSpace!;
  const namespace = addressSpace.registerNamespace(NS);
  let stored = 0;
  namespace.addVariable({
    organizedBy: addressSpace.rootFolder.objects,
    browseName: "W",
    nodeId: "s=W",
    dataType: "Int32",
    accessLevel: "CurrentRead | CurrentWrite",
    userAccessLevel: "CurrentRead | CurrentWrite",
    value: {
      get: () => new Variant({ dataType: DataType.Int32, value: stored }),
      set: (variant: Variant, callback: (error: Error | null, statusCode?: typeof StatusCodes.Good) => void) => {
        stored = variant.value as number;
        applied.push(stored);
        if (afterStore === "throw") callback(new Error("the device faulted after storing the value"));
        else callback(null, StatusCodes.Good);
      },
    },
  });
  await server.start();
  port = (server as unknown as { endpoints: { port: number }[] }).endpoints[0]!.port;
});

afterAll(async () => {
  await server.shutdown(0);
  await rm(workDir, { recursive: true, force: true });
});

afterEach(() => {
  afterStore = "good";
  applied.length = 0;
  delete (server as unknown as Record<string, unknown>)._on_WriteRequest;
});

async function connected(): Promise<OpcuaDriver> {
  const driver = new OpcuaDriver({
    endpointUrl: `opc.tcp://127.0.0.1:${port}`,
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    timeouts: { keepAliveMs: 1_000, requestMs: 5_000 },
  });
  await driver.connect();
  await driver.write(tags.get("w"), 1); // the node's DataType is read and cached
  applied.length = 0;
  return driver;
}

/** Makes the server answer every WriteRequest with a service fault `status` (nothing applied). */
function refuseWholeWrite(status: unknown): void {
  const refusing = server as unknown as {
    _apply_on_SessionObject: (
      response: typeof WriteResponse,
      message: unknown,
      channel: unknown,
      action: (session: unknown, sendResponse: unknown, sendError: (code: unknown) => void) => void,
    ) => void;
    _on_WriteRequest?: (message: unknown, channel: unknown) => void;
  };
  refusing._on_WriteRequest = (message, channel) =>
    refusing._apply_on_SessionObject(WriteResponse, message, channel, (_session, _send, sendError) =>
      sendError(status),
    );
}

async function writeError(driver: OpcuaDriver, value: number): Promise<KilnError> {
  const error = await driver.write(tags.get("w"), value).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!KilnError.is(error)) throw new Error(`expected a KilnError, got ${String(error)}`);
  return error;
}

describe("a write the server faulted (adv13 fresh review MEDIUM-1)", () => {
  test("applied, then answered BadInternalError: sent true, not retryable, may have been applied", async () => {
    const driver = await connected();
    try {
      afterStore = "throw";
      const error = await writeError(driver, 2);
      expect(applied).toEqual([2]);
      expect(error).toMatchObject({ retryable: false, details: { sent: true, statusName: "BadInternalError" } });
      expect(error.message).toMatch(/may have applied it/);
      expect(error.message).not.toMatch(/not sent|not applied/);
    } finally {
      await driver.close();
    }
  }, 30_000);

  test("sibling: refused before execution (BadTooManyOperations): sent false, not applied", async () => {
    const driver = await connected();
    try {
      // The server refuses the whole WriteRequest as node-opcua does over its maxNodesPerWrite.
      refuseWholeWrite(StatusCodes.BadTooManyOperations);
      const error = await writeError(driver, 3);
      expect(applied).toEqual([]);
      expect(error).toMatchObject({ details: { sent: false, statusName: "BadTooManyOperations" } });
      expect(error.message).toMatch(/\(not applied\)/);
    } finally {
      await driver.close();
    }
  }, 30_000);

  test("sibling: the whole WriteRequest refused BadUserAccessDenied: not applied, not retryable, the session kept", async () => {
    const driver = await connected();
    try {
      refuseWholeWrite(StatusCodes.BadUserAccessDenied);
      const error = await writeError(driver, 4);
      expect(applied).toEqual([]);
      expect(error).toMatchObject({ retryable: false, details: { sent: false, statusName: "BadUserAccessDenied" } });
      expect(error.message).toMatch(/\(not applied\)/);
      // The session is not lost over it: the next write (the server answering again) is applied.
      delete (server as unknown as Record<string, unknown>)._on_WriteRequest;
      await driver.write(tags.get("w"), 5);
      expect(applied).toEqual([5]);
    } finally {
      await driver.close();
    }
  }, 30_000);
});
