import { describe, expect, test } from "vitest";
import { createControlSystem, defineTags, MemoryStore, SimulatedPlc, type Principal } from "../index";
import type { TagValue } from "../domain/tags";

// Adversarial review 15j (ADR 0042, amendment 15j), L2: machine.safeState refused array-tag
// values (its schema listed scalar types only) though the safe state's own check handles array
// paths. A safe-state value is now validated like any write of its tag.

const admin: Principal = { id: "ada", roles: ["admin"] };
const tags = defineTags({
  zones: { dataType: "float64", arrayLength: 3, range: { min: 0, max: 500 }, access: "readwrite", scanGroup: "fast" },
  valve: { dataType: "bool", access: "readwrite", scanGroup: "fast" },
});

function build(safeState: { tag: string; value: TagValue }[]) {
  const plc = new SimulatedPlc({ tags });
  const written: { tag: string; value: TagValue }[] = [];
  const write = plc.write.bind(plc);
  plc.write = async (tag, value, signal) => {
    written.push({ tag: tag.name, value });
    await write(tag, value, signal);
  };
  const system = createControlSystem({
    machineId: "oven-1",
    tags,
    driver: plc,
    store: new MemoryStore(),
    scanGroups: { fast: { periodMs: 20 } },
    machine: { model: "kiln", safeState },
  });
  return { system, written };
}

describe("machine.safeState takes array-tag values, validated like a write (review 15j, L2)", () => {
  test("L2: an array safe value is accepted and written by a fault", async () => {
    const { system, written } = build([
      { tag: "zones", value: [0, 0, 0] },
      { tag: "valve", value: false },
    ]);
    await system.start();
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    expect(written.find((write) => write.tag === "zones")?.value).toEqual([0, 0, 0]);
    await system.stop();
  });

  test("(sibling) a bad element is refused KILN_VALIDATION naming it; a scalar for an array tag too", () => {
    expect(() => build([{ tag: "zones", value: [0, 900, 0] }])).toThrow(
      expect.objectContaining({
        code: "KILN_VALIDATION",
        issues: [expect.objectContaining({ path: "machine.safeState[0].value[1]" })],
      }),
    );
    expect(() => build([{ tag: "zones", value: 0 }])).toThrow(
      expect.objectContaining({
        code: "KILN_VALIDATION",
        issues: [expect.objectContaining({ path: "machine.safeState[0].value" })],
      }),
    );
    expect(() => build([{ tag: "valve", value: { on: false } as never }])).toThrow(
      expect.objectContaining({ code: "KILN_VALIDATION" }),
    );
  });
});
