import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { defineTags, type Sample } from "@kiln/core";
import { DataValue, StatusCodes, type ReadRequest } from "node-opcua-client";
import { OPCUAServer, ServerEngine, ServerSession } from "node-opcua-server";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { OPCUA_SIMULATOR_NAMESPACE_URI, OpcuaDriver, OpcuaSimulator } from "../src/index";
import { RecordingLogger } from "./support/recording-logger";
import { TcpProxy } from "./support/tcp-proxy";
import { waitFor } from "./support/wait-for";

// Issue 13, adversarial pass adv13m. After a repair on a server that resends no values on
// re-activation, the driver reads the current value of each tag no live notification has reached
// (docs/adr/0022, amendment fix13k). MEDIUM-1: a per-node Bad result of that read was delivered
// as the tag's value and the tag counted as done; its value unchanged, the working monitored
// item never sent a notification, so the tag stayed bad forever. MEDIUM-2: a refused whole Read
// was sent again at every live Publish answer (the publishing rate), with no reason surfaced.
// Now a tag the read gives no usable value stays `uncertain` with the reason and is read again
// on the monitored-item retry backoff (docs/adr/0022, amendment fix13o).
const NS = OPCUA_SIMULATOR_NAMESPACE_URI;
const tags = defineTags({
  "kiln.a": { dataType: "int32", address: `nsu=${NS};s=Kiln.A` },
  "kiln.k": { dataType: "int32", address: `nsu=${NS};s=Kiln.K` },
  "kiln.c": { dataType: "int32", address: `nsu=${NS};s=Kiln.C` },
});
const STALL_MS = 3_000;
const RETRY = { initialDelayMs: 200, maxDelayMs: 800 };

let workDir: string;
let simulator: OpcuaSimulator;
beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-read-after-repair-"));
  simulator = new OpcuaSimulator({
    tags,
    // kiln.a changes every 50 ms (live Publish answers at the publishing rate); kiln.k and kiln.c never change.
    signals: {
      "kiln.a": { kind: "counter", start: 1, step: 1 },
      "kiln.k": { kind: "constant", value: 7 },
      "kiln.c": { kind: "constant", value: 9 },
    },
    securityModes: ["None"],
    updateIntervalMs: 50,
    pkiDir: path.join(workDir, "server"),
  });
  await simulator.start();
});
afterAll(async () => {
  await simulator.dispose();
  await rm(workDir, { recursive: true, force: true });
});

// A server that, like many C stacks, resends no current values when a session is re-activated:
// kiln.k gets no notification after the repair, only the driver's read.
const resend = Object.getOwnPropertyDescriptor(ServerSession.prototype, "resendMonitoredItemInitialValues")!;
beforeEach(() => {
  Object.defineProperty(ServerSession.prototype, "resendMonitoredItemInitialValues", {
    ...resend,
    value: () => Promise.resolve(),
  });
});
afterEach(() => {
  Object.defineProperty(ServerSession.prototype, "resendMonitoredItemInitialValues", resend);
});

const readsK = (request: ReadRequest) =>
  (request.nodesToRead ?? []).some((node) => node.nodeId.toString().includes("Kiln.K"));

/** Runs `body` with the server's Read of Kiln.K answered by `answer` (the engine's result, or another). */
async function withEngineRead(answer: (result: DataValue) => DataValue, body: () => Promise<void>): Promise<void> {
  const original = Object.getOwnPropertyDescriptor(ServerEngine.prototype, "read")!;
  const read = original.value as (this: ServerEngine, context: unknown, request: ReadRequest) => Promise<DataValue[]>;
  Object.defineProperty(ServerEngine.prototype, "read", {
    ...original,
    value: async function (this: ServerEngine, context: unknown, request: ReadRequest) {
      const results = await read.call(this, context, request);
      return results.map((result, index) =>
        request.nodesToRead![index]!.nodeId.toString().includes("Kiln.K") ? answer(result) : result,
      );
    },
  });
  try {
    await body();
  } finally {
    Object.defineProperty(ServerEngine.prototype, "read", original);
  }
}

