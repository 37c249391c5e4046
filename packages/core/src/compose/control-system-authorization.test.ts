import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { defineTags } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import type { RecipeInput } from "../recipes/recipe-schema";
import type { SafeStateWrite } from "../recipes/safe-state";
import type { Principal } from "../security/authorization";
import { auditTrailAfterStop, simulatedSystem } from "../../test/support/simulated-system";

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", range: { min: 0, max: 100 }, scanGroup: "fast" },
  "valve.tma": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
  "valve.h2o": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, scanGroup: "fast" },
  "mfc.flow": { dataType: "float64", access: "readwrite", range: { min: 0, max: 100 }, scanGroup: "fast" },
});

const operator: Principal = { id: "olga", roles: ["operator"] };
const viewer: Principal = { id: "vic", roles: ["viewer"] };
const engineer: Principal = { id: "erik", roles: ["engineer"] };
const admin: Principal = { id: "ada", roles: ["admin"] };

const VALVES_CLOSED: SafeStateWrite[] = [
  { tag: "valve.tma", value: false },
  { tag: "valve.h2o", value: false },
];

async function build(safeState: SafeStateWrite[] = VALVES_CLOSED) {
  const parts = simulatedSystem({
    tags,
    scanGroups: { fast: { periodMs: 50 } },
    machine: { safeState },
    authorization: { operatorWritableTags: ["heater.*"] },
  });
  const { clock, system } = parts;
  const starts: KilnEvents["process-start"][] = [];
  system.bus.on("process-start", (event) => void starts.push(event));
  await system.start();
  await clock.advance(100);
  return { ...parts, starts, audit: () => auditTrailAfterStop(parts) };
}

async function rejection(promise: Promise<unknown>): Promise<KilnError> {
  const error: unknown = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!KilnError.is(error)) throw new Error(`expected a KilnError, got ${String(error)}`);
  return error;
}

const sneaky: RecipeInput = {
  name: "sneaky",
  version: 1,
  steps: [{ set: { tag: "valve.tma", value: true } }, { wait: { durationMs: 10_000 } }],
};

const warmUp: RecipeInput = {
  name: "warm-up",
  version: 1,
  steps: [{ set: { tag: "heater.setpoint", value: 120 } }, { wait: { durationMs: 1_000 } }],
};

