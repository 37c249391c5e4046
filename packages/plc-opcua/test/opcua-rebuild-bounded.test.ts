import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { defineTags, type Sample } from "@kiln/core";
import { type DriverStatusChange } from "@kiln/core/driver-kit";
import { DataType, MessageSecurityMode, SecurityPolicy, Variant } from "node-opcua-client";
import { nodesets } from "node-opcua-nodesets";
import { OPCUAServer } from "node-opcua-server";
import { createRequire } from "node:module";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OpcuaDriver } from "../src/index";
import { waitFor } from "./support/wait-for";

// Issue 13, adversarial pass on the rebuild (F2 HIGH, F3, F4): a server that closed every session on
// any Read for 30 s, then behaved again, left the driver `reconnecting` for good: a rebuild attempt
// whose session the server closed under it (mid-open, mid-re-creation of the subscriptions) neither
// completed nor failed, and nothing else watched it. Now each attempt is bounded and a loss of its
// session fails it at once; the loop goes on on its backoff until the server recovers, and nothing
// is left on the server. The status reason follows each failed attempt (F3) and the `connected`
// reason says what happened, not a wait that is over (F4).
const NS = "urn:kiln:test:rebuild-bounded";
const tags = defineTags({
  x: { dataType: "float64", address: `nsu=${NS};s=X`, scanGroup: "fast" },
});

/** How the server misbehaves while hostile. */
type Hostility =
  | { readonly kind: "close-session-on"; readonly requests: ReadonlySet<string> }
  | { readonly kind: "never-answer"; readonly requests: ReadonlySet<string> }
  | { readonly kind: "never-settled"; readonly requests: ReadonlySet<string> };

let workDir: string;
let server: OPCUAServer;
let url: string;
let counter = 0;
let hostility: Hostility | undefined;
/** Requests the server met with hostility. */
let hostileHits = 0;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-rebuild-bounded-"));
  server = new OPCUAServer({
    port: 0,
    hostname: "127.0.0.1",
    nodeset_filename: [nodesets.standard],
    securityModes: [MessageSecurityMode.None],
    securityPolicies: [SecurityPolicy.None],
    allowAnonymous: true,
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
    minimumSamplingInterval: 50,
    value: { get: () => new Variant({ dataType: DataType.Double, value: ++counter }) },
  });
  server.on(
    "newChannel",
    (channel: { on(event: "message", listener: (message: { request?: object }) => void): void }) =>
      channel.on("message", (message) => {
        const request = message.request as { requestHeader?: { authenticationToken?: unknown } } | undefined;
        if (hostility?.kind !== "close-session-on" || !hostility.requests.has(request?.constructor.name ?? "")) return;
        try {
          server.engine.closeSession(request!.requestHeader!.authenticationToken as never, true, "Terminated");
          hostileHits++;
        } catch {
          // no such session
        }
      }),
  );
  // node-opcua's server dispatches each request to `this._on_<RequestName>`: a hostile one is never answered.
  const dispatch = server as unknown as Record<string, (message: unknown, channel: unknown) => unknown>;
  for (const name of ["ReadRequest", "CreateSubscriptionRequest"]) {
    const handler = dispatch[`_on_${name}`]!;
    dispatch[`_on_${name}`] = function (this: unknown, message: unknown, channel: unknown) {
      if (hostility?.kind === "never-answer" && hostility.requests.has(name)) {
        hostileHits++;
        return undefined;
      }
      return handler.call(this, message, channel);
    };
  }
  // A request node-opcua's client holds and never settles (as it holds every request while it
  // repairs a channel, a repair that may never end): the request is neither sent nor failed.
  const { ClientSessionImpl } = createRequire(import.meta.url)(
    "node-opcua-client/dist/private/client_session_impl.js",
  ) as { ClientSessionImpl: { prototype: Record<string, (request: object, callback: unknown) => unknown> } };
  const perform = ClientSessionImpl.prototype.performMessageTransaction!;
  ClientSessionImpl.prototype.performMessageTransaction = function (this: unknown, request, callback) {
    if (hostility?.kind === "never-settled" && hostility.requests.has(request.constructor.name)) {
      hostileHits++;
      return undefined;
    }
    return perform.call(this, request, callback);
  };
  await server.start();
  url = `opc.tcp://127.0.0.1:${server.endpoints[0]!.port}`;
});

