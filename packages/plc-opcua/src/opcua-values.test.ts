import { KilnError, QualityCodes, defineTags, type Tag } from "@kiln/core";
import { BinaryStream, DataType, LocalizedText, Variant, VariantArrayType, resolveNodeId } from "node-opcua";
import { describe, expect, test } from "vitest";
import { OPCUA_TYPE_OF_TAG, tagDataTypeOf, tagValueFromVariant, variantForWrite } from "./opcua-values";

const tags = defineTags({
  flag: { dataType: "bool", access: "readwrite" },
  count: { dataType: "int32", access: "readwrite" },
  level: { dataType: "float64", access: "readwrite" },
  label: { dataType: "string", access: "readwrite" },
  zones: { dataType: "float64", arrayLength: 4, access: "readwrite" },
  counts: { dataType: "int64", arrayLength: 4, access: "readwrite" },
  labels: { dataType: "string", arrayLength: 4, access: "readwrite" },
});
const tag = (name: string): Tag => tags.get(name);
const variant = (dataType: DataType, value: unknown): Variant =>
  new Variant({ dataType, arrayType: VariantArrayType.Scalar, value });

describe("tagValueFromVariant", () => {
  test.each([
    [DataType.Double, 1.5, "level", 1.5],
    [DataType.Float, 2, "level", 2],
    [DataType.Int16, -7, "count", -7],
    [DataType.Double, 2, "count", 2],
    [DataType.Boolean, true, "flag", true],
    [DataType.Int32, 1, "flag", true],
    [DataType.Int32, 0, "flag", false],
    [DataType.String, "TiN", "label", "TiN"],
  ])("%s %j for a %s tag gives %j", (dataType, raw, name, expected) => {
    expect(tagValueFromVariant(variant(dataType, raw), tag(name))).toEqual({ ok: true, value: expected });
  });

  // Issue 13, fault 4: never a value of another type marked good.
  test.each([
    [DataType.Double, 1.5, "count"],
    [DataType.UInt32, 4_000_000_000, "count"],
    [DataType.Int32, 3, "flag"],
    [DataType.Boolean, true, "level"],
    [DataType.String, "12.5", "level"],
    [DataType.Double, 4.5, "label"],
  ])("%s %j for a %s tag is bad BadTypeMismatch naming both types", (dataType, raw, name) => {
    const converted = tagValueFromVariant(variant(dataType, raw), tag(name));
    expect(converted).toMatchObject({ ok: false, quality: { severity: "bad", code: QualityCodes.BadTypeMismatch } });
    const reason = converted.ok ? "" : converted.quality.reason;
    expect(reason).toContain(DataType[dataType]);
    expect(reason).toContain(tag(name).dataType);
  });

  test("64-bit integers become numbers when exact for the tag, BadTypeMismatch otherwise", () => {
    expect(tagValueFromVariant(variant(DataType.Int64, [0xffffffff, 0xfffffffb]), tag("count"))).toEqual({
      ok: true,
      value: -5,
    });
    expect(tagValueFromVariant(variant(DataType.Int64, [0, 7]), tag("level"))).toEqual({ ok: true, value: 7 });
    expect(tagValueFromVariant(variant(DataType.UInt64, [0xffffffff, 0xffffffff]), tag("count"))).toMatchObject({
      ok: false,
      quality: { code: QualityCodes.BadTypeMismatch },
    });
    expect(tagValueFromVariant(variant(DataType.Int64, [0x10000000, 0]), tag("level"))).toMatchObject({
      ok: false,
      quality: { code: QualityCodes.BadTypeMismatch },
    });
  });

  test("dates become epoch milliseconds; localized text its text", () => {
    expect(tagValueFromVariant(variant(DataType.DateTime, new Date(1_700_000_000_000)), tag("level"))).toEqual({
      ok: true,
      value: 1_700_000_000_000,
    });
    const text = variant(DataType.LocalizedText, new LocalizedText({ text: "Running", locale: "en" }));
    expect(tagValueFromVariant(text, tag("label"))).toEqual({ ok: true, value: "Running" });
  });

  test("arrays, empty values and non-numeric text for numeric tags are problems, not values", () => {
    const array = new Variant({ dataType: DataType.Double, arrayType: VariantArrayType.Array, value: [1, 2] });
    expect(tagValueFromVariant(array, tag("level"))).toMatchObject({
      ok: false,
      quality: { reason: 'Double[2] cannot be carried by scalar float64 tag "level"' },
    });
    expect(tagValueFromVariant(new Variant(), tag("level"))).toMatchObject({ ok: false });
    expect(tagValueFromVariant(variant(DataType.String, "high"), tag("level"))).toMatchObject({ ok: false });
    expect(tagValueFromVariant(variant(DataType.String, "maybe"), tag("flag"))).toMatchObject({ ok: false });
  });
});

