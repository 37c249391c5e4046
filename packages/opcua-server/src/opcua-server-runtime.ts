/**
 * Everything the server uses at run time from node-opcua. Imported only through
 * {@link loadServerRuntime} (`opcua-server-runtime-loader.ts`), so that importing
 * `@kiln/opcua-server` loads nothing of node-opcua (which prints warnings and prepares crypto at
 * load): it is loaded by the first `start()`.
 */
export { SessionContext } from "node-opcua-address-space";
export { OPCUACertificateManager } from "node-opcua-certificate-manager";
export { standardUnits } from "node-opcua-data-access";
export { DataValue } from "node-opcua-data-value";
export { nodesets } from "node-opcua-nodesets";
export { SecurityPolicy } from "node-opcua-secure-channel";
export { AuthorizingServer } from "./opcua-authorizing-server";
export { getStatusCodeFromCode, StatusCode, StatusCodes } from "node-opcua-status-code";
export {
  AnonymousIdentityToken,
  EUInformation,
  MessageSecurityMode,
  NodeClass,
  PermissionType,
  UserNameIdentityToken,
  X509IdentityToken,
} from "node-opcua-types";
export { DataType, Variant, VariantArrayType } from "node-opcua-variant";
export {
  HistoryData,
  HistoryReadResult,
  ReadAtTimeDetails,
  ReadProcessedDetails,
  ReadRawModifiedDetails,
} from "node-opcua-types";
