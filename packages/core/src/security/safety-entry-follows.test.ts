import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, onTestFinished, test } from "vitest";
import { KilnError } from "../domain/errors";
import { SimulatedClock } from "../memory/simulated-clock";
import type { AuditEntry } from "../ports/audit-log";
import { silentLogger } from "../runtime/silent-logger";
import { AuditedCommandRunner, type AuditedCommand } from "./audited-command";
import { Authorizer, defaultRoleTable, type Principal } from "./authorization";

// Adversarial review 15y, L6: on a frozen audit store (its `record` never answers), a safety
// function's promise stayed pending although its effect was done: the entries that follow its
// effect (a failure, a refusal) were awaited until the store answered. A safety function answers
// once its effect is done and its entries are handed to the writer (journaled, with a journal).

const admin: Principal = { id: "root", roles: ["admin"] };
const directories: string[] = [];
afterEach(async () => {
  for (const directory of directories.splice(0)) await rm(directory, { recursive: true, force: true });
});

async function frozenRunner(journal: boolean) {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 0, 1) });
  const offered: AuditEntry[] = [];
  let path: string | undefined;
  if (journal) {
    const directory = await mkdtemp(join(tmpdir(), "kiln-safety-"));
    directories.push(directory);
    path = join(directory, "audit.journal");
  }
  let ids = 0;
  let frozen = true;
  const waiting: (() => void)[] = [];
  const runner = new AuditedCommandRunner({
    authorizer: new Authorizer({ roles: defaultRoleTable() }),
    // Frozen: takes the entry and never answers (a PostgreSQL stopped with SIGSTOP, no port timeout).
    audit: {
      record: (entry) => {
        offered.push(entry);
        return frozen ? new Promise<void>((resolve) => waiting.push(resolve)) : Promise.resolve();
      },
      query: () => Promise.resolve([]),
    },
    clock,
    logger: silentLogger,
    machineId: "ald-1",
    newId: () => `entry-${++ids}`,
    ...(path === undefined ? {} : { backlog: { path } }),
  });
  await runner.open();
  // After the test the store thaws and the runner is closed (close() flushes, so not before):
  // an open journal and reserve would otherwise be closed by the garbage collector in a later
  // file (DEP0137), holding the journal's lock until then.
  onTestFinished(async () => {
    frozen = false;
    for (const resolve of waiting.splice(0)) resolve();
    await runner.close();
  });
  return { runner, offered, clock };
}

/** Whether `promise` settles within a few turns of the event loop (a frozen store never answers). */
async function settlesSoon(promise: Promise<unknown>): Promise<{ settled: boolean; code?: string }> {
  const outcome: { settled: boolean; code?: string } = { settled: false };
  promise.then(
    () => (outcome.settled = true),
    (error: { code?: string }) => Object.assign(outcome, { settled: true, code: error.code }),
  );
  for (let turn = 0; turn < 20 && !outcome.settled; turn++) await new Promise((resolve) => setTimeout(resolve, 5));
  return outcome;
}

const stop = (execute: AuditedCommand<string>["execute"]): AuditedCommand<string> => ({
  principal: admin,
  permission: "machine.mode",
  action: "machine.stop",
  target: "ald-1",
  commit: "in-execute",
  safetyFunction: true,
  execute,
});

test("no journal: a stop whose effect fails after its commit answers at once; its :fail entry follows", async () => {
  const { runner, offered } = await frozenRunner(false);
  let effects = 0;
  const outcome = await settlesSoon(
    runner.run(
      stop(async (context) => {
        await context.commit();
        effects++;
        throw new KilnError("KILN_WRITE_REJECTED", "output module fault");
      }),
    ),
  );
  expect(effects).toBe(1);
  expect(outcome).toEqual({ settled: true, code: "KILN_WRITE_REJECTED" });
  // Both entries were handed to the store (which never answers): the intent and its :fail.
  expect(offered.map((entry) => entry.id)).toEqual(["entry-1", "entry-1:fail"]);
});

test("sibling, no journal: a stop refused by its check (nothing to stop) answers at once; its denied entry follows", async () => {
  const { runner, offered } = await frozenRunner(false);
  const outcome = await settlesSoon(
    runner.run(
      stop(() => {
        throw new KilnError("KILN_INVALID_TRANSITION", "nothing to stop");
      }),
    ),
  );
  expect(outcome).toEqual({ settled: true, code: "KILN_INVALID_TRANSITION" });
  expect(offered).toMatchObject([{ id: "entry-1", outcome: "denied" }]);
});

test("sibling, with a journal: a stop answers once its entry is journaled, not waiting for the store", async () => {
  const { runner } = await frozenRunner(true);
  let effects = 0;
  const result = await runner.run(
    stop(async (context) => {
      await context.commit();
      effects++;
      return "idle";
    }),
  );
  expect(result).toBe("idle");
  expect(effects).toBe(1);
  // Durable when the command answers: the entry is in the journal (the backlog), the store still frozen.
  expect(runner.status()).toMatchObject({ backlog: 1, durableBacklog: true });
});

test("sibling: a system action (an interlock trip) whose safe-state write failed answers once both entries are journaled", async () => {
  const { runner } = await frozenRunner(true);
  const result = await runner.runSystemAction(
    { action: "machine.trip", target: "ald-1", reason: "interlock" },
    () => Promise.resolve({ problems: ["safe-state heater.setpoint: refused"] }),
    (outcome) => outcome.problems.join("; "),
  );
  expect(result.problems).toHaveLength(1);
  expect(runner.status()).toMatchObject({ backlog: 2, durableBacklog: true });
});
