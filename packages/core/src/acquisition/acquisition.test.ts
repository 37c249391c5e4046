import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { GOOD, QualityCodes } from "../domain/quality";
import { defineTags } from "../domain/tags";
import { CurrentValueTable } from "../cvt/current-value-table";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { MemoryMetrics } from "../memory/memory-metrics";
import { SimulatedClock } from "../memory/simulated-clock";
import { SimulatedPlc } from "../memory/simulated-plc";
import { guardDriver } from "../compose/port-policies";
import { Acquisition, type ScanGroupSettings } from "./acquisition";

const tags = defineTags({
  "fast.counter": { dataType: "uint32", scanGroup: "fast" },
  "fast.pressure": { dataType: "float64", scanGroup: "fast" },
  "slow.temperature": { dataType: "float64", scanGroup: "slow" },
});

/** The device policy (applied by guardDriver, as composition does) and the reconnect backoff. */
interface TestPolicy {
  readonly timeoutMs: number;
  readonly failureThreshold: number;
  readonly recoveryTimeMs: number;
  readonly reconnect: {
    initialDelayMs: number;
    maxDelayMs: number;
    random: () => number;
    jitter?: "full" | "equal" | "none";
  };
}

const policy: TestPolicy = {
  timeoutMs: 40,
  failureThreshold: 3,
  recoveryTimeMs: 1_000,
  reconnect: { initialDelayMs: 100, maxDelayMs: 1_000, random: () => 0.5 },
};

function setup(
  options: {
    groups?: Record<string, ScanGroupSettings>;
    policy?: Partial<TestPolicy>;
    reserveRoom?: (samples: number) => { readonly ready: Promise<void> | undefined; release(): void };
    preparePlc?: (plc: SimulatedPlc) => void;
  } = {},
) {
  const clock = new SimulatedClock({ start: 0 });
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  const plc = new SimulatedPlc({
    tags,
    clock,
    sources: {
      "fast.counter": { kind: "counter" },
      "fast.pressure": { kind: "ramp", from: 0, to: 10, periodMs: 1_000 },
      "slow.temperature": { kind: "constant", value: 200 },
    },
  });
  options.preparePlc?.(plc);
  const cvt = new CurrentValueTable({ tags: tags.list(), clock });
  const metrics = new MemoryMetrics();
  const events: { type: string; event: unknown }[] = [];
  bus.tap((type, event) => void events.push({ type, event }));
  const settings = { ...policy, ...options.policy };
  const driver = guardDriver(
    plc,
    {
      timeoutMs: settings.timeoutMs,
      breaker: { failureThreshold: settings.failureThreshold, recoveryTimeMs: settings.recoveryTimeMs },
    },
    { clock, bus },
  );
  const acquisition = new Acquisition({
    driver,
    tags: tags.list(),
    groups: options.groups ?? {
      fast: { periodMs: 50, mode: "poll", staleAfterPeriods: 3 },
      slow: { periodMs: 1_000, mode: "poll", staleAfterPeriods: 3 },
    },
    cvt,
    clock,
    bus,
    metrics,
    policy: { reconnect: settings.reconnect },
    ...(options.reserveRoom ? { reserveRoom: options.reserveRoom } : {}),
  });
  const ofType = <TType extends keyof KilnEvents>(type: TType) =>
    events.filter((entry) => entry.type === type).map((entry) => entry.event as KilnEvents[TType]);
  return { clock, bus, plc, cvt, acquisition, events, ofType, metrics };
}

/**
 * A driver that reports the link lost, then returns what it had read (as a reset mid-read can):
 * the next read of scan group `group` does so, once.
 */
function resetDuringRead(): { group: string | undefined; prepare(plc: SimulatedPlc): void } {
  const reset = {
    group: undefined as string | undefined,
    prepare(plc: SimulatedPlc): void {
      const read = plc.read.bind(plc);
      plc.read = async (tags, signal) => {
        const samples = await read(tags, signal);
        if (reset.group !== undefined && tags.some((tag) => tag.scanGroup === reset.group)) {
          reset.group = undefined;
          plc.dropConnection("reset mid-read");
        }
        return samples;
      };
    },
  };
  return reset;
}

