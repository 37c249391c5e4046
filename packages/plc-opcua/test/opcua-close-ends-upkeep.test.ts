import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { defineTags, KilnError } from "@kiln/core";
import { ObjectIds } from "node-opcua-client";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { OPCUA_SIMULATOR_NAMESPACE_URI, OpcuaDriver, OpcuaSimulator } from "../src/index";
import { TcpProxy } from "./support/tcp-proxy";
import { waitFor } from "./support/wait-for";

// Issue 13, adversarial review of fix13 (MEDIUM): close() waited for the requests the driver sends
// itself (the post-repair reconcile's read of the server's namespace table and limits) until their
// own timeout, `timeouts.requestMs`: 19.7 s with requestMs 20 s and a server that stopped answering
// right after a repair. Now every request on the driver's session ends at close() with KILN_ABORTED
// (docs/adr/0022, amendment fix13z), so close() takes at most its dispose budget (the link stall
// bound: about 2 s with keepAliveMs 1000).
const NS = OPCUA_SIMULATOR_NAMESPACE_URI;
const tags = defineTags({ "kiln.a": { dataType: "int32", address: `nsu=${NS};s=Kiln.A` } });
const REQUEST_MS = 20_000;
/** The dispose budget (2 keep-alives + response time) plus room for a loaded machine. */
const CLOSE_WITHIN_MS = 5_000;

let workDir: string;
let simulator: OpcuaSimulator;
let proxy: TcpProxy | undefined;
let driver: OpcuaDriver | undefined;
beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-close-ends-upkeep-"));
  simulator = new OpcuaSimulator({
    tags,
    signals: { "kiln.a": { kind: "counter", start: 1, step: 1 } },
    securityModes: ["None"],
    updateIntervalMs: 50,
    pkiDir: path.join(workDir, "server"),
  });
  await simulator.start();
});
afterEach(async () => {
  await driver?.close();
  await proxy?.close();
  driver = undefined;
  proxy = undefined;
});
afterAll(async () => {
  await simulator.dispose();
  await rm(workDir, { recursive: true, force: true });
});

async function connected(): Promise<{ driver: OpcuaDriver; proxy: TcpProxy }> {
  proxy = new TcpProxy(Number(new URL(simulator.endpointUrl).port));
  const endpointUrl = await proxy.start();
  driver = new OpcuaDriver({
    endpointUrl,
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    connectionStrategy: { maxRetry: 1_000, initialDelayMs: 100, maxDelayMs: 400, randomisationFactor: 0.1 },
    timeouts: { keepAliveMs: 1_000, requestMs: REQUEST_MS },
  });
  await driver.connect();
  return { driver, proxy };
}

async function timed(call: () => Promise<void>): Promise<number> {
  const start = performance.now();
  await call();
  return performance.now() - start;
}

describe("close() ends the requests the driver sends itself", () => {
  test(
    "a server that stops answering right after a repair: close() within the dispose budget, nothing dials after it",
    async () => {
      const { driver, proxy } = await connected();
      expect(simulator.liveSubscriptions().sessions).toBe(1);
      proxy.drop();
      await new Promise((resolve) => setTimeout(resolve, 300));
      // The repair's first Read is the reconcile's read of the namespace table and limits: the
      // server gets it (and every later request) but its answers are lost.
      const muted = proxy.freezeOnRequest(ObjectIds.ReadRequest_Encoding_DefaultBinary, "mute");
      proxy.restore();
      await muted;
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(driver.status).toBe("reconnecting");
      const closeMs = await timed(() => driver.close());
      expect(closeMs).toBeLessThan(CLOSE_WITHIN_MS);
      expect(driver.status).toBe("closed");
      // Nothing keeps running: with the link back, the closed driver dials no more.
      const dialled = proxy.connections;
      proxy.restore();
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      expect(proxy.connections).toBe(dialled);
    },
    2 * REQUEST_MS,
  );

  test(
    "sibling: a browse the server leaves unanswered rejects KILN_ABORTED at close(), within the budget",
    async () => {
      const sessionsBefore = simulator.liveSubscriptions().sessions;
      const { driver, proxy } = await connected();
      const muted = proxy.freezeOnRequest(ObjectIds.BrowseRequest_Encoding_DefaultBinary, "mute");
      const browsing = driver.browse().then(
        () => undefined,
        (error: unknown) => error,
      );
      await muted;
      await new Promise((resolve) => setTimeout(resolve, 200));
      const closeMs = await timed(() => driver.close());
      const error = await browsing;
      expect(closeMs).toBeLessThan(CLOSE_WITHIN_MS);
      expect(KilnError.is(error) && error.code).toBe("KILN_ABORTED");
      // The CloseSession reached the server (only its answer is lost): the session is gone there.
      await waitFor(() => simulator.liveSubscriptions().sessions === sessionsBefore, { timeoutMs: 2_000 });
    },
    2 * REQUEST_MS,
  );
});
