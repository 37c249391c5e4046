import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  createControlSystem,
  defineTags,
  KilnError,
  type KilnEvents,
  MemoryStore,
  QualityCodes,
  type Sample,
} from "@kiln/core";
import type { DriverStatusChange } from "@kiln/core/driver-kit";
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { OPCUA_SIMULATOR_NAMESPACE_URI, OpcuaDriver, OpcuaSimulator } from "../src/index";
import { RecordingLogger } from "./support/recording-logger";
import { waitFor } from "./support/wait-for";

// Issue 13, fault 2: a password changed on the server while Kiln runs led to a refused log-in
// every 2 s forever, reported only as a generic "reconnecting". Now one attempt, then `failed`.
const NS = OPCUA_SIMULATOR_NAMESPACE_URI;
const PASSWORD = "first-Pa55word";
const CHANGED = "changed-Pa55word";
const tags = defineTags({
  "kiln.a": { dataType: "int32", address: `nsu=${NS};s=Kiln.A`, scanGroup: "fast" },
});

let workDir: string;
let simulator: OpcuaSimulator;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-failure-"));
  simulator = new OpcuaSimulator({
    tags,
    signals: { "kiln.a": { kind: "counter", start: 1, step: 1 } },
    securityModes: ["None"],
    users: [{ userName: "operator", password: PASSWORD }],
    allowAnonymous: false,
    updateIntervalMs: 50,
    pkiDir: path.join(workDir, "server"),
  });
  await simulator.start();
});

beforeEach(() => simulator.setUsers([{ userName: "operator", password: PASSWORD }]));

afterAll(async () => {
  await simulator?.dispose();
  await rm(workDir, { recursive: true, force: true });
});

function newDriver(logger = new RecordingLogger()): OpcuaDriver {
  return new OpcuaDriver({
    endpointUrl: simulator.endpointUrl,
    security: { mode: "None" },
    identity: { type: "username", userName: "operator", password: PASSWORD },
    pki: { dir: path.join(workDir, "client") },
    connectionStrategy: { maxRetry: 1_000, initialDelayMs: 100, maxDelayMs: 400, randomisationFactor: 0.1 },
    timeouts: { keepAliveMs: 1_000, requestMs: 3_000 },
    logger,
  });
}

