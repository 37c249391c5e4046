/**
 * Every foreign STATE newer than the host's session is outrun in its turn, oldest first, whatever
 * its distance when it arrived (amendment fix19i of ADR 0043, review adv19h MEDIUM-1): which one an
 * edge node follows depends on its clock and its maxHostClockSkewMs, which the host cannot know.
 * Before, the host kept the newest and one older within 5 minutes of its clock: with an edge node
 * configured `maxHostClockSkewMs: 900000`, spoofs at +10 years and +302 s silenced the edge (it
 * followed the +302 s one) and the host never outran it. Host and edge share one clock whose
 * offset the test steps, so stamps minutes ahead are passed without waiting.
 *
 * Also: a host whose clock steps back stamps its next session after its last one (adv19f LOW-2).
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
const SECOND = 1_000;
const TEN_YEARS = 10 * 365 * 86_400_000;

async function rig(hostId: string, maxHostClockSkewMs: number) {
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
  const node = fixture.newNode({ clock, maxHostClockSkewMs });
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
    clock,
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

describe("every foreign STATE newer than the host's session is outrun, oldest first (adv19h MEDIUM-1)", () => {
  test("edge with maxHostClockSkewMs 900000, spoofs offline at +10 years then +302 s: the edge follows the +302 s one; once the clock passes it the host outruns it and the edge publishes again", async () => {
    const r = await rig("scada-every-exact", 900_000);
    try {
      const now = r.clock.now();
      const near = now + 302 * SECOND;
      const far = now + TEN_YEARS;
      await r.spoof({ online: false, timestamp: far });
      await eventually(() => r.host.health().state.foreign?.timestamp === far, 5_000, "the far spoof seen");
      await r.spoof({ online: false, timestamp: near });
      await eventually(() => !r.node.health().publishing, 10_000, "the edge follows the +302 s spoof");
      expect(r.node.health().primaryHost?.timestamp).toBe(near);
      expect(r.host.health().state.foreign?.timestamp).toBe(far);
      expect(r.host.health().state.outruns).toBe(0);
      r.step(304 * SECOND);
      await eventually(
        () => r.host.health().state.outruns === 1,
        10_000,
        () => `the host outran the +302 s spoof: ${JSON.stringify(r.host.health().state)}`,
      );
      await eventually(
        () => r.node.health().publishing,
        15_000,
        () => `the edge publishes again: ${JSON.stringify(r.node.health())}`,
      );
      expect(r.node.health().primaryHost?.timestamp).toBeGreaterThan(near);
      // The far one is still kept and reported: outrun in its turn.
      expect(r.host.health().state.foreign?.timestamp).toBe(far);
    } finally {
      await r.close();
    }
  }, 60_000);

  for (const order of [
    ["+302 s", "+600 s", "+10 y"],
    ["+10 y", "+600 s", "+302 s"],
    ["+600 s", "+10 y", "+302 s"],
  ] as const)
    test(`sibling: three spoofs offline in the order ${order.join(", ")}, edge with maxHostClockSkewMs 900000: outrun one after the other, oldest first; the edge publishes once the one it follows is outrun`, async () => {
      const r = await rig(`scada-every-${order.join("").replaceAll(/[^a-z0-9]/g, "")}`, 900_000);
      try {
        const now = r.clock.now();
        const stamps = { "+302 s": now + 302 * SECOND, "+600 s": now + 600 * SECOND, "+10 y": now + TEN_YEARS };
        for (const name of order) {
          await r.spoof({ online: false, timestamp: stamps[name] });
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
        // The edge follows the newest within 900 s of its clock: +600 s.
        await eventually(
          () => r.node.health().primaryHost?.timestamp === stamps["+600 s"],
          10_000,
          () => `the edge follows the +600 s spoof: ${JSON.stringify(r.node.health())}`,
        );
        expect(r.node.health().publishing).toBe(false);
        r.step(304 * SECOND);
        await eventually(() => r.host.health().state.outruns === 1, 10_000, "the host outran the +302 s spoof");
        await eventually(
          () => r.host.health().state.online && (r.host.health().state.timestamp ?? 0) > stamps["+302 s"],
          15_000,
          "the host's new session online",
        );
        expect(r.host.health().state.timestamp).toBeLessThan(stamps["+600 s"]);
        // Still silenced by the +600 s one, which is kept.
        expect(r.node.health().publishing).toBe(false);
        expect(r.host.health().problems.join("\n")).toMatch(/older foreign STATE\(s\) \(offline at /);
        r.step(300 * SECOND);
        await eventually(
          () => r.host.health().state.outruns === 2,
          10_000,
          () => `the host outran the +600 s spoof: ${JSON.stringify(r.host.health())}`,
        );
        await eventually(
          () => r.node.health().publishing,
          15_000,
          () => `the edge publishes again: ${JSON.stringify(r.node.health())}`,
        );
        expect(r.node.health().primaryHost?.timestamp).toBeGreaterThan(stamps["+600 s"]);
        expect(r.host.health().state.foreign?.timestamp).toBe(stamps["+10 y"]);
      } finally {
        await r.close();
      }
    }, 60_000);

  test("sibling: 18 foreign STATEs with distinct stamps: 16 are kept, the 2 let go are counted in the problem, the newest stays health's foreign", async () => {
    const r = await rig("scada-every-bound", 900_000);
    try {
      const now = r.clock.now();
      const stamps = Array.from({ length: 18 }, (_, index) => now + (1_000 + index * (index + 1)) * SECOND);
      for (const stamp of stamps) await r.spoof({ online: false, timestamp: stamp });
      await eventually(
        () => /2 more were let go beyond the bound of 16/.test(r.host.health().problems.join("\n")),
        10_000,
        () => `the bound reported: ${JSON.stringify(r.host.health().problems)}`,
      );
      expect(r.host.health().state.foreign?.timestamp).toBe(stamps.at(-1));
      expect(r.host.health().problems.join("\n")).toMatch(/15 older foreign STATE\(s\)/);
    } finally {
      await r.close();
    }
  }, 60_000);
});

describe("an edge node silenced by a foreign STATE offline shows its host offline (adv19h LOW-3)", () => {
  test("spoof offline at +302 s, edge with maxHostClockSkewMs 900000, then a broker restart: the edge's new session shows the host offline (the host's own online STATE is older and ignored, with the reason); once the clock passes the spoof the host outruns it and the edge publishes", async () => {
    const r = await rig("scada-every-restart", 900_000);
    try {
      const spoofAt = r.clock.now() + 302 * SECOND;
      await r.spoof({ online: false, timestamp: spoofAt });
      await eventually(() => r.node.health().primaryHost?.state === "offline", 10_000, "the edge follows the spoof");
      const before = r.host.health().state.timestamp;
      await r.broker.restart();
      await eventually(
        () => r.host.health().state.online && r.host.health().state.timestamp !== before,
        15_000,
        "the host's new session online",
      );
      await eventually(
        () =>
          r.node.health().link === "connected" && r.node.health().problems.some((p) => /ignored: older than/.test(p)),
        15_000,
        () => `the edge reconnected and ignores the host's older online STATE: ${JSON.stringify(r.node.health())}`,
      );
      expect(r.node.health().publishing).toBe(false);
      expect(r.node.health().primaryHost).toMatchObject({ state: "offline", timestamp: spoofAt });
      expect(r.node.health().problems.join("\n")).toMatch(/primary host scada-every-restart is offline/);
      r.step(304 * SECOND);
      await eventually(() => r.host.health().state.outruns === 1, 10_000, "the host outran the spoof");
      await eventually(
        () => r.node.health().publishing,
        15_000,
        () => `the edge publishes again: ${JSON.stringify(r.node.health())}`,
      );
      expect(r.node.health().primaryHost?.state).toBe("online");
    } finally {
      await r.close();
    }
  }, 60_000);
});

describe("spoofs close together are outrun by one session (adv19j LOW-1)", () => {
  test("spoofs offline at +2 s then +4 s, edge at the default maxHostClockSkewMs: it follows the +4 s one; one outrun, once the clock passes +4 s, covers both and the edge publishes again within seconds, not after the next outrun a minute later", async () => {
    const r = await rig("scada-every-close", 300_000);
    try {
      const now = r.clock.now();
      await r.spoof({ online: false, timestamp: now + 2 * SECOND });
      await r.spoof({ online: false, timestamp: now + 4 * SECOND });
      await eventually(() => !r.node.health().publishing, 10_000, "the edge follows the +4 s spoof");
      await eventually(
        () => r.node.health().publishing && (r.node.health().primaryHost?.timestamp ?? 0) > now + 4 * SECOND,
        20_000,
        () => `the edge publishes again, following the host: ${JSON.stringify(r.host.health().state)}`,
      );
      expect(r.host.health().state.outruns).toBe(1);
      expect(r.host.health().state.foreign).toBeUndefined();
    } finally {
      await r.close();
    }
  }, 60_000);
});

describe("a host whose clock steps back stamps its next session after its last one (adv19f LOW-2)", () => {
  test("clock stepped back 1 h, then a broker restart: the new session's STATE is newer than the last, and the edge follows it", async () => {
    const r = await rig("scada-step-back", 7_200_000);
    try {
      const before = r.host.health().state.timestamp!;
      r.step(-3_600 * SECOND);
      await r.broker.restart();
      await eventually(
        () => r.host.health().state.online && r.host.health().state.timestamp !== before,
        15_000,
        "the host's new session online",
      );
      expect(r.host.health().state.timestamp).toBeGreaterThan(before);
      await eventually(
        () => r.node.health().publishing && r.node.health().primaryHost?.timestamp === r.host.health().state.timestamp,
        15_000,
        () => `the edge follows the host's new session: ${JSON.stringify(r.node.health())}`,
      );
    } finally {
      await r.close();
    }
  }, 60_000);
});
