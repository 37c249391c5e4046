import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "vitest";
import { freePort, mosquittoPath } from "../../src/testing/index";
import { DEVICE, EDGE, GROUP, type EdgeFixture } from "./edge-fixture";

/** A mosquitto of its own with `max_packet_size`, which it announces in its MQTT 5 CONNACK. */
export function limitedBroker(maxPacketSize: number): Promise<{ url: string; stop(): Promise<void> }> {
  return configuredBroker([`max_packet_size ${maxPacketSize}`]);
}

/** A mosquitto of its own (the test's, on a free port) with extra configuration lines. */
export async function configuredBroker(lines: readonly string[]): Promise<{ url: string; stop(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), "kiln-mosquitto-"));
  const port = await freePort();
  const config = path.join(dir, "mosquitto.conf");
  await writeFile(config, [`listener ${port} 127.0.0.1`, "allow_anonymous true", ...lines, ""].join("\n"));
  const child = spawn(mosquittoPath(), ["-c", config], { stdio: "ignore" });
  for (let attempt = 0; ; attempt++) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) break;
    if (attempt > 200) throw new Error("mosquitto did not open its port");
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return {
    url: `mqtt://127.0.0.1:${port}`,
    stop: async () => {
      const gone = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await gone;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The size of the node's DBIRTH as an MQTT packet on a broker without limit (fixture values). */
export async function dbirthPacketSize(fixture: EdgeFixture): Promise<number> {
  const broker = await limitedBroker(1_000_000);
  try {
    const { connectAsync } = await import("mqtt");
    const watcher = await connectAsync(broker.url, { protocolVersion: 5 });
    const topic = `spBv1.0/${GROUP}/DBIRTH/${EDGE}/${DEVICE}`;
    let size = 0;
    watcher.on("message", (_topic, payload) => void (size = payload.length));
    await watcher.subscribeAsync(topic, { qos: 0 });
    const probe = fixture.newNode({ brokerUrl: broker.url, mqtt: { protocolVersion: 5 } });
    await probe.start();
    await expect.poll(() => size, { timeout: 5_000 }).toBeGreaterThan(0);
    await probe.stop();
    await watcher.endAsync();
    return 1 + 4 + 2 + Buffer.byteLength(topic) + 1 + size;
  } finally {
    await broker.stop();
  }
}
