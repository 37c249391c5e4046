import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import {
  AttributeIds,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAClient,
  SecurityPolicy,
  type ReadValueIdOptions,
} from "node-opcua";
import { defineTags, type Tag, type TagDefinitionInput } from "@kiln/core";
import { OpcuaDriver } from "@kiln/plc-opcua";
import { startOpcuaSimulator } from "./_opcua-simulator";
import { compareScans, stopChild } from "./harness";

// opcua-read: 1,000 Double tags read per scan by OpcuaDriver.read and by raw node-opcua session.read of the same
// nodes, against an OpcuaSimulator in another process (security None on both sides: this measures the driver).

const TAG_COUNT = 1_000;
const ROUNDS = 4;
const ROUND_MS = 1_500;
const WARMUP_SCANS = 20;
function startSimulator() {
  return startOpcuaSimulator({
    tagCount: TAG_COUNT,
    signal: { kind: "sine", amplitude: 10, offset: 50, periodMs: 10_000 },
    updateIntervalMs: 100,
  });
}

/** Runs the benchmark and returns its JSON line. */
export async function run(): Promise<Record<string, unknown>> {
  const { child, ready } = await startSimulator();
  const pkiDir = await mkdtemp(path.join(tmpdir(), "kiln-bench-opcua-"));
  const definitions: Record<string, TagDefinitionInput> = {};
  ready.addresses.forEach((address, index) => {
    definitions[`bench.${index}`] = { dataType: "float64", address };
  });
  const tags: readonly Tag[] = defineTags(definitions).list();
  const driver = new OpcuaDriver({ endpointUrl: ready.endpointUrl, security: { mode: "None" }, pki: { dir: pkiDir } });
  const client = OPCUAClient.create({
    endpointMustExist: false,
    securityMode: MessageSecurityMode.None,
    securityPolicy: SecurityPolicy.None,
    clientCertificateManager: new OPCUACertificateManager({ rootFolder: path.join(pkiDir, "raw") }),
    connectionStrategy: { maxRetry: 1, initialDelay: 500, maxDelay: 2_000, randomisationFactor: 0 },
  });
  try {
    await driver.connect();
    await client.connect(ready.endpointUrl);
    const session = await client.createSession();
    const namespaceIndex = (await session.readNamespaceArray()).indexOf("urn:kiln:opcua-simulator");
    const nodesToRead: ReadValueIdOptions[] = ready.addresses.map((_, index) => ({
      nodeId: `ns=${namespaceIndex};s=Bench.${index}`,
      attributeId: AttributeIds.Value,
    }));

    const check = await driver.read(tags);
    const bad = check.filter((sample) => sample.quality.severity !== "good").length;
    if (bad > 0) throw new Error(`${bad} tags read with bad quality; the benchmark is not valid`);
    const rawCheck = await session.read(nodesToRead, 0);
    if (rawCheck.some((dataValue) => !dataValue.statusCode.isGood())) throw new Error("raw read returned bad values");

    const kilnScan = async (): Promise<void> => {
      await driver.read(tags);
    };
    const baselineScan = async (): Promise<void> => {
      await session.read(nodesToRead, 0);
    };
    const { kiln, baseline } = await compareScans(kilnScan, baselineScan, {
      warmup: WARMUP_SCANS,
      rounds: ROUNDS,
      roundMs: ROUND_MS,
    });
    await session.close();
    return {
      name: "opcua-read",
      unit: "scans/s",
      kiln: Number(kiln.toFixed(2)),
      baseline: Number(baseline.toFixed(2)),
      ratio: Number((kiln / baseline).toFixed(3)),
      tags_per_scan: TAG_COUNT,
    };
  } finally {
    await driver.close();
    await client.disconnect();
    await stopChild(child);
    await rm(pkiDir, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(JSON.stringify(await run()));
}