describe("a recipe's write set is authorized for the principal who starts it (issue 15, fault 1)", () => {
  test("an operator cannot write through an ad-hoc recipe a tag they may not write by hand", async () => {
    const { plc, system, starts, audit } = await build();
    await expect(system.writeTag(operator, "valve.tma", true)).rejects.toMatchObject({ code: "KILN_FORBIDDEN" });
    const error = await rejection(system.startRecipe(operator, sneaky));
    expect(error.code).toBe("KILN_FORBIDDEN");
    expect(error.message).toContain('recipe "sneaky" version 1');
    expect(error.details).toMatchObject({
      recipe: { name: "sneaky", version: 1 },
      refused: ["valve.tma", "valve.h2o"],
    });
    expect(plc.writes).toEqual([]);
    expect(starts).toEqual([]);
    expect(system.machineState).toBe("idle");
    const [, start] = await audit();
    expect(start).toMatchObject({
      principal: "olga",
      action: "recipe.start",
      target: "sneaky",
      outcome: "denied",
      newValue: { recipe: { name: "sneaky", version: 1 }, writeSet: ["valve.tma", "valve.h2o"], saved: false },
    });
    expect(start?.reason).toMatch(/^KILN_FORBIDDEN: .*"valve\.tma", "valve\.h2o"/);
  });

  test("a hostile recipe name and parameter keys are echoed escaped in the entry's newValue, values as given (adversarial review 15)", async () => {
    const { system, audit } = await build();
    const hostile = "ev\u202Eil\u0000";
    await rejection(
      system.startRecipe(operator, { ...sneaky, name: hostile } as RecipeInput, { parameters: { [hostile]: hostile } }),
    );
    await rejection(system.startRecipe(operator, sneaky, { parameters: { [`key${hostile}`]: hostile } }));
    const entries = (await audit()).filter((entry) => entry.action === "recipe.start");
    expect(entries.map((entry) => entry.target)).toEqual(["ev\\u{202E}il\\u{0000}", "sneaky"]);
    // Refused before the recipe was read: the entry holds the parameters given. Their keys are
    // identifiers, echoed escaped; their values are free text, kept as given.
    expect(entries.map((entry) => entry.newValue)).toEqual([
      { "ev\\u{202E}il\\u{0000}": hostile },
      { "keyev\\u{202E}il\\u{0000}": hostile },
    ]);
  });

  test("the machine's safe state is part of the write set: an operator's heater-only recipe still needs the valves", async () => {
    const { plc, system } = await build();
    const error = await rejection(system.startRecipe(operator, warmUp));
    expect(error.details).toMatchObject({ refused: ["valve.tma", "valve.h2o"] });
    expect(plc.writes).toEqual([]);
  });

  test("an allowed start is audited with recipe, version and write set; its process names its principal", async () => {
    const { clock, plc, system, starts, audit } = await build([]);
    const process = await system.startRecipe(operator, warmUp);
    await clock.advance(1_100);
    expect((await process.finished).status).toBe("completed");
    expect(plc.writes.map((write) => [write.tag, write.value])).toEqual([["heater.setpoint", 120]]);
    expect(starts).toEqual([
      expect.objectContaining({
        processId: process.id,
        writeSet: ["heater.setpoint"],
        startedBy: { id: "olga", roles: ["operator"] },
      }),
    ]);
    expect(await audit()).toEqual([
      expect.objectContaining({
        action: "recipe.start",
        outcome: "allowed",
        newValue: {
          recipe: { name: "warm-up", version: 1 },
          writeSet: ["heater.setpoint"],
          saved: false,
          parameters: {},
          processId: process.id,
        },
      }),
    ]);
  });

  test("a called sub-recipe's writes count: calling a saved recipe that opens a valve is refused", async () => {
    const { plc, system } = await build([]);
    await system.saveRecipe(engineer, {
      name: "purge",
      version: 1,
      steps: [{ pulse: { tag: "valve.h2o", durationMs: 100 } }],
    });
    const caller: RecipeInput = {
      name: "outer",
      version: 3,
      steps: [
        { set: { tag: "heater.setpoint", value: 100 } },
        { loop: { count: 2, steps: [{ call: { recipe: "purge", version: 1 } }] } },
      ],
    };
    const error = await rejection(system.startRecipe(operator, caller));
    expect(error.details).toMatchObject({ recipe: { name: "outer", version: 3 }, refused: ["valve.h2o"] });
    expect(plc.writes).toEqual([]);
  });

  test("a ramp on a tag the operator may not write is refused", async () => {
    const { plc, system } = await build([]);
    const ramp: RecipeInput = {
      name: "flow-ramp",
      version: 1,
      steps: [{ ramp: { tag: "mfc.flow", from: 0, to: 50, durationMs: 1_000, steps: 10 } }],
    };
    const error = await rejection(system.startRecipe(operator, ramp));
    expect(error.details).toMatchObject({ refused: ["mfc.flow"] });
    expect(plc.writes).toEqual([]);
  });

  test("a saved, unchanged version runs for an operator: its write set was authorized when an engineer saved it", async () => {
    const { clock, plc, system, audit } = await build();
    await system.saveRecipe(engineer, sneaky);
    const process = await system.startRecipe(operator, sneaky);
    await clock.advance(10_100);
    expect((await process.finished).status).toBe("completed");
    expect(plc.writes.map((write) => write.tag)).toEqual(["valve.tma"]);
    // Changing a saved version makes it ad hoc again.
    const changed = await rejection(
      system.startRecipe(operator, { ...sneaky, steps: [{ set: { tag: "valve.h2o", value: true } }] }),
    );
    expect(changed.code).toBe("KILN_FORBIDDEN");
    const entries = await audit();
    expect(
      entries.map((entry) => [entry.action, entry.outcome, (entry.newValue as { saved?: boolean }).saved]),
    ).toEqual([
      ["recipe.save", "allowed", false],
      ["recipe.start", "allowed", true],
      ["recipe.start", "denied", false],
    ]);
  });

  test("saving needs tag.write on the whole write set, so a saved version is never a way around it", async () => {
    const { system } = simulatedSystem({
      tags,
      scanGroups: { fast: { periodMs: 50 } },
      authorization: { roles: { author: ["recipe.save", { permission: "tag.write", targets: ["heater.*"] }] } },
    });
    await system.start();
    const error = await rejection(system.saveRecipe({ id: "al", roles: ["author"] }, sneaky));
    expect(error.details).toMatchObject({ refused: ["valve.tma"] });
    expect(await system.unchecked.store.recipes.get("sneaky", 1)).toBeUndefined();
    await expect(system.saveRecipe({ id: "al", roles: ["author"] }, warmUp)).resolves.toMatchObject({
      name: "warm-up",
    });
    await system.stop();
  });
});

