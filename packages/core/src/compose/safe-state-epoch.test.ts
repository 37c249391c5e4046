import { describe, expect, test } from "vitest";
import { defaultRoleTable } from "../security/authorization";
import { defineTags } from "../domain/tags";
import type { RecipeInput } from "../recipes/recipe-schema";
import { HeldProcessStore, admin } from "../../test/support/safety-harness";
import { auditTrailAfterStop, simulatedSystem, type SimulatedSystem } from "../../test/support/simulated-system";

// Adversarial review 15f, H1: a manual write issued before abortProcess (or pause then abort), or
// before a process failed on its own, waited for its audit entry and then landed after the safe
// state on an idle or faulted machine; a role granted the tag only while processing wrote it in
// idle. Every path that writes the safe state now bumps one epoch (the write is refused), and the
// write's state-dependent grant is judged again right before the driver call.

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", range: { min: 0, max: 100 }, scanGroup: "fast" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, scanGroup: "fast" },
  "valve.h2o": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
});
const trim = { id: "tim", roles: ["trim"] };
const LONG: RecipeInput = {
  name: "long",
  version: 1,
  steps: [{ set: { tag: "heater.setpoint", value: 40 } }, { wait: { durationMs: 60_000 } }],
};
const FAILS: RecipeInput = {
  name: "fails",
  version: 1,
  steps: [
    { set: { tag: "heater.setpoint", value: 40 } },
    { waitUntil: { condition: { tag: "chamber.pressure", op: ">", value: 50 }, timeoutMs: 300, onTimeout: "fail" } },
    { wait: { durationMs: 60_000 } },
  ],
};
const SHORT: RecipeInput = {
  name: "short",
  version: 1,
  steps: [{ set: { tag: "heater.setpoint", value: 40 } }, { wait: { durationMs: 300 } }],
};

function system(): SimulatedSystem<HeldProcessStore> & {
  held: () => HeldProcessStore;
  scans: (n: number) => Promise<void>;
  values: (tag: string) => unknown[];
} {
  let store!: HeldProcessStore;
  const parts = simulatedSystem<HeldProcessStore>({
    tags,
    sources: { "chamber.pressure": () => 1 },
    scanGroups: { fast: { periodMs: 50 } },
    authorization: {
      roles: {
        ...defaultRoleTable({}),
        trim: [{ permission: "tag.write", targets: ["heater.setpoint"], states: ["processing", "paused"] }],
      },
    },
    machine: {
      model: "kiln",
      safeState: [
        { tag: "heater.setpoint", value: 0 },
        { tag: "valve.h2o", value: false },
      ],
    },
    store: (clock) => (store = new HeldProcessStore({ clock })),
  });
  return {
    ...parts,
    held: () => store,
    scans: async (n) => {
      for (let i = 0; i < n; i++) await parts.clock.advance(50);
    },
    values: (tag) => parts.plc.writes.filter((write) => write.tag === tag).map((write) => write.value),
  };
}

describe("a manual write issued before a process's own safe state is not sent after it (review 15f, H1)", () => {
  for (const how of ["abort", "pause then abort", "self-fail"] as const) {
    test(`${how}: the writes waiting for their audit entry are refused, nothing lands after the safe state`, async () => {
      const parts = system();
      await parts.system.start();
      await parts.clock.advance(100);
      const process = await parts.system.startRecipe(admin, how === "self-fail" ? FAILS : LONG);
      await parts.scans(how === "self-fail" ? 5 : 2);
      parts.held().auditDelayMs = 200;
      const writes = [
        parts.system.writeTag(trim, "heater.setpoint", 77).catch((error: unknown) => error),
        parts.system.writeTag(admin, "valve.h2o", true).catch((error: unknown) => error),
      ];
      await parts.clock.advance(1);
      if (how === "pause then abort") void parts.system.pauseProcess(admin).catch(() => undefined);
      const ended = how === "self-fail" ? process.finished : parts.system.abortProcess(admin);
      await parts.scans(20);
      expect((await ended).status).toBe(how === "self-fail" ? "failed" : "aborted");
      for (const refused of await Promise.all(writes)) {
        expect(refused).toMatchObject({ code: "KILN_INVALID_TRANSITION", details: { stage: "trip" } });
      }
      expect(parts.values("heater.setpoint")).toEqual([40, 0]);
      expect(parts.values("valve.h2o")).toEqual([false]);
      parts.held().auditDelayMs = 0;
      const trail = await auditTrailAfterStop(parts);
      const writeEntries = trail.filter((entry) => entry.action === "tag.write");
      // Each write: refused before its entry was committed (denied), or its intent (allowed) and
      // its own follow-up `<id>:fail`, denied: nothing was sent.
      expect(writeEntries.filter((entry) => entry.outcome === "denied")).toHaveLength(2);
      for (const intent of writeEntries.filter((entry) => entry.outcome === "allowed")) {
        expect(writeEntries.find((entry) => entry.id === `${intent.id}:fail`)).toMatchObject({ outcome: "denied" });
      }
    });
  }
});

describe("a write's state-dependent grant is judged in the state it lands in (review 15f, H1, sibling)", () => {
  test("a process completes while a trim write waits for its audit entry: refused KILN_FORBIDDEN, not written in idle", async () => {
    const parts = system();
    await parts.system.start();
    await parts.clock.advance(100);
    const process = await parts.system.startRecipe(admin, SHORT);
    await parts.scans(2);
    parts.held().auditDelayMs = 1_000;
    const write = parts.system.writeTag(trim, "heater.setpoint", 77).catch((error: unknown) => error);
    await parts.scans(30);
    expect(parts.system.machineState).toBe("idle");
    parts.held().auditDelayMs = 0;
    await parts.scans(60);
    expect((await process.finished).status).toBe("completed");
    expect(parts.system.machineState).toBe("idle");
    expect(await write).toMatchObject({ code: "KILN_FORBIDDEN" });
    expect(parts.values("heater.setpoint")).toEqual([40]);
    const trail = await auditTrailAfterStop(parts);
    expect(trail.find((entry) => entry.action === "tag.write" && entry.id.endsWith(":fail"))).toMatchObject({
      outcome: "denied",
    });
  });
});
