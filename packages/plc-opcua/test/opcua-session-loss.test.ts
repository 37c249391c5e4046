import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createControlSystem, defineTags, MemoryStore, QualityCodes, type ControlSystem } from "@kiln/core";
import { type DriverStatusChange } from "@kiln/core/driver-kit";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OPCUA_SIMULATOR_NAMESPACE_URI, OpcuaDriver, OpcuaSimulator } from "../src/index";
import { waitFor } from "./support/wait-for";

// Issue 13, fault 5: after a reconnect CVT observers received the value of an unchanged
// subscribed tag twice (the reconnect probe's read, then the subscription's first notification:
// same value, timestamp and quality); and a session the server dropped with the link up left
// values good until node-opcua had repaired it.
const NS = OPCUA_SIMULATOR_NAMESPACE_URI;
const tags = defineTags({
  "kiln.counter": { dataType: "int32", address: `nsu=${NS};s=Kiln.Counter`, scanGroup: "fast" },
  "kiln.setpoint": { dataType: "int32", address: `nsu=${NS};s=Kiln.Setpoint`, scanGroup: "fast" },
});

let workDir: string;
let simulator: OpcuaSimulator;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-session-loss-"));
  simulator = new OpcuaSimulator({
    tags,
    signals: { "kiln.counter": { kind: "counter", start: 1, step: 1 } },
    securityModes: ["None"],
    updateIntervalMs: 50,
    pkiDir: path.join(workDir, "server"),
  });
  await simulator.start();
  simulator.setValue("kiln.setpoint", 7);
});

afterAll(async () => {
  await simulator?.dispose();
  await rm(workDir, { recursive: true, force: true });
});

interface Seen {
  readonly severity: string;
  readonly code: number;
  /** Same value, timestamp and quality as the update before it. */
  readonly repeat: boolean;
}

function newSystem(): { system: ControlSystem; seen: Seen[]; statuses: DriverStatusChange[] } {
  const driver = new OpcuaDriver({
    endpointUrl: simulator.endpointUrl,
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    connectionStrategy: { maxRetry: 1_000, initialDelayMs: 100, maxDelayMs: 400, randomisationFactor: 0.1 },
    timeouts: { keepAliveMs: 1_000, requestMs: 3_000 },
    monitoredItemRetry: { initialDelayMs: 100, maxDelayMs: 400 },
  });
  const statuses: DriverStatusChange[] = [];
  driver.onStatusChange((change) => statuses.push(change));
  const system = createControlSystem({
    machineId: "kiln-1",
    tags,
    store: new MemoryStore(),
    driver,
    scanGroups: { fast: { periodMs: 50, mode: "subscribe" } },
    acquisition: { timeoutMs: 3_000, reconnect: { initialDelayMs: 100, maxDelayMs: 500 } },
    logging: { maxLatencyMs: 100 },
  });
  const seen: Seen[] = [];
  system.cvt.observe("kiln.setpoint", (change) =>
    seen.push({
      severity: change.sample.quality.severity,
      code: change.sample.quality.code,
      repeat:
        change.previous !== undefined &&
        !change.valueChanged &&
        !change.qualityChanged &&
        change.sample.timestamp === change.previous.timestamp,
    }),
  );
  return { system, seen, statuses };
}

async function goodAgain(system: ControlSystem, seen: Seen[], from: number): Promise<void> {
  await waitFor(
    () =>
      system.health().acquisition.link === "online" &&
      seen.slice(from).some((entry) => entry.severity === "good") &&
      system.read("kiln.setpoint")?.quality.severity === "good",
    { what: "the unchanged tag good again" },
  );
  // Let a late second delivery arrive, if one were coming.
  await new Promise((resolve) => setTimeout(resolve, 1_500));
}

describe("session loss and reconnects (issue 13, fault 5)", () => {
  test("a session the server dropped turns values uncertain at once (status reconnecting), then good once each", async () => {
    const { system, seen, statuses } = newSystem();
    await system.start();
    try {
      await goodAgain(system, seen, 0);
      const mark = seen.length;
      expect(simulator.closeSessions()).toBe(1);
      await waitFor(() => seen.slice(mark).some((entry) => entry.severity === "uncertain"), {
        what: "the unchanged tag uncertain after the session drop",
      });
      const lost = statuses.find((change) => change.to === "reconnecting");
      expect(lost?.reason).toMatch(/dropped the session/);
      await goodAgain(system, seen, mark);
      expect(seen.slice(mark).map((entry) => entry.severity)).toEqual(["uncertain", "good"]);
      expect(seen.slice(mark)[0]!.code).toBe(QualityCodes.UncertainNoCommunicationLastUsableValue);
      expect(seen.filter((entry) => entry.repeat)).toEqual([]);
    } finally {
      await system.stop();
    }
  }, 60_000);

  test("after start and after a server restart, observers get an unchanged subscribed value once", async () => {
    const { system, seen } = newSystem();
    await system.start();
    try {
      await goodAgain(system, seen, 0);
      expect(seen.map((entry) => entry.severity)).toEqual(["good"]);
      const mark = seen.length;
      await simulator.stop();
      await waitFor(() => system.health().acquisition.link === "offline", { what: "offline" });
      await simulator.start();
      await goodAgain(system, seen, mark);
      expect(seen.slice(mark).map((entry) => entry.severity)).toEqual(["uncertain", "good"]);
      expect(seen.filter((entry) => entry.repeat)).toEqual([]);
    } finally {
      await system.stop();
    }
  }, 60_000);

  test("while the server is down, each failed reconnect attempt's reason shows in the status change and health() (issue 13, fault 2)", async () => {
    const { system, seen, statuses } = newSystem();
    await system.start();
    try {
      await goodAgain(system, seen, 0);
      await simulator.stop();
      const attempts = await waitFor(
        () => {
          const failed = statuses.filter((change) => change.from === "reconnecting" && change.to === "reconnecting");
          return failed.length >= 2 ? failed : undefined;
        },
        { what: "two failed reconnect attempts reported" },
      );
      const reasons = attempts.map((change) => change.reason!);
      // The attempt's own reason (no connection opened), not the first "connection lost"; it
      // does not claim TCP failed, as node-opcua does not say which stage did (adv13s L5).
      expect(
        reasons.every((reason) =>
          /^Reconnecting to opc\.tcp:\/\/\S+ failed \(attempt \d+: no TCP connection or secure channel opened: refused, or timed out after \d+ ms/.test(
            reason,
          ),
        ),
      ).toBe(true);
      expect(attempts.every((change) => change.code === "KILN_CONNECTION_FAILED")).toBe(true);
      await waitFor(
        () => {
          const lastError = system.health().acquisition.lastError ?? "";
          const latest = statuses.filter((change) => change.to === "reconnecting").map((change) => change.reason!);
          return latest.slice(1).some((reason) => lastError.includes(reason));
        },
        { what: "health() to show a failed attempt's reason" },
      );
      await simulator.start();
      await goodAgain(system, seen, 0);
    } finally {
      await system.stop();
    }
  }, 60_000);
});