describe("per-state write policy and what refusals say (issue 15, fault 4)", () => {
  test("operators cannot write by hand while a process runs or in maintenance; engineers can in maintenance", async () => {
    const { clock, plc, system } = await build([]);
    const process = await system.startRecipe(operator, warmUp);
    const writesBefore = plc.writes.length;
    const running = await rejection(system.writeTag(operator, "heater.setpoint", 300));
    expect(running.code).toBe("KILN_FORBIDDEN");
    expect(running.message).toContain('in machine state "processing"');
    await expect(system.writeTag(engineer, "heater.setpoint", 300)).rejects.toMatchObject({ code: "KILN_FORBIDDEN" });
    expect(plc.writes.length).toBe(writesBefore);
    await clock.advance(1_100);
    await process.finished;
    await expect(system.writeTag(operator, "heater.setpoint", 200)).resolves.toBeUndefined();
    await system.sendMachineCommand(admin, "enterMaintenance");
    await expect(system.writeTag(operator, "heater.setpoint", 210)).rejects.toMatchObject({ code: "KILN_FORBIDDEN" });
    await expect(system.writeTag(engineer, "heater.setpoint", 220)).resolves.toBeUndefined();
    expect(plc.writes.slice(-2).map((write) => write.value)).toEqual([200, 220]);
    await system.stop();
  });

  test("a principal without rights learns neither the process id nor the machine state", async () => {
    const { system } = await build([]);
    const process = await system.startRecipe(operator, warmUp);
    const errors = [
      await rejection(system.pauseProcess(viewer)),
      await rejection(system.abortProcess(viewer)),
      await rejection(system.writeTag(viewer, "heater.setpoint", 1)),
      await rejection(system.startRecipe(viewer, warmUp)),
    ];
    for (const error of errors) {
      expect(error.code).toBe("KILN_FORBIDDEN");
      const said = `${error.message} ${JSON.stringify(error.details)}`;
      expect(said).not.toContain(process.id);
      expect(said).not.toContain("processing");
      expect(said).not.toContain("running");
    }
    await system.stop();
  });
});

describe("refusals tell nothing the caller did not say (issue 15)", () => {
  test("a viewer's refused abort is audited without a made-up comment; a refused start does not name the running process", async () => {
    const { system, audit } = await build();
    const process = await system.startRecipe(admin, sneaky);
    expect((await rejection(system.abortProcess(viewer))).code).toBe("KILN_FORBIDDEN");
    const refused = await rejection(system.startRecipe(operator, warmUp));
    expect(refused.code).toBe("KILN_INVALID_TRANSITION");
    expect(refused.message).not.toContain(process.id);
    expect(JSON.stringify(refused.details)).not.toContain(process.id);
    await system.abortProcess(admin);
    const entries = await audit();
    const abort = entries.find((entry) => entry.action === "recipe.abort" && entry.outcome === "denied");
    expect(abort?.reason).not.toContain("aborted by operator");
    const start = entries.filter((entry) => entry.action === "recipe.start" && entry.outcome !== "allowed");
    expect(start.map((entry) => entry.reason ?? "").join()).not.toContain(process.id);
  });
});

