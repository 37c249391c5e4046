import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { defineTags, KilnError } from "@kiln/core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OPCUA_SIMULATOR_NAMESPACE_URI, OpcuaDriver, OpcuaSimulator } from "../src/index";
import { waitFor } from "./support/wait-for";

// Sibling of plc-modbus modbus-offline-read-yields (adv12x LOW, issue 12): while the driver
// reconnects, read() and write() reject at once without I/O. A caller retrying in a tight loop
// (`for (;;) try { await driver.read(tags) } catch {}`) then ran on microtasks only: no timer fired,
// so the driver's own reconnect attempt never ran and the loop never ended. A call that does no I/O
// now lets the event loop turn before it settles.

const tags = defineTags({
  "line.speed": {
    dataType: "float64",
    access: "readwrite",
    address: `nsu=${OPCUA_SIMULATOR_NAMESPACE_URI};s=Line.Speed`,
  },
});

let workDir: string;
let simulator: OpcuaSimulator;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-yields-"));
  simulator = new OpcuaSimulator({ tags, pkiDir: path.join(workDir, "server") });
  await simulator.start();
});

afterAll(async () => {
  await simulator?.dispose();
  await rm(workDir, { recursive: true, force: true });
});

function newDriver(): OpcuaDriver {
  return new OpcuaDriver({
    endpointUrl: simulator.endpointUrl,
    pki: { dir: path.join(workDir, "client"), trustedServerCertificates: [simulator.certificateFile] },
    connectionStrategy: { maxRetry: 1, initialDelayMs: 100, maxDelayMs: 400, randomisationFactor: 0.1 },
    timeouts: { keepAliveMs: 1_000, requestMs: 3_000 },
  });
}

/** Calls `call` back to back (errors swallowed) until `done()` or 20 s; counts 1 ms timer ticks. */
async function tightLoop(call: () => Promise<unknown>, done: () => boolean): Promise<{ ticks: number; calls: number }> {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  let calls = 0;
  const until = Date.now() + 20_000;
  // Bounded by calls as well: without a turn of the event loop the timer never fires.
  while (!done() && Date.now() < until && calls < 2_000_000) {
    try {
      await call();
    } catch (error) {
      if (!(error instanceof KilnError)) throw error;
    }
    calls++;
  }
  clearInterval(timer);
  return { ticks, calls };
}

describe("OpcuaDriver calls while reconnecting", () => {
  test("a tight read loop lets timers run and the driver reconnect", async () => {
    const driver = newDriver();
    await driver.connect();
    try {
      await simulator.stop();
      await waitFor(() => driver.status === "reconnecting", { what: "status reconnecting" });
      // The server comes back on a timer: the loop below must let it (and the reconnect) run.
      const restart = new Promise<void>((resolve, reject) =>
        setTimeout(() => void simulator.start().then(resolve, reject), 200),
      );
      const { ticks, calls } = await tightLoop(
        () => driver.read(tags.list()),
        () => driver.status === "connected",
      );
      await restart;
      expect(calls).toBeGreaterThan(0);
      expect(ticks).toBeGreaterThan(10);
      expect(driver.status).toBe("connected");
      const [sample] = await driver.read(tags.list());
      expect(sample!.quality.severity).toBe("good");
    } finally {
      await driver.close();
    }
  }, 60_000);

  test("a tight browse loop lets timers run too (adv13za M1)", async () => {
    const driver = newDriver();
    await driver.connect();
    try {
      await simulator.stop();
      await waitFor(() => driver.status === "reconnecting", { what: "status reconnecting" });
      let stop = false;
      setTimeout(() => (stop = true), 300);
      const { ticks, calls } = await tightLoop(
        () => driver.browse(),
        () => stop,
      );
      expect(calls).toBeGreaterThan(0);
      expect(ticks).toBeGreaterThan(10);
    } finally {
      await simulator.start();
      await driver.close();
    }
  }, 60_000);

  test("a tight write loop lets timers run too", async () => {
    const driver = newDriver();
    await driver.connect();
    try {
      await simulator.stop();
      await waitFor(() => driver.status === "reconnecting", { what: "status reconnecting" });
      let stop = false;
      setTimeout(() => (stop = true), 300);
      const { ticks, calls } = await tightLoop(
        () => driver.write(tags.get("line.speed"), 1.5),
        () => stop,
      );
      expect(calls).toBeGreaterThan(0);
      expect(ticks).toBeGreaterThan(10);
    } finally {
      await simulator.start();
      await driver.close();
    }
  }, 60_000);
});