describe("variantForWrite", () => {
  test("converts the tag's value to the node's built-in type", () => {
    expect(variantForWrite(3, DataType.Int16, tag("count"), "ns=2;s=X")).toMatchObject({
      dataType: DataType.Int16,
      value: 3,
    });
    expect(variantForWrite(true, DataType.Double, tag("flag"), "n")).toMatchObject({
      dataType: DataType.Double,
      value: 1,
    });
    expect(variantForWrite(1, DataType.Boolean, tag("count"), "n")).toMatchObject({ value: true });
    expect(variantForWrite(2.5, DataType.String, tag("level"), "n")).toMatchObject({ value: "2.5" });
    expect(variantForWrite(-5, DataType.Int64, tag("count"), "n").value).toEqual([0xffffffff, 0xfffffffb]);
    expect(variantForWrite(1_700_000_000_000, DataType.DateTime, tag("level"), "n").value).toEqual(
      new Date(1_700_000_000_000),
    );
  });

  test.each([
    [70_000, DataType.Int16],
    [-1, DataType.UInt16],
    [256, DataType.Byte],
    [2.5, DataType.Int32],
    [1e39, DataType.Float],
    [2.5, DataType.Int64],
  ])("%s does not fit %s: KILN_OUT_OF_RANGE", (value, dataType) => {
    let error: unknown;
    try {
      variantForWrite(value, dataType, tag("level"), "ns=2;s=X");
    } catch (caught) {
      error = caught;
    }
    expect(KilnError.is(error, "KILN_OUT_OF_RANGE")).toBe(true);
    expect((error as KilnError).details).toMatchObject({ tag: "level", nodeId: "ns=2;s=X" });
  });

  test("an integer tag's value to a Float/Double node lands exactly or is refused; a float tag's is rounded (adv13s H1)", () => {
    const outOfRange = expect.objectContaining({ code: "KILN_OUT_OF_RANGE" });
    expect(() => variantForWrite(16_777_217, DataType.Float, tag("count"), "n")).toThrow(outOfRange);
    expect(() => variantForWrite(2n ** 53n + 1n, DataType.Double, tag("counts"), "n")).toThrow(outOfRange);
    expect(() => variantForWrite(1e-50, DataType.Float, tag("level"), "n")).toThrow(outOfRange);
    expect(variantForWrite(16_777_216, DataType.Float, tag("count"), "n").value).toBe(16_777_216);
    expect(variantForWrite(2n ** 53n, DataType.Double, tag("counts"), "n").value).toBe(2 ** 53);
    expect(variantForWrite(0.1, DataType.Float, tag("level"), "n").value).toBe(0.1);
    expect(variantForWrite(Number.POSITIVE_INFINITY, DataType.Float, tag("level"), "n").value).toBe(
      Number.POSITIVE_INFINITY,
    );
  });

  test("a DateTime takes whole ms only (adv13s L3)", () => {
    expect(() => variantForWrite(1_700_000_000_000.5, DataType.DateTime, tag("level"), "n")).toThrow(
      expect.objectContaining({ code: "KILN_OUT_OF_RANGE", message: expect.stringContaining("whole ms") }),
    );
  });

  test("the value's shape must fit the node's ValueRank and ArrayDimensions (adv13s H2)", () => {
    const mismatch = expect.objectContaining({ code: "KILN_WRITE_REJECTED" });
    const array4 = { dataType: DataType.Double, valueRank: 1, arrayDimensions: [4] };
    expect(() => variantForWrite(1, array4, tag("level"), "n")).toThrow(mismatch);
    expect(() => variantForWrite([1, 2, 3, 4, 5], array4, tag("zones"), "n")).toThrow(mismatch);
    expect(() => variantForWrite([1], { dataType: DataType.Double, valueRank: -1 }, tag("zones"), "n")).toThrow(
      mismatch,
    );
    expect(() => variantForWrite([1], { dataType: DataType.Double, valueRank: 2 }, tag("zones"), "n")).toThrow(
      mismatch,
    );
    expect(Array.from(variantForWrite([1, 2], array4, tag("zones"), "n").value as number[])).toEqual([1, 2]);
    for (const valueRank of [-2, -3]) {
      expect(variantForWrite(1, { dataType: DataType.Double, valueRank }, tag("level"), "n").value).toBe(1);
      expect(variantForWrite([1], { dataType: DataType.Double, valueRank }, tag("zones"), "n").value).toHaveLength(1);
    }
    expect(variantForWrite([1], { dataType: DataType.Double, valueRank: 0 }, tag("zones"), "n").value).toHaveLength(1);
  });

  test("a kind of value the node cannot hold is a BadTypeMismatch rejection", () => {
    let error: unknown;
    try {
      variantForWrite("fast", DataType.Double, tag("label"), "ns=2;s=X");
    } catch (caught) {
      error = caught;
    }
    expect(KilnError.is(error, "KILN_WRITE_REJECTED")).toBe(true);
    expect((error as KilnError).details).toMatchObject({ statusName: "BadTypeMismatch", nodeDataType: "Double" });
    expect(() => variantForWrite(1, DataType.ExtensionObject, tag("count"), "n")).toThrow(
      /data type is ExtensionObject/,
    );
  });
});

