import { describe, expect, it } from "vitest";
import { KilnValidationError, defineTags, type TagDataType } from "@kiln/core";
import { formatModbusAddress, modbusAddressSchema, modbusTagAddress, parseModbusAddress } from "./modbus-address";

function issuesOf(run: () => unknown): { path: string; message: string }[] {
  try {
    run();
  } catch (error) {
    if (error instanceof KilnValidationError) return [...error.issues];
    throw error;
  }
  throw new Error("expected a KilnValidationError");
}

describe("parseModbusAddress: compact string form", () => {
  it.each<[string, TagDataType, Record<string, unknown>]>([
    ["HR100", "int16", { area: "holding-register", address: 100, type: "int16", count: 1 }],
    [
      "HR100:float32:CDAB",
      "float32",
      { area: "holding-register", address: 100, type: "float32", order: "CDAB", count: 2 },
    ],
    [
      "hr100:cdab:float32",
      "float64",
      { area: "holding-register", address: 100, type: "float32", order: "CDAB", count: 2 },
    ],
    ["IR7.12", "bool", { area: "input-register", address: 7, type: "bit", bit: 12, count: 1 }],
    ["C0", "bool", { area: "coil", address: 0, type: "bool", count: 1 }],
    ["CO5", "bool", { area: "coil", address: 5, type: "bool", count: 1 }],
    ["DI15", "bool", { area: "discrete-input", address: 15, type: "bool", count: 1 }],
    ["HR300:string:16", "string", { area: "holding-register", address: 300, type: "string", count: 16 }],
    [
      "HR40:int64:DCBA@3",
      "float64",
      { area: "holding-register", address: 40, type: "int64", order: "DCBA", unitId: 3, count: 4 },
    ],
    ["IR2", "float64", { area: "input-register", address: 2, type: "float64", count: 4 }],
    ["HR9:uint16", "bool", { area: "holding-register", address: 9, type: "uint16", count: 1 }],
  ])("%s (%s)", (text, dataType, expected) => {
    expect(parseModbusAddress(text, dataType)).toEqual({ scale: 1, offset: 0, ...expected });
  });

  it.each([
    ["HR", "int16"],
    ["XX1", "int16"],
    ["HR1:float33", "float32"],
    ["HR1:float32:float32", "float32"],
    ["HR70000", "int16"],
    ["HR65535:float32", "float32"],
    ["HR1.16", "bool"],
    ["C1:int16", "int16"],
    ["HR10", "bool"],
    ["HR10:string", "string"],
    ["HR10:float32", "string"],
    ["HR10:string:200", "string"],
    ["HR1\n", "int16"],
    [" HR1", "int16"],
    ["HR1\u0000", "int16"],
  ] as const)("rejects %s for a %s tag, naming the address field", (text, dataType) => {
    const issues = issuesOf(() => parseModbusAddress(text, dataType, "tank.level.address"));
    expect(issues.length).toBeGreaterThan(0);
    for (const issue of issues) expect(issue.path).toBe("tank.level.address");
  });
});

describe("parseModbusAddress: unit 0 (broadcast)", () => {
  it.each<[string, string | Record<string, unknown>]>([
    ["compact", "HR1@0"],
    ["object", { area: "holding-register", address: 1, unitId: 0 }],
  ])("is refused in the %s form: no device answers a read of unit 0", (_form, address) => {
    const issues = issuesOf(() => parseModbusAddress(address as never, "int16", "tank.level.address"));
    expect(issues.map((issue) => issue.message).join(" ")).toMatch(/unit 0 is the broadcast address/);
  });
});

describe("parseModbusAddress: object form", () => {
  it("resolves scale, offset, order and unit id", () => {
    expect(
      parseModbusAddress(
        { area: "input-register", address: 7, type: "int16", scale: 0.1, offset: -40, unitId: 4, order: "BADC" },
        "float32",
      ),
    ).toEqual({
      area: "input-register",
      address: 7,
      type: "int16",
      order: "BADC",
      scale: 0.1,
      offset: -40,
      unitId: 4,
      count: 1,
    });
  });

  it("defaults the wire type from the data type", () => {
    expect(parseModbusAddress({ area: "holding-register", address: 1 }, "uint32").type).toBe("uint32");
    expect(parseModbusAddress({ area: "holding-register", address: 1, bit: 4 }, "bool")).toMatchObject({
      type: "bit",
      bit: 4,
    });
  });

  it.each([
    [{ area: "holding", address: 1 }, "int16", "address.area"],
    [{ area: "coil", address: -1 }, "bool", "address.address"],
    [{ area: "coil", address: 1, type: "int16" }, "bool", "address.type"],
    [{ area: "coil", address: 1, scale: 2 }, "bool", "address.scale"],
    [{ area: "holding-register", address: 1 }, "bool", "address.bit"],
    [{ area: "holding-register", address: 1, type: "bit" }, "bool", "address.bit"],
    [{ area: "holding-register", address: 1, type: "int16", bit: 2 }, "int16", "address.bit"],
    [{ area: "holding-register", address: 1, type: "string" }, "string", "address.length"],
    [{ area: "holding-register", address: 1, length: 3 }, "int16", "address.length"],
    [{ area: "holding-register", address: 1, scale: 0 }, "float32", "address.scale"],
    [{ area: "holding-register", address: 1, type: "string", length: 2, scale: 2 }, "string", "address.scale"],
    [{ area: "holding-register", address: 1, type: "float32" }, "bool", "address.type"],
    [{ area: "holding-register", address: 65534, type: "float64" }, "float64", "address.address"],
    [{ area: "holding-register", address: 1, unitId: 256 }, "int16", "address.unitId"],
    [{ area: "holding-register", address: 1, extra: true }, "int16", "address"],
    [42, "int16", "address"],
  ] as const)("rejects %j for a %s tag at %s", (input, dataType, path) => {
    const issues = issuesOf(() => parseModbusAddress(input, dataType));
    expect(issues.map((issue) => issue.path)).toContain(path);
  });
});

