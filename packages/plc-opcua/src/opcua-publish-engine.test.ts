import type { ClientSession } from "node-opcua-client";
import { describe, expect, test } from "vitest";
import { primePublishEngine } from "./opcua-publish-engine";

/** A stand-in for node-opcua's ClientSidePublishEngine, counting the Publish refills. */
function engineOf(state: { active: number; held: number; pending: number; suspended?: boolean }) {
  const calls = { replenished: 0, resumed: 0 };
  const engine = {
    activeSubscriptionCount: state.active,
    nbPendingPublishRequests: state.pending,
    isSuspended: state.suspended ?? false,
    subscriptionCount: state.held,
    suspend(suspended: boolean) {
      engine.isSuspended = suspended;
      if (!suspended) calls.resumed++;
    },
    replenish_publish_request_queue() {
      calls.replenished++;
    },
  };
  const session = { getPublishEngine: () => engine } as unknown as ClientSession;
  return { engine, session, calls };
}

describe("primePublishEngine", () => {
  test("a healthy engine is left alone", () => {
    const { engine, session, calls } = engineOf({ active: 1, held: 1, pending: 5 });
    expect(primePublishEngine(session, { whenIdle: true })).toEqual([]);
    expect(engine.activeSubscriptionCount).toBe(1);
    expect(calls).toEqual({ replenished: 0, resumed: 0 });
  });

  test("a count of active subscriptions below those held is corrected (node-opcua then renews Publish requests)", () => {
    const { engine, session, calls } = engineOf({ active: 0, held: 1, pending: 3 });
    expect(primePublishEngine(session, { whenIdle: false })).toEqual([
      "node-opcua counted 0 active subscription(s) for 1 held",
    ]);
    expect(engine.activeSubscriptionCount).toBe(1);
    expect(calls.replenished).toBe(0);
  });

  test("no Publish outstanding: refilled only when idle is allowed", () => {
    const idle = engineOf({ active: 1, held: 1, pending: 0 });
    expect(primePublishEngine(idle.session, { whenIdle: false })).toEqual([]);
    expect(idle.calls.replenished).toBe(0);
    expect(primePublishEngine(idle.session, { whenIdle: true })).toEqual(["no Publish request was outstanding"]);
    expect(idle.calls.replenished).toBe(1);
  });

  test("an engine left suspended is resumed", () => {
    const { engine, session, calls } = engineOf({ active: 1, held: 1, pending: 0, suspended: true });
    expect(primePublishEngine(session, { whenIdle: true })).toEqual([
      "its publish engine was still suspended after a repair",
    ]);
    expect(engine.isSuspended).toBe(false);
    expect(calls).toEqual({ replenished: 0, resumed: 1 });
  });

  test("without subscriptions nothing is sent; a negative count is corrected to 0", () => {
    const { engine, session, calls } = engineOf({ active: -1, held: 0, pending: 0, suspended: true });
    expect(primePublishEngine(session, { whenIdle: true })).toEqual([
      "node-opcua counted -1 active subscription(s) for 0 held",
    ]);
    expect(engine.activeSubscriptionCount).toBe(0);
    expect(calls).toEqual({ replenished: 0, resumed: 0 });
  });

  test("a session without a publish engine, or an engine without these members, is left alone", () => {
    expect(primePublishEngine({} as ClientSession, { whenIdle: true })).toEqual([]);
    const bare = { getPublishEngine: () => ({}) } as unknown as ClientSession;
    expect(primePublishEngine(bare, { whenIdle: true })).toEqual([]);
  });
});
