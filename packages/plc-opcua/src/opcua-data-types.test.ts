import { defineTags } from "@kiln/core";
import { DataType, DataValue, NodeId, StatusCodes, Variant, type ClientSession } from "node-opcua-client";
import { describe, expect, test } from "vitest";
import { discoverDataType } from "./opcua-data-types";

const tag = defineTags({ "line.speed": { dataType: "float64", access: "readwrite", address: "ns=1;s=Speed" } }).get(
  "line.speed",
);
const nodeId = new NodeId(NodeId.NodeIdType.STRING, "Speed", 1);

/** A session that answers the DataType read with `read` and fails every browse with `browse`. */
function sessionWith(read: () => Promise<DataValue>, browse: () => Promise<never> = never): ClientSession {
  return { read, browse, translateBrowsePath: browse } as unknown as ClientSession;
}
function never(): Promise<never> {
  return Promise.reject(new Error("browse not expected"));
}
const dataTypeIs = (id: NodeId) => () =>
  Promise.resolve(new DataValue({ value: new Variant({ dataType: DataType.NodeId, value: id }) }));

describe("discoverDataType", () => {
  test("a built-in DataType id is taken as is, without browsing", async () => {
    const session = sessionWith(dataTypeIs(new NodeId(NodeId.NodeIdType.NUMERIC, DataType.Double, 0)));
    await expect(discoverDataType(session, nodeId, tag, "ns=1;s=Speed", undefined)).resolves.toBe(DataType.Double);
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
