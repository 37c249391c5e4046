import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { defineTags, type Sample } from "@kiln/core";
import { DataType, Variant } from "node-opcua-client";
import { nodesets } from "node-opcua-nodesets";
import { OPCUAServer } from "node-opcua-server";
import { afterAll, beforeAll, expect, test } from "vitest";
import { OPCUA_SIMULATOR_NAMESPACE_URI, OpcuaDriver, OpcuaSimulator } from "../src/index";
import { waitFor } from "./support/wait-for";

// adv13 LOW (issue 13): an IPv6 literal endpoint URL (opc.tcp://[::1]:4840) was refused by the
// options regex; and had it passed, node-opcua's transport handed "[::1]" (brackets included) to
// the socket as a host name: ENOTFOUND, never connected (docs/adr/0022, amendment fix13ag). A raw
// node-opcua server listening on ::1 only.
const NS = "urn:kiln:test:ipv6";

/** Whether this host can listen on the IPv6 loopback (containers without IPv6 cannot). */
async function ipv6LoopbackAvailable(): Promise<boolean> {
  return await new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", () => resolve(false));
    probe.listen(0, "::1", () => probe.close(() => resolve(true)));
  });
}

const ipv6 = await ipv6LoopbackAvailable();
if (!ipv6) console.log("skipping the IPv6 endpoint tests: this host cannot listen on ::1 (no IPv6 loopback)");

let workDir: string;
let server: OPCUAServer;
let port: number;
let value = 7;

beforeAll(async () => {
  if (!ipv6) return;
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-ipv6-"));
  server = new OPCUAServer({ port: 0, hostname: "::1", nodeset_filename: [nodesets.standard], allowAnonymous: true });
  await server.initialize();
  const addressSpace = server.engine.addressSpace!;
  const namespace = addressSpace.registerNamespace(NS);
  namespace.addVariable({
    organizedBy: addressSpace.rootFolder.objects,
    browseName: "V",
    nodeId: "s=V",
    dataType: "Int32",
    value: {
      get: () => new Variant({ dataType: DataType.Int32, value }),
      set: (variant: Variant) => {
        value = variant.value as number;
        return 0 as never;
      },
    },
  });
  await server.start();
  port = (server.endpoints[0] as unknown as { port: number }).port;
});

afterAll(async () => {
  if (!ipv6) return;
  await server.shutdown();
  await rm(workDir, { recursive: true, force: true });
});

const tags = defineTags({ v: { dataType: "int32", address: `nsu=${NS};s=V`, access: "readwrite" } });

function driverAt(endpointUrl: string): OpcuaDriver {
  return new OpcuaDriver({
    endpointUrl,
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    // connectMs generous: the first connect also creates the client certificate (slow on a loaded machine).
    timeouts: { connectMs: 30_000, requestMs: 5_000 },
    connectionStrategy: { maxRetry: 0, initialDelayMs: 100, maxDelayMs: 400 },
  });
}

test.skipIf(!ipv6)(
  "a driver at opc.tcp://[::1]:port connects, reads, writes and subscribes (needs an IPv6 loopback)",
  async () => {
    const driver = driverAt(`opc.tcp://[::1]:${port}`);
    try {
      // Before: KILN_VALIDATION at endpointUrl; with the regex alone widened, getaddrinfo ENOTFOUND [::1].
      await driver.connect();
      expect(driver.status).toBe("connected");
      const [sample] = await driver.read(tags.list());
      expect(sample).toMatchObject({ value: 7, quality: { severity: "good" } });
      await driver.write(tags.get("v"), 11);
      expect(value).toBe(11);
      const received: Sample[] = [];
      const unsubscribe = await driver.subscribe(tags.list(), { samplingIntervalMs: 100 }, (samples) =>
        received.push(...samples),
      );
      value = 12;
      await waitFor(() => received.some((s) => s.value === 12 && s.quality.severity === "good"), {
        what: "12 delivered",
      });
      unsubscribe();
    } finally {
      await driver.close();
    }
  },
  60_000,
);