describe("Acquisition", () => {
  test("does not trust the driver: a wrong-typed value is bad, a tag missing from a read is bad, an unrequested sample is dropped and counted", async () => {
    const { clock, cvt, acquisition } = setup({
      preparePlc: (plc) => {
        const read = plc.read.bind(plc);
        plc.read = async (list, signal) => {
          const samples = await read(list, signal);
          const reply = samples
            .filter((sample) => sample.tag !== "fast.pressure")
            .map((sample) => (sample.tag === "slow.temperature" ? { ...sample, value: "200 C" } : sample));
          return [...reply, { ...samples[0]!, tag: "ghost.tag" }];
        };
      },
    });
    await acquisition.start();
    await clock.advance(100);
    expect(cvt.get("slow.temperature")).toMatchObject({ value: null, quality: { severity: "bad", code: 0x80740000 } });
    expect(cvt.get("fast.pressure")).toMatchObject({
      value: null,
      quality: { severity: "bad", code: 0x809b0000, reason: "driver returned no sample" },
    });
    expect(cvt.get("fast.counter")?.quality.severity).toBe("good");
    expect(acquisition.health().unrequestedSamples).toBe(4); // one per read: fast at 0, 50, 100; slow at 0
    await acquisition.stop();
    await acquisition.close();
  });

  test("polls each scan group on its own period with one bulk read per cycle", async () => {
    const { clock, plc, cvt, acquisition } = setup();
    await acquisition.start();
    await clock.advance(1_000);
    const health = acquisition.health();
    expect(health.link).toBe("online");
    expect(health.groups.map((group) => [group.name, group.cycles])).toEqual([
      ["fast", 21],
      ["slow", 2],
    ]);
    expect(plc.readCalls).toBe(23);
    expect(cvt.value("fast.counter")).toBe(20);
    expect(cvt.value("slow.temperature")).toBe(200);
    expect(health.groups[0]?.periodError).toMatchObject({ p50: 0, p99: 0, max: 0 });
    await acquisition.stop();
    expect(plc.status).toBe("connected"); // the owner closes it after the pipeline drained
    await acquisition.close();
    expect(plc.status).toBe("closed");
  });

  test("an overrun skips cycles, counts them and publishes scan-overrun", async () => {
    const { clock, plc, acquisition, ofType, metrics } = setup({
      groups: {
        fast: { periodMs: 50, mode: "poll", staleAfterPeriods: 0 },
        slow: { periodMs: 1_000, mode: "poll", staleAfterPeriods: 0 },
      },
      policy: { timeoutMs: 500 },
    });
    await acquisition.start();
    await clock.advance(100);
    plc.faults.latencyMs = 120;
    await clock.advance(400);
    await acquisition.stop();
    const overruns = ofType("scan-overrun").filter((event) => event.group === "fast");
    expect(overruns.length).toBeGreaterThan(0);
    expect(overruns.every((event) => event.missedCycles === 2)).toBe(true);
    const fast = acquisition.health().groups.find((group) => group.name === "fast")!;
    expect(fast.skippedCycles).toBe(overruns.reduce((sum, event) => sum + event.missedCycles, 0));
    expect(metrics.value("kiln_scan_overruns_total", { group: "fast" })).toBe(fast.skippedCycles);
    expect(metrics.summary("kiln_scan_period_error_seconds", { group: "fast" })?.count).toBe(fast.cycles);
    // Every finished read is observed once, in seconds (120 ms of latency → 0.12 s, not 120).
    const duration = metrics.summary("kiln_scan_duration_seconds", { group: "fast" })!;
    expect(duration.count).toBe(fast.readDuration.count);
    expect(duration.count).toBeGreaterThan(0);
    expect(duration.max).toBeCloseTo(fast.readDuration.max / 1000, 6);
    expect(duration.max).toBeGreaterThanOrEqual(0.12);
    expect(duration.max).toBeLessThan(1);
  });

  test("losing the PLC turns every tag uncertain, publishes plc-connection-lose, and recovers with fresh values", async () => {
    const { clock, plc, cvt, acquisition, ofType } = setup();
    await acquisition.start();
    await clock.advance(200);
    const before = cvt.value("fast.counter") as number;
    plc.faults.unreachable = true;
    await clock.advance(300);
    expect(acquisition.link).toBe("offline");
    for (const name of tags.names) {
      expect(cvt.get(name)?.quality).toMatchObject({
        severity: "uncertain",
        reason: "no communication, last usable value",
      });
    }
    expect(cvt.value("fast.counter")).toBe(before);
    expect(ofType("plc-connection-lose")).toHaveLength(1);
    plc.faults.unreachable = false;
    await clock.advance(2_000);
    expect(acquisition.link).toBe("online");
    expect(ofType("plc-connection-restore")).toHaveLength(1);
    expect(ofType("plc-connection-restore")[0]!.downtimeMs).toBeGreaterThan(0);
    expect(cvt.get("fast.counter")?.quality.severity).toBe("good");
    expect(cvt.value("fast.counter") as number).toBeGreaterThan(before);
    expect(acquisition.health().breaker.state.state).toBe("closed");
    await acquisition.stop();
  });

  test("a read that returns after its driver reported the link lost does not overwrite the loss marker (its values stay uncertain)", async () => {
    const reset = resetDuringRead();
    const { clock, cvt, acquisition, ofType } = setup({ preparePlc: reset.prepare });
    await acquisition.start();
    await clock.advance(200);
    expect(cvt.get("fast.counter")?.quality.severity).toBe("good");
    reset.group = "fast";
    await clock.advance(60);
    expect(ofType("plc-connection-lose")).toHaveLength(1);
    for (const name of tags.names) {
      expect(cvt.get(name)?.quality, name).toMatchObject({ severity: "uncertain" });
    }
    expect(acquisition.health().groups.find((group) => group.name === "fast")?.failedReads).toBeGreaterThan(0);
    await acquisition.stop();
  });

  test("a read on a second group that returns after the loss is discarded too; values flow again after the reconnect", async () => {
    const reset = resetDuringRead();
    const { clock, cvt, acquisition } = setup({ preparePlc: reset.prepare });
    await acquisition.start();
    await clock.advance(1_100);
    reset.group = "slow";
    await clock.advance(1_000);
    expect(cvt.get("slow.temperature")?.quality.severity).not.toBe("good");
    await clock.advance(3_000);
    expect(acquisition.link).toBe("online");
    expect(cvt.get("fast.counter")?.quality.severity).toBe("good");
    await acquisition.stop();
  });

  test("a hung PLC times out; consecutive failures open the breaker and take the link offline", async () => {
    const { clock, plc, acquisition, ofType } = setup();
    await acquisition.start();
    await clock.advance(100);
    plc.faults.hang = true;
    await clock.advance(500);
    expect(acquisition.link).toBe("offline");
    expect(ofType("breaker-state-change").map((event) => event.to)).toContain("open");
    expect(acquisition.health().lastError).toContain("KILN_TIMEOUT");
    plc.faults.hang = false;
    await clock.advance(3_000);
    expect(acquisition.link).toBe("online");
    await acquisition.stop();
  });

  // Issue 13, LOW (pass on fix13d): lastError kept the outage's reason after the link was back,
  // so health() showed a failure that was over.
  test("lastError is cleared once the link is back online", async () => {
    const { clock, plc, acquisition } = setup();
    await acquisition.start();
    await clock.advance(100);
    plc.faults.hang = true;
    await clock.advance(500);
    expect(acquisition.health().lastError).toContain("KILN_TIMEOUT");
    plc.faults.hang = false;
    await clock.advance(3_000);
    expect(acquisition.link).toBe("online");
    expect(acquisition.health().lastError).toBeUndefined();
    await acquisition.stop();
  });

  // Sibling: one failed read (the link stays online) is over once the same group reads again.
  test("lastError of a failed scan read is cleared by the group's next good read", async () => {
    const { clock, plc, acquisition } = setup();
    await acquisition.start();
    await clock.advance(100);
    plc.faults.hang = true;
    await clock.advance(150);
    plc.faults.hang = false;
    expect(acquisition.link).toBe("online");
    expect(acquisition.health().lastError).toContain("KILN_TIMEOUT");
    await clock.advance(300);
    expect(acquisition.health().lastError).toBeUndefined();
    await acquisition.stop();
  });

  test("reconnection backs off exponentially up to the cap", async () => {
    const { clock, plc, acquisition } = setup({
      policy: { reconnect: { initialDelayMs: 100, maxDelayMs: 800, random: () => 0.999 } },
    });
    await acquisition.start();
    plc.faults.unreachable = true;
    const attemptsAt: number[] = [];
    let last = acquisition.health().reconnectAttempts;
    for (let t = 0; t < 6_000; t += 10) {
      await clock.advance(10);
      const now = acquisition.health().reconnectAttempts;
      if (now !== last) attemptsAt.push(clock.now());
      last = now;
    }
    const gaps = attemptsAt.slice(1).map((at, index) => at - attemptsAt[index]!);
    // 0.999 × (200, 400, 800, 800...) floored, give or take the 10 ms observation step.
    expect(gaps.slice(0, 5).map((gap) => Math.round(gap / 100) * 100)).toEqual([200, 400, 800, 800, 800]);
    expect(attemptsAt[0]).toBeLessThan(300);
    await acquisition.stop();
  });

  test('reconnection honours the configured jitter ("none": the exact backoff, whatever the random source)', async () => {
    const { clock, plc, acquisition } = setup({
      policy: { reconnect: { initialDelayMs: 100, maxDelayMs: 800, random: () => 0, jitter: "none" } },
    });
    await acquisition.start();
    plc.faults.unreachable = true;
    const attemptsAt: number[] = [];
    let last = acquisition.health().reconnectAttempts;
    for (let t = 0; t < 4_000; t += 10) {
      await clock.advance(10);
      const now = acquisition.health().reconnectAttempts;
      if (now !== last) attemptsAt.push(clock.now());
      last = now;
    }
    const gaps = attemptsAt.slice(1).map((at, index) => at - attemptsAt[index]!);
    // Full jitter with random 0 would retry at once every time; "none" waits 200, 400, 800, 800.
    expect(gaps.slice(0, 4).map((gap) => Math.round(gap / 100) * 100)).toEqual([200, 400, 800, 800]);
    await acquisition.stop();
  });

  test("a PLC that is down at start does not fail start; values flow once it answers", async () => {
    const { clock, plc, cvt, acquisition, ofType } = setup();
    plc.faults.unreachable = true;
    await acquisition.start();
    expect(acquisition.link).toBe("offline");
    // Every tag has a sample at once: bad, no value, with the reason (nothing waits for the device).
    expect(cvt.snapshot()).toHaveLength(3);
    for (const sample of cvt.snapshot()) {
      expect(sample).toMatchObject({
        value: null,
        quality: { severity: "bad", code: QualityCodes.BadNoCommunication },
      });
      expect(sample.quality.reason).toContain("unreachable");
    }
    await acquisition.firstScan(1_000);
    plc.faults.unreachable = false;
    await clock.advance(1_000);
    expect(acquisition.link).toBe("online");
    expect(cvt.get("fast.counter")?.quality.severity).toBe("good");
    expect(ofType("plc-connection-restore")).toHaveLength(1);
    await acquisition.stop();
  });

  test("a non-retryable connect failure (bad credentials) rejects start", async () => {
    const { plc, acquisition } = setup();
    plc.connect = () => Promise.reject(new KilnError("KILN_AUTHENTICATION_FAILED", "bad password"));
    await expect(acquisition.start()).rejects.toMatchObject({ code: "KILN_AUTHENTICATION_FAILED" });
    expect(acquisition.link).toBe("stopped");
  });

  test("polled tags that stop updating turn uncertain after their staleness window", async () => {
    const { clock, plc, cvt, acquisition } = setup({ policy: { failureThreshold: 1_000 } });
    await acquisition.start();
    await clock.advance(100);
    plc.faults.hang = true;
    await clock.advance(100);
    expect(cvt.get("fast.pressure")?.quality.severity).toBe("good");
    await clock.advance(100);
    expect(cvt.get("fast.pressure")?.quality).toMatchObject({
      severity: "uncertain",
      reason: "stale: no update within 150 ms",
    });
    await acquisition.stop();
  });

  test("each poll sweeps its own group for staleness; another group only when its polls stopped coming", async () => {
    let hang = false;
    const { clock, cvt, acquisition } = setup({
      policy: { timeoutMs: 60_000 },
      preparePlc: (plc) => {
        const read = plc.read.bind(plc);
        plc.read = async (list, signal) => {
          if (hang && list.some((tag) => tag.scanGroup === "slow")) {
            await new Promise((_resolve, reject) => signal?.addEventListener("abort", () => reject(signal.reason)));
          }
          return read(list, signal);
        };
      },
    });
    const swept: string[] = [];
    const sweep = cvt.sweepStale.bind(cvt);
    cvt.sweepStale = (now, tags) => {
      swept.push(tags === undefined ? "every tag" : tags.includes("slow.temperature") ? "slow" : "fast");
      return sweep(now, tags);
    };
    await acquisition.start();
    await clock.advance(2_000);
    // 40 fast polls sweep the fast group; the slow group is swept by its own 2 polls (and at most
    // once more when a fast poll finds it a period overdue at the same instant).
    expect(swept.filter((group) => group === "fast").length).toBeGreaterThanOrEqual(40);
    expect(swept.filter((group) => group === "slow").length).toBeLessThanOrEqual(4);
    expect(swept).not.toContain("every tag");
    hang = true;
    // The slow group's last value came at 2,000; its reads from 3,000 on hang.
    await clock.advance(2_900);
    expect(cvt.get("slow.temperature")?.quality.severity).toBe("good");
    // The fast polls sweep it, so it turns stale within a period of its window (5,000 + 1,000).
    await clock.advance(1_100);
    expect(cvt.get("slow.temperature")?.quality).toMatchObject({
      severity: "uncertain",
      reason: "stale: no update within 3000 ms",
    });
    await acquisition.stop();
  });

  test("values held back by a blocked pipeline turn uncertain after their staleness window too", async () => {
    let blocked: Promise<void> | undefined;
    let unblock = (): void => undefined;
    const { clock, cvt, acquisition } = setup({ reserveRoom: () => ({ ready: blocked, release: () => undefined }) });
    await acquisition.start();
    await clock.advance(100);
    blocked = new Promise((resolve) => (unblock = resolve));
    await clock.advance(100);
    expect(cvt.get("fast.pressure")?.quality.severity).toBe("good");
    await clock.advance(200);
    expect(cvt.get("fast.pressure")?.quality).toMatchObject({
      severity: "uncertain",
      reason: "stale: no update within 150 ms",
    });
    // The cycles the block makes the group skip show while it lasts, not only when it ends.
    expect(acquisition.health().groups.find((group) => group.name === "fast")?.skippedCycles).toBeGreaterThanOrEqual(4);
    blocked = undefined;
    unblock();
    await clock.advance(100);
    expect(cvt.get("fast.pressure")?.quality.severity).toBe("good");
    await acquisition.stop();
  });

  test("a refused identity while reconnecting stops reconnecting after one attempt and publishes plc-connection-fail once", async () => {
    const { clock, plc, acquisition, ofType } = setup();
    await acquisition.start();
    await clock.advance(100);
    plc.faults.unreachable = true;
    await clock.advance(300);
    expect(acquisition.link).toBe("offline");
    let connects = 0;
    plc.connect = () => {
      connects++;
      return Promise.reject(new KilnError("KILN_AUTHENTICATION_FAILED", "BadUserAccessDenied", { retryable: false }));
    };
    await clock.advance(30_000);
    expect(connects).toBe(1);
    expect(ofType("plc-connection-fail")).toEqual([
      expect.objectContaining({ code: "KILN_AUTHENTICATION_FAILED", reason: "BadUserAccessDenied" }),
    ]);
    expect(acquisition.health().lastError).toBe("KILN_AUTHENTICATION_FAILED: BadUserAccessDenied");
    await acquisition.stop();
  });

  test("subscription groups receive pushed values and are re-subscribed after a reconnect", async () => {
    const { clock, plc, cvt, acquisition, ofType } = setup({
      groups: {
        fast: { periodMs: 50, mode: "subscribe", staleAfterPeriods: 3 },
        slow: { periodMs: 1_000, mode: "poll", staleAfterPeriods: 3 },
      },
    });
    await acquisition.start();
    await clock.advance(200);
    expect(acquisition.health().groups.find((group) => group.name === "fast")?.mode).toBe("subscribe");
    const readsBefore = plc.readCalls;
    expect(cvt.value("fast.counter")).toBeGreaterThan(0);
    plc.dropConnection();
    expect(acquisition.link).toBe("offline");
    expect(cvt.get("fast.counter")?.quality.severity).toBe("uncertain");
    await clock.advance(1_000);
    expect(acquisition.link).toBe("online");
    const afterReconnect = cvt.value("fast.counter") as number;
    await clock.advance(500);
    expect(cvt.value("fast.counter") as number).toBeGreaterThan(afterReconnect);
    expect(cvt.get("fast.counter")?.quality.severity).toBe("good");
    expect(ofType("plc-connection-restore")).toHaveLength(1);
    // Only the slow group and the reconnect probe read; the fast group is pushed.
    expect(plc.readCalls - readsBefore).toBeLessThan(5);
    await acquisition.stop();
  });

  test("a subscribe that completes after the link dropped is disposed, and the link reconnects (not online on a dead driver)", async () => {
    let live = 0;
    let hold: Promise<void> | undefined;
    const { clock, plc, acquisition } = setup({
      groups: {
        fast: { periodMs: 50, mode: "subscribe", staleAfterPeriods: 3 },
        slow: { periodMs: 1_000, mode: "subscribe", staleAfterPeriods: 3 },
      },
      preparePlc: (plc) => {
        const subscribe = plc.subscribe.bind(plc);
        plc.subscribe = async (...args: Parameters<typeof subscribe>) => {
          const dispose = await subscribe(...args);
          live++;
          if (args[0].some((tag) => tag.scanGroup === "slow")) await hold; // the last group subscribed

          let disposed = false;
          return () => {
            if (!disposed) live--;
            disposed = true;
            dispose();
          };
        };
      },
    });
    await acquisition.start();
    expect(live).toBe(2);
    let release!: () => void;
    hold = new Promise((resolve) => (release = resolve));
    plc.dropConnection();
    expect(live).toBe(0);
    // The reconnect subscribes; the link drops again while that subscribe is under way.
    for (let step = 0; step < 100 && live < 2; step++) await clock.advance(10);
    expect(live).toBe(2);
    plc.dropConnection();
    hold = undefined;
    release();
    await clock.advance(5_000);
    expect(plc.status).toBe("connected");
    expect(acquisition.link).toBe("online");
    expect(live).toBe(2);
    await acquisition.stop();
    expect(live).toBe(0);
  });

  test("a subscribe slower than the timeout: each late subscription is disposed when it completes, one stays alive, none after stop", async () => {
    // Every subscription the driver made, with whether its disposer was called and the callback
    // the core gave it; the first three subscribes take 150 ms against a 40 ms timeout.
    const made: { disposed: boolean; completedAt: number; disposedAt?: number; emit: () => void }[] = [];
    let calls = 0;
    const { clock, cvt, acquisition } = setup({
      groups: {
        fast: { periodMs: 50, mode: "subscribe", staleAfterPeriods: 3 },
        slow: { periodMs: 1_000, mode: "poll", staleAfterPeriods: 3 },
      },
      preparePlc: (plc) => {
        const subscribe = plc.subscribe.bind(plc);
        plc.subscribe = async (tags, options, onSamples) => {
          calls++;
          if (calls <= 3) await clock.sleep(150);
          const dispose = await subscribe(tags, options, onSamples);
          const entry = {
            disposed: false,
            completedAt: clock.now(),
            emit: () => onSamples([{ tag: "fast.counter", value: 999_999, timestamp: clock.now(), quality: GOOD }]),
          } as (typeof made)[number];
          made.push(entry);
          return () => {
            entry.disposed = true;
            entry.disposedAt ??= clock.now();
            dispose();
          };
        };
      },
    });
    const started = acquisition.start();
    await clock.advance(50);
    await started;
    expect(acquisition.link).toBe("offline"); // the first subscribe timed out
    for (let step = 0; step < 300 && acquisition.link !== "online"; step++) await clock.advance(10);
    expect(acquisition.link).toBe("online");
    await clock.advance(1_000); // every late subscribe has completed by now
    expect(calls).toBeGreaterThanOrEqual(4);
    expect(made).toHaveLength(calls);
    const late = made.filter((entry) => entry.disposed);
    expect(late).toHaveLength(calls - 1);
    for (const entry of late) expect(entry.disposedAt).toBe(entry.completedAt); // at once
    expect(made.filter((entry) => !entry.disposed)).toHaveLength(1);
    // A late subscription's callback never reaches the table, even from a driver that ignored its disposer.
    for (const entry of late) entry.emit();
    expect(cvt.value("fast.counter")).not.toBe(999_999);
    await acquisition.stop();
    expect(made.every((entry) => entry.disposed)).toBe(true);
    // After stop no callback runs into the table.
    const before = cvt.get("fast.counter");
    for (const entry of made) entry.emit();
    await clock.advance(1_000);
    expect(cvt.get("fast.counter")).toBe(before);
  });

  test("a subscribe that rejects after its timeout changes nothing more: no unhandled rejection, one subscription alive after the retry", async () => {
    let calls = 0;
    let live = 0;
    const { clock, acquisition, cvt } = setup({
      groups: {
        fast: { periodMs: 50, mode: "subscribe", staleAfterPeriods: 3 },
        slow: { periodMs: 1_000, mode: "poll", staleAfterPeriods: 3 },
      },
      preparePlc: (plc) => {
        const subscribe = plc.subscribe.bind(plc);
        plc.subscribe = async (tags, options, onSamples) => {
          calls++;
          if (calls <= 2) {
            await clock.sleep(150);
            throw new KilnError("KILN_CONNECTION_FAILED", "too many monitored items", { retryable: true });
          }
          const dispose = await subscribe(tags, options, onSamples);
          live++;
          return () => {
            live--;
            dispose();
          };
        };
      },
    });
    const started = acquisition.start();
    await clock.advance(50);
    await started;
    expect(acquisition.link).toBe("offline");
    for (let step = 0; step < 300 && acquisition.link !== "online"; step++) await clock.advance(10);
    await clock.advance(1_000); // both late rejections have come
    expect(acquisition.link).toBe("online");
    expect(calls).toBe(3);
    expect(live).toBe(1);
    expect(cvt.get("fast.counter")?.quality.severity).toBe("good");
    await acquisition.stop();
    expect(live).toBe(0);
  });

  test("a subscribe that completes after stop() is disposed at once; nothing it delivers, before or after, reaches the table; acquisition stays stopped", async () => {
    // stop() during start(): the start's subscribe is in flight (30 ms against a 40 ms timeout)
    // and completes after stop() returned. The driver calls back once while subscribing (as an
    // initial notification can arrive before the subscribe answer) and once after.
    let live = 0;
    let emit: (() => void) | undefined;
    const { clock, acquisition, cvt, plc } = setup({
      groups: {
        fast: { periodMs: 50, mode: "subscribe", staleAfterPeriods: 3 },
        slow: { periodMs: 1_000, mode: "poll", staleAfterPeriods: 3 },
      },
      preparePlc: (plc) => {
        const subscribe = plc.subscribe.bind(plc);
        plc.subscribe = async (tags, options, onSamples) => {
          emit = () => onSamples([{ tag: "fast.counter", value: 999_999, timestamp: clock.now(), quality: GOOD }]);
          await clock.sleep(30);
          emit();
          const dispose = await subscribe(tags, options, onSamples);
          live++;
          return () => {
            live--;
            dispose();
          };
        };
      },
    });
    const started = acquisition.start();
    await clock.advance(10);
    const before = cvt.get("fast.counter");
    await acquisition.stop();
    await clock.advance(100);
    await started.catch(() => undefined);
    expect(live).toBe(0);
    emit?.();
    const reads = plc.readCalls;
    await clock.advance(5_000);
    expect(cvt.get("fast.counter")).toEqual(before);
    expect(acquisition.link).toBe("stopped");
    expect(plc.readCalls).toBe(reads); // no scan group started after the stop, no reconnect loop
    expect(live).toBe(0);
  });

  test("a stop() during a slow connect ends the start there: no scan group starts, no reconnect loop", async () => {
    const { clock, acquisition, plc } = setup({
      preparePlc: (plc) => {
        const connect = plc.connect.bind(plc);
        plc.connect = async (signal) => {
          await clock.sleep(30);
          await connect(signal);
        };
      },
    });
    const started = acquisition.start();
    await clock.advance(10);
    await acquisition.stop();
    await clock.advance(100);
    await started;
    await clock.advance(5_000);
    expect(acquisition.link).toBe("stopped");
    expect(plc.readCalls).toBe(0);
  });

  test("a tag in an undefined scan group is a configuration error", () => {
    const clock = new SimulatedClock();
    const plc = new SimulatedPlc({ tags, clock });
    expect(
      () =>
        new Acquisition({
          driver: guardDriver(
            plc,
            { timeoutMs: 40, breaker: { failureThreshold: 3, recoveryTimeMs: 1_000 } },
            { clock },
          ),
          tags: tags.list(),
          groups: { fast: { periodMs: 50, mode: "poll", staleAfterPeriods: 3 } },
          cvt: new CurrentValueTable({ tags: tags.list(), clock }),
          clock,
          bus: new EventBus<KilnEvents>(),
          policy,
        }),
    ).toThrow(expect.objectContaining({ code: "KILN_VALIDATION" }));
  });
});
