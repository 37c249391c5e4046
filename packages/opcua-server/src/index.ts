export { OpcuaServer, type ServedSystem } from "./opcua-server";
export {
  opcuaServerOptionsSchema,
  type OpcuaIdentityMapper,
  type OpcuaReadAuthorizer,
  type OpcuaServerOptions,
  type OpcuaSessionInfo,
  type OpcuaUserIdentity,
  type ResolvedOpcuaServerOptions,
} from "./opcua-server-options";
export { ServerStatusCodes, statusCodeOfError, statusCodeOfSample } from "./opcua-status";
export { OPCUA_DATA_TYPE_OF_TAG } from "./opcua-address-space";
export { OPCUA_DIAGNOSTICS_PERMISSION } from "./opcua-diagnostics-access";
export { OPCUA_SEVERITY_OF_PRIORITY } from "./opcua-alarms";
export {
  HISTORIAN_CALCULATED,
  HISTORIAN_INTERPOLATED,
  HistoryStatusCodes,
  historyStatusOfError,
  OPCUA_HISTORY_LIMITS,
  statusCodeOfAggregate,
} from "./opcua-history";
export { AGGREGATE_FUNCTION_NODE_IDS } from "./opcua-history-nodes";