describe("arrays (ADR 0038)", () => {
  test("a one-dimensional array converts element by element; Int64 words to bigint beyond 2^53", () => {
    const doubles = new Variant({ dataType: DataType.Double, arrayType: VariantArrayType.Array, value: [1.5, 2] });
    expect(tagValueFromVariant(doubles, tag("zones"))).toEqual({ ok: true, value: [1.5, 2] });
    const int64 = new Variant({
      dataType: DataType.Int64,
      arrayType: VariantArrayType.Array,
      value: [
        [0, 7],
        [0x10000000, 0],
      ],
    });
    expect(tagValueFromVariant(int64, tag("counts"))).toEqual({ ok: true, value: [7, 2n ** 60n] });
  });

  test("a matrix (ValueRank 2) is BadTypeMismatch naming the rank", () => {
    const matrix = new Variant({
      dataType: DataType.Double,
      arrayType: VariantArrayType.Matrix,
      dimensions: [2, 2],
      value: [1, 2, 3, 4],
    });
    expect(tagValueFromVariant(matrix, tag("zones"))).toMatchObject({
      ok: false,
      quality: {
        code: QualityCodes.BadTypeMismatch,
        reason: expect.stringMatching(/2-dimensional Double array \(ValueRank 2\)/),
      },
    });
  });

  // adv13v LOW-2: a null array (length -1 on the wire) read `good []`: no value shown as a value.
  test.each([
    ["Double", DataType.Double, "zones"],
    ["String", DataType.String, "labels"],
  ] as const)(
    "a null %s array (length -1 on the wire) is bad, named as a null array, never []",
    (typeName, dataType, name) => {
      const wire = new BinaryStream(Buffer.from([dataType | 0x80, 0xff, 0xff, 0xff, 0xff]));
      const decoded = new Variant();
      decoded.decode(wire);
      expect(decoded.arrayType).toBe(VariantArrayType.Array);
      expect(tagValueFromVariant(decoded, tag(name))).toMatchObject({
        ok: false,
        quality: {
          severity: "bad",
          code: QualityCodes.BadTypeMismatch,
          reason: expect.stringMatching(new RegExp(`null ${typeName} array .*cannot carry null`)),
        },
      });
      // An empty array (length 0) is a value.
      const empty = new Variant({ dataType, arrayType: VariantArrayType.Array, value: [] });
      expect(tagValueFromVariant(empty, tag(name))).toEqual({ ok: true, value: [] });
    },
  );

  test("variantForWrite builds an Array variant, each element converted and checked", () => {
    const written = variantForWrite([1, 2], DataType.Double, tag("zones"), "n");
    expect(written.arrayType).toBe(VariantArrayType.Array);
    expect(Array.from(written.value as ArrayLike<number>)).toEqual([1, 2]);
    expect(variantForWrite([-5n], DataType.Int64, tag("counts"), "n").value).toEqual([[0xffffffff, 0xfffffffb]]);
    expect(() => variantForWrite([1, 70_000], DataType.Int16, tag("zones"), "n")).toThrow(/does not fit Int16/);
  });
});

describe("data type mapping", () => {
  test("every Kiln type has an OPC UA type that maps back to it", () => {
    for (const [kiln, opcua] of Object.entries(OPCUA_TYPE_OF_TAG)) expect(tagDataTypeOf(opcua)).toBe(kiln);
    expect(tagDataTypeOf(DataType.ExtensionObject)).toBeUndefined();
  });
});

