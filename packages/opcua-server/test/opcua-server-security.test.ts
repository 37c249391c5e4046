import { existsSync, readdirSync, readFileSync } from "node:fs";
import { copyFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { defineTags, type Principal } from "@kiln/core";
import {
  AttributeIds,
  DataType,
  MessageSecurityMode,
  OPCUAClient,
  SecurityPolicy,
  StatusCodes,
  UserTokenType,
} from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { OpcuaSessionInfo, OpcuaUserIdentity } from "../src/index";
import type { ClientPki } from "./support/opcua-fixture";
import {
  connect,
  identify,
  makeTestPki,
  servedSystem,
  type ServedTestSystem,
  type TestPki,
  user,
} from "./support/opcua-fixture";

const tags = defineTags({
  "chamber.pressure": { dataType: "float64" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 } },
});

let pki: TestPki;
let served: ServedTestSystem;
const identified: { identity: OpcuaUserIdentity; session: OpcuaSessionInfo }[] = [];

/** The DER bytes of a PEM certificate file. */
function derOf(file: string): Buffer {
  const pem = readFileSync(file, "utf8");
  return Buffer.from(pem.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, ""), "base64");
}

/** An X.509 user identity made of a client PKI's certificate and private key. */
function x509(client: ClientPki) {
  return {
    type: UserTokenType.Certificate as const,
    certificateData: derOf(client.certificateFile),
    privateKey: readFileSync(path.join(client.dir, "own", "private", "private_key.pem"), "utf8"),
  };
}

beforeAll(async () => {
  pki = await makeTestPki();
  // The scada certificate is also a trusted X.509 *user* certificate (user PKI: pki.dir/users).
  await mkdir(path.join(pki.serverDir, "users", "trusted", "certs"), { recursive: true });
  await copyFile(pki.trusted.certificateFile, path.join(pki.serverDir, "users", "trusted", "certs", "scada.pem"));
  const scadaUser = derOf(pki.trusted.certificateFile);
  served = await servedSystem({
    tags,
    pki,
    system: { authorization: { operatorWritableTags: ["heater.*"] } },
    server: {
      // An async mapper, as a directory lookup would be.
      identify: async (identity, session) => {
        identified.push({ identity, session });
        await new Promise((resolve) => setTimeout(resolve, 5));
        if (identity.type === "certificate") {
          return identity.certificate.equals(scadaUser) ? { id: "cert:scada", roles: ["operator"] } : undefined;
        }
        return identify(identity);
      },
    },
  });
});

afterAll(async () => {
  await served?.dispose();
  await pki?.dispose();
});

