import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { defineTags, KilnError } from "@kiln/core";
import { DataType, StatusCodes, Variant } from "node-opcua-client";
import { nodesets } from "node-opcua-nodesets";
import { OPCUAServer } from "node-opcua-server";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OpcuaDriver } from "../src/index";

// Issue 13, adv13 (fresh review): `timeouts.requestMs` below 5 s was not honoured: node-opcua raises
// every request timeout to at least 5 s (ClientSecureChannelLayer.minTransactionTimeout), so a read
// with requestMs 1,000 of a node the server takes 3 s to answer returned after 3 s, good. Now the
// driver ends the application's requests at requestMs itself (docs/adr/0022, amendment fix13ae).
const NS = "urn:kiln:test:request-bound";
const tags = defineTags({
  slow: { dataType: "int32", address: `nsu=${NS};s=Slow`, access: "readwrite" },
  quick: { dataType: "int32", address: `nsu=${NS};s=Quick` },
});
/** How long the server holds a request naming the Slow node, ms. */
const SLOW_MS = 3_000;
const REQUEST_MS = 1_000;

let workDir: string;
let server: OPCUAServer;
let port: number;
/** Values the server's setter applied to Slow, in order. */
const applied: number[] = [];

type Handler = (this: OPCUAServer, message: { request: object }, channel: unknown) => void;
type Service = "_on_ReadRequest" | "_on_WriteRequest" | "_on_CreateSubscriptionRequest";

/** Holds, for `delayMs`, every request of `kind` whose text names the Slow node (any, with `all`); others pass at once. */
function slowFor(kind: Service, delayMs = SLOW_MS, all = false): void {
  const target = server as unknown as Record<string, Handler>;
  const original = (OPCUAServer.prototype as unknown as Record<string, Handler>)[kind]!;
  target[kind] = function (message, channel) {
    if (all || JSON.stringify(message.request).includes("s=Slow"))
      setTimeout(() => original.call(this, message, channel), delayMs);
    else original.call(this, message, channel);
  };
}

/** Subscriptions the server holds now, all sessions together. */
function serverSubscriptions(): number {
  const sessions = (server.engine as unknown as { _sessions: Record<string, { currentSubscriptionCount: number }> })
    ._sessions;
  return Object.values(sessions).reduce((sum, session) => sum + session.currentSubscriptionCount, 0);
}

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-request-bound-"));
  server = new OPCUAServer({ port: 0, nodeset_filename: [nodesets.standard], allowAnonymous: true });
  await server.initialize();
  const addressSpace = server.engine.addressSpace!;
  const namespace = addressSpace.registerNamespace(NS);
  let stored = 7;
  namespace.addVariable({
    organizedBy: addressSpace.rootFolder.objects,
    browseName: "Slow",
    nodeId: "s=Slow",
    dataType: "Int32",
    accessLevel: "CurrentRead | CurrentWrite",
    userAccessLevel: "CurrentRead | CurrentWrite",
    value: {
      get: () => new Variant({ dataType: DataType.Int32, value: stored }),
      set: (variant: Variant) => {
        stored = variant.value as number;
        applied.push(stored);
        return StatusCodes.Good;
      },
    },
  });
  namespace.addVariable({
    organizedBy: addressSpace.rootFolder.objects,
    browseName: "Quick",
    nodeId: "s=Quick",
    dataType: "Int32",
    value: { get: () => new Variant({ dataType: DataType.Int32, value: 42 }) },
  });
  await server.start();
  port = (server as unknown as { endpoints: { port: number }[] }).endpoints[0]!.port;
});

afterAll(async () => {
  await server.shutdown(0);
  await rm(workDir, { recursive: true, force: true });
});

async function connected(requestMs: number): Promise<OpcuaDriver> {
  const driver = new OpcuaDriver({
    endpointUrl: `opc.tcp://127.0.0.1:${port}`,
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    timeouts: { keepAliveMs: 1_000, requestMs },
  });
  await driver.connect();
  return driver;
}

