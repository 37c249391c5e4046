import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { defineTags, type Sample } from "@kiln/core";
import { ServerSession } from "node-opcua-server";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OPCUA_SIMULATOR_NAMESPACE_URI, OpcuaDriver, OpcuaSimulator } from "../src/index";
import { TcpProxy } from "./support/tcp-proxy";
import { waitFor } from "./support/wait-for";

// Issue 13, adversarial pass adv13j, HIGH-1: while the server→client direction was lost the
// server went on answering the Publish requests it held; the answers were lost, and when
// node-opcua re-activated the session it asked for them again with Republish and the driver
// delivered each one as a current good value: 6 good samples 5.9–6.2 s old, out of order, while
// the status still said `reconnecting`. Replayed notifications are now history: `uncertain` with
// the reason, never good; live notifications (and the current values the server resends on
// re-activation) make the tags good again (docs/adr/0022, amendment fix13k).
const NS = OPCUA_SIMULATOR_NAMESPACE_URI;
const tags = defineTags({
  "kiln.a": { dataType: "int32", address: `nsu=${NS};s=Kiln.A` },
  "kiln.k": { dataType: "int32", address: `nsu=${NS};s=Kiln.K` },
});
/**
 * A live sample's source timestamp is at most a publishing interval (50 ms here) plus the
 * delivery behind its receipt; a replayed one is as old as the outage (5 s here).
 */
const LIVE_AGE_MS = 1_000;
const STALL_MS = 5_000;

let workDir: string;
let simulator: OpcuaSimulator;
beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-replay-"));
  simulator = new OpcuaSimulator({
    tags,
    // kiln.a changes every 50 ms; kiln.k never changes (its value predates every outage).
    signals: { "kiln.a": { kind: "counter", start: 1, step: 1 }, "kiln.k": { kind: "constant", value: 7 } },
    securityModes: ["None"],
    updateIntervalMs: 50,
    pkiDir: path.join(workDir, "server"),
  });
  await simulator.start();
});
afterAll(async () => {
  await simulator.dispose();
  await rm(workDir, { recursive: true, force: true });
});

function newDriver(endpointUrl: string): OpcuaDriver {
  return new OpcuaDriver({
    endpointUrl,
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    connectionStrategy: { maxRetry: 1_000, initialDelayMs: 100, maxDelayMs: 400, randomisationFactor: 0.1 },
    timeouts: { keepAliveMs: 1_000, requestMs: 3_000 },
    monitoredItemRetry: { initialDelayMs: 100, maxDelayMs: 400 },
  });
}

