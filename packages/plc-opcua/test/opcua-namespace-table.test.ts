import net from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { defineTags, KilnError, type Sample } from "@kiln/core";
import { DataType, DataValue, StatusCodes, Variant, type ReadRequest } from "node-opcua-client";
import { nodesets } from "node-opcua-nodesets";
import { OPCUAServer } from "node-opcua-server";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { OpcuaDriver } from "../src/index";
import { waitFor } from "./support/wait-for";

// adv13s HIGH-1 / HIGH-2 (issue 13): the driver trusted a namespace table it did not have. After a
// restart with the namespaces reordered and the NamespaceArray Read refused, `nsu=` tags stayed
// bound to the old indexes: the other namespace's node was shown good and written to. A
// NamespaceArray answered Bad while the server boots was replaced by a default table: every
// `nsu=` tag "not on the server" for good. A namespace registered late was never picked up. Now
// `nsu=` tags are bad ("namespace table not read yet: ...") and their writes refused until the
// table is read Good on the session, read again on the backoff (docs/adr/0022, amendment fix13t).
const PLANT = "urn:kiln:test:plant";
const OTHER = "urn:kiln:test:other";
const LATE = "urn:kiln:test:late";
const tags = defineTags({
  t: { dataType: "float64", address: `nsu=${PLANT};s=T` },
  w: { dataType: "float64", address: `nsu=${PLANT};s=W`, access: "readwrite" },
  late: { dataType: "float64", address: `nsu=${LATE};s=L` },
  status: { dataType: "int32", address: "i=2259" },
});

let workDir: string;
let port: number;
let server: OPCUAServer | undefined;
/** The value of W in each namespace (reset at each start: a restarted PLC). */
let written: Record<string, number> = {};
/** While true, the NamespaceArray node answers BadWaitingForInitialData (a booting PLC). */
let booting = false;
const restore: (() => void)[] = [];

function addVariables(uri: string, value: number): void {
  const addressSpace = server!.engine.addressSpace!;
  const namespace = addressSpace.getNamespace(uri)!;
  namespace.addVariable({
    organizedBy: addressSpace.rootFolder.objects,
    browseName: "T",
    nodeId: "s=T",
    dataType: "Double",
    minimumSamplingInterval: 100,
    value: { get: () => new Variant({ dataType: DataType.Double, value }) },
  });
  // A node only this namespace has: a browse that swaps namespaces shows it under the other URI.
  const only = uri === PLANT ? "PlantOnly" : "OtherOnly";
  namespace.addVariable({
    organizedBy: addressSpace.rootFolder.objects,
    browseName: only,
    nodeId: `s=${only}`,
    dataType: "Double",
    value: { get: () => new Variant({ dataType: DataType.Double, value }) },
  });
  written[uri] = 0;
  namespace.addVariable({
    organizedBy: addressSpace.rootFolder.objects,
    browseName: "W",
    nodeId: "s=W",
    dataType: "Double",
    accessLevel: "CurrentRead | CurrentWrite",
    userAccessLevel: "CurrentRead | CurrentWrite",
    value: {
      get: () => new Variant({ dataType: DataType.Double, value: written[uri] }),
      set: (variant: Variant) => {
        written[uri] = variant.value as number;
        return StatusCodes.Good;
      },
    },
  });
}

/** Starts a server with `uris` registered in that order: T is 100 in the plant's namespace, -1 in the other. */
async function startServer(uris: readonly string[]): Promise<void> {
  written = {};
  server = new OPCUAServer({ port, nodeset_filename: [nodesets.standard], allowAnonymous: true });
  await server.initialize();
  const addressSpace = server.engine.addressSpace!;
  for (const uri of uris) addressSpace.registerNamespace(uri);
  for (const uri of uris) addVariables(uri, uri === PLANT ? 100 : -1);
  const namespaces = addressSpace.findNode("i=2255") as unknown as { readValue: (...args: unknown[]) => DataValue };
  const readValue = namespaces.readValue.bind(namespaces);
  namespaces.readValue = (...args: unknown[]) =>
    booting ? new DataValue({ statusCode: StatusCodes.BadWaitingForInitialData }) : readValue(...args);
  await server.start();
}

/** While `refuse()`, every Read that includes the NamespaceArray is refused as a whole (a ServiceFault). */
function refuseNamespaceReads(refuse: () => boolean): void {
  type Handler = (this: OPCUAServer, message: { request: ReadRequest }, channel: unknown) => void;
  const original = Object.getOwnPropertyDescriptor(OPCUAServer.prototype, "_on_ReadRequest")!;
  const handle = original.value as Handler;
  Object.defineProperty(OPCUAServer.prototype, "_on_ReadRequest", {
    ...original,
    value: function (this: OPCUAServer, message: { request: ReadRequest }, channel: unknown) {
      const namespaceRead = (message.request.nodesToRead ?? []).some(
        (node) => node.nodeId.toString() === "ns=0;i=2255",
      );
      // An invalid maxAge makes node-opcua's server answer the Read with a ServiceFault.
      if (namespaceRead && refuse()) message.request.maxAge = -1;
      handle.call(this, message, channel);
    },
  });
  restore.push(() => Object.defineProperty(OPCUAServer.prototype, "_on_ReadRequest", original));
}

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-namespace-table-"));
  port = await new Promise<number>((resolve) => {
    const probe = net.createServer().listen(0, "127.0.0.1", () => {
      const { port: free } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(free));
    });
  });
});