/** Runs `body` with every Read of Kiln.K refused as a whole while `refuse()` says so (a ServiceFault). */
async function withReadRefused(refuse: () => boolean, body: () => Promise<void>): Promise<void> {
  type Handler = (this: OPCUAServer, message: { request: ReadRequest }, channel: unknown) => void;
  const original = Object.getOwnPropertyDescriptor(OPCUAServer.prototype, "_on_ReadRequest")!;
  const handle = original.value as Handler;
  Object.defineProperty(OPCUAServer.prototype, "_on_ReadRequest", {
    ...original,
    value: function (this: OPCUAServer, message: { request: ReadRequest }, channel: unknown) {
      // An invalid maxAge makes node-opcua's server answer the Read with a ServiceFault.
      if (readsK(message.request) && refuse()) message.request.maxAge = -1;
      handle.call(this, message, channel);
    },
  });
  try {
    await body();
  } finally {
    Object.defineProperty(OPCUAServer.prototype, "_on_ReadRequest", original);
  }
}

async function outageAndRepair(
  driver: OpcuaDriver,
  proxy: TcpProxy,
  received: { at: number; tag: string; quality: Sample["quality"] }[],
  armed: () => void,
): Promise<number> {
  await waitFor(() => received.some((sample) => sample.tag === "kiln.k" && sample.quality.severity === "good"), {
    what: "kiln.k good",
  });
  const mutedAt = Date.now();
  proxy.muteServer();
  await waitFor(() => driver.status === "reconnecting", { what: "the stall declared", timeoutMs: 10_000 });
  await new Promise((resolve) => setTimeout(resolve, STALL_MS - (Date.now() - mutedAt)));
  armed();
  proxy.restore();
  await waitFor(() => driver.status === "connected", { what: "connected again", timeoutMs: 20_000 });
  return mutedAt;
}

function newDriver(endpointUrl: string, logger?: RecordingLogger): OpcuaDriver {
  return new OpcuaDriver({
    endpointUrl,
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    connectionStrategy: { maxRetry: 1_000, initialDelayMs: 100, maxDelayMs: 400, randomisationFactor: 0.1 },
    timeouts: { keepAliveMs: 1_000, requestMs: 3_000 },
    monitoredItemRetry: RETRY,
    ...(logger ? { logger } : {}),
  });
}