describe("parseModbusAddress: scaling an integer tag can never read good (adv12h LOW)", () => {
  it.each([
    [{ area: "holding-register", address: 1, type: "int64", offset: 0.5 }, "int64"],
    [{ area: "holding-register", address: 1, type: "int16", scale: 0.1, offset: 0.05 }, "int32"],
    [{ area: "input-register", address: 1, type: "uint32", scale: 2, offset: 0.25 }, "uint32"],
  ] as const)("refuses %j for a %s tag at address.offset", (input, dataType) => {
    const issues = issuesOf(() => parseModbusAddress(input, dataType));
    expect(issues).toEqual([
      { path: "address.offset", message: expect.stringMatching(/reads only whole numbers.*never whole/) },
    ]);
  });

  it.each([
    // raw × 0.5 + 0.5 is whole for every odd raw; a float wire or a float tag can hold a fraction.
    [{ area: "holding-register", address: 1, type: "int16", scale: 0.5, offset: 0.5 }, "int32"],
    [{ area: "holding-register", address: 1, type: "int16", scale: 0.1, offset: 0.3 }, "int16"],
    [{ area: "holding-register", address: 1, type: "float32", offset: 0.5 }, "int32"],
    [{ area: "holding-register", address: 1, type: "int64", offset: 0.5 }, "float64"],
  ] as const)("accepts %j for a %s tag", (input, dataType) => {
    expect(parseModbusAddress(input, dataType).offset).toBe(input.offset);
  });
});

describe("modbusTagAddress", () => {
  it("names the tag in the path when the address is missing or bad", () => {
    const tags = defineTags({
      "tank.level": { dataType: "float32" },
      "tank.valve": { dataType: "bool", address: "HR3" },
    });
    expect(issuesOf(() => modbusTagAddress(tags.get("tank.level")))[0]?.path).toBe("tank.level.address");
    expect(issuesOf(() => modbusTagAddress(tags.get("tank.valve")))[0]?.path).toBe("tank.valve.address");
  });

  it("refuses an array tag (arrayLength) with KILN_VALIDATION until Modbus carries arrays (ADR 0038)", () => {
    const tags = defineTags({ "zones.temperature": { dataType: "float32", arrayLength: 8, address: "HR100:float32" } });
    expect(issuesOf(() => modbusTagAddress(tags.get("zones.temperature")))).toEqual([
      { path: "zones.temperature.arrayLength", message: expect.stringContaining("does not support array tags") },
    ]);
  });

  it("resolves a tag's address", () => {
    const tags = defineTags({ "tank.level": { dataType: "float32", address: "IR10:float32:CDAB" } });
    expect(modbusTagAddress(tags.get("tank.level"))).toMatchObject({ area: "input-register", address: 10 });
  });
});

describe("modbusAddressSchema and formatModbusAddress", () => {
  it("parses the compact form into the object form", () => {
    expect(modbusAddressSchema.parse("HR100:float32:CDAB@2")).toEqual({
      area: "holding-register",
      address: 100,
      type: "float32",
      order: "CDAB",
      unitId: 2,
    });
  });

  it.each(["HR100:float32:CDAB", "IR7.12", "C0", "DI15", "HR300:string:16", "HR40:int64:DCBA@3", "HR1:int16"])(
    "formats %s back to itself",
    (text) => {
      const dataType: TagDataType =
        text.startsWith("C") || text.startsWith("DI") || text.includes(".")
          ? "bool"
          : text.includes("string")
            ? "string"
            : "float64";
      expect(formatModbusAddress(parseModbusAddress(text, dataType))).toBe(text);
    },
  );
});
