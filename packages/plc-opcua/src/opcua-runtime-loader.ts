import type * as Runtime from "./opcua-runtime";

/** The node-opcua dependent part of the package (see `opcua-runtime.ts`). */
export type OpcuaRuntime = typeof Runtime;

let loading: Promise<OpcuaRuntime> | undefined;

/**
 * Loads node-opcua and the modules built on it, once per process (a failed load is retried on
 * the next call). node-opcua is loaded here and nowhere else at run time, so importing the
 * package has no side effects.
 */
export function loadOpcuaRuntime(): Promise<OpcuaRuntime> {
  loading ??= import("./opcua-runtime").catch((error: unknown) => {
    loading = undefined;
    throw error;
  });
  return loading;
}
