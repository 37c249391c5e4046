import { describe, expect, test } from "vitest";
import type { KilnEvents } from "../events/catalogue";
import { defineTags, type TagValue } from "../domain/tags";
import { MemoryStore } from "../memory/memory-store";
import type { AuditEntry } from "../ports/audit-log";
import type { Principal } from "../security/authorization";
import { auditTrailAfterStop, simulatedSystem } from "../../test/support/simulated-system";

// Adversarial review adv15r, M3: without an audit journal (the in-memory default), a store that
// refuses one entry with a plain Error (not a classified KilnError) while taking others: the
// command is refused (its intent could not be stored), but its `<id>:refusal` carries the same
// value and was exempt from the poison rule, so it held the head of the backlog for good. Its
// retries opened the audit breaker, and every later guarded command was refused
// KILN_AUDIT_UNAVAILABLE until restart (37 of 37 in 20 s). With a journal, both were set aside.
// Now a follow-up entry (a refusal, a `:fail`) follows the poison rule too; set aside, it is
// recorded again under its id without its values and reason, saying so.

const admin: Principal = { id: "ada", roles: ["admin"] };
const tags = defineTags({
  "stirrer.speed": { dataType: "float64", access: "readwrite", range: { min: 0, max: 100 }, scanGroup: "fast" },
  "batch.note": { dataType: "string", access: "readwrite", scanGroup: "fast" },
});

/** A MemoryStore whose audit log throws a plain Error for the entries `refuses` names, and takes the rest. */
class PickyAuditStore extends MemoryStore {
  refuses: (entry: AuditEntry) => boolean = () => false;
  constructor(options: ConstructorParameters<typeof MemoryStore>[0]) {
    super(options);
    const inner = this.audit;
    (this as { audit: MemoryStore["audit"] }).audit = {
      record: (entry) =>
        this.refuses(entry) ? Promise.reject(new Error("cannot store this entry")) : inner.record(entry),
      query: (range) => inner.query(range),
    };
  }
}

async function build(refuses: (entry: AuditEntry) => boolean) {
  const parts = simulatedSystem({
    tags,
    scanGroups: { fast: { periodMs: 100 } },
    store: (clock) => new PickyAuditStore({ clock }),
  });
  parts.store.refuses = refuses;
  const skips: KilnEvents["audit-entry-skip"][] = [];
  const refusalDrops: KilnEvents["audit-refusal-drop"][] = [];
  parts.system.bus.on("audit-entry-skip", (event) => void skips.push(event));
  parts.system.bus.on("audit-refusal-drop", (event) => void refusalDrops.push(event));
  await parts.system.start();
  /** Writes `value`, answering "ok" or the refusal's code. */
  const write = (tag: string, value: TagValue): Promise<string> =>
    parts.system.writeTag(admin, tag, value).then(
      () => "ok",
      (error: { code?: string }) => error.code ?? "error",
    );
  return { ...parts, skips, refusalDrops, write };
}

describe("a follow-up entry the store keeps refusing does not hold the audit trail (adv15r M3)", () => {
  test("without a journal: the refusal of a command whose value the store refuses is recorded without it, and every later command runs", async () => {
    const parts = await build((entry) => entry.newValue === 13);
    const { system, clock } = parts;
    expect(await parts.write("stirrer.speed", 13)).toBe("KILN_AUDIT_UNAVAILABLE");
    const answers: string[] = [];
    for (let value = 20; value < 60; value++) {
      await clock.advance(500);
      answers.push(await parts.write("stirrer.speed", value));
    }
    // Before: refused from the breaker's opening on, until restart.
    expect(answers).toEqual(Array(40).fill("ok"));
    const audit = system.health().audit;
    expect(audit).toMatchObject({ backlog: 0, setAside: 1 });
    expect(audit.blockedBy).toBeUndefined();
    expect(parts.skips).toHaveLength(1);
    expect(parts.skips[0]!.id).toMatch(/:refusal$/);
    expect(parts.skips[0]!.reason).toMatch(/recorded again under its id without its values and reason/);
    expect(parts.refusalDrops).toEqual([]);
    const trail = await auditTrailAfterStop(parts);
    const refusal = trail.find((entry) => entry.id === parts.skips[0]!.id)!;
    // In the trail, naming its intent, saying the command did not run, without the value.
    expect(refusal).toMatchObject({ outcome: "denied", refersTo: refusal.id.replace(/:refusal$/, "") });
    expect(refusal.newValue).toBeUndefined();
    expect(refusal.reason).toMatch(
      /^KILN_AUDIT_UNAVAILABLE: the command was not executed; recorded without its values/,
    );
    expect(trail.filter((entry) => entry.action === "tag.write" && entry.outcome === "allowed")).toHaveLength(40);
  });

  test("(sibling) a store that refuses every entry holding a NUL character: the same, for a string tag", async () => {
    const parts = await build((entry) => JSON.stringify(entry).includes("\\u0000"));
    const { system, clock } = parts;
    expect(await parts.write("batch.note", "lot\u00004")).toBe("KILN_AUDIT_UNAVAILABLE");
    const answers: string[] = [];
    for (let index = 0; index < 20; index++) {
      await clock.advance(500);
      answers.push(await parts.write("batch.note", `lot ${index}`));
    }
    expect(answers).toEqual(Array(20).fill("ok"));
    expect(system.health().audit).toMatchObject({ backlog: 0, setAside: 1 });
    const trail = await auditTrailAfterStop(parts);
    expect(trail.filter((entry) => entry.id.endsWith(":refusal"))).toEqual([
      expect.objectContaining({ outcome: "denied", reason: expect.stringMatching(/not executed/) }),
    ]);
  });

  test("(sibling) a store that refuses the refusal even without its values: reported as a refusal drop at once, and later commands run", async () => {
    const parts = await build((entry) => entry.newValue === 13 || entry.id.endsWith(":refusal"));
    const { system, clock } = parts;
    expect(await parts.write("stirrer.speed", 13)).toBe("KILN_AUDIT_UNAVAILABLE");
    const answers: string[] = [];
    for (let value = 20; value < 40; value++) {
      await clock.advance(500);
      answers.push(await parts.write("stirrer.speed", value));
    }
    expect(answers).toEqual(Array(20).fill("ok"));
    expect(parts.refusalDrops).toHaveLength(1);
    expect(system.health().audit).toMatchObject({ backlog: 0, setAside: 2, refusalsDropped: 1 });
    expect(system.health().problems.join("\n")).toMatch(/refusal/i);
    await system.stop();
  });
});
