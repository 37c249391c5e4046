import { KilnError } from "@kiln/core";
import { SimulatedClock } from "@kiln/core/testing";
import type { ClientSession } from "node-opcua-client";
import { afterEach, describe, expect, it } from "vitest";
import { endRequestsWith } from "./opcua-session-lifetime";

type Callback = (error: Error | null, response?: unknown) => void;

class ReadRequest {}
class CloseSessionRequest {}
class CreateSubscriptionRequest {}
class BrowseNextRequest {}

/** A session stand-in that holds every request's callback until the test answers it. */
interface Transactions {
  performMessageTransaction(request: object, callback: Callback): unknown;
}
function heldSession(): {
  session: Transactions;
  held: Callback[];
  wrap: (lifetime: AbortSignal, bound?: Parameters<typeof endRequestsWith>[2]) => void;
} {
  const held: Callback[] = [];
  const session: Transactions = {
    performMessageTransaction(_request: object, callback: Callback): void {
      held.push(callback);
    },
  };
  return {
    session,
    held,
    wrap: (lifetime, bound) => endRequestsWith(session as unknown as ClientSession, lifetime, bound),
  };
}

const warnings: Error[] = [];
const onWarning = (warning: Error): void => void warnings.push(warning);
afterEach(() => {
  process.off("warning", onWarning);
  warnings.length = 0;
});

describe("endRequestsWith", () => {
  it("holds one listener on the driver's signal however many requests are out, and ends them all at close", async () => {
    process.on("warning", onWarning);
    const { session, held, wrap } = heldSession();
    const lifetime = new AbortController();
    wrap(lifetime.signal);
    const outcomes: (Error | null)[] = [];
    for (let i = 0; i < 25; i++) {
      session.performMessageTransaction(new ReadRequest(), (error) => void outcomes.push(error));
    }
    expect(held).toHaveLength(25);
    // Node emits process warnings on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
    expect(warnings.filter((warning) => warning.name === "MaxListenersExceededWarning")).toEqual([]);

    lifetime.abort();
    expect(outcomes).toHaveLength(25);
    expect(outcomes.every((error) => KilnError.is(error) && error.code === "KILN_ABORTED")).toBe(true);
    // An answer node-opcua delivers afterwards is ignored: each caller is answered once.
    held[0]!(null, {});
    expect(outcomes).toHaveLength(25);
  });

  it("answers a request normally when it settles before close, and close then leaves it alone", () => {
    const { session, held, wrap } = heldSession();
    const lifetime = new AbortController();
    wrap(lifetime.signal);
    const outcomes: unknown[] = [];
    session.performMessageTransaction(new ReadRequest(), (error, response) => void outcomes.push(error ?? response));
    held[0]!(null, "answer");
    lifetime.abort();
    expect(outcomes).toEqual(["answer"]);
  });

  it("passes CloseSession through after close, and fails any other request at once", () => {
    const { session, held, wrap } = heldSession();
    const lifetime = new AbortController();
    wrap(lifetime.signal);
    lifetime.abort();
    const outcomes: unknown[] = [];
    session.performMessageTransaction(new ReadRequest(), (error) => void outcomes.push(error));
    session.performMessageTransaction(new CloseSessionRequest(), () => undefined);
    expect(held).toHaveLength(1);
    expect(KilnError.is(outcomes[0]) && outcomes[0].code).toBe("KILN_ABORTED");
  });

  describe("timeouts.requestMs below node-opcua's 5 s minimum (amendment fix13ae)", () => {
    const application = new ReadRequest();
    const upkeep = new ReadRequest();
    function bounded(requestMs: number): { session: Transactions; held: Callback[]; clock: SimulatedClock } {
      const { session, held, wrap } = heldSession();
      const clock = new SimulatedClock();
      wrap(new AbortController().signal, { requestMs, applies: (request) => request !== upkeep, clock });
      return { session, held, clock };
    }

    it("ends an application request unanswered after requestMs with node-opcua's words for a timeout; a later answer is ignored", async () => {
      const { session, held, clock } = bounded(1_000);
      const outcomes: unknown[] = [];
      session.performMessageTransaction(application, (error, response) => void outcomes.push(error ?? response));
      await clock.advance(999);
      expect(outcomes).toEqual([]);
      await clock.advance(1);
      expect(outcomes).toHaveLength(1);
      expect((outcomes[0] as Error).message).toMatch(
        /^Transaction has timed out \(timeout = 1000 ms, timeouts\.requestMs/,
      );
      held[0]!(null, "late");
      expect(outcomes).toHaveLength(1);
    });

    it("leaves upkeep requests, answered requests, requests whose answer holds a server resource and requestMs of 5 s or more to node-opcua", async () => {
      const { session, held, clock } = bounded(1_000);
      const outcomes: unknown[] = [];
      session.performMessageTransaction(upkeep, (error, response) => void outcomes.push(error ?? response));
      session.performMessageTransaction(application, (error, response) => void outcomes.push(error ?? response));
      held[1]!(null, "in time");
      await clock.advance(10_000);
      expect(outcomes).toEqual(["in time"]);
      // A CreateSubscription's or BrowseNext's late answer holds a server resource: never dropped.
      const resourceful = bounded(1_000);
      for (const request of [new CreateSubscriptionRequest(), new BrowseNextRequest()])
        resourceful.session.performMessageTransaction(request, (error) => void outcomes.push(error));
      await resourceful.clock.advance(60_000);
      expect(outcomes).toEqual(["in time"]);
      const slow = bounded(5_000);
      slow.session.performMessageTransaction(application, (error) => void outcomes.push(error));
      await slow.clock.advance(60_000);
      expect(outcomes).toEqual(["in time"]);
    });
  });
});
