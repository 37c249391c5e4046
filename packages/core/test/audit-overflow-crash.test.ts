import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, expect, test } from "vitest";
import { defineTags } from "../src/domain/tags";
import type { KilnEvents } from "../src/events/catalogue";
import { EventBus } from "../src/events/event-bus";
import { MemoryStore } from "../src/memory/memory-store";
import { SimulatedClock } from "../src/memory/simulated-clock";
import type { AuditEntry } from "../src/ports/audit-log";
import { AuditedCommandRunner } from "../src/security/audited-command";
import { Authorizer, defaultRoleTable } from "../src/security/authorization";

// Adversarial review adv15za HIGH-1, made deterministic: with the audit journal full (maxBytes),
// a store that takes an intent and then answers late (the command is refused, its `<id>:refusal`
// joins the backlog) and a kill -9 afterwards. Before, over the reserve's room the newest entry
// was left out first whatever it was: the refusal was held in memory only while older denials
// kept their room, so after the kill the trail read `allowed` for a command that never ran, and
// nothing counted the refusal. The child's store timing is scripted (audit-overflow-crash-writer.ts):
// no race decides the outcome.

const here = dirname(fileURLToPath(import.meta.url));
const tags = defineTags({
  "heater.setpoint": { dataType: "float64", access: "readwrite" },
  "valve.tma": { dataType: "bool", access: "readwrite" },
});
let directory: string;
beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), "kiln-audit-overflow-crash-"));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

interface Command {
  id: string;
  principal: string;
  code: string;
}

/** Runs the child until it printed `done`, then SIGKILLs it; resolves the commands it answered. */
function runAndKill(args: readonly string[]): Promise<Command[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--conditions=@kiln/source", "--import", "tsx", join(here, "audit-overflow-crash-writer.ts"), ...args],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    const commands: Command[] = [];
    let stderr = "";
    let buffer = "";
    let done = false;
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.on("data", (chunk: Buffer) => {
      buffer += chunk.toString();
      const lines = buffer.split("\n");
      buffer = lines.pop() ?? "";
      for (const line of lines) {
        const [kind, id, principal, code] = line.split(" ");
        if (kind === "cmd") commands.push({ id: id!, principal: principal!, code: code! });
        if (kind === "done") done = true;
      }
      if (done && !child.killed) child.kill("SIGKILL");
    });
    child.on("close", (_code, signal) => {
      if (signal === "SIGKILL") resolve(commands);
      else reject(new Error(`the child exited without being killed: ${stderr}`));
    });
  });
}

/** The next start: a runner on the same journal, its store holding what the child's store took; the trail after its close. */
async function restart(journal: string, storeFile: string): Promise<AuditEntry[]> {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 0, 2) });
  const store = new MemoryStore({ clock });
  await store.open(tags.list());
  const lines = (await readFile(storeFile, "utf8").catch(() => "")).split("\n").filter((line) => line !== "");
  for (const line of lines) await store.audit.record(JSON.parse(line) as AuditEntry);
  const runner = new AuditedCommandRunner({
    authorizer: new Authorizer({ roles: defaultRoleTable({ operatorWritableTags: ["heater.*"] }) }),
    audit: store.audit,
    clock,
    bus: new EventBus<KilnEvents>({ now: () => clock.now() }),
    machineId: "ald-1",
    newId: (() => {
      let ids = 0;
      return () => `next-${++ids}`;
    })(),
    backlog: { path: journal, maxEntries: 100_000, maxBytes: 32_768 },
  });
  await runner.open();
  await runner.close();
  return store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
}

test("a refusal after a store that took the intent and answered late, the journal full (maxBytes), then kill -9: every command is in the trail once or counted, and no intent reads allowed without its refusal", async () => {
  const journal = join(directory, "audit.journal");
  const storeFile = join(directory, "store.jsonl");
  const commands = await runAndKill([journal, storeFile, "600", "40", "20"]);
  const trail = await restart(journal, storeFile);

  const byId = new Map<string, AuditEntry[]>();
  for (const entry of trail) byId.set(entry.id, [...(byId.get(entry.id) ?? []), entry]);
  // Stored once each.
  expect([...byId].filter(([, entries]) => entries.length > 1).map(([id]) => id)).toEqual([]);

  // The scripted store took at least one intent and answered late: that command was refused.
  const refused = commands.filter((command) => command.code === "KILN_AUDIT_UNAVAILABLE");
  const late = refused.filter((command) => byId.get(command.id)?.[0]?.outcome === "allowed");
  expect(late.length).toBeGreaterThan(0);
  // Its refusal is in the trail: no command that did not run reads `allowed`.
  expect(late.filter((command) => !byId.has(`${command.id}:refusal`)).map((command) => command.id)).toEqual([]);

  // Every denied or refused command without an entry of its own is counted, per principal.
  const counted = new Map<string, number>();
  for (const entry of trail) {
    if (entry.action !== "audit.overflow") continue;
    const { count, principals } = entry.newValue as { count: number; principals: string[] };
    expect(principals.length).toBe(1);
    counted.set(principals[0]!, (counted.get(principals[0]!) ?? 0) + count);
  }
  const missing = new Map<string, number>();
  for (const command of commands) {
    if (command.code === "ran") {
      expect(byId.get(command.id)?.[0]?.outcome).toBe("allowed");
      continue;
    }
    if (byId.has(command.id) || byId.has(`${command.id}:refusal`)) continue;
    missing.set(command.principal, (missing.get(command.principal) ?? 0) + 1);
  }
  expect(Object.fromEntries(counted)).toEqual(Object.fromEntries(missing));
  // Nothing reported dropped: the journal and its reserve kept every fact.
  expect(trail.filter((entry) => entry.action === "audit.drop")).toEqual([]);
}, 120_000);