describe("notifications the server replays after a repair (Republish)", () => {
  test("answers lost while the server→client direction was down are never delivered good; the tags are good again from live values", async () => {
    const proxy = new TcpProxy(simulator.port);
    const driver = newDriver(await proxy.start());
    const received: (Sample & { at: number; status: string })[] = [];
    try {
      await driver.connect();
      await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) =>
        received.push(...samples.map((sample) => ({ ...sample, at: Date.now(), status: driver.status }))),
      );
      await waitFor(() => received.filter((sample) => sample.tag === "kiln.a").length >= 5, { what: "values" });
      const mutedAt = Date.now();
      proxy.muteServer();
      await waitFor(() => driver.status === "reconnecting", { what: "the stall declared", timeoutMs: 10_000 });
      await new Promise((resolve) => setTimeout(resolve, STALL_MS - (Date.now() - mutedAt)));
      proxy.restore();
      await waitFor(() => driver.status === "connected", { what: "connected again", timeoutMs: 20_000 });
      await new Promise((resolve) => setTimeout(resolve, 1_000));

      const after = received.filter((sample) => sample.at >= mutedAt);
      // No sample delivered good is older than a live one can be (before: 6 replayed values, 5–6 s old)...
      const staleGood = after.filter(
        (sample) =>
          sample.tag === "kiln.a" && sample.quality.severity === "good" && sample.at - sample.timestamp > LIVE_AGE_MS,
      );
      expect(staleGood).toEqual([]);
      // ...and the server did replay what was lost (else this test proves nothing), delivered as history.
      const replayed = after.filter((sample) => /replayed by the OPC UA server/.test(sample.quality.reason ?? ""));
      expect(replayed.length).toBeGreaterThan(0);
      for (const sample of replayed) {
        expect(sample.quality.severity).toBe("uncertain");
        expect(sample.at - sample.timestamp).toBeGreaterThan(LIVE_AGE_MS);
      }
      // Live values again: the changing tag good and current at the end.
      const lastA = after.filter((sample) => sample.tag === "kiln.a").at(-1);
      expect(lastA?.quality.severity).toBe("good");
      expect(lastA!.at - lastA!.timestamp).toBeLessThan(LIVE_AGE_MS);
    } finally {
      await driver.close();
      await proxy.close();
    }
  }, 60_000);

  // Sibling: a value unchanged since before the outage is current, not history: it must come back
  // good once the link is repaired (here through the current values node-opcua's server resends
  // when the session is re-activated), with its old source timestamp.
  test("a value unchanged since before the outage comes back good after the repair", async () => {
    const proxy = new TcpProxy(simulator.port);
    const driver = newDriver(await proxy.start());
    const received: (Sample & { at: number })[] = [];
    try {
      await driver.connect();
      await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) =>
        received.push(...samples.map((sample) => ({ ...sample, at: Date.now() }))),
      );
      await waitFor(() => received.some((sample) => sample.tag === "kiln.k" && sample.quality.severity === "good"), {
        what: "kiln.k good",
      });
      const mutedAt = Date.now();
      proxy.muteServer();
      await waitFor(() => driver.status === "reconnecting", { what: "the stall declared", timeoutMs: 10_000 });
      await new Promise((resolve) => setTimeout(resolve, STALL_MS - (Date.now() - mutedAt)));
      proxy.restore();
      await waitFor(() => driver.status === "connected", { what: "connected again", timeoutMs: 20_000 });
      const k = await waitFor(
        () => {
          const last = received.filter((sample) => sample.tag === "kiln.k").at(-1);
          return last?.quality.severity === "good" && last.at > mutedAt && last;
        },
        { what: "kiln.k good again", timeoutMs: 5_000 },
      );
      expect(k.value).toBe(7);
      expect(k.timestamp).toBeLessThan(mutedAt);
      // It went through the loss (uncertain) on the way.
      expect(
        received.some(
          (sample) => sample.tag === "kiln.k" && sample.at >= mutedAt && sample.quality.severity === "uncertain",
        ),
      ).toBe(true);
    } finally {
      await driver.close();
      await proxy.close();
    }
  }, 60_000);

  // The same on a server that, like many C stacks, does not resend current values when a session
  // is re-activated (the spec asks that of TransferSubscriptions only): the unchanged value gets
  // no notification at all, so the driver reads the values still without a live one after the repair.
  test("a server that resends nothing on re-activation: the unchanged value comes back good by a read after the repair", async () => {
    const resend = Object.getOwnPropertyDescriptor(ServerSession.prototype, "resendMonitoredItemInitialValues")!;
    Object.defineProperty(ServerSession.prototype, "resendMonitoredItemInitialValues", {
      ...resend,
      value: () => Promise.resolve(),
    });
    const proxy = new TcpProxy(simulator.port);
    const driver = newDriver(await proxy.start());
    const received: (Sample & { at: number })[] = [];
    try {
      await driver.connect();
      await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) =>
        received.push(...samples.map((sample) => ({ ...sample, at: Date.now() }))),
      );
      await waitFor(() => received.some((sample) => sample.tag === "kiln.k" && sample.quality.severity === "good"), {
        what: "kiln.k good",
      });
      const mutedAt = Date.now();
      proxy.muteServer();
      await waitFor(() => driver.status === "reconnecting", { what: "the stall declared", timeoutMs: 10_000 });
      await new Promise((resolve) => setTimeout(resolve, STALL_MS - (Date.now() - mutedAt)));
      proxy.restore();
      await waitFor(() => driver.status === "connected", { what: "connected again", timeoutMs: 20_000 });
      const k = await waitFor(
        () => {
          const last = received.filter((sample) => sample.tag === "kiln.k").at(-1);
          return last?.quality.severity === "good" && last.at > mutedAt && last;
        },
        { what: "kiln.k good again", timeoutMs: 5_000 },
      );
      // Stamped by the server when read (the simulator's variables carry no older time).
      expect(k.value).toBe(7);
    } finally {
      Object.defineProperty(ServerSession.prototype, "resendMonitoredItemInitialValues", resend);
      await driver.close();
      await proxy.close();
    }
  }, 60_000);
});
