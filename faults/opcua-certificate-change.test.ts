import { copyFile, mkdir, mkdtemp, readdir, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { type ControlSystem, createControlSystem, defineTags, MemoryStore } from "@kiln/core";
import type { DriverStatusChange } from "@kiln/core/driver-kit";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { OPCUA_SIMULATOR_NAMESPACE_URI, OpcuaDriver, OpcuaSimulator } from "@kiln/plc-opcua";
import { RecordingLogger } from "../packages/plc-opcua/test/support/recording-logger";
import { TcpProxy } from "../packages/plc-opcua/test/support/tcp-proxy";
import { waitFor } from "../packages/plc-opcua/test/support/wait-for";
// node-opcua's console output through Kiln's logger, as in the plc-opcua test project.
import "../packages/plc-opcua/test/support/node-opcua-logs-setup";

// Issue 13, proof of fault 2: "a changed server certificate leads to backoff (count the TCP
// connections: bounded), then recovery within one backoff period once the user trusts it".
// In the fault suite, not `npm test`: each case restarts the server and counts connections
// over a window of seconds.
const NS = OPCUA_SIMULATOR_NAMESPACE_URI;
const tags = defineTags({
  "kiln.a": { dataType: "int32", address: `nsu=${NS};s=Kiln.A`, scanGroup: "fast" },
});
const BACKOFF = { initialDelayMs: 500, maxDelayMs: 2_000 };
/** How long the rejected certificate is left untrusted while the connections are counted. */
const WINDOW_MS = 6_000;

let workDir: string;
let clientPki: string;
let simulators: OpcuaSimulator[];
let proxy: TcpProxy;
let driver: OpcuaDriver | undefined;
let system: ControlSystem | undefined;

function newSimulator(name: string, port = 0): OpcuaSimulator {
  const simulator = new OpcuaSimulator({
    tags,
    signals: { "kiln.a": { kind: "counter", start: 1, step: 1 } },
    securityModes: ["SignAndEncrypt"],
    updateIntervalMs: 50,
    port,
    pkiDir: path.join(workDir, name),
  });
  simulators.push(simulator);
  return simulator;
}

function newDriver(endpointUrl: string, logger: RecordingLogger, trusted: string[] = []): OpcuaDriver {
  driver = new OpcuaDriver({
    endpointUrl,
    security: { mode: "SignAndEncrypt", policy: "Basic256Sha256" },
    pki: { dir: clientPki, trustedServerCertificates: trusted },
    connectionStrategy: { maxRetry: 1_000, ...BACKOFF, randomisationFactor: 0 },
    timeouts: { keepAliveMs: 1_000, requestMs: 3_000 },
    logger,
  });
  return driver;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const files = async (dir: string): Promise<string[]> => (await readdir(dir).catch(() => [])).sort();

/**
 * The most TCP connections a client backing off on `BACKOFF` may open in `windowMs`: one attempt
 * per delay of the schedule (500, 1000, 2000, 2000... ms), each allowed two connections (the
 * endpoint discovery that fetches the server certificate, then the secure channel), plus the first.
 */
function allowedConnections(windowMs: number): number {
  let attempts = 1;
  for (let delay = BACKOFF.initialDelayMs, elapsed = delay; elapsed <= windowMs; attempts++) {
    delay = Math.min(delay * 2, BACKOFF.maxDelayMs);
    elapsed += delay;
  }
  return 2 * (attempts + 1);
}

beforeEach(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-certificate-"));
  clientPki = path.join(workDir, "client");
  simulators = [];
});

afterEach(async () => {
  await system?.stop();
  system = undefined;
  await driver?.close();
  driver = undefined;
  await proxy?.close();
  for (const simulator of simulators) await simulator.dispose();
  await rm(workDir, { recursive: true, force: true });
});

describe("a server certificate the client does not trust (issue 13, fault 2)", () => {
  test("a new certificate after a restart: bounded backoff, reason in status and health(), recovery once the user trusts it", async () => {
    const first = newSimulator("server-1");
    await first.start();
    proxy = new TcpProxy(first.port);
    const logger = new RecordingLogger();
    const opcua = newDriver(await proxy.start(), logger, [first.certificateFile]);
    const changes: DriverStatusChange[] = [];
    opcua.onStatusChange((change) => changes.push(change));
    system = createControlSystem({
      machineId: "kiln-1",
      tags,
      store: new MemoryStore(),
      driver: opcua,
      scanGroups: { fast: { periodMs: 100, mode: "poll" } },
      acquisition: { timeoutMs: 2_000, reconnect: BACKOFF },
      logging: { maxLatencyMs: 100 },
    });
    const running = system;
    await running.start();
    await waitFor(() => running.read("kiln.a")?.quality.severity === "good", { what: "good values" });

    // The server is replaced by one with a new certificate (a new PKI) on the same port.
    await first.stop();
    const second = newSimulator("server-2", first.port);
    await second.start();
    await waitFor(() => opcua.status === "reconnecting", { what: "reconnecting" });
    const connectionsBefore = proxy.connections;
    await sleep(WINDOW_MS);
    const opened = proxy.connections - connectionsBefore;
    expect(opened).toBeGreaterThan(0);
    expect(opened).toBeLessThanOrEqual(allowedConnections(WINDOW_MS));
    expect(opcua.status).toBe("reconnecting");
    expect(changes.at(-1)).toMatchObject({
      code: "KILN_CONNECTION_FAILED",
      reason: expect.stringMatching(/not trusted/),
    });
    expect(running.health().acquisition.lastError).toMatch(/KILN_CONNECTION_FAILED.*not trusted/);
    expect(running.read("kiln.a")?.quality.severity).not.toBe("good");

    // Left in rejected/, never trusted by itself; the user moves it to trusted/certs.
    const rejected = await files(path.join(clientPki, "rejected"));
    expect(rejected.length).toBe(1);
    expect(await files(path.join(clientPki, "trusted", "certs"))).not.toContain(rejected[0]);
    await rename(
      path.join(clientPki, "rejected", rejected[0]!),
      path.join(clientPki, "trusted", "certs", rejected[0]!),
    );
    const trustedAt = Date.now();
    await waitFor(() => opcua.status === "connected", {
      what: "connected after the user trusted the certificate",
      timeoutMs: BACKOFF.maxDelayMs + 3_000,
    });
    // Within one backoff period (the next attempt reads the PKI folders afresh), plus slack.
    expect(Date.now() - trustedAt).toBeLessThanOrEqual(BACKOFF.maxDelayMs + 1_500);
    await waitFor(
      () => running.read("kiln.a")?.quality.severity === "good" && running.read("kiln.a")!.timestamp >= trustedAt,
      { what: "fresh good values" },
    );
    expect(await files(path.join(clientPki, "trusted", "certs"))).toContain(rejected[0]);
    expect(await files(path.join(clientPki, "rejected"))).toEqual([]);
  }, 60_000);

  test("a certificate the user removes from trusted/ while connected is refused on the next connection, bounded, until trusted again", async () => {
    const server = newSimulator("server");
    await server.start();
    proxy = new TcpProxy(server.port);
    // Trusted as a user would: the server's certificate copied into the client's trusted/certs.
    const trustedDir = path.join(clientPki, "trusted", "certs");
    await mkdir(trustedDir, { recursive: true });
    const trustedFile = path.join(trustedDir, "simulator.pem");
    await copyFile(server.certificateFile, trustedFile);
    const logger = new RecordingLogger();
    const opcua = newDriver(await proxy.start(), logger);
    const changes: DriverStatusChange[] = [];
    opcua.onStatusChange((change) => changes.push(change));
    await opcua.connect();
    expect((await opcua.read(tags.list()))[0]?.quality.severity).toBe("good");

    // The user withdraws trust, then the server restarts (same certificate).
    await rm(trustedFile);
    await server.stop();
    await server.start();
    await waitFor(() => opcua.status === "reconnecting", { what: "reconnecting" });
    const connectionsBefore = proxy.connections;
    await sleep(WINDOW_MS);
    const opened = proxy.connections - connectionsBefore;
    expect(opened).toBeLessThanOrEqual(allowedConnections(WINDOW_MS));
    expect(opcua.status).toBe("reconnecting");
    expect(changes.at(-1)).toMatchObject({
      code: "KILN_CONNECTION_FAILED",
      reason: expect.stringMatching(/not trusted/),
    });

    const rejected = await files(path.join(clientPki, "rejected"));
    expect(rejected.length).toBe(1);
    await rename(path.join(clientPki, "rejected", rejected[0]!), path.join(trustedDir, rejected[0]!));
    const trustedAt = Date.now();
    await waitFor(() => opcua.status === "connected", {
      what: "connected after the user trusted the certificate again",
      timeoutMs: BACKOFF.maxDelayMs + 3_000,
    });
    // Within one backoff period (the next attempt reads the PKI folders afresh), plus slack.
    expect(Date.now() - trustedAt).toBeLessThanOrEqual(BACKOFF.maxDelayMs + 1_500);
    await waitFor(async () => (await opcua.read(tags.list()))[0]?.quality.severity === "good", { what: "good" });
    expect(await files(trustedDir)).toContain(rejected[0]);
    expect(await files(path.join(clientPki, "rejected"))).toEqual([]);
  }, 60_000);
});
