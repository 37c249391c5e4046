import { describe, expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import type { AuditEntry } from "../ports/audit-log";
import type { RecipeInput } from "../recipes/recipe-schema";
import { auditTrailAfterStop, simulatedSystem } from "../../test/support/simulated-system";

// Adversarial review 15s, F4: the trail said `allowed` for commands that did nothing. Checks that
// can be made before the commit are made before it (a process id already used), and a failure
// after the commit (a transition an abort raced, a device refusal) is an entry of its own naming
// the `allowed` one.

const tags = defineTags({
  "valve.tma": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, scanGroup: "fast" },
});
const admin = { id: "ada", roles: ["admin"] };
const operator = { id: "olga", roles: ["operator"] };
const short: RecipeInput = { name: "short", version: 1, steps: [{ set: { tag: "heater.setpoint", value: 10 } }] };
const long: RecipeInput = {
  name: "long",
  version: 1,
  steps: Array.from({ length: 20 }, () => ({ wait: { durationMs: 100 } })),
};

async function build() {
  const parts = simulatedSystem({
    tags,
    scanGroups: { fast: { periodMs: 50 } },
    authorization: { operatorWritableTags: ["heater.*", "valve.*"] },
    machine: { safeState: [{ tag: "valve.tma", value: false }] },
  });
  await parts.system.start();
  await parts.clock.advance(100);
  return parts;
}

const codeOf = (promise: Promise<unknown>): Promise<string> =>
  promise.then(
    () => "ok",
    (error: { code?: string }) => error.code ?? String(error),
  );

/** The entries of one action, each with the outcome of what follows it (its `:fail`/`:refusal` entry), if any. */
function outcomes(trail: readonly AuditEntry[], action: string): string[] {
  const mine = trail.filter((entry) => entry.action === action);
  return mine
    .filter((entry) => entry.refersTo === undefined)
    .map((entry) => {
      const after = mine.filter((follow) => follow.refersTo === entry.id).map((follow) => follow.outcome);
      return [entry.outcome, ...after].join(" then ");
    });
}

describe("a start that cannot use its process id is refused before its entry (review 15s, F4)", () => {
  test("startRecipe with the id of a finished process: KILN_VALIDATION (processId), recorded denied, nothing written", async () => {
    const parts = await build();
    const { system, plc, clock } = parts;
    const first = await system.startRecipe(operator, short, { processId: "lot-1" });
    await clock.advance(100);
    expect((await first.finished).status).toBe("completed");
    const writes = plc.writes.length;
    const reuse = system.startRecipe(operator, short, { processId: "lot-1" });
    await expect(reuse).rejects.toMatchObject({ code: "KILN_VALIDATION", message: expect.stringMatching(/processId/) });
    expect(plc.writes).toHaveLength(writes);
    const trail = await auditTrailAfterStop(parts);
    expect(outcomes(trail, "recipe.start")).toEqual(["allowed", "denied"]);
  });

  test("startSavedRecipe with the id of an aborted process: the same refusal", async () => {
    const parts = await build();
    const { system, clock } = parts;
    await system.saveRecipe(admin, short);
    const first = await system.startRecipe(admin, long, { processId: "lot-2" });
    await system.abortProcess(admin);
    await clock.advance(100);
    expect((await first.finished).status).toBe("aborted");
    expect(await codeOf(system.startSavedRecipe(operator, "short", 1, { processId: "lot-2" }))).toBe("KILN_VALIDATION");
    const trail = await auditTrailAfterStop(parts);
    expect(outcomes(trail, "recipe.start")).toEqual(["allowed", "denied"]);
  });
});

describe("a failure after the commit is an entry of its own naming the allowed one (review 15s, F4)", () => {
  test("resume racing an abort: the caller gets KILN_INVALID_TRANSITION and the trail says the resume was allowed, then denied", async () => {
    const parts = await build();
    const { system, clock } = parts;
    const process = await system.startRecipe(operator, long, { processId: "lot-3" });
    const pause = system.pauseProcess(operator);
    await clock.advance(200);
    await pause;
    expect(process.status).toBe("paused");
    // Resume is queued behind its audit entry; the abort acts at once, meanwhile.
    const results: string[] = [];
    const both = Promise.all([
      codeOf(system.resumeProcess(operator)),
      codeOf(system.abortProcess(admin, "stop the lot")),
    ]).then((codes) => results.push(...codes));
    for (let step = 0; step < 50 && results.length === 0; step++) await clock.advance(10);
    await both;
    expect(results).toEqual(["KILN_INVALID_TRANSITION", "ok"]);
    const trail = await auditTrailAfterStop(parts);
    expect(outcomes(trail, "recipe.resume")).toEqual(["allowed then denied"]);
    const follow = trail.find((entry) => entry.action === "recipe.resume" && entry.refersTo !== undefined)!;
    expect(follow.id).toBe(`${follow.refersTo}:fail`);
    expect(follow.reason).toMatch(/^KILN_INVALID_TRANSITION/);
    // The refusal names the command refused (adversarial review 15t, F4: it said "cannot pause").
    expect(follow.reason).toMatch(/it cannot resume/);
  });

  test("a tag write the device refuses after its entry: allowed, then failed naming it", async () => {
    const parts = await build();
    const { system, plc } = parts;
    plc.faults.unreachable = true;
    expect(await codeOf(system.writeTag(admin, "heater.setpoint", 42))).not.toBe("ok");
    const trail = await auditTrailAfterStop(parts);
    expect(outcomes(trail, "tag.write")).toEqual(["allowed then failed"]);
  });
});

describe("a failure entry that cannot be stored is reported truthfully (adversarial review 15t, F1)", () => {
  test("a write that reached the device and then failed, its :fail entry unstorable at stop: a plain drop saying it may have reached the device, never 'did not run'", async () => {
    const parts = await build();
    const { system, plc, store } = parts;
    const record = store.audit.record.bind(store.audit);
    let auditDown = false;
    store.audit.record = (entry) => (auditDown ? Promise.reject(new Error("audit store down")) : record(entry));
    const write = plc.write.bind(plc);
    plc.write = async (tag, value, signal) => {
      await write(tag, value, signal);
      auditDown = true;
      throw new Error("device timeout after the write (it may have applied)");
    };
    const drops: string[] = [];
    const refusalDrops: string[] = [];
    system.bus.on("audit-entry-drop", (event) => void drops.push(event.reason));
    system.bus.on("audit-refusal-drop", (event) => void refusalDrops.push(event.reason));
    expect(await codeOf(system.writeTag(admin, "heater.setpoint", 42))).not.toBe("ok");
    expect(plc.writes.filter((entry) => entry.value === 42)).toHaveLength(1);
    await system.stop();
    expect(refusalDrops).toEqual([]);
    expect(drops.some((reason) => /failed after it was allowed \(it may have reached the device\)/.test(reason))).toBe(
      true,
    );
    expect(drops.join("\n")).not.toMatch(/did not run/);
    expect(system.health().audit.refusalsDropped ?? 0).toBe(0);
    auditDown = false;
  });
});
