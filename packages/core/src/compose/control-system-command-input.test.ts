import { describe, expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import type { RecipeInput } from "../recipes/recipe-schema";
import { defaultRoleTable } from "../security/authorization";
import { auditTrailAfterStop, simulatedSystem } from "../../test/support/simulated-system";

const tags = defineTags({
  "valve.tma": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, scanGroup: "fast" },
});

const author = { id: "amy", roles: ["author"] };
const benign: RecipeInput["steps"] = [{ set: { tag: "heater.setpoint", value: 100 } }];
const evil: RecipeInput["steps"] = [{ set: { tag: "valve.tma", value: true } }, { wait: { durationMs: 10_000 } }];

async function build() {
  const parts = simulatedSystem({
    tags,
    scanGroups: { fast: { periodMs: 50 } },
    authorization: {
      roles: {
        ...defaultRoleTable({ operatorWritableTags: ["heater.*"] }),
        author: ["read", "recipe.save", "recipe.start", { permission: "tag.write", targets: ["heater.*"] }],
      },
    },
  });
  await parts.system.start();
  await parts.clock.advance(100);
  return { ...parts, audit: () => auditTrailAfterStop(parts) };
}

describe("a command uses what it was given at the call, read once (issue 15, third review)", () => {
  test("saveRecipe stores the recipe it authorized, not what a getter answers on a later read", async () => {
    const { system, store } = await build();
    let reads = 0;
    const recipe = {
      name: "r",
      version: 1,
      get steps() {
        return ++reads <= 1 ? benign : evil;
      },
    };
    const saved = await system.saveRecipe(author, recipe);
    expect(reads).toBe(1);
    expect(saved.definition["steps"]).toEqual(benign);
    expect((await store.recipes.get("r", 1))?.definition["steps"]).toEqual(benign);
  });

  test("saveRecipe ignores a mutation of the recipe after the call", async () => {
    const { system, store } = await build();
    const draft: RecipeInput = { name: "m", version: 1, steps: [...benign] };
    const saving = system.saveRecipe(author, draft);
    (draft as { steps: unknown }).steps = evil;
    await saving;
    expect((await store.recipes.get("m", 1))?.definition["steps"]).toEqual(benign);
  });

  test("a principal changed after writeTag() returns is not the one authorized and audited", async () => {
    const { system, plc, audit } = await build();
    const session = { id: "vic", roles: ["viewer"] };
    const pending = system.writeTag(session, "valve.tma", true);
    session.id = "ada";
    session.roles = ["admin"];
    await expect(pending).rejects.toMatchObject({ code: "KILN_FORBIDDEN" });
    expect(plc.writes).toEqual([]);
    expect((await audit()).map((entry) => [entry.principal, entry.roles, entry.outcome])).toEqual([
      ["vic", ["viewer"], "denied"],
    ]);
  });

  test("a recipe queued behind a write starts as it was given, though changed while it waited", async () => {
    const { system, plc, clock } = await build();
    const admin = { id: "ada", roles: ["admin"] };
    const recipe: RecipeInput = { name: "q", version: 1, steps: [{ set: { tag: "heater.setpoint", value: 7 } }] };
    const write = system.writeTag(admin, "heater.setpoint", 5);
    const start = system.startRecipe(author, recipe);
    (recipe as { steps: unknown }).steps = evil;
    await write;
    const process = await start;
    await clock.advance(100);
    await process.finished;
    expect(plc.writes.map((entry) => entry.tag)).not.toContain("valve.tma");
  });

  test("a recipe that cannot be read (a throwing getter) is refused with KILN_VALIDATION and recorded denied", async () => {
    const { system, audit } = await build();
    const recipe = {
      name: "bad",
      version: 1,
      get steps(): unknown[] {
        throw new Error("boom");
      },
    };
    await expect(system.saveRecipe(author, recipe as never)).rejects.toMatchObject({ code: "KILN_VALIDATION" });
    expect((await audit()).map((entry) => [entry.action, entry.outcome])).toEqual([["recipe.save", "denied"]]);
  });
});

describe("a recipe without a usable name", () => {
  test("is refused by the recipe's own validation (path name), audited against the target (recipe)", async () => {
    const { system, audit } = await build();
    const error: unknown = await system
      .startRecipe(author, { name: "", version: 1, steps: benign })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "KILN_VALIDATION", issues: [expect.objectContaining({ path: "name" })] });
    expect((await audit()).map((entry) => [entry.target, entry.outcome])).toEqual([["(recipe)", "denied"]]);
  });
});

describe("every entry has a source (IEC 62443-3-3 CR 2.8)", () => {
  test("without audit.source or a principal's source, entries name the system: kiln:<machineId>", async () => {
    const parts = await build();
    await parts.system.writeTag({ id: "ada", roles: ["admin"] }, "heater.setpoint", 5);
    await parts.system.writeTag({ id: "ada", roles: ["admin"], source: "hmi-2/s1" }, "heater.setpoint", 6);
    const trail = await parts.audit();
    expect(trail.map((entry) => entry.source)).toEqual(["kiln:ald-1", "hmi-2/s1"]);
  });
});

describe("a write fits its tag's type before it reaches the device (issue 15, fault 1)", () => {
  const floats = defineTags({
    "f.free": { dataType: "float32", access: "readwrite" },
    "f.wide": { dataType: "float32", access: "readwrite", range: { min: -1e40, max: 1e40 } },
  });

  test("a finite value beyond float32's range is refused KILN_VALIDATION, audited denied, never written", async () => {
    const parts = simulatedSystem({ tags: floats });
    await parts.system.start();
    const admin = { id: "ada", roles: ["admin"] };
    await expect(parts.system.writeTag(admin, "f.free", 3.5e39)).rejects.toMatchObject({ code: "KILN_VALIDATION" });
    await expect(parts.system.writeTag(admin, "f.wide", 3.5e39)).rejects.toMatchObject({ code: "KILN_VALIDATION" });
    await parts.system.writeTag(admin, "f.free", 1.5);
    expect(parts.plc.writes.map((w) => w.value)).toEqual([1.5]);
    const trail = await auditTrailAfterStop(parts);
    expect(trail.filter((e) => e.action === "tag.write").map((e) => e.outcome)).toEqual([
      "denied",
      "denied",
      "allowed",
    ]);
  });
});
