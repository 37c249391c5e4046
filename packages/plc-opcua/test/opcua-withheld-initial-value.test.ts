import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { defineTags, type Sample } from "@kiln/core";
import {
  AttributeIds,
  DataType,
  DataValue,
  MessageSecurityMode,
  SecurityPolicy,
  StatusCodes,
  Variant,
  type ReadRequest,
} from "node-opcua-client";
import { nodesets } from "node-opcua-nodesets";
import { OPCUAServer, ServerEngine } from "node-opcua-server";
import { afterEach, describe, expect, test } from "vitest";
import { OpcuaDriver } from "../src/index";
import { startRawOpcuaServer, type RawRequest } from "./support/raw-opcua-server";
import { RecordingLogger, type LogLine } from "./support/recording-logger";
import { waitFor } from "./support/wait-for";

// Issue 13, adversarial pass adv13m MEDIUM-1. When node-opcua re-creates a subscription after the
// server dropped the session (link up) or restarted, the initial value of an `nsu=` item often
// arrives before the driver has read the namespace table on the new session; it is withheld (it
// might be another namespace's node, docs/adr/0022 amendment fix13t). The read of current values
// that replaces it waited for the next live Publish answer, which for an unchanged value is the
// keep-alive: with keepAliveMs 20 000 the tag stayed `uncertain` 21 s while the driver was
// `connected`. Now a live Publish answer that came while the read could not be sent (the
// connection being repaired, the table unread) leaves the read pending, and the ensure() that
// binds the items to the table sends it (docs/adr/0022, amendment fix13n-withheld).
const NS = "urn:kiln:test:withheld-initial-value";
const KEEP_ALIVE_MS = 20_000;
// Well inside one keep-alive period: before the fix nothing made the tag good earlier than that.
const WITHIN_MS = KEEP_ALIVE_MS / 2;
const STRATEGY = { maxRetry: 1_000, initialDelayMs: 100, maxDelayMs: 2_000, randomisationFactor: 0 };

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

interface Recorded {
  readonly sample: Sample;
  readonly seq: number;
}

function recorder() {
  const samples: Recorded[] = [];
  let seq = 0;
  return {
    samples,
    onSamples: (batch: Sample[]) => {
      for (const sample of batch) samples.push({ sample, seq: seq++ });
    },
    mark: () => seq,
  };
}

const withheldLines = (lines: readonly LogLine[]) =>
  lines.filter((line) => line.message.startsWith("nsu= item value before the namespace table was read")).length;

