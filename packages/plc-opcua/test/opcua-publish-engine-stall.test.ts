import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { type DriverStatusChange } from "@kiln/core/driver-kit";
import { defineTags, type Sample } from "@kiln/core";
import { ObjectIds } from "node-opcua-client";
import { OPCUAServer } from "node-opcua-server";
import { afterEach, describe, expect, test } from "vitest";
import { OPCUA_SIMULATOR_NAMESPACE_URI, OpcuaDriver, OpcuaSimulator } from "../src/index";
import { RecordingLogger } from "./support/recording-logger";
import { TcpProxy } from "./support/tcp-proxy";
import { waitFor } from "./support/wait-for";

// Issue 13, adversarial review adv13p HIGH-2: a link frozen (a proxy that stops forwarding without
// closing) exactly while node-opcua re-created the subscription after the server dropped the
// session made its CreateSubscription time out. node-opcua had already unregistered the
// subscription from its publish engine; the driver then deleted it (unregistered a second time)
// and created a new one, and node-opcua's count of active subscriptions stayed one too low: it
// renews a Publish request after an answer only while that count is above 0, so each new
// subscription got its first five Publish requests answered and then nothing. The tags were good
// and frozen until the keep-alive watchdog re-created the subscription on the same engine, forever.
// The driver now corrects node-opcua's publish engine after every (re-)creation and on every
// watchdog expiry, and opens a new session when the watchdog expires again on a re-created
// subscription (docs/adr/0022, amendment fix13r).
const NS = OPCUA_SIMULATOR_NAMESPACE_URI;
const names = ["kiln.a", "kiln.b", "kiln.c"] as const;
const tags = defineTags({
  "kiln.a": { dataType: "int32", address: `nsu=${NS};s=Kiln.A` },
  "kiln.b": { dataType: "int32", address: `nsu=${NS};s=Kiln.B` },
  "kiln.c": { dataType: "int32", address: `nsu=${NS};s=Kiln.C` },
});
const counter = { kind: "counter" as const, start: 1, step: 1 };
const WATCHDOG = /no notification or keep-alive from the OPC UA subscription/;

interface Seen extends Sample {
  /** Wall-clock ms the sample was delivered. */
  readonly at: number;
}

let workDir: string | undefined;
let simulator: OpcuaSimulator | undefined;
let driver: OpcuaDriver | undefined;
let proxy: TcpProxy | undefined;
const restore: (() => void)[] = [];

afterEach(async () => {
  for (const undo of restore.splice(0)) undo();
  await driver?.close();
  await proxy?.close();
  await simulator?.dispose();
  if (workDir) await rm(workDir, { recursive: true, force: true });
  driver = undefined;
  simulator = undefined;
  proxy = undefined;
  workDir = undefined;
});

/** The simulator (3 counters moving every 50 ms) behind a proxy, a driver subscribed to them; watchdog about 2 s. */
async function subscribed() {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-publish-stall-"));
  simulator = new OpcuaSimulator({
    tags,
    signals: { "kiln.a": counter, "kiln.b": counter, "kiln.c": counter },
    securityModes: ["None"],
    updateIntervalMs: 50,
    pkiDir: path.join(workDir, "server"),
  });
  await simulator.start();
  proxy = new TcpProxy(Number(new URL(simulator.endpointUrl.replace(/^opc\.tcp:/, "http:")).port));
  const endpointUrl = await proxy.start();
  const logger = new RecordingLogger();
  driver = new OpcuaDriver({
    endpointUrl,
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    logger,
    connectionStrategy: { maxRetry: 1_000, initialDelayMs: 100, maxDelayMs: 400, randomisationFactor: 0.1 },
    timeouts: { keepAliveMs: 1_000, requestMs: 3_000 },
    subscriptions: { keepAliveMs: 1_000, maxPublishingIntervalMs: 200 },
    monitoredItemRetry: { initialDelayMs: 100, maxDelayMs: 400 },
  });
  const statuses: (DriverStatusChange & { at: number })[] = [];
  driver.onStatusChange((change) => statuses.push({ ...change, at: Date.now() }));
  await driver.connect();
  const seen: Seen[] = [];
  await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) =>
    seen.push(...samples.map((sample) => ({ ...sample, at: Date.now() }))),
  );
  await waitFor(() => names.every((name) => seen.some((s) => s.tag === name && s.quality.severity === "good")), {
    what: "every tag good",
  });
  return { simulator, proxy, seen, logger, statuses };
}

/** The highest good value of `name` delivered so far. */
function highestGood(seen: readonly Seen[], name: string): number {
  return Math.max(...seen.filter((s) => s.tag === name && s.quality.severity === "good").map((s) => Number(s.value)));
}

/**
 * From `from` on, every tag's good values keep moving for `windowMs` (at least 10 distinct new
 * ones each), and no keep-alive watchdog expires meanwhile: node-opcua keeps publishing.
 */
