export { OpcuaDriver } from "./opcua-driver";
export {
  opcuaDriverOptionsSchema,
  type OpcuaDriverOptions,
  type ResolvedOpcuaDriverOptions,
} from "./opcua-driver-options";
export {
  OPCUA_SIMULATOR_NAMESPACE_URI,
  OpcuaSimulator,
  opcuaSimulatorOptionsSchema,
  type OpcuaSimulatorOptions,
  type OpcuaSimulatorStats,
} from "./opcua-simulator";
export { routeNodeOpcuaLogs } from "./node-opcua-logs";
