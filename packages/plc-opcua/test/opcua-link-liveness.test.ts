import { KilnError, type Sample } from "@kiln/core";
import type { DriverStatusChange } from "@kiln/core/driver-kit";
import { describe, expect, test } from "vitest";
import { countTags, freshValues, subscriptionCountFixture } from "./support/subscription-count";
import { TcpProxy } from "./support/tcp-proxy";
import { waitFor } from "./support/wait-for";

// Issue 13, adversarial pass on fix13e. The link watchdog (2 keep-alive periods of silence) took
// a live but slow server for a stalled link: a server that answers one request at a time and
// takes 3 s for one (nothing else answered meanwhile), a 20,000-item CreateMonitoredItems, a
// 1.2 s round trip with a 1 s keep-alive. Each was cut off at 2 keep-alive periods (by the
// watchdog, and by the socket's idle timeout node-opcua set to the same bound), over and over
// (docs/adr/0022, amendment fix13f). The fixture's driver: keepAliveMs 1000, requestMs 3000.
const { simulator, newDriver } = subscriptionCountFixture();
const KEEP_ALIVE_BOUND_MS = 2_000;
const REQUEST_MS = 3_000;
const SLACK_MS = 1_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("a live server slower than the keep-alive bound", () => {
  // MEDIUM-2: the bound is max(2 keep-alive periods, the oldest outstanding request's deadline).
  test("a request the server takes longer than 2 keep-alive periods to answer (nothing else answered meanwhile) succeeds; no loss", async () => {
    const proxy = new TcpProxy(simulator().port);
    const driver = newDriver(await proxy.start());
    await driver.connect();
    const changes: DriverStatusChange[] = [];
    driver.onStatusChange((change) => changes.push(change));
    try {
      // The server answers nothing for 2.6 s (held, then delivered): one request at a time, a slow one.
      proxy.pause();
      const read = driver.read(countTags.list());
      await sleep(KEEP_ALIVE_BOUND_MS + 600);
      proxy.restore();
      const samples = await read;
      expect(samples.map((sample) => sample.quality.severity)).toEqual(["good", "good", "good"]);
      await sleep(1_000);
      expect(changes).toEqual([]);
    } finally {
      await driver.close();
      await proxy.close();
    }
  }, 20_000);

  // Sibling: the request's deadline bounds the wait; silence past it is a stall.
  test("silence past the outstanding request's deadline is a stall, declared at that deadline", async () => {
    const proxy = new TcpProxy(simulator().port);
    const driver = newDriver(await proxy.start());
    await driver.connect();
    const changes: (DriverStatusChange & { at: number })[] = [];
    driver.onStatusChange((change) => changes.push({ ...change, at: Date.now() }));
    try {
      const stalledAt = Date.now();
      proxy.blackhole();
      const failed = await driver.read(countTags.list()).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(failed).toBeInstanceOf(KilnError);
      await waitFor(() => changes.some((change) => change.to === "reconnecting"), { what: "the loss" });
      const lost = changes.find((change) => change.to === "reconnecting")!;
      expect(lost.reason).toMatch(/link stalled/);
      expect(lost.at - stalledAt).toBeGreaterThanOrEqual(REQUEST_MS - 200);
      expect(lost.at - stalledAt).toBeLessThan(REQUEST_MS + SLACK_MS);
    } finally {
      await driver.close();
      await proxy.close();
    }
  }, 20_000);

  // adv13c M1: fix13f widened the bound when the same session came back at the first attempt; a
  // NAT that loses the idle flow looks the same (the session proves the server alive, not the
  // path), so a path silent longer than the bound is a loss each time, and the bound stays.
  test("a path silent past the bound is a loss each time: the bound is never widened, endpoints() stays empty", async () => {
    const proxy = new TcpProxy(simulator().port);
    const driver = newDriver(await proxy.start());
    await driver.connect();
    const changes: DriverStatusChange[] = [];
    driver.onStatusChange((change) => changes.push(change));
    try {
      for (let pause = 0; pause < 2; pause++) {
        const mark = changes.length;
        const pausedAt = Date.now();
        let lostAt = 0;
        const stop = driver.onStatusChange((change) => {
          if (change.to === "reconnecting" && !lostAt) lostAt = Date.now();
        });
        proxy.pause();
        await sleep(KEEP_ALIVE_BOUND_MS + 600);
        proxy.restore();
        await waitFor(() => driver.status === "connected" && changes.length > mark, { what: "reconnected" });
        stop();
        expect(changes[mark]!.reason).toMatch(/link stalled/);
        expect(lostAt - pausedAt).toBeLessThan(KEEP_ALIVE_BOUND_MS + 500);
        await sleep(1_000);
      }
    } finally {
      await driver.close();
      await proxy.close();
    }
  }, 30_000);

  // LOW-3: a round trip of 1.2 s with a 1 s keep-alive: each keep-alive answer came 2.2 s after the last.
  test("a slow link (1.2 s round trip, keep-alive 1 s) is no loss; a stall on it is still declared", async () => {
    const proxy = new TcpProxy(simulator().port);
    proxy.latencyMs = 600;
    const driver = newDriver(await proxy.start());
    await driver.connect();
    const changes: DriverStatusChange[] = [];
    driver.onStatusChange((change) => changes.push(change));
    try {
      await sleep(7_000);
      expect(changes).toEqual([]);
      const samples = await driver.read(countTags.list());
      expect(samples.map((sample) => sample.quality.severity)).toEqual(["good", "good", "good"]);
      const stalledAt = Date.now();
      proxy.blackhole();
      await waitFor(() => driver.status === "reconnecting", { what: "the loss" });
      expect(Date.now() - stalledAt).toBeLessThan(KEEP_ALIVE_BOUND_MS + 2 * 1_200 + SLACK_MS);
      expect(changes[0]!.reason).toMatch(/link stalled/);
    } finally {
      await driver.close();
      await proxy.close();
    }
  }, 20_000);

  // LOW-4: subscribe() failing because the link was declared lost names why (one error path).
  test("subscribe() on a link that stalls fails naming the stall", async () => {
    const proxy = new TcpProxy(simulator().port);
    const driver = newDriver(await proxy.start());
    await driver.connect();
    const received: Sample[] = [];
    try {
      proxy.blackhole();
      const error = await driver
        .subscribe(countTags.list(), { samplingIntervalMs: 50 }, (samples) => received.push(...samples))
        .then(
          () => undefined,
          (failure: unknown) => failure,
        );
      expect(KilnError.is(error, "KILN_CONNECTION_FAILED")).toBe(true);
      expect((error as KilnError).message).toMatch(/link stalled/);
      proxy.restore();
      await waitFor(() => driver.status === "connected", { what: "connected again" });
      await driver.subscribe(countTags.list(), { samplingIntervalMs: 50 }, (samples) => received.push(...samples));
      await freshValues(received);
    } finally {
      await driver.close();
      await proxy.close();
    }
  }, 20_000);
});