describe("OpcuaServer security defaults", () => {
  test("only SignAndEncrypt endpoints with Basic256Sha256 and the Aes policies are offered, without anonymous", async () => {
    const client = OPCUAClient.create({ endpointMustExist: false, clientCertificateManager: pki.trusted.manager });
    await client.connect(served.server.endpointUrl);
    const endpoints = await client.getEndpoints();
    await client.disconnect();
    expect(new Set(endpoints.map((endpoint) => endpoint.securityMode))).toEqual(
      new Set([MessageSecurityMode.SignAndEncrypt]),
    );
    expect(new Set(endpoints.map((endpoint) => endpoint.securityPolicyUri))).toEqual(
      new Set([
        SecurityPolicy.Basic256Sha256,
        SecurityPolicy.Aes128_Sha256_RsaOaep,
        SecurityPolicy.Aes256_Sha256_RsaPss,
      ]),
    );
    const tokenTypes = endpoints.flatMap((endpoint) => endpoint.userIdentityTokens!.map((token) => token.tokenType));
    expect(tokenTypes).not.toContain(UserTokenType.Anonymous);
    expect(tokenTypes).toContain(UserTokenType.UserName);
    expect(tokenTypes).toContain(UserTokenType.Certificate);
  });

  test.each([SecurityPolicy.Aes128_Sha256_RsaOaep, SecurityPolicy.Aes256_Sha256_RsaPss])(
    "a trusted client connects with %s and reads",
    async (policy) => {
      const client = await connect(served.server, pki.trusted, user("vic"), { policy });
      try {
        const value = await client.session.read({
          nodeId: served.server.nodeIdOf("chamber.pressure"),
          attributeId: AttributeIds.Value,
        });
        expect(value.statusCode.value).toBe(StatusCodes.Good.value);
      } finally {
        await client.close();
      }
    },
  );

  test("an unknown client certificate is refused, and lands in the PKI's rejected folder", async () => {
    await expect(connect(served.server, pki.unknown, user("vic"))).rejects.toThrow();
    const rejected = path.join(pki.serverDir, "rejected");
    expect(
      existsSync(rejected) &&
        readdirSync(rejected, { recursive: true }).some(
          (file) => String(file).endsWith(".pem") || String(file).endsWith(".der"),
        ),
    ).toBe(true);
  });

  test("a security mode of None is refused by default", async () => {
    await expect(
      connect(served.server, pki.trusted, user("vic"), { mode: MessageSecurityMode.None, policy: SecurityPolicy.None }),
    ).rejects.toThrow();
  });

  test("anonymous is refused by default (no endpoint offers an anonymous token)", async () => {
    await expect(connect(served.server, pki.trusted, { type: UserTokenType.Anonymous })).rejects.toThrow(
      /anonymous|Bad/i,
    );
  });

  test("a wrong password is refused; the async identify mapper saw the session", async () => {
    identified.length = 0;
    await expect(
      connect(served.server, pki.trusted, { type: UserTokenType.UserName, userName: "olga", password: "guess" }),
    ).rejects.toThrow(/BadUserAccessDenied|BadIdentityTokenRejected/);
    expect(identified).toHaveLength(1);
    expect(identified[0]!.identity).toEqual({ type: "username", userName: "olga", password: "guess" });
    expect(identified[0]!.session.securityMode).toBe("SignAndEncrypt");
    expect(identified[0]!.session.clientApplicationUri).toBe("urn:kiln-test:scada");
  });
});

describe("OpcuaServer X.509 user identities", () => {
  test("a trusted user certificate maps to its principal, whose write is allowed and audited under it", async () => {
    const client = await connect(served.server, pki.trusted, x509(pki.trusted));
    try {
      const status = await client.session.write({
        nodeId: served.server.nodeIdOf("heater.setpoint"),
        attributeId: AttributeIds.Value,
        value: { value: { dataType: DataType.Double, value: 42 } },
      });
      expect(status).toBe(StatusCodes.Good);
    } finally {
      await client.close();
    }
    expect(identified.at(-1)!.identity.type).toBe("certificate");
    expect(served.plc.writes).toContainEqual(expect.objectContaining({ tag: "heater.setpoint", value: 42 }));
    const audit = await served.store.audit.query({ from: 0, to: Date.now() + 1 });
    expect(audit.at(-1)).toMatchObject({ principal: "cert:scada", roles: ["operator"], outcome: "allowed" });
  });

  test("a user certificate the user PKI does not trust is refused", async () => {
    await expect(connect(served.server, pki.trusted, x509(pki.unknown))).rejects.toThrow(/Bad/);
  });
});