afterEach(async () => {
  booting = false;
  for (const undo of restore.splice(0)) undo();
  await server?.shutdown(0);
  server = undefined;
});

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

const newDriver = () =>
  new OpcuaDriver({
    endpointUrl: `opc.tcp://127.0.0.1:${port}`,
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    connectionStrategy: { maxRetry: 1_000, initialDelayMs: 100, maxDelayMs: 400, randomisationFactor: 0.1 },
    timeouts: { keepAliveMs: 1_000, requestMs: 3_000 },
    monitoredItemRetry: { initialDelayMs: 200, maxDelayMs: 800 },
  });

const last = (seen: readonly Sample[], tag: string) => seen.findLast((sample) => sample.tag === tag);

async function expectWriteRefused(driver: OpcuaDriver): Promise<void> {
  const error = await driver.write(tags.get("w"), 42).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(KilnError.is(error, "KILN_CONNECTION_FAILED")).toBe(true);
  expect(error).toMatchObject({ retryable: true, details: { tag: "w" } });
  expect((error as Error).message).toMatch(/namespace table not read yet/);
}

describe("the namespace table the driver binds nsu= tags to (adv13s HIGH-1, HIGH-2)", () => {
  test("HIGH-1: restart with the namespaces reordered and the NamespaceArray Read refused: no value or write on the other namespace's node; correct once read", async () => {
    await startServer([PLANT, OTHER]);
    const driver = newDriver();
    await driver.connect();
    const seen: Sample[] = [];
    try {
      await driver.subscribe([tags.get("t"), tags.get("status")], { samplingIntervalMs: 100 }, (samples) =>
        seen.push(...samples),
      );
      await waitFor(() => last(seen, "t")?.value === 100, { what: "t good from the plant" });
      await driver.write(tags.get("w"), 1);
      expect(written[PLANT]).toBe(1);

      let refusing = true;
      refuseNamespaceReads(() => refusing);
      await server!.shutdown(0);
      await waitFor(() => driver.status === "reconnecting", { what: "reconnecting" });
      const mark = seen.length;
      await startServer([OTHER, PLANT]);
      await waitFor(() => driver.status === "connected", { what: "connected again", timeoutMs: 30_000 });
      // ns=0 tags do not depend on the table: they come back.
      await waitFor(() => seen.slice(mark).some((s) => s.tag === "status" && s.quality.severity === "good"), {
        what: "the ns=0 tag good again",
      });
      const t = await waitFor(() => seen.slice(mark).findLast((s) => s.tag === "t" && s.quality.severity === "bad"), {
        what: "t bad",
      });
      expect(t.quality.reason).toMatch(/namespace table not read yet/);
      const [read] = await driver.read([tags.get("t")]);
      expect(read).toMatchObject({ quality: { severity: "bad" } });
      expect(read!.quality.reason).toMatch(/namespace table not read yet/);
      await expectWriteRefused(driver);
      expect(written[OTHER]).toBe(0);
      // A few retries of the refused read: still nothing from the other namespace.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(seen.slice(mark).filter((s) => s.tag === "t" && s.quality.severity === "good")).toEqual([]);

      refusing = false;
      await waitFor(() => last(seen, "t")?.value === 100 && last(seen, "t")?.quality.severity === "good", {
        what: "t good from the plant again",
      });
      expect(seen.slice(mark).filter((s) => s.tag === "t" && s.value === -1)).toEqual([]);
      expect((await driver.read([tags.get("t")]))[0]).toMatchObject({ value: 100, quality: { severity: "good" } });
      await driver.write(tags.get("w"), 42);
      expect(written).toEqual({ [OTHER]: 0, [PLANT]: 42 });
    } finally {
      await driver.close();
    }
  }, 60_000);

  test("HIGH-2: NamespaceArray Bad (BadWaitingForInitialData) while the server boots: nsu= tags bad with that reason, then good", async () => {
    booting = true;
    await startServer([PLANT]);
    const driver = newDriver();
    await driver.connect();
    const seen: Sample[] = [];
    try {
      await driver.subscribe([tags.get("t")], { samplingIntervalMs: 100 }, (samples) => seen.push(...samples));
      const t = await waitFor(() => last(seen, "t"), { what: "t reported" });
      expect(t.quality.severity).toBe("bad");
      expect(t.quality.reason).toBe(
        "namespace table not read yet: the server answered its NamespaceArray BadWaitingForInitialData",
      );
      expect((await driver.read([tags.get("t")]))[0]!.quality.reason).toMatch(/BadWaitingForInitialData/);
      await expectWriteRefused(driver);
      expect(written[PLANT]).toBe(0);

      booting = false;
      await waitFor(() => last(seen, "t")?.value === 100 && last(seen, "t")?.quality.severity === "good", {
        what: "t good once the table is read",
      });
      await driver.write(tags.get("w"), 42);
      expect(written[PLANT]).toBe(42);
    } finally {
      await driver.close();
    }
  }, 60_000);

  test("HIGH-2 after a restart: the restarted server answers NamespaceArray Bad at first: nsu= tags bad with that reason, then good", async () => {
    await startServer([PLANT, OTHER]);
    const driver = newDriver();
    await driver.connect();
    const seen: Sample[] = [];
    try {
      await driver.subscribe([tags.get("t")], { samplingIntervalMs: 100 }, (samples) => seen.push(...samples));
      await waitFor(() => last(seen, "t")?.value === 100, { what: "t good" });
      await server!.shutdown(0);
      await waitFor(() => driver.status === "reconnecting", { what: "reconnecting" });
      const mark = seen.length;
      booting = true;
      await startServer([OTHER, PLANT]);
      await waitFor(() => driver.status === "connected", { what: "connected again", timeoutMs: 30_000 });
      const t = await waitFor(() => seen.slice(mark).findLast((s) => s.tag === "t" && s.quality.severity === "bad"), {
        what: "t bad",
      });
      expect(t.quality.reason).toMatch(/namespace table not read yet: .*BadWaitingForInitialData/);
      await expectWriteRefused(driver);
      booting = false;
      await waitFor(() => last(seen, "t")?.value === 100 && last(seen, "t")?.quality.severity === "good", {
        what: "t good once the table is read",
      });
      expect(seen.slice(mark).filter((s) => s.tag === "t" && s.quality.severity === "good" && s.value !== 100)).toEqual(
        [],
      );
    } finally {
      await driver.close();
    }
  }, 60_000);

  test("adv13v MEDIUM-2: browse() while the restarted server's table is unread is refused (whatever the root), not formatted from the previous run's table", async () => {
    await startServer([PLANT, OTHER]);
    const driver = newDriver();
    await driver.connect();
    const onlyAddresses = async (root?: string) =>
      (await driver.browse(root))
        .filter((variable) => variable.name.endsWith("Only"))
        .map((variable) => `${variable.name} ${variable.address}`)
        .sort();
    const expected = [`OtherOnly nsu=${OTHER};s=OtherOnly`, `PlantOnly nsu=${PLANT};s=PlantOnly`];
    try {
      expect(await onlyAddresses()).toEqual(expected);
      await server!.shutdown(0);
      await waitFor(() => driver.status === "reconnecting", { what: "reconnecting" });
      booting = true;
      await startServer([OTHER, PLANT]);
      await waitFor(() => driver.status === "connected", { what: "connected again", timeoutMs: 30_000 });
      // The default root and a numeric root (the sibling): both would be formatted from the table.
      for (const root of [undefined, "ns=0;i=85"]) {
        const error = await driver.browse(root).then(
          (result) => result,
          (caught: unknown) => caught,
        );
        expect(KilnError.is(error, "KILN_CONNECTION_FAILED")).toBe(true);
        expect(error).toMatchObject({ retryable: true });
        expect((error as Error).message).toMatch(/namespace table not read yet: .*BadWaitingForInitialData/);
      }
      booting = false;
      const browsed = await waitFor(
        () =>
          onlyAddresses().then(
            (found) => found,
            () => undefined,
          ),
        { what: "browse once the table is read", intervalMs: 200 },
      );
      expect(browsed).toEqual(expected);
      expect(await onlyAddresses("ns=0;i=85")).toEqual(expected);
    } finally {
      await driver.close();
    }
  }, 60_000);

  test("sibling: a namespace the server registers after the driver connected is picked up", async () => {
    await startServer([PLANT]);
    const driver = newDriver();
    await driver.connect();
    const seen: Sample[] = [];
    try {
      await driver.subscribe([tags.get("late")], { samplingIntervalMs: 100 }, (samples) => seen.push(...samples));
      const late = await waitFor(() => last(seen, "late"), { what: "late reported" });
      expect(late.quality.reason).toBe(`namespace ${LATE} is not on the server`);

      const addressSpace = server!.engine.addressSpace!;
      addressSpace.registerNamespace(LATE).addVariable({
        organizedBy: addressSpace.rootFolder.objects,
        browseName: "L",
        nodeId: "s=L",
        dataType: "Double",
        value: { get: () => new Variant({ dataType: DataType.Double, value: 5 }) },
      });
      await waitFor(() => last(seen, "late")?.value === 5 && last(seen, "late")?.quality.severity === "good", {
        what: "late good",
        timeoutMs: 10_000,
      });
      expect((await driver.read([tags.get("late")]))[0]).toMatchObject({ value: 5, quality: { severity: "good" } });
    } finally {
      await driver.close();
    }
  }, 60_000);
});
