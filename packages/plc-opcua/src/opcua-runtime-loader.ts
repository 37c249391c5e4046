import { KilnError } from "@kiln/core";
import type * as Runtime from "./opcua-runtime";
import type * as SimulatorRuntime from "./opcua-simulator-runtime";

/** The node-opcua client dependent part of the package (see `opcua-runtime.ts`). */
export type OpcuaRuntime = typeof Runtime;

/** The driver's runtime plus node-opcua's server (see `opcua-simulator-runtime.ts`). */
export type OpcuaSimulatorRuntime = typeof SimulatorRuntime;

/** The simulator's optional peer dependencies, with the versions this package is tested with. */
const SIMULATOR_PEERS = "node-opcua-server@2.182.2 node-opcua-nodesets@2.182.0";

let loading: Promise<OpcuaRuntime> | undefined;
let loadingSimulator: Promise<OpcuaSimulatorRuntime> | undefined;

/**
 * Loads node-opcua's client and the modules built on it, once per process (a failed load is
 * retried on the next call). node-opcua is loaded here and nowhere else at run time, so importing
 * the package has no side effects.
 */
export function loadOpcuaRuntime(): Promise<OpcuaRuntime> {
  loading ??= import("./opcua-runtime").catch((error: unknown) => {
    loading = undefined;
    throw error;
  });
  return loading;
}

/**
 * Loads the simulator's runtime: the driver's, plus node-opcua's server packages, which are
 * optional peer dependencies.
 * @throws KilnError `KILN_NOT_SUPPORTED` naming the packages to install when they are not installed.
 */
export function loadOpcuaSimulatorRuntime(): Promise<OpcuaSimulatorRuntime> {
  loadingSimulator ??= import("./opcua-simulator-runtime").catch((error: unknown) => {
    loadingSimulator = undefined;
    throw missingPeer(error) ?? error;
  });
  return loadingSimulator;
}

function missingPeer(error: unknown): KilnError | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : "";
  if (code !== "ERR_MODULE_NOT_FOUND" && code !== "MODULE_NOT_FOUND") return undefined;
  if (!/node-opcua-(server|nodesets)/.test(message)) return undefined;
  return new KilnError(
    "KILN_NOT_SUPPORTED",
    `The OPC UA simulator needs node-opcua's server, an optional peer dependency of @kiln/plc-opcua: npm install ${SIMULATOR_PEERS}`,
    { cause: error, details: { install: SIMULATOR_PEERS } },
  );
}
