import { describe, expect, test } from "vitest";
import { quality, type Quality } from "../domain/quality";
import type { RecipeInput } from "../recipes/recipe-schema";
import { heldWriteSystem } from "../../test/support/held-write-system";
import { admin, engineer } from "../../test/support/safety-harness";

// Adversarial review 15s, M2: an interlock was permissive while its tag's current sample was
// uncertain — NaN flagged "sensor not accurate", or Kiln's own "no communication, last usable
// value" / "stale" markers while the PLC was away — so a start was accepted with the pressure
// above the interlock's setpoint. A permissive needs a known, valid state (IEC 61511): only a
// good, usable current sample is permissive. L1: the device's reason reached the refusal and
// health() unbounded and unescaped.

const FAULTED = { kiln: "error", packml: "aborted" } as const;
const RESET = { kiln: "reset", packml: "clear" } as const;
const STIR: RecipeInput = { name: "stir", version: 1, steps: [{ set: { tag: "stirrer.speed", value: 40 } }] };
const LONG: RecipeInput = {
  name: "long",
  version: 1,
  steps: [{ set: { tag: "stirrer.speed", value: 40 } }, { wait: { durationMs: 60_000 } }],
};

/** A held-write system whose pressure samples the test can replace (value and quality). */
async function build(model: "kiln" | "packml") {
  const parts = await heldWriteSystem(model, { tag: "none", value: -1 });
  const override: { sample?: { value: number; quality: Quality } } = {};
  const read = parts.plc.read.bind(parts.plc);
  parts.plc.read = async (tags, signal) =>
    (await read(tags, signal)).map((sample) =>
      sample.tag === "chamber.pressure" && override.sample !== undefined ? { ...sample, ...override.sample } : sample,
    );
  const named = (): string[] =>
    parts.system.health().problems.filter((problem) => problem.includes("interlock chamber.pressure:HIHI"));
  return { ...parts, override, named };
}

describe("an interlock is permissive only on a good, usable sample (review 15s, M2)", () => {
  for (const model of ["kiln", "packml"] as const) {
    test(`${model} (the example): uncertain NaN refuses a start, named in the refusal and health(); a good sample permits it again`, async () => {
      const parts = await build(model);
      const { system } = parts;
      await parts.scans(2);
      parts.override.sample = { value: Number.NaN, quality: quality("uncertain", "sensor not accurate", 0x40930000) };
      await parts.scans(2);
      await expect(system.startRecipe(engineer, STIR)).rejects.toMatchObject({
        code: "KILN_INVALID_TRANSITION",
        details: { holds: [{ id: "chamber.pressure:HIHI", reason: "uncertain quality: sensor not accurate" }] },
      });
      expect(parts.values("stirrer.speed")).toEqual([]);
      expect(parts.named()).toEqual([expect.stringContaining("(uncertain quality: sensor not accurate)")]);
      // Sibling: a NaN called good is shown bad (the current value table), and holds too.
      parts.override.sample = { value: Number.NaN, quality: quality("good") };
      await parts.scans(2);
      await expect(system.startRecipe(engineer, STIR)).rejects.toMatchObject({
        details: { holds: [{ reason: expect.stringMatching(/^bad quality: /) }] },
      });
      // Sibling: a good, usable sample after it makes the interlock permissive again.
      parts.override.sample = undefined;
      await parts.scans(2);
      expect(parts.named()).toEqual([]);
      const process = await system.startRecipe(engineer, STIR);
      await process.finished;
      expect(parts.values("stirrer.speed")).toEqual([40]);
      await system.stop();
    });

    for (const fault of ["unreachable", "hang"] as const) {
      test(`${model} (the example): with the PLC ${fault} and the pressure above the setpoint, Kiln's own uncertain marker refuses a start`, async () => {
        const parts = await build(model);
        const { system } = parts;
        await parts.scans(2);
        parts.plc.faults[fault] = true;
        parts.pressure.value = 25;
        await parts.scans(60);
        const refused = system.startRecipe(engineer, STIR);
        await expect(refused).rejects.toMatchObject({
          code: "KILN_INVALID_TRANSITION",
          details: { holds: [{ id: "chamber.pressure:HIHI", reason: expect.stringMatching(/^uncertain quality: /) }] },
        });
        await expect(refused).rejects.toThrow(fault === "hang" ? /stale/ : /no communication/);
        expect(parts.values("stirrer.speed")).toEqual([]);
        parts.plc.faults[fault] = false;
        await system.stop();
      });
    }

    test(`${model} (sibling): an uncertain sample while the machine runs does not trip it; a trip is not reset on one`, async () => {
      const parts = await build(model);
      const { system } = parts;
      await parts.scans(2);
      const process = await system.startRecipe(engineer, LONG);
      await parts.scans(2);
      const running = system.machineState;
      parts.override.sample = { value: Number.NaN, quality: quality("uncertain", "sensor not accurate") };
      await parts.scans(4);
      expect(system.machineState).toBe(running);
      expect(process.status).toBe("running");
      parts.override.sample = undefined;
      await parts.trip();
      expect(system.machineState).toBe(FAULTED[model]);
      await process.finished;
      parts.pressure.value = 1;
      parts.override.sample = { value: 1, quality: quality("uncertain", "last usable value") };
      await parts.scans(4);
      await expect(system.sendMachineCommand(admin, RESET[model])).rejects.toMatchObject({
        details: { holds: [{ reason: "uncertain quality: last usable value" }] },
      });
      parts.override.sample = undefined;
      await parts.scans(2);
      await system.sendMachineCommand(admin, RESET[model]);
      expect(system.machineState).not.toBe(FAULTED[model]);
      await system.stop();
    });
  }
});

describe("a device's quality reason is shown escaped and bounded (review 15s, L1)", () => {
  test("(the example) a 1 MB reason with NUL, a lone surrogate and U+202E: the refusal and health() show at most 256 escaped code units and the length", async () => {
    const parts = await build("kiln");
    const { system } = parts;
    const reason = `a\u0000b\uD800c\u202Ed${"x".repeat(1_000_000)}`;
    parts.override.sample = { value: 1, quality: quality("bad", reason) };
    await parts.scans(2);
    const refusal: unknown = await system.startRecipe(engineer, STIR).catch((error: unknown) => error);
    const shown = (refusal as { details: { holds: { reason: string }[] } }).details.holds[0]!.reason;
    expect(shown.startsWith("bad quality: a\\u{0000}b\\u{D800}c\\u{202E}dxxx")).toBe(true);
    expect(shown).toMatch(/…\(truncated, \d+ chars\)$/);
    expect(shown.length).toBeLessThan(400);
    expect((refusal as Error).message.length).toBeLessThan(1000);
    const [problem] = parts.named();
    expect(problem!.length).toBeLessThan(1000);
    for (const raw of ["\u0000", "\u202E", "\uD800"]) expect(problem).not.toContain(raw);
    // Sibling: an uncertain reason is bounded the same way; an empty one is named as missing.
    parts.override.sample = { value: 1, quality: quality("uncertain", "\u2066".repeat(5000)) };
    await parts.scans(2);
    expect(parts.named()[0]!.length).toBeLessThan(1000);
    parts.override.sample = { value: 1, quality: quality("uncertain", "") };
    await parts.scans(2);
    expect(parts.named()).toEqual([expect.stringContaining("(uncertain quality: no reason given)")]);
    await system.stop();
  });
});
