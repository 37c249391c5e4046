import { defineTags } from "@kiln/core";
import type { AuditEntry } from "@kiln/core/driver-kit";
import {
  AttributeIds,
  DataType,
  StatusCodes,
  type StatusCode,
  VariantArrayType,
  type VariantOptions,
  type WriteValueOptions,
} from "node-opcua-client";
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

/** A WriteValue whose IndexRange is given as text (node-opcua parses it; its type wants a NumericRange). */
type WriteValue = Parameters<Awaited<ReturnType<typeof connect>>["session"]["write"]>[0] & object;
function withIndexRange(write: Record<string, unknown>, indexRange: string): WriteValue {
  return { ...write, indexRange } as unknown as WriteValue;
}

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", unit: "mbar" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", unit: "°C", range: { min: 0, max: 400 } },
  "valve.ald1": { dataType: "bool", access: "readwrite" },
  "cycle.total": { dataType: "uint64", access: "readwrite" },
  "cycle.limit": { dataType: "uint64", access: "readwrite" },
  "cycle.offset": { dataType: "int64", access: "readwrite" },
  "cycle.step": { dataType: "int32", access: "readwrite" },
  "heater.ramp": { dataType: "float64", access: "readwrite", range: { min: 0, max: 100 } },
  "recipe.note": { dataType: "string", access: "readwrite" },
});

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
    // Operators may write the heater and the valves, and (to reach the access check) the pressure.
    system: { authorization: { operatorWritableTags: ["heater.*", "valve.*", "cycle.*", "chamber.pressure"] } },
  });
  operator = await connect(served.server, pki.trusted, user("olga"));
  viewer = await connect(served.server, pki.trusted, user("vic"));
  admin = await connect(served.server, pki.trusted, user("ada"));
});

afterAll(async () => {
  await operator?.close();
  await viewer?.close();
  await admin?.close();
  await served?.dispose();
  await pki?.dispose();
});

function write(client: Awaited<ReturnType<typeof connect>>, tag: string, value: VariantOptions): Promise<StatusCode> {
  return client.session.write({
    nodeId: served.server.nodeIdOf(tag),
    attributeId: AttributeIds.Value,
    value: { value },
  });
}

