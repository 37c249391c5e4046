import { describe, expect, test } from "vitest";
import { parseNodeAddress } from "./opcua-node-id";
import { planReads } from "./opcua-read-plan";

const NAMESPACES = { namespaceArray: ["http://opcfoundation.org/UA/", "urn:server", "urn:kiln:plant"] };
const addresses = (count: number) =>
  Array.from({ length: count }, (_, index) => parseNodeAddress(`nsu=urn:kiln:plant;s=T${index}`));

describe("planReads", () => {
  test("splits into chunks of at most maxNodesPerRead, keeping each node's tag index", () => {
    const plan = planReads(addresses(2_500), NAMESPACES, 1_000, 7);
    expect(plan.generation).toBe(7);
    expect(plan.chunks.map((chunk) => chunk.nodesToRead.length)).toEqual([1_000, 1_000, 500]);
    expect(plan.chunks[2]!.indexes[0]).toBe(2_000);
    expect(plan.chunks[2]!.nodesToRead[0]!.nodeId!.toString()).toBe("ns=2;s=T2000");
    expect(plan.unresolved.size).toBe(0);
  });

  test("makes one chunk when the server sets no limit (0)", () => {
    const plan = planReads(addresses(1_234), NAMESPACES, 0, 1);
    expect(plan.chunks).toHaveLength(1);
    expect(plan.chunks[0]!.indexes).toHaveLength(1_234);
  });

  test("leaves out tags whose namespace the server lacks, with the reason, without shifting the others", () => {
    const mixed = [
      parseNodeAddress("ns=2;s=A"),
      parseNodeAddress("nsu=urn:missing;s=B"),
      parseNodeAddress("nsu=urn:kiln:plant;s=C"),
    ];
    const plan = planReads(mixed, NAMESPACES, 1, 1);
    expect(plan.chunks.map((chunk) => chunk.indexes)).toEqual([[0], [2]]);
    expect(plan.unresolved.get(1)?.reason).toMatch(/urn:missing/);
  });

  test("while the namespace table is not read yet, every nsu= tag is unresolved with that reason; ns= tags are read", () => {
    const mixed = [parseNodeAddress("ns=2;s=A"), parseNodeAddress("nsu=urn:kiln:plant;s=C")];
    const plan = planReads(mixed, { ...NAMESPACES, namespacesUnread: "BadWaitingForInitialData" }, 0, 1);
    expect(plan.chunks.map((chunk) => chunk.indexes)).toEqual([[0]]);
    expect(plan.unresolved.get(1)).toEqual({
      statusCode: 0x80320000,
      reason: "namespace table not read yet: BadWaitingForInitialData",
    });
  });

  test("plans nothing for an empty list", () => {
    expect(planReads([], NAMESPACES, 100, 1).chunks).toEqual([]);
  });
});
