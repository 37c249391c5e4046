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
 * The built-in DataType of `nodeId`, read from its DataType attribute (a subtype is resolved to
 * its built-in base), so a write can be converted to it.
 * @throws KilnError `KILN_WRITE_REJECTED` when the server refuses to tell; the request's error otherwise.
 */
export async function discoverDataType(
  session: ClientSession,
  nodeId: NodeId,
  tag: Tag,
  nodeText: string,
  secret: string | undefined,
): Promise<DataType> {
  let dataValue: DataValue;
  try {
    dataValue = await session.read({ nodeId, attributeId: AttributeIds.DataType });
  } catch (error) {
    throw requestError(error, "write", secret);
  }
  if (!dataValue.statusCode.isGood())
    throw writeRejected(tag, nodeText, dataValue.statusCode.value, "reading its DataType");
  const dataTypeId = dataValue.value.value as NodeId;
  if (dataTypeId.namespace === 0 && typeof dataTypeId.value === "number" && dataTypeId.value <= 25) {
    return dataTypeId.value as DataType;
  }
  try {
    return await findBasicDataType(session, dataTypeId);
  } catch (error) {
    throw requestError(error, "write", secret);
  }
}
