import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { DataType, MessageSecurityMode, SecurityPolicy, Variant } from "node-opcua-client";
import { nodesets } from "node-opcua-nodesets";
import { OPCUAServer } from "node-opcua-server";

/**
 * A server-side secure channel as the tests' hooks see it: its requests, and `abruptlyInterrupt()`
 * to break it (its socket destroyed). node-opcua keeps the transport private (`#transport`):
 * `channel.transport._socket` is undefined, so a test that destroyed it broke nothing (adv13h F2).
 */
export interface RawChannel {
  on(event: "message", listener: (message: { request?: object }) => void): void;
  close?(): void;
  abruptlyInterrupt?(): void;
}

/** A request as a raw server's hook sees it: its kind is `constructor.name` ("ReadRequest"...). */
export type RawRequest = { requestHeader?: { authenticationToken?: unknown } } | undefined;

/** See {@link startRawOpcuaServer}. */
export interface RawOpcuaServer {
  readonly server: OPCUAServer;
  /** `opc.tcp://127.0.0.1:<port>` */
  readonly url: string;
  /** A folder of the test's own (the client's PKI goes in it), removed by {@link RawOpcuaServer.close}. */
  readonly workDir: string;
  /** Calls `listener` for every request on every secure channel opened from now on. */
  onRequest(listener: (request: RawRequest, channel: RawChannel) => void): void;
  /** Closes the session a request was made on, as a server that ends it (BadSessionClosed); false if none. */
  closeSessionOf(request: RawRequest): boolean;
  /** Sessions, subscriptions and monitored items the server holds over its live sessions. */
  holds(): { sessions: number; subscriptions: number; items: number };
  close(): Promise<void>;
}

/**
 * A bare node-opcua server for tests that script a peer's misbehaviour request by request: security
 * None, anonymous, the standard nodeset, and one Double variable `nsu=<namespaceUri>;s=X` whose
 * value is `value()` at each read or sample (a counter by default, so every sample is fresh),
 * sampled at most every `minimumSamplingIntervalMs` (50 ms by default). Started on a free port.
 */
export async function startRawOpcuaServer(options: {
  readonly namespaceUri: string;
  readonly minimumSamplingIntervalMs?: number;
  readonly value?: () => number;
  /** The server's limit of subscriptions per session (node-opcua's default otherwise). */
  readonly maxSubscriptionsPerSession?: number;
}): Promise<RawOpcuaServer> {
  const workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-raw-server-"));
  let counter = 0;
  const value = options.value ?? (() => ++counter);
  const server = new OPCUAServer({
    port: 0,
    hostname: "127.0.0.1",
    nodeset_filename: [nodesets.standard],
    securityModes: [MessageSecurityMode.None],
    securityPolicies: [SecurityPolicy.None],
    allowAnonymous: true,
    serverCertificateManager: undefined,
    ...(options.maxSubscriptionsPerSession === undefined
      ? {}
      : { serverCapabilities: { maxSubscriptionsPerSession: options.maxSubscriptionsPerSession } }),
  } as ConstructorParameters<typeof OPCUAServer>[0]);
  await server.initialize();
  const addressSpace = server.engine.addressSpace!;
  const namespace = addressSpace.registerNamespace(options.namespaceUri);
  namespace.addVariable({
    organizedBy: addressSpace.rootFolder.objects,
    browseName: "X",
    nodeId: "s=X",
    dataType: "Double",
    minimumSamplingInterval: options.minimumSamplingIntervalMs ?? 50,
    value: { get: () => new Variant({ dataType: DataType.Double, value: value() }) },
  });
  await server.start();
  return {
    server,
    url: `opc.tcp://127.0.0.1:${server.endpoints[0]!.port}`,
    workDir,
    onRequest: (listener) =>
      server.on("newChannel", (channel) =>
        (channel as unknown as RawChannel).on("message", (message) =>
          listener(message.request as RawRequest, channel as unknown as RawChannel),
        ),
      ),
    closeSessionOf: (request) => {
      try {
        server.engine.closeSession(request?.requestHeader?.authenticationToken as never, true, "Terminated");
        return true;
      } catch {
        return false; // no such session
      }
    },
    holds: () => {
      const sessions = server.engine.getSessions();
      const counts = sessions as unknown as { currentSubscriptionCount: number; currentMonitoredItemCount: number }[];
      return {
        sessions: sessions.length,
        subscriptions: counts.reduce((sum, session) => sum + session.currentSubscriptionCount, 0),
        items: counts.reduce((sum, session) => sum + session.currentMonitoredItemCount, 0),
      };
    },
    close: async () => {
      await server.shutdown(0);
      await rm(workDir, { recursive: true, force: true });
    },
  };
}
