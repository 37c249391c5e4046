import { spawn } from "node:child_process";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
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

/**
 * A mosquitto of its own (the test's, on a free port) with extra configuration lines. `files` are
 * written beside its configuration first; `{dir}` in a line is that folder.
 */
export async function configuredBroker(
  lines: readonly string[],
  files: Readonly<Record<string, string>> = {},
  port?: number,
): Promise<{ url: string; stop(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), "kiln-mosquitto-"));
  port ??= await freePort();
  const config = path.join(dir, "mosquitto.conf");
  // Started as root, mosquitto reads its configuration, then runs as user mosquitto: the files it
  // reads after that (a plugin's) must be readable to it.
  await chmod(dir, 0o755);
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text, { mode: 0o644 });
  await writeFile(
    config,
    [
      `listener ${port} 127.0.0.1`,
      "allow_anonymous true",
      ...lines.map((line) => line.replaceAll("{dir}", dir)),
      "",
    ].join("\n"),
  );
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
      if (child.exitCode === null && child.signalCode === null) {
        const gone = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGTERM");
        await gone;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Where mosquitto's dynamic security plugin is (`MOSQUITTO_DYNSEC_PLUGIN`, else Debian's path). */
export const DYNSEC_PLUGIN =
  process.env.MOSQUITTO_DYNSEC_PLUGIN ?? "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";

/**
 * A mosquitto of its own whose dynamic security plugin refuses every anonymous client the
 * subscriptions matching `deny` (`subscribePattern` ACLs; `subscribeLiteral`: only the filters
 * written so): it answers them in SUBACK with 0x80
 * (MQTT 3.1.1) or 0x87 Not authorized (MQTT 5). mosquitto's `acl_file` never refuses a
 * subscription (it filters delivery instead), so the plugin is what makes a refusal.
 */
export function subscriptionRefusingBroker(
  deny: readonly string[],
  acltype: "subscribePattern" | "subscribeLiteral" = "subscribePattern",
  port?: number,
): Promise<{ url: string; stop(): Promise<void> }> {
  const security = {
    defaultACLAccess: { publishClientSend: true, publishClientReceive: true, subscribe: true, unsubscribe: true },
    clients: [],
    groups: [{ groupname: "anonymous", roles: [{ rolename: "refused" }], clients: [] }],
    roles: [
      {
        rolename: "refused",
        acls: deny.map((topic) => ({ acltype, topic, priority: 0, allow: false })),
      },
    ],
    anonymousGroup: "anonymous",
  };
  return configuredBroker(
    [`plugin ${DYNSEC_PLUGIN}`, "plugin_opt_config_file {dir}/dynsec.json"],
    { "dynsec.json": JSON.stringify(security) },
    port,
  );
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
