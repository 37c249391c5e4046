import { describe, expect, it } from "vitest";
import { KilnError, type KilnValidationError } from "../domain/errors";
import { defineTags } from "../domain/tags";
import { defineAlarms, type AlarmDefinitionInput } from "./alarm-definition";

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", unit: "mbar", range: { min: 0, max: 10 } },
  "chamber.temperature": { dataType: "float32" },
  "door.open": { dataType: "bool" },
  "machine.mode": { dataType: "string" },
});

function issuesOf(definitions: readonly AlarmDefinitionInput[]): { path: string; message: string }[] {
  try {
    defineAlarms(definitions, tags);
  } catch (error) {
    expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
    return [...(error as KilnValidationError).issues];
  }
  throw new Error("expected defineAlarms to throw");
}

describe("defineAlarms", () => {
  it("applies defaults: id, message, deadband, delays, interlock and alarmValue", () => {
    const [high, door] = defineAlarms(
      [
        { tag: "chamber.pressure", kind: "HI", setpoint: 5, priority: 2 },
        { tag: "door.open", kind: "BOOL", priority: 1 },
      ],
      tags,
    );
    expect(high).toEqual({
      id: "chamber.pressure:HI",
      tag: "chamber.pressure",
      kind: "HI",
      setpoint: 5,
      deadband: 0,
      onDelayMs: 0,
      offDelayMs: 0,
      priority: 2,
      interlock: false,
      message: "chamber.pressure HI (> 5)",
    });
    expect(door).toMatchObject({ id: "door.open:BOOL", alarmValue: true, message: "door.open on" });
    expect(Object.isFrozen(high)).toBe(true);
  });

  it("keeps explicit ids, messages and suppression conditions", () => {
    const predicate = (): boolean => false;
    const [alarm] = defineAlarms(
      [
        {
          id: "pressure-high",
          tag: "chamber.pressure",
          kind: "HI",
          setpoint: 5,
          priority: 3,
          message: "Chamber pressure high",
          suppressWhen: predicate,
        },
      ],
      tags,
    );
    expect(alarm).toMatchObject({ id: "pressure-high", message: "Chamber pressure high" });
    expect(alarm!.suppressWhen).toBe(predicate);
  });

  it("reports every problem at once, each with its path", () => {
    const issues = issuesOf([
      { tag: "chamber.presure", kind: "HI", setpoint: 5, priority: 1 },
      { tag: "door.open", kind: "HI", setpoint: 1, priority: 1 },
      { tag: "chamber.temperature", kind: "BOOL", priority: 1 },
      { tag: "chamber.pressure", kind: "HI", setpoint: 12, priority: 1 },
      { tag: "chamber.pressure", kind: "LO", setpoint: 1, priority: 5 as 1, deadband: -1 },
      { tag: "chamber.temperature", kind: "HI", setpoint: 100, priority: 2 },
      { tag: "chamber.temperature", kind: "HI", setpoint: 200, priority: 2 },
      { tag: "chamber.temperature", kind: "HIHI", setpoint: 90, priority: 1 },
      { tag: "chamber.temperature", kind: "LO", setpoint: 10, priority: 3, suppressWhen: { tag: "pump", equals: 1 } },
      {
        tag: "chamber.temperature",
        kind: "LOLO",
        setpoint: 5,
        priority: 3,
        suppressWhen: { tag: "door.open", equals: "yes" },
      },
      { tag: "door.open", kind: "BOOL", priority: 1, setpoint: 3 } as unknown as AlarmDefinitionInput,
      { tag: "machine.mode", kind: "LO", setpoint: 1, priority: 1, onDelayMs: 1.5 },
    ]);
    const paths = issues.map((issue) => issue.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        "[0].tag",
        "[1].kind",
        "[2].kind",
        "[3].setpoint",
        "[4].priority",
        "[4].deadband",
        "[6].id",
        "[7].setpoint",
        "[8].suppressWhen.tag",
        "[9].suppressWhen.equals",
        "[10]",
        "[11].onDelayMs",
      ]),
    );
    // HIHI at 90 sits below the HI at [5]; the duplicate at [6] was rejected, so it is not compared.
    expect(issues.filter((issue) => issue.path === "[7].setpoint").map((issue) => issue.message)).toEqual([
      expect.stringContaining("at [5]"),
    ]);
    expect(issues.find((issue) => issue.path === "[6].id")?.message).toContain("[5]");
  });

  it("rejects a LOLO setpoint above the LO setpoint of the same tag", () => {
    const issues = issuesOf([
      { tag: "chamber.pressure", kind: "LO", setpoint: 2, priority: 2 },
      { tag: "chamber.pressure", kind: "LOLO", setpoint: 3, priority: 1 },
    ]);
    expect(issues.map((issue) => issue.path)).toEqual(["[1].setpoint"]);
  });

  it("rejects a malformed suppression rule", () => {
    const issues = issuesOf([
      {
        tag: "chamber.pressure",
        kind: "HI",
        setpoint: 5,
        priority: 1,
        suppressWhen: { tag: "door.open" } as unknown as AlarmDefinitionInput["suppressWhen"],
      },
    ]);
    expect(issues.map((issue) => issue.path)).toEqual(["[0].suppressWhen.equals"]);
  });

  it("throws TypeError for a non-array argument", () => {
    expect(() => defineAlarms({} as unknown as AlarmDefinitionInput[], tags)).toThrow(TypeError);
  });
});
