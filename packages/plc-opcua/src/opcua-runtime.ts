/**
 * Everything the driver (and the simulator) use that loads node-opcua's client. Imported only
 * through {@link loadOpcuaRuntime} (`opcua-runtime-loader.ts`), so that importing `@kiln/plc-opcua`
 * loads nothing of node-opcua, which prints a warning and generates an RSA key at load: it is
 * loaded on the first `connect()` or simulator `start()`. The driver needs node-opcua's client
 * packages only; the server packages are the simulator's (`opcua-simulator-runtime.ts`).
 */
export {
  ActivateSessionRequest,
  AttributeIds,
  CreateMonitoredItemsRequest,
  DataType,
  MessageSecurityMode,
  ObjectIds,
  PublishRequest,
  PublishResponse,
  ReadRequest,
  resolveNodeId,
  SecurityPolicy,
  StatusCodes,
  VariantArrayType,
  WriteRequest,
} from "node-opcua-client";
export { OPCUACertificateManager } from "node-opcua-certificate-manager";
export { browseVariables } from "./opcua-browse";
export { wireFate } from "./opcua-wire-fate";
export {
  adaptKeepAlive,
  appliedConnectStageMs,
  attemptTimedOut,
  connectStageMs,
  isRepairResponse,
  lastConnectTimedOut,
  linkRequestKind,
  onServiceFault,
  openOpcuaConnection,
  readServerInfo,
  sameServerInfo,
  setConnectStageMs,
} from "./opcua-connection";
export { discoverDataType, writeRejected } from "./opcua-data-types";
export {
  connectError,
  isAuthenticationFailure,
  redact,
  requestError,
  withWriteSent,
  writeNotApplied,
  serverCertificateUntrusted,
  statusOfError,
} from "./opcua-errors";
export { bindNodeAddress, namespaceProblem, parseNodeAddress, resolveNodeAddress } from "./opcua-node-id";
export { planReads } from "./opcua-read-plan";
export { badSample, sampleFromDataValue } from "./opcua-samples";
export { OpcuaTagSubscription } from "./opcua-tag-subscription";
export { OPCUA_TYPE_OF_TAG, variantForWrite } from "./opcua-values";