describe("conversions of the less common OPC UA types", () => {
  const text = defineTags({
    name: { dataType: "string", access: "readwrite" },
    big: { dataType: "int64", access: "readwrite" },
    stamp: { dataType: "float64", access: "readwrite" },
  });

  test("LocalizedText, QualifiedName, NodeId, StatusCode and ByteString read as strings or numbers; an unsupported type is bad", () => {
    const name = text.get("name");
    expect(tagValueFromVariant(variant(DataType.LocalizedText, new LocalizedText({ text: "TiN" })), name)).toEqual({
      ok: true,
      value: "TiN",
    });
    expect(tagValueFromVariant(variant(DataType.QualifiedName, { name: "Chamber" }), name)).toMatchObject({
      ok: true,
      value: "Chamber",
    });
    expect(tagValueFromVariant(variant(DataType.NodeId, resolveNodeId("ns=2;s=x")), name)).toEqual({
      ok: true,
      value: "ns=2;s=x",
    });
    expect(tagValueFromVariant(variant(DataType.ByteString, Buffer.from("ab")), name)).toEqual({
      ok: true,
      value: Buffer.from("ab").toString("base64"),
    });
    expect(tagValueFromVariant(variant(DataType.XmlElement, "<a/>"), name)).toMatchObject({ ok: false });
    const array = new Variant({ dataType: DataType.XmlElement, arrayType: VariantArrayType.Array, value: ["<a/>"] });
    expect(tagValueFromVariant(array, tag("zones"))).toMatchObject({ ok: false });
  });

  // adv13 LOW 4: a null String read bad "String null cannot be carried exactly by string tag", a
  // null LocalizedText read "" good. Both are null values (not empty ones): bad, saying so.
  test('a null String, LocalizedText (or one without text), QualifiedName or ByteString is bad, named as null, never ""', () => {
    const name = text.get("name");
    for (const [dataType, value, typeName] of [
      [DataType.String, null, "String"],
      [DataType.LocalizedText, null, "LocalizedText"],
      [DataType.LocalizedText, new LocalizedText({ locale: "en" }), "LocalizedText"],
      [DataType.QualifiedName, null, "QualifiedName"],
      [DataType.ByteString, null, "ByteString"],
    ] as const) {
      const converted = tagValueFromVariant(variant(dataType, value), name);
      expect(converted).toMatchObject({ ok: false, quality: { severity: "bad" } });
      expect(converted.ok ? "" : converted.quality.reason).toMatch(new RegExp(`null ${typeName} .*cannot carry null`));
    }
    expect(tagValueFromVariant(variant(DataType.String, ""), name)).toEqual({ ok: true, value: "" });
    const withNull = new Variant({
      dataType: DataType.LocalizedText,
      arrayType: VariantArrayType.Array,
      value: [new LocalizedText({ text: "a" }), null],
    });
    const converted = tagValueFromVariant(withNull, tag("labels"));
    expect(converted.ok ? "" : converted.quality.reason).toMatch(/element 1 is a null LocalizedText/);
  });

  test("writes: LocalizedText takes a string, Int64 an exact integer in range, DateTime a number; others refused typed", () => {
    const name = text.get("name");
    const big = text.get("big");
    expect(variantForWrite("TiN", DataType.LocalizedText, name, "ns=2;s=x").value).toMatchObject({ text: "TiN" });
    expect(variantForWrite(2n ** 40n + 5n, DataType.Int64, big, "ns=2;s=x").value).toEqual([256, 5]);
    expect(variantForWrite(true, DataType.UInt64, big, "ns=2;s=x").value).toEqual([0, 1]);
    expect(() => variantForWrite(1.5, DataType.Int64, big, "ns=2;s=x")).toThrow(
      expect.objectContaining({ code: "KILN_OUT_OF_RANGE" }),
    );
    expect(() => variantForWrite(-1n, DataType.UInt64, big, "ns=2;s=x")).toThrow(
      expect.objectContaining({ code: "KILN_OUT_OF_RANGE" }),
    );
    expect(() => variantForWrite("x", DataType.Int64, big, "ns=2;s=x")).toThrow(
      expect.objectContaining({ code: "KILN_WRITE_REJECTED" }),
    );
    expect(() => variantForWrite("x", DataType.Double, text.get("stamp"), "ns=2;s=x")).toThrow(
      expect.objectContaining({ code: "KILN_WRITE_REJECTED" }),
    );
    expect(
      (variantForWrite(86_400_000, DataType.DateTime, text.get("stamp"), "ns=2;s=x").value as Date).getTime(),
    ).toBe(86_400_000);
    expect(() => variantForWrite(true, DataType.DateTime, text.get("stamp"), "ns=2;s=x")).toThrow(
      expect.objectContaining({ code: "KILN_WRITE_REJECTED" }),
    );
    expect(variantForWrite(true, DataType.Int16, text.get("big"), "ns=2;s=x").value).toBe(1);
  });
});
