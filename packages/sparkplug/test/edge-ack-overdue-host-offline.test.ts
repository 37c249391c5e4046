/**
 * Acknowledgements overdue while the primary host is shown offline (ADR 0043 amendment fix19i, review adv19j LOW-2):
 * an edge node silenced by a STATE offline publishes nothing and expects no acknowledgement, so health names the
 * host's STATE, not overdue acknowledgements "(the host may be gone without its Will)"; once the host is back, the
 * wait counts again from its return.
 */
import mqtt from "mqtt";
import { expect, test } from "vitest";
import { encodeHostState } from "../src/host-state";
import { edgeFixture } from "./support/edge-fixture";
import { eventually } from "./support/host-harness";

const HOST = "scada-quiet";
const OVERDUE = /acknowledgements from primary host scada-quiet overdue/;

test("no acknowledgement is called overdue while a STATE offline silences the edge node; the wait counts from the host's return", async () => {
  const fixture = await edgeFixture({ primaryHostId: HOST });
  // The host's STATE by hand: a host that never acknowledges, so acknowledgements are due but never come.
  const writer = await mqtt.connectAsync(fixture.broker.url, { reconnectPeriod: 0 });
  const say = (online: boolean, timestamp: number) =>
    writer.publishAsync(`spBv1.0/STATE/${HOST}`, Buffer.from(encodeHostState({ online, timestamp })), {
      qos: 1,
      retain: true,
    });
  const problems = (): string => node.health().problems.join("\n");
  const start = Date.now();
  await say(true, start);
  const node = fixture.newNode({ storeAndForward: {}, awaitHostAcks: true, ackOverdueMs: 2_000 });
  try {
    await node.start();
    await eventually(() => node.health().primaryHost?.state === "online", 10_000, "the host online");
    await eventually(() => OVERDUE.test(problems()), 10_000, "acknowledgements overdue while the host is online");

    await say(false, start + 1);
    await eventually(() => node.health().primaryHost?.state === "offline", 10_000, "the host offline");
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    expect(problems()).toMatch(/primary host scada-quiet is offline: nothing is published/);
    expect(problems()).not.toMatch(OVERDUE);

    await say(true, start + 2);
    await eventually(() => node.health().primaryHost?.state === "online", 10_000, "the host back");
    expect(problems()).not.toMatch(OVERDUE);
    // Still no acknowledgement: overdue again, counted from the host's return.
    await eventually(() => OVERDUE.test(problems()), 10_000, "acknowledgements overdue again");
  } finally {
    await writer.endAsync();
    await fixture.close();
  }
}, 60_000);
