import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { defineTags, QualityCodes, type Sample } from "@kiln/core";
import { type DriverStatusChange } from "@kiln/core/driver-kit";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OPCUA_SIMULATOR_NAMESPACE_URI, OpcuaDriver, OpcuaSimulator } from "../src/index";
import { RecordingLogger } from "./support/recording-logger";
import { waitFor } from "./support/wait-for";

const NS = OPCUA_SIMULATOR_NAMESPACE_URI;

const tags = defineTags({
  "line.counter": { dataType: "int32", address: `nsu=${NS};s=Line.Counter` },
  "line.speed": { dataType: "float64", access: "readwrite", address: `nsu=${NS};s=Line.Speed` },
});

const simulatorOptions = {
  tags,
  signals: { "line.counter": { kind: "counter" as const, start: 1, step: 1 } },
  securityModes: ["SignAndEncrypt" as const],
  updateIntervalMs: 50,
};

let workDir: string;
let simulator: OpcuaSimulator;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-reconnect-"));
  simulator = new OpcuaSimulator({ ...simulatorOptions, pkiDir: path.join(workDir, "server") });
  await simulator.start();
});

afterAll(async () => {
  await simulator?.dispose();
  await rm(workDir, { recursive: true, force: true });
});

/** `maxRetry`: node-opcua's own reconnect attempts before it gives up and the driver rebuilds. */
function newDriver(logger?: RecordingLogger, { maxRetry = 1 }: { maxRetry?: number } = {}): OpcuaDriver {
  return new OpcuaDriver({
    ...(logger ? { logger } : {}),
    endpointUrl: simulator.endpointUrl,
    pki: { dir: path.join(workDir, "client"), trustedServerCertificates: [simulator.certificateFile] },
    connectionStrategy: { maxRetry, initialDelayMs: 100, maxDelayMs: 400, randomisationFactor: 0.1 },
    timeouts: { keepAliveMs: 1_000, requestMs: 3_000 },
    monitoredItemRetry: { initialDelayMs: 100, maxDelayMs: 400 },
  });
}

function counterSamples(received: readonly Sample[], from = 0): Sample[] {
  return received.slice(from).filter((sample) => sample.tag === "line.counter");
}

