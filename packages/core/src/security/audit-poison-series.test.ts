import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { createControlSystem } from "../compose/create-control-system";
import { KilnError } from "../domain/errors";
import { defineTags } from "../domain/tags";
import { silentLogger } from "../runtime/silent-logger";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedPlc } from "../memory/simulated-plc";
import type { AuditEntry } from "../ports/audit-log";

// Adversarial review adv15c (main 3972ee2a), HIGH-1: a viewer (no rights) sends twenty refused
// writes, each with its own comment, to a custom audit store that hangs on (or throws a retryable
// KilnError for) entries with such a comment and takes every other entry. Each turn stored one
// innocent probe that then counted against maxEntries; the viewer's other entries served as each
// other's probes and as the store's "failure rate"; the open breaker and the store-failing gate
// refused every command. Result: every command refused for tens of seconds, health calling it an
// outage (fix15ah).

const tags = defineTags({ "heater.x": { dataType: "float64", access: "readwrite" } });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type Mode = "hang" | "kerr" | "mixed";

/**
 * The bound, in ms after the viewer's writes, on refused commands and on health calling it an
 * outage: the time it takes to set the viewer's twenty entries aside (measured 3 s without a
 * journal, 6 s with one at maxEntries 50; before fix15ah, commands were refused to the end).
 */
const BOUND = 9_000;

async function run(options: {
  journal: boolean;
  mode: Mode;
  count: number;
  durationMs: number;
  policies?: boolean;
  maxEntries?: number;
  whenFull?: "refuse-commands" | "drop-oldest";
}) {
  const store = new MemoryStore();
  const original = store.audit.record.bind(store.audit);
  store.audit.record = async (entry: AuditEntry) => {
    const match = /HANGME(\d+)/.exec(JSON.stringify(entry));
    if (match !== null) {
      const hang = options.mode === "hang" || (options.mode === "mixed" && Number(match[1]) % 2 === 0);
      if (hang) return new Promise<void>(() => {});
      throw new KilnError("KILN_STORE_ERROR", "statement timeout", { retryable: true });
    }
    return original(entry);
  };
  const path = options.journal ? join(await mkdtemp(join(tmpdir(), "kiln-audit-series-")), "a.journal") : undefined;
  const system = createControlSystem({
    machineId: "m",
    tags,
    driver: new SimulatedPlc({ tags }),
    store,
    logger: silentLogger,
    authorization: { operatorWritableTags: ["heater.*"] },
    ...(options.policies === false ? {} : { storePolicies: { audit: { timeoutMs: 100 } } }),
    audit: {
      backlog: {
        ...(path === undefined ? {} : { path }),
        ...(options.maxEntries === undefined ? {} : { maxEntries: options.maxEntries }),
        ...(options.whenFull === undefined ? {} : { whenFull: options.whenFull }),
      },
    },
  });
  let skips = 0;
  system.bus.on("audit-entry-skip", () => void skips++);
  await system.start();
  const viewer = { id: "vic", roles: ["viewer"] };
  const engineer = { id: "enzo", roles: ["engineer"] };
  const t0 = Date.now();
  await Promise.all(
    Array.from({ length: options.count }, (_, index) =>
      system.writeTag(viewer, "heater.x", index, { comment: `HANGME${index}` }).catch(() => undefined),
    ),
  );
  /** Each engineer command's answer and when it came, in ms since the viewer's writes. */
  const answers: { at: number; answer: string }[] = [];
  /** When health last called it an outage, in ms since the viewer's writes. */
  let lastOutageWording = 0;
  for (let index = 0; Date.now() - t0 < options.durationMs; index++) {
    const answer = await system.writeTag(engineer, "heater.x", 100 + index).then(
      () => "ok",
      (error: unknown) => (KilnError.is(error) ? error.code : String(error)),
    );
    answers.push({ at: Date.now() - t0, answer });
    // An outage is reported as "the audit store has not taken an entry for N s": never while it
    // takes every entry but the viewer's.
    if ((system.health().problems ?? []).some((problem) => problem.includes("has not taken an entry")))
      lastOutageWording = Date.now() - t0;
    await sleep(50);
  }
  const lastRefusal = Math.max(0, ...answers.filter((entry) => entry.answer !== "ok").map((entry) => entry.at));
  const health = system.health().audit;
  await system.stop();
  return { answers, lastRefusal, skips, health, lastOutageWording };
}

describe("one principal's many entries the audit store fails on (adv15c HIGH-1, fix15ah)", () => {
  test("default settings, no journal, a retryable KilnError for twenty entries: commands run after a few seconds, all twenty set aside", async () => {
    const result = await run({ journal: false, mode: "kerr", count: 20, durationMs: 10_000, policies: false });
    // Before: 382 of 384 commands refused over 38 s (every command in this run).
    expect(result.lastRefusal).toBeLessThan(BOUND);
    expect(result.skips).toBe(20);
    expect(result.health.setAside).toBe(20);
    expect(result.lastOutageWording).toBeLessThan(BOUND);
  }, 30_000);

  test("a store that hangs on twenty entries, journal, maxEntries 50: stored probes never fill the limit", async () => {
    const result = await run({ journal: true, mode: "hang", count: 20, durationMs: 11_000, maxEntries: 50 });
    // Before: the backlog filled with probes the store had taken; from then on every command was refused.
    expect(result.lastRefusal).toBeLessThan(BOUND);
    expect(result.answers.filter((entry) => entry.at > BOUND && entry.answer !== "ok")).toEqual([]);
    expect(result.skips).toBe(20);
    expect(result.lastOutageWording).toBeLessThan(BOUND);
  }, 30_000);

  test("(sibling) hangs and retryable KilnErrors mixed, no journal, drop-oldest: the same bound", async () => {
    const result = await run({
      journal: false,
      mode: "mixed",
      count: 20,
      durationMs: 11_000,
      maxEntries: 50,
      whenFull: "drop-oldest",
    });
    expect(result.lastRefusal).toBeLessThan(BOUND);
    expect(result.skips).toBe(20);
    expect(result.lastOutageWording).toBeLessThan(BOUND);
  }, 30_000);
});
