import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { type DriverStatusChange } from "@kiln/core/driver-kit";
import { DataType, MessageSecurityMode, OPCUAClient, SecurityPolicy, Variant } from "node-opcua-client";
import { nodesets } from "node-opcua-nodesets";
import { OPCUAServer } from "node-opcua-server";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OpcuaDriver } from "../src/index";
import { waitFor } from "./support/wait-for";

// adv13y MEDIUM-2 (issue 13, fault 2 "none storms"): when the server dropped the driver's session
// with the link up and refused the new one (BadTooManySessions: another client took the only
// slot), node-opcua retried the session repair every 2 s forever (21 CreateSession requests in
// 40 s): the driver stopped that loop only for a refused login. Now every failed repair leaves
// node-opcua's loop and reopens on the driver's capped backoff, naming the refusal.
const NS = "urn:kiln:test:sessions";

let workDir: string;
let server: OPCUAServer;
let url: string;
let createSessionRequests = 0;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-session-refused-"));
  server = new OPCUAServer({
    port: 0,
    hostname: "127.0.0.1",
    nodeset_filename: [nodesets.standard],
    securityModes: [MessageSecurityMode.None],
    securityPolicies: [SecurityPolicy.None],
    allowAnonymous: true,
    serverCapabilities: { maxSessions: 1 },
    serverCertificateManager: undefined,
  } as ConstructorParameters<typeof OPCUAServer>[0]);
  await server.initialize();
  const addressSpace = server.engine.addressSpace!;
  const namespace = addressSpace.registerNamespace(NS);
  namespace.addVariable({
    organizedBy: addressSpace.rootFolder.objects,
    browseName: "X",
    nodeId: "s=X",
    dataType: "Double",
    minimumSamplingInterval: 100,
    value: { get: () => new Variant({ dataType: DataType.Double, value: 1 }) },
  });
  // Every CreateSession that reaches the server, granted or refused.
  server.on(
    "newChannel",
    (channel: { on(event: "message", listener: (message: { request?: object }) => void): void }) =>
      channel.on("message", (message) => {
        if (message.request?.constructor.name === "CreateSessionRequest") createSessionRequests++;
      }),
  );
  await server.start();
  url = `opc.tcp://127.0.0.1:${server.endpoints[0]!.port}`;
});

afterAll(async () => {
  await server?.shutdown(0);
  await rm(workDir, { recursive: true, force: true });
});

describe("a session the server refuses after dropping the driver's one", () => {
  test("is asked for again on the driver's capped backoff, not every 2 s, naming BadTooManySessions; the driver recovers when the slot is free", async () => {
    const driver = new OpcuaDriver({
      endpointUrl: url,
      security: { mode: "None" },
      pki: { dir: path.join(workDir, "client") },
      connectionStrategy: { maxRetry: 1_000, initialDelayMs: 2_000, maxDelayMs: 8_000, randomisationFactor: 0 },
      timeouts: { keepAliveMs: 1_000, requestMs: 3_000 },
    });
    const changes: DriverStatusChange[] = [];
    driver.onStatusChange((change) => changes.push(change));
    await driver.connect();
    const hog = OPCUAClient.create({
      endpointMustExist: false,
      securityMode: MessageSecurityMode.None,
      securityPolicy: SecurityPolicy.None,
      connectionStrategy: { maxRetry: 0 },
    });
    try {
      await hog.connect(url);
      // The server drops the driver's session and the other client takes the only slot.
      const [session] = server.engine.getSessions();
      server.engine.closeSession(session!.authenticationToken, true, "Terminated");
      const taken = await hog.createSession();
      const before = createSessionRequests;
      await new Promise((resolve) => setTimeout(resolve, 12_000));
      // Backoff 2, 4, 8 s: at most 3 requests in 12 s (node-opcua's own loop sent 6).
      const asked = createSessionRequests - before;
      expect(asked).toBeGreaterThanOrEqual(1);
      expect(asked).toBeLessThanOrEqual(3);
      expect(driver.status).toBe("reconnecting");
      expect(changes.some((change) => /BadTooManySessions/.test(change.reason ?? ""))).toBe(true);
      // Sibling: once the slot is free the driver is connected again by its backoff, one session.
      await taken.close();
      await waitFor(() => driver.status === "connected", { what: "connected again", timeoutMs: 20_000 });
      expect(server.engine.getSessions()).toHaveLength(1);
    } finally {
      await hog.disconnect();
      await driver.close();
    }
  }, 60_000);
});
