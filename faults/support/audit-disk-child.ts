/**
 * A Kiln process for the audit-on-a-full-disk case: a control system whose audit backlog journal
 * is `<journal>` (on a small tmpfs) and whose audit store is `<store>`, a JSON-lines file (fsync
 * per entry) that fails while the file `<store>.down` exists. Prints one line per event it sees.
 *
 * Usage: audit-disk-child.ts <journal> <store> fill|drain|start|unguarded [viewer writes | writes]
 * - `fill`: engineer writes until 20 in a row are refused (the disk is full), then N (50) viewer
 *   writes (denied); prints `ok <n>`, `err <n> <code> <errno>` per command, `health <json>`, then
 *   `filled` and waits to be killed.
 * - `start` (the journal cannot be opened at start: a full disk, a folder it may not write):
 *   prints `health <json>` once started, then `err <n> <code> <errno>` for one engineer write
 *   (refused: the store is down and nothing can make its entry durable) and for N viewer writes
 *   (denied), `health <json>`, `held`; then `health <json>` every 100 ms until no journal
 *   problem is in force (the test gave it room), `journaled`, and waits to be killed.
 * - `unguarded` (`tag.write` in `audit.runWithoutDurableAudit`: writes run without a durable
 *   entry, as an abort does): engineer writes until the journal fails (the disk is full), then N
 *   (400) more, each printed `ok <n>`; then `health <json>`, `filled`, and waits to be killed.
 * - `unguarded-eio` (fix15e, adv15d F1): as `unguarded` until 100 entries are held only in
 *   memory (health says so), then every write of the journal's reserve fails with `EIO` (injected in
 *   this process) and N (400) more engineer writes follow, each printed `ok <n>` or
 *   `err <n> <code> <errno>`; then `health <json>`, `filled`, and waits to be killed.
 * - `unguarded-eio-back` (adv15d F2): as `unguarded-eio`, then the store comes back (the child
 *   removes `<store>.down`) while the reserve still fails; once the backlog stops shrinking (or
 *   is empty) `health <json>`, `filled`, and waits to be killed.
 * - `drop` (fix15e, adv15d F5): as `unguarded`, with `whenFull: "drop-oldest"` and `maxEntries` 200:
 *   the oldest entries are dropped (counted in the reserve) while their journal records'
 *   releases cannot be made durable on the full disk (once the disk is full, each durable release
 *   mark fails, injected in this process).
 * - `drain`: starts, prints `health <json>` every 100 ms; once the backlog is empty, no count is
 *   left and no journal problem is in force, stops, prints `drained <json>` and exits 0.
 */
import { existsSync, fsyncSync, openSync, unlinkSync, writeSync } from "node:fs";
import { createControlSystem, defineTags, KilnError, MemoryStore, SimulatedPlc } from "@kiln/core";
import type { AuditEntry } from "@kiln/core/driver-kit";
// The same module the control system uses (run with --conditions=@kiln/source): a write of the
// reserve can be made to fail as a failing disk does (EIO).
import { ReservedRecord } from "../../packages/core/src/journal/reserved-record";
import { RecordJournal } from "../../packages/core/src/journal/record-journal";

