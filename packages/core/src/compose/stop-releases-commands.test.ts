import { describe, expect, test } from "vitest";
import {
  createControlSystem,
  defineTags,
  KilnError,
  MemoryStore,
  SimulatedPlc,
  silentLogger,
  type KilnEvents,
} from "../index";
import type { AuditEntry } from "../ports/audit-log";

// fix15aa. Without a journal a command's `allowed` entry is stored before it runs, in the audit
// writer's turn; with an audit store that never answers (its timeout 60 s) stop() gave up on the
// writer at its budget and returned, but the command offered to the store and every command
// queued behind it stayed pending until the store call timed out (60 s), for ever with a store
// without a timeout; so did a command issued during the stop (its denial's store call). Now
// stop() releases them when it gives up on the writer: each is refused (KILN_LIFECYCLE) and its
// entry counted in droppedAtStop before stop() returns.

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const admin = { id: "ada", roles: ["admin"] } as never;

async function hangingAudit() {
  const tags = defineTags({ "heater.x": { dataType: "float64", access: "readwrite", scanGroup: "fast" } });
  const store = new MemoryStore();
  let frozen = false;
  const record = store.audit.record.bind(store.audit);
  store.audit.record = (entry: AuditEntry) => (frozen ? new Promise<void>(() => undefined) : record(entry));
  const system = createControlSystem({
    machineId: "m",
    tags,
    driver: new SimulatedPlc({ tags }),
    store,
    logger: silentLogger,
    scanGroups: { fast: { periodMs: 100 } },
    logging: { drainTimeoutMs: 1_000 },
    storePolicies: { audit: { timeoutMs: 60_000 } },
  } as never);
  const drops = { entries: 0, refusals: 0 };
  system.bus.on("audit-entry-drop", (event: KilnEvents["audit-entry-drop"]) => void (drops.entries += event.count));
  system.bus.on("audit-refusal-drop", () => void drops.refusals++);
  await system.start();
  frozen = true;
  /** A tag write: when it settled (ms since `from`) and its error code, or still pending. */
  const write = (value: number, from: () => number) => {
    const outcome = { settled: undefined as number | undefined, code: "pending" };
    void system.writeTag(admin, "heater.x", value).then(
      () => Object.assign(outcome, { settled: Date.now() - from(), code: "resolved" }),
      (error: unknown) =>
        Object.assign(outcome, {
          settled: Date.now() - from(),
          code: KilnError.is(error) ? error.code : String(error),
        }),
    );
    return outcome;
  };
  return { system, drops, write };
}

describe("stop() releases the commands waiting for a hanging audit store (fix15aa)", () => {
  test("20 commands waiting for the store, two concurrent stops: every command refused before stop() returns, each counted", async () => {
    const { system, drops, write } = await hangingAudit();
    let start = Date.now();
    const outcomes = Array.from({ length: 20 }, (_, index) => write(index, () => start));
    await sleep(50);
    start = Date.now();
    const stops = await Promise.all([system.stop(), system.stop()].map((stop) => stop.then(() => Date.now() - start)));
    expect(Math.max(...stops)).toBeLessThan(6_000);
    expect(outcomes.map((outcome) => outcome.code)).toEqual(Array(20).fill("KILN_LIFECYCLE"));
    for (const outcome of outcomes) expect(outcome.settled).toBeLessThanOrEqual(Math.max(...stops));
    // The one whose intent was offered to the store: its refusal reported apart (the trail may say allowed).
    expect(drops.refusals).toBe(1);
    const audit = system.health().audit;
    expect(drops.entries).toBe(19);
    expect(audit.droppedAtStop).toBe(20);
    expect(audit.droppedWhileStopped ?? 0).toBe(0);
  }, 20_000);

  test("a command issued while stop() is in progress (its denial waits for the store): refused, settled by the time stop() returns", async () => {
    const { system, drops, write } = await hangingAudit();
    let start = Date.now();
    const first = write(1, () => start);
    await sleep(50);
    start = Date.now();
    const stopping = system.stop();
    await sleep(100);
    const during = write(2, () => start);
    await stopping;
    const stoppedAt = Date.now() - start;
    for (const outcome of [first, during]) {
      expect(outcome.code).toBe("KILN_LIFECYCLE");
      expect(outcome.settled).toBeLessThanOrEqual(stoppedAt);
    }
    expect(drops).toEqual({ entries: 1, refusals: 1 });
    expect(system.health().audit.droppedAtStop).toBe(2);
  }, 20_000);
});