/** Longer than node-opcua's own 2 s session-repair retry, twice: a storm would show here. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 5_000));

describe("issue 13, fault 5", () => {
  test("security None with a user name warns that the password goes to an unverified certificate", async () => {
    const logger = new RecordingLogger();
    const driver = newDriver(logger);
    try {
      await driver.connect();
    } finally {
      await driver.close();
    }
    const warnings = logger.lines.filter((line) => line.level === "warn").map((line) => line.message);
    expect(warnings.some((message) => /None with a user name/.test(message))).toBe(true);
    expect(logger.text()).not.toContain(PASSWORD);
  });

  test("browsing a node that does not exist fails with KILN_NOT_FOUND, not an empty list", async () => {
    const driver = newDriver();
    await driver.connect();
    try {
      const error = await driver.browse(`nsu=${NS};s=No.Such.Node`).catch((caught: unknown) => caught);
      expect(KilnError.is(error, "KILN_NOT_FOUND")).toBe(true);
      expect((error as KilnError).details.statusName).toBe("BadNodeIdUnknown");
      expect((await driver.browse(`nsu=${NS};s=Kiln`)).length).toBeGreaterThan(0);
    } finally {
      await driver.close();
    }
  });
});

describe("a refused identity stops reconnecting (issue 13, fault 2)", () => {
  test("password changed during a server restart: one log-in attempt, status failed with KILN_AUTHENTICATION_FAILED", async () => {
    const logger = new RecordingLogger();
    const driver = newDriver(logger);
    const changes: DriverStatusChange[] = [];
    driver.onStatusChange((change) => changes.push(change));
    await driver.connect();
    try {
      await simulator.stop();
      await waitFor(() => driver.status === "reconnecting", { what: "reconnecting" });
      simulator.setUsers([{ userName: "operator", password: CHANGED }]);
      simulator.resetStats();
      await simulator.start();
      await waitFor(() => driver.status === "failed", { what: "status failed" });
      expect(changes.at(-1)).toMatchObject({ to: "failed", code: "KILN_AUTHENTICATION_FAILED" });
      expect(changes.at(-1)?.reason).toMatch(/BadUserAccessDenied/);
      await settle();
      expect(simulator.stats.passwordChecks).toBe(1);
      expect(driver.status).toBe("failed");
      expect(logger.text()).not.toContain(PASSWORD);
      expect(logger.lines.some((line) => line.level === "error" && /refused the identity/.test(line.message))).toBe(
        true,
      );
      // A call meanwhile names the refusal, not "call connect() first" (adv13za LOW); sibling: browse.
      for (const call of [() => driver.read(tags.list()), () => driver.browse()]) {
        const refused = await call().catch((caught: unknown) => caught);
        expect(refused).toMatchObject({
          code: "KILN_NOT_CONNECTED",
          details: { status: "failed", reason: expect.stringMatching(/BadUserAccessDenied/) as string },
        });
        expect((refused as Error).message).toMatch(/stopped reconnecting \(.*BadUserAccessDenied/);
        expect((refused as Error).message).not.toContain(CHANGED);
      }
      // Fixed configuration: connect() again is the way back.
      simulator.setUsers([{ userName: "operator", password: PASSWORD }]);
      await driver.connect();
      expect((await driver.read(tags.list()))[0]?.quality.severity).toBe("good");
    } finally {
      await driver.close();
    }
  }, 60_000);

  test("password changed, then the server drops the session: one log-in attempt, status failed", async () => {
    const driver = newDriver();
    await driver.connect();
    try {
      simulator.setUsers([{ userName: "operator", password: CHANGED }]);
      simulator.resetStats();
      expect(simulator.closeSessions()).toBe(1);
      await waitFor(() => driver.status === "failed", { what: "status failed" });
      await settle();
      expect(simulator.stats.passwordChecks).toBe(1);
    } finally {
      await driver.close();
    }
  }, 60_000);

  // adv13c L2: after the refusal nothing reconnects, yet subscribed tags stayed `uncertain`
  // ("last usable value") forever. They turn bad, with the refusal as reason.
  test("after a refused log-in (session dropped), subscribed tags turn bad with the refusal as reason", async () => {
    const driver = newDriver();
    await driver.connect();
    const received: Sample[] = [];
    try {
      await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) => received.push(...samples));
      await waitFor(() => received.some((sample) => sample.quality.severity === "good"), { what: "a good value" });
      simulator.setUsers([{ userName: "operator", password: CHANGED }]);
      simulator.closeSessions();
      await waitFor(() => driver.status === "failed", { what: "status failed" });
      const last = await waitFor(() => (received.at(-1)?.quality.severity === "bad" ? received.at(-1) : undefined), {
        what: "the tag bad",
      });
      expect(last.quality.code).toBe(QualityCodes.BadNoCommunication);
      expect(last.quality.reason).toMatch(/refused the identity/);
    } finally {
      await driver.close();
    }
  }, 60_000);

  // Sibling: the same after a server restart with a changed password (the driver's rebuild or node-opcua's repair).
  test("after a refused log-in on a restarted server, subscribed tags turn bad too", async () => {
    const driver = newDriver();
    await driver.connect();
    const received: Sample[] = [];
    try {
      await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) => received.push(...samples));
      await waitFor(() => received.some((sample) => sample.quality.severity === "good"), { what: "a good value" });
      await simulator.stop();
      await waitFor(() => driver.status === "reconnecting", { what: "reconnecting" });
      simulator.setUsers([{ userName: "operator", password: CHANGED }]);
      await simulator.start();
      await waitFor(() => driver.status === "failed", { what: "status failed" });
      await waitFor(() => received.at(-1)?.quality.severity === "bad", { what: "the tag bad" });
      expect(received.at(-1)?.quality.reason).toMatch(/BadUserAccessDenied/);
    } finally {
      await driver.close();
    }
  }, 60_000);

  test("a Kiln system publishes plc-connection-fail, shows the code in health() and does not retry", async () => {
    const system = createControlSystem({
      machineId: "kiln-1",
      tags,
      store: new MemoryStore(),
      driver: newDriver(),
      scanGroups: { fast: { periodMs: 50, mode: "subscribe" } },
      acquisition: { timeoutMs: 2_000, reconnect: { initialDelayMs: 100, maxDelayMs: 500 } },
      logging: { maxLatencyMs: 100 },
    });
    const failures: KilnEvents["plc-connection-fail"][] = [];
    system.bus.on("plc-connection-fail", (event) => {
      failures.push(event);
    });
    await system.start();
    try {
      await waitFor(() => system.read("kiln.a")?.quality.severity === "good", { what: "good values" });
      await simulator.stop();
      simulator.setUsers([{ userName: "operator", password: CHANGED }]);
      simulator.resetStats();
      await simulator.start();
      await waitFor(() => failures.length === 1, { what: "plc-connection-fail" });
      expect(failures[0]).toMatchObject({ code: "KILN_AUTHENTICATION_FAILED" });
      const health = system.health().acquisition;
      expect(health.driverStatus).toBe("failed");
      expect(health.lastError).toMatch(/^KILN_AUTHENTICATION_FAILED/);
      expect(system.read("kiln.a")?.quality.severity).not.toBe("good");
      await settle();
      expect(simulator.stats.passwordChecks).toBe(1);
    } finally {
      await system.stop();
    }
  }, 60_000);
});
