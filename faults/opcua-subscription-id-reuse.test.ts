import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createControlSystem, defineTags, MemoryStore, type Sample } from "@kiln/core";
import { OpcuaDriver } from "@kiln/plc-opcua";
import {
  AttributeIds,
  DataType,
  DataValue,
  OPCUAClient,
  OPCUAServer,
  TimestampsToReturn,
  StatusCodes,
  Variant,
  nodesets,
  type ClientSession,
  type UAVariable,
} from "node-opcua";
// node-opcua numbers subscriptions from a process-wide counter; a PLC stack (open62541, many
// embedded servers) starts again from the same number at every boot. This sets it, as they do.
import { setNextSubscriptionId } from "node-opcua-server/dist/server_engine.js";
import { afterEach, describe, expect, test } from "vitest";
import { freePort } from "./support/cluster";
import { TcpProxy } from "../packages/plc-opcua/test/support/tcp-proxy";
import { waitFor } from "../packages/plc-opcua/test/support/wait-for";
import "../packages/plc-opcua/test/support/node-opcua-logs-setup";

// Adversarial review 13r: after a server restart that numbers subscriptions from the same start,
// Kiln's old subscription id is another client's (an HMI's). H2: node-opcua's repair transferred
// it to Kiln's session, and the HMI's value (-4242) was shown as Kiln's tag, good, then the tag
// froze. H1: the driver's rebuild took the HMI's subscription over and deleted it.
// Adversarial review adv13, HIGH-1/HIGH-2: the fix of 13r told a restart by ServerStatus.StartTime;
// a server that gives none, the same one at every boot (a PLC without a clock) or fails the read
// let both happen again. Kiln now never takes a subscription over (docs/adr/0022, amendment fix13).
const HMI_VALUE = -4242;
const FIRST_ID = 1000;
const tags = defineTags({ counter: { dataType: "int32", address: "nsu=urn:kiln:reuse;s=Counter", scanGroup: "fast" } });

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

/** What ServerStatus.StartTime answers: the boot time, nothing (Null), 2000-01-01 at every boot, or a Bad status. */
type StartTime = "normal" | "none" | "constant" | "failing";

function answerStartTime(server: OPCUAServer, startTime: StartTime): void {
  if (startTime === "normal") return;
  const node = server.engine.addressSpace!.findNode("i=2257") as UAVariable;
  const value = (): Variant =>
    startTime === "none"
      ? new Variant({ dataType: DataType.Null })
      : new Variant({ dataType: DataType.DateTime, value: new Date("2000-01-01T00:00:00Z") });
  if (startTime === "failing") {
    node.bindVariable({ timestamped_get: () => new DataValue({ statusCode: StatusCodes.BadInternalError }) }, true);
  } else {
    node.bindVariable({ get: value }, true);
  }
}

/**
 * The rig: a server numbering subscriptions from {@link FIRST_ID} at every boot, Kiln behind a TCP
 * proxy (its driver subscribed directly, or through a Kiln system with a subscribed scan group),
 * and an HMI client straight to the server.
 */
