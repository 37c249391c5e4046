import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { createControlSystem, defineTags, type ControlSystem } from "@kiln/core";
import { ModbusDriver, ModbusSimulator } from "@kiln/plc-modbus";
import { OPCUA_SIMULATOR_NAMESPACE_URI, OpcuaDriver, OpcuaSimulator } from "@kiln/plc-opcua";
import { SparkplugEdgeNode, SparkplugHost, qualifiedTagName } from "@kiln/sparkplug";
import { startAedes, type TestBroker } from "@kiln/sparkplug/testing";
import { PostgresStore } from "@kiln/store-postgres";

/** The two presses' tags, on a Modbus TCP PLC each. */
export const pressTags = defineTags({
  "press.force": { dataType: "float32", unit: "kN", address: "IR0:float32:ABCD", description: "Ram force" },
  "press.strokes": { dataType: "uint32", address: "IR2:uint32:ABCD", description: "Strokes since start" },
  "press.running": { dataType: "bool", address: "DI0" },
});

const NS = OPCUA_SIMULATOR_NAMESPACE_URI;
/** The oven's tags, on an OPC UA server. */
export const ovenTags = defineTags({
  "oven.temperature": { dataType: "float64", unit: "°C", address: `nsu=${NS};s=Oven.Temperature` },
  "oven.batches": { dataType: "uint32", address: `nsu=${NS};s=Oven.Batches` },
});

/** The host application's id: the edge nodes publish while it is online. */
export const HOST_ID = "fleet-host";

/** One machine of the fleet: its Kiln system and its edge node (edge node id = machine id). */
export interface FleetMachine {
  readonly id: string;
  readonly protocol: "modbus" | "opcua";
  readonly system: ControlSystem;
  readonly node: SparkplugEdgeNode;
  /** A tag of this machine as the central store names it (`<group>/<machine>/<machine>/<tag>`). */
  centralTag(tag: string): string;
}

/** A running fleet: three machines, a broker, a host and its database. */
export interface Fleet {
  /** The broker every edge node and the host use (watch it with any MQTT client). */
  readonly brokerUrl: string;
  /** `embedded` (aedes, in this process) or `external` (MQTT_URL). */
  readonly broker: "embedded" | "external";
  readonly group: string;
  /** `pglite` (in this process, in memory) or `postgres` (DATABASE_URL). */
  readonly database: "pglite" | "postgres";
  readonly machines: readonly FleetMachine[];
  readonly host: SparkplugHost;
  readonly store: PostgresStore;
  /** Stops the edge nodes, the machines, the host (which drains into the store), the store and the broker. */
  stop(): Promise<void>;
}

/** Where a fleet connects; each is optional. */
export interface FleetOptions {
  /** The broker; default: an embedded aedes broker on a free loopback port. */
  readonly mqttUrl?: string;
  /** PostgreSQL; default: PGlite in memory. */
  readonly databaseUrl?: string;
  /** Sparkplug group id. @default "plant-1" */
  readonly group?: string;
}

/**
 * Starts the fleet: two presses on Modbus TCP simulators, an oven on an OPC UA simulator, each a
 * Kiln system with a Sparkplug edge node (store-and-forward in memory), and one Sparkplug host
 * writing every metric into one PostgreSQL database.
 */
export async function startFleet(options: FleetOptions = {}): Promise<Fleet> {
  const group = options.group ?? "plant-1";
  const cleanups: (() => Promise<void>)[] = [];
  const stop = async (): Promise<void> => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  };
  try {
    let broker: TestBroker | undefined;
    if (options.mqttUrl === undefined) {
      broker = await startAedes();
      cleanups.push(() => broker!.stop());
    }
    const brokerUrl = options.mqttUrl ?? broker!.url;

    const store =
      options.databaseUrl === undefined
        ? new PostgresStore({ pglite: await PGlite.create() })
        : new PostgresStore({ connectionString: options.databaseUrl });
    await store.open([]);
    cleanups.push(() => store.close());
    const host = new SparkplugHost({ brokerUrl, hostId: HOST_ID, groups: [group], store });
    await host.start();
    cleanups.push(() => host.stop());

    const machines: FleetMachine[] = [];
    const addMachine = async (id: string, protocol: FleetMachine["protocol"], system: ControlSystem) => {
      const node = new SparkplugEdgeNode({
        system,
        brokerUrl,
        groupId: group,
        edgeNodeId: id,
        primaryHostId: HOST_ID,
        // DCMD writes run as a viewer: this fleet only reports.
        principal: { id: "fleet-host", roles: ["viewer"] },
        reconnect: { initialDelayMs: 500, maxDelayMs: 5_000 },
        storeAndForward: {},
        // The host is a Kiln SparkplugHost: keep what was published until it says it stored it (ADR 0037).
        // "auto", the default with storeAndForward and primaryHostId, does the same from the host's first
        // acknowledgement on; true says so from the start.
        awaitHostAcks: true,
      });
      await system.start();
      cleanups.push(() => system.stop());
      await node.start();
      cleanups.push(() => node.stop());
      machines.push({
        id,
        protocol,
        system,
        node,
        centralTag: (tag) => qualifiedTagName({ groupId: group, edgeNodeId: id, deviceId: id, metric: tag }),
      });
    };

    for (const [index, id] of ["press-1", "press-2"].entries()) {
      const simulator = new ModbusSimulator({
        tags: pressTags,
        signals: {
          "press.force": { kind: "sine", offset: 400, amplitude: 150 + 50 * index, periodMs: 4_000 },
          "press.strokes": { kind: "counter", start: 0, step: 1 },
        },
        initialValues: { "press.running": true },
      });
      const endpoint = await simulator.start();
      cleanups.push(() => simulator.stop());
      const driver = new ModbusDriver({ transport: { kind: "tcp", ...endpoint }, name: `${id}-plc`, unitId: 1 });
      await addMachine(
        id,
        "modbus",
        createControlSystem({ machineId: id, tags: pressTags, driver, scanGroups: { default: { periodMs: 500 } } }),
      );
    }

    const pki = await mkdtemp(path.join(tmpdir(), "kiln-fleet-"));
    cleanups.push(() => rm(pki, { recursive: true, force: true }));
    const oven = new OpcuaSimulator({
      tags: ovenTags,
      signals: {
        "oven.temperature": { kind: "sine", offset: 180, amplitude: 20, periodMs: 10_000 },
        "oven.batches": { kind: "counter", start: 0, step: 1 },
      },
      securityModes: ["None"],
      pkiDir: path.join(pki, "server"),
    });
    await oven.start();
    cleanups.push(() => oven.dispose());
    const ovenDriver = new OpcuaDriver({
      endpointUrl: oven.endpointUrl,
      security: { mode: "None" },
      pki: { dir: path.join(pki, "client") },
      name: "oven-1-plc",
    });
    await addMachine(
      "oven-1",
      "opcua",
      createControlSystem({
        machineId: "oven-1",
        tags: ovenTags,
        driver: ovenDriver,
        scanGroups: { default: { periodMs: 500 } },
      }),
    );

    return {
      brokerUrl,
      broker: broker === undefined ? "external" : "embedded",
      group,
      database: options.databaseUrl === undefined ? "pglite" : "postgres",
      machines,
      host,
      store,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
