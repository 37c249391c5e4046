import path from "node:path";
import { defineTags, type Sample } from "@kiln/core";
import { afterEach, describe, expect, test } from "vitest";
import { OpcuaDriver } from "../src/index";
import { type RawChannel, type RawOpcuaServer, startRawOpcuaServer } from "./support/raw-opcua-server";
import { waitFor } from "./support/wait-for";

// Issue 13, adversarial pass adv13j MEDIUM-1: on a server with few subscription slots (small PLCs:
// maxSubscriptionsPerSession 1 or 2), a CreateSubscription whose answer is lost with the channel
// leaves a subscription nothing owns on the re-activated session. It holds the slot, so the next
// group's creation is refused (BadTooManySubscriptions), and node-opcua sends no Publish while the
// session holds none of its own: the orphan stayed silent until its lifetime ran out (~15 s), then
// the group waited its escalated backoff (~12 s more), about 30 s without a value while the driver
// said `connected`. Now a refusal for the limit makes the orphans answer one Publish, they are
// deleted and the refused group is created at once (docs/adr/0022, amendment fix13k-slots).
const NS = "urn:kiln:test:orphans-hold-every-slot";
const tags = defineTags({
  a: { dataType: "float64", address: `nsu=${NS};s=X`, scanGroup: "a" },
  b: { dataType: "float64", address: `nsu=${NS};s=X`, scanGroup: "b" },
});

let raw: RawOpcuaServer | undefined;
let driver: OpcuaDriver | undefined;

afterEach(async () => {
  await driver?.close();
  await raw?.close();
  driver = undefined;
  raw = undefined;
});

/** Starts a server with `slots` subscriptions per session that loses the next `drops` CreateSubscription answers, cutting the channel each time. */
async function lossyServer(slots: number, drops: { remaining: number }): Promise<RawOpcuaServer> {
  const server = await startRawOpcuaServer({ namespaceUri: NS, maxSubscriptionsPerSession: slots });
  server.server.on("newChannel", (channel) => {
    const raw = channel as unknown as RawChannel & { send_response: (...args: unknown[]) => unknown };
    const send = raw.send_response.bind(raw);
    raw.send_response = (...args: unknown[]) => {
      if ((args[1] as object | undefined)?.constructor.name === "CreateSubscriptionResponse" && drops.remaining > 0) {
        drops.remaining--;
        // The server made the subscription; its answer never leaves.
        raw.abruptlyInterrupt!();
        return undefined;
      }
      return send(...args);
    };
  });
  return server;
}

function newDriver(url: string, workDir: string): OpcuaDriver {
  // Default timing (keep-alive and lifetime as shipped): the orphan's lifetime is ~15 s.
  return new OpcuaDriver({
    endpointUrl: url,
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    connectionStrategy: { maxRetry: 1_000, initialDelayMs: 100, maxDelayMs: 2_000, randomisationFactor: 0 },
  });
}

describe("lost CreateSubscription answers leave orphans holding every slot (adv13j MEDIUM-1)", () => {
  test.each([
    { slots: 1, lost: 1 },
    { slots: 2, lost: 2 },
  ])(
    "$slots slot(s), $lost answer(s) lost: group b delivers within 5 s, never good before, one subscription per created group",
    async ({ slots, lost }) => {
      const drops = { remaining: lost };
      raw = await lossyServer(slots, drops);
      driver = newDriver(raw.url, raw.workDir);
      const received: Sample[] = [];
      const deliver = (samples: readonly Sample[]): void => void received.push(...samples);
      await driver.connect();
      const cut = performance.now();
      // a's creation answer is lost: its subscribe() fails (retryable) or resolves as desired state.
      const aSubscribed = await driver
        .subscribe(
          tags.list().filter((tag) => tag.name === "a"),
          { samplingIntervalMs: 100 },
          deliver,
        )
        .then(
          () => true,
          () => false,
        );
      await driver.subscribe(
        tags.list().filter((tag) => tag.name === "b"),
        { samplingIntervalMs: 200 },
        deliver,
      );
      await waitFor(() => received.some((sample) => sample.tag === "b" && sample.quality.severity === "good"), {
        what: `a good value of b (server holds ${JSON.stringify(raw.holds())}, status ${driver.status})`,
        timeoutMs: 5_000,
      });
      expect(performance.now() - cut).toBeLessThan(5_000);
      expect(drops.remaining).toBe(0);
      const bSamples = received.filter((sample) => sample.tag === "b");
      const firstGood = bSamples.findIndex((sample) => sample.quality.severity === "good");
      // Before its subscription existed, b was never shown good.
      expect(bSamples.slice(0, firstGood).every((sample) => sample.quality.severity === "bad")).toBe(true);
      // The application subscribes a again; with one slot the server refuses it (b holds the slot), clearly.
      if (!aSubscribed && slots === 1) {
        const again = await driver
          .subscribe(
            tags.list().filter((tag) => tag.name === "a"),
            { samplingIntervalMs: 100 },
            deliver,
          )
          .then(
            () => undefined,
            (error: unknown) => error,
          );
        expect(String((again as Error | undefined)?.message)).toMatch(/BadTooManySubscriptions/);
      } else if (!aSubscribed) {
        // Two slots: the second orphan answers b's Publish requests and is deleted; a fits again soon.
        await waitFor(
          () =>
            driver!
              .subscribe(
                tags.list().filter((tag) => tag.name === "a"),
                { samplingIntervalMs: 100 },
                deliver,
              )
              .then(
                () => true,
                () => false,
              ),
          {
            what: `a subscribe() of a that resolves (server holds ${JSON.stringify(raw.holds())})`,
            timeoutMs: 5_000,
            intervalMs: 300,
          },
        );
      }
      const created = slots === 1 ? 1 : 2;
      await waitFor(
        () => JSON.stringify(raw!.holds()) === JSON.stringify({ sessions: 1, subscriptions: created, items: created }),
        { what: `one subscription per created group (server holds ${JSON.stringify(raw.holds())})`, timeoutMs: 5_000 },
      );
      expect(driver.status).toBe("connected");
    },
    40_000,
  );
});
