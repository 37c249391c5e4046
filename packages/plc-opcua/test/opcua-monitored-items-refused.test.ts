import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { defineTags, type Sample } from "@kiln/core";
import { DataType, ServiceFault, StatusCodes, Variant } from "node-opcua-client";
import { nodesets } from "node-opcua-nodesets";
import { OPCUAServer } from "node-opcua-server";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { OpcuaDriver } from "../src/index";
import { waitFor } from "./support/wait-for";

// Issue 13, adv13 after fix13ae (MEDIUM-4): a CreateMonitoredItems the server failed as a whole (a
// ServiceFault such as BadTooManyMonitoredItems, or no answer) was only logged: subscribe()
// resolved, the tags never got a sample or a reason, and it was retried on the backoff silently.
// Now every tag of the failed batch is delivered `bad` with the status and the reason before the
// retry, as a per-item refusal is (docs/adr/0022, amendment fix13af).
const NS = "urn:kiln:test:monitored-items-refused";
const tags = defineTags({
  a: { dataType: "int32", address: `nsu=${NS};s=A` },
  b: { dataType: "int32", address: `nsu=${NS};s=B` },
  c: { dataType: "int32", address: `nsu=${NS};s=C` },
});
const names = ["a", "b", "c"] as const;

type Handler = (this: OPCUAServer, message: { request: object }, channel: unknown) => void;
type Channel = { send_response(type: string, response: object, message: unknown): void };

let workDir: string;
let server: OPCUAServer;
let port: number;

/** The server's handling of the next `count` CreateMonitoredItems requests; later ones are served. */
function onCreateMonitoredItems(count: number, answer: (message: { request: object }, channel: Channel) => void): void {
  const target = server as unknown as Record<string, Handler>;
  const original = (OPCUAServer.prototype as unknown as Record<string, Handler>)._on_CreateMonitoredItemsRequest!;
  let left = count;
  target._on_CreateMonitoredItemsRequest = function (message, channel) {
    if (left-- > 0) answer(message, channel as Channel);
    else original.call(this, message, channel);
  };
}

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-items-refused-"));
  server = new OPCUAServer({ port: 0, nodeset_filename: [nodesets.standard], allowAnonymous: true });
  await server.initialize();
  const addressSpace = server.engine.addressSpace!;
  const namespace = addressSpace.registerNamespace(NS);
  names.forEach((name, index) => {
    namespace.addVariable({
      organizedBy: addressSpace.rootFolder.objects,
      browseName: name.toUpperCase(),
      nodeId: `s=${name.toUpperCase()}`,
      dataType: "Int32",
      minimumSamplingInterval: 100,
      value: { get: () => new Variant({ dataType: DataType.Int32, value: index + 10 }) },
    });
  });
  await server.start();
  port = (server as unknown as { endpoints: { port: number }[] }).endpoints[0]!.port;
});

afterEach(() => {
  delete (server as unknown as Record<string, unknown>)._on_CreateMonitoredItemsRequest;
});

afterAll(async () => {
  await server.shutdown(0);
  await rm(workDir, { recursive: true, force: true });
});

async function subscribed(requestMs: number, samples: Sample[]): Promise<OpcuaDriver> {
  const driver = new OpcuaDriver({
    endpointUrl: `opc.tcp://127.0.0.1:${port}`,
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    timeouts: { keepAliveMs: 1_000, requestMs },
    monitoredItemRetry: { initialDelayMs: 500, maxDelayMs: 1_000 },
  });
  await driver.connect();
  await driver.subscribe(
    names.map((name) => tags.get(name)),
    { samplingIntervalMs: 200 },
    (delivered) => samples.push(...delivered),
  );
  return driver;
}

