import { describe, expect, test } from "vitest";
import type { RecipeInput } from "../recipes/recipe-schema";
import { heldWriteSystem } from "../../test/support/held-write-system";
import { engineer } from "../../test/support/safety-harness";

// Adversarial review 15r, M1: an interlock was evaluated on a current value whose quality was
// good but whose source timestamp had stopped advancing (the device stuck, a gateway serving a
// cached value): the repeats kept the tag "heard from", so it never went stale, and the
// permissive stayed true on a value of minutes ago. A good sample older than the tag's limit
// (the scan group's maxSourceAgeMs, here 150 ms = 3 scans) is now not permissive, and trips a
// running process.

const STIR: RecipeInput = { name: "stir", version: 1, steps: [{ set: { tag: "stirrer.speed", value: 40 } }] };
const LONG: RecipeInput = {
  name: "long",
  version: 1,
  steps: [{ set: { tag: "stirrer.speed", value: 40 } }, { wait: { durationMs: 60_000 } }],
};

/** A held-write system whose pressure's source timestamp the test can freeze (the value stays as read). */
async function build(
  model: "kiln" | "packml",
  scanGroup: { maxSourceAgeMs?: number } = { maxSourceAgeMs: 150 },
  skewMs = 0,
) {
  // `skewMs`: the device's clock runs that far from the host's, from the first read (its timestamps still advance).
  const frozen: { at?: number; skewMs: number } = { skewMs };
  const parts = await heldWriteSystem(
    model,
    { tag: "none", value: -1 },
    {
      scanGroup,
      mapRead: (sample) =>
        sample.tag !== "chamber.pressure"
          ? sample
          : { ...sample, timestamp: frozen.at !== undefined ? frozen.at : sample.timestamp + frozen.skewMs },
    },
  );
  return { ...parts, frozen };
}

