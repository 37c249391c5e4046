// Array tags (ADR 0038) are not carried by Sparkplug yet: left out of the births, their aliases
// kept reserved, and named in health() from construction on (no broker needed).
import { createControlSystem, defineTags } from "@kiln/core";
import { expect, test } from "vitest";
import { SparkplugEdgeNode } from "../src/index";

test("array tags are left out of the births and named in health().problems", () => {
  const tags = defineTags({
    "chamber.pressure": { dataType: "float64" },
    "zones.temperature": { dataType: "float64", arrayLength: 8 },
    "valve.ald1": { dataType: "bool", access: "readwrite" },
  });
  const system = createControlSystem({ machineId: "ald-1", tags, scanGroups: { default: { periodMs: 1_000 } } });
  const node = new SparkplugEdgeNode({
    system,
    brokerUrl: "mqtt://127.0.0.1:1",
    groupId: "g",
    edgeNodeId: "e",
    principal: { id: "sparkplug-host", roles: ["engineer"] },
  });
  expect([...node.aliases]).toEqual([
    ["chamber.pressure", 1],
    ["valve.ald1", 3],
  ]);
  expect(node.health().problems).toEqual([expect.stringContaining("array tags are not published")]);
  expect(node.health().problems[0]).toContain("zones.temperature");
});
