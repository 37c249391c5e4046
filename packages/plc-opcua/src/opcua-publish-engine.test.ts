import type { ClientSession } from "node-opcua-client";
import { describe, expect, test } from "vitest";
import { createRequire } from "node:module";
import { boundPublishRequests, primePublishEngine, publishRequestBound } from "./opcua-publish-engine";

const nodeOpcuaClientVersion = (createRequire(import.meta.url)("node-opcua-client/package.json") as { version: string })
  .version;

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

describe("boundPublishRequests against node-opcua's own ClientSidePublishEngine (fails loudly if node-opcua changes)", () => {
  /** node-opcua's real engine on a session stand-in that counts Publish requests and never answers them. */
  function realEngine() {
    const { ClientSidePublishEngine } = createRequire(import.meta.url)(
      "node-opcua-client/dist/private/client_publish_engine.js",
    ) as {
      ClientSidePublishEngine: new (session: object) => Record<string, unknown> & {
        replenish_publish_request_queue(): void;
        registerSubscription(subscription: object): void;
      };
    };
    const sent = { count: 0 };
    const fakeSession = {
      isChannelValid: () => true,
      publish: () => void sent.count++,
    };
    const engine = new ClientSidePublishEngine(fakeSession);
    const session = { getPublishEngine: () => engine } as unknown as ClientSession;
    return { engine, session, sent };
  }
  const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

  test("node-opcua 2.x: the engine's limit member exists, and a refill per repair stops at the bound", async () => {
    expect(Number.parseInt(nodeOpcuaClientVersion, 10)).toBe(2);
    const { engine, session, sent } = realEngine();
    expect(engine.nbMaxPublishRequestsAcceptedByServer).toBe(1000);
    for (const id of [1, 2, 3]) {
      engine.registerSubscription({ subscriptionId: id, timeoutHint: 10_000, onNotificationMessage: () => undefined });
      boundPublishRequests(session);
      await turn();
    }
    expect(engine.nbMaxPublishRequestsAcceptedByServer).toBe(publishRequestBound(3));
    // node-opcua's repair refills without counting what is outstanding: ten repairs, no growth.
    for (let repair = 0; repair < 10; repair++) {
      engine.replenish_publish_request_queue();
      await turn();
    }
    expect(engine.nbPendingPublishRequests).toBe(sent.count);
    expect(sent.count).toBeLessThanOrEqual(publishRequestBound(3));
  });

  test("without the bound node-opcua's refills pile up (what the bound is for)", async () => {
    const { engine, sent } = realEngine();
    engine.registerSubscription({ subscriptionId: 1, timeoutHint: 10_000, onNotificationMessage: () => undefined });
    await turn();
    for (let repair = 0; repair < 10; repair++) {
      engine.replenish_publish_request_queue();
      await turn();
    }
    expect(sent.count).toBe(55);
  });

  test("a lower limit node-opcua learnt from BadTooManyPublishRequests is kept; the bound follows the subscriptions", () => {
    const engine = { subscriptionCount: 3, nbMaxPublishRequestsAcceptedByServer: 1000 };
    const session = { getPublishEngine: () => engine } as unknown as ClientSession;
    boundPublishRequests(session);
    expect(engine.nbMaxPublishRequestsAcceptedByServer).toBe(5);
    engine.subscriptionCount = 10;
    boundPublishRequests(session);
    expect(engine.nbMaxPublishRequestsAcceptedByServer).toBe(12);
    engine.nbMaxPublishRequestsAcceptedByServer = 3; // node-opcua, on BadTooManyPublishRequests
    boundPublishRequests(session);
    expect(engine.nbMaxPublishRequestsAcceptedByServer).toBe(3);
    engine.subscriptionCount = 1;
    boundPublishRequests(session);
    expect(engine.nbMaxPublishRequestsAcceptedByServer).toBe(3);
  });
});
