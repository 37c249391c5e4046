import path from "node:path";
import { defineTags, type Sample } from "@kiln/core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OpcuaDriver } from "../src/index";
import { type RawChannel, type RawOpcuaServer, startRawOpcuaServer } from "./support/raw-opcua-server";
import { waitFor } from "./support/wait-for";

// Issue 13, adversarial pass adv13h (MEDIUM): node-opcua's publish engine sends five more Publish
// requests after each repair of the session (`replenish_publish_request_queue`) without counting
// those already outstanding: 15 → 65 held by the server after 10 channel cuts, never drained while
// connected, until a small PLC's publish-queue limit answers BadTooManyPublishRequests. Counted on
// the server: the Publish requests each session's publish engine holds (received, not answered).
const NS = "urn:kiln:test:publish-requests-bounded";
const tags = defineTags({
  a: { dataType: "float64", address: `nsu=${NS};s=X`, scanGroup: "a" },
  b: { dataType: "float64", address: `nsu=${NS};s=X`, scanGroup: "b" },
  c: { dataType: "float64", address: `nsu=${NS};s=X`, scanGroup: "c" },
});

let raw: RawOpcuaServer;
const channels = new Set<RawChannel>();
let publishRequests = 0;
/** BadTooManyPublishRequests answers the server sent. */
let tooMany = 0;

beforeAll(async () => {
  raw = await startRawOpcuaServer({ namespaceUri: NS });
  raw.onRequest((request) => {
    if (request?.constructor.name === "PublishRequest") publishRequests++;
  });
  raw.server.on("create_session", (session) => {
    const engine = (session as unknown as { publishEngine: Record<string, (...args: unknown[]) => unknown> })
      .publishEngine;
    const sendError = engine._send_error_for_request!;
    engine._send_error_for_request = function (this: unknown, publishData: unknown, statusCode: unknown) {
      if (String((statusCode as { name?: string }).name) === "BadTooManyPublishRequests") tooMany++;
      return sendError.call(this, publishData, statusCode);
    };
  });
  raw.server.on("newChannel", (channel) => channels.add(channel as unknown as RawChannel));
  raw.server.on("closeChannel", (channel) => channels.delete(channel as unknown as RawChannel));
});

afterAll(async () => {
  await raw?.close();
});

/** The Publish requests the server holds for each live session (received and not yet answered). */
function heldPublishRequests(): number[] {
  return raw.server.engine
    .getSessions()
    .map(
      (session) =>
        (session as unknown as { publishEngine: { pendingPublishRequestCount: number } }).publishEngine
          .pendingPublishRequestCount,
    );
}

function newDriver(): OpcuaDriver {
  return new OpcuaDriver({
    endpointUrl: raw.url,
    security: { mode: "None" },
    pki: { dir: path.join(raw.workDir, "client") },
    connectionStrategy: { maxRetry: 1_000, initialDelayMs: 100, maxDelayMs: 500, randomisationFactor: 0 },
    timeouts: { keepAliveMs: 1_000, requestMs: 2_000, connectMs: 3_000, sessionMs: 10_000 },
    subscriptions: { maxPublishingIntervalMs: 500, keepAliveMs: 1_500 },
  });
}

/** Breaks every secure channel and waits for the driver to be connected again with fresh values. */
async function cut(driver: OpcuaDriver, received: Sample[]): Promise<void> {
  await waitFor(() => channels.size > 0 && driver.status === "connected", { what: "a connected channel" });
  for (const channel of [...channels]) channel.abruptlyInterrupt!();
  await waitFor(() => driver.status !== "connected", { what: "the loss noticed", timeoutMs: 5_000 });
  await waitFor(() => driver.status === "connected", { what: "connected again", timeoutMs: 20_000 });
  const mark = received.length;
  await waitFor(
    () =>
      ["a", "b", "c"].every((name) =>
        received.slice(mark).some((s) => s.tag === name && s.quality.severity === "good"),
      ),
    {
      what: "fresh good values of every group",
      timeoutMs: 10_000,
    },
  );
}

/** The driver's bound for 3 subscriptions: node-opcua's pipeline of 5 (one per subscription and 2 more when larger). */
const publishBound = 5;

