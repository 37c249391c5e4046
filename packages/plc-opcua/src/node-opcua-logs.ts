import { format, stripVTControlCharacters } from "node:util";
import type { Logger } from "@kiln/core";

/** Where node-opcua says a line comes from: its source file's base name and line. */
interface CallSite {
  readonly filename?: string;
  readonly callerline?: number;
}

type PrintFunc = (context?: unknown, ...args: unknown[]) => void;

/** node-opcua's own limit: after this many lines from one call site, the rest are dropped (and said so once). */
const LINES_PER_CALL_SITE = 100;

/**
 * Sends node-opcua's console output (its error, warning, trace and debug loggers, from
 * `node-opcua-debug`) to a Kiln `Logger` instead of `console.log`: each line becomes one entry
 * under `component: "node-opcua"` with `source: "<file>:<line>"`, errors at `error`, warnings at
 * `warn`, trace and debug at `debug`, without node-opcua's ANSI colours. As node-opcua does, at most
 * 100 lines per call site are logged, the 100th followed by one entry saying that the rest are dropped.
 *
 * node-opcua's loggers are process-wide: call this once, at start-up, before the first OPC UA
 * connection; a later call routes to its logger instead (every driver, simulator and server in
 * the process shares them). node-opcua is loaded on the first call (the package imports nothing
 * of it until then).
 *
 * @example
 * import pino from "pino";
 * import { routeNodeOpcuaLogs } from "@kiln/plc-opcua";
 * const logger = pino();
 * await routeNodeOpcuaLogs(logger);
 *
 * @throws Whatever importing `node-opcua-debug` throws (it is a dependency of this package).
 */
export async function routeNodeOpcuaLogs(logger: Logger): Promise<void> {
  const debug = await import("node-opcua-debug");
  const target = logger.child({ component: "node-opcua" });
  const counts = new Map<string, number>();
  const route =
    (level: "error" | "warn" | "debug"): PrintFunc =>
    (context, ...args) => {
      const site = (context ?? {}) as CallSite;
      const source = `${site.filename ?? "?"}:${site.callerline ?? "?"}`;
      const count = (counts.get(source) ?? 0) + 1;
      if (count > LINES_PER_CALL_SITE) return;
      counts.set(source, count);
      target[level]({ source }, stripVTControlCharacters(format(...args)));
      if (count === LINES_PER_CALL_SITE) {
        target[level]({ source }, `more than ${LINES_PER_CALL_SITE} lines from ${source}; the rest are dropped`);
      }
    };
  debug.setErrorLogger(route("error"));
  debug.setWarningLogger(route("warn"));
  debug.setTraceLogger(route("debug"));
  debug.setDebugLogger(route("debug"));
}
