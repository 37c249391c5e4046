import { KilnError } from "@kiln/core";
import { describe, expect, test } from "vitest";
import { decodeHostState, encodeHostState } from "./host-state";
import {
  checkSparkplugIds,
  parseSparkplugTopic,
  sparkplugIdProblem,
  sparkplugTopic,
  type SparkplugTopic,
} from "./topic";

describe("Sparkplug topics", () => {
  const topics: [SparkplugTopic, string][] = [
    [{ type: "NBIRTH", groupId: "plant-1", edgeNodeId: "line 3" }, "spBv1.0/plant-1/NBIRTH/line 3"],
    [{ type: "NCMD", groupId: "g", edgeNodeId: "e" }, "spBv1.0/g/NCMD/e"],
    [{ type: "DDATA", groupId: "g", edgeNodeId: "e", deviceId: "ald-1" }, "spBv1.0/g/DDATA/e/ald-1"],
    [{ type: "STATE", hostId: "scada" }, "spBv1.0/STATE/scada"],
  ];
  test.each(topics)("%o is %s and parses back", (parts, topic) => {
    expect(sparkplugTopic(parts)).toBe(topic);
    expect(parseSparkplugTopic(topic)).toEqual(parts);
  });

  test("[tck-id-topic-structure-namespace-valid-group-id] ids with +, / or #, or empty, are refused", () => {
    for (const id of ["a+b", "a/b", "#", "", "\uD800"]) expect(sparkplugIdProblem(id)).toBeDefined();
    expect(sparkplugIdProblem("Ünïcode ok")).toBeUndefined();
    try {
      sparkplugTopic({ type: "DBIRTH", groupId: "ok", edgeNodeId: "e+", deviceId: "d#" });
      expect.unreachable();
    } catch (error) {
      expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
      expect((error as KilnError).details.issues).toEqual([
        { path: "edgeNodeId", message: expect.stringContaining("+") as unknown },
        { path: "deviceId", message: expect.stringContaining("#") as unknown },
      ]);
    }
    expect(() => checkSparkplugIds({ hostId: 3 })).toThrow(/hostId/);
    expect(() => sparkplugTopic({ type: "NOPE" } as never)).toThrow(/type/);
  });

  // Adversarial review 19u (LOW): a group id with U+0000 or of 70,000 characters passed the
  // constructor, then the node reconnected forever (a broker closes the connection on U+0000;
  // MQTT.js threw a TypeError for the long topic). Refused up front, naming the id and the rule.
  test("ids with U+0000 or another control character, or too long for an MQTT topic, are refused (MQTT 5 1.5.4)", () => {
    for (const id of ["a\u0000b", "line\n3", "\u007F", "x\u0085"]) {
      expect(sparkplugIdProblem(id)).toMatch(/control characters/);
    }
    expect(sparkplugIdProblem("g".repeat(70_000))).toMatch(/65535 UTF-8 bytes/);
    expect(() => checkSparkplugIds({ groupId: "plant\u00001", edgeNodeId: "ok" })).toThrow(/groupId/);
    expect(() => parseSparkplugTopic("spBv1.0/g\u0000/NBIRTH/e")).toThrow(/groupId/);
    // Sibling: each id fits alone, the topic they make together does not.
    const long = "é".repeat(11_000); // 22,000 bytes each
    expect(sparkplugIdProblem(long)).toBeUndefined();
    try {
      sparkplugTopic({ type: "DDATA", groupId: long, edgeNodeId: long, deviceId: long });
      expect.unreachable();
    } catch (error) {
      expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
      expect((error as KilnError).message).toMatch(/is 66016 UTF-8 bytes.*at most 65535/);
    }
    expect(sparkplugTopic({ type: "NBIRTH", groupId: long, edgeNodeId: long })).toHaveLength(8 + 11_000 + 8 + 11_000);
  });

  test("topics outside the namespace or with the wrong levels are refused", () => {
    for (const topic of [
      "spAv1.0/g/NBIRTH/e",
      "spBv1.0/g/NBIRTH/e/d",
      "spBv1.0/g/DBIRTH/e",
      "spBv1.0/g/XDATA/e",
      "spBv1.0/STATE",
      "spBv1.0/g/NDATA/e+",
    ]) {
      expect(() => parseSparkplugTopic(topic), topic).toThrow(KilnError);
    }
  });
});

describe("host STATE payload (Sparkplug 3.0 JSON)", () => {
  test("encodes and decodes { online, timestamp }", () => {
    const bytes = encodeHostState({ online: true, timestamp: 1_700_000_000_000 });
    expect(new TextDecoder().decode(bytes)).toBe('{"online":true,"timestamp":1700000000000}');
    expect(decodeHostState(bytes)).toEqual({ online: true, timestamp: 1_700_000_000_000 });
  });
  test("refuses what is not the 3.0 JSON shape (a 2.2 ONLINE string, missing fields)", () => {
    for (const text of ["ONLINE", "{}", '{"online":"yes","timestamp":1}', "null"]) {
      expect(() => decodeHostState(new TextEncoder().encode(text)), text).toThrow(KilnError);
    }
    expect(() => encodeHostState({ online: true, timestamp: -1 })).toThrow(TypeError);
  });
});
