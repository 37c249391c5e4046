import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { defineTags, type Sample } from "@kiln/core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OPCUA_SIMULATOR_NAMESPACE_URI, OpcuaDriver, OpcuaSimulator } from "../src/index";
import { waitFor } from "./support/wait-for";

// Issue 13, adversarial pass adv13m, MEDIUM-3: the driver read the server's namespace array and
// its four operation limits in one Read of 5 values; a server whose MaxNodesPerRead is below 5
// answers that Read BadTooManyOperations, and the connect failed: such a server could not be
// used at all. The values are now read one by one when the combined Read is refused, and the
// limit then chunks every other read (docs/adr/0022, amendment fix13o).
const NS = OPCUA_SIMULATOR_NAMESPACE_URI;
const tags = defineTags({
  "kiln.a": { dataType: "int32", address: `nsu=${NS};s=Kiln.A` },
  "kiln.b": { dataType: "int32", address: `nsu=${NS};s=Kiln.B` },
  "kiln.c": { dataType: "int32", address: `nsu=${NS};s=Kiln.C` },
});

let workDir: string;
let simulator: OpcuaSimulator;
beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-small-limit-"));
  simulator = new OpcuaSimulator({
    tags,
    signals: {
      "kiln.a": { kind: "constant", value: 1 },
      "kiln.b": { kind: "constant", value: 2 },
      "kiln.c": { kind: "constant", value: 3 },
    },
    securityModes: ["None"],
    operationLimits: { maxNodesPerRead: 2 },
    updateIntervalMs: 100,
    pkiDir: path.join(workDir, "server"),
  });
  await simulator.start();
});
afterAll(async () => {
  await simulator.dispose();
  await rm(workDir, { recursive: true, force: true });
});

function newDriver(limits?: { maxNodesPerRead?: number }): OpcuaDriver {
  return new OpcuaDriver({
    endpointUrl: simulator.endpointUrl,
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    ...(limits ? { limits } : {}),
  });
}

describe("a server whose MaxNodesPerRead is below the driver's server-info read", () => {
  test("connects, and reads 3 tags in 2 ReadRequests of at most 2 nodes", async () => {
    const driver = newDriver();
    try {
      await driver.connect();
      expect(driver.status).toBe("connected");
      simulator.resetStats();
      const samples = await driver.read(tags.list());
      expect(samples.map((sample) => [sample.tag, sample.value, sample.quality.severity])).toEqual([
        ["kiln.a", 1, "good"],
        ["kiln.b", 2, "good"],
        ["kiln.c", 3, "good"],
      ]);
      expect(simulator.stats.readRequests).toBe(2);
      expect(simulator.stats.readNodes).toBe(3);
    } finally {
      await driver.close();
    }
  }, 30_000);

  // Sibling: the application's own cap is lower still (1): the server's limit read one by one and
  // the cap both apply, and subscribed tags deliver.
  test("with the application's cap below the server's limit, reads follow the cap and subscriptions deliver", async () => {
    const driver = newDriver({ maxNodesPerRead: 1 });
    const received: Sample[] = [];
    try {
      await driver.connect();
      simulator.resetStats();
      const samples = await driver.read(tags.list());
      expect(samples.every((sample) => sample.quality.severity === "good")).toBe(true);
      expect(simulator.stats.readRequests).toBe(3);
      await driver.subscribe(tags.list(), { samplingIntervalMs: 100 }, (batch) => received.push(...batch));
      await waitFor(() => new Set(received.filter((s) => s.quality.severity === "good").map((s) => s.tag)).size === 3, {
        what: "all three tags delivered",
      });
    } finally {
      await driver.close();
    }
  }, 30_000);
});