afterAll(async () => {
  await server?.shutdown(0);
  await rm(workDir, { recursive: true, force: true });
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Sessions and subscriptions the server holds now. */
function serverHolds(): { sessions: number; subscriptions: number } {
  return { sessions: server.engine.getSessions().length, subscriptions: server.engine.currentSubscriptionCount };
}

const HOSTILE_MS = 10_000;
/**
 * The session timeout asked for: a session whose channel broke before the driver could close it
 * (nothing can reach it then) is deleted by the server after it, with no subscription on it.
 */
const SESSION_MS = 4_000;
/** Connected again within this after the server recovered: the backoff's cap plus one bounded attempt. */
const RECOVERY_MS = 12_000;

interface Case {
  readonly name: string;
  readonly hostile: Hostility;
  /** The server drops the session first (the requests are ones sent only while a session comes up). */
  readonly dropFirst: boolean;
  /** How long it is hostile. @default HOSTILE_MS */
  readonly hostileMs?: number;
  /** A `reconnecting` reason the driver must have given meanwhile (a failed attempt's, F3). */
  readonly attemptReason?: RegExp;
}

const cases: Case[] = [
  {
    name: "closes every session on any Read",
    hostile: { kind: "close-session-on", requests: new Set(["ReadRequest"]) },
    dropFirst: false,
    attemptReason: /dropped the session being reopened|BadSession/,
  },
  {
    name: "closes every session on CreateSubscription",
    hostile: { kind: "close-session-on", requests: new Set(["CreateSubscriptionRequest"]) },
    dropFirst: true,
    attemptReason: /dropped the session being reopened|BadSession/,
  },
  {
    name: "closes every session on ActivateSession",
    hostile: { kind: "close-session-on", requests: new Set(["ActivateSessionRequest"]) },
    dropFirst: true,
    attemptReason: /BadSession/,
  },
  // Siblings: the session is accepted, a request the attempt needs is never answered, or never settled.
  {
    name: "never answers a Read",
    hostile: { kind: "never-answer", requests: new Set(["ReadRequest"]) },
    dropFirst: true,
    // The repair watchdog (4 s), then an open bounded by connectMs (3 s): long enough for one to fail.
    hostileMs: 12_000,
    attemptReason: /Cannot connect|timed out/,
  },
  {
    name: "never answers CreateSubscription",
    hostile: { kind: "never-answer", requests: new Set(["CreateSubscriptionRequest"]) },
    dropFirst: true,
  },
  {
    // The stage that hangs for ever: only the attempt's deadline ends it.
    name: "drops the session; node-opcua never settles a CreateSubscription",
    hostile: { kind: "never-settled", requests: new Set(["CreateSubscriptionRequest"]) },
    dropFirst: true,
    hostileMs: 16_000,
    attemptReason: /timed out: re-creating the subscriptions made no progress for \d+ ms; the attempt was abandoned/,
  },
];

describe("a server hostile for a while, then well again: the driver is connected soon after (adv F2)", () => {
  test.each(cases.map((each) => [each.name, each] as const))(
    "%s: reconnecting with each attempt's reason, then connected, values good, one session and one subscription",
    async (name, { hostile, dropFirst, hostileMs = HOSTILE_MS, attemptReason }) => {
      const driver = new OpcuaDriver({
        endpointUrl: url,
        security: { mode: "None" },
        pki: { dir: path.join(workDir, "client") },
        connectionStrategy: { maxRetry: 1_000, initialDelayMs: 200, maxDelayMs: 1_000, randomisationFactor: 0 },
        timeouts: { keepAliveMs: 1_000, requestMs: 2_000, connectMs: 3_000, sessionMs: SESSION_MS },
        subscriptions: { maxPublishingIntervalMs: 500, keepAliveMs: 1_500 },
        monitoredItemRetry: { initialDelayMs: 200, maxDelayMs: 1_000 },
      });
      const changes: DriverStatusChange[] = [];
      driver.onStatusChange((change) => changes.push(change));
      const received: Sample[] = [];
      hostileHits = 0;
      try {
        await driver.connect();
        await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) => received.push(...samples));
        expect(serverHolds()).toEqual({ sessions: 1, subscriptions: 1 });
        hostility = hostile;
        if (dropFirst)
          server.engine.closeSession(server.engine.getSessions()[0]!.authenticationToken, true, "Terminated");
        // The application polls meanwhile.
        const poll = setInterval(() => void driver.read(tags.list()).catch(() => undefined), 300);
        try {
          await sleep(hostileMs);
        } finally {
          clearInterval(poll);
        }
        hostility = undefined;
        expect(hostileHits, `the server was hostile (${name})`).toBeGreaterThan(0);
        const hostileChanges = changes.slice();
        const start = performance.now();
        await waitFor(() => driver.status === "connected", {
          what: `connected after the server recovered (status ${driver.status}: ${changes.at(-1)?.reason})`,
          timeoutMs: RECOVERY_MS,
        });
        const [sample] = await driver.read(tags.list());
        expect(sample!.quality.severity).toBe("good");
        const mark = received.length;
        await waitFor(() => received.slice(mark).some((fresh) => fresh.quality.severity === "good"), {
          what: "fresh subscribed values",
        });
        // Nothing left on the server by the attempts that were abandoned: their sessions were closed
        // with their subscriptions, or (channel broken first) time out with none on them.
        expect(serverHolds().subscriptions).toBe(1);
        await waitFor(() => JSON.stringify(serverHolds()) === JSON.stringify({ sessions: 1, subscriptions: 1 }), {
          what: `one session and one subscription on the server (holds ${JSON.stringify(serverHolds())})`,
          timeoutMs: SESSION_MS + 3_000,
        });
        expect(performance.now() - start).toBeLessThan(RECOVERY_MS + SESSION_MS);
        // F3: while it stayed `reconnecting`, the reason followed the attempts that failed.
        const reasons = hostileChanges
          .filter((change) => change.from === "reconnecting" && change.to === "reconnecting")
          .map((change) => change.reason ?? "");
        if (attemptReason) {
          expect(
            reasons.some((reason) => attemptReason.test(reason)),
            reasons.join("\n"),
          ).toBe(true);
        }
        // F4: a `connected` reason says what happened, never a wait that is over.
        for (const change of changes.filter((each) => each.to === "connected")) {
          expect(change.reason).not.toMatch(/next attempt in|waits \d+ ms|connection was lost/);
        }
        expect(changes.filter((change) => change.to === "connected").at(-1)?.reason).toMatch(
          /^(session re-created after \d+ attempts?|connection re-established)/,
        );
      } finally {
        hostility = undefined;
        await driver.close();
      }
    },
    60_000,
  );
});
