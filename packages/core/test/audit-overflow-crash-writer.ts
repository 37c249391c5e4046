/**
 * Child process for the audit overflow crash test (adv15za HIGH-1): runs commands through an
 * AuditedCommandRunner whose audit journal is full (`maxBytes`), with an audit store whose timing
 * the script controls, then waits to be SIGKILLed.
 *
 * The store appends every entry it takes to `<store file>` (one JSON line, fsynced), so the parent
 * reads what the store holds after the kill. Its timing, in order:
 * 1. the first call (the backlog's head) hangs for good: nothing drains, and the store is never
 *    "failing" (the writer still offers an intent to it);
 * 2. denied writes by a viewer fill the journal to `maxBytes` (or, with `full` = `disk`, the
 *    journal's volume is filled with filler files once the runner opened) and then the reserve;
 *    then `aborts` recipe aborts by an operator (they run without a durable entry: their
 *    `allowed` entries take the reserve's room, none of them can be counted away);
 * 3. `flaps` allowed writes by an operator: the store takes each intent and then answers
 *    `KILN_TIMEOUT` (stored, then a late answer): the command is refused and its refusal
 *    (`<id>:refusal`) joins the backlog, the journal full;
 * 4. denied writes by a second viewer keep coming after the refusals.
 *
 * Each command prints `cmd <id> <principal> <code> <permission>` (code: `ran` or the refusal's) once answered;
 * then `done`. Nothing runs after `done` (the hung call never settles, the retry waits for it).
 */
import { appendFileSync, closeSync, fsyncSync, openSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { KilnError } from "../src/domain/errors";
import { defineTags, type TagValue } from "../src/domain/tags";
import type { KilnEvents } from "../src/events/catalogue";
import { EventBus } from "../src/events/event-bus";
import { SimulatedClock } from "../src/memory/simulated-clock";
import { SimulatedPlc } from "../src/memory/simulated-plc";
import type { AuditEntry } from "../src/ports/audit-log";
import { AuditedCommandRunner } from "../src/security/audited-command";
import { Authorizer, defaultRoleTable, type Principal } from "../src/security/authorization";

const [journalPath, storePath, deniedBefore, flaps, deniedAfter, aborts, full] = process.argv.slice(2);
if (!journalPath || !storePath) throw new Error("usage: audit-overflow-crash-writer <journal> <store file> [n n n]");

const tags = defineTags({
  "heater.setpoint": { dataType: "float64", access: "readwrite" },
  "valve.tma": { dataType: "bool", access: "readwrite" },
});

/** Appends `entry` to the store file, durably, as the store's INSERT would commit it. */
function storeDurably(entry: AuditEntry): void {
  const fd = openSync(storePath!, "a");
  try {
    appendFileSync(fd, `${JSON.stringify(entry)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

let calls = 0;
const audit = {
  query: () => Promise.resolve([]),
  record: (entry: AuditEntry): Promise<void> => {
    calls++;
    // The backlog's head: its call hangs for good (the store neither takes nor refuses it).
    if (calls === 1) return new Promise<void>(() => undefined);
    // An offered intent: stored, then answered late (the port guard's timeout).
    storeDurably(entry);
    return Promise.reject(new KilnError("KILN_TIMEOUT", "audit store answered late", { retryable: true }));
  },
};

const clock = new SimulatedClock({ start: Date.UTC(2026, 0, 1) });
const plc = new SimulatedPlc({ tags, clock });
await plc.connect();
let ids = 0;
let current: string | undefined;
const runner = new AuditedCommandRunner({
  authorizer: new Authorizer({ roles: defaultRoleTable({ operatorWritableTags: ["heater.*"] }) }),
  audit,
  clock,
  bus: new EventBus<KilnEvents>({ now: () => clock.now() }),
  machineId: "ald-1",
  newId: () => {
    const id = `c-${++ids}`;
    current ??= id;
    return id;
  },
  retryBackoff: { initialDelayMs: 1_000, maxDelayMs: 1_000 },
  backlog: { path: journalPath, maxEntries: 100_000, ...(full === "disk" ? {} : { maxBytes: 32_768 }) },
});
await runner.open();
if (full === "disk") {
  // The volume (a small tmpfs the parent mounted) is filled up once the journal and its reserve exist.
  let file = 0;
  for (const size of [16 * 1024, 1024]) {
    for (;;) {
      try {
        writeFileSync(join(dirname(journalPath), `filler-${file++}`), Buffer.alloc(size));
      } catch {
        break;
      }
    }
  }
}

/** Runs one tag write as `principal` and prints its command id and outcome. */
async function run(principal: Principal, tag: string, value: TagValue, permission = "tag.write"): Promise<void> {
  current = undefined;
  const code = await runner
    .run({
      principal,
      permission,
      target: tag,
      machineState: "idle",
      newValue: value,
      execute: () => plc.write(tags.get(tag), value),
    })
    .then(
      () => "ran",
      (error: unknown) => (KilnError.is(error) ? error.code : String(error)),
    );
  process.stdout.write(`cmd ${current} ${principal.id} ${code} ${permission}\n`);
}

const vera: Principal = { id: "vera", roles: ["viewer"] };
const olga: Principal = { id: "olga", roles: ["operator"] };
const walt: Principal = { id: "walt", roles: ["viewer"] };
for (let round = 1; round <= Number(deniedBefore ?? 300); round++) await run(vera, "heater.setpoint", round);
for (let round = 1; round <= Number(aborts ?? 0); round++) await run(olga, "heater.setpoint", round, "recipe.abort");
for (let round = 1; round <= Number(flaps ?? 3); round++) await run(olga, "heater.setpoint", 1_000 + round);
for (let round = 1; round <= Number(deniedAfter ?? 20); round++) await run(walt, "valve.tma", round % 2 === 0);
process.stdout.write("done\n");
setInterval(() => undefined, 60_000);