describe("an interlock does not trust a good value whose source timestamp stopped (review 15r, M1)", () => {
  for (const model of ["kiln", "packml"] as const) {
    test(`${model} (the example): a frozen source timestamp refuses a start, naming the tag and its age; a fresh one permits it`, async () => {
      const parts = await build(model);
      const { system, clock } = parts;
      await parts.scans(2);
      parts.frozen.at = clock.now();
      await parts.scans(10);
      const refused = system.startRecipe(engineer, STIR);
      await expect(refused).rejects.toMatchObject({
        code: "KILN_INVALID_TRANSITION",
        details: {
          holds: [
            {
              id: "chamber.pressure:HIHI",
              reason: expect.stringMatching(
                /^stale: tag chamber\.pressure source not advanced for \d+ ms \(max 150 ms\)$/,
              ),
            },
          ],
        },
      });
      expect(parts.values("stirrer.speed")).toEqual([]);
      expect(system.health().problems.filter((problem) => problem.includes("interlock chamber.pressure:HIHI"))).toEqual(
        [expect.stringContaining("stale: tag chamber.pressure source not advanced for")],
      );
      // Sibling: once the timestamp advances again the interlock is permissive.
      parts.frozen.at = undefined;
      await parts.scans(2);
      const process = await system.startRecipe(engineer, STIR);
      await process.finished;
      expect(parts.values("stirrer.speed")).toEqual([40]);
      await system.stop();
    });

    test(`${model} (sibling): a frozen source timestamp while a process runs trips it: safe state written, machine faulted, audited`, async () => {
      const parts = await build(model);
      const { system, clock } = parts;
      await parts.scans(2);
      const from = clock.now();
      const process = await system.startRecipe(engineer, LONG);
      await parts.scans(2);
      parts.frozen.at = clock.now();
      await parts.scans(10);
      expect(system.machineState).toBe(model === "kiln" ? "error" : "aborted");
      expect(await process.finished).toMatchObject({
        status: "aborted",
        reason: expect.stringContaining("stale: tag chamber.pressure"),
      });
      expect(parts.values("heater.setpoint")).toEqual([0]);
      expect(parts.values("valve.h2o")).toEqual([false]);
      const trips = (await system.history.audit.query({ from, to: clock.now() + 1 })).filter(
        (entry) => entry.action === "machine.trip",
      );
      expect(trips).toHaveLength(1);
      expect(trips[0]!.reason).toContain("stale: tag chamber.pressure source not advanced for");
      await system.stop();
    });
  }

  test("a frozen source whose link drops more often than maxSourceAgeMs still trips (review 15g, H5: each link-loss marker counted as an advance)", async () => {
    const parts = await build("kiln", { maxSourceAgeMs: 1_000 });
    const { system, clock, plc } = parts;
    await parts.scans(2);
    const process = await system.startRecipe(engineer, LONG);
    await parts.scans(2);
    parts.frozen.at = clock.now();
    // The link drops every 700 ms (14 scans), under the 1,000 ms limit; Kiln marks the tag
    // uncertain (no communication) each time and the same frozen sample comes back after.
    let marked = 0;
    const off = system.cvt.observe("chamber.pressure", (change) => {
      if (change.sample.quality.severity === "uncertain") marked++;
    });
    for (let drop = 0; drop < 10 && system.machineState === "processing"; drop++) {
      plc.dropConnection();
      await parts.scans(14);
    }
    off();
    expect(marked).toBeGreaterThan(0);
    expect(system.machineState).toBe("error");
    expect(await process.finished).toMatchObject({
      status: "aborted",
      reason: expect.stringContaining("stale: tag chamber.pressure"),
    });
    expect(parts.values("heater.setpoint")).toEqual([0]);
    await system.stop();
  });

  test("(sibling) a marker is no news from the source: CvtChange.sourceTimestamp of a link-loss marker is the source's last", async () => {
    const parts = await build("kiln");
    const { system, plc } = parts;
    await parts.scans(2);
    const seen: { severity: string; sourceTimestamp: number; timestamp: number }[] = [];
    const off = system.cvt.observe("chamber.pressure", (change) =>
      seen.push({
        severity: change.sample.quality.severity,
        sourceTimestamp: change.sourceTimestamp,
        timestamp: change.sample.timestamp,
      }),
    );
    const before = system.cvt.get("chamber.pressure")!.timestamp;
    plc.dropConnection();
    await parts.scans(1);
    off();
    const marker = seen.find((change) => change.severity === "uncertain");
    expect(marker).toBeDefined();
    expect(marker!.sourceTimestamp).toBe(before);
    expect(marker!.timestamp).toBeGreaterThan(before);
    await system.stop();
  });

  test("(sibling) without maxSourceAgeMs (the default) a steady source timestamp holds nothing", async () => {
    const parts = await build("kiln", {});
    const { system, clock } = parts;
    await parts.scans(2);
    parts.frozen.at = clock.now();
    await parts.scans(10);
    const process = await system.startRecipe(engineer, STIR);
    await process.finished;
    expect(parts.values("stirrer.speed")).toEqual([40]);
    await system.stop();
  });
});