describe("OpcuaDriver across a server restart", () => {
  test("samples turn uncertain, status goes reconnecting, then fresh values flow through re-created subscriptions", async () => {
    const driver = newDriver();
    const changes: DriverStatusChange[] = [];
    driver.onStatusChange((change) => changes.push(change));
    await driver.connect();
    const received: Sample[] = [];
    try {
      await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) => received.push(...samples));
      await waitFor(() => counterSamples(received).length >= 3, { what: "counter values before the restart" });
      await simulator.stop();
      await waitFor(() => driver.status === "reconnecting", { what: "status reconnecting" });
      // Taken after the stop: a value can still arrive while the server shuts down.
      const lastBefore = counterSamples(received)
        .filter((sample) => sample.quality.severity === "good")
        .at(-1)!.value as number;
      const stale = await waitFor(
        () => counterSamples(received).find((sample) => sample.quality.severity === "uncertain"),
        { what: "the counter to turn uncertain" },
      );
      expect(stale.quality.code).toBe(QualityCodes.UncertainNoCommunicationLastUsableValue);
      expect(stale.value).toBe(lastBefore);

      // While the server is down, each failed attempt is reported with its own reason.
      await waitFor(() => changes.some((change) => change.from === "reconnecting" && change.to === "reconnecting"), {
        what: "a failed reconnect attempt reported while the server is down",
      });
      const mark = received.length;
      await simulator.start();
      const restartedAt = Date.now();
      await waitFor(() => driver.status === "connected", { what: "status connected again" });
      await waitFor(
        () => counterSamples(received, mark).filter((sample) => sample.quality.severity === "good").length >= 3,
        { what: "fresh counter values after the restart" },
      );
      const recoveryMs = Date.now() - restartedAt;
      console.info(`OPC UA subscription recovered ${recoveryMs} ms after the server came back`);

      const fresh = counterSamples(received, mark).filter((sample) => sample.quality.severity === "good");
      expect(fresh.every((sample) => (sample.value as number) > lastBefore)).toBe(true);
      const transitions = changes.filter((change) => change.from !== change.to);
      expect(transitions.map((change) => change.to)).toEqual(["connecting", "connected", "reconnecting", "connected"]);

      // Reads and writes work again too.
      await driver.write(tags.get("line.speed"), 12.5);
      const [speed] = await driver.read([tags.get("line.speed")]);
      expect(speed).toMatchObject({ value: 12.5, quality: { severity: "good" } });
    } finally {
      await driver.close();
    }
  });

  test("a session the server dropped is detected and re-created, with its subscription", async () => {
    const driver = newDriver();
    await driver.connect();
    const received: Sample[] = [];
    try {
      await driver.subscribe([tags.get("line.counter")], { samplingIntervalMs: 50 }, (samples) =>
        received.push(...samples),
      );
      await waitFor(() => counterSamples(received).length >= 2, { what: "counter values before the drop" });
      const lastBefore = counterSamples(received).at(-1)!.value as number;
      const mark = received.length;
      expect(simulator.closeSessions()).toBe(1);
      const fresh = await waitFor(
        () => {
          const good = counterSamples(received, mark).filter((sample) => (sample.value as number) > lastBefore + 2);
          return good.length >= 2 ? good : undefined;
        },
        { what: "counter values through a new session" },
      );
      expect(fresh.every((sample) => sample.quality.severity === "good")).toBe(true);
      const [sample] = await driver.read([tags.get("line.counter")]);
      expect(sample!.quality.severity).toBe("good");
    } finally {
      await driver.close();
    }
  });

  test("when node-opcua gives up repairing, the driver opens a new connection on its own backoff, with exactly one subscription", async () => {
    const logger = new RecordingLogger();
    // maxRetry 0: node-opcua's own reconnect gives up at the first failure and closes the client.
    const driver = newDriver(logger, { maxRetry: 0 });
    const changes: DriverStatusChange[] = [];
    driver.onStatusChange((change) => changes.push(change));
    await driver.connect();
    const received: Sample[] = [];
    try {
      await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) => received.push(...samples));
      await waitFor(() => counterSamples(received).length >= 2, { what: "counter values before the stop" });
      await simulator.stop();
      // The rebuild, not node-opcua's repair: its log line names the loss, and failed attempts
      // of the new connection are reported while the server is down.
      await waitFor(() => logger.lines.some((line) => line.message === "OPC UA session lost; opening a new one"), {
        what: "the driver rebuilding the connection",
      });
      await waitFor(
        () => logger.lines.some((line) => line.message === "opening a new OPC UA session failed; will retry"),
        {
          what: "a failed attempt of the new connection",
        },
      );
      expect(driver.status).toBe("reconnecting");
      const mark = received.length;
      await simulator.start();
      await waitFor(() => driver.status === "connected", { what: "status connected again" });
      await waitFor(
        () => counterSamples(received, mark).filter((sample) => sample.quality.severity === "good").length >= 2,
        { what: "fresh counter values through the new connection" },
      );
      expect(changes.at(-1)).toMatchObject({
        to: "connected",
        reason: expect.stringMatching(/^session re-created after \d+ attempts?$/),
      });
      // The old connection's subscription went with its session: one subscription, both items.
      expect(simulator.liveSubscriptions()).toMatchObject({ sessions: 1, subscriptions: 1, monitoredItems: 2 });
    } finally {
      await driver.close();
    }
  });

  test("reads during the outage fail fast with a retryable KILN_CONNECTION_FAILED", async () => {
    const driver = newDriver();
    await driver.connect();
    try {
      await simulator.stop();
      await waitFor(() => driver.status === "reconnecting", { what: "status reconnecting" });
      const error = await driver.read(tags.list()).catch((caught: unknown) => caught);
      expect(error).toMatchObject({ code: "KILN_CONNECTION_FAILED", retryable: true });
      await simulator.start();
      await waitFor(() => driver.status === "connected", { what: "status connected again" });
      const samples = await driver.read(tags.list());
      expect(samples.every((sample) => sample.quality.severity === "good")).toBe(true);
    } finally {
      await driver.close();
    }
  });

  test("after a restart that moved the namespace index, nsu= tags resolve to the new index", async () => {
    const logger = new RecordingLogger();
    const driver = newDriver(logger);
    await driver.connect();
    const received: Sample[] = [];
    let moved: OpcuaSimulator | undefined;
    try {
      await driver.subscribe([tags.get("line.counter")], { samplingIntervalMs: 50 }, (samples) =>
        received.push(...samples),
      );
      await waitFor(() => counterSamples(received).length >= 2, { what: "counter values before the restart" });

      // The "upgraded" server registers two more namespaces first: ours moves from ns=2 to ns=4.
      await simulator.stop();
      await waitFor(() => driver.status === "reconnecting", { what: "status reconnecting" });
      moved = new OpcuaSimulator({
        ...simulatorOptions,
        port: simulator.port,
        pkiDir: path.join(workDir, "server"),
        extraNamespaces: ["urn:vendor:a", "urn:vendor:b"],
      });
      const mark = received.length;
      await moved.start();
      await waitFor(
        () => counterSamples(received, mark).filter((sample) => sample.quality.severity === "good").length >= 2,
        { what: "counter values from the moved namespace" },
      );
      expect(logger.lines.some((line) => /namespaces or operation limits changed/.test(line.message))).toBe(true);
      const [sample] = await driver.read([tags.get("line.counter")]);
      expect(sample!.quality.severity).toBe("good");
      const browsed = await driver.browse(`nsu=${NS};s=Kiln`);
      expect(browsed.map((variable) => variable.address)).toContain(`nsu=${NS};s=Line.Counter`);
    } finally {
      await driver.close();
      await moved?.stop();
      await simulator.start();
    }
  });
});
