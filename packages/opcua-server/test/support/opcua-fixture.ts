import { copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  createControlSystem,
  MemoryStore,
  type ControlSystem,
  type ControlSystemOptions,
  type Principal,
  SimulatedPlc,
  type SimulatedPlcOptions,
  type TagCatalog,
} from "@kiln/core";
import { OPCUACertificateManager } from "node-opcua-certificate-manager";
import {
  MessageSecurityMode,
  OPCUAClient,
  SecurityPolicy,
  type ClientSession,
  type UserIdentityInfo,
  UserTokenType,
} from "node-opcua-client";
import { OpcuaServer, type OpcuaServerOptions, type OpcuaUserIdentity } from "../../src/index";

/** The demo users of the tests and what they map to. */
export const USERS: Readonly<Record<string, { readonly password: string; readonly principal: Principal }>> = {
  olga: { password: "operator-Pa55", principal: { id: "olga", roles: ["operator"] } },
  vic: { password: "viewer-Pa55", principal: { id: "vic", roles: ["viewer"] } },
  ada: { password: "admin-Pa55", principal: { id: "ada", roles: ["admin"] } },
  /** A domain user: its id has a backslash, which an audit reason writes out once (`\u{005C}`). */
  "PLANT\\val": { password: "viewer-Pa55", principal: { id: "PLANT\\val", roles: ["viewer"] } },
  /** A host whose ids carry control characters (a NUL, a bell, a newline), each written out once in an audit entry. */
  ctl: { password: "viewer-Pa55", principal: { id: "ctl\u0000\u0007\n".repeat(30), roles: ["viewer"] } },
  /** A role of no default table: a test that uses her gives the system a `chamber-reader` role. */
  rita: { password: "reader-Pa55", principal: { id: "rita", roles: ["chamber-reader"] } },
};

/** The host's identity mapper of the tests: the users above by password, nobody else. */
export function identify(identity: OpcuaUserIdentity): Principal | undefined {
  if (identity.type !== "username") return undefined;
  const user = USERS[identity.userName];
  return user && user.password === identity.password ? user.principal : undefined;
}

/** A client's PKI folder with its certificate made. */
export interface ClientPki {
  readonly dir: string;
  readonly manager: OPCUACertificateManager;
  readonly certificateFile: string;
}

/**
 * One PKI for a whole test file (certificates are slow to make): the server's folder, a client
 * whose certificate the server trusts, and a client it does not know.
 */
export interface TestPki {
  readonly root: string;
  readonly serverDir: string;
  readonly trusted: ClientPki;
  readonly unknown: ClientPki;
  dispose(): Promise<void>;
}

async function clientPki(root: string, name: string): Promise<ClientPki> {
  const dir = path.join(root, name);
  const manager = new OPCUACertificateManager({ rootFolder: dir, automaticallyAcceptUnknownCertificate: true });
  await manager.initialize();
  const client = OPCUAClient.create({
    applicationName: name,
    applicationUri: `urn:kiln-test:${name}`,
    clientCertificateManager: manager,
  });
  await client.createDefaultCertificate();
  return { dir, manager, certificateFile: client.certificateFile };
}

/** Makes the PKI of a test file: the trusted client's certificate is copied into the server's `trusted/certs`. */
export async function makeTestPki(): Promise<TestPki> {
  const root = await mkdtemp(path.join(tmpdir(), "kiln-opcua-server-"));
  const serverDir = path.join(root, "server");
  const trusted = await clientPki(root, "scada");
  const unknown = await clientPki(root, "stranger");
  await mkdir(path.join(serverDir, "trusted", "certs"), { recursive: true });
  await copyFile(trusted.certificateFile, path.join(serverDir, "trusted", "certs", "scada.pem"));
  return {
    root,
    serverDir,
    trusted,
    unknown,
    async dispose() {
      await Promise.all([trusted.manager.dispose(), unknown.manager.dispose()]);
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** A control system on a `SimulatedPlc` (real clock) and a `MemoryStore`, started, with an OPC UA server on a free port. */
export interface ServedTestSystem {
  readonly system: ControlSystem;
  readonly plc: SimulatedPlc;
  readonly store: MemoryStore;
  readonly server: OpcuaServer;
  dispose(): Promise<void>;
}

/**
 * A server `authorizer` that asks the served system, except that `read` of any tag in `revoked`
 * is refused: a test revokes a grant mid-session by adding the tag to the set. `system` is read
 * when asked (the server is built before the served system is returned).
 */
export function revocableRead(
  system: () => ControlSystem,
  revoked: ReadonlySet<string>,
): NonNullable<OpcuaServerOptions["authorizer"]> {
  return {
    can: (principal, permission, target) =>
      !(permission === "read" && target !== undefined && revoked.has(target)) &&
      system().can(principal, permission, target),
  };
}

export async function servedSystem(options: {
  readonly tags: TagCatalog;
  readonly pki: TestPki;
  readonly sources?: SimulatedPlcOptions["sources"];
  readonly system?: Partial<Omit<ControlSystemOptions, "tags" | "driver" | "store">>;
  readonly server?: Partial<OpcuaServerOptions>;
}): Promise<ServedTestSystem> {
  const plc = new SimulatedPlc({ tags: options.tags, ...(options.sources ? { sources: options.sources } : {}) });
  const store = new MemoryStore();
  const system = createControlSystem({
    machineId: "reactor-1",
    tags: options.tags,
    driver: plc,
    store,
    scanGroups: { default: { periodMs: 50 } },
    ...options.system,
  });
  const server = new OpcuaServer(system, {
    port: 0,
    host: "127.0.0.1",
    pki: { dir: options.pki.serverDir },
    identify,
    ...options.server,
  });
  await system.start();
  await system.ready();
  await server.start();
  return {
    system,
    plc,
    store,
    server,
    async dispose() {
      await server.stop();
      await system.stop();
    },
  };
}

/** Connects a node-opcua client (SignAndEncrypt, Basic256Sha256 unless told) and opens a session. */
export async function connect(
  server: OpcuaServer,
  pki: ClientPki,
  identity: UserIdentityInfo,
  security: { mode?: MessageSecurityMode; policy?: SecurityPolicy } = {},
): Promise<{ client: OPCUAClient; session: ClientSession; close(): Promise<void> }> {
  const client = OPCUAClient.create({
    applicationName: path.basename(pki.dir),
    applicationUri: `urn:kiln-test:${path.basename(pki.dir)}`,
    clientCertificateManager: pki.manager,
    securityMode: security.mode ?? MessageSecurityMode.SignAndEncrypt,
    securityPolicy: security.policy ?? SecurityPolicy.Basic256Sha256,
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 0, initialDelay: 50, maxDelay: 100 },
    requestedSessionTimeout: 10_000,
  });
  await client.connect(server.endpointUrl);
  try {
    const session = await client.createSession(identity);
    return {
      client,
      session,
      async close() {
        await session.close().catch(() => undefined);
        await client.disconnect();
      },
    };
  } catch (error) {
    await client.disconnect();
    throw error;
  }
}

/** A user name identity of {@link USERS}. */
export function user(name: keyof typeof USERS & string): UserIdentityInfo {
  return { type: UserTokenType.UserName, userName: name, password: USERS[name]!.password };
}

/** Polls `condition` every 20 ms until it holds, or fails after `timeoutMs`. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
