import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { defineTags, type Sample } from "@kiln/core";
import { type DriverStatusChange } from "@kiln/core/driver-kit";
import { DataType, MessageSecurityMode, SecurityPolicy, Variant } from "node-opcua-client";
import { nodesets } from "node-opcua-nodesets";
import { OPCUAServer } from "node-opcua-server";
import { afterAll, beforeAll, expect, test } from "vitest";
import { OpcuaDriver } from "../src/index";
import { waitFor } from "./support/wait-for";

// Issue 13, adversarial pass adv13g (MEDIUM): a session the server closes while node-opcua re-creates
// it (after the server dropped the old one) was neither counted nor acted on: the session-fault
// handler acted only while `connected`, and node-opcua puts a request answered BadSessionIdInvalid
// back in its queue while it repairs. Only the repair watchdog ended it, after connectionStrategy.maxDelayMs
// + timeouts.connectMs. Now it counts as a loss and leads to a rebuild on the backoff, with its reason.
const NS = "urn:kiln:test:session-closed-during-repair";
const tags = defineTags({
  x: { dataType: "float64", address: `nsu=${NS};s=X`, scanGroup: "fast" },
});

let workDir: string;
let server: OPCUAServer;
let url: string;
let counter = 0;
/** The request kind whose arrival makes the server close its session, and how many more times. */
let closeOn: { readonly request: string; remaining: number } | undefined;
let closes = 0;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-session-closed-repair-"));
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
  server.on("newChannel", (channel) =>
    (channel as unknown as { on(event: "message", listener: (message: { request?: object }) => void): void }).on(
      "message",
      (message) => {
        const request = message.request as { requestHeader?: { authenticationToken?: unknown } } | undefined;
        if (!closeOn || closeOn.remaining <= 0 || request?.constructor.name !== closeOn.request) return;
        try {
          server.engine.closeSession(request.requestHeader!.authenticationToken as never, true, "Terminated");
          closeOn.remaining--;
          closes++;
        } catch {
          // no such session
        }
      },
    ),
  );
  await server.start();
  url = `opc.tcp://127.0.0.1:${server.endpoints[0]!.port}`;
});

afterAll(async () => {
  await server?.shutdown(0);
  await rm(workDir, { recursive: true, force: true });
});

/** The repair watchdog's bound with these options: maxDelayMs + connectMs. */
const WATCHDOG_MS = 4_000 + 10_000;

test("the server closes the session node-opcua re-created: counted, rebuilt on the backoff with its reason, well before the repair watchdog", async () => {
  const driver = new OpcuaDriver({
    endpointUrl: url,
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    connectionStrategy: { maxRetry: 1_000, initialDelayMs: 200, maxDelayMs: 4_000, randomisationFactor: 0 },
    timeouts: { keepAliveMs: 1_000, requestMs: 2_000, connectMs: 10_000, sessionMs: 4_000 },
    subscriptions: { maxPublishingIntervalMs: 500, keepAliveMs: 1_500 },
    monitoredItemRetry: { initialDelayMs: 200, maxDelayMs: 1_000 },
  });
  const changes: DriverStatusChange[] = [];
  driver.onStatusChange((change) => changes.push(change));
  const received: Sample[] = [];
  try {
    await driver.connect();
    await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) => received.push(...samples));
    // node-opcua re-creates the session, then its subscription on it: the server closes that new session.
    closes = 0;
    closeOn = { request: "CreateSubscriptionRequest", remaining: 1 };
    const start = performance.now();
    server.engine.closeSession(server.engine.getSessions()[0]!.authenticationToken, true, "Terminated");
    await waitFor(() => closes === 1, { what: "the re-created session closed by the server" });
    const mark = received.length;
    await waitFor(() => driver.status === "connected" && changes.length > 3, {
      what: `connected again (status ${driver.status}: ${changes.at(-1)?.reason})`,
      timeoutMs: WATCHDOG_MS + 10_000,
    });
    const recoveredMs = performance.now() - start;
    await waitFor(() => received.slice(mark).some((fresh) => fresh.quality.severity === "good"), {
      what: "fresh good subscribed values",
    });
    const reasons = changes.map((change) => `${change.to}: ${change.reason ?? ""}`);
    // Acted on at once (a rebuild on the backoff), not left to the repair watchdog.
    expect(reasons.join("\n")).not.toMatch(/repair stalled/);
    expect(recoveredMs, reasons.join("\n")).toBeLessThan(WATCHDOG_MS / 2);
    expect(reasons.join("\n")).toMatch(/closed the session .*re-creat|re-created session/);
  } finally {
    closeOn = undefined;
    await driver.close();
  }
}, 60_000);
