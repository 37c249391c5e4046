import mqtt from "mqtt";
import { describe, expect, test } from "vitest";
import { mosquittoAvailability, startAedes, startMosquitto, type TestBroker } from "../src/testing/index";

const mosquitto = mosquittoAvailability();
if (!mosquitto.available) console.warn(`mosquitto tests skipped: ${mosquitto.reason}`);

async function roundTrip(broker: TestBroker): Promise<void> {
  const client = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
  try {
    await client.subscribeAsync("kiln/test", { qos: 1 });
    const received = new Promise<string>((resolve) =>
      client.once("message", (_topic, payload) => resolve(payload.toString())),
    );
    await client.publishAsync("kiln/test", "hello", { qos: 1 });
    expect(await received).toBe("hello");
  } finally {
    await client.endAsync(true);
  }
}

async function killAndRestart(broker: TestBroker): Promise<void> {
  const client = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
  const closed = new Promise<void>((resolve) => client.once("close", () => resolve()));
  await broker.kill();
  await closed;
  await client.endAsync(true);
  await expect(mqtt.connectAsync(broker.url, { reconnectPeriod: 0, connectTimeout: 500 })).rejects.toThrow();
  await broker.restart();
  await roundTrip(broker);
}

describe("embedded broker (aedes)", () => {
  test("delivers a QoS 1 message, and can be killed and restarted on its port", async () => {
    await using broker = await startAedes();
    expect(broker.kind).toBe("aedes");
    await roundTrip(broker);
    await killAndRestart(broker);
  });
});

describe.skipIf(!mosquitto.available)("own mosquitto process", () => {
  test("delivers a QoS 1 message, and can be killed and restarted on its port", async () => {
    await using broker = await startMosquitto();
    expect(broker.kind).toBe("mosquitto");
    await roundTrip(broker);
    await killAndRestart(broker);
  });
});
