import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createControlSystem, defineTags, MemoryStore } from "@kiln/core";
import { afterAll, beforeAll, expect, test } from "vitest";
import { OpcuaDriver, OpcuaSimulator } from "../src/index";
import { waitFor } from "./support/wait-for";

// A whole Kiln system on OPC UA: the core owns subscriptions as desired state, the driver
// owns the session. After a server restart there must be exactly one live subscription per
// group again: values flow, and none is delivered twice.
const tags = defineTags({
  "reactor.count": { dataType: "int32", address: "ns=2;s=Reactor.Count", scanGroup: "fast" },
  "reactor.pressure": { dataType: "float64", address: "ns=2;s=Reactor.Pressure", scanGroup: "slow" },
});

let simulator: OpcuaSimulator;
let pkiDir: string;

beforeAll(async () => {
  pkiDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-system-"));
  simulator = new OpcuaSimulator({
    tags,
    signals: {
      "reactor.count": { kind: "counter", start: 1 },
      "reactor.pressure": { kind: "sine", amplitude: 1, offset: 2, periodMs: 2_000 },
    },
    updateIntervalMs: 50,
  });
  await simulator.start();
});

afterAll(async () => {
  await simulator?.dispose();
  await rm(pkiDir, { recursive: true, force: true });
});

test("a server restart mid-subscription recovers by itself, with one subscription and no lost quality", async () => {
  const store = new MemoryStore();
  const system = createControlSystem({
    machineId: "reactor-1",
    tags,
    store,
    driver: new OpcuaDriver({
      endpointUrl: simulator.endpointUrl,
      pki: { dir: pkiDir, trustedServerCertificates: [simulator.certificateFile] },
    }),
    scanGroups: { fast: { periodMs: 50, mode: "subscribe" }, slow: { periodMs: 200 } },
    acquisition: { timeoutMs: 2_000, reconnect: { initialDelayMs: 100, maxDelayMs: 1_000 } },
    logging: { maxLatencyMs: 100 },
  });
  const repeats: number[] = [];
  system.cvt.observe("reactor.count", (change) => {
    if (!change.valueChanged && !change.qualityChanged) repeats.push(change.sample.value as number);
  });
  await system.start();
  await waitFor(() => (system.read("reactor.count")?.value as number) > 5, { what: "subscribed values" });

  await simulator.stop();
  await waitFor(() => system.read("reactor.count")?.quality.severity === "uncertain", { what: "uncertain quality" });
  const restartedAt = Date.now();
  await simulator.start();
  const before = repeats.length;
  await waitFor(
    () => system.health().acquisition.link === "online" && system.read("reactor.count")?.quality.severity === "good",
    {
      what: "recovery",
    },
  );
  const valueAfter = system.read("reactor.count")?.value as number;
  await waitFor(() => (system.read("reactor.count")?.value as number) >= valueAfter + 10, { what: "fresh values" });
  console.log(`recovered ${Date.now() - restartedAt} ms after the server came back`);

  expect(repeats.length - before).toBe(0); // a doubled subscription would deliver each value twice
  await system.stop();
  const logged = system.health().logging;
  expect(logged.samplesDropped).toBe(0);
  expect(logged.samplesOut).toBe(logged.samplesIn);
}, 60_000);

// Issue 13d, MEDIUM-1: every Bad service result was non-retryable, so a server that answered a
// group's subscription BadTooManySubscriptions at start (its slots taken by a previous
// instance's orphans until their lifetime ends) stopped acquisition for good. The refusal is
// transient (docs/adr/0022, amendment fix13d): the group's tags read bad with the status and
// the group is retried on the backoff until the server has room again.
test("a group the server refuses at start (BadTooManySubscriptions) is retried until the server has room", async () => {
  simulator.setMaxSubscriptionsPerSession(0);
  const system = createControlSystem({
    machineId: "reactor-1",
    tags,
    store: new MemoryStore(),
    driver: new OpcuaDriver({
      endpointUrl: simulator.endpointUrl,
      pki: { dir: pkiDir, trustedServerCertificates: [simulator.certificateFile] },
    }),
    scanGroups: { fast: { periodMs: 50, mode: "subscribe" }, slow: { periodMs: 200 } },
    acquisition: { timeoutMs: 2_000, reconnect: { initialDelayMs: 100, maxDelayMs: 400 } },
  });
  try {
    await system.start();
    await waitFor(() => system.read("reactor.count")?.quality.reason?.includes("BadTooManySubscriptions"), {
      what: "the group's tag bad with BadTooManySubscriptions",
    });
    expect(system.read("reactor.count")?.quality.severity).toBe("bad");
    // Retried on the backoff, not stopped at the first refusal.
    await waitFor(() => system.health().acquisition.reconnectAttempts >= 3, { what: "retries" });
    // The polled group is not affected.
    await waitFor(() => system.read("reactor.pressure")?.quality.severity === "good", { what: "polled values" });
    simulator.setMaxSubscriptionsPerSession(10);
    await waitFor(() => system.read("reactor.count")?.quality.severity === "good", {
      what: "subscribed values once the server has room",
    });
    const first = system.read("reactor.count")?.value as number;
    await waitFor(() => (system.read("reactor.count")?.value as number) > first, { what: "the count advancing" });
    expect(simulator.liveSubscriptions().subscriptions).toBe(1);
  } finally {
    simulator.setMaxSubscriptionsPerSession(10);
    await system.stop();
  }
}, 30_000);
