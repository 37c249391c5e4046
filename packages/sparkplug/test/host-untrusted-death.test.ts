// Issue 19, adversarial review adv19 (second pass on fix19x), HIGH-2: an NDEATH (an edge node's
// Will) or a DDEATH that cannot be decoded (a truncated protobuf) was counted malformed and
// otherwise dropped, by the main session and by the death watch: the dead edge node stayed online
// and its values good for ever (nothing follows a Will to show the loss). It is now a death the host
// cannot trust, as one without bdSeq (ADR 0043, amendment fix19y). Against the test's own mosquitto.
import { MemoryStore, QualityCodes } from "@kiln/core";
import { afterEach, describe, expect, test, vi } from "vitest";
import { SparkplugHost } from "../src/host";
import { qualifiedTagName } from "../src/host-tag-names";
import { mosquittoAvailability } from "../src/testing/index";
import { sparkplugTopic } from "../src/topic";
import { RawEdgeNode, eventually } from "./support/host-harness";
import { configuredBroker } from "./support/limited-broker";

const GROUP = "plant-udeath";
const mosquitto = mosquittoAvailability();
if (!mosquitto.available) console.log(`host-untrusted-death.test.ts skipped: ${mosquitto.reason}`);

vi.setConfig({ testTimeout: 60_000 });

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

/** A truncated length-delimited protobuf field: the decoder throws. */
const GARBAGE = Uint8Array.from([0x12, 0x10, 0x0a]);
const tag = (edgeNodeId: string, metric: string, deviceId?: string) =>
  qualifiedTagName({ groupId: GROUP, edgeNodeId, deviceId, metric });

async function started(brokerUrl: string, extra: Partial<ConstructorParameters<typeof SparkplugHost>[0]> = {}) {
  const host = new SparkplugHost({
    brokerUrl,
    hostId: "udeath",
    groups: [GROUP],
    store: new MemoryStore(),
    registerTags: false,
    stopLingerMs: 100,
    rebirthIntervalMs: 200,
    rebirthTimeoutMs: 30_000,
    ...extra,
  });
  cleanups.push(() => host.stop());
  await host.start();
  await host.whenConnected();
  return host;
}

const nodeOf = (host: SparkplugHost, id: string) => host.health().edgeNodes.find((entry) => entry.edgeNodeId === id);

describe.skipIf(!mosquitto.available)("a death the host cannot decode (adv19 HIGH-2) (needs mosquitto)", () => {
  test("an undecodable NDEATH (the edge node's Will) on a known edge node: counted malformed, the node awaiting rebirth, its values stale with the reason, named in problems, a rebirth asked for", async () => {
    const broker = await configuredBroker([]);
    cleanups.push(() => broker.stop());
    const host = await started(broker.url);
    const edge = await RawEdgeNode.connect(broker.url, GROUP, "a", 0, { deathPayload: GARBAGE });
    cleanups.push(() => edge.close());
    await edge.nbirth(0, [{ name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: 21 }]);
    await eventually(() => host.latest(tag("a", "temp"))?.sample.quality.severity === "good");
    const malformed = host.health().messages.malformed;
    edge.client.stream.destroy(); // dies without DISCONNECT: the broker publishes its Will
    await eventually(() => nodeOf(host, "a")?.state === "awaiting-rebirth", 5_000, "the node distrusted");
    expect(host.health().messages.malformed).toBeGreaterThanOrEqual(malformed + 1);
    expect(host.latest(tag("a", "temp"))?.sample.quality).toMatchObject({
      severity: "uncertain",
      code: QualityCodes.UncertainNoCommunicationLastUsableValue,
    });
    expect(host.latest(tag("a", "temp"))?.sample.quality.reason).toContain("NDEATH that cannot be decoded");
    expect(host.health().problems.join("\n")).toMatch(
      /edge node plant-udeath\/a awaiting rebirth.*NDEATH that cannot be decoded/,
    );
    expect(nodeOf(host, "a")?.rebirthsRequested).toBeGreaterThanOrEqual(1);
  });

  test("sibling: an undecodable DDEATH of an online device: the edge node distrusted, the device's values stale, named in problems", async () => {
    const broker = await configuredBroker([]);
    cleanups.push(() => broker.stop());
    const host = await started(broker.url);
    const edge = await RawEdgeNode.connect(broker.url, GROUP, "c", 0);
    cleanups.push(() => edge.close());
    await edge.nbirth(0, []);
    await edge.dbirth("d1", [{ name: "rpm", alias: 1, timestamp: Date.now(), datatype: "Double", value: 1500 }]);
    await eventually(() => host.latest(tag("c", "rpm", "d1"))?.sample.quality.severity === "good");
    const malformed = host.health().messages.malformed;
    await edge.client.publishAsync(
      sparkplugTopic({ type: "DDEATH", groupId: GROUP, edgeNodeId: "c", deviceId: "d1" }),
      Buffer.from(GARBAGE),
    );
    await eventually(() => host.latest(tag("c", "rpm", "d1"))?.sample.quality.severity === "uncertain", 5_000, "stale");
    expect(host.health().messages.malformed).toBe(malformed + 1);
    expect(nodeOf(host, "c")?.state).toBe("awaiting-rebirth");
    expect(host.latest(tag("c", "rpm", "d1"))?.sample.quality.reason).toContain("DDEATH that cannot be decoded");
    expect(host.health().problems.join("\n")).toContain("DDEATH that cannot be decoded");
  });

  test("sibling: an undecodable NDEATH read only on the death watch (an ACL keeps it from the main session, as a held queue drops it): the node unverified, its values uncertain, named", async () => {
    const acl = [
      "topic readwrite #",
      "user host",
      "topic deny spBv1.0/+/NDEATH/#",
      "topic readwrite spBv1.0/#",
      "user watch",
      "topic readwrite spBv1.0/#",
      "",
    ].join("\n");
    const broker = await configuredBroker(["acl_file {dir}/acl"], { acl });
    cleanups.push(() => broker.stop());
    const host = await started(broker.url, { mqtt: { username: "host" }, deathWatchMqtt: { username: "watch" } });
    const edge = await RawEdgeNode.connect(broker.url, GROUP, "w", 0, { deathPayload: GARBAGE });
    cleanups.push(() => edge.close());
    await edge.nbirth(0, [{ name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: 21 }]);
    await eventually(() => host.latest(tag("w", "temp"))?.sample.quality.severity === "good");
    edge.client.stream.destroy();
    await eventually(() => host.latest(tag("w", "temp"))?.sample.quality.severity === "uncertain", 5_000, "not good");
    expect(host.health().problems.join("\n")).toMatch(
      /edge node plant-udeath\/w unverified.*NDEATH that cannot be decoded \(read on the death watch\)/,
    );
  });
});