describe("a grant limited to machine states authorizes a recipe's writes only in the state it starts from (issue 15, fifth review)", () => {
  async function buildWithMaintenanceGrant() {
    const parts = simulatedSystem({
      tags,
      scanGroups: { fast: { periodMs: 50 } },
      machine: { safeState: [] },
      authorization: {
        roles: {
          maint: [
            "recipe.start",
            "recipe.save",
            "machine.maintenance",
            { permission: "tag.write", targets: ["valve.*"], states: ["maintenance"] },
          ],
          admin: ["*"],
        },
      },
    });
    await parts.system.start();
    await parts.clock.advance(100);
    return parts;
  }
  const tech: Principal = { id: "tech", roles: ["maint"] };

  test("an ad-hoc recipe writing a valve is refused in idle for a principal who may write valves only in maintenance", async () => {
    const { system, plc } = await buildWithMaintenanceGrant();
    const error = await rejection(system.startRecipe(tech, sneaky));
    expect(error.code).toBe("KILN_FORBIDDEN");
    expect(error.details).toMatchObject({ refused: ["valve.tma"] });
    expect(plc.writes).toEqual([]);
    await system.stop();
  });

  test("saving it is refused too: a saved version must be one its author could run from a start state", async () => {
    const { system } = await buildWithMaintenanceGrant();
    expect((await rejection(system.saveRecipe(tech, sneaky))).code).toBe("KILN_FORBIDDEN");
    await system.stop();
  });

  test("the same grant still lets the principal write the valve by hand in maintenance", async () => {
    const { system, plc } = await buildWithMaintenanceGrant();
    await system.sendMachineCommand(tech, "enterMaintenance");
    await system.writeTag(tech, "valve.tma", true);
    expect(plc.writes.map((write) => write.tag)).toEqual(["valve.tma"]);
    await system.stop();
  });

  test("an engineer (any tag in idle) still starts and saves ad-hoc recipes", async () => {
    const { system } = await build();
    await system.saveRecipe(engineer, sneaky);
    const process = await system.startRecipe(engineer, { ...sneaky, version: 2 });
    await system.abortProcess(engineer);
    await process.finished;
    await system.stop();
  });
});

