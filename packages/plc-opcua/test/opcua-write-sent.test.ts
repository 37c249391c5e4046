import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createControlSystem, defineTags, KilnError, MemoryStore, type ControlSystem } from "@kiln/core";
import { ObjectIds } from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OPCUA_SIMULATOR_NAMESPACE_URI, OpcuaDriver, OpcuaSimulator } from "../src/index";
import { TcpProxy } from "./support/tcp-proxy";
import { waitFor } from "./support/wait-for";

// Issue 13, adv13 HIGH-1, MEDIUM-1, LOW-1: a write the server applied, whose answer was lost (the
// connection cut as the server answered; the link watchdog declaring the stall at the write's
// deadline), was rejected KILN_CONNECTION_FAILED, retryable, without `details.sent`. The core's
// driver contract reads that as "the device did not take the value": the audit said the write
// failed, nothing was re-asserted, and an application retrying a pulse applied it twice. Now
// every write failure says whether the request may have reached the server (docs/adr/0022,
// amendment fix13y), and close() ends calls still out and returns within the link stall bound.
const NS = OPCUA_SIMULATOR_NAMESPACE_URI;
const tags = defineTags({
  "kiln.w": { dataType: "int32", address: `nsu=${NS};s=Kiln.W`, scanGroup: "fast", access: "readwrite" },
  "kiln.r": { dataType: "int32", address: `nsu=${NS};s=Kiln.R`, scanGroup: "fast" },
});
const admin = { id: "ada", roles: ["admin"] };
/** timeouts of the driver: the link stall bound is about 2 keep-alive periods (2 s here). */
const KEEP_ALIVE_MS = 1_000;
const REQUEST_MS = 3_000;
/** The stall bound (2 keep-alive periods plus the measured response time), with timer slack. */
const STALL_BOUND_MS = 2 * KEEP_ALIVE_MS + 500;

let workDir: string;
let simulator: OpcuaSimulator;
beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-sent-"));
  simulator = new OpcuaSimulator({
    tags,
    signals: {},
    securityModes: ["None"],
    updateIntervalMs: 100,
    pkiDir: path.join(workDir, "server"),
  });
  await simulator.start();
});
afterAll(async () => {
  await simulator.dispose();
  await rm(workDir, { recursive: true, force: true });
});

function newDriver(endpointUrl: string, requestMs = REQUEST_MS): OpcuaDriver {
  return new OpcuaDriver({
    endpointUrl,
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    connectionStrategy: { maxRetry: 1_000, initialDelayMs: 100, maxDelayMs: 400, randomisationFactor: 0.1 },
    timeouts: { keepAliveMs: KEEP_ALIVE_MS, requestMs },
  });
}

async function withSystem(
  run: (parts: { system: ControlSystem; driver: OpcuaDriver; proxy: TcpProxy }) => Promise<void>,
): Promise<void> {
  const proxy = new TcpProxy(simulator.port);
  const driver = newDriver(await proxy.start());
  const system = createControlSystem({
    machineId: "fix13y",
    tags,
    store: new MemoryStore(),
    driver,
    scanGroups: { fast: { periodMs: 200, mode: "subscribe" } },
    acquisition: { timeoutMs: 5_000, reconnect: { initialDelayMs: 100, maxDelayMs: 400 } },
  });
  await system.start();
  try {
    await run({ system, driver, proxy });
  } finally {
    proxy.restore();
    await system.stop();
    await proxy.close();
    simulator.closeSessions();
  }
}

const failure = (promise: Promise<unknown>): Promise<KilnError> =>
  promise.then(
    () => {
      throw new Error("expected the write to fail");
    },
    (error: unknown) => {
      if (!KilnError.is(error)) throw error;
      return error;
    },
  );

async function auditOf(system: ControlSystem, from: number) {
  return system.history.audit.query({ from, to: Date.now() + 1 });
}