const [journal, storeFile, mode, viewerWrites = "50"] = process.argv.slice(2);
const modes = ["fill", "drop", "drain", "start", "unguarded", "unguarded-eio", "unguarded-eio-back"];
if (!journal || !storeFile || !modes.includes(mode ?? "")) {
  throw new Error(`usage: audit-disk-child.ts <journal> <store> ${modes.join("|")}`);
}
let reserveFails = false;
// `drop`: once the disk is full, no release mark of the journal can be written (on tmpfs a mark
// still fits the last page the journal holds; on a real full disk it does not): a release is
// done in memory, its durable mark fails.
const release = RecordJournal.prototype.release;
RecordJournal.prototype.release = async function (this: RecordJournal, options = {}): Promise<void> {
  if (mode !== "drop" || !journalFailed || options.durable !== true) return release.call(this, options);
  await release.call(this, {});
  throw new KilnError("KILN_JOURNAL_FAILED", `Journal ${this.path}: mark failed: the disk is full (test).`, {
    retryable: true,
    details: { path: this.path, operation: "mark", errno: "ENOSPC" },
  });
};
const write = ReservedRecord.prototype.write;
ReservedRecord.prototype.write = function (this: ReservedRecord, payload: Uint8Array): Promise<void> {
  if (!reserveFails) return write.call(this, payload);
  return Promise.reject(
    new KilnError("KILN_JOURNAL_FAILED", `Reserved record ${this.path}: write failed: i/o error (test).`, {
      retryable: true,
      details: { path: this.path, operation: "write", errno: "EIO" },
    }),
  );
};
const out = (line: string): void => void writeSync(1, `${line}\n`);
const tags = defineTags({
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 1e9 } },
});
const memory = new MemoryStore();
const descriptor = openSync(storeFile, "a");
const audit = {
  record: (entry: AuditEntry): Promise<void> => {
    if (existsSync(`${storeFile}.down`)) {
      return Promise.reject(new KilnError("KILN_STORE_ERROR", "audit store down (test)", { retryable: true }));
    }
    writeSync(descriptor, `${JSON.stringify(entry)}\n`);
    fsyncSync(descriptor);
    return Promise.resolve();
  },
  query: () => Promise.resolve([]),
};
const store = new Proxy(memory, {
  get(target, property) {
    if (property === "audit") return audit;
    const value = Reflect.get(target, property, target) as unknown;
    return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
  },
});
const system = createControlSystem({
  machineId: "m1",
  tags,
  driver: new SimulatedPlc({ tags }),
  store,
  scanGroups: { default: { periodMs: 1000 } },
  audit: {
    backlog:
      mode === "drop"
        ? { path: journal, maxEntries: 200, whenFull: "drop-oldest" as const }
        : { path: journal, maxEntries: 100_000 },
    ...(mode?.startsWith("unguarded") === true || mode === "drop" ? { runWithoutDurableAudit: ["tag.write"] } : {}),
  },
  storePolicies: { audit: { retry: { initialDelayMs: 100, maxDelayMs: 300 } } },
});
let journalFailed = false;
system.bus.on("audit-journal-fail", (event) => {
  journalFailed = true;
  out(`journal-fail ${JSON.stringify(event)}`);
});
const health = (): string => JSON.stringify({ audit: system.health().audit, problems: system.health().problems });
await system.start();

if (mode === "drain") {
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const now = system.health();
    out(`health ${health()}`);
    // (Read defensively, so the case also runs against a build without journalProblems.)
    const journalProblems = (now.audit as { journalProblems?: readonly string[] }).journalProblems ?? [];
    if (now.audit.backlog === 0 && now.audit.overflow === 0 && journalProblems.length === 0) break;
  }
  await system.stop();
  out(`drained ${health()}`);
  process.exit(0);
}

const engineer = { id: "eng", roles: ["engineer"] };
const viewer = { id: "vw", roles: ["viewer"] };
let next = 1;
const command = async (principal: typeof engineer): Promise<boolean> => {
  const value = next++;
  try {
    await system.writeTag(principal, "heater.setpoint", value);
    out(`ok ${value}`);
    return true;
  } catch (error) {
    const code = KilnError.is(error) ? error.code : String(error);
    const errno = KilnError.is(error) ? String(error.details["errno"] ?? "-") : "-";
    out(`err ${value} ${code} ${errno}`);
    return false;
  }
};
if (mode === "start") {
  out(`health ${health()}`);
  await command(engineer);
  for (let index = 0; index < Number(viewerWrites); index++) await command(viewer);
  out(`health ${health()}`);
  out("held");
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    out(`health ${health()}`);
    if (system.health().audit.journalProblems.length === 0) break;
  }
  out("journaled");
  await new Promise(() => undefined);
}

if (mode === "unguarded" || mode === "drop") {
  while (!journalFailed) await command(engineer);
  for (let index = 0; index < Number(viewerWrites); index++) await command(engineer);
  out(`health ${health()}`);
  out("filled");
  await new Promise(() => undefined);
}

if (mode === "unguarded-eio" || mode === "unguarded-eio-back") {
  while (!journalFailed) await command(engineer);
  // Until entries are held only in memory (the reserve full): the tally is in the reserve's record.
  const memoryOnly = (): number => Number(/(\d+) audit entries held only in memory/.exec(health())?.[1] ?? 0);
  for (let index = 0; index < 5000 && memoryOnly() < 100; index++) await command(engineer);
  out(`health ${health()}`);
  reserveFails = true;
  out("eio");
  for (let index = 0; index < Number(viewerWrites); index++) await command(engineer);
  if (mode === "unguarded-eio-back") {
    unlinkSync(`${storeFile}.down`);
    let last = Number.POSITIVE_INFINITY;
    for (let still = 0; still < 50 && system.health().audit.backlog > 0;) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const backlog = system.health().audit.backlog;
      still = backlog < last ? 0 : still + 1;
      last = backlog;
    }
  }
  out(`health ${health()}`);
  out("filled");
  await new Promise(() => undefined);
}

let refusedInARow = 0;
while (refusedInARow < 20) refusedInARow = (await command(engineer)) ? 0 : refusedInARow + 1;
for (let index = 0; index < Number(viewerWrites); index++) await command(viewer);
out(`health ${health()}`);
out("filled");
await new Promise(() => undefined);
