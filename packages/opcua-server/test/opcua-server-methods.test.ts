import { defineTags, type RecipeInput } from "@kiln/core";
import type { AuditEntry } from "@kiln/core/driver-kit";
import { AttributeIds, type CallMethodResult, DataType, StatusCodes } from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  connect,
  makeTestPki,
  servedSystem,
  type ServedTestSystem,
  type TestPki,
  user,
  waitFor,
} from "./support/opcua-fixture";

const tags = defineTags({
  "chamber.pressure": { dataType: "float64" },
  "valve.ald1": { dataType: "bool", access: "readwrite" },
});

const purge: RecipeInput = {
  name: "purge",
  version: 1,
  steps: [
    { set: { tag: "valve.ald1", value: true } },
    // short steps: a pause is taken at the next step boundary
    { loop: { count: 600, steps: [{ wait: { durationMs: 100 } }] } },
    { set: { tag: "valve.ald1", value: false } },
  ],
};

/** One long step: a pause waits for its end. */
const soak: RecipeInput = { name: "soak", version: 1, steps: [{ wait: { durationMs: 60_000 } }] };

let pki: TestPki;
let served: ServedTestSystem;
let operator: Awaited<ReturnType<typeof connect>>;
let viewer: Awaited<ReturnType<typeof connect>>;
let admin: Awaited<ReturnType<typeof connect>>;

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({
    tags,
    pki,
    system: { authorization: { operatorWritableTags: ["valve.*"] } },
  });
  // Master recipes saved by an engineer; StartRecipe runs them by name and version.
  for (const recipe of [purge, soak]) await served.system.saveRecipe({ id: "erik", roles: ["engineer"] }, recipe);
  operator = await connect(served.server, pki.trusted, user("olga"));
  viewer = await connect(served.server, pki.trusted, user("vic"));
  admin = await connect(served.server, pki.trusted, user("ada"));
});

afterAll(async () => {
  await Promise.all([operator?.close(), viewer?.close(), admin?.close()]);
  await served?.dispose();
  await pki?.dispose();
});

function machineNode(name?: string): string {
  return `ns=${served.server.namespaceIndex};s=@Machine${name === undefined ? "" : `.${name}`}`;
}

function call(
  client: Awaited<ReturnType<typeof connect>>,
  method: string,
  inputArguments: { dataType: DataType; value: unknown }[] = [],
): Promise<CallMethodResult> {
  return client.session.call({ objectId: machineNode(), methodId: machineNode(method), inputArguments });
}

async function machineVariable(name: string): Promise<string> {
  const value = await viewer.session.read({ nodeId: machineNode(name), attributeId: AttributeIds.Value });
  return value.value.value as string;
}

async function audit(action: string): Promise<AuditEntry[]> {
  return (await served.store.audit.query({ from: 0, to: Date.now() + 1 })).filter((entry) => entry.action === action);
}

