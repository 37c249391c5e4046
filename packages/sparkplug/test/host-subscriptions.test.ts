// Issue 19, adversarial review adv19p M1: a broker that refuses one of the host's subscriptions
// (SUBACK 0x80 / reason code >= 0x80). Against the test's own mosquitto whose dynamic security
// plugin refuses them (mosquitto's acl_file never refuses a subscription: it filters delivery).
import { accessSync, constants } from "node:fs";
import { MemoryStore } from "@kiln/core";
import type { DriverStatusChange } from "@kiln/core/driver-kit";
import { afterEach, describe, expect, test, vi } from "vitest";
import { SparkplugHost } from "../src/host";
import { mosquittoAvailability } from "../src/testing/index";
import { EDGE, GROUP as EDGE_GROUP, edgeFixture } from "./support/edge-fixture";
import { RawEdgeNode, eventually } from "./support/host-harness";
import { qualifiedTagName } from "../src/host-tag-names";
import { DYNSEC_PLUGIN, subscriptionRefusingBroker } from "./support/limited-broker";

const GROUP = "plant-acl";

function pluginAvailability(): string | undefined {
  const mosquitto = mosquittoAvailability();
  if (!mosquitto.available) return mosquitto.reason;
  try {
    accessSync(DYNSEC_PLUGIN, constants.R_OK);
    return undefined;
  } catch {
    return `no mosquitto dynamic security plugin at ${DYNSEC_PLUGIN}: install mosquitto 2.x (it ships the plugin) or set MOSQUITTO_DYNSEC_PLUGIN`;
  }
}
const unavailable = pluginAvailability();
if (unavailable !== undefined) console.log(`host-subscriptions.test.ts skipped: ${unavailable}`);

vi.setConfig({ testTimeout: 30_000 });

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function hostOn(url: string, protocolVersion: 4 | 5) {
  const host = new SparkplugHost({
    brokerUrl: url,
    hostId: "acl-host",
    groups: [GROUP],
    store: new MemoryStore(),
    stopLingerMs: 50,
    drainTimeoutMs: 1_000,
    reconnect: { initialDelayMs: 100, maxDelayMs: 400 },
    mqtt: { protocolVersion },
  });
  const changes: DriverStatusChange[] = [];
  host.events.on("link-change", (change) => void changes.push(change));
  cleanups.push(() => host.stop());
  await host.start();
  return { host, changes };
}

describe.skipIf(unavailable !== undefined)("a subscription the broker refuses (adv19p M1)", () => {
  test("the death watch's NDEATH subscription refused (MQTT 3.1.1, 0x80): named in health and the link's reason, never connected, retried", async () => {
    const broker = await subscriptionRefusingBroker(["spBv1.0/+/NDEATH/#"]);
    cleanups.push(() => broker.stop());
    const { host, changes } = await hostOn(broker.url, 4);
    const filter = `spBv1.0/${GROUP}/NDEATH/+`;
    const problem = await eventually(
      () => host.health().problems.find((each) => each.includes(filter)),
      5_000,
      "a problem naming the refused filter",
    );
    expect(problem).toContain("0x80");
    expect(problem).toContain("death watch");
    expect(host.health().link).not.toBe("connected");
    expect(changes.some((change) => change.reason?.includes(filter) && change.reason.includes("0x80"))).toBe(true);
    // Retried on the backoff: the host keeps trying (a fixed ACL is taken up), and stays not connected.
    const before = changes.length;
    await eventually(() => changes.length >= before + 2, 5_000, "two more failed attempts");
    expect(host.health().link).not.toBe("connected");
  });

  test("the main session's own STATE subscription refused (MQTT 5, 0x87 Not authorized): named, never connected", async () => {
    const broker = await subscriptionRefusingBroker(["spBv1.0/STATE/acl-host"], "subscribeLiteral");
    cleanups.push(() => broker.stop());
    const { host } = await hostOn(broker.url, 5);
    const filter = "spBv1.0/STATE/acl-host";
    const problem = await eventually(
      () => host.health().problems.find((each) => each.includes(filter) && each.includes("refused")),
      5_000,
      "a problem naming the refused filter",
    );
    expect(problem).toContain("0x87");
    expect(problem).toContain("Not authorized");
    expect(host.health().link).not.toBe("connected");
  });

  test("sibling: the ACL tightened while the host runs (broker restarted refusing the watch): the node's values stale, not good, the filter named", async () => {
    const open = await subscriptionRefusingBroker([]);
    cleanups.push(() => open.stop());
    const port = Number(new URL(open.url).port);
    const { host } = await hostOn(open.url, 4);
    await host.whenConnected();
    const node = await RawEdgeNode.connect(open.url, GROUP, "line-1", 0);
    cleanups.push(() => node.close().catch(() => undefined));
    await node.nbirth(0, [{ name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: 21 }]);
    const temp = qualifiedTagName({ groupId: GROUP, edgeNodeId: "line-1", deviceId: undefined, metric: "temp" });
    await eventually(() => host.latest(temp)?.sample.quality.severity === "good", 5_000, "temp good");
    await open.stop();
    const refusing = await subscriptionRefusingBroker(["spBv1.0/+/NDEATH/#"], "subscribePattern", port);
    cleanups.push(() => refusing.stop());
    await eventually(
      () => host.health().problems.some((each) => each.includes(`spBv1.0/${GROUP}/NDEATH/+`)),
      10_000,
      "the refused filter named",
    );
    expect(host.latest(temp)?.sample.quality.severity).not.toBe("good");
    expect(host.health().link).not.toBe("connected");
  });

  test("sibling: an edge node whose NCMD subscription is refused names it in health, and is not connected", async () => {
    const broker = await subscriptionRefusingBroker(["spBv1.0/+/NCMD/#"]);
    cleanups.push(() => broker.stop());
    const fixture = await edgeFixture();
    cleanups.push(() => fixture.close());
    const node = fixture.newNode({ brokerUrl: broker.url });
    await node.start();
    const problem = await eventually(
      () => node.health().problems.find((each) => each.includes(`spBv1.0/${EDGE_GROUP}/NCMD/${EDGE}`)),
      5_000,
      "a problem naming the refused filter",
    );
    expect(problem).toContain("0x80");
    expect(node.health().link).not.toBe("connected");
  });
});