describe("startSavedRecipe: a saved version started by name and version (ISA-88 master recipe by reference)", () => {
  test("an operator runs an engineer's saved version by reference; the entry says it was saved", async () => {
    const { clock, plc, system, audit } = await build();
    await system.saveRecipe(engineer, sneaky);
    const process = await system.startSavedRecipe(operator, "sneaky", 1);
    await clock.advance(10_100);
    expect((await process.finished).status).toBe("completed");
    expect(plc.writes.map((write) => write.tag)).toEqual(["valve.tma"]);
    const entries = await audit();
    expect(entries.map((entry) => [entry.action, entry.target, entry.outcome])).toEqual([
      ["recipe.save", "sneaky", "allowed"],
      ["recipe.start", "sneaky", "allowed"],
    ]);
    expect(entries[1]!.newValue).toMatchObject({ recipe: { name: "sneaky", version: 1 }, saved: true });
  });

  test("a version that is not saved is KILN_NOT_FOUND, audited, and nothing runs", async () => {
    const { plc, system, audit } = await build();
    await system.saveRecipe(engineer, sneaky);
    const error = await rejection(system.startSavedRecipe(operator, "sneaky", 2));
    expect(error.code).toBe("KILN_NOT_FOUND");
    expect(error.message).toContain('"sneaky" version 2');
    expect(plc.writes).toEqual([]);
    // A refusal by a check before any effect, like KILN_VALIDATION (issue 15): denied, not failed.
    expect((await audit()).at(-1)).toMatchObject({ action: "recipe.start", target: "sneaky", outcome: "denied" });
  });

  test("a denied or not-found start records what was asked for: name, version and parameters", async () => {
    const { system, audit } = await build();
    await rejection(system.startSavedRecipe(viewer, "sneaky", 1, { parameters: { speed: 3 } }));
    await rejection(system.startSavedRecipe(operator, "no-such-recipe", 2));
    const starts = (await audit()).filter((entry) => entry.action === "recipe.start");
    expect(starts.map((entry) => [entry.outcome, entry.newValue])).toEqual([
      ["denied", { recipe: { name: "sneaky", version: 1 }, parameters: { speed: 3 } }],
      ["denied", { recipe: { name: "no-such-recipe", version: 2 } }],
    ]);
  });

  test("a caller without recipe.start is refused before the store is asked: existing and missing recipes look the same", async () => {
    const { system, audit } = await build();
    await system.saveRecipe(engineer, sneaky);
    const existing = await rejection(system.startSavedRecipe(viewer, "sneaky", 1));
    const missing = await rejection(system.startSavedRecipe(viewer, "no-such-recipe", 1));
    expect([existing.code, missing.code]).toEqual(["KILN_FORBIDDEN", "KILN_FORBIDDEN"]);
    expect(missing.message.replaceAll("no-such-recipe", "sneaky")).toBe(existing.message);
    const denied = (await audit()).filter((entry) => entry.outcome === "denied");
    expect(denied.map((entry) => entry.target)).toEqual(["sneaky", "no-such-recipe"]);
  });

  test("a name or version of the wrong shape is KILN_VALIDATION naming the field, audited, nothing runs", async () => {
    const { plc, system } = await build();
    const badVersion = await rejection(system.startSavedRecipe(operator, "sneaky", 1.5));
    expect(badVersion.code).toBe("KILN_VALIDATION");
    expect(badVersion.details).toMatchObject({ issues: [{ path: "version" }] });
    const badName = await rejection(system.startSavedRecipe(operator, "" as string, 1));
    expect(badName.details).toMatchObject({ issues: [{ path: "name" }] });
    expect(plc.writes).toEqual([]);
  });
});

