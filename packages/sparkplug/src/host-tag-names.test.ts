import { KilnError, defineTags } from "@kiln/core";
import fc from "fast-check";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, test } from "vitest";
import { parseQualifiedTagName, qualifiedTagName, type SparkplugMetricAddress } from "./host-tag-names";

describe("qualified tag names of a Sparkplug host", () => {
  const examples: [SparkplugMetricAddress, string][] = [
    [
      { groupId: "plant-1", edgeNodeId: "line-3", deviceId: "ald-1", metric: "chamber.pressure" },
      "plant-1/line-3/ald-1/chamber.pressure",
    ],
    [
      { groupId: "plant-1", edgeNodeId: "line-3", metric: "Node Control/Rebirth" },
      "plant-1/line-3//Node:20Control/Rebirth",
    ],
    [
      { groupId: "plant-1", edgeNodeId: "line-3", deviceId: "ald-1", metric: "Kiln/Machine State" },
      "plant-1/line-3/ald-1/Kiln/Machine:20State",
    ],
    [{ groupId: "1st floor", edgeNodeId: "a:b", deviceId: "Ü", metric: "x" }, "_1st:20floor/a:3Ab/:C3:9C/x"],
    [{ groupId: "_g", edgeNodeId: "e", metric: "m" }, "__g/e//m"],
    [{ groupId: "g", edgeNodeId: "e", deviceId: "d", metric: "/lead//double/" }, "g/e/d//lead//double/"],
  ];

  test.each(examples)("%o is %s, a valid Kiln tag name, and parses back", (address, name) => {
    expect(qualifiedTagName(address)).toBe(name);
    expect(parseQualifiedTagName(name)).toEqual(address);
    expect(defineTags({ [name]: { dataType: "float64" } }).names).toEqual([name]);
  });

  test("every address maps to a valid Kiln tag name and back (one-to-one)", () => {
    const id = fc
      .string({ minLength: 1, maxLength: 12, unit: "binary" })
      // A valid Sparkplug id: no +, / or #, no lone surrogate, no control character (MQTT 5 1.5.4).
      // eslint-disable-next-line no-control-regex -- ids with control characters are what it leaves out
      .filter((value) => !/[+/#\uD800-\uDFFF\u0000-\u001F\u007F-\u009F]/.test(value));
    fc.assert(
      fc.property(
        id,
        id,
        fc.option(id, { nil: undefined }),
        fc.string({ minLength: 1, maxLength: 20, unit: "binary" }).filter((value) => !/[\uD800-\uDFFF]/.test(value)),
        (groupId, edgeNodeId, deviceId, metric) => {
          const address: SparkplugMetricAddress =
            deviceId === undefined ? { groupId, edgeNodeId, metric } : { groupId, edgeNodeId, deviceId, metric };
          let name: string;
          try {
            name = qualifiedTagName(address);
          } catch (error) {
            // Only for a name longer than a Kiln tag name may be.
            expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
            return;
          }
          expect(parseQualifiedTagName(name)).toEqual(address);
          expect(() => defineTags({ [name]: { dataType: "string" } })).not.toThrow();
        },
      ),
      { numRuns: 500 },
    );
  });

  test("a leading U+FEFF (byte order mark) in an id or metric survives the round trip (fast-check counterexample)", () => {
    for (const address of [
      { groupId: "g", edgeNodeId: "e", metric: "\uFEFF" },
      { groupId: "\uFEFFg", edgeNodeId: "n", deviceId: "\uFEFF", metric: "\uFEFFm" },
    ] satisfies SparkplugMetricAddress[]) {
      expect(parseQualifiedTagName(qualifiedTagName(address))).toEqual(address);
    }
    // The counterexample's ids were U+0000, which no MQTT topic may carry: refused as ids.
    expect(() => qualifiedTagName({ groupId: "\u0000", edgeNodeId: "\u0000", metric: "\uFEFF" })).toThrow(
      /groupId: must not contain U\+0000/,
    );
  });

  test("the device level keeps node and device metrics apart", () => {
    expect(qualifiedTagName({ groupId: "g", edgeNodeId: "e", metric: "d/m" })).not.toBe(
      qualifiedTagName({ groupId: "g", edgeNodeId: "e", deviceId: "d", metric: "m" }),
    );
  });

  test("bad input is refused with KILN_VALIDATION naming the field", () => {
    const pathsOf = (run: () => unknown): unknown => {
      try {
        run();
        return "accepted";
      } catch (error) {
        expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
        return (error as KilnError).details.issues;
      }
    };
    expect(pathsOf(() => qualifiedTagName({ groupId: "a/b", edgeNodeId: "", deviceId: "#", metric: "" }))).toEqual([
      { path: "groupId", message: expect.any(String) as unknown },
      { path: "edgeNodeId", message: expect.any(String) as unknown },
      { path: "deviceId", message: expect.any(String) as unknown },
      { path: "metric", message: expect.any(String) as unknown },
    ]);
    expect(pathsOf(() => qualifiedTagName({ groupId: "g", edgeNodeId: "e", metric: "x".repeat(260) }))).toEqual([
      { path: "", message: expect.stringContaining("256") as unknown },
    ]);
    for (const name of ["g/e/m", "g/e/d/:2", "g/e/d/:zz", "g/e/d/:FF", "g/e/d/:6d", "1/e//m", 3 as never]) {
      expect(pathsOf(() => parseQualifiedTagName(name))).not.toBe("accepted");
    }
  });

  test("a name too long is refused on its length before anything is escaped: a 2 MB metric name, fast (fix19e)", () => {
    const huge = " ".repeat(2_000_000); // each space would escape to 3 characters
    const started = performance.now();
    expect(() => qualifiedTagName({ groupId: "g", edgeNodeId: "e", metric: huge })).toThrow(
      /at least 2000005 characters/,
    );
    // Escaping it first took ~0.5 s.
    expect(performance.now() - started).toBeLessThan(50);
    // A name short in characters but over once escaped is still refused with its escaped length.
    expect(() => qualifiedTagName({ groupId: "g", edgeNodeId: "e", metric: " ".repeat(90) })).toThrow(
      /has 275 characters/,
    );
  });

  test("names kept as Map keys cost about their length, not a cons-string chain per character (review 19b)", () => {
    // Built a character at a time, a kept name stayed a chain of V8 cons-string pieces: 1,251
    // bytes per entry for these 60-character names (125 when built flat), so a host at its
    // metric caps ran out of heap long before them.
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const count = 20_000;
    const kept = new Map<string, number>();
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let index = 0; index < count; index++) {
      const name = qualifiedTagName({
        groupId: "plant-1",
        edgeNodeId: "line-3",
        deviceId: `dev ${index % 1000}`,
        metric: `Folder/metric number ${index} with spaces`,
      });
      kept.set(name, index);
    }
    gc();
    const perEntry = (process.memoryUsage().heapUsed - before) / count;
    expect(kept.size).toBe(count);
    expect(perEntry).toBeLessThan(500);
    // Names that need no escape are the text itself, and escaped ones round-trip.
    expect(qualifiedTagName({ groupId: "g", edgeNodeId: "n", metric: "a/b.c" })).toBe("g/n//a/b.c");
    expect(parseQualifiedTagName([...kept.keys()][7]!).metric).toBe("Folder/metric number 7 with spaces");
  });
});