async function rig({
  startTime = "normal",
  via = "driver",
}: { startTime?: StartTime; via?: "driver" | "system" } = {}) {
  const dir = await mkdtemp(path.join(tmpdir(), "kiln-id-reuse-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  let counter = 0;
  const ticker = setInterval(() => counter++, 100);
  cleanups.push(async () => clearInterval(ticker));
  let server: OPCUAServer | undefined;
  const port = await freePort();
  const start = async (): Promise<void> => {
    setNextSubscriptionId(FIRST_ID);
    server = new OPCUAServer({ port, nodeset_filename: [nodesets.standard], allowAnonymous: true });
    await server.initialize();
    const ns = server.engine.addressSpace!.registerNamespace("urn:kiln:reuse");
    const folder = ns.addFolder(server.engine.addressSpace!.rootFolder.objects, { browseName: "Reuse" });
    const variable = (name: string, get: () => number) =>
      ns.addVariable({
        componentOf: folder,
        browseName: name,
        nodeId: `s=${name}`,
        dataType: "Int32",
        minimumSamplingInterval: 100,
        value: { get: () => new Variant({ dataType: DataType.Int32, value: get() }) },
      });
    variable("Counter", () => counter);
    variable("Hmi", () => HMI_VALUE);
    answerStartTime(server, startTime);
    await server.start();
  };
  await start();
  cleanups.push(async () => server?.shutdown(0));
  /** The subscription ids the server holds on the HMI's sessions. */
  const hmiHolds = (): number[] =>
    server!.engine
      .getSessions()
      .filter((session) => session.sessionName.startsWith("HMI"))
      .flatMap((session) => session.publishEngine.subscriptions.map((each) => each.id));
  /** Restarts the server and waits until the HMI's client has re-created its subscription: the first id again. */
  const restart = async (): Promise<void> => {
    await server!.shutdown(0);
    await start();
    await waitFor(() => hmiHolds().includes(FIRST_ID), {
      what: "the HMI's subscription re-created on the restarted server",
      timeoutMs: 20_000,
    });
  };

  const proxy = new TcpProxy(port);
  const url = await proxy.start();
  cleanups.push(() => proxy.close());
  const driver = new OpcuaDriver({
    endpointUrl: url,
    security: { mode: "None" },
    pki: { dir: path.join(dir, "pki") },
    connectionStrategy: { maxRetry: 1000, initialDelayMs: 200, maxDelayMs: 1000, randomisationFactor: 0.1 },
    timeouts: { keepAliveMs: 1000, requestMs: 2000, connectMs: 8000 },
  });
  cleanups.push(() => driver.close());
  const received: Sample[] = [];
  if (via === "driver") {
    await driver.connect();
    await driver.subscribe([tags.get("counter")], { samplingIntervalMs: 200 }, (samples) => received.push(...samples));
  } else {
    const system = createControlSystem({
      machineId: "kiln-1",
      tags,
      store: new MemoryStore(),
      driver,
      scanGroups: { fast: { periodMs: 200, mode: "subscribe" } },
      acquisition: { timeoutMs: 3_000, reconnect: { initialDelayMs: 200, maxDelayMs: 1_000 } },
      logging: { maxLatencyMs: 100 },
    });
    await system.start();
    cleanups.push(() => system.stop());
    // What the system shows for the tag, as an HMI of Kiln would read it.
    const poll = setInterval(() => {
      const sample = system.read("counter");
      if (sample) received.push(sample);
    }, 50);
    cleanups.push(async () => clearInterval(poll));
  }
  await waitFor(() => received.some((sample) => sample.quality.severity === "good"), { what: "Kiln's first value" });

  // The HMI: another anonymous client, straight to the server, subscribed to its own node.
  const hmi = OPCUAClient.create({
    endpointMustExist: false,
    clientName: "HMI",
    connectionStrategy: { maxRetry: 1000, initialDelay: 200, maxDelay: 1000 },
  });
  cleanups.push(() => hmi.disconnect());
  await hmi.connect(`opc.tcp://127.0.0.1:${port}`);
  const session: ClientSession = await hmi.createSession();
  const subscription = await session.createSubscription2({
    requestedPublishingInterval: 200,
    requestedMaxKeepAliveCount: 10,
    requestedLifetimeCount: 100,
    publishingEnabled: true,
  });
  const ns = (await session.readNamespaceArray()).indexOf("urn:kiln:reuse");
  await subscription.monitor(
    { nodeId: `ns=${ns};s=Hmi`, attributeId: AttributeIds.Value },
    { samplingInterval: 100, queueSize: 1 },
    TimestampsToReturn.Both,
  );
  expect(hmiHolds()).toHaveLength(1);
  return { driver, received, proxy, restart, hmiHolds };
}

type Rig = Awaited<ReturnType<typeof rig>>;

/** H2: node-opcua's repair after a restart (proxy cut while the server restarts). */
async function afterRepair({ driver, received, proxy, restart }: Rig): Promise<void> {
  proxy.drop(); // Kiln cannot reach the server until the HMI has its subscription back
  await restart();
  const mark = received.length;
  proxy.restore();
  await waitFor(() => driver.status === "connected", { what: "Kiln connected again", timeoutMs: 20_000 });
  await waitFor(() => received.slice(mark).filter((sample) => sample.quality.severity === "good").length >= 5, {
    what: "fresh counter values",
    timeoutMs: 20_000,
  });
}

/** H1: the driver's rebuild after a stalled repair (blackholed proxy while the server restarts). */
async function afterRebuild({ driver, received, proxy, restart }: Rig): Promise<void> {
  proxy.blackhole(); // node-opcua's repair stalls; the watchdog rebuilds
  await restart();
  // Past the repair watchdog (maxDelayMs + connectMs = 9 s): the driver is rebuilding.
  await new Promise((resolve) => setTimeout(resolve, 11_000));
  const mark = received.length;
  proxy.restore();
  await waitFor(() => driver.status === "connected", { what: "Kiln connected again", timeoutMs: 30_000 });
  await waitFor(() => received.slice(mark).filter((sample) => sample.quality.severity === "good").length >= 3, {
    what: "fresh counter values",
    timeoutMs: 20_000,
  });
}

/** The HMI kept its subscription, Kiln never showed the HMI's value, and Kiln's tag is live. */
async function expectHmiUntouched({ received, hmiHolds }: Rig): Promise<void> {
  expect(hmiHolds()).toEqual([FIRST_ID]);
  expect(received.filter((sample) => sample.value === HMI_VALUE)).toEqual([]);
  const mark = received.length;
  const values = (): number[] =>
    received
      .slice(mark)
      .filter((sample) => sample.quality.severity === "good")
      .map((sample) => sample.value as number);
  // Live, not frozen: a good value later than the first one seen from here.
  await waitFor(() => values().length > 0 && values().at(-1)! > values()[0]!, {
    what: "Kiln's tag still updating",
    timeoutMs: 10_000,
  });
  expect(received.filter((sample) => sample.value === HMI_VALUE)).toEqual([]);
}

describe("a restarted server that numbers subscriptions again (adversarial review 13r)", () => {
  test("H2: node-opcua's repair transfers the id, now the HMI's: Kiln re-creates its subscription, never shows the HMI's value, and its tag keeps updating", async () => {
    const setup = await rig();
    await afterRepair(setup);
    await expectHmiUntouched(setup);
  }, 90_000);

  test("H1: the driver's rebuild (a stalled repair) does not take over the HMI's subscription: the server keeps it on the HMI's session", async () => {
    const setup = await rig();
    await afterRebuild(setup);
    await expectHmiUntouched(setup);
  }, 90_000);
});

// adv13 HIGH-1 (repair) and HIGH-2 (rebuild): the same, with a StartTime that cannot tell a restart.
describe("a restarted server whose StartTime tells nothing (adversarial review adv13)", () => {
  for (const startTime of ["none", "constant", "failing"] as const) {
    test(`HIGH-1, StartTime ${startTime}: after node-opcua's repair the HMI keeps its subscription and Kiln never shows its value`, async () => {
      const setup = await rig({ startTime });
      await afterRepair(setup);
      await expectHmiUntouched(setup);
    }, 90_000);
  }

  test("HIGH-2, StartTime constant: the driver's rebuild leaves the HMI's subscription alone", async () => {
    const setup = await rig({ startTime: "constant" });
    await afterRebuild(setup);
    await expectHmiUntouched(setup);
  }, 90_000);

  for (const [startTime, recovery] of [
    ["constant", afterRebuild],
    ["constant", afterRepair],
    ["none", afterRepair],
  ] as const) {
    test(`through a Kiln system, StartTime ${startTime}, ${recovery === afterRebuild ? "rebuild" : "repair"}: the HMI keeps its subscription, the system never shows its value`, async () => {
      const setup = await rig({ startTime, via: "system" });
      await recovery(setup);
      await expectHmiUntouched(setup);
    }, 90_000);
  }
});
