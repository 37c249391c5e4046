import { describe, expect, test } from "vitest";
import { KilnValidationError } from "../domain/errors";
import { SimulatedClock } from "../memory/simulated-clock";
import { EndpointHealth } from "./endpoint-health";

describe("EndpointHealth", () => {
  const setup = () => {
    const clock = new SimulatedClock({ start: 1_000_000 });
    const health = new EndpointHealth({
      clock,
      offlineAfter: 3,
      probeBackoff: { initialDelayMs: 1_000, maxDelayMs: 4_000, jitter: 0 },
      random: () => 0,
    });
    return { clock, health };
  };

  test("an endpoint goes offline after N failures in a row, and online after one success", async () => {
    const { clock, health } = setup();
    expect(health.failure("unit 1", new Error("timeout"))).toBe("online");
    expect(health.failure("unit 1", new Error("timeout"))).toBe("online");
    await clock.advance(10);
    expect(health.failure("unit 1", new Error("timed out again"))).toBe("offline");
    expect(health.state("unit 2")).toBe("online");
    expect(health.snapshot()).toEqual([
      {
        endpoint: "unit 1",
        state: "offline",
        consecutiveFailures: 3,
        lastError: "timed out again",
        lastFailureAt: 1_000_010,
        nextProbeAt: 1_001_010,
      },
    ]);
    health.success("unit 1");
    expect(health.state("unit 1")).toBe("online");
    expect(health.snapshot()[0]).toMatchObject({ consecutiveFailures: 0, lastSuccessAt: 1_000_010 });
    expect(health.snapshot()[0]?.nextProbeAt).toBeUndefined();
  });

  test("get(endpoint) is that endpoint's entry of snapshot(), undefined for one never seen", () => {
    const { health } = setup();
    health.failure("unit 2", new Error("timeout"));
    health.success("unit 1");
    expect(health.get("unit 3")).toBeUndefined();
    expect(health.get("unit 2")).toEqual(health.snapshot()[1]);
    expect(health.get("unit 1")).toEqual(health.snapshot()[0]);
    expect(health.get("unit 2")).toMatchObject({ state: "online", consecutiveFailures: 1, lastError: "timeout" });
  });

  test("a success in between resets the count", () => {
    const { health } = setup();
    health.failure("unit 1", "x");
    health.failure("unit 1", "x");
    health.success("unit 1");
    expect(health.failure("unit 1", "x")).toBe("online");
  });

  test("an offline endpoint is probed on the backoff, further apart after each failed probe", async () => {
    const { clock, health } = setup();
    for (let i = 0; i < 3; i++) health.failure("unit 7", "timeout");
    expect(health.shouldProbe("unit 7")).toBe(false);
    expect(health.shouldProbe("unit 8")).toBe(true);
    await clock.advance(1_000);
    expect(health.shouldProbe("unit 7")).toBe(true);
    health.failure("unit 7", "timeout");
    expect(health.snapshot()[0]?.nextProbeAt).toBe(clock.now() + 2_000);
    health.failure("unit 7", "timeout");
    health.failure("unit 7", "timeout");
    expect(health.snapshot()[0]?.nextProbeAt).toBe(clock.now() + 4_000);
  });

  test("a wall-clock step back does not postpone the probe of an offline endpoint", async () => {
    const { clock, health } = setup();
    for (let index = 0; index < 3; index++) health.failure("unit 1", new Error("timeout"));
    clock.stepWall(-3_600_000);
    await clock.advance(999);
    expect(health.shouldProbe("unit 1")).toBe(false);
    await clock.advance(1);
    expect(health.shouldProbe("unit 1")).toBe(true);
  });

  test("rejects a nonsensical threshold", () => {
    expect(() => new EndpointHealth({ clock: new SimulatedClock(), offlineAfter: 0 })).toThrow(KilnValidationError);
    const probeBackoff = { initialDelayMs: Number.NaN, maxDelayMs: -1 };
    expect(() => new EndpointHealth({ clock: new SimulatedClock(), probeBackoff })).toThrow(KilnValidationError);
  });
});