describe("OpcuaServer with anonymous and None enabled explicitly", () => {
  test("an anonymous session opens on None when enabled; mapped to a viewer, its write is refused and audited", async () => {
    await served.server.stop();
    const open = await servedSystem({
      tags,
      pki,
      server: {
        allowAnonymous: true,
        securityModes: ["None", "SignAndEncrypt"],
        identify: (identity) => {
          const guest: Principal = { id: "guest", roles: ["viewer"] };
          return identity.type === "anonymous" ? guest : identify(identity);
        },
      },
    });
    try {
      const client = await connect(
        open.server,
        pki.trusted,
        { type: UserTokenType.Anonymous },
        {
          mode: MessageSecurityMode.None,
          policy: SecurityPolicy.None,
        },
      );
      try {
        const status = await client.session.write({
          nodeId: open.server.nodeIdOf("heater.setpoint"),
          attributeId: AttributeIds.Value,
          value: { value: { dataType: DataType.Double, value: 100 } },
        });
        expect(status).toBe(StatusCodes.BadUserAccessDenied);
      } finally {
        await client.close();
      }
      expect(open.plc.writes).toEqual([]);
      const audit = await open.store.audit.query({ from: 0, to: Date.now() + 1 });
      expect(audit).toMatchObject([{ principal: "guest", outcome: "denied", target: "heater.setpoint" }]);
      expect(audit[0]!.source).toMatch(
        /^opcua:session ns=1;\S+ from [^ ]+ client (unverified ")?urn:kiln-test:scada"?$/,
      );
    } finally {
      await open.dispose();
      await served.server.start();
    }
  });

  // adv20 F3: on a None channel the client states its ApplicationUri unchecked; one holding a
  // forged "session <id>", a newline and 400 spaces pushed the real session id out of the
  // 256-character source. The server's own parts now come first; the stated URI is marked
  // unverified, quoted with control characters escaped, and cut at 120 characters.
  test("a forged ApplicationUri on a None channel cannot push the real session id out of the audit source", async () => {
    await served.server.stop();
    const forged = `urn:plant:line2:hmi-7 session ns=1;g=0A0A0A0A-0000-0000-0000-000000000007\n${" ".repeat(400)}`;
    const sessionInfos: OpcuaSessionInfo[] = [];
    const open = await servedSystem({
      tags,
      pki,
      server: {
        allowAnonymous: true,
        securityModes: ["None", "SignAndEncrypt"],
        identify: (identity, session) => {
          sessionInfos.push(session);
          return identity.type === "anonymous" ? { id: "guest", roles: ["viewer"] } : identify(identity);
        },
      },
    });
    const client = OPCUAClient.create({
      applicationName: "forger",
      applicationUri: forged,
      securityMode: MessageSecurityMode.None,
      securityPolicy: SecurityPolicy.None,
      clientCertificateManager: pki.trusted.manager,
      endpointMustExist: false,
      connectionStrategy: { maxRetry: 0, initialDelay: 50, maxDelay: 100 },
      requestedSessionTimeout: 10_000,
    });
    // node-opcua's client states its certificate's URI; a raw client states what it likes.
    (client as unknown as { _getApplicationUri(): string })._getApplicationUri = () => forged;
    try {
      await client.connect(open.server.endpointUrl);
      const session = await client.createSession({ type: UserTokenType.Anonymous });
      try {
        const status = await session.write({
          nodeId: open.server.nodeIdOf("heater.setpoint"),
          attributeId: AttributeIds.Value,
          value: { value: { dataType: DataType.Double, value: 100 } },
        });
        expect(status).toBe(StatusCodes.BadUserAccessDenied);
        const audit = await open.store.audit.query({ from: 0, to: Date.now() + 1 });
        expect(audit).toHaveLength(1);
        const source = audit[0]!.source!;
        expect(source.startsWith(`opcua:session ${session.sessionId.toString()} from `)).toBe(true);
        expect(source).toContain(' client unverified "urn:plant:line2:hmi-7 session ns=1;g=0A0A0A0A');
        // eslint-disable-next-line no-control-regex
        expect(source).not.toMatch(/[\u0000-\u001f]/);
        expect(source.length).toBeLessThanOrEqual(256);
        // Sibling: the identity mapper is told the URI is only stated, and where the client is.
        expect(sessionInfos.at(-1)).toMatchObject({
          clientApplicationUri: forged,
          clientApplicationUriVerified: false,
        });
        expect(sessionInfos.at(-1)!.remoteAddress).toMatch(/:\d+$/);
      } finally {
        await session.close().catch(() => undefined);
      }
    } finally {
      await client.disconnect();
      await open.dispose();
      await served.server.start();
    }
  });
});
