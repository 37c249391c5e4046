import { defineTags } from "@kiln/core";
import { MessageSecurityMode, OPCUAClient, SecurityPolicy } from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  connect,
  makeTestPki,
  servedSystem,
  type ServedTestSystem,
  type TestPki,
  user,
  waitFor,
} from "./support/opcua-fixture";

const tags = defineTags({ "chamber.pressure": { dataType: "float64", unit: "mbar" } });

let pki: TestPki;
let served: ServedTestSystem;

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({
    tags,
    pki,
    server: { limits: { maxSessions: 10, maxUnactivatedSessions: 3, unactivatedSessionTimeoutMs: 1_000 } },
  });
});

afterAll(async () => {
  await served?.dispose();
  await pki?.dispose();
});

/** A client with a trusted certificate that creates a session and never activates it (no user). */
async function unactivated(): Promise<{ client: OPCUAClient; closed: () => boolean; created: boolean }> {
  const client = OPCUAClient.create({
    applicationName: "scada",
    applicationUri: "urn:kiln-test:scada",
    clientCertificateManager: pki.trusted.manager,
    securityMode: MessageSecurityMode.SignAndEncrypt,
    securityPolicy: SecurityPolicy.Basic256Sha256,
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 0 },
    requestedSessionTimeout: 3_000_000,
    keepSessionAlive: false,
  });
  let closed = false;
  client.on("close", () => (closed = true));
  client.on("connection_lost", () => (closed = true));
  await client.connect(served.server.endpointUrl);
  const created = await new Promise<boolean>((resolve) =>
    (client as unknown as { _createSession(callback: (error: Error | null) => void): void })._createSession((error) =>
      resolve(!error),
    ),
  );
  return { client, closed: () => closed, created };
}

describe("OpcuaServer sessions that are never activated", () => {
  test("a client creating more sessions (and connections) than maxSessions without activating any does not keep an authenticated user out", async () => {
    const held = [];
    try {
      for (let index = 0; index < 12; index++) held.push(await unactivated());
      expect(held.every((attacker) => attacker.created)).toBe(true);
      const olga = await connect(served.server, pki.trusted, user("olga"));
      await olga.close();
    } finally {
      for (const attacker of held) await attacker.client.disconnect().catch(() => undefined);
    }
  });

  test("an unactivated session is closed after unactivatedSessionTimeoutMs, with its secure channel", async () => {
    const attacker = await unactivated();
    try {
      expect(attacker.created).toBe(true);
      await waitFor(attacker.closed, "the server closing the idle channel", 5_000);
      // An activated session on another channel is left alone.
      const vic = await connect(served.server, pki.trusted, user("vic"));
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      const [read] = await vic.session.read([{ nodeId: served.server.nodeIdOf("chamber.pressure"), attributeId: 13 }]);
      expect(read!.statusCode.isGood()).toBe(true);
      await vic.close();
    } finally {
      await attacker.client.disconnect().catch(() => undefined);
    }
  });
});