test.skipIf(!ipv6)(
  "sibling: an IPv6 address nothing listens on fails as a connection failure naming the endpoint, not a name lookup (needs an IPv6 loopback)",
  async () => {
    const closed = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, "::1", () => {
        const { port: free } = probe.address() as { port: number };
        probe.close(() => resolve(free));
      });
    });
    const driver = driverAt(`opc.tcp://[::1]:${closed}`);
    try {
      const error = await driver.connect().then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(error).toMatchObject({ code: "KILN_CONNECTION_FAILED" });
      expect(String((error as Error).message)).toContain(`[::1]:${closed}`);
      // Refused by the IPv6 loopback (the socket reached ::1), not a failed lookup of "[::1]" as a name.
      expect(JSON.stringify({ message: (error as Error).message, cause: String((error as Error).cause) })).toMatch(
        /ECONNREFUSED/,
      );
    } finally {
      await driver.close();
    }
  },
  60_000,
);

test.skipIf(!ipv6)(
  "sibling: a simulator listening on ::1 gives opc.tcp://[::1]:port as its endpoint, and a driver connects to it (needs an IPv6 loopback)",
  async () => {
    const simulatorTags = defineTags({
      a: { dataType: "int32", address: `nsu=${OPCUA_SIMULATOR_NAMESPACE_URI};s=Kiln.A` },
    });
    const simulator = new OpcuaSimulator({
      tags: simulatorTags,
      host: "::1",
      securityModes: ["None"],
      pkiDir: path.join(workDir, "simulator"),
    });
    await simulator.start();
    const driver = driverAt(simulator.endpointUrl);
    try {
      // Before: opc.tcp://::1:port, which the driver's options refuse (the host must be in brackets).
      expect(simulator.endpointUrl).toBe(`opc.tcp://[::1]:${simulator.port}`);
      await driver.connect();
      const [sample] = await driver.read(simulatorTags.list());
      expect(sample?.quality.severity).toBe("good");
    } finally {
      await driver.close();
      await simulator.dispose();
    }
  },
  60_000,
);

test.skipIf(!ipv6)(
  "a driver at opc.tcp://[::1]:port with SignAndEncrypt (the default) connects, and an untrusted server certificate there is refused as untrusted (needs an IPv6 loopback)",
  async () => {
    // adv13z MEDIUM-1: secure modes failed at opc.tcp://[::1] ("Fail to connect ... to collect server's
    // certificate (in findEndpoint)"): node-opcua fetches the server's certificate through a client of its
    // own, which never got the driver's IPv6 socket (it looked "[::1]" up as a name).
    const simulatorTags = defineTags({
      a: { dataType: "int32", address: `nsu=${OPCUA_SIMULATOR_NAMESPACE_URI};s=Kiln.A` },
    });
    const simulator = new OpcuaSimulator({
      tags: simulatorTags,
      host: "::1",
      securityModes: ["SignAndEncrypt"],
      pkiDir: path.join(workDir, "secure-simulator"),
    });
    await simulator.start();
    const secure = (pkiDir: string, trusted: string[]) =>
      new OpcuaDriver({
        endpointUrl: simulator.endpointUrl,
        pki: { dir: pkiDir, trustedServerCertificates: trusted },
        timeouts: { connectMs: 30_000, requestMs: 5_000 },
        connectionStrategy: { maxRetry: 0, initialDelayMs: 100, maxDelayMs: 400 },
      });
    const driver = secure(path.join(workDir, "secure-client"), [simulator.certificateFile]);
    const stranger = secure(path.join(workDir, "stranger-client"), []);
    try {
      await driver.connect();
      const [sample] = await driver.read(simulatorTags.list());
      expect(sample?.quality.severity).toBe("good");
      // Sibling: the certificate check still applies on this path.
      const error = await stranger.connect().then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(error).toMatchObject({
        code: "KILN_CONNECTION_FAILED",
        details: { reason: "server-certificate-untrusted" },
      });
    } finally {
      await driver.close();
      await stranger.close();
      await simulator.dispose();
    }
  },
  90_000,
);
