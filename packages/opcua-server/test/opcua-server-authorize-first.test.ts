import { defineTags } from "@kiln/core";
import type { AuditEntry } from "@kiln/core/driver-kit";
import { type CallMethodResult, DataType, StatusCodes } from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { connect, makeTestPki, servedSystem, type ServedTestSystem, type TestPki, user } from "./support/opcua-fixture";

// Issue 20, adversarial pass F5: a viewer's StartRecipe with a recipe name no command accepts
// (5000 characters) was answered and audited as a validation failure (KILN_VALIDATION), not as
// the authorization refusal it is: the target's form was checked before the principal. ADR 0007.

const tags = defineTags({
  "chamber.pressure": { dataType: "float64" },
  "valve.ald1": { dataType: "bool", access: "readwrite" },
});

const OVERSIZED = "r".repeat(5000);

let pki: TestPki;
let served: ServedTestSystem;
let operator: Awaited<ReturnType<typeof connect>>;
let viewer: Awaited<ReturnType<typeof connect>>;

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({ tags, pki, system: { authorization: { operatorWritableTags: ["valve.*"] } } });
  operator = await connect(served.server, pki.trusted, user("olga"));
  viewer = await connect(served.server, pki.trusted, user("vic"));
});

afterAll(async () => {
  await Promise.all([operator?.close(), viewer?.close()]);
  await served?.dispose();
  await pki?.dispose();
});

function machineNode(name?: string): string {
  return `ns=${served.server.namespaceIndex};s=@Machine${name === undefined ? "" : `.${name}`}`;
}

function startRecipe(client: Awaited<ReturnType<typeof connect>>, name: string): Promise<CallMethodResult> {
  return client.session.call({
    objectId: machineNode(),
    methodId: machineNode("StartRecipe"),
    inputArguments: [
      { dataType: DataType.String, value: name },
      { dataType: DataType.UInt32, value: 1 },
    ],
  });
}

async function audit(principal: string): Promise<AuditEntry[]> {
  return (await served.store.audit.query({ from: 0, to: Date.now() + 1 })).filter(
    (entry) => entry.action === "recipe.start" && entry.principal === principal,
  );
}

describe("OpcuaServer: a principal without the right is refused before its arguments are validated (F5)", () => {
  test("a viewer's StartRecipe with a 5000-character name: BadUserAccessDenied, audited KILN_FORBIDDEN with the name bounded", async () => {
    const result = await startRecipe(viewer, OVERSIZED);
    expect(result.statusCode).toBe(StatusCodes.BadUserAccessDenied);
    expect(served.plc.writes).toEqual([]);
    const entries = await audit("vic");
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ outcome: "denied", target: `${"r".repeat(256)}…(truncated, 5000 chars)` });
    expect(entries[0]!.reason).toMatch(/^KILN_FORBIDDEN: /);
    expect(entries[0]!.reason).not.toContain("KILN_VALIDATION");
    expect(entries[0]!.reason!.length).toBeLessThan(2100);
  });

  test("a viewer's StartRecipe naming a recipe with a NUL and a right-to-left override: BadUserAccessDenied, audited KILN_FORBIDDEN with them escaped", async () => {
    const result = await startRecipe(viewer, "purge\u202E\u0000");
    expect(result.statusCode).toBe(StatusCodes.BadUserAccessDenied);
    const entry = (await audit("vic")).at(-1);
    expect(entry).toMatchObject({ outcome: "denied", target: "purge\\u{202E}\\u{0000}" });
    expect(entry!.reason).toMatch(/^KILN_FORBIDDEN: /);
    expect(entry!.reason).not.toMatch(/[\p{Cc}\p{Cf}]/u);
  });

  test("the operator (who holds recipe.start) is told the name is invalid: BadInvalidArgument, audited KILN_VALIDATION", async () => {
    const result = await startRecipe(operator, OVERSIZED);
    expect(result.statusCode).toBe(StatusCodes.BadInvalidArgument);
    expect(served.plc.writes).toEqual([]);
    const [entry] = await audit("olga");
    expect(entry).toMatchObject({ outcome: "denied", target: `${"r".repeat(256)}…(truncated, 5000 chars)` });
    expect(entry!.reason).toMatch(/^KILN_VALIDATION: .*target: must be at most 256 characters/);
  });
});
