import { defineTags } from "@kiln/core";
import {
  AttributeIds,
  type ClientSession,
  MessageSecurityMode,
  OPCUAClient,
  SecurityPolicy,
  StatusCodes,
} from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { makeTestPki, servedSystem, type ServedTestSystem, type TestPki, user } from "./support/opcua-fixture";

// Issue 13: an IPv6 `host` was written into the server's URLs without brackets
// (opc.tcp://::1:4840), which no client can parse. node-opcua's own client cannot dial an IPv6
// literal URL (plc-opcua works around it), so the server listens on "::" (dual stack) and the
// client reaches it at 127.0.0.1 while the URLs the server gives out are checked.
const tags = defineTags({ "chamber.pressure": { dataType: "float64" } });

let pki: TestPki;
let served: ServedTestSystem;

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({ tags, pki, server: { host: "::" } });
});

afterAll(async () => {
  await served?.dispose();
  await pki?.dispose();
});

/** A session opened at 127.0.0.1 on the server's port (the server listens on "::"). */
async function session<T>(use: (client: OPCUAClient, session: ClientSession) => Promise<T>): Promise<T> {
  const client = OPCUAClient.create({
    clientCertificateManager: pki.trusted.manager,
    applicationUri: "urn:kiln-test:ipv6",
    securityMode: MessageSecurityMode.SignAndEncrypt,
    securityPolicy: SecurityPolicy.Basic256Sha256,
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 0, initialDelay: 50, maxDelay: 100 },
  });
  await client.connect(`opc.tcp://127.0.0.1:${served.server.port}`);
  try {
    const opened = await client.createSession(user("vic"));
    try {
      return await use(client, opened);
    } finally {
      await opened.close().catch(() => undefined);
    }
  } finally {
    await client.disconnect();
  }
}

describe("OpcuaServer on an IPv6 address", () => {
  test("endpointUrl writes the IPv6 address in brackets", () => {
    expect(served.server.endpointUrl).toBe(`opc.tcp://[::]:${served.server.port}`);
  });

  // Sibling: the endpoints the server advertises (GetEndpoints), which clients pick their URL from.
  test("the endpoints advertised by GetEndpoints name the host in brackets too, and the server serves", async () => {
    await session(async (client, opened) => {
      const endpoints = await client.getEndpoints();
      expect(endpoints.length).toBeGreaterThan(0);
      for (const endpoint of endpoints) expect(endpoint.endpointUrl).toBe(`opc.tcp://[::]:${served.server.port}`);
      const value = await opened.read({
        nodeId: served.server.nodeIdOf("chamber.pressure"),
        attributeId: AttributeIds.Value,
      });
      expect(value.statusCode.value).toBe(StatusCodes.Good.value);
    });
  });
});
