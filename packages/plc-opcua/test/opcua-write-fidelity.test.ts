import { defineTags, type Tag } from "@kiln/core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OPCUA_SIMULATOR_NAMESPACE_URI, type OpcuaDriver } from "../src/index";
import { simulatorWithDriver } from "./support/simulator-with-driver";

// Adversarial review adv13s H1/H2: writes that changed the value reported success (2^53 + 1 from
// an int64 tag landed as 2^53 on a Double node, 16777217 as 16777216 on a Float node, 1e-50 as 0),
// and writes were not checked against the node's shape (a scalar replaced a Double[4] array).
const NS = OPCUA_SIMULATOR_NAMESPACE_URI;
const served = defineTags({
  f32: { dataType: "float32", address: `nsu=${NS};s=Kiln.F32`, access: "readwrite" },
  f64: { dataType: "float64", address: `nsu=${NS};s=Kiln.F64`, access: "readwrite" },
  zones: { dataType: "float64", arrayLength: 4, address: `nsu=${NS};s=Kiln.Zones`, access: "readwrite" },
});
const tags = defineTags({
  f32: { dataType: "float32", address: `nsu=${NS};s=Kiln.F32`, access: "readwrite" },
  f64: { dataType: "float64", address: `nsu=${NS};s=Kiln.F64`, access: "readwrite" },
  "i64.on.double": { dataType: "int64", address: `nsu=${NS};s=Kiln.F64`, access: "readwrite" },
  "i32.on.float": { dataType: "int32", address: `nsu=${NS};s=Kiln.F32`, access: "readwrite" },
  "f64.on.float": { dataType: "float64", address: `nsu=${NS};s=Kiln.F32`, access: "readwrite" },
  zones: { dataType: "float64", arrayLength: 4, address: `nsu=${NS};s=Kiln.Zones`, access: "readwrite" },
  "scalar.on.zones": { dataType: "float64", address: `nsu=${NS};s=Kiln.Zones`, access: "readwrite" },
  "six.on.zones": { dataType: "float64", arrayLength: 6, address: `nsu=${NS};s=Kiln.Zones`, access: "readwrite" },
  "array.on.f64": { dataType: "float64", arrayLength: 2, address: `nsu=${NS};s=Kiln.F64`, access: "readwrite" },
});
const tag = (name: string): Tag => tags.get(name);

let driver: OpcuaDriver;
let stop: (() => Promise<void>) | undefined;

beforeAll(async () => {
  ({ driver, stop } = await simulatorWithDriver("write-fidelity", {
    tags: served,
    signals: {
      f32: { kind: "constant", value: 1 },
      f64: { kind: "constant", value: 1 },
    },
  }));
});

afterAll(async () => {
  await stop?.();
});

const valueOf = async (name: string) => (await driver.read([served.get(name)]))[0]!.value;

describe("a write lands exactly or is refused (adv13s H1)", () => {
  test("an integer the node's float type would round: KILN_OUT_OF_RANGE naming tag, value and type, nothing sent", async () => {
    await driver.write(tag("f64"), 1);
    await driver.write(tag("f32"), 1);
    const cases: [string, number | bigint, string, string][] = [
      ["i64.on.double", 9007199254740993n, "Double", "f64"],
      ["i32.on.float", 16777217, "Float", "f32"],
    ];
    for (const [name, value, nodeDataType, node] of cases) {
      await expect(driver.write(tag(name), value)).rejects.toMatchObject({
        code: "KILN_OUT_OF_RANGE",
        message: expect.stringContaining(String(value)),
        details: { tag: name, value: String(value), nodeDataType },
      });
      expect(await valueOf(node)).toBe(1);
    }
  });

  test("a float value that would vanish to 0 or become infinite in a Float: refused, nothing sent", async () => {
    await driver.write(tag("f32"), 1);
    for (const value of [1e-50, -1e-46, 1e39]) {
      await expect(driver.write(tag("f64.on.float"), value)).rejects.toMatchObject({
        code: "KILN_OUT_OF_RANGE",
        details: { tag: "f64.on.float", nodeDataType: "Float" },
      });
    }
    expect(await valueOf("f32")).toBe(1);
  });

  test("sibling: exact integers pass; a float tag's value is rounded to Float precision (documented)", async () => {
    await driver.write(tag("i64.on.double"), 9007199254740992n);
    expect(await valueOf("f64")).toBe(9007199254740992);
    await driver.write(tag("i32.on.float"), 16777216);
    expect(await valueOf("f32")).toBe(16777216);
    await driver.write(tag("f64.on.float"), 0.1);
    expect(await valueOf("f32")).toBe(Math.fround(0.1));
    await driver.write(tag("f64.on.float"), 0);
    expect(await valueOf("f32")).toBe(0);
  });
});

describe("a write must fit the node's shape, as reads must (adv13s H2, ADR 0038)", () => {
  test("a scalar to a Double[4] node: KILN_WRITE_REJECTED BadTypeMismatch naming both shapes, array kept", async () => {
    await driver.write(tag("zones"), [1, 2, 3, 4]);
    await expect(driver.write(tag("scalar.on.zones"), 5)).rejects.toMatchObject({
      code: "KILN_WRITE_REJECTED",
      details: { statusName: "BadTypeMismatch", valueShape: "a scalar", nodeShape: expect.stringContaining("array") },
    });
    expect(await valueOf("zones")).toEqual([1, 2, 3, 4]);
  });

  test("sibling: an array to a scalar node, and an array longer than ArrayDimensions: refused, nothing sent", async () => {
    await driver.write(tag("f64"), 3);
    await expect(driver.write(tag("array.on.f64"), [1, 2])).rejects.toMatchObject({
      code: "KILN_WRITE_REJECTED",
      details: { statusName: "BadTypeMismatch", valueShape: "an array of 2", nodeShape: "a scalar (ValueRank -1)" },
    });
    expect(await valueOf("f64")).toBe(3);
    await expect(driver.write(tag("six.on.zones"), [9, 9, 9, 9, 9, 9])).rejects.toMatchObject({
      code: "KILN_WRITE_REJECTED",
      details: { statusName: "BadTypeMismatch", nodeShape: expect.stringContaining("at most 4") },
    });
    expect(await valueOf("zones")).toEqual([1, 2, 3, 4]);
    // Shorter arrays still fit (ArrayDimensions is a maximum).
    await driver.write(tag("six.on.zones"), [7, 8]);
  });
});