async function failure(call: Promise<unknown>): Promise<KilnError> {
  const error = await call.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!KilnError.is(error)) throw new Error(`expected a KilnError, got ${String(error)}`);
  return error;
}

describe("timeouts.requestMs below node-opcua's 5 s minimum (adv13)", () => {
  test("a read the server answers after 3 s fails KILN_TIMEOUT at requestMs (1 s); the driver reads on", async () => {
    const driver = await connected(REQUEST_MS);
    try {
      // The node's DataType is learnt before the server turns slow.
      await driver.write(tags.get("slow"), 1);
      slowFor("_on_ReadRequest");
      const began = Date.now();
      const error = await failure(driver.read([tags.get("slow")]));
      const tookMs = Date.now() - began;
      expect(error.code).toBe("KILN_TIMEOUT");
      expect(error.retryable).toBe(true);
      expect(tookMs).toBeGreaterThanOrEqual(REQUEST_MS - 50);
      expect(tookMs).toBeLessThan(SLOW_MS - 500);
      // The late answer is ignored; the same session answers the next read.
      const [quick] = await driver.read([tags.get("quick")]);
      expect(quick).toMatchObject({ value: 42, quality: { severity: "good" } });
      await new Promise((resolve) => setTimeout(resolve, SLOW_MS));
      expect(driver.status).toBe("connected");
    } finally {
      delete (server as unknown as Record<string, unknown>)._on_ReadRequest;
      await driver.close();
    }
  }, 30_000);

  test("sibling: a write the server applies after 3 s fails KILN_TIMEOUT at 1 s, saying it may have been applied", async () => {
    const driver = await connected(REQUEST_MS);
    try {
      await driver.write(tags.get("slow"), 1);
      applied.length = 0;
      slowFor("_on_WriteRequest");
      const began = Date.now();
      const error = await failure(driver.write(tags.get("slow"), 5));
      expect(Date.now() - began).toBeLessThan(SLOW_MS - 500);
      expect(error.code).toBe("KILN_TIMEOUT");
      // It went on the wire: never reported as not sent.
      expect(error.details).toMatchObject({ sent: true });
      await new Promise((resolve) => setTimeout(resolve, SLOW_MS));
      expect(applied).toEqual([5]);
    } finally {
      delete (server as unknown as Record<string, unknown>)._on_WriteRequest;
      await driver.close();
    }
  }, 30_000);

  test("sibling: a CreateSubscription answered after requestMs is taken, not dropped: one subscription on the server, none orphaned (adv13 after fix13ae, MEDIUM-1)", async () => {
    const driver = await connected(REQUEST_MS);
    try {
      slowFor("_on_CreateSubscriptionRequest", 1_500, true);
      const values: unknown[] = [];
      await driver.subscribe([tags.get("quick")], { samplingIntervalMs: 500 }, (samples) => {
        for (const sample of samples) values.push(sample.value);
      });
      delete (server as unknown as Record<string, unknown>)._on_CreateSubscriptionRequest;
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(serverSubscriptions()).toBe(1);
      expect(values).toContain(42);
    } finally {
      delete (server as unknown as Record<string, unknown>)._on_CreateSubscriptionRequest;
      await driver.close();
    }
  }, 30_000);

  test("with requestMs at 5 s or more node-opcua's own timeout applies: a 3 s answer is taken", async () => {
    const driver = await connected(5_000);
    try {
      await driver.write(tags.get("slow"), 9);
      slowFor("_on_ReadRequest");
      const [slow] = await driver.read([tags.get("slow")]);
      expect(slow).toMatchObject({ value: 9, quality: { severity: "good" } });
    } finally {
      delete (server as unknown as Record<string, unknown>)._on_ReadRequest;
      await driver.close();
    }
  }, 30_000);
});
