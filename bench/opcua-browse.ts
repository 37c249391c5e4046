import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { createControlSystem, defineTags, MemoryStore, SimulatedPlc, type TagDefinitionInput } from "@kiln/core";
import { OpcuaServer } from "@kiln/opcua-server";
import { fileURLToPath } from "node:url";
import { bareOpcuaServer } from "./_bare-opcua-server";
import { forkReady, machine, round, stopChild } from "./harness";

// opcua-browse: the event-loop block one Browse can cause. A Kiln server (default limits) whose
// folder `big` holds 4,000 tags; one raw node-opcua client in another process browses it with
// the full ResultMask (every NodeClass, both directions, unlimited references per node), then
// follows every continuation point with BrowseNext, ROUNDS times. perf_hooks'
// monitorEventLoopDelay (1 ms resolution) records how long the loop was held meanwhile: its p99
// and max are what a control loop sharing the process would wait. Also reported: references
// returned per round (must equal the folder's) and the pieces (Browse + BrowseNext calls) per round.
// Baseline: a bare node-opcua server with the same folder, browsed the same way (it describes every
// reference of the folder in one Browse).

const TAG_COUNT = 4_000;
const ROUNDS = 10;
const CLIENT_SCRIPT = fileURLToPath(new URL("./_opcua-browse-client.ts", import.meta.url));

interface Measured {
  readonly references: number;
  readonly pieces: number;
  readonly p99: number;
  readonly max: number;
}

/** Browses `folder` whole ROUNDS times from a client process; the event-loop delay of this process meanwhile. */
async function measure(endpointUrl: string, namespaceUri: string, folder: string): Promise<Measured> {
  const { child, ready } = await forkReady<{ ready?: true; error?: string }>(
    CLIENT_SCRIPT,
    {
      KILN_BROWSE_CLIENT: JSON.stringify({
        endpointUrl,
        namespaceUri,
        folder,
        rounds: ROUNDS,
      }),
    },
    "browse client",
  );
  try {
    if (!ready.ready) throw new Error(`browse client: ${ready.error}`);
    const done = new Promise<{ references?: number; pieces?: number; error?: string }>((resolve) =>
      child.once("message", resolve),
    );
    const delay = monitorEventLoopDelay({ resolution: 1 });
    delay.enable();
    child.send("go");
    const last = await done;
    delay.disable();
    if (last.error !== undefined) throw new Error(`browse client: ${last.error}`);
    return {
      references: last.references ?? 0,
      pieces: last.pieces ?? 0,
      p99: round(delay.percentile(99) / 1e6, 1),
      max: round(delay.max / 1e6, 1),
    };
  } finally {
    await stopChild(child);
  }
}

const BARE_NAMESPACE = "urn:bench:bare-browse";

/** A bare node-opcua server with the same folder of TAG_COUNT Double variables (node-opcua's own Browse). */
async function bareServer(): Promise<{ endpointUrl: string; stop(): Promise<void> }> {
  const pkiDir = await mkdtemp(path.join(tmpdir(), "kiln-bench-browse-bare-"));
  const { server, certificateManager, addressSpace, namespace } = await bareOpcuaServer(pkiDir, BARE_NAMESPACE);
  const folder = namespace.addFolder(addressSpace.rootFolder.objects, { browseName: "big", nodeId: "s=big" });
  for (let index = 0; index < TAG_COUNT; index++) {
    namespace.addVariable({
      organizedBy: folder,
      browseName: `t${index}`,
      nodeId: `s=big.t${index}`,
      dataType: "Double",
    });
  }
  await server.start();
  return {
    endpointUrl: `opc.tcp://127.0.0.1:${server.endpoints[0]!.port}`,
    async stop() {
      await server.shutdown(0);
      server.dispose();
      await certificateManager.dispose();
      await rm(pkiDir, { recursive: true, force: true });
    },
  };
}

/** Runs the benchmark and returns its JSON line. */
export async function run(): Promise<Record<string, unknown>> {
  const pkiDir = await mkdtemp(path.join(tmpdir(), "kiln-bench-browse-"));
  const definitions: Record<string, TagDefinitionInput> = {};
  for (let index = 0; index < TAG_COUNT; index++) {
    definitions[`big.t${index}`] = { dataType: "float64", logging: { mode: "none" } };
  }
  const tags = defineTags(definitions);
  const system = createControlSystem({
    machineId: "bench",
    tags,
    driver: new SimulatedPlc({ tags }),
    store: new MemoryStore(),
    scanGroups: { default: { periodMs: 1_000 } },
  });
  const server = new OpcuaServer(system, {
    port: 0,
    host: "127.0.0.1",
    pki: { dir: path.join(pkiDir, "kiln-server"), acceptUnknownClientCertificates: true },
    securityModes: ["None"],
    allowAnonymous: true,
    identify: () => ({ id: "bench", roles: ["viewer"] }),
  });
  await system.start();
  await server.start();
  try {
    const kiln = await measure(server.endpointUrl, server.namespaceUri, "#big");
    const bare = await bareServer();
    const baseline = await measure(bare.endpointUrl, BARE_NAMESPACE, "big").finally(() => bare.stop());
    if (kiln.references !== baseline.references) {
      throw new Error(`kiln returned ${kiln.references} references, bare node-opcua ${baseline.references}`);
    }
    return {
      name: "opcua-browse",
      unit: "ms event-loop delay p99",
      kiln: kiln.p99,
      baseline: baseline.p99,
      ratio: round(kiln.p99 / baseline.p99),
      kiln_max_ms: kiln.max,
      baseline_max_ms: baseline.max,
      kiln_pieces_per_browse: kiln.pieces,
      baseline_pieces_per_browse: baseline.pieces,
      folder_references: kiln.references,
      rounds: ROUNDS,
      ...machine(),
    };
  } finally {
    await server.stop();
    await system.stop();
    await rm(pkiDir, { recursive: true, force: true });
  }
}
