import { KilnError, type Tag } from "@kiln/core";
import {
  AttributeIds,
  findBasicDataType,
  type ClientSession,
  type DataType,
  type DataValue,
  type NodeId,
} from "node-opcua-client";
import { requestError, statusNameOf } from "./opcua-errors";
import type { OpcuaWriteTarget } from "./opcua-values";

/** The `KILN_WRITE_REJECTED` error for a write the server refused, with its status code and name. */
export function writeRejected(tag: Tag, nodeText: string, statusCode: number, reason: string | undefined): KilnError {
  const statusName = statusNameOf(statusCode);
  return new KilnError(
    "KILN_WRITE_REJECTED",
    `The OPC UA server refused the write of tag "${tag.name}" to ${nodeText}: ${statusName}${reason ? ` (${reason})` : ""}.`,
    { details: { tag: tag.name, nodeId: nodeText, statusCode: statusCode >>> 0, statusName } },
  );
}

/**
 * The built-in DataType of `nodeId` (a subtype is resolved to its built-in base), its ValueRank
 * and ArrayDimensions, read in one ReadRequest, so a write can be converted to the node's type
 * and checked against its shape (`variantForWrite`). A ValueRank or ArrayDimensions the server
 * does not return (a bad status, no value) is left undefined and not checked.
 * @throws KilnError `KILN_WRITE_REJECTED` when the server refuses to tell the DataType; the request's error otherwise.
 */
export async function discoverDataType(
  session: ClientSession,
  nodeId: NodeId,
  tag: Tag,
  nodeText: string,
  secret: string | undefined,
): Promise<OpcuaWriteTarget> {
  let dataValues: DataValue[];
  try {
    dataValues = await session.read([
      { nodeId, attributeId: AttributeIds.DataType },
      { nodeId, attributeId: AttributeIds.ValueRank },
      { nodeId, attributeId: AttributeIds.ArrayDimensions },
    ]);
  } catch (error) {
    throw requestError(error, "write", secret);
  }
  const [dataValue, rankValue, dimensionsValue] = dataValues;
  if (!dataValue?.statusCode.isGood())
    throw writeRejected(tag, nodeText, dataValue?.statusCode.value ?? 0x80000000, "reading its DataType");
  const rank: unknown = rankValue?.statusCode.isGood() ? rankValue.value.value : undefined;
  const dimensions: unknown = dimensionsValue?.statusCode.isGood() ? dimensionsValue.value.value : undefined;
  const shape = {
    valueRank: typeof rank === "number" ? rank : undefined,
    arrayDimensions:
      dimensions && typeof (dimensions as ArrayLike<number>).length === "number"
        ? Array.from(dimensions as ArrayLike<number>)
        : undefined,
  };
  const dataTypeId = dataValue.value.value as NodeId;
  if (dataTypeId.namespace === 0 && typeof dataTypeId.value === "number" && dataTypeId.value <= 25) {
    return { dataType: dataTypeId.value as DataType, ...shape };
  }
  try {
    return { dataType: await findBasicDataType(session, dataTypeId), ...shape };
  } catch (error) {
    throw requestError(error, "write", secret);
  }
}