// Adversarial review 15c, M3: the age was the host's wall clock minus the device's source
// timestamp, two clocks: a device clock an hour behind made every fresh value look stale (starts
// refused, processes tripped), one an hour ahead made a frozen value look fresh for that hour.
// The age is now the host's monotonic time since the source last advanced.
describe("a source's age is measured on the host's clock only (review 15c, M3)", () => {
  const HOUR = 3_600_000;

  for (const skewMs of [-HOUR, HOUR]) {
    test(`(the example) a device clock ${skewMs > 0 ? "an hour ahead" : "an hour behind"}, its timestamps advancing: a start is permitted and a running process is not tripped`, async () => {
      const parts = await build("kiln", undefined, skewMs);
      const { system } = parts;
      await parts.scans(10);
      expect(system.health().problems).toEqual([]);
      const process = await system.startRecipe(engineer, LONG);
      await parts.scans(20);
      expect(system.machineState).toBe("processing");
      expect(process.status).toBe("running");
      await system.abortProcess(engineer);
      await system.stop();
    });
  }

  test("(the example) a device clock an hour ahead whose timestamp stops advancing, value constant: stale after maxSourceAgeMs, not before", async () => {
    const parts = await build("kiln", undefined, HOUR);
    const { system, clock } = parts;
    await parts.scans(2);
    parts.frozen.at = clock.now() + HOUR;
    // 100 ms after the last advance (under the 150 ms limit): still permissive.
    await parts.scans(2);
    expect(system.health().problems).toEqual([]);
    await parts.scans(4);
    await expect(system.startRecipe(engineer, STIR)).rejects.toMatchObject({
      code: "KILN_INVALID_TRANSITION",
      details: {
        holds: [
          {
            id: "chamber.pressure:HIHI",
            reason: expect.stringMatching(
              /^stale: tag chamber\.pressure source not advanced for \d+ ms \(max 150 ms\)$/,
            ),
          },
        ],
      },
    });
    await system.stop();
  });

  test("(sibling) a device clock an hour behind whose timestamp stops advancing while a process runs: tripped once, audited", async () => {
    const parts = await build("kiln", undefined, -HOUR);
    const { system, clock } = parts;
    await parts.scans(2);
    const from = clock.now();
    const process = await system.startRecipe(engineer, LONG);
    await parts.scans(2);
    parts.frozen.at = clock.now() - HOUR;
    await parts.scans(10);
    expect(system.machineState).toBe("error");
    expect(await process.finished).toMatchObject({
      status: "aborted",
      reason: expect.stringContaining("stale: tag chamber.pressure"),
    });
    const trips = (await system.history.audit.query({ from, to: clock.now() + 1 })).filter(
      (entry) => entry.action === "machine.trip",
    );
    expect(trips).toHaveLength(1);
    await system.stop();
  });
});

// Adversarial review 15f, M1: a frozen source whose quality flapped (good, uncertain, good; same
// value, same timestamp) counted each flap as an advance and never went stale. An advance is now
// a changed value or a delivered timestamp not among the source's last few: quality alone is not,
// nor a timestamp bouncing between two fixed values.
describe("only a changed value or a new timestamp is an advance (review 15f, M1)", () => {
  for (const mode of ["quality flaps", "timestamp bounces"] as const) {
    test(`${mode === "quality flaps" ? "(the example)" : "(sibling)"} a frozen source whose ${mode} trips a running process once, audited`, async () => {
      const FROZEN_AT = Date.UTC(2026, 10, 22);
      let reads = 0;
      let frozen = false;
      const parts = await heldWriteSystem(
        "kiln",
        { tag: "none", value: -1 },
        {
          scanGroup: { maxSourceAgeMs: 150 },
          mapRead: (sample) => {
            if (sample.tag !== "chamber.pressure" || !frozen) return sample;
            reads++;
            if (mode === "timestamp bounces") return { ...sample, timestamp: FROZEN_AT + (reads % 2) * 1000 };
            return {
              ...sample,
              timestamp: FROZEN_AT,
              quality:
                reads % 2 === 0 ? sample.quality : { severity: "uncertain", code: 0x40000000, reason: "flapping" },
            };
          },
        },
      );
      const { system, clock } = parts;
      await parts.scans(2);
      const from = clock.now();
      const process = await system.startRecipe(engineer, LONG);
      await parts.scans(2);
      frozen = true;
      await parts.scans(12);
      expect(system.machineState).toBe("error");
      expect(await process.finished).toMatchObject({
        status: "aborted",
        reason: expect.stringContaining("stale: tag chamber.pressure"),
      });
      const trips = (await system.history.audit.query({ from, to: clock.now() + 1 })).filter(
        (entry) => entry.action === "machine.trip",
      );
      expect(trips).toHaveLength(1);
      await system.stop();
    });
  }
});
