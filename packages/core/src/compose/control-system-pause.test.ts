import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { defineTags } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import { auditTrailAfterStop, simulatedSystem } from "../../test/support/simulated-system";

const tags = defineTags({
  "valve.tma": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
});
const admin = { id: "ada", roles: ["admin"] };
const operator = { id: "olga", roles: ["operator"] };
const endless = { name: "r", version: 1, steps: [{ loop: { count: 100_000, steps: [{ wait: { durationMs: 10 } }] } }] };

async function build(maxEntries?: number) {
  const parts = simulatedSystem({
    tags,
    scanGroups: { fast: { periodMs: 50 } },
    ...(maxEntries === undefined ? {} : { audit: { backlog: { maxEntries } } }),
    storePolicies: { audit: { timeoutMs: 1_000, retry: { maxAttempts: 1 } } },
  });
  await parts.system.start();
  await parts.clock.advance(100);
  return parts;
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  return promise.then(
    () => "ok",
    (error: { code?: string }) => error.code,
  );
}

describe("a pause or resume that changes nothing is refused, not recorded allowed (issue 15, second review)", () => {
  test("pausing a paused process and resuming a running one are denied KILN_INVALID_TRANSITION", async () => {
    const parts = await build();
    const { system, clock } = parts;
    await system.startRecipe(admin, endless);
    const pause = system.pauseProcess(operator);
    await clock.advance(20);
    await pause;
    expect(await codeOf(system.pauseProcess(operator))).toBe("KILN_INVALID_TRANSITION");
    const resume = system.resumeProcess(operator);
    await clock.advance(20);
    await resume;
    expect(await codeOf(system.resumeProcess(operator))).toBe("KILN_INVALID_TRANSITION");
    await system.abortProcess(operator);
    const trail = await auditTrailAfterStop(parts);
    expect(
      trail.filter((entry) => entry.action !== "recipe.start").map((entry) => [entry.action, entry.outcome]),
    ).toEqual([
      ["recipe.pause", "allowed"],
      ["recipe.pause", "denied"],
      ["recipe.resume", "allowed"],
      ["recipe.resume", "denied"],
      ["recipe.abort", "allowed"],
    ]);
  });

  test("a flood of pauses during an audit outage keeps the backlog within maxEntries", async () => {
    const { system, store, clock } = await build(5);
    await system.startRecipe(admin, endless);
    const pause = system.pauseProcess(operator);
    await clock.advance(20);
    await pause;
    let backlog = 0;
    system.bus.on(
      "audit-record-fail",
      (event: KilnEvents["audit-record-fail"]) => void (backlog = Math.max(backlog, event.backlog)),
    );
    const record = store.audit.record.bind(store.audit);
    let down = true;
    store.audit.record = (entry) =>
      down ? Promise.reject(new KilnError("KILN_STORE_ERROR", "down", { retryable: true })) : record(entry);
    const results = [];
    for (let index = 0; index < 200; index++) results.push(await codeOf(system.pauseProcess(operator)));
    expect(new Set(results)).toEqual(new Set(["KILN_INVALID_TRANSITION"]));
    expect(backlog).toBeLessThanOrEqual(5);
    down = false;
    await system.abortProcess(operator);
    await system.stop();
  });
});
