import net from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { defineTags, type Sample, type SignalSpec, type TagDefinitionInput } from "@kiln/core";
import { ServerSession } from "node-opcua-server";
import { afterAll, beforeAll, expect, test } from "vitest";
import { OPCUA_SIMULATOR_NAMESPACE_URI as NS, OpcuaDriver, OpcuaSimulator } from "../src/index";
import { waitFor } from "./support/wait-for";

// adv13v MEDIUM-3 (issue 13): a server that takes 4 s to answer the driver's read of current values after a
// repair (upkeep), answering nothing else meanwhile (a one-request-at-a-time PLC), turned one repair into an
// endless loop: the read never holds the stall bound (about 2 s), so a stall was declared, the channel broken
// before the answer came (the response time never learnt it), the read backoff reset by the loss, and the same
// read sent at once on the next connection: 6 stalls in 25 s, tags uncertain for good. Now a stall declared
// while that read was the oldest request out gives it timeouts.requestMs next time, and a loss while it is out
// counts as a failed read (docs/adr/0022, amendment fix13w).
const BUSY_MS = 4_000;
const definitions: Record<string, TagDefinitionInput> = {
  "kiln.a": { dataType: "int32", address: `nsu=${NS};s=Kiln.A` },
};
const signals: Record<string, SignalSpec> = { "kiln.a": { kind: "counter", start: 1, step: 1 } };
for (let index = 1; index <= 6; index++) {
  definitions[`kiln.k${index}`] = { dataType: "int32", address: `nsu=${NS};s=Kiln.K${index}` };
  signals[`kiln.k${index}`] = { kind: "constant", value: index };
}
const tags = defineTags(definitions);

let dir: string;
let simulator: OpcuaSimulator;
let proxy: net.Server;
/** While true, the proxy drops the server's answers (a short outage that causes the first repair). */
let muted = false;
/** Until when the server is busy (its answers held): after any message naming 3 or more of the K tags. */
let busyUntil = 0;
const resend = Object.getOwnPropertyDescriptor(ServerSession.prototype, "resendMonitoredItemInitialValues")!;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-slow-upkeep-"));
  simulator = new OpcuaSimulator({
    tags,
    signals,
    securityModes: ["None"],
    updateIntervalMs: 50,
    pkiDir: path.join(dir, "server"),
  });
  await simulator.start();
  // Like many C stacks: no current values resent when a session is re-activated, so the driver reads them.
  Object.defineProperty(ServerSession.prototype, "resendMonitoredItemInitialValues", {
    value: () => Promise.resolve(),
    configurable: true,
    writable: true,
  });
  proxy = net.createServer((client) => {
    const server = net.connect(simulator.port, "127.0.0.1");
    const held: Buffer[] = [];
    const flush = (): void => {
      if (Date.now() >= busyUntil) for (const chunk of held.splice(0)) client.write(chunk);
      else setTimeout(flush, busyUntil - Date.now());
    };
    for (const socket of [client, server]) {
      socket.on("error", () => undefined);
      socket.on("close", () => {
        client.destroy();
        server.destroy();
      });
    }
    client.on("data", (data: Buffer) => {
      const text = data.toString("latin1");
      if (text.startsWith("MSG") && text.split("Kiln.K").length - 1 >= 3) busyUntil = Date.now() + BUSY_MS;
      server.write(data);
    });
    server.on("data", (data: Buffer) => {
      if (muted) return;
      if (Date.now() < busyUntil || held.length > 0) {
        held.push(data);
        flush();
      } else client.write(data);
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
});

afterAll(async () => {
  Object.defineProperty(ServerSession.prototype, "resendMonitoredItemInitialValues", resend);
  proxy?.close();
  await simulator?.dispose();
  await rm(dir, { recursive: true, force: true });
});

test("a read of current values the server takes 4 s for after a repair: at most one stall for it, then the tags are good", async () => {
  const driver = new OpcuaDriver({
    endpointUrl: `opc.tcp://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`,
    security: { mode: "None" },
    pki: { dir: path.join(dir, "client") },
    connectionStrategy: { maxRetry: 1_000, initialDelayMs: 100, maxDelayMs: 400, randomisationFactor: 0.1 },
    timeouts: { keepAliveMs: 1_000, requestMs: 10_000 },
    monitoredItemRetry: { initialDelayMs: 200, maxDelayMs: 800 },
  });
  const stalls: number[] = [];
  driver.onStatusChange((change) => {
    if (/link stalled/.test(change.reason ?? "")) stalls.push(Date.now());
  });
  const seen: { at: number; sample: Sample }[] = [];
  try {
    await driver.connect();
    await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) =>
      seen.push(...samples.map((sample) => ({ at: Date.now(), sample }))),
    );
    // The application's CreateMonitoredItems (held 4 s) is no stall.
    await waitFor(() => seen.some(({ sample }) => sample.tag === "kiln.k1" && sample.quality.severity === "good"), {
      what: "k1 good",
    });
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(stalls).toEqual([]);
    // A 3 s outage: the stall it causes may be declared after it ended (the bound had grown to 4 s answers).
    muted = true;
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    muted = false;
    const restoredAt = Date.now();
    await waitFor(
      () =>
        seen.some(
          ({ at, sample }) => at > restoredAt && sample.tag === "kiln.k1" && sample.quality.severity === "good",
        ),
      { what: "k1 good again after the repair", timeoutMs: 20_000 },
    );
    // The outage's stall, and the slow read taken for one once at most (it had never answered, so nothing
    // was learnt before).
    expect(stalls.length).toBeLessThanOrEqual(2);
    const settledAt = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect(stalls.filter((at) => at > settledAt)).toEqual([]);
    expect(driver.status).toBe("connected");
  } finally {
    await driver.close();
  }
}, 60_000);
