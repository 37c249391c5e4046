import { describe, expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import type { RecipeInput } from "../recipes/recipe-schema";
import { fittedName } from "../security/command-input";
import { auditTrailAfterStop, simulatedSystem } from "../../test/support/simulated-system";

const tags = defineTags({
  "valve.tma": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, scanGroup: "fast" },
});
const admin = { id: "ada", roles: ["admin"] };
const operator = { id: "olga", roles: ["operator"] };
const heat: RecipeInput = {
  name: "heat",
  version: 1,
  steps: [{ set: { tag: "heater.setpoint", value: 350 } }, { wait: { durationMs: 600_000 } }],
};

async function build() {
  const parts = simulatedSystem({
    tags,
    scanGroups: { fast: { periodMs: 50 } },
    authorization: { operatorWritableTags: ["heater.*"] },
    machine: { safeState: [{ tag: "valve.tma", value: false }] },
  });
  await parts.system.start();
  await parts.clock.advance(100);
  return { ...parts, audit: () => auditTrailAfterStop(parts) };
}

async function rejection(promise: Promise<unknown>): Promise<{ code?: string; message: string }> {
  return promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (error: { code?: string; message: string }) => error,
  );
}

describe("a caller-supplied process id is checked at the start; pause and abort never refuse its form (issue 15)", () => {
  test.each([
    ["longer than 256 characters", "p".repeat(300), "at most 256"],
    ["empty", "", "non-empty"],
    ["with a control character", "lot\u000042", "control, format or line-separator characters"],
    ["with a right-to-left override", "lot\u202E42", "control, format or line-separator characters"],
    ["with a zero-width space", "lot\u200B42", "control, format or line-separator characters"],
    ["not a string", 42 as unknown as string, "non-empty string"],
  ])("a processId %s is refused with KILN_VALIDATION, recorded denied, nothing written", async (_, processId, rule) => {
    const { system, plc, audit } = await build();
    const error = await rejection(system.startRecipe(operator, heat, { processId }));
    expect(error.code).toBe("KILN_VALIDATION");
    expect(error.message).toContain("processId");
    expect(error.message).toContain(rule);
    expect(system.unchecked.machine.state).toBe("idle");
    expect(plc.writes).toEqual([]);
    const entries = await audit();
    expect(entries.map((entry) => [entry.action, entry.outcome])).toEqual([["recipe.start", "denied"]]);
  });

  test("a process with a 256-character id can be paused and aborted; the safe state is written", async () => {
    const { system, plc, audit } = await build();
    const processId = "p".repeat(256);
    await system.saveRecipe(admin, heat);
    const process = await system.startRecipe(operator, heat, { processId });
    expect(process.id).toBe(processId);
    await system.pauseProcess(operator);
    await system.abortProcess(operator, "emergency");
    expect(plc.writes.map((write) => `${write.tag}=${String(write.value)}`)).toContain("valve.tma=false");
    const entries = await audit();
    expect(entries.map((entry) => [entry.action, entry.outcome, entry.target])).toEqual([
      ["recipe.save", "allowed", "heat"],
      ["recipe.start", "allowed", "heat"],
      ["recipe.pause", "allowed", processId],
      ["recipe.abort", "allowed", processId],
    ]);
  });

  test("fittedName fits a system-made name to the target rule without splitting a surrogate pair", () => {
    expect(fittedName("short")).toBe("short");
    expect(fittedName("")).toBe("(unnamed)");
    const long = fittedName("x".repeat(400));
    expect(long.length).toBe(256);
    expect(long.endsWith("…")).toBe(true);
    const emoji = fittedName("😀".repeat(200));
    expect(emoji.length).toBeLessThanOrEqual(256);
    expect(emoji.at(-2)).toBe("😀".at(-1)); // the last pair kept whole, then "…"
  });
});