describe("OpcuaServer machine Methods go through the checked command path", () => {
  test("Machine.State shows the machine state; a viewer's StartRecipe is refused, audited, and writes nothing", async () => {
    expect(await machineVariable("State")).toBe("idle");
    const result = await call(viewer, "StartRecipe", [
      { dataType: DataType.String, value: "purge" },
      { dataType: DataType.UInt32, value: 1 },
    ]);
    expect(result.statusCode).toBe(StatusCodes.BadUserAccessDenied);
    expect(served.plc.writes).toEqual([]);
    const entries = await audit("recipe.start");
    expect(entries).toMatchObject([{ principal: "vic", outcome: "denied", target: "purge" }]);
    expect(entries[0]!.source).toMatch(/^opcua:session \S+ from [^ ]+ client urn:kiln-test:scada$/);
    // A recipe that does not exist looks the same to a caller without rights: nothing tells them which exist.
    const missing = await call(viewer, "StartRecipe", [
      { dataType: DataType.String, value: "no-such-recipe" },
      { dataType: DataType.UInt32, value: 1 },
    ]);
    expect(missing.statusCode).toBe(StatusCodes.BadUserAccessDenied);
    expect(await audit("recipe.start")).toMatchObject([
      { principal: "vic", outcome: "denied", target: "purge" },
      { principal: "vic", outcome: "denied", target: "no-such-recipe" },
    ]);
  });

  test("a version that is not saved answers BadNotFound, audited; Pause with no process BadNotFound", async () => {
    const unknown = await call(operator, "StartRecipe", [
      { dataType: DataType.String, value: "purge" },
      { dataType: DataType.UInt32, value: 9 },
    ]);
    expect(unknown.statusCode).toBe(StatusCodes.BadNotFound);
    expect((await audit("recipe.start")).at(-1)).toMatchObject({
      principal: "olga",
      target: "purge",
      outcome: "denied",
    });
    expect(served.plc.writes).toEqual([]);
    expect((await call(operator, "Pause")).statusCode).toBe(StatusCodes.BadNotFound);
  });

  test("StartRecipe without a recipe name (a null String) answers BadInvalidArgument and is audited denied", async () => {
    const result = await call(operator, "StartRecipe", [
      { dataType: DataType.String, value: null },
      { dataType: DataType.UInt32, value: 1 },
    ]);
    expect(result.statusCode).toBe(StatusCodes.BadInvalidArgument);
    const entry = (await audit("recipe.start")).at(-1);
    expect(entry).toMatchObject({ principal: "olga", outcome: "denied" });
    expect(entry!.reason).toMatch(/KILN_VALIDATION.*recipe name/);
    expect(served.plc.writes).toEqual([]);
  });

  test("a right-typed wrong value (StartRecipe version 0, a recipe name holding NUL) answers BadInvalidArgument, not BadTypeMismatch", async () => {
    const version0 = await call(operator, "StartRecipe", [
      { dataType: DataType.String, value: "purge" },
      { dataType: DataType.UInt32, value: 0 },
    ]);
    expect(version0.statusCode).toBe(StatusCodes.BadInvalidArgument);
    const nul = await call(operator, "StartRecipe", [
      { dataType: DataType.String, value: "pur\u0000ge" },
      { dataType: DataType.UInt32, value: 1 },
    ]);
    expect(nul.statusCode).toBe(StatusCodes.BadInvalidArgument);
    expect(served.plc.writes).toEqual([]);
  });

  test("an operator starts, pauses, resumes and aborts a recipe; the machine variables follow; Resume while running is BadInvalidState", async () => {
    const started = await call(operator, "StartRecipe", [
      { dataType: DataType.String, value: "purge" },
      { dataType: DataType.UInt32, value: 1 },
    ]);
    expect(started.statusCode).toBe(StatusCodes.Good);
    const processId = started.outputArguments![0]!.value as string;
    expect(processId).not.toBe("");
    await waitFor(
      () => served.plc.writes.some((write) => write.tag === "valve.ald1" && write.value === true),
      "valve open",
    );
    expect(await machineVariable("ProcessId")).toBe(processId);
    expect(await machineVariable("Recipe")).toBe("purge v1");
    expect(await machineVariable("State")).toBe(served.system.machineState);
    expect(await machineVariable("ProcessStatus")).toBe("running");

    expect((await call(operator, "Resume")).statusCode).toBe(StatusCodes.BadInvalidState);
    expect((await call(operator, "Pause")).statusCode).toBe(StatusCodes.Good);
    expect(served.system.machineState).toBe("paused");
    expect(await machineVariable("ProcessStatus")).toBe("paused");
    expect((await call(operator, "Resume")).statusCode).toBe(StatusCodes.Good);
    const aborted = await call(operator, "Abort", [{ dataType: DataType.String, value: "operator stop" }]);
    expect(aborted.statusCode).toBe(StatusCodes.Good);
    expect(await machineVariable("ProcessStatus")).toBe("aborted");
    expect(await machineVariable("ProcessId")).toBe("");

    const start = (await audit("recipe.start")).filter((entry) => entry.outcome === "allowed");
    expect(start).toMatchObject([{ principal: "olga", target: "purge" }]);
    expect((await audit("recipe.resume")).map((entry) => entry.outcome)).toEqual(["denied", "allowed"]);
    expect(await audit("recipe.abort")).toMatchObject([{ principal: "olga", outcome: "allowed" }]);
  });

  test("SendCommand is refused for an operator and done for an admin, who gets the new state", async () => {
    await waitFor(() => served.system.machineState === "idle", "idle after the abort");
    const refused = await call(operator, "SendCommand", [{ dataType: DataType.String, value: "enterMaintenance" }]);
    expect(refused.statusCode).toBe(StatusCodes.BadUserAccessDenied);
    const done = await call(admin, "SendCommand", [{ dataType: DataType.String, value: "enterMaintenance" }]);
    expect(done.statusCode).toBe(StatusCodes.Good);
    expect(done.outputArguments![0]!.value).toBe("maintenance");
    expect(await machineVariable("State")).toBe("maintenance");
    const invalid = await call(admin, "SendCommand", [{ dataType: DataType.String, value: "start" }]);
    expect(invalid.statusCode).toBe(StatusCodes.BadInvalidState);
    expect(
      (await call(admin, "SendCommand", [{ dataType: DataType.String, value: "exitMaintenance" }])).statusCode,
    ).toBe(StatusCodes.Good);
  });

  test("a Pause not taken within a second (a long step) answers GoodCompletesAsynchronously; ProcessStatus shows it later", async () => {
    await call(admin, "SendCommand", [{ dataType: DataType.String, value: "exitMaintenance" }]);
    const started = await call(operator, "StartRecipe", [
      { dataType: DataType.String, value: "soak" },
      { dataType: DataType.UInt32, value: 1 },
    ]);
    expect(started.statusCode).toBe(StatusCodes.Good);
    const paused = await call(operator, "Pause");
    expect(paused.statusCode).toBe(StatusCodes.GoodCompletesAsynchronously);
    expect(await machineVariable("ProcessStatus")).toBe("running");
    expect((await call(operator, "Abort", [{ dataType: DataType.String, value: "" }])).statusCode).toBe(
      StatusCodes.Good,
    );
    expect(await machineVariable("ProcessStatus")).toBe("aborted");
  });
});
