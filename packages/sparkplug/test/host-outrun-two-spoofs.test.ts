/**
 * Two foreign STATEs on the host's own topic, one near (2 s ahead) and one far (10 years ahead),
 * in either order (amendment fix19g of ADR 0043, review adv19f MEDIUM-1): the edge node follows
 * the near one and holds the far one back; the host keeps the near one (since fix19i: every one) and
 * outruns it first, so the edge node publishes again.
 */
import mqtt from "mqtt";
import { describe, expect, test } from "vitest";
import { SparkplugHost } from "../src/index";
import { startTestBroker } from "../src/testing/index";
import { encodeHostState } from "../src/host-state";
import { edgeFixture, GROUP, EDGE, DEVICE } from "./support/edge-fixture";
import { eventually, openTestDatabase } from "./support/host-harness";

const PRESSURE = `${GROUP}/${EDGE}/${DEVICE}/chamber.pressure`;

describe("a near and a far foreign STATE offline (adv19f MEDIUM-1)", () => {
  for (const order of ["near then far", "far then near"] as const)
    test(`${order}: the host outruns the near one, the edge node publishes again; the far one stays reported`, async () => {
      const hostId = `scada-two-${order.replaceAll(" ", "-")}`;
      const broker = await startTestBroker();
      const db = await openTestDatabase();
      const host = new SparkplugHost({
        brokerUrl: broker.url,
        hostId,
        groups: [GROUP],
        store: db.store,
        stopLingerMs: 100,
        reconnect: { initialDelayMs: 50, maxDelayMs: 200 },
        batching: { maxDelayMs: 5 },
      });
      await host.start();
      await host.whenConnected();
      const fixture = await edgeFixture({ primaryHostId: hostId, broker });
      const node = fixture.newNode({ storeAndForward: {} });
      try {
        await node.start();
        await eventually(() => host.latest(PRESSURE)?.sample.quality.severity === "good", 10_000, "edge born");
        const spoof = async (timestamp: number): Promise<void> => {
          const other = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
          await other.publishAsync(
            `spBv1.0/STATE/${hostId}`,
            Buffer.from(encodeHostState({ online: false, timestamp })),
            {
              qos: 1,
              retain: true,
            },
          );
          await other.endAsync();
        };
        const near = Date.now() + 2_000;
        const far = Date.now() + 10 * 365 * 86_400_000;
        for (const [index, stamp] of (order === "near then far" ? [near, far] : [far, near]).entries()) {
          if (index > 0) await new Promise((resolve) => setTimeout(resolve, 200));
          await spoof(stamp);
        }
        await eventually(() => !node.health().publishing, 5_000, "edge silenced by the near spoof");
        await eventually(
          () => host.health().state.outruns === 1,
          15_000,
          () => `the host outran the near spoof: ${JSON.stringify(host.health())}`,
        );
        await eventually(
          () => node.health().publishing,
          10_000,
          () => `the edge publishes again: ${JSON.stringify(node.health())}`,
        );
        expect(node.health().primaryHost?.timestamp).toBeGreaterThan(near);
        // The far one is still kept and reported: outrun in its turn.
        expect(host.health().state.foreign?.timestamp).toBe(far);
      } finally {
        await fixture.close();
        await host.stop();
        await db.close();
        await broker.stop();
      }
    }, 60_000);
});
