import { describe, expect, test } from "vitest";
import { KilnError, KilnValidationError } from "../domain/errors";
import { SimulatedClock } from "../memory/simulated-clock";
import type { DriverStatusChange } from "../ports/plc-driver-types";
import { ConnectionLifecycle } from "./connection-lifecycle";

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (error: unknown) => void } {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

function setup() {
  const clock = new SimulatedClock({ start: 0 });
  const errors: unknown[] = [];
  const lifecycle = new ConnectionLifecycle({
    name: "test",
    clock,
    random: () => 0,
    onListenerError: (error) => errors.push(error),
  });
  const changes: DriverStatusChange[] = [];
  lifecycle.onStatusChange((change) => changes.push(change));
  return { clock, lifecycle, changes, errors };
}

describe("ConnectionLifecycle", () => {
  test("concurrent connect calls share one attempt and report connecting, then connected", async () => {
    const { lifecycle, changes } = setup();
    const opening = deferred();
    let opens = 0;
    const open = () => (opens++, opening.promise);
    const first = lifecycle.connect(open, undefined, { connecting: "dialing" });
    const second = lifecycle.connect(open);
    opening.resolve();
    await Promise.all([first, second]);
    expect(opens).toBe(1);
    expect(changes).toEqual([
      { from: "disconnected", to: "connecting", reason: "dialing" },
      { from: "connecting", to: "connected" },
    ]);
    await lifecycle.connect(open);
    expect(opens).toBe(1);
  });

  test("a failed open goes back to disconnected with the error's message, and rethrows", async () => {
    const { lifecycle, changes } = setup();
    const failure = new KilnError("KILN_CONNECTION_FAILED", "refused", { retryable: true });
    await expect(lifecycle.connect(() => Promise.reject(failure))).rejects.toBe(failure);
    expect(lifecycle.status).toBe("disconnected");
    expect(changes.at(-1)).toEqual({
      from: "connecting",
      to: "disconnected",
      reason: "refused",
      code: "KILN_CONNECTION_FAILED",
    });
  });

  test("a refused identity on connect goes to failed with its code; whenConnected rejects with that code", async () => {
    const { lifecycle, changes } = setup();
    const refused = new KilnError("KILN_AUTHENTICATION_FAILED", "BadUserAccessDenied", { retryable: false });
    const waiting = lifecycle.whenConnected().catch((error: unknown) => error);
    await expect(lifecycle.connect(() => Promise.reject(refused))).rejects.toBe(refused);
    expect(lifecycle.status).toBe("failed");
    expect(changes.at(-1)).toEqual({
      from: "connecting",
      to: "failed",
      reason: "BadUserAccessDenied",
      code: "KILN_AUTHENTICATION_FAILED",
    });
    expect(KilnError.is(await waiting, "KILN_AUTHENTICATION_FAILED")).toBe(true);
  });

  test("a reconnect loop stops at the first refused identity (status failed), even when onAttemptFailed says retry", async () => {
    const { clock, lifecycle, changes } = setup();
    await lifecycle.connect(async () => undefined);
    let attempts = 0;
    const loop = lifecycle.reconnect({
      reason: "lost",
      backoff: { initialDelayMs: 100, maxDelayMs: 100 },
      attempt: async () => {
        attempts++;
        throw new KilnError("KILN_AUTHENTICATION_FAILED", "refused", { retryable: false });
      },
      onAttemptFailed: () => "retry",
    });
    await loop;
    await clock.advance(1_000);
    expect(attempts).toBe(1);
    expect(lifecycle.status).toBe("failed");
    expect(changes.at(-1)).toMatchObject({ to: "failed", code: "KILN_AUTHENTICATION_FAILED" });
  });

  test("close during connect wins: the connect rejects with KILN_ABORTED, open saw the abort, status is closed", async () => {
    const { lifecycle } = setup();
    let seen: AbortSignal | undefined;
    const connecting = lifecycle.connect((signal) => {
      seen = signal;
      return new Promise(() => undefined);
    });
    let released = false;
    await lifecycle.close(async () => {
      released = true;
    });
    const error = await connecting.catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_ABORTED")).toBe(true);
    expect(seen?.aborted).toBe(true);
    expect(released).toBe(true);
    expect(lifecycle.status).toBe("closed");
    expect(lifecycle.notConnected()).toMatchObject({ code: "KILN_NOT_CONNECTED", retryable: false });
    expect(() => lifecycle.assertConnected()).toThrow(KilnError);
  });

  test("an already-aborted signal rejects without opening; one aborted mid-open rejects promptly", async () => {
    const { lifecycle } = setup();
    let opens = 0;
    const error = await lifecycle
      .connect(() => (opens++, Promise.resolve()), AbortSignal.abort())
      .catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_ABORTED")).toBe(true);
    expect(opens).toBe(0);
    const controller = new AbortController();
    const connecting = lifecycle.connect(() => new Promise(() => undefined), controller.signal);
    controller.abort();
    expect(KilnError.is(await connecting.catch((caught: unknown) => caught), "KILN_ABORTED")).toBe(true);
    expect(lifecycle.status).toBe("disconnected");
  });

  test("a connect after close opens again with a fresh lifetime signal", async () => {
    const { lifecycle } = setup();
    await lifecycle.connect(async () => undefined);
    await lifecycle.close();
    await lifecycle.close();
    expect(lifecycle.signal.aborted).toBe(true);
    await lifecycle.connect(async () => undefined);
    expect(lifecycle.signal.aborted).toBe(false);
    expect(lifecycle.status).toBe("connected");
  });

  test("a throwing listener is reported and the others still hear the change", async () => {
    const { lifecycle, changes, errors } = setup();
    const boom = new Error("listener bug");
    lifecycle.onStatusChange(() => {
      throw boom;
    });
    lifecycle.setStatus("connected");
    lifecycle.setStatus("connected");
    expect(changes).toHaveLength(1);
    expect(errors).toEqual([boom]);
  });

  test("reconnect backs off on the clock, reports reconnecting then connected, and runs onConnected", async () => {
    const { clock, lifecycle, changes } = setup();
    await lifecycle.connect(async () => undefined);
    // Up the cap: the loss follows a proven connection (no "unproven loss" in the reason).
    await clock.advance(1_000);
    const attempts: number[] = [];
    let recovered = false;
    const loop = lifecycle.reconnect({
      reason: "link lost",
      backoff: { initialDelayMs: 100, maxDelayMs: 1_000, jitter: 0.2 },
      delayFirst: true,
      attempt: async () => {
        attempts.push(clock.now());
        if (attempts.length < 3) throw new Error("refused");
      },
      connectedReason: (count) => `after ${count}`,
      onConnected: () => {
        recovered = true;
      },
    });
    expect(lifecycle.status).toBe("reconnecting");
    await clock.advance(99);
    expect(attempts).toHaveLength(0);
    await clock.advance(1);
    await clock.advance(200);
    await clock.advance(400);
    await loop;
    expect(attempts).toEqual([1_100, 1_300, 1_700]);
    expect(changes.slice(-4)).toEqual([
      { from: "connected", to: "reconnecting", reason: "link lost" },
      { from: "reconnecting", to: "reconnecting", reason: "refused" },
      { from: "reconnecting", to: "reconnecting", reason: "refused" },
      { from: "reconnecting", to: "connected", reason: "after 3" },
    ]);
    expect(recovered).toBe(true);
  });

  describe("a peer that accepts connections and drops them (adv12 M3)", () => {
    const backoff = { initialDelayMs: 100, maxDelayMs: 1_000, jitter: 0 };

    /** Loses the connection `losses` times; each reconnect succeeds at once; returns when each attempt ran. */
    async function flap(
      proofNeedsAnswer: boolean,
      losses: number,
      between: (lifecycle: ConnectionLifecycle, clock: SimulatedClock) => Promise<void>,
      unprovenLoss = false,
      provenAfterMs?: number,
    ): Promise<number[]> {
      const clock = new SimulatedClock({ start: 0 });
      const lifecycle = new ConnectionLifecycle({ name: "test", clock, random: () => 0, proofNeedsAnswer });
      await lifecycle.connect(async () => undefined);
      const attempts: number[] = [];
      for (let loss = 0; loss < losses; loss++) {
        await between(lifecycle, clock);
        const loop = lifecycle.reconnect({
          reason: "closed by peer",
          backoff,
          delayFirst: true,
          unprovenLoss,
          ...(provenAfterMs === undefined ? {} : { provenAfterMs }),
          attempt: async () => {
            attempts.push(clock.now());
          },
        });
        while (lifecycle.status !== "connected") await clock.advance(10);
        await loop;
      }
      return attempts;
    }

    test("connections that never answer: each reconnect waits one backoff step longer per loss in the window", async () => {
      const attempts = await flap(true, 6, async () => undefined);
      const waits = attempts.map((at, index) => at - (index === 0 ? 0 : attempts[index - 1]!));
      // Losses at 0, 100, 300, 700, 1_500, 1_700 ms; the fifth and sixth count only the losses of the last 1 s (the
      // cap): before amendment fix13g a loss before any answer counted until a connection proved itself (adv13f F1:
      // a gateway that booted for 8 s kept a link cut every 15 s at 30 % up).
      expect(waits).toEqual([100, 200, 400, 800, 200, 200]);
    });

    test("connections that answer once but drop before one backoff step also back off", async () => {
      const attempts = await flap(true, 4, async (lifecycle, clock) => {
        lifecycle.answered();
        await clock.advance(50);
      });
      const waits = attempts.map((at, index) => at - (index === 0 ? 50 : attempts[index - 1]! + 50));
      expect(waits).toEqual([100, 200, 400, 800]);
    });

    test("a connection up the window (the cap) leaves no loss counted, whether it answered or not", async () => {
      const attempts = await flap(true, 4, async (lifecycle, clock) => {
        lifecycle.answered();
        await clock.advance(1_000);
      });
      const waits = attempts.map((at, index) => at - (index === 0 ? 1_000 : attempts[index - 1]! + 1_000));
      expect(waits).toEqual([100, 100, 100, 100]);
      const silent = await flap(true, 3, async (_lifecycle, clock) => clock.advance(1_000));
      expect(silent.map((at, index) => at - (index === 0 ? 1_000 : silent[index - 1]! + 1_000))).toEqual([
        100, 100, 100,
      ]);
    });

    test("without proofNeedsAnswer, staying up the cap is the proof (an OPC UA session, an MQTT CONNACK)", async () => {
      const quick = await flap(false, 3, async () => undefined);
      expect(quick.map((at, index) => at - (index === 0 ? 0 : quick[index - 1]!))).toEqual([100, 200, 400]);
      const stable = await flap(false, 3, async (_lifecycle, clock) => clock.advance(1_000));
      expect(stable.map((at, index) => at - (index === 0 ? 1_000 : stable[index - 1]! + 1_000))).toEqual([
        100, 100, 100,
      ]);
    });

    test("connections up longer than one step but shorter than the cap still back off (issue 13 MEDIUM-2: before, one step proved them)", async () => {
      const flapping = await flap(false, 6, async (_lifecycle, clock) => clock.advance(300));
      // Losses at 300, 700, 1_200, 1_900, 2_400, 2_900 ms: each waits one step per earlier loss in the last
      // 1 s (the cap), not the first step every time.
      expect(flapping.map((at, index) => at - (index === 0 ? 300 : flapping[index - 1]! + 300))).toEqual([
        100, 200, 400, 200, 200, 200,
      ]);
    });

    test("provenAfterMs sets the period that proves a connection and the window of losses counted (sibling: shorter than the cap)", async () => {
      const proven = await flap(false, 3, async (_lifecycle, clock) => clock.advance(300), false, 300);
      expect(proven.map((at, index) => at - (index === 0 ? 300 : proven[index - 1]! + 300))).toEqual([100, 100, 100]);
      // Losses at 1_000, 2_100, 3_300 ms with a 2 s window: the third counts only the second.
      const longer = await flap(false, 3, async (_lifecycle, clock) => clock.advance(1_000), false, 2_000);
      expect(longer.map((at, index) => at - (index === 0 ? 1_000 : longer[index - 1]! + 1_000))).toEqual([
        100, 200, 200,
      ]);
    });

    test("connectionLost(): a library's own repair of connections lost before they proved themselves waits the growing backoff; a proven one resets it (issue 13 MEDIUM-2)", async () => {
      const clock = new SimulatedClock({ start: 0 });
      const lifecycle = new ConnectionLifecycle({ name: "test", clock, random: () => 0 });
      const changes: DriverStatusChange[] = [];
      lifecycle.onStatusChange((change) => changes.push(change));
      await lifecycle.connect(async () => undefined);
      const waits: number[] = [];
      for (let loss = 0; loss < 6; loss++) {
        await clock.advance(200);
        waits.push(lifecycle.connectionLost({ reason: "session closed by the server", backoff }));
        expect(lifecycle.status).toBe("reconnecting");
        // The library repaired it.
        lifecycle.setStatus("connected", "repaired");
      }
      // Losses every 200 ms: the sixth (at 1_200 ms) no longer counts the first, out of the 1 s window.
      expect(waits).toEqual([0, 100, 200, 400, 800, 800]);
      expect(changes.filter((change) => change.to === "reconnecting").map((change) => change.reason)).toContain(
        "session closed by the server (lost 0.2 s after it was established; loss 3 in the last 1 s: the repair waits 200 ms longer)",
      );
      // Up the cap: proven; its loss is repaired at once again, with the plain reason.
      await clock.advance(1_000);
      expect(lifecycle.connectionLost({ reason: "connection lost", backoff })).toBe(0);
      expect(lifecycle.reason).toBe("connection lost");
      // Not connected: nothing counted.
      expect(lifecycle.connectionLost({ reason: "again", backoff })).toBe(0);
      expect(lifecycle.reason).toBe("connection lost");
    });

    test("connectionLost() then reconnect() (the library gave up its repair): the loop goes on from the step reached", async () => {
      const clock = new SimulatedClock({ start: 0 });
      const lifecycle = new ConnectionLifecycle({ name: "test", clock, random: () => 0 });
      await lifecycle.connect(async () => undefined);
      for (let loss = 0; loss < 3; loss++) {
        await clock.advance(50);
        lifecycle.connectionLost({ reason: "lost", backoff });
        lifecycle.setStatus("connected", "repaired");
      }
      await clock.advance(50);
      expect(lifecycle.connectionLost({ reason: "lost", backoff })).toBe(400);
      const attempts: number[] = [];
      const start = clock.now();
      const loop = lifecycle.reconnect({
        reason: "repair failed",
        backoff,
        delayFirst: true,
        attempt: async () => {
          attempts.push(clock.now() - start);
        },
      });
      while (lifecycle.status !== "connected") await clock.advance(10);
      await loop;
      // Step 3 was reached (400 ms): the loop's first attempt waits step 4.
      expect(attempts).toEqual([800]);
    });

    test("unprovenLoss: the reason says the loss proves nothing; it counts in the window like any other (amendment fix13g)", async () => {
      const taken = await flap(false, 6, async (_lifecycle, clock) => clock.advance(700), true);
      // Losses at 700, 1_500, 2_400, 3_300 ms...: each counts the one before it (within 1 s).
      expect(taken.map((at, index) => at - (index === 0 ? 700 : taken[index - 1]! + 700))).toEqual([
        100, 200, 200, 200, 200, 200,
      ]);
    });

    test("repaired(): a loss while the driver reconciles a connection its library repaired counts (adv13f F5); without it, it is not counted", async () => {
      const clock = new SimulatedClock({ start: 0 });
      const lifecycle = new ConnectionLifecycle({ name: "test", clock, random: () => 0 });
      await lifecycle.connect(async () => undefined);
      const waits: number[] = [];
      for (let loss = 0; loss < 4; loss++) {
        await clock.advance(100);
        // Lost before the driver reported connected again (a Read of its reconciliation broke the channel).
        waits.push(lifecycle.connectionLost({ reason: "connection lost", backoff }));
        await clock.advance(100);
        lifecycle.repaired();
      }
      expect(waits).toEqual([0, 100, 200, 400]);
      expect(lifecycle.status).toBe("reconnecting");
      expect(lifecycle.reason).toMatch(/loss 3 in the last 1 s: the repair waits 200 ms longer|loss 4 in the last 1 s/);
      // Sibling: two reports of one loss (no repair between) count once.
      await clock.advance(100);
      expect(lifecycle.connectionLost({ reason: "connection lost", backoff })).toBe(800);
      expect(lifecycle.connectionLost({ reason: "session closed", backoff })).toBe(0);
    });

    test("the window is on the monotonic clock: a wall-clock step back an hour does not keep old losses counted (adv13f F3)", async () => {
      const clock = new SimulatedClock({ start: 0 });
      const lifecycle = new ConnectionLifecycle({ name: "test", clock, random: () => 0 });
      await lifecycle.connect(async () => undefined);
      const waits: number[] = [];
      for (let loss = 0; loss < 3; loss++) {
        await clock.advance(100);
        waits.push(lifecycle.connectionLost({ reason: "lost", backoff }));
        lifecycle.setStatus("connected", "repaired");
      }
      clock.stepWall(-3_600_000);
      await clock.advance(1_500);
      waits.push(lifecycle.connectionLost({ reason: "lost", backoff }));
      expect(waits).toEqual([0, 100, 200, 0]);
    });
  });

  describe("losses judged by their count in a window, not by one connection's life (issue 13, adv13zb F1)", () => {
    // The OPC UA defaults of the probe that found it: 1 s first step, doubling, 20 s cap (= the window).
    const backoff = { initialDelayMs: 1_000, maxDelayMs: 20_000, jitter: 0 };

    /**
     * Runs `durationMs` of simulated time: each connection is lost at `lossAt(connectedAt)` and reopened by a
     * `reconnect()` loop whose attempts succeed. Returns when each connection came up and went down.
     */
    async function run(
      lossAt: (connectedAt: number) => number,
      durationMs: number,
    ): Promise<{ up: number[]; down: number[] }> {
      const clock = new SimulatedClock({ start: 0 });
      const lifecycle = new ConnectionLifecycle({ name: "test", clock, random: () => 0 });
      await lifecycle.connect(async () => undefined);
      const up = [0];
      const down: number[] = [];
      while (clock.now() < durationMs) {
        await clock.advance(lossAt(up.at(-1)!) - clock.now());
        down.push(clock.now());
        const loop = lifecycle.reconnect({
          reason: "link lost",
          backoff,
          delayFirst: true,
          attempt: async () => undefined,
        });
        while (lifecycle.status !== "connected") await clock.advance(50);
        await loop;
        up.push(clock.now());
      }
      return { up, down };
    }

    test("a link cut for a moment every 15 s keeps short waits and stays up (before: waits grew to the 20 s cap, ~30 % up)", async () => {
      const { up, down } = await run((connectedAt) => (Math.floor(connectedAt / 15_000) + 1) * 15_000, 600_000);
      const waits = down.map((at, index) => up[index + 1]! - at);
      expect(Math.max(...waits)).toBeLessThanOrEqual(2_000);
      const downFor = waits.reduce((sum, wait) => sum + wait, 0);
      expect(1 - downFor / up.at(-1)!).toBeGreaterThanOrEqual(0.85);
    });

    test("sibling: a peer dropping every connection 120 ms after it came up gets at most 5 connections in any 20 s, about one per 8 s in the long run", async () => {
      const { up } = await run((connectedAt) => connectedAt + 120, 600_000);
      // Steps 1, 2, 4, 8 s fit in the window, 16 s more do not: at most 5 bring-ups in any 20 s.
      const most = Math.max(...up.map((at) => up.filter((other) => other >= at && other < at + 20_000).length));
      expect(most).toBeLessThanOrEqual(5);
      const perConnection = up.at(-1)! / (up.length - 1);
      expect(perConnection).toBeGreaterThanOrEqual(5_000);
      // Before fix13c: one every ~1.1 s (the first step each time).
    });
  });

  test("each failed reconnect attempt reports its own reason and code, not the first one (issue 13, fault 2)", async () => {
    const { clock, lifecycle, changes } = setup();
    await lifecycle.connect(async () => undefined);
    await clock.advance(100);
    const failures = [
      new Error("connect ECONNREFUSED 127.0.0.1:4840"),
      new KilnError(
        "KILN_CONNECTION_FAILED",
        "The certificate of the server is not trusted (BadCertificateUntrusted).",
      ),
    ];
    let attempts = 0;
    const loop = lifecycle.reconnect({
      reason: "connection lost",
      backoff: { initialDelayMs: 100, maxDelayMs: 100, jitter: 0 },
      attempt: async () => {
        const failure = failures[attempts++];
        if (failure) throw failure;
      },
    });
    await clock.advance(0);
    expect(lifecycle.reason).toBe("connect ECONNREFUSED 127.0.0.1:4840");
    await clock.advance(100);
    expect(lifecycle.reason).toMatch(/not trusted/);
    await clock.advance(100);
    await loop;
    expect(changes.slice(-4)).toEqual([
      { from: "connected", to: "reconnecting", reason: "connection lost" },
      { from: "reconnecting", to: "reconnecting", reason: "connect ECONNREFUSED 127.0.0.1:4840" },
      {
        from: "reconnecting",
        to: "reconnecting",
        reason: "The certificate of the server is not trusted (BadCertificateUntrusted).",
        code: "KILN_CONNECTION_FAILED",
      },
      { from: "reconnecting", to: "connected", reason: "reconnected" },
    ]);
    expect(lifecycle.reason).toBe("reconnected");
    // Sibling: outside reconnecting a failed attempt changes nothing.
    lifecycle.attemptFailed(new Error("late"));
    expect(changes.at(-1)!.reason).toBe("reconnected");
    expect(lifecycle.reason).toBe("reconnected");
  });

  test("reconnect stops on close, and when told to stop (status disconnected)", async () => {
    const { clock, lifecycle } = setup();
    await lifecycle.connect(async () => undefined);
    let attempts = 0;
    const backoff = { initialDelayMs: 100, maxDelayMs: 100 };
    const loop = lifecycle.reconnect({
      reason: "lost",
      backoff,
      attempt: async () => {
        attempts++;
        throw new Error("no");
      },
    });
    await lifecycle.close();
    await loop;
    await clock.advance(1_000);
    expect(lifecycle.status).toBe("closed");
    expect(attempts).toBe(1);

    const other = setup();
    await other.lifecycle.connect(async () => undefined);
    await other.lifecycle.reconnect({
      reason: "lost",
      backoff,
      attempt: () => Promise.reject(new Error("no serial port")),
      onAttemptFailed: () => "stop",
    });
    expect(other.lifecycle.status).toBe("disconnected");
    expect(other.changes.at(-1)?.reason).toBe("no serial port");
  });

  test("whenConnected resolves on the next connected and rejects when reconnecting stops", async () => {
    const { lifecycle } = setup();
    lifecycle.setStatus("reconnecting");
    const waiting = lifecycle.whenConnected();
    lifecycle.setStatus("connected");
    await waiting;
    lifecycle.setStatus("reconnecting");
    const failing = lifecycle.whenConnected();
    lifecycle.setStatus("disconnected");
    expect(KilnError.is(await failing.catch((caught: unknown) => caught), "KILN_CONNECTION_FAILED")).toBe(true);
    lifecycle.setStatus("reconnecting");
    const controller = new AbortController();
    const aborted = lifecycle.whenConnected(controller.signal);
    controller.abort();
    expect(KilnError.is(await aborted.catch((caught: unknown) => caught), "KILN_ABORTED")).toBe(true);
  });

  test("setStatus after close is refused: a late event of the old connection does not bring it back", async () => {
    const { lifecycle, changes } = setup();
    await lifecycle.connect(async () => undefined);
    await lifecycle.close();
    const count = changes.length;
    lifecycle.setStatus("connected", "late event");
    lifecycle.setStatus("disconnected", "late drop");
    expect(lifecycle.status).toBe("closed");
    expect(changes.length).toBe(count);
    await lifecycle.connect(async () => undefined); // only connect() reopens it
    expect(lifecycle.status).toBe("connected");
  });

  test("connect during close waits for the close, then opens anew: status and connections agree", async () => {
    const { lifecycle, changes } = setup();
    let open = 0;
    await lifecycle.connect(async () => void open++);
    const releasing = deferred();
    const closing = lifecycle.close(async () => {
      await releasing.promise;
      open--;
    });
    const connecting = lifecycle.connect(async () => void open++);
    releasing.resolve();
    await closing;
    await connecting;
    expect(lifecycle.status).toBe("connected");
    expect(open).toBe(1);
    expect(changes.map((change) => change.to)).toEqual([
      "connecting",
      "connected",
      "closed",
      "connecting",
      "connected",
    ]);
  });

  test("a release that throws: close ends closed and rejects with a typed error carrying the cause; a second close resolves", async () => {
    const { lifecycle } = setup();
    await lifecycle.connect(async () => undefined);
    const cause = new Error("socket already gone");
    const error = await lifecycle.close(() => Promise.reject(cause)).catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_CONNECTION_FAILED") && error.cause === cause && !error.retryable).toBe(true);
    expect(lifecycle.status).toBe("closed");
    await expect(lifecycle.close()).resolves.toBeUndefined();
  });

  test("a plain Error from an open attempt is wrapped as a retryable KILN_CONNECTION_FAILED with the cause", async () => {
    const { lifecycle } = setup();
    const cause = new Error("ECONNREFUSED");
    const error = await lifecycle.connect(() => Promise.reject(cause)).catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_CONNECTION_FAILED") && error.retryable && error.cause === cause).toBe(true);
    expect(lifecycle.status).toBe("disconnected");
  });

  test("reconnect without a clock option runs on the system clock; a nonsensical backoff is KILN_VALIDATION and starts nothing", async () => {
    const lifecycle = new ConnectionLifecycle({ name: "no-clock", random: () => 0 });
    await lifecycle.connect(async () => undefined);
    lifecycle.setStatus("disconnected", "drop");
    let attempts = 0;
    const attempt = async (): Promise<void> => void attempts++;
    const invalid = { initialDelayMs: Number.NaN, maxDelayMs: -1 };
    expect(() => lifecycle.reconnect({ reason: "drop", backoff: invalid, attempt })).toThrow(KilnValidationError);
    expect(attempts).toBe(0);
    expect(lifecycle.status).toBe("disconnected");
    await lifecycle.reconnect({ reason: "drop", backoff: { initialDelayMs: 1, maxDelayMs: 1 }, attempt });
    expect(attempts).toBe(1);
    expect(lifecycle.status).toBe("connected");
    await lifecycle.close();
  });
});
