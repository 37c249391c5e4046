/**
 * A foreign STATE on the host's own topic stamped more than 5 minutes (the edge node's default
 * maxHostClockSkewMs) ahead (amendment fix19c of ADR 0043, review adv19c MEDIUM-1 and LOW-3): the
 * edge node holds it back only until its clock comes within 5 minutes of it, then follows it; the
 * host keeps it and outruns it once its own clock has passed the stamp, whatever the distance.
 * Host and edge share one clock whose offset the test steps forward, so the stamp is passed
 * without waiting 5 minutes.
 */
import { SystemClock } from "@kiln/core";
import mqtt from "mqtt";
import { describe, expect, test } from "vitest";
import { SparkplugHost } from "../src/index";
import { startTestBroker } from "../src/testing/index";
import { encodeHostState } from "../src/host-state";
import { edgeFixture, GROUP, EDGE, DEVICE } from "./support/edge-fixture";
import { eventually, openTestDatabase } from "./support/host-harness";

const PRESSURE = `${GROUP}/${EDGE}/${DEVICE}/chamber.pressure`;
/** HOST_STATE_OUTRUN_MS (host.ts), the edge node's default maxHostClockSkewMs. */
const OUTRUN_MS = 300_000;

async function rig(hostId: string) {
  let offsetMs = 0;
  const clock = new (class extends SystemClock {
    override now(): number {
      return super.now() + offsetMs;
    }
  })();
  const broker = await startTestBroker();
  const db = await openTestDatabase();
  const host = new SparkplugHost({
    brokerUrl: broker.url,
    hostId,
    groups: [GROUP],
    store: db.store,
    clock,
    stopLingerMs: 100,
    reconnect: { initialDelayMs: 50, maxDelayMs: 200 },
    batching: { maxDelayMs: 5 },
  });
  await host.start();
  await host.whenConnected();
  const fixture = await edgeFixture({ primaryHostId: hostId, broker });
  const node = fixture.newNode({ clock });
  await node.start();
  await eventually(() => host.latest(PRESSURE)?.sample.quality.severity === "good", 10_000, "edge born");
  const spoof = async (state: { online: boolean; timestamp: number }) => {
    const other = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    await other.publishAsync(`spBv1.0/STATE/${hostId}`, Buffer.from(encodeHostState(state)), {
      qos: 1,
      retain: true,
    });
    await other.endAsync();
  };
  return {
    host,
    node,
    broker,
    spoof,
    step(ms: number) {
      offsetMs += ms;
    },
    async close() {
      await node.stop();
      await fixture.close();
      await host.stop();
      await db.close();
      await broker.stop();
    },
  };
}

describe("a foreign STATE more than 5 minutes ahead is outrun once the host's clock passes it (fix19c)", () => {
  test("offline, stamped HOST_STATE_OUTRUN_MS + 1 s ahead: the edge follows it after about a second; once the clock passes the stamp the host outruns it and the edge publishes again (adv19c MEDIUM-1)", async () => {
    const r = await rig("scada-far-off");
    try {
      const spoofAt = Date.now() + OUTRUN_MS + 1_000;
      await r.spoof({ online: false, timestamp: spoofAt });
      await eventually(() => r.host.health().state.foreign !== undefined, 5_000, "the foreign STATE reported");
      const problems = r.host.health().problems.join("\n");
      expect(problems).toMatch(/starts a new session stamped after it once its clock has passed/);
      expect(problems).toMatch(/hold it back until their clock comes within that of it and then follow it/);
      // The edge node holds it back for about a second, then follows it: silent.
      await eventually(() => !r.node.health().publishing, 10_000, "the edge follows the spoof");
      expect(r.host.health().state.outruns).toBe(0);
      // The clocks pass the stamp.
      r.step(OUTRUN_MS + 2_000);
      await eventually(() => r.host.health().state.outruns === 1, 10_000, "the host outran the spoof");
      await eventually(() => r.node.health().publishing, 10_000, "the edge publishes again");
      expect(r.node.health().primaryHost?.timestamp).toBeGreaterThan(spoofAt);
      expect(r.host.health().state.foreign).toBeUndefined();
      await eventually(
        () => r.host.latest(PRESSURE)?.sample.quality.severity === "good",
        10_000,
        "live values good again",
      );
    } finally {
      await r.close();
    }
  }, 60_000);

  test("offline, with the host's session lost before the stamp (a broker restart): the next session outruns it once the clock passes the stamp (adv19d MEDIUM-1: the outrun was cancelled with the session that saw the spoof)", async () => {
    const r = await rig("scada-far-restart");
    try {
      const spoofAt = Date.now() + OUTRUN_MS + 1_000;
      await r.spoof({ online: false, timestamp: spoofAt });
      await eventually(() => r.host.health().state.foreign !== undefined, 5_000, "the foreign STATE reported");
      await eventually(() => !r.node.health().publishing, 10_000, "the edge follows the spoof");
      // The broker restarts before the stamp: the host's session that saw the spoof is gone.
      const before = r.host.health().state.timestamp;
      await r.broker.restart();
      await eventually(
        () => r.host.health().state.timestamp !== before && r.host.health().state.online === true,
        15_000,
        "the host's new session online",
      );
      expect(r.host.health().state.outruns).toBe(0);
      r.step(OUTRUN_MS + 2_000);
      await eventually(() => r.host.health().state.outruns === 1, 10_000, "the new session outran the spoof");
      await eventually(() => r.node.health().publishing, 15_000, "the edge publishes again");
    } finally {
      await r.close();
    }
  }, 60_000);

  test("sibling: online, stamped HOST_STATE_OUTRUN_MS + 1 s ahead: reported, outrun once the clock passes it, and the edge believes the host's offline STATE when it stops (adv19c LOW-3)", async () => {
    const r = await rig("scada-far-on");
    try {
      const spoofAt = Date.now() + OUTRUN_MS + 1_000;
      await r.spoof({ online: true, timestamp: spoofAt });
      await eventually(() => r.host.health().state.foreign?.online === true, 5_000, "the foreign STATE reported");
      await eventually(() => r.node.health().primaryHost?.timestamp === spoofAt, 10_000, "the edge follows the spoof");
      expect(r.host.health().state.outruns).toBe(0);
      r.step(OUTRUN_MS + 2_000);
      await eventually(() => r.host.health().state.outruns === 1, 10_000, "the host outran the spoof");
      await eventually(
        () => (r.node.health().primaryHost?.timestamp ?? 0) > spoofAt,
        10_000,
        "the edge follows the host's new session",
      );
      await r.host.stop();
      await eventually(
        () => !r.node.health().publishing && r.node.health().primaryHost?.state === "offline",
        10_000,
        "the edge believes the host's offline STATE",
      );
    } finally {
      await r.close();
    }
  }, 60_000);
});
