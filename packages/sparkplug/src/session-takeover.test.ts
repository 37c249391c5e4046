import { EventEmitter } from "node:events";
import { SimulatedClock } from "@kiln/core/testing";
import type { MqttClient } from "mqtt";
import { describe, expect, test } from "vitest";
import { SESSION_TAKEN_OVER, SessionTakeover } from "./session-takeover";

/** A stand-in for an MQTT.js client: its `disconnect` event, `connected` and `disconnecting`. */
function fakeClient(): MqttClient & EventEmitter {
  return Object.assign(new EventEmitter(), { connected: true, disconnecting: false }) as unknown as MqttClient &
    EventEmitter;
}

// Adversarial review adv19p M2.
describe("SessionTakeover", () => {
  test("MQTT 5 DISCONNECT 0x8E names the client id at the first loss; health names it while connected until a session lasts clearAfterMs", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const takeover = new SessionTakeover(clock, 0);
    const first = fakeClient();
    takeover.follow(first, "plant-host");
    await clock.advance(5_000);
    first.emit("disconnect", { cmd: "disconnect", reasonCode: SESSION_TAKEN_OVER });
    expect(takeover.lost(first)).toContain('client id "plant-host" in use by another client');
    expect(takeover.lost(first)).toContain("0x8E");
    const second = fakeClient();
    takeover.follow(second, "plant-host");
    expect(takeover.problem()).toContain('client id "plant-host" in use by another client');
    await clock.advance(59_999);
    expect(takeover.problem()).toBeDefined();
    await clock.advance(1);
    expect(takeover.problem()).toBeUndefined();
  });

  test("without a reason: three short sessions in a row with a client id are suspected, then every one until one lasts", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const takeover = new SessionTakeover(clock, 0);
    const losses: (string | undefined)[] = [];
    const session = async (lastsMs: number, clientId: string | undefined = "edge-7"): Promise<void> => {
      const client = fakeClient();
      takeover.follow(client, clientId);
      await clock.advance(lastsMs);
      losses.push(takeover.lost(client));
    };
    await session(900);
    await session(900);
    expect(losses).toEqual([undefined, undefined]);
    await session(900);
    expect(losses[2]).toContain(
      'client id "edge-7" likely in use by another client: the broker closed 3 sessions in a row',
    );
    await session(30_000);
    expect(losses[3]).toContain("closed this session within 30000 ms");
    await session(60_000);
    expect(losses[4]).toBeUndefined();
    await session(900);
    expect(losses[5]).toBeUndefined();
  });

  test("siblings: a session ended by Kiln, by MQTT.js's own keepalive, or under a client id MQTT.js made up, is never taken over", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const takeover = new SessionTakeover(clock, 0);
    for (let round = 0; round < 4; round++) {
      const made = fakeClient();
      takeover.follow(made, undefined);
      await clock.advance(100);
      expect(takeover.lost(made)).toBeUndefined();
      const ended = fakeClient();
      takeover.follow(ended, "host-1");
      ended.emit("disconnect", { cmd: "disconnect", reasonCode: SESSION_TAKEN_OVER });
      (ended as unknown as { disconnecting: boolean }).disconnecting = true;
      expect(takeover.lost(ended)).toBeUndefined();
    }
    for (let round = 0; round < 4; round++) {
      const timedOut = fakeClient();
      takeover.follow(timedOut, "host-1");
      await clock.advance(1_500);
      timedOut.emit("error", new Error("Keepalive timeout"));
      expect(takeover.lost(timedOut)).toBeUndefined();
    }
    expect(takeover.problem()).toBeUndefined();
  });
});
