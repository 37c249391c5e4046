import { spawnSync } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { defineTags } from "@kiln/core";
import { ModbusDriver } from "../src/index";
import { openSerialPair, type SerialPair } from "./serial-pair";
import { RtuLineDevice } from "./rtu-line-device";

// fix12g (ADR 0041, amendment fix12g): a 2-wire RS-485 adapter that hears its own transmission echoes every request
// back to the master. The answer to a write of one register (FC6) or one coil (FC5) is the request's own bytes, so
// the echo of a write to a dead unit passed for its answer: the write reported OK though nothing received it.

const hasSocat = spawnSync("socat", ["-V"], { stdio: "ignore" }).status === 0;

const tags = defineTags({
  live: { dataType: "uint16", address: "HR0@1", access: "readwrite" },
  liveCoil: { dataType: "bool", address: "C3@1", access: "readwrite" },
  dead: { dataType: "uint16", address: "HR0@2", access: "readwrite" },
});

describe.skipIf(!hasSocat)("Modbus RTU over a line with local echo (needs socat)", () => {
  let pair: SerialPair;
  let device: RtuLineDevice;
  let driver: ModbusDriver | undefined;

  afterEach(async () => {
    await driver?.close();
    await device.close();
    await pair.close();
  });

  async function open(localEcho: boolean | undefined, echoAtConnect = true) {
    pair = await openSerialPair();
    device = await RtuLineDevice.open(pair.device, [1]);
    device.echo = echoAtConnect;
    device.registers.get(1)![0] = 1234;
    driver = new ModbusDriver({
      transport: {
        kind: "rtu",
        path: pair.master,
        baudRate: 19200,
        ...(localEcho === undefined ? {} : { localEcho }),
      },
      requestTimeoutMs: 300,
      planner: { maxGap: 0 },
    });
    await driver.connect();
    device.echo = true;
    return driver;
  }

  function echoEndpoint() {
    return driver!.endpoints().find((endpoint) => endpoint.endpoint === "local echo");
  }

  it("a write of one register to a dead unit is never reported OK because of its own echo", async () => {
    await open(undefined);
    const outcome = await driver!.write(tags.get("dead"), 7).then(
      () => "ok",
      (error: unknown) => (error instanceof Error ? error.message : String(error)),
    );
    expect(outcome).not.toBe("ok");
    expect(outcome).toMatch(/local echo|localEcho/);
    expect(echoEndpoint()?.lastError).toMatch(/localEcho: true/);
    // Nor to a live unit: its answer equals the echo, so it cannot be told answered.
    await expect(driver!.write(tags.get("live"), 8)).rejects.toThrow(/localEcho/);
    expect(device.registers.get(1)![0]).toBe(1234);
  }, 30_000);

  it("sibling: the echo is detected from a read of function 3, whose answer never equals its request", async () => {
    // The adapter starts echoing after connect (the connect-time check saw none): the first read finds it.
    await open(undefined, false);
    expect(echoEndpoint()).toBeUndefined();
    const samples = await driver!.read([tags.get("live")]);
    expect(samples[0]!.quality.severity).toBe("bad");
    expect(samples[0]!.quality.reason).toMatch(/localEcho: true/);
    expect(echoEndpoint()?.lastError).toMatch(/echoes every request/);
    // From then on a write whose answer equals its echo is refused unsent.
    await expect(driver!.write(tags.get("dead"), 7)).rejects.toThrow(/localEcho/);
  }, 30_000);

  it("with localEcho: true a live unit's reads and writes work over the echoing line, a dead unit's write fails", async () => {
    await open(true);
    expect(echoEndpoint()).toBeUndefined();
    for (let scan = 0; scan < 3; scan++) {
      const [live] = await driver!.read([tags.get("live")]);
      expect(live!.quality.severity).toBe("good");
      expect(live!.value).toBe(scan === 0 ? 1234 : 4000 + scan - 1);
      await driver!.write(tags.get("live"), 4000 + scan);
    }
    await driver!.write(tags.get("liveCoil"), true);
    expect(device.coils.get(1)![3]).toBe(1);
    expect(device.registers.get(1)![0]).toBe(4002);
    await expect(driver!.write(tags.get("dead"), 7)).rejects.toThrow();
    expect(echoEndpoint()).toBeUndefined();
  }, 30_000);
});