describe("a write whose answer is lost after the server applied it (adv13 HIGH-1)", () => {
  test("the connection cut as the server answers: details.sent true, not retryable, audited :landed", async () => {
    await withSystem(async ({ system, driver, proxy }) => {
      const from = Date.now() - 1;
      await system.writeTag(admin, "kiln.w", 1);
      simulator.resetStats();
      const cut = proxy.dropOnResponse(ObjectIds.WriteResponse_Encoding_DefaultBinary);
      const error = await failure(system.writeTag(admin, "kiln.w", 42));
      await cut;
      proxy.restore(); // the cut refuses new connections until then
      expect(simulator.valueOf("kiln.w")).toBe(42);
      expect(error.details).toMatchObject({ sent: true });
      expect(error.retryable).toBe(false);
      expect(error.message).toMatch(/may have applied it/);
      // The core's may-have-landed handling: audited `:landed` (never `:lost`); a later write
      // goes out once the link is back.
      await waitFor(() => driver.status === "connected", { what: "connected again" });
      await system.writeTag(admin, "kiln.w", 43);
      expect(simulator.valueOf("kiln.w")).toBe(43);
      const trail = await auditOf(system, from);
      expect(trail.filter((entry) => entry.id.endsWith(":lost"))).toEqual([]);
      const landed = trail.filter((entry) => entry.id.endsWith(":landed"));
      expect(landed).toMatchObject([{ outcome: "allowed" }]);
      expect(landed[0]?.reason).toContain("may have reached the device");
    });
  });

  test("a stall the link watchdog declares at the write's deadline: details.sent true, a later write held behind it", async () => {
    await withSystem(async ({ system, driver, proxy }) => {
      const from = Date.now() - 1;
      await system.writeTag(admin, "kiln.w", 1); // the node's data type is read on this session
      proxy.muteServer(); // the server gets the write and applies it; its answers are lost
      const startedAt = Date.now();
      const stalled = failure(system.writeTag(admin, "kiln.w", 77));
      await waitFor(() => simulator.valueOf("kiln.w") === 77, { what: "the server applied 77" });
      // Issued while the first is out: held behind it (the core's rule for a write that may land).
      const next = system.writeTag(admin, "kiln.w", 78).then(
        () => "resolved",
        (error: unknown) => error,
      );
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(simulator.valueOf("kiln.w")).toBe(77);
      const error = await stalled;
      expect(Date.now() - startedAt).toBeLessThan(REQUEST_MS + 1_000);
      // Both are due at the write's deadline (requestMs): the request's own bound (KILN_TIMEOUT, the
      // driver's below node-opcua's 5 s minimum, amendment fix13ae) and the watchdog's stall
      // (KILN_CONNECTION_FAILED, "link stalled"); whichever timer runs first answers the write.
      expect(error).toMatchObject({ retryable: false, details: { sent: true } });
      expect(["KILN_TIMEOUT", "KILN_CONNECTION_FAILED"]).toContain(error.code);
      expect(error.message).toMatch(error.code === "KILN_TIMEOUT" ? /timed out/ : /link stalled/);
      // The stall is declared either way: the link is lost, not only the request.
      await waitFor(() => driver.status !== "connected", { what: "the link stall declared" });
      proxy.restore();
      await next;
      const trail = await auditOf(system, from);
      expect(trail.filter((entry) => entry.id.endsWith(":lost"))).toEqual([]);
      expect(trail.filter((entry) => entry.id.endsWith(":landed"))).toHaveLength(1);
      // The tag ends with the latest-issued write, whatever became of the one in between.
      await waitFor(() => simulator.valueOf("kiln.w") === 78, { what: "the latest write, 78, on the server" });
    });
  });
});

describe("a write ended before its request went out says details.sent false (adv13 LOW-1)", () => {
  test("an already-aborted signal: KILN_ABORTED, sent false, nothing written", async () => {
    const proxy = new TcpProxy(simulator.port);
    const driver = newDriver(await proxy.start());
    await driver.connect();
    try {
      await driver.write(tags.get("kiln.w")!, 5);
      simulator.resetStats();
      const error = await failure(driver.write(tags.get("kiln.w")!, 6, AbortSignal.abort()));
      expect(error).toMatchObject({ code: "KILN_ABORTED", details: { sent: false } });
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(simulator.stats.writeRequests).toBe(0);
      expect(simulator.valueOf("kiln.w")).toBe(5);
    } finally {
      await driver.close();
      await proxy.close();
    }
  });

  test("(sibling) the server answers a refusal (BadNotWritable): KILN_WRITE_REJECTED says sent false", async () => {
    const proxy = new TcpProxy(simulator.port);
    const driver = newDriver(await proxy.start());
    await driver.connect();
    try {
      // A read-only node declared writable: the server answers the WriteRequest with a Bad status.
      const refused = await failure(driver.write({ ...tags.get("kiln.r")!, access: "readwrite" }, 3));
      expect(refused).toMatchObject({ code: "KILN_WRITE_REJECTED", details: { sent: false } });
    } finally {
      await driver.close();
      await proxy.close();
    }
  });
});

describe("close() on a stalled link (adv13 MEDIUM-1)", () => {
  test("returns within the stall bound and ends the calls still out: KILN_ABORTED, the write sent true", async () => {
    const proxy = new TcpProxy(simulator.port);
    const driver = newDriver(await proxy.start(), 8_000);
    await driver.connect();
    try {
      await driver.write(tags.get("kiln.w")!, 1);
      proxy.blackhole();
      const writing = failure(driver.write(tags.get("kiln.w")!, 2));
      const reading = failure(driver.read([tags.get("kiln.w")!]));
      await new Promise((resolve) => setTimeout(resolve, 300));
      const closeAt = Date.now();
      const closing = driver.close();
      const [write, read] = await Promise.all([writing, reading]);
      const endedIn = Date.now() - closeAt;
      await closing;
      const closedIn = Date.now() - closeAt;
      expect(endedIn).toBeLessThan(500);
      expect(write).toMatchObject({ code: "KILN_ABORTED", retryable: false, details: { sent: true } });
      expect(read).toMatchObject({ code: "KILN_ABORTED" });
      // Before: the whole requestMs (8 s) for CloseSession, then again for the disconnect.
      expect(closedIn).toBeLessThan(STALL_BOUND_MS + 500);
    } finally {
      proxy.restore();
      await driver.close();
      await proxy.close();
      simulator.closeSessions();
    }
  });
});