describe("Publish requests outstanding on the session stay bounded across channel cuts (adv13h MEDIUM)", () => {
  test("after 10 and 20 cuts the server holds at most a fixed few per session", async () => {
    const driver = newDriver();
    const received: Sample[] = [];
    try {
      await driver.connect();
      for (const [index, name] of ["a", "b", "c"].entries()) {
        await driver.subscribe(
          tags.list().filter((tag) => tag.name === name),
          { samplingIntervalMs: 50 * (index + 1) },
          (samples) => received.push(...samples),
        );
      }
      await waitFor(() => raw.holds().subscriptions === 3, { what: "3 subscriptions" });
      const before = heldPublishRequests();
      const counts: number[][] = [];
      for (let index = 1; index <= 20; index++) {
        await cut(driver, received);
        // Let node-opcua's Publish requests of the repair reach the server.
        await new Promise((resolve) => setTimeout(resolve, 300));
        counts.push(heldPublishRequests());
        if (index === 10 || index === 20) {
          // Drained back to the bound while connected (an answer above it is not renewed).
          await waitFor(() => Math.max(...heldPublishRequests()) <= publishBound, {
            what: `the held Publish requests back at ${publishBound} (${JSON.stringify(heldPublishRequests())})`,
            timeoutMs: 5_000,
          });
        }
      }
      // Before the bound (measured): 15 held before, 63 after 10 cuts; the publish queue grew by 5 a cut.
      expect(Math.max(...before)).toBeLessThanOrEqual(publishBound + 4);
      // Never more than one refill of node-opcua (it checks the bound once for its 5 sends) above it.
      expect(Math.max(...counts.flat())).toBeLessThanOrEqual(publishBound + 4);
      expect(raw.holds()).toMatchObject({ sessions: 1, subscriptions: 3 });
    } finally {
      await driver.close();
    }
  }, 240_000);

  test("a server that holds only 3 answers BadTooManyPublishRequests a few times, no storm, values good only when current", async () => {
    const { ServerSession } = await import("node-opcua-server");
    const limit = ServerSession.maxPublishRequestInQueue;
    ServerSession.maxPublishRequestInQueue = 3; // a small PLC's publish queue
    const driver = newDriver();
    const received: Sample[] = [];
    tooMany = 0;
    try {
      await driver.connect();
      for (const [index, name] of ["a", "b", "c"].entries()) {
        await driver.subscribe(
          tags.list().filter((tag) => tag.name === name),
          { samplingIntervalMs: 50 * (index + 1) },
          (samples) => received.push(...samples),
        );
      }
      for (let index = 0; index < 5; index++) await cut(driver, received);
      const [start, tooManyAtStart, mark] = [publishRequests, tooMany, received.length];
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      // No storm: node-opcua learnt the limit, so the server refuses no more once it is learnt,
      // and Publish requests follow the answers (3 groups at 50, 100, 150 ms: ~37 a second).
      expect(tooMany - tooManyAtStart).toBe(0);
      // The refusals come with the cuts: the server still holds the broken channel's requests when
      // node-opcua sends its own again on the new one, and refuses the oldest (answered into the dead
      // channel). At most one pipeline per cut and the first subscriptions'.
      expect(tooMany).toBeLessThanOrEqual(6 * (publishBound + 4));
      expect(publishRequests - start).toBeLessThan(3 * 60);
      for (const name of ["a", "b", "c"])
        expect(
          received.slice(mark).filter((s) => s.tag === name && s.quality.severity === "good").length,
        ).toBeGreaterThan(5);
      // Every good value is current: the server's counter only grows, so a good value never goes back.
      const last = new Map<string, number>();
      for (const sample of received) {
        if (sample.quality.severity !== "good") continue;
        expect(sample.value as number).toBeGreaterThan(last.get(sample.tag) ?? 0);
        last.set(sample.tag, sample.value as number);
      }
      expect(driver.status).toBe("connected");
    } finally {
      ServerSession.maxPublishRequestInQueue = limit;
      await driver.close();
    }
  }, 120_000);
});
