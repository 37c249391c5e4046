/**
 * What the simulator needs beyond the driver's runtime: node-opcua's server and the standard
 * nodeset. These are optional peer dependencies of `@kiln/plc-opcua` (a service that only reads
 * PLCs installs node-opcua's client packages alone); imported only through
 * {@link loadOpcuaSimulatorRuntime} (`opcua-runtime-loader.ts`).
 */
export * from "./opcua-runtime";
export { OPCUAServer } from "node-opcua-server";
export { nodesets } from "node-opcua-nodesets";
