import { spawnSync } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { defineTags } from "@kiln/core";
import { ModbusDriver } from "../src/index";
import { openSerialPair, type SerialPair } from "./serial-pair";
import { RtuLineDevice } from "./rtu-line-device";

// Modbus RTU (adv12x MEDIUM-1, probe p12): units 1 and 3 answer, unit 2 is dead. Each unit is its own answer stream;
// the dead unit's stays suspect (its probes carry no fence), so health listed "answer stream: offline, answers not
// trusted" for good, with no next probe, and `plc-endpoint-change` never reported it online, while units 1 and 3
// read good. Now the entry is left out while the only suspect streams are of units that are offline (their own
// entries say so), and comes back as soon as a unit not offline is suspect.

const hasSocat = spawnSync("socat", ["-V"], { stdio: "ignore" }).status === 0;

const tags = defineTags({
  a: { dataType: "uint16", address: "HR0@1" },
  dead: { dataType: "uint16", address: "HR0@2" },
  c: { dataType: "uint16", address: "HR0@3" },
});

describe.skipIf(!hasSocat)("Modbus RTU: a dead unit on a multi-drop line (needs socat)", () => {
  let pair: SerialPair;
  let device: RtuLineDevice;
  let driver: ModbusDriver | undefined;

  afterEach(async () => {
    await driver?.close();
    await device.close();
    await pair.close();
  });

  it("lists no 'answer stream' entry once the dead unit is offline, while the live units read good", async () => {
    pair = await openSerialPair();
    device = await RtuLineDevice.open(pair.device, [1, 3]);
    driver = new ModbusDriver({
      transport: { kind: "rtu", path: pair.master, baudRate: 19200 },
      requestTimeoutMs: 100,
    });
    await driver.connect();
    let lastGood = false;
    let offline = false;
    for (let scan = 0; scan < 20; scan++) {
      const samples = await driver.read(tags.list());
      lastGood = samples
        .filter((sample) => sample.tag !== "dead")
        .every((sample) => sample.quality.severity === "good");
      offline = driver.units().some((unit) => unit.unitId === 2 && unit.state === "offline");
      if (offline && lastGood) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(offline).toBe(true);
    expect(lastGood).toBe(true);
    const endpoints = driver.endpoints().map((endpoint) => `${endpoint.endpoint}:${endpoint.state}`);
    // Before: "answer stream:offline" here for good, beside "unit 2:offline".
    expect(endpoints).not.toContain("answer stream:offline");
    expect(endpoints).toContain("unit 2:offline");
    // `driver.answerStream.aligned` is usually still false here (unit 2's stream unproven until its fence), but not
    // always under load, so it is not asserted.
  }, 30_000);
});
