import path from "node:path";
import { defineTags, type Sample } from "@kiln/core";
import { type DriverStatusChange } from "@kiln/core/driver-kit";
import { afterAll, beforeAll, expect, test } from "vitest";
import { OpcuaDriver } from "../src/index";
import { type RawOpcuaServer, startRawOpcuaServer } from "./support/raw-opcua-server";
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

let raw: RawOpcuaServer;
/** The request kind whose arrival makes the server close its session, and how many more times. */
let closeOn: { readonly request: string; remaining: number } | undefined;
let closes = 0;

beforeAll(async () => {
  raw = await startRawOpcuaServer({ namespaceUri: NS });
  raw.onRequest((request) => {
    if (!closeOn || closeOn.remaining <= 0 || request?.constructor.name !== closeOn.request) return;
    if (!raw.closeSessionOf(request)) return;
    closeOn.remaining--;
    closes++;
  });
});

afterAll(async () => {
  await raw?.close();
});

/** The repair watchdog's bound with these options: maxDelayMs + connectMs. */
const WATCHDOG_MS = 4_000 + 10_000;

test("the server closes the session node-opcua re-created: counted, rebuilt on the backoff with its reason, well before the repair watchdog", async () => {
  const driver = new OpcuaDriver({
    endpointUrl: raw.url,
    security: { mode: "None" },
    pki: { dir: path.join(raw.workDir, "client") },
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
    raw.server.engine.closeSession(raw.server.engine.getSessions()[0]!.authenticationToken, true, "Terminated");
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
