import { describe, expect, test } from "vitest";
import type { RecipeInput } from "../recipes/recipe-schema";
import { heldWriteSystem } from "../../test/support/held-write-system";
import { engineer } from "../../test/support/safety-harness";

// Adversarial review 15e, MEDIUM: a device clock that stepped BACK (an NTP correction, a PLC's
// clock set by hand) tripped a running process and held starts for the size of the step. The
// current value table keeps a tag's timestamps advancing, so a steady value delivered with the
// new, earlier timestamps was a "repeat" of the sample stamped before the step; the source-age
// tracker judged on that kept sample and saw nothing advance until the device's clock passed its
// old time again (an hour later for a step of an hour). A source is now alive when what the
// driver delivered changed: its timestamp (a step either way) or its value or quality. A source
// delivering the same timestamp and value still ages.

const HOUR = 3_600_000;
const STIR: RecipeInput = { name: "stir", version: 1, steps: [{ set: { tag: "stirrer.speed", value: 40 } }] };
const LONG: RecipeInput = {
  name: "long",
  version: 1,
  steps: [{ set: { tag: "stirrer.speed", value: 40 } }, { wait: { durationMs: 60_000 } }],
};

/**
 * A held-write system (interlocked HIHI on chamber.pressure, limit 150 ms = 3 scans) whose
 * pressure source the test steers: `skewMs` moves the device's clock (its timestamps still
 * advance), `frozenAt` freezes its timestamp, `wobble` makes each read's value differ a little.
 */
async function build(scanGroup: { maxSourceAgeMs?: number } = { maxSourceAgeMs: 150 }) {
  const device: { skewMs: number; frozenAt?: number; wobble: boolean; reads: number } = {
    skewMs: 0,
    wobble: false,
    reads: 0,
  };
  const parts = await heldWriteSystem(
    "kiln",
    { tag: "none", value: -1 },
    {
      scanGroup,
      mapRead: (sample) => {
        if (sample.tag !== "chamber.pressure") return sample;
        device.reads++;
        return {
          ...sample,
          value: device.wobble ? 1 + (device.reads % 2) * 0.01 : sample.value,
          timestamp: device.frozenAt ?? sample.timestamp + device.skewMs,
        };
      },
    },
  );
  return { ...parts, device };
}

describe("a device clock step neither trips nor freezes an interlock input (review 15e, MEDIUM)", () => {
  test("(the example) the device clock steps back an hour while a process runs: no trip, and starts are allowed", async () => {
    const parts = await build();
    const { system } = parts;
    await parts.scans(2);
    const process = await system.startRecipe(engineer, LONG);
    await parts.scans(2);
    parts.device.skewMs = -HOUR;
    await parts.scans(20);
    expect(system.machineState).toBe("processing");
    expect(process.status).toBe("running");
    expect(system.health().problems).toEqual([]);
    await system.abortProcess(engineer);
    await process.finished;
    await parts.scans(2);
    const next = await system.startRecipe(engineer, STIR);
    expect(await next.finished).toMatchObject({ status: "completed" });
    await system.stop();
  });

  test("(sibling) the device clock steps back an hour with no process: a start is allowed at once", async () => {
    const parts = await build();
    const { system } = parts;
    await parts.scans(2);
    parts.device.skewMs = -HOUR;
    await parts.scans(10);
    expect(system.health().problems).toEqual([]);
    const process = await system.startRecipe(engineer, STIR);
    expect(await process.finished).toMatchObject({ status: "completed" });
    await system.stop();
  });

  test("(sibling) the device clock steps forward an hour while a process runs: no trip", async () => {
    const parts = await build();
    const { system } = parts;
    await parts.scans(2);
    const process = await system.startRecipe(engineer, LONG);
    await parts.scans(2);
    parts.device.skewMs = HOUR;
    await parts.scans(20);
    expect(system.machineState).toBe("processing");
    expect(process.status).toBe("running");
    await system.abortProcess(engineer);
    await system.stop();
  });

  test("(sibling) a frozen timestamp with a changing value is a live source: no trip", async () => {
    const parts = await build();
    const { system, clock } = parts;
    await parts.scans(2);
    const process = await system.startRecipe(engineer, LONG);
    await parts.scans(2);
    parts.device.frozenAt = clock.now();
    parts.device.wobble = true;
    await parts.scans(20);
    expect(system.machineState).toBe("processing");
    expect(process.status).toBe("running");
    await system.abortProcess(engineer);
    await system.stop();
  });

  test("(sibling) the clock steps back, then timestamp and value freeze: tripped after maxSourceAgeMs", async () => {
    const parts = await build();
    const { system, clock } = parts;
    await parts.scans(2);
    const process = await system.startRecipe(engineer, LONG);
    await parts.scans(2);
    parts.device.skewMs = -HOUR;
    await parts.scans(4);
    expect(system.machineState).toBe("processing");
    parts.device.frozenAt = clock.now() - HOUR;
    await parts.scans(10);
    expect(system.machineState).toBe("error");
    expect(await process.finished).toMatchObject({
      status: "aborted",
      reason: expect.stringContaining("stale: tag chamber.pressure source not advanced for"),
    });
    await system.stop();
  });

  test("(sibling) without maxSourceAgeMs a frozen source holds nothing, after a step back too", async () => {
    const parts = await build({});
    const { system, clock } = parts;
    await parts.scans(2);
    parts.device.skewMs = -HOUR;
    await parts.scans(2);
    parts.device.frozenAt = clock.now() - HOUR;
    await parts.scans(10);
    const process = await system.startRecipe(engineer, STIR);
    expect(await process.finished).toMatchObject({ status: "completed" });
    await system.stop();
  });
});