describe("a CreateMonitoredItems failed as a whole is reported on every tag (adv13 MEDIUM-4)", () => {
  test("a ServiceFault BadTooManyMonitoredItems: every tag bad with the status and the reason, then good once the server accepts", async () => {
    onCreateMonitoredItems(2, (message, channel) => {
      channel.send_response(
        "MSG",
        new ServiceFault({ responseHeader: { serviceResult: StatusCodes.BadTooManyMonitoredItems } }),
        message,
      );
    });
    const samples: Sample[] = [];
    const driver = await subscribed(5_000, samples);
    try {
      const bad = await waitFor(
        () => {
          const found = samples.filter((sample) => sample.quality.severity === "bad");
          return found.length >= names.length && found;
        },
        { what: "a bad sample for every tag", timeoutMs: 5_000 },
      );
      for (const name of names) {
        const sample = bad.find((candidate) => candidate.tag === tags.get(name).name)!;
        expect(sample).toMatchObject({ value: null, quality: { code: StatusCodes.BadTooManyMonitoredItems.value } });
        expect(sample.quality.reason).toMatch(/BadTooManyMonitoredItems/);
        expect(sample.quality.reason).toMatch(/CreateMonitoredItems/);
      }
      // The same refusal again is not re-delivered; no good value before the server accepts.
      const firstGood = samples.findIndex((sample) => sample.quality.severity === "good");
      expect(firstGood === -1 || firstGood >= names.length).toBe(true);
      await waitFor(
        () =>
          names.every((name) =>
            samples.some((sample) => sample.tag === tags.get(name).name && sample.quality.severity === "good"),
          ),
        { what: "good values after the retry", timeoutMs: 10_000 },
      );
      expect(samples.filter((sample) => sample.quality.severity === "bad")).toHaveLength(names.length);
      expect(driver.status).toBe("connected");
    } finally {
      await driver.close();
    }
  }, 30_000);

  test("a refusal still given after a repair is delivered again, not hidden behind the outage's reason (adv13j LOW-3)", async () => {
    const refuse = (message: { request: object }, channel: Channel): void =>
      channel.send_response(
        "MSG",
        new ServiceFault({ responseHeader: { serviceResult: StatusCodes.BadTooManyMonitoredItems } }),
        message,
      );
    onCreateMonitoredItems(1_000, refuse);
    const samples: Sample[] = [];
    const driver = await subscribed(5_000, samples);
    try {
      await waitFor(() => samples.some((sample) => /BadTooManyMonitoredItems/.test(sample.quality.reason ?? "")), {
        what: "the refusal on the tags",
        timeoutMs: 5_000,
      });
      // The server drops the session: the driver's repair opens a new one, where the items are refused again.
      server.engine.closeSession(server.engine.getSessions()[0]!.authenticationToken, true, "Terminated");
      const lost = await waitFor(
        () => {
          const index = samples.findIndex(
            (sample) => sample.tag === "a" && !/BadTooManyMonitoredItems/.test(sample.quality.reason ?? ""),
          );
          return index >= 0 && index + 1;
        },
        { what: "the outage on the tags", timeoutMs: 10_000 },
      );
      await waitFor(
        () =>
          samples
            .slice(lost)
            .some(
              (sample) =>
                sample.tag === "a" &&
                sample.quality.severity === "bad" &&
                /BadTooManyMonitoredItems/.test(sample.quality.reason ?? ""),
            ),
        { what: `the refusal delivered again after the repair (status ${driver.status})`, timeoutMs: 15_000 },
      );
      expect(samples.some((sample) => sample.quality.severity === "good")).toBe(false);
    } finally {
      await driver.close();
    }
  }, 40_000);

  test("sibling: a CreateMonitoredItems never answered: every tag bad BadTimeout with the reason, then good after the retry", async () => {
    onCreateMonitoredItems(1, () => {
      // No answer.
    });
    const samples: Sample[] = [];
    const driver = await subscribed(5_000, samples);
    try {
      const bad = await waitFor(
        () => {
          const found = samples.filter((sample) => sample.quality.severity === "bad");
          return found.length >= names.length && found;
        },
        { what: "a bad sample for every tag", timeoutMs: 15_000 },
      );
      for (const sample of bad) {
        expect(sample).toMatchObject({ value: null, quality: { code: StatusCodes.BadTimeout.value } });
        expect(sample.quality.reason).toMatch(/no answer/);
      }
      expect(samples.slice(0, names.length).every((sample) => sample.quality.severity === "bad")).toBe(true);
      await waitFor(
        () =>
          names.every((name) =>
            samples.some((sample) => sample.tag === tags.get(name).name && sample.quality.severity === "good"),
          ),
        { what: "good values after the retry", timeoutMs: 15_000 },
      );
    } finally {
      await driver.close();
    }
  }, 45_000);
});