describe("northbound servers ask the system's role table and audit their own refusals (issue 20)", () => {
  test("can() answers by the system's role table in the machine's current state, and records nothing", async () => {
    const { system, audit } = await build();
    expect(system.can(viewer, "read", "valve.tma")).toBe(true);
    expect(system.can({ id: "nobody", roles: [] }, "read", "valve.tma")).toBe(false);
    // Operators write heater.* only in idle (the default table's state-limited grant).
    expect(system.machineState).toBe("idle");
    expect(system.can(operator, "tag.write", "heater.setpoint")).toBe(true);
    expect(system.can(operator, "tag.write", "valve.tma")).toBe(false);
    expect(system.can({ id: "", roles: ["admin"] } as Principal, "read", "valve.tma")).toBe(false);
    expect(await audit()).toEqual([]);
  });

  test("refuseCommand audits one entry naming principal, action, target and reason, rejects with the reason itself, and does nothing else", async () => {
    const { system, plc, audit } = await build();
    const reason = new KilnError("KILN_NOT_SUPPORTED", "Confirm: no confirmed state");
    const refused = await rejection(
      system.refuseCommand(
        { ...operator, source: "opcua:test session 1" },
        { permission: "alarm.acknowledge", action: "alarm.confirm", target: "chamber.pressure:HI", reason },
      ),
    );
    expect(refused).toBe(reason);
    // A principal without the permission is refused KILN_FORBIDDEN, audited denied.
    const forbidden = await rejection(
      system.refuseCommand(viewer, {
        permission: "tag.write",
        target: "valve.tma",
        reason: new KilnError("KILN_VALIDATION", "x"),
      }),
    );
    expect(forbidden.code).toBe("KILN_FORBIDDEN");
    expect(plc.writes).toEqual([]);
    expect(await audit()).toMatchObject([
      {
        principal: "olga",
        source: "opcua:test session 1",
        action: "alarm.confirm",
        target: "chamber.pressure:HI",
        outcome: "failed",
        reason: expect.stringMatching(/KILN_NOT_SUPPORTED.*no confirmed state/),
      },
      {
        principal: "vic",
        action: "tag.write",
        target: "valve.tma",
        outcome: "denied",
        reason: expect.stringMatching(/KILN_FORBIDDEN/),
      },
    ]);
  });

  test("refuseCommand's comment reaches the entry's reason even when the principal lacks the permission", async () => {
    const { system, audit } = await build();
    const forbidden = await rejection(
      system.refuseCommand(viewer, {
        permission: "tag.write",
        target: "valve.tma",
        reason: new KilnError("KILN_VALIDATION", "x"),
        comment: "3 operations in one call: valve.tma, valve.tmb, valve.tmc",
      }),
    );
    expect(forbidden.code).toBe("KILN_FORBIDDEN");
    const refused = await rejection(
      system.refuseCommand(operator, {
        permission: "alarm.acknowledge",
        target: "chamber.pressure:HI",
        reason: new KilnError("KILN_VALIDATION", "indexRange"),
        comment: "2 operations in one call",
      }),
    );
    expect(refused.code).toBe("KILN_VALIDATION");
    expect(await audit()).toMatchObject([
      {
        principal: "vic",
        outcome: "denied",
        reason: expect.stringMatching(/KILN_FORBIDDEN.*3 operations in one call: valve.tma/),
      },
      { principal: "olga", outcome: "denied", reason: expect.stringMatching(/indexRange.*2 operations in one call/) },
    ]);
  });
});

describe("options and refusals of the audited commands (issue 15, adversarial pass)", () => {
  const create = (extra: Record<string, unknown>) => () =>
    simulatedSystem({ tags, scanGroups: { fast: { periodMs: 50 } }, ...extra });
  const issues = (make: () => unknown) => {
    try {
      make();
    } catch (error) {
      if (KilnError.is(error) && error.code === "KILN_VALIDATION") {
        return (error.details as { issues: { path: string }[] }).issues.map((issue) => issue.path);
      }
      throw error;
    }
    throw new Error("expected KILN_VALIDATION");
  };

  test("a misspelt grant key in authorization.roles is refused by its path; a string of patterns too", () => {
    expect(
      issues(create({ authorization: { roles: { tech: [{ permission: "tag.write", target: ["heater.*"] }] } } })),
    ).toEqual(["authorization.roles.tech[0].target"]);
    expect(
      issues(create({ authorization: { roles: { tech: [{ permission: "tag.write", targets: "heater.*" }, null] } } })),
    ).toEqual(["authorization.roles.tech[0].targets", "authorization.roles.tech[1]"]);
  });

  test("a misspelt audit.runWithoutDurableAudit action is refused, naming the entry", () => {
    expect(issues(create({ audit: { runWithoutDurableAudit: ["recipe.abort", "alarm.acknowlege"] } }))).toEqual([
      "audit.runWithoutDurableAudit[1]",
    ]);
  });

  test("KILN_NOT_FOUND refusals (ack of an unknown alarm, abort and pause with no process) are recorded denied", async () => {
    const { system, audit } = await build();
    const codes = [
      (await rejection(system.acknowledgeAlarm(operator, "no-such:alarm"))).code,
      (await rejection(system.abortProcess(operator))).code,
      (await rejection(system.pauseProcess(operator))).code,
    ];
    expect(codes).toEqual(["KILN_NOT_FOUND", "KILN_NOT_FOUND", "KILN_NOT_FOUND"]);
    expect((await audit()).map((entry) => [entry.action, entry.outcome])).toEqual([
      ["alarm.acknowledge", "denied"],
      ["recipe.abort", "denied"],
      ["recipe.pause", "denied"],
    ]);
  });
});
