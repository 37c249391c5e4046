import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createControlSystem, defineTags, MemoryStore, QualityCodes } from "@kiln/core";
import { afterAll, beforeAll, expect, test } from "vitest";
import { OpcuaDriver, OpcuaSimulator } from "../src/index";
import { waitFor } from "./support/wait-for";

// A Double variable holding Infinity or NaN (a server's overflow or sensor fault) is never shown good: the
// core's one check of driver samples makes it bad, for every driver (adv12q F4, the OPC UA sibling).
const tags = defineTags({
  "reactor.flow": { dataType: "float64", address: "ns=2;s=Reactor.Flow" },
  "reactor.level": { dataType: "float64", address: "ns=2;s=Reactor.Level" },
});

let simulator: OpcuaSimulator;
let pkiDir: string;

beforeAll(async () => {
  pkiDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-nonfinite-"));
  simulator = new OpcuaSimulator({ tags });
  await simulator.start();
});

afterAll(async () => {
  await simulator?.dispose();
  await rm(pkiDir, { recursive: true, force: true });
});

test("a Double Infinity or NaN read from an OPC UA server is bad with its reason, the value kept", async () => {
  simulator.setValue("reactor.flow", Number.POSITIVE_INFINITY);
  simulator.setValue("reactor.level", Number.NaN);
  const system = createControlSystem({
    machineId: "reactor-1",
    tags,
    store: new MemoryStore(),
    driver: new OpcuaDriver({
      endpointUrl: simulator.endpointUrl,
      pki: { dir: pkiDir, trustedServerCertificates: [simulator.certificateFile] },
    }),
    scanGroups: { default: { periodMs: 100 } },
  });
  await system.start();
  try {
    await waitFor(() => system.read("reactor.flow") !== undefined && system.read("reactor.level") !== undefined, {
      what: "first samples",
    });
    expect(system.read("reactor.flow")).toMatchObject({
      value: Number.POSITIVE_INFINITY,
      quality: { severity: "bad", code: QualityCodes.BadOutOfRange, reason: "the device sent +Infinity" },
    });
    const level = system.read("reactor.level")!;
    expect([level.value, level.quality.severity, level.quality.reason]).toEqual([
      Number.NaN,
      "bad",
      "the device sent NaN (not a number)",
    ]);
  } finally {
    await system.stop();
  }
});

// adv13v LOW-1: the driver's page said "Infinity and NaN are written as they are"; the core's one value
// check refuses them before the driver sees them. This pins what the page now says.
test("NaN and ±Infinity are never written: KILN_VALIDATION naming a finite number, the node unchanged", async () => {
  const writable = defineTags({
    "reactor.flow": { dataType: "float64", address: "ns=2;s=Reactor.Flow", access: "readwrite" },
  });
  simulator.setValue("reactor.flow", 1.5);
  const driver = new OpcuaDriver({
    endpointUrl: simulator.endpointUrl,
    pki: { dir: pkiDir, trustedServerCertificates: [simulator.certificateFile] },
  });
  await driver.connect();
  try {
    for (const value of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      const error = await driver.write(writable.get("reactor.flow"), value).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(error).toMatchObject({ code: "KILN_VALIDATION" });
      expect(JSON.stringify(error) + String(error)).toMatch(/expected a finite number/);
    }
    expect((await driver.read([tags.get("reactor.flow")]))[0]).toMatchObject({ value: 1.5 });
  } finally {
    await driver.close();
  }
});