describe("the read of current values after a repair", () => {
  test("a per-node Bad result keeps the tag uncertain with the status, and a later read makes it good", async () => {
    let bad = 0;
    await withEngineRead(
      (result) => {
        if (bad <= 0) return result;
        bad--;
        return new DataValue({ statusCode: StatusCodes.BadResourceUnavailable });
      },
      async () => {
        const proxy = new TcpProxy(simulator.port);
        const driver = newDriver(await proxy.start());
        const received: (Sample & { at: number })[] = [];
        try {
          await driver.connect();
          await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) =>
            received.push(...samples.map((sample) => ({ ...sample, at: Date.now() }))),
          );
          const mutedAt = await outageAndRepair(driver, proxy, received, () => (bad = 1));
          const k = await waitFor(
            () => {
              const last = received.filter((sample) => sample.tag === "kiln.k").at(-1);
              return last?.quality.severity === "good" && last.at > mutedAt && last;
            },
            { what: "kiln.k good again (before: bad BadResourceUnavailable forever)", timeoutMs: 8_000 },
          );
          expect(k.value).toBe(7);
          expect(bad).toBe(0);
          const after = received.filter((sample) => sample.tag === "kiln.k" && sample.at > mutedAt);
          // Never delivered bad: the bad read result is a reason, not the tag's value.
          expect(after.filter((sample) => sample.quality.severity === "bad")).toEqual([]);
          const unread = after.find((sample) => /BadResourceUnavailable/.test(sample.quality.reason ?? ""));
          expect(unread?.quality.severity).toBe("uncertain");
          expect(unread?.value).toBe(7);
        } finally {
          await driver.close();
          await proxy.close();
        }
      },
    );
  }, 60_000);

  // Sibling: the answer carries fewer results than nodes requested (a faulty server). It cannot
  // be attributed to tags (results go by position), so no tag of it is done: they stay uncertain
  // and are read again.
  test("a read answer with fewer results than nodes delivers none of them; the tags are read again", async () => {
    let short = 0;
    const engineRead = Object.getOwnPropertyDescriptor(ServerEngine.prototype, "read")!;
    const read = engineRead.value as (
      this: ServerEngine,
      context: unknown,
      request: ReadRequest,
    ) => Promise<DataValue[]>;
    Object.defineProperty(ServerEngine.prototype, "read", {
      ...engineRead,
      value: async function (this: ServerEngine, context: unknown, request: ReadRequest) {
        const results = await read.call(this, context, request);
        if (short <= 0 || !readsK(request) || results.length < 2) return results;
        short--;
        // node-opcua's server checks one result per node requested: drop the last node too.
        request.nodesToRead!.pop();
        return results.slice(0, -1);
      },
    });
    const proxy = new TcpProxy(simulator.port);
    const driver = newDriver(await proxy.start());
    const received: (Sample & { at: number })[] = [];
    try {
      await driver.connect();
      await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) =>
        received.push(...samples.map((sample) => ({ ...sample, at: Date.now() }))),
      );
      const mutedAt = await outageAndRepair(driver, proxy, received, () => (short = 1));
      for (const [tag, value] of [
        ["kiln.k", 7],
        ["kiln.c", 9],
      ] as const) {
        const last = await waitFor(
          () => {
            const sample = received.filter((s) => s.tag === tag).at(-1);
            return sample?.quality.severity === "good" && sample.at > mutedAt && sample;
          },
          { what: `${tag} good again`, timeoutMs: 8_000 },
        );
        expect(last.value).toBe(value);
        const after = received.filter((sample) => sample.tag === tag && sample.at > mutedAt);
        const unread = after.find((sample) => /gave \d+ results for \d+ nodes/.test(sample.quality.reason ?? ""));
        expect(unread?.quality.severity).toBe("uncertain");
        expect(unread?.value).toBe(value);
        expect(after.filter((sample) => sample.quality.severity === "good").every((s) => s.value === value)).toBe(true);
      }
      expect(short).toBe(0);
    } finally {
      Object.defineProperty(ServerEngine.prototype, "read", engineRead);
      await driver.close();
      await proxy.close();
    }
  }, 60_000);

  test("a refused whole Read is retried on the backoff, not at every Publish answer, with the status as reason", async () => {
    let refusing = false;
    let refused = 0;
    const logger = new RecordingLogger();
    await withReadRefused(
      () => {
        if (refusing) refused++;
        return refusing;
      },
      async () => {
        const proxy = new TcpProxy(simulator.port);
        const driver = newDriver(await proxy.start(), logger);
        const received: (Sample & { at: number })[] = [];
        try {
          await driver.connect();
          await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) =>
            received.push(...samples.map((sample) => ({ ...sample, at: Date.now() }))),
          );
          const mutedAt = await outageAndRepair(driver, proxy, received, () => (refusing = true));
          await waitFor(() => refused > 0, { what: "the first refusal" });
          const firstAt = Date.now();
          await new Promise((resolve) => setTimeout(resolve, 3_000));
          const within = refused;
          refusing = false;
          // Backoff 200, 400, 800, 800... ms (jitter shortens by up to 20%): at most 7 in 3 s
          // (before: one at every Publish answer, ~50 ms: dozens).
          expect(within).toBeGreaterThanOrEqual(3);
          expect(within).toBeLessThanOrEqual(8);
          const k = await waitFor(
            () => {
              const last = received.filter((sample) => sample.tag === "kiln.k").at(-1);
              return last?.quality.severity === "good" && last.at > firstAt && last;
            },
            { what: "kiln.k good once the Read is answered", timeoutMs: 5_000 },
          );
          expect(k.value).toBe(7);
          const after = received.filter((sample) => sample.tag === "kiln.k" && sample.at > mutedAt);
          const reasons = after.filter((sample) => /BadMaxAgeInvalid/.test(sample.quality.reason ?? ""));
          // Delivered once (the same reason is not repeated at each retry), uncertain with the last value.
          expect(reasons).toHaveLength(1);
          expect(reasons[0]!.quality.severity).toBe("uncertain");
          expect(reasons[0]!.value).toBe(7);
          expect(
            logger.lines.filter((line) => line.level === "warn" && /BadMaxAgeInvalid/.test(line.message)),
          ).toHaveLength(1);
        } finally {
          await driver.close();
          await proxy.close();
        }
      },
    );
  }, 60_000);
});
