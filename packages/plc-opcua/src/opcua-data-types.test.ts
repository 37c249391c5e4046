import { defineTags } from "@kiln/core";
import { DataType, DataValue, NodeId, StatusCodes, Variant, type ClientSession } from "node-opcua-client";
import { describe, expect, test } from "vitest";
import { discoverDataType } from "./opcua-data-types";

const tag = defineTags({ "line.speed": { dataType: "float64", access: "readwrite", address: "ns=1;s=Speed" } }).get(
  "line.speed",
);
const nodeId = new NodeId(NodeId.NodeIdType.STRING, "Speed", 1);

/**
 * A session that answers the DataType read with `read` (ValueRank and ArrayDimensions with
 * `shape`, default: not given) and fails every browse with `browse`.
 */
function sessionWith(
  read: () => Promise<DataValue>,
  browse: () => Promise<never> = never,
  shape: readonly DataValue[] = [
    new DataValue({ statusCode: StatusCodes.BadAttributeIdInvalid }),
    new DataValue({ statusCode: StatusCodes.BadAttributeIdInvalid }),
  ],
): ClientSession {
  const readAll = async () => [await read(), ...shape];
  return { read: readAll, browse, translateBrowsePath: browse } as unknown as ClientSession;
}
function never(): Promise<never> {
  return Promise.reject(new Error("browse not expected"));
}
const dataTypeIs = (id: NodeId) => () =>
  Promise.resolve(new DataValue({ value: new Variant({ dataType: DataType.NodeId, value: id }) }));

describe("discoverDataType", () => {
  test("a built-in DataType id is taken as is, without browsing", async () => {
    const session = sessionWith(dataTypeIs(new NodeId(NodeId.NodeIdType.NUMERIC, DataType.Double, 0)));
    await expect(discoverDataType(session, nodeId, tag, "ns=1;s=Speed", undefined)).resolves.toEqual({
      dataType: DataType.Double,
      valueRank: undefined,
      arrayDimensions: undefined,
    });
  });

  test("ValueRank and ArrayDimensions are read in the same request (adv13s H2)", async () => {
    const session = sessionWith(dataTypeIs(new NodeId(NodeId.NodeIdType.NUMERIC, DataType.Double, 0)), never, [
      new DataValue({ value: new Variant({ dataType: DataType.Int32, value: 1 }) }),
      new DataValue({ value: new Variant({ dataType: DataType.UInt32, value: [10] }) }),
    ]);
    await expect(discoverDataType(session, nodeId, tag, "ns=1;s=Speed", undefined)).resolves.toEqual({
      dataType: DataType.Double,
      valueRank: 1,
      arrayDimensions: [10],
    });
  });

  test("a refused DataType read is KILN_WRITE_REJECTED naming the tag, the node and the status", async () => {
    const session = sessionWith(() => Promise.resolve(new DataValue({ statusCode: StatusCodes.BadUserAccessDenied })));
    await expect(discoverDataType(session, nodeId, tag, "ns=1;s=Speed", undefined)).rejects.toMatchObject({
      code: "KILN_WRITE_REJECTED",
      details: { tag: "line.speed", nodeId: "ns=1;s=Speed", statusName: "BadUserAccessDenied" },
    });
  });

  test("a read that fails on the wire is the request's typed error, the secret redacted", async () => {
    const session = sessionWith(() => Promise.reject(new Error("socket closed while sending as hunter2")));
    const error = await discoverDataType(session, nodeId, tag, "ns=1;s=Speed", "hunter2").catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "KILN_CONNECTION_FAILED", retryable: true, details: { operation: "write" } });
    expect(String((error as Error).message)).not.toContain("hunter2");
  });

  test("a subtype whose base cannot be resolved fails with the request's typed error (sibling: after the read)", async () => {
    const session = sessionWith(dataTypeIs(new NodeId(NodeId.NodeIdType.NUMERIC, 5000, 3)), () =>
      Promise.reject(new Error("request timed out")),
    );
    await expect(discoverDataType(session, nodeId, tag, "ns=1;s=Speed", undefined)).rejects.toMatchObject({
      code: "KILN_TIMEOUT",
      details: { operation: "write" },
    });
  });
});
