import type * as Runtime from "./opcua-server-runtime";

/** The node-opcua dependent part of the package (see `opcua-server-runtime.ts`). */
export type ServerRuntime = typeof Runtime;

let loading: Promise<ServerRuntime> | undefined;

/**
 * Loads node-opcua's server modules once per process (a failed load is retried on the next
 * call). They are loaded here and nowhere else at run time, so importing the package has no
 * side effects.
 */
export function loadServerRuntime(): Promise<ServerRuntime> {
  loading ??= import("./opcua-server-runtime").catch((error: unknown) => {
    loading = undefined;
    throw error;
  });
  return loading;
}