describe("an nsu= value withheld until the namespace table is read is read at once", () => {
  test("the server closes the session (link up), constant value, two groups: good again well inside a keep-alive period", async () => {
    const raw = await startRawOpcuaServer({ namespaceUri: NS, value: () => 42 });
    const lines: LogLine[] = [];
    const driver = new OpcuaDriver({
      logger: new RecordingLogger(lines),
      endpointUrl: raw.url,
      security: { mode: "None" },
      pki: { dir: path.join(raw.workDir, "client") },
      subscriptions: { keepAliveMs: KEEP_ALIVE_MS },
      connectionStrategy: STRATEGY,
    });
    cleanups.push(async () => {
      await driver.close();
      await raw.close();
    });
    let lastRequest: RawRequest;
    raw.onRequest((request) => {
      lastRequest = request;
    });
    const tags = defineTags({
      a: { dataType: "float64", address: `nsu=${NS};s=X`, scanGroup: "a" },
      b: { dataType: "float64", address: `nsu=${NS};s=X`, scanGroup: "b" },
    });
    const record = recorder();
    await driver.connect();
    for (const name of ["a", "b"]) {
      await driver.subscribe(
        tags.list().filter((tag) => tag.name === name),
        { samplingIntervalMs: 100 },
        record.onSamples,
      );
    }
    await waitFor(() => ["a", "b"].every((name) => record.samples.some((r) => r.sample.tag === name)), {
      what: "the initial values",
    });

    const from = record.mark();
    expect(raw.closeSessionOf(lastRequest)).toBe(true);
    const after = (name: string) => record.samples.filter((r) => r.seq >= from && r.sample.tag === name);
    // The loss is seen (the tags turn uncertain), then each is good again with the server's value.
    await waitFor(() => ["a", "b"].every((name) => after(name).some((r) => r.sample.quality.severity !== "good")), {
      what: "the session loss on both tags",
    });
    const good = await waitFor(
      () => {
        const found = ["a", "b"].map((name) => after(name).find((r) => r.sample.quality.severity === "good"));
        return found.every((r) => r !== undefined) ? found : undefined;
      },
      { timeoutMs: WITHIN_MS, what: "both tags good again within half a keep-alive period" },
    ).catch((error: unknown) => {
      console.log({
        withheld: withheldLines(lines),
        status: driver.status,
        a: after("a").map((r) => `${r.sample.quality.severity} ${r.sample.quality.reason ?? ""}`),
      });
      throw error;
    });
    for (const r of good) {
      expect(r!.sample.value).toBe(42);
      // Never good before the loss was reported: the uncertain sample comes first.
      expect(after(r!.sample.tag)[0]!.sample.quality.severity).not.toBe("good");
    }
    expect(driver.status).toBe("connected");
    console.log(`withheld initial values: ${withheldLines(lines)}`);
  }, 40_000);

  test("sibling: the read that replaces the withheld value answers Bad: uncertain with that reason, never good, then good once the server reads it", async () => {
    const raw = await startRawOpcuaServer({ namespaceUri: NS, value: () => 42 });
    const lines: LogLine[] = [];
    const driver = new OpcuaDriver({
      logger: new RecordingLogger(lines),
      endpointUrl: raw.url,
      security: { mode: "None" },
      pki: { dir: path.join(raw.workDir, "client") },
      subscriptions: { keepAliveMs: KEEP_ALIVE_MS },
      monitoredItemRetry: { initialDelayMs: 200, maxDelayMs: 800 },
      connectionStrategy: STRATEGY,
    });
    // Reads of the Value of s=X answer BadResourceUnavailable per node while `refusing`; the
    // namespace table and the items' sampling are not affected.
    let refusing = false;
    const original = Object.getOwnPropertyDescriptor(ServerEngine.prototype, "read")!;
    const read = original.value as (this: ServerEngine, context: unknown, request: ReadRequest) => Promise<DataValue[]>;
    Object.defineProperty(ServerEngine.prototype, "read", {
      ...original,
      value: async function (this: ServerEngine, context: unknown, request: ReadRequest) {
        const results = await read.call(this, context, request);
        return results.map((result, index) => {
          const node = request.nodesToRead![index]!;
          return refusing && node.attributeId === AttributeIds.Value && node.nodeId.toString().includes("s=X")
            ? new DataValue({ statusCode: StatusCodes.BadResourceUnavailable })
            : result;
        });
      },
    });
    cleanups.push(async () => {
      Object.defineProperty(ServerEngine.prototype, "read", original);
      await driver.close();
      await raw.close();
    });
    let lastRequest: RawRequest;
    raw.onRequest((request) => {
      lastRequest = request;
    });
    const tags = defineTags({ a: { dataType: "float64", address: `nsu=${NS};s=X` } });
    const record = recorder();
    await driver.connect();
    await driver.subscribe(tags.list(), { samplingIntervalMs: 100 }, record.onSamples);
    await waitFor(() => record.samples.some((r) => r.sample.quality.severity === "good"), {
      what: "the initial value",
    });

    const from = record.mark();
    refusing = true;
    expect(raw.closeSessionOf(lastRequest)).toBe(true);
    const after = () => record.samples.filter((r) => r.seq >= from);
    const refused = await waitFor(
      () =>
        after().find((r) =>
          r.sample.quality.reason?.includes(
            "the read of the current value after a repair answered BadResourceUnavailable",
          ),
        ),
      { timeoutMs: WITHIN_MS, what: "the refused read's reason on the tag within half a keep-alive period" },
    );
    expect(refused.sample.quality.severity).toBe("uncertain");
    // Nothing good while the server cannot read it: the withheld value is not delivered as a fallback.
    expect(after().filter((r) => r.sample.quality.severity === "good")).toEqual([]);
    const refusedUntil = record.mark();
    refusing = false;
    // Read again at a later live Publish answer (the keep-alive at the latest) on the retry backoff.
    const good = await waitFor(
      () => record.samples.find((r) => r.seq >= refusedUntil && r.sample.quality.severity === "good"),
      { timeoutMs: KEEP_ALIVE_MS + 10_000, what: "the tag good once the read works" },
    );
    expect(good.sample.value).toBe(42);
  }, 60_000);

  test("sibling: the server restarts with the same namespaces, constant value: good again well inside a keep-alive period", async () => {
    const workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-withheld-"));
    const start = async (port: number) => {
      const server = new OPCUAServer({
        port,
        hostname: "127.0.0.1",
        nodeset_filename: [nodesets.standard],
        securityModes: [MessageSecurityMode.None],
        securityPolicies: [SecurityPolicy.None],
        allowAnonymous: true,
      } as ConstructorParameters<typeof OPCUAServer>[0]);
      await server.initialize();
      const addressSpace = server.engine.addressSpace!;
      const namespace = addressSpace.registerNamespace(NS);
      namespace.addVariable({
        organizedBy: addressSpace.rootFolder.objects,
        browseName: "X",
        nodeId: "s=X",
        dataType: "Double",
        minimumSamplingInterval: 50,
        value: { get: () => new Variant({ dataType: DataType.Double, value: 42 }) },
      });
      await server.start();
      return server;
    };
    let server = await start(0);
    const port = server.endpoints[0]!.port;
    const driver = new OpcuaDriver({
      logger: new RecordingLogger([]),
      endpointUrl: `opc.tcp://127.0.0.1:${port}`,
      security: { mode: "None" },
      pki: { dir: path.join(workDir, "client") },
      subscriptions: { keepAliveMs: KEEP_ALIVE_MS },
      connectionStrategy: STRATEGY,
    });
    cleanups.push(async () => {
      await driver.close();
      await server.shutdown(0);
      await rm(workDir, { recursive: true, force: true });
    });
    const tags = defineTags({ a: { dataType: "float64", address: `nsu=${NS};s=X` } });
    const record = recorder();
    await driver.connect();
    await driver.subscribe(tags.list(), { samplingIntervalMs: 100 }, record.onSamples);
    await waitFor(() => record.samples.some((r) => r.sample.quality.severity === "good"), {
      what: "the initial value",
    });

    const from = record.mark();
    await server.shutdown(0);
    await waitFor(() => driver.status === "reconnecting", { what: "the loss" });
    server = await start(port);
    const restarted = record.mark();
    const good = await waitFor(
      () => record.samples.find((r) => r.seq >= restarted && r.sample.quality.severity === "good"),
      { timeoutMs: WITHIN_MS, what: "the tag good again within half a keep-alive period of the restart" },
    );
    expect(good.sample.value).toBe(42);
    expect(
      record.samples
        .filter((r) => r.seq >= from && r.seq < restarted)
        .every((r) => r.sample.quality.severity !== "good"),
    ).toBe(true);
    await waitFor(() => driver.status === "connected", { what: "connected" });
  }, 40_000);
});