/** The audit entries recorded for `tag`, once there are `count` of them. */
async function auditEntries(tag: string, count: number): Promise<AuditEntry[]> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const entries = (await served.store.audit.query({ from: 0, to: Date.now() + 1 })).filter(
      (entry) => entry.target === tag,
    );
    if (entries.length >= count || Date.now() > deadline) return entries;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("OpcuaServer writes through Kiln's checked command path", () => {
  test("an operator's write reaches the PLC, is audited allowed with the OPC UA session as source, and comes back through the CVT", async () => {
    const status = await write(operator, "heater.setpoint", { dataType: DataType.Double, value: 250 });
    expect(status).toBe(StatusCodes.Good);
    expect(served.plc.writes).toContainEqual(expect.objectContaining({ tag: "heater.setpoint", value: 250 }));
    const [entry] = await auditEntries("heater.setpoint", 1);
    expect(entry).toMatchObject({
      principal: "olga",
      roles: ["operator"],
      action: "tag.write",
      outcome: "allowed",
      newValue: 250,
    });
    expect(entry!.source).toMatch(/^opcua:session ns=1;\S+ from [^ ]+ client urn:kiln-test:scada$/);
    await waitFor(() => served.system.cvt.value("heater.setpoint") === 250, "the written value in the CVT");
    const read = await viewer.session.read({
      nodeId: served.server.nodeIdOf("heater.setpoint"),
      attributeId: AttributeIds.Value,
    });
    expect(read.value.value).toBe(250);
  });

  test("a viewer's write answers BadUserAccessDenied, reaches no PLC, and is audited denied", async () => {
    const before = served.plc.writes.length;
    const status = await write(viewer, "valve.ald1", { dataType: DataType.Boolean, value: true });
    expect(status).toBe(StatusCodes.BadUserAccessDenied);
    expect(served.plc.writes.length).toBe(before);
    const [entry] = await auditEntries("valve.ald1", 1);
    expect(entry).toMatchObject({ principal: "vic", outcome: "denied", action: "tag.write" });
    expect(entry!.source).toMatch(/^opcua:/);
  });

  test("out of range answers BadOutOfRange, a read-only tag BadNotWritable, a wrong type BadTypeMismatch; none reaches the PLC, all audited denied", async () => {
    const before = served.plc.writes.length;
    expect(await write(operator, "heater.setpoint", { dataType: DataType.Double, value: 401 })).toBe(
      StatusCodes.BadOutOfRange,
    );
    expect(await write(operator, "chamber.pressure", { dataType: DataType.Double, value: 1 })).toBe(
      StatusCodes.BadNotWritable,
    );
    expect(await write(operator, "valve.ald1", { dataType: DataType.String, value: "open" })).toBe(
      StatusCodes.BadTypeMismatch,
    );
    expect(served.plc.writes.length).toBe(before);
    const setpoint = await auditEntries("heater.setpoint", 2);
    expect(setpoint.at(-1)).toMatchObject({ principal: "olga", outcome: "denied", newValue: 401 });
    expect(await auditEntries("chamber.pressure", 1)).toMatchObject([{ principal: "olga", outcome: "denied" }]);
    const valve = await auditEntries("valve.ald1", 2);
    expect(valve.at(-1)).toMatchObject({ principal: "olga", outcome: "denied" });
    expect(valve.at(-1)?.reason).toMatch(/KILN_VALIDATION.*scalar Boolean.*String/);
  });

  test("a Variant of another DataType or an array is refused BadTypeMismatch, never converted: Int64 -1 to uint64, String[2] to int64, UInt32 2^31 to int32", async () => {
    const before = served.plc.writes.length;
    const refused: [string, VariantOptions][] = [
      [
        "cycle.limit",
        { dataType: DataType.Int64, arrayType: VariantArrayType.Scalar, value: [0xffffffff, 0xffffffff] },
      ],
      ["cycle.offset", { dataType: DataType.String, arrayType: VariantArrayType.Array, value: ["0", "5"] }],
      ["cycle.step", { dataType: DataType.UInt32, value: 2 ** 31 }],
      ["cycle.step", { dataType: DataType.Int32, arrayType: VariantArrayType.Array, value: [5] }],
    ];
    for (const [tag, value] of refused) {
      expect(await write(operator, tag, value), `${tag} ${JSON.stringify(value)}`).toBe(StatusCodes.BadTypeMismatch);
    }
    expect(served.plc.writes.length).toBe(before);
    expect(await auditEntries("cycle.step", 2)).toMatchObject([
      { principal: "olga", outcome: "denied", reason: expect.stringMatching(/scalar Int32.*UInt32/) },
      { principal: "olga", outcome: "denied", reason: expect.stringMatching(/scalar Int32.*array Int32/) },
    ]);
    expect(await auditEntries("cycle.offset", 1)).toMatchObject([{ outcome: "denied" }]);
    // The exact DataType is taken: -1 as Int64 to the int64 tag.
    expect(
      await write(operator, "cycle.offset", {
        dataType: DataType.Int64,
        arrayType: VariantArrayType.Scalar,
        value: [0xffffffff, 0xffffffff],
      }),
    ).toBe(StatusCodes.Good);
    expect(served.plc.writes.at(-1)).toMatchObject({ tag: "cycle.offset", value: -1n });
  });

  test("every attribute but a tag's Value, and every other node, is read-only: EURange, Historizing, Description refused and audited, nothing changed", async () => {
    const setpoint = served.server.nodeIdOf("heater.setpoint");
    const euRange = `ns=${served.server.namespaceIndex};s=heater.setpoint|EURange`;
    const range = await operator.session.read({ nodeId: euRange, attributeId: AttributeIds.Value });
    expect(range.statusCode).toBe(StatusCodes.Good);
    const attempts: [Awaited<ReturnType<typeof connect>>, WriteValueOptions][] = [
      [viewer, { nodeId: euRange, attributeId: AttributeIds.Value, value: { value: range.value } }],
      [admin, { nodeId: euRange, attributeId: AttributeIds.Value, value: { value: range.value } }],
      [
        viewer,
        {
          nodeId: setpoint,
          attributeId: AttributeIds.Historizing,
          value: { value: { dataType: DataType.Boolean, value: false } },
        },
      ],
      [
        admin,
        {
          nodeId: setpoint,
          attributeId: AttributeIds.Description,
          value: { value: { dataType: DataType.LocalizedText, value: { text: "x" } } },
        },
      ],
    ];
    const codes = [];
    for (const [client, writeValue] of attempts) codes.push(await client.session.write(writeValue));
    expect(codes).toEqual([
      StatusCodes.BadUserAccessDenied,
      StatusCodes.BadNotWritable,
      StatusCodes.BadUserAccessDenied,
      StatusCodes.BadNotWritable,
    ]);
    const historizing = await operator.session.read({ nodeId: setpoint, attributeId: AttributeIds.Historizing });
    expect(historizing.value.value).toBe(true);
    const entries = (await served.store.audit.query({ from: 0, to: Date.now() + 1 })).filter((entry) =>
      entry.target.startsWith(`ns=${served.server.namespaceIndex};s=heater.setpoint`),
    );
    expect(entries.map((entry) => [entry.principal, entry.outcome])).toEqual([
      ["vic", "denied"],
      ["ada", "denied"],
      ["vic", "denied"],
      ["ada", "denied"],
    ]);
  });

  test("a Write with an IndexRange answers BadIndexRangeInvalid, reaches no PLC, and is audited denied naming principal, tag and reason", async () => {
    const before = served.plc.writes.length;
    const status = await operator.session.write(
      withIndexRange(
        {
          nodeId: served.server.nodeIdOf("cycle.total"),
          attributeId: AttributeIds.Value,
          value: { value: { dataType: DataType.UInt64, arrayType: VariantArrayType.Scalar, value: [0, 7] } },
        },
        "0",
      ),
    );
    expect(status).toBe(StatusCodes.BadIndexRangeInvalid);
    expect(served.plc.writes.length).toBe(before);
    const [entry] = await auditEntries("cycle.total", 1);
    expect(entry).toMatchObject({ principal: "olga", action: "tag.write", target: "cycle.total", outcome: "denied" });
    expect(entry!.reason).toMatch(/KILN_VALIDATION.*indexRange/s);
    expect(entry!.source).toMatch(/^opcua:session \S+ from [^ ]+ client urn:kiln-test:scada$/);
  });

  test("a viewer's Write with an IndexRange is refused BadUserAccessDenied (authorized before the range is judged), audited denied", async () => {
    const status = await viewer.session.write(
      withIndexRange(
        {
          nodeId: served.server.nodeIdOf("heater.setpoint"),
          attributeId: AttributeIds.Value,
          value: { value: { dataType: DataType.Double, value: 5 } },
        },
        "0:1",
      ),
    );
    expect(status).toBe(StatusCodes.BadUserAccessDenied);
    const entries = await auditEntries("heater.setpoint", 1);
    expect(entries.filter((entry) => entry.principal === "vic")).toMatchObject([
      { action: "tag.write", outcome: "denied", reason: expect.stringMatching(/KILN_FORBIDDEN/) },
    ]);
  });

  test("a 64-bit integer written as node-opcua's [high, low] words reaches the PLC as a bigint", async () => {
    const value = 2n ** 40n + 7n;
    const status = await write(operator, "cycle.total", {
      dataType: DataType.UInt64,
      arrayType: VariantArrayType.Scalar,
      value: [Number(value >> 32n), Number(value & 0xffffffffn)],
    });
    expect(status).toBe(StatusCodes.Good);
    expect(served.plc.writes.at(-1)).toMatchObject({ tag: "cycle.total", value });
  });

  test("a Write carrying a StatusCode (bad or uncertain) or a Source/ServerTimestamp answers BadWriteNotSupported (Part 4, 5.10.4), reaches no PLC, and is audited denied; a viewer's is BadUserAccessDenied", async () => {
    const before = served.plc.writes.length;
    const nodeId = served.server.nodeIdOf("heater.ramp");
    const value = { dataType: DataType.Double, value: 13 };
    const attempts: WriteValueOptions[] = [
      { nodeId, attributeId: AttributeIds.Value, value: { value, statusCode: StatusCodes.BadSensorFailure } },
      { nodeId, attributeId: AttributeIds.Value, value: { value, statusCode: StatusCodes.UncertainLastUsableValue } },
      { nodeId, attributeId: AttributeIds.Value, value: { value, sourceTimestamp: new Date() } },
      { nodeId, attributeId: AttributeIds.Value, value: { value, serverTimestamp: new Date() } },
    ];
    // In one call: refused alike, they are audited as one entry that counts them.
    expect(await operator.session.write(attempts)).toEqual(attempts.map(() => StatusCodes.BadWriteNotSupported));
    expect(await viewer.session.write(attempts[0]!)).toBe(StatusCodes.BadUserAccessDenied);
    expect(served.plc.writes.length).toBe(before);
    const entries = await auditEntries("heater.ramp", 2);
    expect(entries.map((entry) => [entry.principal, entry.outcome])).toEqual([
      ["olga", "denied"],
      ["vic", "denied"],
    ]);
    expect(entries[0]!.reason).toMatch(/KILN_VALIDATION.*StatusCode.*4 refused in one call: heater\.ramp/s);
    // The plain value is taken.
    expect(await write(operator, "heater.ramp", value)).toBe(StatusCodes.Good);
  });

  test("a Write of a tag's Value with no Variant answers BadTypeMismatch and is audited denied", async () => {
    const before = served.plc.writes.length;
    const status = await operator.session.write({
      nodeId: served.server.nodeIdOf("cycle.limit"),
      attributeId: AttributeIds.Value,
      value: {},
    });
    expect(status).toBe(StatusCodes.BadTypeMismatch);
    expect(served.plc.writes.length).toBe(before);
    expect(await auditEntries("cycle.limit", 2)).toMatchObject([
      { outcome: "denied" },
      { principal: "olga", outcome: "denied", reason: expect.stringMatching(/KILN_VALIDATION/) },
    ]);
  });

  test("a Write of a String Variant holding null is refused BadTypeMismatch, audited with a reason naming the null", async () => {
    const before = served.plc.writes.length;
    const status = await write(admin, "recipe.note", { dataType: DataType.String, value: null });
    expect(status).toBe(StatusCodes.BadTypeMismatch);
    expect(served.plc.writes.length).toBe(before);
    const entries = await auditEntries("recipe.note", 1);
    expect(entries.at(-1)!.reason).toMatch(/String Variant holding null/);
    expect(entries.at(-1)!.reason).not.toMatch(/not a scalar String$/);
  });

  test("UserAccessLevel and UserExecutable are the reading session's own rights: CurrentWrite and StartRecipe for the operator, neither for the viewer (whose Write and Call are still refused and audited)", async () => {
    const userAccess = async (client: Awaited<ReturnType<typeof connect>>, tag: string) =>
      (await client.session.read({ nodeId: served.server.nodeIdOf(tag), attributeId: AttributeIds.UserAccessLevel }))
        .value.value as number;
    const executable = async (client: Awaited<ReturnType<typeof connect>>, method: string) =>
      (
        await client.session.read({
          nodeId: `ns=${served.server.namespaceIndex};s=@Machine.${method}`,
          attributeId: AttributeIds.UserExecutable,
        })
      ).value.value as boolean;
    expect((await userAccess(operator, "heater.setpoint")) & 0b11).toBe(0b11);
    expect((await userAccess(viewer, "heater.setpoint")) & 0b11).toBe(0b01);
    // a read-only tag shows no CurrentWrite to anyone, the admin included
    expect((await userAccess(admin, "chamber.pressure")) & 0b11).toBe(0b01);
    expect(await executable(operator, "StartRecipe")).toBe(true);
    expect(await executable(viewer, "StartRecipe")).toBe(false);
    expect(await executable(viewer, "Abort")).toBe(false);
    const before = (await served.store.audit.query({ from: 0, to: Date.now() + 1 })).length;
    const call = await viewer.session.call({
      objectId: `ns=${served.server.namespaceIndex};s=@Machine`,
      methodId: `ns=${served.server.namespaceIndex};s=@Machine.Pause`,
      inputArguments: [],
    });
    expect(call.statusCode).toBe(StatusCodes.BadUserAccessDenied);
    const after = await served.store.audit.query({ from: 0, to: Date.now() + 1 });
    expect(after.slice(before)).toMatchObject([{ principal: "vic", action: "recipe.pause", outcome: "denied" }]);
  });

  test("a write while the control system is stopped answers BadInvalidState and reaches no PLC", async () => {
    await served.system.stop();
    const before = served.plc.writes.length;
    const status = await write(operator, "heater.setpoint", { dataType: DataType.Double, value: 10 });
    expect(status).toBe(StatusCodes.BadInvalidState);
    expect(served.plc.writes.length).toBe(before);
  });
});