async function keepsMoving(seen: Seen[], from: number, windowMs: number): Promise<void> {
  const start = Date.now();
  await new Promise((resolve) => setTimeout(resolve, windowMs));
  const window = seen.filter((s) => s.at >= start);
  expect(window.filter((s) => WATCHDOG.test(s.quality.reason ?? ""))).toEqual([]);
  for (const name of names) {
    const values = new Set(
      window.filter((s) => s.tag === name && s.quality.severity === "good" && s.at >= from).map((s) => s.value),
    );
    expect(values.size, name).toBeGreaterThanOrEqual(10);
  }
}

describe("node-opcua's publish engine after a frozen link (issue 13, adv13p HIGH-2)", () => {
  test("a link frozen on the CreateSubscription of a session re-creation: values move again, never good and stale", async () => {
    const { simulator: sim, proxy: px, seen } = await subscribed();
    const before = Object.fromEntries(names.map((name) => [name, highestGood(seen, name)]));
    const frozen = px.freezeOnRequest(ObjectIds.CreateSubscriptionRequest_Encoding_DefaultBinary, "swallow");
    const mark = seen.length;
    expect(sim.closeSessions()).toBe(1);
    await frozen;
    const frozenAt = Date.now();
    // Longer than timeouts.requestMs: the CreateSubscription times out on the frozen link.
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    px.restore();
    const thawedAt = Date.now();

    const fresh = await waitFor(
      () =>
        names.every((name) =>
          seen
            .slice(mark)
            .some((s) => s.tag === name && s.quality.severity === "good" && Number(s.value) > before[name]!),
        ) && Date.now(),
      { what: "new good values of every tag after the thaw", timeoutMs: 20_000 },
    );
    // While frozen nothing is good; after the session loss, a good value is always a new one.
    expect(seen.filter((s) => s.at >= frozenAt && s.at <= thawedAt && s.quality.severity === "good")).toEqual([]);
    const stale = seen.slice(mark).filter((s) => s.quality.severity === "good" && Number(s.value) <= before[s.tag]!);
    expect(stale).toEqual([]);
    // Before the fix: a good burst, then the watchdog's bad sample about 2 s later, over and over.
    await keepsMoving(seen, fresh, 6_000);
    expect(sim.liveSubscriptions()).toMatchObject({ subscriptions: 1, monitoredItems: 3 });
  }, 60_000);

  // Sibling: the server goes on answering Reads (node-opcua's keep-alive, so the link looks alive)
  // but never answers a Publish of Kiln's session again. Re-creating the subscription on that
  // session cannot help: the second watchdog expiry in a row opens a new session.
  test("the server stops answering Publish on the session: tags bad, then a new session delivers", async () => {
    const { seen, statuses, logger } = await subscribed();
    const prototype = OPCUAServer.prototype as unknown as {
      _on_PublishRequest: (this: unknown, message: unknown, channel: unknown) => unknown;
    };
    const original = prototype._on_PublishRequest;
    let muted: string | undefined;
    prototype._on_PublishRequest = function (message, channel) {
      const token = String(
        (message as { request: { requestHeader: { authenticationToken: unknown } } }).request.requestHeader
          .authenticationToken,
      );
      // The first session seen from now on is never answered again.
      muted ??= token;
      if (token === muted) return undefined;
      return original.call(this, message, channel);
    };
    restore.push(() => {
      prototype._on_PublishRequest = original;
    });
    const mark = seen.length;
    const lost = await waitFor(() => seen.slice(mark).find((s) => s.quality.severity !== "good"), {
      what: "a tag no longer good",
    });
    expect(lost.quality).toMatchObject({ severity: "bad" });
    expect(lost.quality.reason).toMatch(WATCHDOG);
    const lostAt = seen.indexOf(lost);
    const rebuilt = await waitFor(
      () =>
        statuses.find((change) => change.to === "reconnecting" && /opening a new session/.test(change.reason ?? "")),
      { what: "a new session opened after the second expiry", timeoutMs: 20_000 },
    );
    // No good value between the first expiry and the new session.
    expect(seen.slice(lostAt).filter((s) => s.at < rebuilt.at && s.quality.severity === "good")).toEqual([]);
    const fresh = await waitFor(
      () =>
        names.every((name) => seen.slice(lostAt).some((s) => s.tag === name && s.quality.severity === "good")) &&
        Date.now(),
      { what: "good values from the new session", timeoutMs: 20_000 },
    );
    await keepsMoving(seen, fresh, 4_000);
    // One new session per two expiries at most: no storm.
    expect(statuses.filter((change) => /opening a new session/.test(change.reason ?? ""))).toHaveLength(1);
    expect(
      logger.lines.filter((line) => line.level === "warn" && WATCHDOG.test(line.message)).length,
    ).toBeLessThanOrEqual(3);
  }, 60_000);
});
